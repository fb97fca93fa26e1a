//! What the function logs, captured through the production JSON subscriber (`telemetry::try_init_json` with the
//! production default filter): full pings, refused and failing pings and license API calls are logged with their
//! tenant, sale id and outcome, and never with a webhook token, a license key or a buyer's full email address,
//! from keystead's own lines or the AWS SDK's; not even when `RUST_LOG` turns everything up to trace.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use common::*;
use keystead::domain::EmailFailure;
use keystead::mail::{KeyEmail, MailError, Mailer};
use serde_json::{Value, json};

/// Every log line the process wrote, shared by the tests in this file (a subscriber is global).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Capture {
    type Writer = Capture;

    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        // The production default, not RUST_LOG: the test checks what a deployed function writes.
        let filter: tracing_subscriber::filter::Targets =
            keystead::telemetry::DEFAULT_FILTER.parse().unwrap();
        keystead::telemetry::try_init_json(filter, capture.clone()).unwrap();
        capture
    })
}

fn captured() -> String {
    String::from_utf8(capture().0.lock().unwrap().clone()).unwrap()
}

/// The captured lines that name `tenant`, parsed (every line must be JSON, as CloudWatch expects).
fn lines_about(logs: &str, tenant: &str) -> Vec<Value> {
    logs.lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        })
        .filter(|line| line.to_string().contains(tenant))
        .collect()
}

/// Fails naming the secret's kind, never printing the logs around it (they hold the secret).
fn assert_absent(logs: &str, what: &str, secret: &str) {
    let encoded = percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    let json_escaped = serde_json::to_string(secret).unwrap();
    for form in [secret, encoded.as_str(), json_escaped.trim_matches('"')] {
        if let Some(at) = logs.find(form) {
            let line = logs[..at].lines().count();
            panic!("the logs contain the {what} (line {line})");
        }
    }
}

fn has_line(lines: &[Value], fields: &Value) -> bool {
    let wanted = fields.as_object().unwrap();
    lines
        .iter()
        .any(|line| wanted.iter().all(|(k, v)| &line[k] == v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_and_license_calls_log_tenant_sale_and_outcome_but_no_secret() {
    capture();
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());

    // A full sale: license, payment and email.
    let reply = send(
        &stack.app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &buyer)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let key = reply.json()["license"]["key"].as_str().unwrap().to_owned();
    assert_eq!(emails_to(&buyer).len(), 1);
    // Gumroad's retry of it, a wrong token, a token one character off, a malformed body.
    let retry = format!("{}&retry_count=1", sale_body(&sale, &buyer));
    assert_eq!(
        send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), retry))
            .await
            .status,
        200
    );
    let mut off_by_one = t.token.clone();
    let last = off_by_one.pop().unwrap();
    off_by_one.push(if last == 'a' { 'b' } else { 'a' });
    for token in ["wrong", off_by_one.as_str()] {
        let reply = send(
            &stack.app,
            &Ping::new(&t.tenant_id, Some(token), sale_body(&sale_id(), &buyer)),
        )
        .await;
        assert_eq!(reply.status, 400);
    }
    let bad = format!("{}&email=%zz", sale_body(&sale_id(), &buyer));
    assert_eq!(
        send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), bad))
            .await
            .status,
        400
    );
    // The seller's app checks the key: validate, activate, a wrong product.
    for (action, body) in [
        ("validate", json!({"key": key, "product_id": "myapp"})),
        (
            "activate",
            json!({"key": key, "machine_id": "machine-1", "label": "Jane's laptop"}),
        ),
        ("validate", json!({"key": key, "product_id": "other"})),
    ] {
        let mut request = Ping::new(&t.tenant_id, None, body.to_string())
            .header("content-type", "application/json");
        request.path = format!("/v1/{}/licenses/{action}", t.tenant_id);
        assert!(matches!(send(&stack.app, &request).await.status, 200 | 404));
    }
    // The app's updater reads the release feeds, with the key in the URL (as electron-updater and Sparkle can) and
    // in a header.
    for (path, query, header) in [
        ("releases", vec![("key", key.clone())], None),
        ("appcast.xml", vec![], Some(format!("Bearer {key}"))),
    ] {
        let mut request = Ping::new(&t.tenant_id, None, "");
        request.method = "GET";
        request.path = format!("/v1/{}/products/myapp/{path}", t.tenant_id);
        request.query = query;
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        assert_eq!(send(&stack.app, &request).await.status, 200);
    }
    // A refund revokes the license.
    let refund = sale_body(&sale, &buyer)
        .replace("refunded=false", "refunded=true")
        .replace("resource_name=sale", "resource_name=refund");
    let reply = send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), refund)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // SES refuses the tenant's unverified sender: the license is kept, the ping gets a 503.
    let unverified = seed(
        &stack,
        Seed {
            sender: format!("{}@unverified.example", unique("seller")),
            ..Seed::default()
        },
    )
    .await;
    let (failed_sale, failed_buyer) = (sale_id(), common::buyer());
    let reply = send(
        &stack.app,
        &Ping::new(
            &unverified.tenant_id,
            Some(&unverified.token),
            sale_body(&failed_sale, &failed_buyer),
        ),
    )
    .await;
    assert_eq!(reply.status, 503);
    let failed_key = licenses(&stack, &unverified.tenant_id).await;
    let failed_key = key_of(&stack, &failed_key[0]).await;

    let logs = captured();
    let lines = lines_about(&logs, &t.tenant_id);
    assert!(
        has_line(
            &lines,
            &json!({"tenant": t.tenant_id, "sale_id": sale, "outcome": "created"})
        ),
        "{lines:#?}"
    );
    assert!(has_line(
        &lines,
        &json!({"tenant": t.tenant_id, "sale_id": sale, "outcome": "duplicate"})
    ));
    assert!(has_line(
        &lines,
        &json!({"tenant": t.tenant_id, "outcome": "unauthorized"})
    ));
    assert!(has_line(
        &lines,
        &json!({"tenant": t.tenant_id, "outcome": "bad_request"})
    ));
    assert!(has_line(
        &lines,
        &json!({"tenant": t.tenant_id, "action": "activate", "outcome": "ok"})
    ));
    assert!(has_line(
        &lines,
        &json!({"tenant": t.tenant_id, "feed": "json", "outcome": "ok"})
    ));
    assert!(has_line(
        &lines,
        &json!({"tenant": t.tenant_id, "sale_id": sale, "outcome": "event_applied"})
    ));
    let failed = lines_about(&logs, &unverified.tenant_id);
    assert!(
        has_line(
            &failed,
            &json!({"tenant": unverified.tenant_id, "sale_id": failed_sale, "outcome": "email_failed", "reason": "sender_not_verified", "level": "ERROR"})
        ),
        "{failed:#?}"
    );
    assert!(logs.contains("key email failed"), "the SES error is logged");

    for (what, secret) in [
        ("webhook token", t.token.as_str()),
        ("license key", key.as_str()),
        ("buyer's email", buyer.as_str()),
        ("second tenant's webhook token", unverified.token.as_str()),
        ("unsent license key", failed_key.as_str()),
        ("unsent buyer's email", failed_buyer.as_str()),
    ] {
        assert_absent(&logs, what, secret);
    }
}

/// SES in sandbox mode (every new account) refuses unverified recipients and names them in the error message.
struct SandboxSes;

#[async_trait]
impl Mailer for SandboxSes {
    async fn send(&self, email: &KeyEmail) -> Result<String, MailError> {
        Err(MailError::new(
            EmailFailure::RecipientNotVerified,
            format!(
                "service error: unhandled error (MessageRejected): Error {{ code: \"MessageRejected\", message: \"Email \
             address is not verified. The following identities failed the check in region US-EAST-1: {}\", \
             aws_request_id: \"4d2f1a5c-0b7e-4c8a-9a57-2f0d6e1b3c4d\" }}",
                email.to.as_str()
            ),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_error_that_names_the_buyer_does_not_put_the_address_in_the_logs() {
    capture();
    let stack = stack().await;
    let app = keystead::app::App {
        mailer: Arc::new(SandboxSes),
        ..stack.app.clone()
    };
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());
    let reply = send(
        &app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &buyer)),
    )
    .await;
    assert_eq!(reply.status, 503);

    let logs = captured();
    let lines = lines_about(&logs, &t.tenant_id);
    assert!(
        has_line(
            &lines,
            &json!({"tenant": t.tenant_id, "sale_id": sale, "outcome": "email_failed", "reason": "recipient_not_verified"})
        ),
        "{lines:#?}"
    );
    assert!(
        logs.contains("The following identities failed the check"),
        "the provider's error is logged"
    );
    assert_absent(&logs, "buyer's email", &buyer);
    assert_absent(&logs, "webhook token", &t.token);
    let key = licenses(&stack, &t.tenant_id).await;
    assert_absent(&logs, "license key", &key_of(&stack, &key[0]).await);
}

/// `RUST_LOG=trace` in production must not turn the SDK's wire logging (request and response bodies) on.
#[tokio::test]
async fn even_at_trace_level_the_sdk_logs_no_secret() {
    let capture = Capture::default();
    let subscriber = keystead::telemetry::json_subscriber(
        "trace"
            .parse::<tracing_subscriber::filter::Targets>()
            .unwrap(),
        capture.clone(),
    );
    // This test's runtime has one thread, so everything the SDK does for it is logged through this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());
    let reply = send(
        &stack.app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &buyer)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let key = reply.json()["license"]["key"].as_str().unwrap().to_owned();
    let mut request = Ping::new(
        &t.tenant_id,
        None,
        json!({"key": key, "machine_id": "m-1"}).to_string(),
    )
    .header("content-type", "application/json");
    request.path = format!("/v1/{}/licenses/activate", t.tenant_id);
    assert_eq!(send(&stack.app, &request).await.status, 200);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let sdk_debug = logs
        .lines()
        .filter(|l| {
            l.contains(r#""level":"DEBUG""#) && l.contains(r#""target":"aws_smithy_runtime"#)
        })
        .count();
    assert!(
        sdk_debug > 10,
        "the SDK's debug lines were captured ({sdk_debug})"
    );
    assert!(
        !logs
            .lines()
            .any(|l| l.contains(r#""level":"TRACE""#)
                && l.contains(r#""target":"aws_smithy_runtime"#)),
        "the SDK's runtime is capped at debug"
    );
    assert_absent(&logs, "webhook token", &t.token);
    assert_absent(&logs, "license key", &key);
    assert_absent(&logs, "buyer's email", &buyer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_logs_outcomes_but_no_link_cookie_token_key_or_address() {
    use common::portal::*;
    capture();
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let t = seed(&stack, Seed::default()).await;
    let buyer = buyer();
    let reply = send(
        &app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale_id(), &buyer)),
    )
    .await;
    let key = reply.json()["license"]["key"].as_str().unwrap().to_owned();

    ask_for_link(&app, &t.tenant_id, &stranger()).await;
    let cookie = sign_in(&app, &t.tenant_id, &buyer).await;
    let token = token_of(signin_links(&buyer).last().unwrap());
    let page = get(
        &app,
        &format!("/portal/{}/licenses", t.tenant_id),
        Some(&cookie),
    )
    .await;
    let csrf = csrf_of(&page.body);
    let license_id = page
        .body
        .split("/licenses/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let replace = format!("/portal/{}/licenses/{license_id}/replace", t.tenant_id);
    post(&app, &replace, &[("csrf", "wrong")], Some(&cookie)).await;
    let done = post(
        &app,
        &replace,
        &[("csrf", &csrf), ("confirm", "yes")],
        Some(&cookie),
    )
    .await;
    assert_eq!(done.status, 303);
    // Replacing the key ended the old session; the browser carries on with the fresh one.
    let cookie = cookie_of(&done);
    let new_page = get(
        &app,
        &format!("/portal/{}/licenses", t.tenant_id),
        Some(&cookie),
    )
    .await;
    let new_key = new_page
        .body
        .split("class=\"key\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .to_owned();

    let logs = captured();
    let lines = lines_about(&logs, &t.tenant_id);
    for outcome in [
        "sent",
        "no_licenses",
        "signed_in",
        "csrf_refused",
        "key-replaced",
    ] {
        assert!(
            has_line(&lines, &json!({"tenant": t.tenant_id, "outcome": outcome})),
            "no portal line with outcome {outcome}"
        );
    }
    assert_absent(&logs, "sign-in token", &token);
    let (_, session) = cookie.split_once('=').unwrap();
    assert_absent(&logs, "session cookie", session);
    assert_absent(&logs, "CSRF token", &csrf);
    assert_absent(&logs, "license key", &key);
    assert_absent(&logs, "new license key", &new_key);
    assert_absent(&logs, "buyer's address", &buyer);
}
