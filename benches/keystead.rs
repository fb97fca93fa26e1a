//! keystead's benchmark against the local stack (run by `scripts/bench`, which starts the stack, builds in release
//! and writes BENCHMARKS.md): ping latency in-process and over HTTP, the floor of bare AWS calls a new sale cannot
//! avoid, requests per ping counted by an SDK interceptor, concurrency, cold start and memory under the Lambda
//! Runtime API. It prints Markdown; it never asserts on time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use keystead::app::App;
use keystead::domain::{
    Email, KeyPrefix, License, Permalink, Product, ProductId, Tenant, TenantId, WebhookToken,
};
use keystead::http::Api;
use keystead::mail::SesMailer;
use keystead::storage::{DynamoStore, Tables};
use serde_json::{Value, json};

#[path = "support/dispatch.rs"]
mod dispatch;
#[path = "support/license_api.rs"]
mod license_api;
#[path = "support/releases.rs"]
mod releases;
#[path = "support/signin.rs"]
mod signin;
#[path = "support/timing_proxy.rs"]
mod timing_proxy;

use timing_proxy::{Exchanged, TimingProxy, Waited};

type Item = std::collections::HashMap<String, AttributeValue>;

// ---------------------------------------------------------------------------------------------------------------
// Requests per ping, counted by the SDK itself.

/// Counts every request the SDK transmits (each attempt), by operation.
#[derive(Debug, Default)]
struct Counter {
    total: AtomicU64,
    by_operation: Mutex<BTreeMap<String, u64>>,
}

impl Counter {
    fn take(&self) -> (u64, BTreeMap<String, u64>) {
        let total = self.total.swap(0, Ordering::SeqCst);
        let ops = std::mem::take(&mut *self.by_operation.lock().unwrap());
        (total, ops)
    }
}

#[derive(Debug, Clone)]
struct Counting(Arc<Counter>);

/// Nanoseconds spent inside DynamoDB operations (from before a request is serialised to after its answer is
/// read), summed over operations: `BENCH_PROFILE_LICENSE` splits a call's time at the SDK's boundary with it.
static SDK_NANOS: AtomicU64 = AtomicU64::new(0);

/// When the operation started, kept in its config bag.
#[derive(Debug, Clone)]
struct Started(Instant);

impl aws_smithy_types::config_bag::Storable for Started {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "keystead-bench-counter"
    }

    fn read_before_execution(
        &self,
        _context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<
            '_,
        >,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(Started(Instant::now()));
        Ok(())
    }

    fn read_after_execution(
        &self,
        _context: &aws_sdk_dynamodb::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Started(at)) = cfg.load::<Started>() {
            let nanos = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
            SDK_NANOS.fetch_add(nanos, Ordering::SeqCst);
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.total.fetch_add(1, Ordering::SeqCst);
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_owned())
            .unwrap_or_else(|| "?".to_owned());
        *self.0.by_operation.lock().unwrap().entry(op).or_default() += 1;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Pings: Gumroad-shaped bodies in API Gateway v2 events (after tests/common).

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    NewSale,
    Duplicate,
    TestPing,
    AuthFailure,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::NewSale,
        Kind::Duplicate,
        Kind::TestPing,
        Kind::AuthFailure,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::NewSale => "new sale (license + payment + email)",
            Kind::Duplicate => "duplicate",
            Kind::TestPing => "test ping",
            Kind::AuthFailure => "auth failure (wrong token; past 20 a minute: 503, no read)",
        }
    }

    /// Whether an answer is the one this kind of ping must get.
    fn answered_right(self, status: u16, body: &str) -> bool {
        match self {
            Kind::NewSale => {
                status == 200 && body.contains("\"duplicate\":false") && body.contains("\"sent\"")
            }
            Kind::Duplicate => status == 200 && body.contains("\"duplicate\":true"),
            Kind::TestPing => status == 204,
            // 400 until the tenant's budget of failed authentications is used up, then a 503 without any read.
            Kind::AuthFailure => {
                (status == 400 && body.contains("Invalid request"))
                    || (status == 503 && body.contains("Temporarily unavailable"))
            }
        }
    }
}

fn unique(prefix: &str) -> String {
    let id = keystead::domain::random_id("x").unwrap();
    format!("{prefix}-{}", &id[2..14])
}

fn enc(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn sale_body(sale_id: &str, email: &str, test: bool) -> String {
    let mut fields = vec![
        "seller_id=kL0psVL2admJSYRNs-OCMg%3D%3D".to_owned(),
        "product_id=32-nPAicqbLj8B_WswVlMw%3D%3D".to_owned(),
        "product_name=MyApp%20Pro".to_owned(),
        "permalink=myapp-pro".to_owned(),
        "product_permalink=https%3A%2F%2Facme.gumroad.com%2Fl%2Fmyapp-pro".to_owned(),
        "short_product_id=qwxyz".to_owned(),
        format!("email={}", enc(email)),
        "price=2900".to_owned(),
        "gumroad_fee=370".to_owned(),
        "currency=usd".to_owned(),
        "quantity=1".to_owned(),
        "card%5Bvisual%5D=%2A%2A%2A%2A%204242".to_owned(),
        "card%5Btype%5D=visa".to_owned(),
        "order_number=524459935".to_owned(),
        format!("sale_id={}", enc(sale_id)),
        "sale_timestamp=2026-05-04T19%3A38%3A56Z".to_owned(),
        "full_name=Jane%20Doe".to_owned(),
        "variants%5BTier%5D=Pro".to_owned(),
        "ip_country=United%20States".to_owned(),
        "refunded=false".to_owned(),
        "resource_name=sale".to_owned(),
        "disputed=false".to_owned(),
        "dispute_won=false".to_owned(),
    ];
    if test {
        fields.push("test=true".to_owned());
    }
    fields.join("&")
}

/// The release feeds and downloads (issue 26), on licenses sold for it (a license may start 100 downloads a day,
/// so the downloads rotate over enough of them), and the patch sizes when `BENCH_PATCH_DIR` names the binaries.
#[allow(clippy::too_many_arguments)]
async fn releases_section(
    report: &mut Report,
    app: &Api,
    pings: &Pings,
    store: &DynamoStore,
    ddb: &aws_sdk_dynamodb::Client,
    ddb_count: &Counter,
    ses: &aws_sdk_ses::Client,
    sdk: &aws_config::SdkConfig,
    tables: &Tables,
    n: usize,
) {
    let n = env_usize("BENCH_RELEASES_N", n);
    let mut keys = Vec::new();
    for _ in 0..n / 90 + 2 {
        let (status, body) = invoke(app, &pings.event(Kind::NewSale)).await.parts();
        assert_eq!(status, 200, "{body}");
        let sold: Value = serde_json::from_str(&body).unwrap();
        keys.push(sold["license"]["key"].as_str().unwrap().to_owned());
    }
    releases::section(
        report,
        store,
        (ddb, ddb_count),
        ses,
        sdk,
        tables,
        &pings.seeded.tenant_id,
        &keys,
        n,
    )
    .await;
    if let Ok(dir) = std::env::var("BENCH_PATCH_DIR") {
        releases::patches(report, std::path::Path::new(&dir));
    }
}

/// An API Gateway HTTP API (payload 2.0) event: `query` is the raw query string, `headers` as sent.
fn api_event(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012", "apiId": "local", "domainName": "local.example",
            "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "bench"},
            "requestId": unique("req"), "routeKey": "$default", "stage": "$default",
            "time": "04/May/2026:19:38:56 +0000", "timeEpoch": 1_777_923_536_000_i64
        },
        "body": body,
        "isBase64Encoded": false,
    });
    if !query.is_empty() {
        let parameters: serde_json::Map<String, Value> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), json!(v)))
            .collect();
        event["queryStringParameters"] = Value::Object(parameters);
    }
    event.to_string()
}

/// The API Gateway HTTP API (payload 2.0) event of a ping.
fn event(tenant: &str, token: &str, body: &str) -> String {
    api_event(
        "POST",
        &format!("/webhooks/gumroad/{tenant}"),
        &format!("token={}", enc(token)),
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("user-agent", "Gumroad"),
        ],
        body,
    )
}

struct Seeded {
    tenant_id: String,
    token: String,
}

/// Hands out pings; a duplicate repeats a sale this source sold earlier (a different one each time).
struct Pings {
    seeded: Seeded,
    sold: Mutex<Vec<String>>,
    next_dup: AtomicUsize,
}

impl Pings {
    /// (form body, token) for a ping of this kind.
    fn form(&self, kind: Kind) -> (String, String) {
        let token = self.seeded.token.clone();
        match kind {
            Kind::NewSale => {
                let sale_id = format!("{}==", unique("S"));
                let body = sale_body(&sale_id, &format!("{}@example.com", unique("buyer")), false);
                self.sold.lock().unwrap().push(sale_id);
                (body, token)
            }
            Kind::Duplicate => {
                let sold = self.sold.lock().unwrap();
                let i = self.next_dup.fetch_add(1, Ordering::SeqCst) % sold.len();
                (sale_body(&sold[i], "jane@example.com", false), token)
            }
            Kind::TestPing => (
                sale_body(&format!("{}==", unique("T")), "jane@example.com", true),
                token,
            ),
            Kind::AuthFailure => (
                sale_body(&format!("{}==", unique("A")), "jane@example.com", false),
                WebhookToken::generate().unwrap().expose().to_owned(),
            ),
        }
    }

    fn event(&self, kind: Kind) -> String {
        let (body, token) = self.form(kind);
        event(&self.seeded.tenant_id, &token, &body)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Statistics and output.

#[derive(Clone, Copy)]
struct Stats {
    n: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn stats(samples: &mut [f64]) -> Stats {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i]
    };
    Stats {
        n: samples.len(),
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: *samples.last().unwrap(),
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: run the bench with scripts/bench"))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The Markdown tables, printed and appended to `BENCH_OUT` line by line (so a failed phase keeps the others).
struct Report(Option<std::path::PathBuf>);

impl Report {
    fn line(&mut self, text: impl AsRef<str>) {
        println!("{}", text.as_ref());
        if let Some(path) = &self.0 {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            writeln!(file, "{}", text.as_ref()).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The handler in-process, through the function's API Gateway adapter (event JSON in, response JSON out).

/// One request through the router behind the function's adapter (`keystead::http::gateway`, what the function's
/// handler calls for an API Gateway event).
async fn invoke(app: &Api, event: &str) -> Answered {
    let answer = app.answer(event).await.unwrap();
    // The bytes the runtime would post back (lambda_runtime serialises the response with `to_vec`).
    Answered(serde_json::to_vec(&answer).unwrap())
}

/// A function's answer as the Lambda runtime sends it; read back (status, body) only outside the timed part.
struct Answered(Vec<u8>);

impl Answered {
    fn parts(&self) -> (u16, String) {
        let out: Value = serde_json::from_slice(&self.0).unwrap();
        let status = out["statusCode"].as_u64().unwrap_or(0) as u16;
        let body = out["body"].as_str().unwrap_or_default().to_owned();
        (status, body)
    }
}

/// Sends `n` pings of a kind one after another; latencies in ms and the number answered wrongly.
async fn sequential(app: &Api, pings: &Pings, kind: Kind, n: usize) -> (Vec<f64>, usize) {
    let mut samples = Vec::with_capacity(n);
    let mut wrong = 0;
    for _ in 0..n {
        let event = pings.event(kind);
        let started = Instant::now();
        let answered = invoke(app, &event).await;
        samples.push(ms(started.elapsed()));
        let (status, body) = answered.parts();
        if !kind.answered_right(status, &body) {
            wrong += 1;
            if wrong <= 3 {
                eprintln!("bench: {kind:?} answered {status} {body}");
            }
        }
    }
    (samples, wrong)
}

// ---------------------------------------------------------------------------------------------------------------
// The floor: the four calls a new sale cannot avoid, straight from the SDK.

struct Templates {
    license: Item,
    payment: Item,
    event: Item,
    /// The sale's two audit events (`license.created`, `sale.recorded`): the outbox rows of issue 25.
    audit: Vec<Item>,
    email: keystead::mail::KeyEmail,
}

async fn first_item(
    ddb: &aws_sdk_dynamodb::Client,
    table: &str,
    tenant: &str,
    sk_prefix: Option<&str>,
) -> Item {
    let out = ddb
        .query()
        .table_name(table)
        .key_condition_expression("tenant_id = :t")
        .expression_attribute_values(":t", AttributeValue::S(tenant.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .find(|item| match sk_prefix {
            None => true,
            Some(prefix) => item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|sk| sk.starts_with(prefix)),
        })
        .cloned()
        .unwrap_or_else(|| panic!("no item in {table} for {tenant}"))
}

/// Real items keystead wrote for the bench tenant, reused as the shape of the floor's writes.
async fn templates(
    ddb: &aws_sdk_dynamodb::Client,
    store: &DynamoStore,
    tables: &Tables,
    tenant: &str,
    sender: &Email,
) -> Templates {
    let license = first_item(ddb, &tables.licenses, tenant, Some("LICENSE#")).await;
    let payment = first_item(ddb, &tables.payments, tenant, None).await;
    let event = first_item(ddb, &tables.events, tenant, Some("SALE#")).await;
    let audit = ddb
        .query()
        .table_name(&tables.events)
        .key_condition_expression("tenant_id = :t AND begins_with(sk, :p)")
        .expression_attribute_values(":t", AttributeValue::S(tenant.to_owned()))
        .expression_attribute_values(":p", AttributeValue::S("AUDIT#".to_owned()))
        .limit(2)
        .send()
        .await
        .unwrap()
        .items()
        .to_vec();
    assert_eq!(audit.len(), 2, "the bench's sales wrote their audit events");
    // The key is sealed at rest: the email is composed from the license as the store opens it.
    let key_hash = license["key_hash"].as_s().unwrap().clone();
    let parsed: License = keystead::storage::Store::get_license(
        store,
        &TenantId::parse(tenant).unwrap(),
        &keystead::domain::KeyHash::from_stored(key_hash),
    )
    .await
    .unwrap()
    .unwrap();
    let email = keystead::mail::compose_key_email(sender, &parsed);
    Templates {
        license,
        payment,
        event,
        audit,
        email,
    }
}

fn with(mut item: Item, attr: &str, value: String) -> Item {
    item.insert(attr.to_owned(), AttributeValue::S(value));
    item
}

fn put_if_new(table: &str, item: Item, key_attr: &str) -> TransactWriteItem {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(format!("attribute_not_exists({key_attr})"))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .unwrap();
    TransactWriteItem::builder().put(put).build()
}

/// One new sale's unavoidable calls, back to back; the round's latency in ms. With `outbox`, the transaction also
/// puts the sale's two audit events (the outbox rows, issue 25); without, it is the floor before them.
async fn floor_round(
    ddb: &aws_sdk_dynamodb::Client,
    ses: &aws_sdk_ses::Client,
    tables: &Tables,
    tenant: &str,
    t: &Templates,
    outbox: bool,
) -> f64 {
    use aws_sdk_ses::types::{Body, Content, Destination, Message};
    let sale_id = format!("{}==", unique("F"));
    let key_hash = keystead::domain::sha256_hex(&unique("key"));
    let license_sk = format!("LICENSE#{key_hash}");
    let license = with(
        with(t.license.clone(), "sk", license_sk.clone()),
        "key_hash",
        key_hash.clone(),
    );
    let payment = with(t.payment.clone(), "sale_id", sale_id.clone());
    let event = with(t.event.clone(), "sk", format!("SALE#{sale_id}"));
    // The buyer's portal finds a license by address through this pointer, written with the sale.
    let pointer: Item = [
        ("tenant_id", tenant.to_owned()),
        ("sk", format!("EMAIL#{}#{key_hash}", unique("address"))),
        ("key_hash", key_hash.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), AttributeValue::S(v)))
    .collect();
    let to = format!("{}@example.com", unique("floor"));
    let content = |data: &str| {
        Content::builder()
            .data(data)
            .charset("UTF-8")
            .build()
            .unwrap()
    };

    let started = Instant::now();
    ddb.query()
        .table_name(&tables.tenants)
        .key_condition_expression("tenant_id = :t")
        .expression_attribute_values(":t", AttributeValue::S(tenant.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let check = ConditionCheck::builder()
        .table_name(&tables.events)
        .key("tenant_id", AttributeValue::S(tenant.to_owned()))
        .key("sk", AttributeValue::S(format!("MARKER#{sale_id}")))
        .condition_expression("attribute_not_exists(sk)")
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .unwrap();
    let mut transaction = ddb
        .transact_write_items()
        .transact_items(put_if_new(&tables.events, event, "sk"))
        .transact_items(put_if_new(&tables.licenses, license, "sk"))
        .transact_items(put_if_new(&tables.payments, payment, "sale_id"))
        .transact_items(TransactWriteItem::builder().condition_check(check).build())
        .transact_items(put_if_new(&tables.licenses, pointer, "sk"));
    if outbox {
        for item in &t.audit {
            let row = with(item.clone(), "sk", format!("AUDIT#evt_{}", unique("f")));
            let put = Put::builder()
                .table_name(&tables.events)
                .set_item(Some(row))
                .build()
                .unwrap();
            transaction = transaction.transact_items(TransactWriteItem::builder().put(put).build());
        }
    }
    transaction.send().await.unwrap();
    let sent = ses
        .send_email()
        .source(t.email.from.as_str())
        .destination(Destination::builder().to_addresses(&to).build())
        .message(
            Message::builder()
                .subject(content(&t.email.subject))
                .body(
                    Body::builder()
                        .text(content(&t.email.text))
                        .html(content(&t.email.html))
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    ddb.update_item()
        .table_name(&tables.licenses)
        .key("tenant_id", AttributeValue::S(tenant.to_owned()))
        .key("sk", AttributeValue::S(license_sk))
        .condition_expression("attribute_exists(sk)")
        .update_expression(
            "SET email_status = :status, email_message_id = :id REMOVE email_claim_until",
        )
        .expression_attribute_values(":status", AttributeValue::S("sent".to_owned()))
        .expression_attribute_values(":id", AttributeValue::S(sent.message_id().to_owned()))
        .send()
        .await
        .unwrap();
    ms(started.elapsed())
}

// ---------------------------------------------------------------------------------------------------------------
// A minimal Lambda Runtime API, for cold start and memory.

struct RuntimeApi {
    server: tiny_http::Server,
    port: u16,
}

enum Polled {
    Next(tiny_http::Request),
    Response(String),
    Error(String),
}

impl RuntimeApi {
    /// The listening socket has TCP_NODELAY, which the accepted connections inherit: tiny_http writes a response's
    /// head and body separately, and with Nagle's algorithm the body waited for the client's delayed ACK (~40 ms
    /// on every invocation after a connection's first, even the hello-world's): this bench's artifact, not
    /// Lambda's.
    fn new() -> Self {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_tcp_nodelay(true).unwrap();
        let address: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        socket.bind(&address.into()).unwrap();
        socket.listen(128).unwrap();
        let listener = std::net::TcpListener::from(socket);
        let server = tiny_http::Server::from_listener(listener, None).unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        Self { server, port }
    }

    /// The function's next call to the Runtime API (answering init errors and responses itself).
    fn poll(&self, timeout: Duration) -> Option<Polled> {
        let mut request = self.server.recv_timeout(timeout).ok()??;
        let url = request.url().to_owned();
        if url.ends_with("/runtime/invocation/next") {
            return Some(Polled::Next(request));
        }
        let mut body = String::new();
        let _ = request.as_reader().read_to_string(&mut body);
        let _ = request.respond(tiny_http::Response::from_string("{}").with_status_code(202));
        if url.ends_with("/response") {
            Some(Polled::Response(body))
        } else {
            Some(Polled::Error(format!("{url}: {body}")))
        }
    }

    fn deliver(next: tiny_http::Request, event: &str) {
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 30_000;
        let header = |name: &str, value: &str| tiny_http::Header::from_bytes(name, value).unwrap();
        let response = tiny_http::Response::from_string(event)
            .with_header(header("Content-Type", "application/json"))
            .with_header(header("Lambda-Runtime-Aws-Request-Id", &unique("inv")))
            .with_header(header("Lambda-Runtime-Deadline-Ms", &deadline.to_string()))
            .with_header(header(
                "Lambda-Runtime-Invoked-Function-Arn",
                "arn:aws:lambda:us-east-1:123456789012:function:keystead-api",
            ))
            .with_header(header(
                "Lambda-Runtime-Trace-Id",
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
            ));
        let _ = next.respond(response);
    }

    /// Starts a function binary as Lambda does, pointed at this Runtime API, with the bench's environment and
    /// `env` on top.
    fn spawn(&self, binary: &str, env: &[(&str, String)]) -> Child {
        Command::new(binary)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", self.port))
            .env("AWS_LAMBDA_FUNCTION_NAME", "keystead-api")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/05/04/[$LATEST]bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/keystead-api")
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("_HANDLER", "bootstrap")
            .env("LAMBDA_TASK_ROOT", "/var/task")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {binary}: {e}"))
    }

    /// Waits for the function to take its next event.
    fn next(&self) -> tiny_http::Request {
        loop {
            match self.poll(Duration::from_secs(60)) {
                Some(Polled::Next(next)) => return next,
                Some(Polled::Error(e)) => panic!("the function reported an error: {e}"),
                Some(Polled::Response(_)) => continue,
                None => panic!("the function did not poll the Runtime API within 60 s"),
            }
        }
    }

    /// Hands over an event and waits for its answer.
    fn invoke(&self, next: tiny_http::Request, event: &str) -> (Value, Duration) {
        let started = Instant::now();
        Self::deliver(next, event);
        match self.poll(Duration::from_secs(60)) {
            Some(Polled::Response(body)) => (
                serde_json::from_str(&body).unwrap_or(Value::Null),
                started.elapsed(),
            ),
            Some(Polled::Error(e)) => panic!("the invocation failed: {e}"),
            Some(Polled::Next(_)) => panic!("polled again without answering"),
            None => panic!("no answer within 60 s"),
        }
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A new sale's AWS calls in the order it makes them (the requests-per-ping table counts the same).
const NEW_SALE_CALLS: [&str; 4] = [
    "DynamoDB `Query` (tenant + products)",
    "DynamoDB `TransactWriteItems` (license, payment, records)",
    "SES `SendEmail` (the key email)",
    "DynamoDB `UpdateItem` (email recorded as sent)",
];

/// Requests handed to each fresh process in the cold-start runs: the first, then warm ones of the same kind.
const COLD_REQUESTS: usize = 6;

/// One start of a binary: spawn → first poll, each request's latency (the first, then the warm ones after it in
/// the same process, through the same Runtime API), and whether every answer was a 200. Started with timing
/// proxies in front of its AWS endpoints, also what each request waited on them.
struct ColdRun {
    to_poll: f64,
    latencies: Vec<f64>,
    /// One per request, empty without proxies.
    waits: Vec<Waited>,
    all_ok: bool,
}

impl ColdRun {
    fn first(&self) -> f64 {
        self.latencies[0]
    }

    /// The median warm request.
    fn warm(&self) -> f64 {
        median(self.latencies[1..].to_vec())
    }

    fn first_waited(&self) -> f64 {
        ms(self.waits[0].time())
    }

    fn warm_waited(&self) -> f64 {
        median(self.waits[1..].iter().map(|w| ms(w.time())).collect())
    }
}

/// The timing proxies of a split run, and the endpoint variables that send the function through them.
struct Proxied {
    proxies: Vec<TimingProxy>,
    env: Vec<(&'static str, String)>,
}

impl Proxied {
    /// One proxy per endpoint variable, in front of the endpoint it names (`http://host:port`).
    fn new(vars: &[&'static str]) -> Self {
        let proxies: Vec<TimingProxy> = vars
            .iter()
            .map(|var| TimingProxy::start(env(var).trim_start_matches("http://").to_owned()))
            .collect();
        let env = vars
            .iter()
            .zip(&proxies)
            .map(|(var, proxy)| (*var, format!("http://127.0.0.1:{}", proxy.port)))
            .collect();
        Self { proxies, env }
    }

    /// What every proxy saw since the last call, its exchanges in the order they started.
    fn take(&self) -> Waited {
        let mut all = Waited::default();
        for proxy in &self.proxies {
            let waited = proxy.take();
            all.connections += waited.connections;
            all.exchanges.extend(waited.exchanges);
        }
        all.exchanges.sort_by_key(|exchanged| exchanged.started);
        all
    }
}

fn cold_start(
    api: &RuntimeApi,
    binary: &str,
    events: &[String],
    proxied: Option<&Proxied>,
) -> ColdRun {
    let started = Instant::now();
    let child = api.spawn(binary, proxied.map_or(&[][..], |p| &p.env));
    let mut next = api.next();
    let to_poll = ms(started.elapsed());
    let mut latencies = Vec::with_capacity(events.len());
    let mut waits = Vec::new();
    let mut all_ok = true;
    for event in events {
        if let Some(proxied) = proxied {
            proxied.take();
        }
        let (answer, latency) = api.invoke(next, event);
        latencies.push(ms(latency));
        if let Some(proxied) = proxied {
            waits.push(proxied.take());
        }
        all_ok &= answer["statusCode"].as_u64() == Some(200);
        // Take the function's next poll: the next event, or idle when stopped.
        next = api.next();
    }
    stop(child);
    ColdRun {
        to_poll,
        latencies,
        waits,
        all_ok,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------------------------------------------
// Over HTTP through `cargo lambda watch`.

fn over_http(url: &str, pings: &Pings, kind: Kind, n: usize) -> (Vec<f64>, usize) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut samples = Vec::with_capacity(n);
    let mut wrong = 0;
    for _ in 0..n {
        let (body, token) = pings.form(kind);
        let target = format!(
            "{url}/webhooks/gumroad/{}?token={}",
            pings.seeded.tenant_id,
            enc(&token)
        );
        let started = Instant::now();
        let result = agent
            .post(&target)
            .header("content-type", "application/x-www-form-urlencoded")
            .send(&body);
        let (status, text) = match result {
            Ok(mut response) => (
                response.status().as_u16(),
                response.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => (0, e.to_string()),
        };
        samples.push(ms(started.elapsed()));
        if !kind.answered_right(status, &text) {
            wrong += 1;
            if wrong <= 3 {
                eprintln!("bench: over HTTP {kind:?} answered {status} {text}");
            }
        }
    }
    (samples, wrong)
}

// ---------------------------------------------------------------------------------------------------------------

async fn seed(store: &DynamoStore, sender: &Email) -> Seeded {
    let tenant_id = TenantId::parse(&unique("bench")).unwrap();
    let token = WebhookToken::generate().unwrap();
    // Seats enough that the hourly budget of new machines (the seat limit, at least 10) never stops the
    // activation rows, which activate thousands of machines on one license.
    let product = Product {
        activation_limit: 100_000,
        ..Product::new(
            ProductId::parse("myapp").unwrap(),
            "MyApp".to_owned(),
            KeyPrefix::parse("ACME").unwrap(),
            "2026-01-01T00:00:00Z".to_owned(),
        )
    };
    let mut permalinks = BTreeMap::new();
    permalinks.insert(
        Permalink::parse("myapp-pro").unwrap(),
        product.product_id.clone(),
    );
    let tenant = Tenant {
        seller_id: Some("kL0psVL2admJSYRNs-OCMg==".to_owned()),
        permalinks,
        // The Gumroad-compatible verify row needs the route on.
        gumroad_verify: true,
        ..Tenant::new(
            tenant_id.clone(),
            token.hash().to_hex(),
            sender.clone(),
            "2026-01-01T00:00:00Z".to_owned(),
        )
    };
    store.create_tenant(&tenant).await.unwrap();
    store.create_product(&tenant_id, &product).await.unwrap();
    Seeded {
        tenant_id: tenant_id.to_string(),
        token: token.expose().to_owned(),
    }
}

fn latency_row(report: &mut Report, label: &str, samples: &mut [f64], wrong: usize) -> Stats {
    let s = stats(samples);
    report.line(format!(
        "| {label} | {} | {:.2} | {:.2} | {:.2} | {wrong} |",
        s.n, s.p50, s.p99, s.max
    ));
    s
}

/// The key of a license sold now: the license API's section and its profile work on one.
async fn sold_key(app: &Api, pings: &Pings) -> String {
    let (status, body) = invoke(app, &pings.event(Kind::NewSale)).await.parts();
    assert_eq!(status, 200, "{body}");
    let sold: Value = serde_json::from_str(&body).unwrap();
    sold["license"]["key"].as_str().unwrap().to_owned()
}

// The function's own runtime (keystead-api/src/main.rs): one thread, so that in-process calls, their floors and the
// SDK's connections are driven as in Lambda, without another worker's wake-ups (BENCHMARKS.md, run 13).
#[tokio::main(flavor = "current_thread")]
async fn main() {
    // `cargo test --all-targets` (the test command) runs bench targets too, without `--bench`: the benchmark
    // itself runs only through `scripts/bench` (or `cargo bench`), which pass it.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("benchmarks run with scripts/bench; nothing to do under cargo test");
        return;
    }
    let n = env_usize("BENCH_N", 2_000);
    let conc_n = env_usize("BENCH_CONCURRENCY_N", 1_000);
    let cold_runs = env_usize("BENCH_COLD_RUNS", 20);
    let memory_n = env_usize("BENCH_MEMORY_N", 10_000);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let out = std::env::var("BENCH_OUT")
        .ok()
        .map(std::path::PathBuf::from);
    if let Some(path) = &out {
        let _ = std::fs::remove_file(path);
    }
    let mut report = Report(out);
    let sender = Email::parse(&env("KEYSTEAD_LOCAL_SENDER")).unwrap();
    let tables = Tables::from_env().unwrap_or_else(|e| panic!("{e}"));

    // keystead's own SDK configuration and timeouts, with a counting interceptor on each client.
    let sdk = keystead::config::aws().await;
    let ddb_count = Arc::new(Counter::default());
    let ses_count = Arc::new(Counter::default());
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(Counting(ddb_count.clone()))
            .build(),
    );
    let ses = aws_sdk_ses::Client::from_conf(
        aws_sdk_ses::config::Builder::from(&sdk)
            .interceptor(Counting(ses_count.clone()))
            .build(),
    );
    // License keys sealed at rest, as the function's store does.
    let vault: Arc<dyn keystead::signing::KeyVault> =
        Arc::new(keystead::config::kms_vault(&sdk).expect("KEYSTEAD_SIGNING_KEY_ID"));
    let plain = DynamoStore::new(ddb.clone(), tables.clone());
    let store = plain
        .clone()
        .with_key_cipher(Arc::new(keystead::portal::KeysAtRest::new(
            keystead::portal::MacKeys::new(vault),
            plain,
        )));
    let app = App::new(
        Arc::new(store.clone()),
        Arc::new(SesMailer::new(ses.clone())),
        Arc::new(keystead::config::kms_vault(&sdk).expect("KEYSTEAD_SIGNING_KEY_ID")),
    );
    // The router is built once, as the function builds it once per process.
    let app = keystead::http::router(app);
    let pings = Arc::new(Pings {
        seeded: seed(&store, &sender).await,
        sold: Mutex::new(Vec::new()),
        next_dup: AtomicUsize::new(0),
    });

    report.line(format!(
        "Machine: {cores} cores ({}), load average at start {}.",
        std::env::consts::ARCH,
        load()
    ));
    report.line("");

    // Warm-up: connections, the allocator, DynamoDB Local's JIT.
    for kind in Kind::ALL {
        sequential(&app, &pings, kind, 100).await;
    }
    // `BENCH_ONLY=releases`: the release feeds and patches alone (issue 26).
    if std::env::var("BENCH_ONLY").as_deref() == Ok("releases") {
        releases_section(
            &mut report,
            &app,
            &pings,
            &store,
            &ddb,
            &ddb_count,
            &ses,
            &sdk,
            &tables,
            n,
        )
        .await;
        return;
    }

    // The license API's section, on one license the bench sells for it: alone with `BENCH_ONLY=license`, else
    // after the sales.
    let license_section = async |report: &mut Report| {
        let key = sold_key(&app, &pings).await;
        let n = env_usize("BENCH_LICENSE_N", n);
        let tenant = &pings.seeded.tenant_id;
        license_api::section(report, &app, &ddb, &ddb_count, &tables, tenant, &key, n).await;
    };
    if std::env::var("BENCH_ONLY").as_deref() == Ok("license") {
        license_section(&mut report).await;
        return;
    }

    // `BENCH_PROFILE_SALES=<n>`: only n new sales, then stop, for a profiler (`perf record -p`) to see where a
    // sale's time goes inside the function (BENCHMARKS.md, run 9).
    if let Some(profile_n) = std::env::var("BENCH_PROFILE_SALES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        eprintln!(
            "bench: profiling {profile_n} new sales (pid {})",
            std::process::id()
        );
        std::thread::sleep(Duration::from_secs(2));
        let (mut samples, wrong) = sequential(&app, &pings, Kind::NewSale, profile_n).await;
        eprintln!(
            "bench: {profile_n} new sales, p50 {:.2} ms, {wrong} wrong",
            stats(&mut samples).p50
        );
        return;
    }

    // `BENCH_PROFILE_LICENSE=<n>`: only n license API calls of one kind (`BENCH_PROFILE_CASE`, 0 = validate, the
    // order of the license API's table), then stop, for a profiler.
    if let Some(profile_n) = std::env::var("BENCH_PROFILE_LICENSE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        license_api::profile(
            &app,
            &ddb,
            &tables,
            &pings.seeded.tenant_id,
            &sold_key(&app, &pings).await,
            env_usize("BENCH_PROFILE_CASE", 0),
            profile_n,
        )
        .await;
        return;
    }

    // Requests per ping, from the interceptor.
    report.line("### AWS requests per ping (counted by an SDK interceptor)");
    report.line("");
    report.line("| ping | DynamoDB requests | SES requests | DynamoDB operations |");
    report.line("|---|---:|---:|---|");
    let per = 20;
    for kind in Kind::ALL {
        ddb_count.take();
        ses_count.take();
        sequential(&app, &pings, kind, per).await;
        let (d, ops) = ddb_count.take();
        let (s, _) = ses_count.take();
        let ops: Vec<String> = ops
            .iter()
            .map(|(op, c)| format!("{op} × {}", *c as f64 / per as f64))
            .collect();
        report.line(format!(
            "| {} | {} | {} | {} |",
            kind.label(),
            d as f64 / per as f64,
            s as f64 / per as f64,
            if ops.is_empty() {
                "none".to_owned()
            } else {
                ops.join(", ")
            }
        ));
    }
    report.line("");
    report.line(format!(
        "(mean over {per} pings of each kind; each attempt counts, so a retry would show.)"
    ));
    report.line("");

    // Latency in-process.
    report.line(format!(
        "### Ping latency in-process (the function's adapter, API Gateway v2 event JSON in, response JSON out), {n} sequential pings each"
    ));
    report.line("");
    report.line("| ping | n | p50 ms | p99 ms | max ms | wrong answers |");
    report.line("|---|---:|---:|---:|---:|---:|");
    let mut new_sale_p50 = 0.0;
    for kind in Kind::ALL {
        let (mut samples, wrong) = sequential(&app, &pings, kind, n).await;
        let s = latency_row(&mut report, kind.label(), &mut samples, wrong);
        if kind == Kind::NewSale {
            new_sale_p50 = s.p50;
        }
    }
    report.line(format!("\nLoad average after: {}.", load()));
    report.line("");

    // The floor.
    let templates = templates(&ddb, &store, &tables, &pings.seeded.tenant_id, &sender).await;
    for i in 0..50 {
        floor_round(
            &ddb,
            &ses,
            &tables,
            &pings.seeded.tenant_id,
            &templates,
            i % 2 == 0,
        )
        .await;
    }
    ddb_count.take();
    ses_count.take();
    // keystead's new sale and the floors with and without the outbox rows, interleaved round by round: each meets
    // DynamoDB Local in the same state (its JIT, its garbage collector, the tables' size) and the machine's load
    // shifts all three alike. (Measured one after the other, the sales above ran before DynamoDB Local had warmed
    // up as much as it has for the floor: run 8's 1.33× was partly that.)
    let (mut floor, mut bare, mut sales) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut sales_wrong, mut fd, mut fs) = (0, 0, 0);
    for _ in 0..n {
        let event = pings.event(Kind::NewSale);
        let started = Instant::now();
        let answered = invoke(&app, &event).await;
        sales.push(ms(started.elapsed()));
        let (status, body) = answered.parts();
        if !Kind::NewSale.answered_right(status, &body) {
            sales_wrong += 1;
        }
        ddb_count.take();
        ses_count.take();
        floor.push(
            floor_round(
                &ddb,
                &ses,
                &tables,
                &pings.seeded.tenant_id,
                &templates,
                true,
            )
            .await,
        );
        bare.push(
            floor_round(
                &ddb,
                &ses,
                &tables,
                &pings.seeded.tenant_id,
                &templates,
                false,
            )
            .await,
        );
        fd += ddb_count.take().0;
        fs += ses_count.take().0;
    }
    report.line("### The physical floor: a new sale's unavoidable calls, straight from the SDK, back to back");
    report.line("");
    report.line(
        "Query (consistent, the tenant partition: tenant + products) → TransactWriteItems (4 conditional puts (event, license, payment, the buyer's email pointer) + 1 condition check (the sale's orphans) \
         + the 2 audit events (`license.created`, `sale.recorded`: the webhook outbox), items copied from ones keystead wrote) → SES SendEmail (keystead's composed email) → UpdateItem (email sent), same clients and endpoints. \
         The floor before the outbox (the same without the 2 audit puts) is measured in the same loop, round for round.",
    );
    report.line("");
    report.line("| | n | p50 ms | p99 ms | max ms | requests per round |");
    report.line("|---|---:|---:|---:|---:|---|");
    let f = stats(&mut floor);
    let b = stats(&mut bare);
    report.line(format!(
        "| floor (4 calls, 7 transaction items) | {} | {:.2} | {:.2} | {:.2} | {} DynamoDB + {} SES |",
        f.n,
        f.p50,
        f.p99,
        f.max,
        fd as f64 / (2 * n) as f64,
        fs as f64 / (2 * n) as f64
    ));
    report.line(format!(
        "| floor before the outbox (4 calls, 5 items) | {} | {:.2} | {:.2} | {:.2} | the same |",
        b.n, b.p50, b.p99, b.max
    ));
    report.line("");
    let k = stats(&mut sales);
    report.line(format!(
        "| keystead's new sale, round for round with the floors | {} | {:.2} | {:.2} | {:.2} | 3 DynamoDB + 1 SES ({sales_wrong} wrong answers) |",
        k.n, k.p50, k.p99, k.max
    ));
    report.line("");
    report.line(format!(
        "**keystead new sale p50 / floor p50 = {:.2} / {:.2} = {:.2}×** (interleaved; the sequential table above: {:.2} ms); the outbox rows cost the floor {:+.2} ms at p50 \
         ({:.2}×), no request (they ride in the sale's transaction).",
        k.p50,
        f.p50,
        k.p50 / f.p50,
        new_sale_p50,
        f.p50 - b.p50,
        f.p50 / b.p50
    ));
    report.line("");

    license_section(&mut report).await;

    // The portal's sign-in answers, buyers and strangers.
    signin::section(
        &mut report,
        &app,
        &store,
        &ses,
        &sdk,
        &pings.seeded,
        env_usize("BENCH_SIGNIN_N", 300),
    )
    .await;

    releases_section(
        &mut report,
        &app,
        &pings,
        &store,
        &ddb,
        &ddb_count,
        &ses,
        &sdk,
        &tables,
        n,
    )
    .await;

    // Concurrency.
    report.line(format!(
        "### Concurrency: new sales from concurrent senders, in-process ({conc_n} pings per level, {cores} cores)"
    ));
    report.line("");
    report.line("| senders | pings | pings/s | p50 ms | p99 ms | max ms | wrong answers |");
    report.line("|---:|---:|---:|---:|---:|---:|---:|");
    for senders in [1usize, 8, 32] {
        // On one thread, as the function runs (a current-thread runtime): the senders are local tasks.
        let local = tokio::task::LocalSet::new();
        let issued = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..senders {
            let app = app.clone();
            let pings = pings.clone();
            let issued = issued.clone();
            tasks.push(local.spawn_local(async move {
                let mut samples = Vec::new();
                let mut wrong = 0usize;
                while issued.fetch_add(1, Ordering::SeqCst) < conc_n {
                    let event = pings.event(Kind::NewSale);
                    let t = Instant::now();
                    let answered = invoke(&app, &event).await;
                    samples.push(ms(t.elapsed()));
                    let (status, body) = answered.parts();
                    if !Kind::NewSale.answered_right(status, &body) {
                        wrong += 1;
                        if wrong <= 2 {
                            eprintln!("bench: concurrent new sale answered {status} {body}");
                        }
                    }
                }
                (samples, wrong)
            }));
        }
        let mut samples = Vec::new();
        let mut wrong = 0;
        let finished = local
            .run_until(async {
                let mut finished = Vec::new();
                for task in tasks {
                    finished.push(task.await.unwrap());
                }
                finished
            })
            .await;
        for (s, w) in finished {
            samples.extend(s);
            wrong += w;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let s = stats(&mut samples);
        report.line(format!(
            "| {senders} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {wrong} |",
            s.n,
            s.n as f64 / elapsed,
            s.p50,
            s.p99,
            s.max
        ));
    }
    report.line(format!("\nLoad average after: {}.", load()));
    report.line("");

    // Whole path over HTTP through cargo lambda watch, when scripts/bench started it.
    if let Ok(url) = std::env::var("BENCH_WATCH_URL") {
        let http_n = env_usize("BENCH_HTTP_N", n);
        report.line(format!(
            "### Whole path over HTTP: `cargo lambda watch --release` on {url}, {http_n} sequential pings each"
        ));
        report.line("");
        report.line("| ping | n | p50 ms | p99 ms | max ms | wrong answers |");
        report.line("|---|---:|---:|---:|---:|---:|");
        let pings = pings.clone();
        let rows = tokio::task::spawn_blocking(move || {
            // Warm-up: the first request makes cargo lambda start the function.
            for kind in Kind::ALL {
                over_http(&url, &pings, kind, 20);
            }
            Kind::ALL
                .iter()
                .map(|&kind| (kind, over_http(&url, &pings, kind, http_n)))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        for (kind, (mut samples, wrong)) in rows {
            latency_row(&mut report, kind.label(), &mut samples, wrong);
        }
        report.line(format!("\nLoad average after: {}.", load()));
        report.line("");
    }

    // Cold start and memory under a local Runtime API.
    if let (Ok(api_bin), Ok(hello_bin)) = (
        std::env::var("BENCH_API_BIN"),
        std::env::var("BENCH_HELLO_BIN"),
    ) {
        let runtime = RuntimeApi::new();
        let pings2 = pings.clone();
        let (api_runs, hello_runs) = tokio::task::spawn_blocking({
            let api_bin = api_bin.clone();
            move || {
                let mut api_runs = Vec::new();
                let mut hello_runs = Vec::new();
                for _ in 0..cold_runs {
                    let sales: Vec<String> = (0..COLD_REQUESTS)
                        .map(|_| pings2.event(Kind::NewSale))
                        .collect();
                    let tests: Vec<String> = (0..COLD_REQUESTS)
                        .map(|_| pings2.event(Kind::TestPing))
                        .collect();
                    api_runs.push(cold_start(&runtime, &api_bin, &sales, None));
                    hello_runs.push(cold_start(&runtime, &hello_bin, &tests, None));
                }
                (api_runs, hello_runs)
            }
        })
        .await
        .unwrap();
        let med = |runs: &[ColdRun], f: fn(&ColdRun) -> f64| median(runs.iter().map(f).collect());
        let api_poll = med(&api_runs, |r| r.to_poll);
        let hello_poll = med(&hello_runs, |r| r.to_poll);
        let api_first = med(&api_runs, |r| r.first());
        let api_warm = med(&api_runs, |r| r.warm());
        let hello_first = med(&hello_runs, |r| r.first());
        let hello_warm = med(&hello_runs, |r| r.warm());
        let api_ok = api_runs.iter().filter(|r| r.all_ok).count();
        report.line(format!(
            "### Cold start: spawn → first poll of a local Lambda Runtime API (median of {cold_runs} starts each, release builds)"
        ));
        report.line("");
        report.line(format!(
            "Each fresh process then gets {COLD_REQUESTS} requests through the same Runtime API: the first, and {} warm ones (their median).",
            COLD_REQUESTS - 1
        ));
        report.line("");
        report.line("| binary | spawn → first poll, median ms | min ms | max ms | first request, median ms | warm request, median ms |");
        report.line("|---|---:|---:|---:|---:|---:|");
        let range = |runs: &[ColdRun]| {
            let v: Vec<f64> = runs.iter().map(|r| r.to_poll).collect();
            (
                v.iter().cloned().fold(f64::INFINITY, f64::min),
                v.iter().cloned().fold(0.0, f64::max),
            )
        };
        let (amin, amax) = range(&api_runs);
        let (hmin, hmax) = range(&hello_runs);
        report.line(format!(
            "| `keystead-api` | {api_poll:.2} | {amin:.2} | {amax:.2} | {api_first:.2} | {api_warm:.2} (new sales; {api_ok}/{cold_runs} processes answered all 200) |"
        ));
        report.line(format!(
            "| `hello_lambda` (lambda_http hello-world) | {hello_poll:.2} | {hmin:.2} | {hmax:.2} | {hello_first:.2} | {hello_warm:.2} (no AWS calls) |"
        ));
        report.line("");
        report.line(format!(
            "**keystead-api / hello-world, spawn → first poll: {:.2}×; keystead-api first request / warm request: {:.2}×**",
            api_poll / hello_poll,
            api_first / api_warm
        ));
        report.line("");

        // The same starts again with timing proxies in front of DynamoDB and SES: what the first request's extra
        // time is made of.
        let pings4 = pings.clone();
        let split_runs = tokio::task::spawn_blocking({
            let api_bin = api_bin.clone();
            move || {
                let runtime = RuntimeApi::new();
                let proxied = Proxied::new(&["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SES"]);
                (0..cold_runs)
                    .map(|_| {
                        let sales: Vec<String> = (0..COLD_REQUESTS)
                            .map(|_| pings4.event(Kind::NewSale))
                            .collect();
                        cold_start(&runtime, &api_bin, &sales, Some(&proxied))
                    })
                    .collect::<Vec<ColdRun>>()
            }
        })
        .await
        .unwrap();
        let first = med(&split_runs, |r| r.first());
        let warm = med(&split_runs, |r| r.warm());
        let first_waited = med(&split_runs, ColdRun::first_waited);
        let warm_waited = med(&split_runs, ColdRun::warm_waited);
        let first_inside = med(&split_runs, |r| r.first() - r.first_waited());
        let warm_inside = med(&split_runs, |r| r.warm() - r.warm_waited());
        let connections = med(&split_runs, |r| r.waits[0].connections as f64);
        let warm_connections: usize = split_runs
            .iter()
            .flat_map(|r| r.waits[1..].iter().map(|w| w.connections))
            .sum();
        report.line(format!(
            "#### Where the first request's time goes ({cold_runs} more starts, DynamoDB and SES behind timing proxies)"
        ));
        report.line("");
        report.line(
            "Waiting = from the first byte of each AWS request to the last byte of its answer, summed, as the \
             proxies see it (new connections included); inside = the rest of the request's time through the \
             Runtime API. Medians per column.",
        );
        report.line("");
        report.line("| request | total ms | waiting on DynamoDB and SES ms | inside the function ms | connections opened |");
        report.line("|---|---:|---:|---:|---:|");
        report.line(format!(
            "| first | {first:.2} | {first_waited:.2} | {first_inside:.2} | {connections:.0} |"
        ));
        report.line(format!(
            "| warm | {warm:.2} | {warm_waited:.2} | {warm_inside:.2} | {warm_connections} in all {} warm requests |",
            cold_runs * (COLD_REQUESTS - 1)
        ));
        report.line("");
        report.line(format!(
            "**First − warm: {:.2} ms, of which waiting on AWS {:.2} ms and inside the function {:.2} ms (first / warm {:.2}× through the proxies).**",
            first - warm,
            first_waited - warm_waited,
            first_inside - warm_inside,
            first / warm
        ));
        report.line("");
        // Call by call, for the processes whose every request made the new sale's four calls.
        let four: Vec<&ColdRun> = split_runs
            .iter()
            .filter(|r| {
                r.waits
                    .iter()
                    .all(|w| w.exchanges.len() == NEW_SALE_CALLS.len())
            })
            .collect();
        report.line(format!(
            "Each AWS call of a new sale, waited on (median ms; the {} of {cold_runs} processes whose every request made exactly these calls):",
            four.len()
        ));
        report.line("");
        report.line("| call | first request | warm requests | first − warm | of the first, still sending the request | of a warm one |");
        report.line("|---|---:|---:|---:|---:|---:|");
        for (i, name) in NEW_SALE_CALLS.iter().enumerate() {
            if four.is_empty() {
                break;
            }
            let first = |part: fn(&Exchanged) -> Duration| {
                median(
                    four.iter()
                        .map(|r| ms(part(&r.waits[0].exchanges[i])))
                        .collect(),
                )
            };
            let warm = |part: fn(&Exchanged) -> Duration| {
                median(
                    four.iter()
                        .flat_map(|r| r.waits[1..].iter().map(move |w| ms(part(&w.exchanges[i]))))
                        .collect(),
                )
            };
            let (took, sending) = (|e: &Exchanged| e.took, |e: &Exchanged| e.sending);
            report.line(format!(
                "| {name} | {:.2} | {:.2} | {:+.2} | {:.2} | {:.2} |",
                first(took),
                warm(took),
                first(took) - warm(took),
                first(sending),
                warm(sending)
            ));
        }
        report.line("");

        // Memory: one process, many pings through the Runtime API.
        let pings3 = pings.clone();
        let (hwm_start, hwm_end, rss_end, served, wrong, elapsed) =
            tokio::task::spawn_blocking(move || {
                let runtime = RuntimeApi::new();
                let child = runtime.spawn(&api_bin, &[]);
                let pid = child.id();
                let mut next = runtime.next();
                let hwm_start = rss_kib(pid, "VmHWM:");
                let mut wrong = 0;
                let started = Instant::now();
                for i in 0..memory_n {
                    let kind = match i % 10 {
                        0..=3 => Kind::NewSale,
                        4..=7 => Kind::Duplicate,
                        8 => Kind::TestPing,
                        _ => Kind::AuthFailure,
                    };
                    let (answer, _) = runtime.invoke(next, &pings3.event(kind));
                    let status = answer["statusCode"].as_u64().unwrap_or(0) as u16;
                    if !kind.answered_right(status, answer["body"].as_str().unwrap_or_default()) {
                        wrong += 1;
                    }
                    next = runtime.next();
                }
                let elapsed = started.elapsed().as_secs_f64();
                let hwm_end = rss_kib(pid, "VmHWM:");
                let rss_end = rss_kib(pid, "VmRSS:");
                drop(next);
                stop(child);
                (hwm_start, hwm_end, rss_end, memory_n, wrong, elapsed)
            })
            .await
            .unwrap();
        report.line(format!(
            "### Memory: release `keystead-api` under the local Runtime API, {served} pings (40% new sales, 40% duplicates, 10% test, 10% auth failures)"
        ));
        report.line("");
        report.line("| peak RSS (VmHWM) after init | peak RSS after all pings | RSS at the end | pings/s (sequential) | wrong answers |");
        report.line("|---:|---:|---:|---:|---:|");
        report.line(format!(
            "| {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.0} | {wrong} |",
            hwm_start as f64 / 1024.0,
            hwm_end as f64 / 1024.0,
            rss_end as f64 / 1024.0,
            served as f64 / elapsed
        ));
        report.line("");
    }
    dispatch::section(&mut report, &sdk, &sender).await;
    report.line(format!("Load average at the end: {}.", load()));
}
