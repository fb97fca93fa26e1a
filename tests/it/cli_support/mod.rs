//! Helpers for driving the real `keystead` binary: commands with a clean environment, answers read as a user
//! reads them (one JSON document, or one `keystead: ` line on stderr), and a small Gumroad API server that speaks
//! `/v2/resource_subscriptions` with Gumroad's status codes and `success: false` bodies.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::{Value, json};

/// `keystead` with the test's environment (the local stack) minus anything a test sets on purpose.
pub fn keystead() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keystead"));
    for var in [
        "KEYSTEAD_API_URL",
        "GUMROAD_ACCESS_TOKEN",
        "GUMROAD_API_URL",
    ] {
        cmd.env_remove(var);
    }
    // A panic would print a backtrace with this set: the tests check that none ever does.
    cmd.env("RUST_BACKTRACE", "1");
    cmd.timeout(Duration::from_secs(60));
    cmd
}

pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// Runs a command that must succeed and returns its human answer.
pub fn ok_cmd(cmd: &mut Command) -> String {
    let output = cmd.output().expect("keystead runs");
    let (stdout, stderr) = (stdout_of(&output), stderr_of(&output));
    assert!(
        output.status.success(),
        "expected success, got {:?}\nstdout: {stdout}\nstderr: {stderr}",
        output.status.code()
    );
    assert!(!stdout.trim().is_empty(), "a short human answer");
    assert!(
        !stdout.trim_start().starts_with('{'),
        "human, not JSON: {stdout}"
    );
    stdout
}

/// Runs a command with `--json` that must succeed and returns its one JSON document.
pub fn ok_json_cmd(cmd: &mut Command) -> Value {
    let output = cmd.arg("--json").output().expect("keystead runs");
    let (stdout, stderr) = (stdout_of(&output), stderr_of(&output));
    assert!(
        output.status.success(),
        "expected success, got {:?}\nstdout: {stdout}\nstderr: {stderr}",
        output.status.code()
    );
    // `from_str` refuses anything after the first document but whitespace: exactly one.
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {stdout}"))
}

pub fn ok(args: &[&str]) -> String {
    ok_cmd(keystead().args(args))
}

pub fn ok_json(args: &[&str]) -> Value {
    ok_json_cmd(keystead().args(args))
}

/// Runs a command that must fail with `code`, printing nothing on stdout and one `keystead: ` line on stderr,
/// with `--json` as without. Returns the message after the prefix.
pub fn fails_cmd(make: impl Fn() -> Command, code: i32) -> String {
    let mut messages = Vec::new();
    for json in [false, true] {
        let mut cmd = make();
        if json {
            cmd.arg("--json");
        }
        let output = cmd.output().expect("keystead runs");
        let (stdout, stderr) = (stdout_of(&output), stderr_of(&output));
        assert_eq!(
            output.status.code(),
            Some(code),
            "exit code (json: {json})\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert_eq!(stdout, "", "nothing on stdout on failure (json: {json})");
        assert!(
            stderr.ends_with('\n') && stderr.matches('\n').count() == 1,
            "one line on stderr: {stderr:?}"
        );
        let message = stderr
            .strip_prefix("keystead: ")
            .unwrap_or_else(|| panic!("prefixed 'keystead: ': {stderr:?}"))
            .trim_end()
            .to_owned();
        for noise in [
            "panicked",
            "backtrace",
            "RUST_BACKTRACE",
            "Error {",
            "DispatchFailure(",
        ] {
            assert!(!stderr.contains(noise), "no {noise} in {stderr:?}");
        }
        messages.push(message);
    }
    assert_eq!(messages[0], messages[1], "the same message with --json");
    messages.remove(0)
}

pub fn fails(args: &[&str], code: i32) -> String {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    fails_cmd(
        || {
            let mut cmd = keystead();
            cmd.args(&args);
            cmd
        },
        code,
    )
}

/// Exit codes, as the README documents them.
pub mod exit {
    pub const INVALID: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    pub const ALREADY_EXISTS: i32 = 4;
    pub const CONFIG: i32 = 5;
    pub const AWS: i32 = 6;
    pub const CONFLICT: i32 = 7;
    pub const GUMROAD: i32 = 8;
    pub const EMAIL_FAILED: i32 = 9;
}

pub fn sender() -> String {
    std::env::var("KEYSTEAD_LOCAL_SENDER").expect("run the tests after eval \"$(infra/local/up)\"")
}

pub struct NewTenant {
    pub tenant_id: String,
    pub token: String,
    pub ping_url: String,
}

/// A tenant made by `keystead tenant create --json`, on its own unique id.
pub fn new_tenant(api_url: &str) -> NewTenant {
    new_tenant_from(&crate::common::unique("cli"), &sender(), api_url)
}

pub fn new_tenant_from(tenant_id: &str, sender: &str, api_url: &str) -> NewTenant {
    new_tenant_with(tenant_id, sender, api_url, &[])
}

/// A tenant made with extra arguments to `tenant create` (`--skip-ses-check` for a sender SES does not know).
pub fn new_tenant_with(tenant_id: &str, sender: &str, api_url: &str, extra: &[&str]) -> NewTenant {
    let mut args = vec![
        "tenant",
        "create",
        tenant_id,
        "--sender",
        sender,
        "--api-url",
        api_url,
    ];
    args.extend_from_slice(extra);
    let doc = ok_json(&args);
    NewTenant {
        tenant_id: tenant_id.to_owned(),
        token: doc["token"].as_str().expect("token").to_owned(),
        ping_url: doc["ping_url"].as_str().expect("ping_url").to_owned(),
    }
}

/// The token in a printed ping URL, as Gumroad would send it back.
pub fn token_of(ping_url: &str) -> String {
    ping_url
        .split_once("?token=")
        .map(|(_, t)| t.to_owned())
        .unwrap_or_else(|| panic!("no token in {ping_url}"))
}

/// One request the fake Gumroad received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub form: HashMap<String, String>,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct GumroadState {
    next_id: u32,
    /// `(id, resource_name, post_url)`
    subscriptions: Vec<(String, String, String)>,
    received: Vec<Received>,
    /// The seller's sales, newest first, as `GET /v2/sales` lists them (`SALES_PAGE` a page).
    sales: Vec<Value>,
    /// Subscriptions as `GET /v2/subscribers/:id` finds them.
    subscribers: Vec<Value>,
    /// How many of the next sales requests fail with 502 (listing and reading back alike).
    failing_sales_requests: u32,
}

/// Sales per page of the fake's `GET /v2/sales` (Gumroad's are larger; small pages test the paging).
pub const SALES_PAGE: usize = 2;

/// A Gumroad API v2 stand-in for `/v2/resource_subscriptions`. Access tokens: `tok-good` may do everything,
/// `tok-no-scope` lacks `view_sales` (403), anything else is refused (401). Post URLs on hosts ending in
/// `.invalid` are refused with 400, on `unprocessable.example` with 422, and on `legacy.example` with 200 and
/// `success: false` (what Gumroad's production API actually answers); on `partial.example` only `dispute` is
/// refused (422). Deleting an unknown id is a 404, and
/// deleting `legacy-missing` a 200 with `success: false`.
pub struct FakeGumroad {
    pub url: String,
    server: Arc<tiny_http::Server>,
    state: Arc<Mutex<GumroadState>>,
    thread: Option<JoinHandle<()>>,
}

pub const GOOD_TOKEN: &str = "tok-good";
pub const NO_SCOPE_TOKEN: &str = "tok-no-scope";
pub const RESOURCES: [&str; 8] = [
    "sale",
    "refund",
    "dispute",
    "dispute_won",
    "cancellation",
    "subscription_ended",
    "subscription_restarted",
    "subscription_updated",
];

fn refused(status: u16, message: &str) -> (u16, Value) {
    (status, json!({"success": false, "message": message}))
}

fn parse_pairs(raw: &str) -> HashMap<String, String> {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl FakeGumroad {
    pub fn start() -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind"));
        let addr = server.server_addr().to_ip().expect("an IP address");
        let state = Arc::new(Mutex::new(GumroadState::default()));
        let thread = {
            let (server, state) = (Arc::clone(&server), Arc::clone(&state));
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let mut body = String::new();
                    let _ = request.as_reader().read_to_string(&mut body);
                    let (path, query) = match request.url().split_once('?') {
                        Some((p, q)) => (p.to_owned(), parse_pairs(q)),
                        None => (request.url().to_owned(), HashMap::new()),
                    };
                    let authorization = request
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Authorization"))
                        .map(|h| h.value.as_str().to_owned());
                    let received = Received {
                        method: request.method().as_str().to_owned(),
                        path,
                        query,
                        form: parse_pairs(&body),
                        authorization,
                    };
                    let (status, reply) = answer(&mut state.lock().expect("state"), &received);
                    state.lock().expect("state").received.push(received);
                    let response = tiny_http::Response::from_string(reply.to_string())
                        .with_status_code(status)
                        .with_header(
                            tiny_http::Header::from_bytes("Content-Type", "application/json")
                                .expect("header"),
                        );
                    let _ = request.respond(response);
                }
            })
        };
        Self {
            url: format!("http://{addr}"),
            server,
            state,
            thread: Some(thread),
        }
    }

    /// Turns read-back on for `tenant_id` with the good token (stored sealed), as `tenant set --verify-sales on`.
    pub fn read_back_on(&self, tenant_id: &str) {
        let set = ok_json_cmd(self.keystead(GOOD_TOKEN).args([
            "tenant",
            "set",
            tenant_id,
            "--verify-sales",
            "on",
        ]));
        assert_eq!(set["verify_sales"], true);
    }

    /// `keystead` pointed at this server with an access token.
    pub fn keystead(&self, access_token: &str) -> Command {
        let mut cmd = keystead();
        cmd.env("GUMROAD_API_URL", &self.url)
            .env("GUMROAD_ACCESS_TOKEN", access_token);
        cmd
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("state").received.clone()
    }

    /// The sales `GET /v2/sales` lists (newest first) and `GET /v2/sales/:id` finds.
    pub fn set_sales(&self, sales: Vec<Value>) {
        self.state.lock().expect("state").sales = sales;
    }

    /// The subscriptions `GET /v2/subscribers/:id` finds.
    pub fn set_subscribers(&self, subscribers: Vec<Value>) {
        self.state.lock().expect("state").subscribers = subscribers;
    }

    /// The next `n` sales requests answer 502, as Gumroad does when it is down.
    pub fn fail_sales_requests(&self, n: u32) {
        self.state.lock().expect("state").failing_sales_requests = n;
    }

    /// A subscription Gumroad already has (made in Gumroad's own settings, or by an earlier `subscribe`), for post
    /// URLs `keystead gumroad subscribe` would refuse (a local API); returns its id.
    pub fn add_subscription(&self, resource_name: &str, post_url: &str) -> String {
        let mut state = self.state.lock().expect("state");
        state.next_id += 1;
        let id = format!("sub{:04}==", state.next_id);
        state
            .subscriptions
            .push((id.clone(), resource_name.to_owned(), post_url.to_owned()));
        id
    }

    /// `(id, resource_name, post_url)` of every live subscription.
    pub fn subscriptions(&self) -> Vec<(String, String, String)> {
        self.state.lock().expect("state").subscriptions.clone()
    }
}

impl Drop for FakeGumroad {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(state: &mut GumroadState, req: &Received) -> (u16, Value) {
    // Gumroad's API (Doorkeeper) takes the token as a bearer header, a query or a form parameter.
    let bearer = req
        .authorization
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned);
    let token = bearer.as_ref().or(match req.method.as_str() {
        "PUT" => req.form.get("access_token"),
        _ => req
            .query
            .get("access_token")
            .or(req.form.get("access_token")),
    });
    match token.map(String::as_str) {
        Some(GOOD_TOKEN) => {}
        Some(NO_SCOPE_TOKEN) => {
            return refused(403, "The access token does not have the view_sales scope.");
        }
        _ => return refused(401, "The access token is invalid."),
    }
    if req.path.starts_with("/v2/sales") && state.failing_sales_requests > 0 {
        state.failing_sales_requests -= 1;
        return refused(502, "Bad gateway");
    }
    let base = "/v2/resource_subscriptions";
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v2/sales") => {
            let start: usize = req
                .query
                .get("page_key")
                .and_then(|k| k.parse().ok())
                .unwrap_or(0);
            let page: Vec<Value> = state
                .sales
                .iter()
                .skip(start)
                .take(SALES_PAGE)
                .cloned()
                .collect();
            let next =
                (start + SALES_PAGE < state.sales.len()).then(|| (start + SALES_PAGE).to_string());
            (
                200,
                json!({"success": true, "sales": page, "next_page_key": next}),
            )
        }
        ("GET", path) if path.starts_with("/v2/subscribers/") => {
            let id = percent_encoding::percent_decode_str(&path["/v2/subscribers/".len()..])
                .decode_utf8_lossy()
                .into_owned();
            match state.subscribers.iter().find(|s| s["id"] == id.as_str()) {
                Some(subscriber) => (200, json!({"success": true, "subscriber": subscriber})),
                None => (
                    200,
                    json!({"success": false, "message": "The subscriber was not found."}),
                ),
            }
        }
        ("GET", path) if path.starts_with("/v2/sales/") => {
            let id = percent_encoding::percent_decode_str(&path["/v2/sales/".len()..])
                .decode_utf8_lossy()
                .into_owned();
            match state.sales.iter().find(|s| s["id"] == id.as_str()) {
                Some(sale) => (200, json!({"success": true, "sale": sale})),
                // Gumroad answers a missing sale with HTTP 200.
                None => (
                    200,
                    json!({"success": false, "message": "The sale was not found."}),
                ),
            }
        }
        ("PUT", path) if path == base => {
            let resource = req.form.get("resource_name").cloned().unwrap_or_default();
            let post_url = req.form.get("post_url").cloned().unwrap_or_default();
            let host = post_url
                .split_once("://")
                .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or_default())
                .map(|authority| authority.rsplit('@').next().unwrap_or_default())
                .map(|host| host.split(':').next().unwrap_or_default().to_owned())
                .unwrap_or_default();
            let scheme_ok = post_url.starts_with("http://") || post_url.starts_with("https://");
            if !scheme_ok
                || ["localhost", "127.0.0.1", "0.0.0.0"].contains(&host.as_str())
                || host.ends_with(".invalid")
            {
                return refused(400, &format!("Invalid post URL '{post_url}'"));
            }
            if host == "legacy.example" {
                return (
                    200,
                    json!({"success": false, "message": format!("Invalid post URL '{post_url}'")}),
                );
            }
            if host == "partial.example" && resource == "dispute" {
                return refused(422, "The resource_subscription was unable to be created.");
            }
            if host == "unprocessable.example" {
                return refused(422, "The resource_subscription was unable to be created.");
            }
            if !RESOURCES.contains(&resource.as_str()) {
                return refused(400, "Valid resource_name parameter required");
            }
            state.next_id += 1;
            let id = format!("sub{:04}==", state.next_id);
            state
                .subscriptions
                .push((id.clone(), resource.clone(), post_url.clone()));
            (
                200,
                json!({"success": true, "resource_subscription":
                    {"id": id, "resource_name": resource, "post_url": post_url}}),
            )
        }
        ("GET", path) if path == base => {
            let resource = req.query.get("resource_name").cloned().unwrap_or_default();
            if !RESOURCES.contains(&resource.as_str()) {
                return refused(400, "Valid resource_name parameter required");
            }
            let subs: Vec<Value> = state
                .subscriptions
                .iter()
                .filter(|(_, r, _)| *r == resource)
                .map(|(id, r, url)| json!({"id": id, "resource_name": r, "post_url": url}))
                .collect();
            (
                200,
                json!({"success": true, "resource_subscriptions": subs}),
            )
        }
        ("DELETE", path) if path.starts_with(&format!("{base}/")) => {
            let raw_id = &path[base.len() + 1..];
            let id = percent_encoding::percent_decode_str(raw_id)
                .decode_utf8_lossy()
                .into_owned();
            if id == "legacy-missing" {
                return (
                    200,
                    json!({"success": false, "message": "The resource_subscription was not found."}),
                );
            }
            let before = state.subscriptions.len();
            state.subscriptions.retain(|(sid, _, _)| *sid != id);
            if state.subscriptions.len() == before {
                return refused(404, "The resource_subscription was not found.");
            }
            (
                200,
                json!({"success": true, "message": "The resource_subscription was deleted successfully."}),
            )
        }
        _ => refused(404, "Not found"),
    }
}
