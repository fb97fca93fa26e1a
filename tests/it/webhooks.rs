//! Signed outbound webhooks and the audit log (issue 25), against the real parts: DynamoDB Local's stream, moto's
//! SQS and KMS, the dispatcher's own code (in this process, or as `keystead dev dispatch`), and a receiver that
//! verifies every delivery with the spec's Python library as published (`webhook_receiver.py`).
//!
//! Each dispatcher test has tables and queues of its own (a stream carries every event of its table, and a queue
//! every job of its stack): what it counts is only its own.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keystead::dispatch::Dispatcher;
use keystead::dispatch::local::LocalFeed;
use keystead::dispatch::queue::Queue;
use keystead::domain::audit::EventType;
use keystead::domain::{FactKind, KeyHash, TenantId};
use keystead::storage::{AuditQuery, Tables};
use serde_json::Value;

use crate::cli_support::{self, stdout_of};
use crate::common::{self, Seed, Stack};

/// A stack of its own: tables (with the events table's stream) and webhook queues under a unique prefix.
struct Hooks {
    stack: Stack,
    sdk: aws_config::SdkConfig,
    tables: Tables,
    queue_url: String,
    dlq_url: String,
}

impl Hooks {
    async fn new() -> Self {
        let sdk = common::sdk().await;
        let prefix = common::unique("wh");
        let specs = keystead::storage::table_specs(include_str!("../../template.yaml")).unwrap();
        let names: HashMap<String, String> =
            keystead::storage::create_tables(&aws_sdk_dynamodb::Client::new(&sdk), &specs, &prefix)
                .await
                .unwrap()
                .into_iter()
                .collect();
        let tables = Tables {
            tenants: names["KEYSTEAD_TENANTS_TABLE"].clone(),
            licenses: names["KEYSTEAD_LICENSES_TABLE"].clone(),
            payments: names["KEYSTEAD_PAYMENTS_TABLE"].clone(),
            events: names["KEYSTEAD_EVENTS_TABLE"].clone(),
        };
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let dlq_url = common::create_queue(&sqs, &format!("{prefix}-dlq")).await;
        let queue_url = common::create_queue(&sqs, &format!("{prefix}-q")).await;
        Self {
            stack: common::stack_with(&sdk, tables.clone()),
            sdk,
            tables,
            queue_url,
            dlq_url,
        }
    }

    /// The dispatcher's own code over this stack; retries after a second instead of the spec's schedule.
    fn dispatcher(&self, allow_loopback: bool) -> Arc<Dispatcher> {
        let store = keystead::config::dynamo_store(&self.sdk, self.tables.clone());
        let vault = Arc::new(keystead::config::kms_vault(&self.sdk).unwrap());
        let queue = Queue::new(
            aws_sdk_sqs::Client::new(&self.sdk),
            self.queue_url.clone(),
            self.dlq_url.clone(),
        );
        Arc::new(
            Dispatcher::new(store, vault, queue, allow_loopback).with_retry_delays(|attempt| {
                (attempt < keystead::domain::webhook::MAX_ATTEMPTS).then_some(1)
            }),
        )
    }

    /// The `keystead` CLI configured for this stack (local mode: loopback targets allowed).
    fn keystead(&self) -> assert_cmd::Command {
        let mut cmd = cli_support::keystead();
        cmd.env("KEYSTEAD_TENANTS_TABLE", &self.tables.tenants)
            .env("KEYSTEAD_LICENSES_TABLE", &self.tables.licenses)
            .env("KEYSTEAD_PAYMENTS_TABLE", &self.tables.payments)
            .env("KEYSTEAD_EVENTS_TABLE", &self.tables.events)
            .env("KEYSTEAD_WEBHOOK_QUEUE_URL", &self.queue_url)
            .env("KEYSTEAD_WEBHOOK_DLQ_URL", &self.dlq_url)
            .env("KEYSTEAD_WEBHOOKS_ALLOW_LOOPBACK", "1");
        cmd
    }

    /// Adds an endpoint for `url` through the CLI; its id and secret.
    fn add_endpoint(&self, tenant_id: &str, url: &str, extra: &[&str]) -> (String, String) {
        let doc = cli_support::ok_json_cmd(
            self.keystead()
                .args(["webhook", "add", tenant_id, url])
                .args(extra),
        );
        let secret = doc["secret"].as_str().unwrap().to_owned();
        assert!(secret.starts_with("whsec_"), "{doc}");
        (doc["endpoint_id"].as_str().unwrap().to_owned(), secret)
    }
}

/// The receiver (`webhook_receiver.py`), verifying with `standardwebhooks`.
struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
    secret: PathBuf,
    _dir: tempfile::TempDir,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Request {
    id: String,
    verified: bool,
    kind: String,
    status: u16,
    body: String,
}

impl Receiver {
    fn start(fail_first: u32, fail_ratio: f64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (log, secret) = (dir.path().join("log.jsonl"), dir.path().join("secret"));
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut child = std::process::Command::new(root.join(".venv/bin/python"))
            .arg(root.join("tests/it/webhook_receiver.py"))
            .arg("--secret-file")
            .arg(&secret)
            .arg("--log")
            .arg(&log)
            .args(["--fail-first", &fail_first.to_string()])
            .args(["--fail-ratio", &fail_ratio.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("receiver said {line:?}"));
        Self {
            child,
            port,
            log,
            secret,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks", self.port)
    }

    fn trust(&self, secret: &str) {
        std::fs::write(&self.secret, secret).unwrap();
    }

    fn requests(&self) -> Vec<Request> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                Request {
                    id: v["id"].as_str().unwrap_or_default().to_owned(),
                    verified: v["verified"].as_bool().unwrap_or(false),
                    kind: v["type"].as_str().unwrap_or_default().to_owned(),
                    status: u16::try_from(v["status"].as_u64().unwrap_or(0)).unwrap_or(0),
                    body: v["body"].as_str().unwrap_or_default().to_owned(),
                }
            })
            .collect()
    }

    /// The ids answered 200.
    fn delivered(&self) -> HashSet<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 200)
            .map(|r| r.id)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Turns the local feed (stream and queue), with `workers - 1` more receivers of the queue, until `done`.
async fn pump(
    hooks: &Hooks,
    dispatcher: &Arc<Dispatcher>,
    done: impl Fn() -> bool,
    limit: Duration,
) {
    let mut feed = LocalFeed::new(&hooks.sdk, &hooks.tables.events)
        .await
        .unwrap();
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not delivered within {limit:?}");
        let turn = feed.turn(dispatcher).await.unwrap();
        if turn.queued == 0 && turn.attempted == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The tenant's events that webhooks deliver, by id.
async fn delivered_events(hooks: &Hooks, tenant_id: &str) -> HashMap<String, EventType> {
    let tenant_id = TenantId::parse(tenant_id).unwrap();
    let mut query = AuditQuery {
        limit: 1000,
        ..AuditQuery::default()
    };
    let mut found = HashMap::new();
    loop {
        let page = hooks.stack.store.audit(&tenant_id, &query).await.unwrap();
        for event in page.events {
            if event.kind.delivered() {
                found.insert(event.id, event.kind);
            }
        }
        match page.next {
            Some(next) => query.before = Some(next),
            None => return found,
        }
    }
}

#[tokio::test]
async fn a_sale_and_its_refund_are_in_the_audit_log_with_what_changed() {
    let stack = common::stack().await;
    let t = common::seed(&stack, Seed::default()).await;
    let (sale, buyer) = (common::sale_id(), common::buyer());
    let ping = common::Ping::new(
        &t.tenant_id,
        Some(&t.token),
        common::sale_body(&sale, &buyer),
    );
    assert_eq!(common::send(&stack.app, &ping).await.status, 200);
    let refund = common::Ping::new(
        &t.tenant_id,
        Some(&t.token),
        common::sale_event("refund", &sale, &buyer, true),
    );
    assert_eq!(common::send(&stack.app, &refund).await.status, 200);
    // Gumroad's retry of the refund changes nothing, so it reports nothing.
    assert_eq!(common::send(&stack.app, &refund).await.status, 200);

    let tenant_id = TenantId::parse(&t.tenant_id).unwrap();
    let page = stack
        .store
        .audit(
            &tenant_id,
            &AuditQuery {
                limit: 50,
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    let kinds: Vec<&str> = page.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "license.updated",
            "sale.refunded",
            "sale.recorded",
            "license.created"
        ],
        "newest first"
    );
    let key = common::key_of(
        &stack,
        common::licenses(&stack, &t.tenant_id)
            .await
            .first()
            .unwrap(),
    )
    .await;
    for event in &page.events {
        let payload: Value = serde_json::from_str(&event.payload).unwrap();
        assert_eq!(payload["type"], event.kind.as_str());
        assert_eq!(payload["timestamp"], event.at.as_str());
        assert!(event.payload.len() < 20 * 1024);
        assert!(
            !event.payload.contains(&key),
            "never the full key: {}",
            event.payload
        );
        assert_eq!(payload["data"]["buyer_email"], buyer.as_str());
        assert_eq!(payload["data"]["sale_id"], sale.as_str());
        let shown = payload["data"]["key"].as_str().unwrap();
        assert!(
            shown.starts_with("ACME-…-") && key.ends_with(&shown[shown.len() - 4..]),
            "{shown}"
        );
    }
    let updated: Value = serde_json::from_str(&page.events[0].payload).unwrap();
    assert_eq!(updated["data"]["status"], "revoked");
    assert_eq!(updated["data"]["previous"]["status"], "active");
    assert_eq!(updated["data"]["changed"], serde_json::json!(["status"]));
    let refunded: Value = serde_json::from_str(&page.events[1].payload).unwrap();
    assert_eq!(refunded["data"]["full_refund"], true);

    // The buyer's and the license's filters, and paging.
    let by_email = stack
        .store
        .audit(
            &tenant_id,
            &AuditQuery {
                email_hash: Some(keystead::domain::audit::email_hash(&buyer.to_uppercase())),
                limit: 2,
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_email.events.len(), 2);
    let rest = stack
        .store
        .audit(
            &tenant_id,
            &AuditQuery {
                before: by_email.next.clone(),
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rest.events
            .iter()
            .map(|e| e.kind.as_str())
            .collect::<Vec<_>>(),
        ["sale.recorded", "license.created"]
    );
    assert!(rest.next.is_none());
}

#[tokio::test]
async fn seller_actions_name_the_aws_principal_and_audit_reads_them_back() {
    let stack = common::stack().await;
    let t = common::seed(&stack, Seed::default()).await;
    let (sale, buyer) = (common::sale_id(), common::buyer());
    let ping = common::Ping::new(
        &t.tenant_id,
        Some(&t.token),
        common::sale_body(&sale, &buyer),
    );
    assert_eq!(common::send(&stack.app, &ping).await.status, 200);
    let key = common::key_of(
        &stack,
        common::licenses(&stack, &t.tenant_id)
            .await
            .first()
            .unwrap(),
    )
    .await;

    cli_support::ok(&["license", "suspend", &t.tenant_id, &key]);
    cli_support::ok(&["tenant", "set", &t.tenant_id, "--refund-policy", "keep"]);

    let doc = cli_support::ok_json(&["audit", &t.tenant_id, "--license", &key]);
    let events = doc["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "license.updated",
            "seller.license_suspended",
            "sale.recorded",
            "license.created"
        ],
        "{doc}"
    );
    let actor = events[0]["actor"].as_str().unwrap();
    assert!(
        actor.starts_with("arn:aws:"),
        "the seller's principal: {actor}"
    );
    assert!(events[3]["actor"].is_null(), "Gumroad's ping, not a seller");
    assert_eq!(events[0]["data"]["status"], "suspended");

    let all = cli_support::ok_json(&["audit", &t.tenant_id, "--since", "1h", "--limit", "1"]);
    assert_eq!(all["events"][0]["type"], "seller.command");
    assert_eq!(all["events"][0]["data"]["command"], "tenant set");
    assert_eq!(
        all["events"][0]["data"]["details"]["arguments"],
        serde_json::json!([t.tenant_id, "--refund-policy", "keep"])
    );
    let next = all["next"].as_str().unwrap();
    let older = cli_support::ok_json(&["audit", &t.tenant_id, "--before", next, "--limit", "1"]);
    assert_eq!(older["events"][0]["type"], "license.updated");

    let mine = cli_support::ok_json(&["audit", &t.tenant_id, "--email", &buyer]);
    assert_eq!(mine["events"].as_array().unwrap().len(), 4, "{mine}");
    let human = cli_support::ok(&["audit", &t.tenant_id]);
    assert!(
        human.contains("seller.license_suspended") && human.contains("arn:aws:"),
        "{human}"
    );
    assert!(!human.contains(&key), "never the key");
    cli_support::fails(&["audit", "no-such-tenant-x"], 3);
    cli_support::fails(&["audit", &t.tenant_id, "--since", "yesterday"], 2);
}

#[tokio::test]
async fn deliveries_verify_with_the_specs_library_and_each_event_arrives_once_after_retries() {
    let hooks = Hooks::new().await;
    let t = common::seed(&hooks.stack, Seed::default()).await;
    // Down for the first two attempts of every event, then up.
    let receiver = Receiver::start(2, 0.0);
    let (endpoint, secret) =
        hooks.add_endpoint(&t.tenant_id, &receiver.url(), &["--description", "CRM"]);
    receiver.trust(&secret);
    for _ in 0..3 {
        assert_eq!(
            common::send(&hooks.stack.app, &common::new_sale(&t))
                .await
                .status,
            200
        );
    }
    let expected = delivered_events(&hooks, &t.tenant_id).await;
    assert_eq!(
        expected.len(),
        6,
        "three license.created and three sale.recorded"
    );
    let dispatcher = hooks.dispatcher(true);
    pump(
        &hooks,
        &dispatcher,
        || receiver.delivered().len() >= expected.len(),
        Duration::from_secs(90),
    )
    .await;

    let requests = receiver.requests();
    assert!(
        requests.iter().all(|r| r.verified),
        "every delivery verifies: {requests:?}"
    );
    let delivered = receiver.delivered();
    assert_eq!(delivered, expected.keys().cloned().collect::<HashSet<_>>());
    for (id, kind) in &expected {
        let attempts: Vec<&Request> = requests.iter().filter(|r| &r.id == id).collect();
        assert_eq!(
            attempts.len(),
            3,
            "two failures, then the delivery: {attempts:?}"
        );
        assert_eq!(attempts.iter().filter(|r| r.status == 200).count(), 1);
        assert!(attempts.iter().all(|r| r.kind == kind.as_str()));
        assert!(
            attempts.windows(2).all(|w| w[0].body == w[1].body),
            "the same bytes every time"
        );
    }
    let doc = cli_support::ok_json_cmd(hooks.keystead().args(["webhook", "deliveries", &endpoint]));
    let rows = doc["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter()
            .all(|d| d["status"] == "delivered" && d["attempts"] == 3),
        "{doc}"
    );
    let failed = cli_support::ok_json_cmd(hooks.keystead().args([
        "webhook",
        "deliveries",
        &endpoint,
        "--failed",
    ]));
    assert_eq!(failed["deliveries"].as_array().unwrap().len(), 0);

    // Replay: the same event again, with its own id.
    let (first_id, _) = expected.iter().next().unwrap();
    let replayed = cli_support::ok_json_cmd(hooks.keystead().args(["webhook", "replay", first_id]));
    assert_eq!(replayed["deliveries"], 1, "{replayed}");
    let count = |id: &str| {
        receiver
            .requests()
            .iter()
            .filter(|r| r.id == id && r.status == 200)
            .count()
    };
    // (A new feed reads the stream from its start: what was delivered is not sent again, but the replayed event
    // may arrive twice, once per job; the spec allows it.)
    pump(
        &hooks,
        &dispatcher,
        || count(first_id) >= 2,
        Duration::from_secs(60),
    )
    .await;
    let again = cli_support::ok_json_cmd(
        hooks
            .keystead()
            .args(["webhook", "replay", "--since", "1h"]),
    );
    assert_eq!(again["events"], 6, "{again}");

    // A rotated secret: both sign for a day, and the receiver, which knows only the new one, verifies.
    let rotated =
        cli_support::ok_json_cmd(
            hooks
                .keystead()
                .args(["webhook", "rotate-secret", &endpoint]),
        );
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    receiver.trust(new_secret);
    let before = receiver.requests().len();
    assert_eq!(
        common::send(&hooks.stack.app, &common::new_sale(&t))
            .await
            .status,
        200
    );
    pump(
        &hooks,
        &dispatcher,
        || {
            receiver
                .requests()
                .iter()
                .skip(before)
                .filter(|r| r.status == 200)
                .count()
                >= 2
        },
        Duration::from_secs(60),
    )
    .await;
    let after: Vec<Request> = receiver.requests().into_iter().skip(before).collect();
    assert!(after.iter().all(|r| r.verified), "{after:?}");
    let listed = cli_support::ok_json_cmd(hooks.keystead().args(["webhook", "list", &t.tenant_id]));
    assert_eq!(listed["endpoints"][0]["description"], "CRM");
    assert!(
        !listed.to_string().contains("whsec_"),
        "the secret is shown once"
    );
}

#[tokio::test]
async fn a_thousand_license_changes_with_random_failures_lose_none() {
    let hooks = Hooks::new().await;
    let t = common::seed(&hooks.stack, Seed::default()).await;
    let receiver = Receiver::start(0, 0.3);
    let (_, secret) = hooks.add_endpoint(
        &t.tenant_id,
        &receiver.url(),
        &["--events", "license.updated"],
    );
    receiver.trust(&secret);
    for _ in 0..10 {
        assert_eq!(
            common::send(&hooks.stack.app, &common::new_sale(&t))
                .await
                .status,
            200
        );
    }
    let tenant_id = TenantId::parse(&t.tenant_id).unwrap();
    let hashes: Vec<KeyHash> = common::licenses(&hooks.stack, &t.tenant_id)
        .await
        .iter()
        .map(|item| KeyHash::from_stored(common::s(item, "key_hash").to_owned()))
        .collect();
    assert_eq!(hashes.len(), 10);
    // 100 suspensions and resumptions of each of the ten licenses, the licenses side by side.
    let mut writers = tokio::task::JoinSet::new();
    for hash in hashes {
        let (store, tenant_id) = (hooks.stack.store.clone(), tenant_id.clone());
        writers.spawn(async move {
            for i in 0..100 {
                let kind = if i % 2 == 0 {
                    FactKind::Suspended
                } else {
                    FactKind::Resumed
                };
                store
                    .record_seller_fact(&tenant_id, &hash, kind)
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let expected: HashSet<String> = delivered_events(&hooks, &t.tenant_id)
        .await
        .into_iter()
        .filter(|(_, kind)| *kind == EventType::LicenseUpdated)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(expected.len(), 1000);
    // The stream's reader and three more receivers of the queue, as Lambda would run them side by side.
    let dispatcher = hooks.dispatcher(true);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (dispatcher, stop) = (Arc::clone(&dispatcher), Arc::clone(&stop));
        workers.spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let queue = &dispatcher.queue;
                let batch = queue
                    .client()
                    .receive_message()
                    .queue_url(queue.url())
                    .max_number_of_messages(10)
                    .send()
                    .await
                    .unwrap();
                let messages: Vec<keystead::dispatch::run::Received> = batch
                    .messages()
                    .iter()
                    .map(|m| keystead::dispatch::run::Received {
                        message_id: m.message_id().unwrap().to_owned(),
                        receipt: m.receipt_handle().unwrap().to_owned(),
                        body: m.body().unwrap().to_owned(),
                    })
                    .collect();
                if messages.is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else {
                    keystead::dispatch::run::received(&dispatcher, messages, true).await;
                }
            }
        });
    }
    pump(
        &hooks,
        &dispatcher,
        || receiver.delivered().len() >= expected.len(),
        Duration::from_secs(300),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while workers.join_next().await.is_some() {}
    let requests = receiver.requests();
    assert!(requests.iter().all(|r| r.verified));
    assert_eq!(
        receiver.delivered(),
        expected,
        "every change delivered, nothing else"
    );
    let failures = requests.iter().filter(|r| r.status == 500).count();
    let duplicates = requests.iter().filter(|r| r.status == 200).count() - expected.len();
    eprintln!(
        "1,000 changes: {} requests, {failures} answered 500, {duplicates} duplicate deliveries",
        requests.len()
    );
    assert!(
        failures > 100,
        "the endpoint did fail at random ({failures})"
    );
}

/// `keystead dev dispatch` for this stack.
fn dev_dispatch(hooks: &Hooks) -> Child {
    let cmd = hooks.keystead();
    let mut child = std::process::Command::new(cmd.get_program());
    for (name, value) in cmd.get_envs() {
        match value {
            Some(value) => child.env(name, value),
            None => child.env_remove(name),
        };
    }
    child
        .args(["dev", "dispatch"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn a_killed_dispatcher_loses_nothing_and_the_test_command_reaches_the_endpoint() {
    let hooks = Hooks::new().await;
    let t = common::seed(&hooks.stack, Seed::default()).await;
    let receiver = Receiver::start(0, 0.0);
    let (endpoint, secret) = hooks.add_endpoint(&t.tenant_id, &receiver.url(), &[]);
    receiver.trust(&secret);
    let mut dispatcher = dev_dispatch(&hooks);
    for _ in 0..10 {
        assert_eq!(
            common::send(&hooks.stack.app, &common::new_sale(&t))
                .await
                .status,
            200
        );
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.delivered().is_empty() {
        assert!(Instant::now() < deadline, "the dispatcher delivers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Killed mid-way (no chance to finish anything), while sales go on.
    dispatcher.kill().unwrap();
    dispatcher.wait().unwrap();
    for _ in 0..10 {
        assert_eq!(
            common::send(&hooks.stack.app, &common::new_sale(&t))
                .await
                .status,
            200
        );
    }
    let mut dispatcher = dev_dispatch(&hooks);
    let expected: HashSet<String> = delivered_events(&hooks, &t.tenant_id)
        .await
        .into_keys()
        .collect();
    assert_eq!(expected.len(), 40);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !expected.is_subset(&receiver.delivered()) {
        assert!(
            Instant::now() < deadline,
            "every event delivered after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let doc = cli_support::ok_json_cmd(hooks.keystead().args(["webhook", "test", &endpoint]));
    assert_eq!(doc["delivery"]["status"], "delivered", "{doc}");
    let pings: Vec<Request> = receiver
        .requests()
        .into_iter()
        .filter(|r| r.kind == "ping.test")
        .collect();
    assert_eq!(pings.len(), 1);
    assert!(pings[0].verified && pings[0].id == doc["event_id"].as_str().unwrap());
    dispatcher.kill().unwrap();
    dispatcher.wait().unwrap();
    let requests = receiver.requests();
    let duplicates = requests.len() - receiver.delivered().len();
    eprintln!(
        "killed dispatcher: {} requests, {duplicates} duplicates",
        requests.len()
    );
}

#[tokio::test]
async fn only_public_https_targets_outside_local_mode() {
    let hooks = Hooks::new().await;
    let t = common::seed(&hooks.stack, Seed::default()).await;
    for url in [
        "http://127.0.0.1:9/hooks",
        "https://127.0.0.1/hooks",
        "https://10.1.2.3/hooks",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hooks",
        "http://hooks.example.com/",
    ] {
        let message = cli_support::fails_cmd(
            || {
                let mut cmd = hooks.keystead();
                cmd.env_remove("KEYSTEAD_WEBHOOKS_ALLOW_LOOPBACK").args([
                    "webhook",
                    "add",
                    &t.tenant_id,
                    url,
                ]);
                cmd
            },
            2,
        );
        assert!(
            message.contains("https") || message.contains("public"),
            "{url}: {message}"
        );
    }
    // An endpoint added in local mode is refused at delivery time by a dispatcher that is not (the resolver's own
    // refusal of names that resolve to private addresses is target.rs's unit test), and nothing is sent.
    let receiver = Receiver::start(0, 0.0);
    let url = format!("https://localhost:{}/hooks", receiver.port);
    let (endpoint, secret) = hooks.add_endpoint(&t.tenant_id, &url, &[]);
    receiver.trust(&secret);
    assert_eq!(
        common::send(&hooks.stack.app, &common::new_sale(&t))
            .await
            .status,
        200
    );
    let dispatcher = hooks.dispatcher(false);
    let store = &hooks.stack.store;
    let tenant_id = TenantId::parse(&t.tenant_id).unwrap();
    let mut feed = LocalFeed::new(&hooks.sdk, &hooks.tables.events)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        feed.turn(&dispatcher).await.unwrap();
        let deliveries = store
            .deliveries(&tenant_id, &endpoint, true, 10)
            .await
            .unwrap();
        if deliveries.len() == 2 && deliveries.iter().all(|d| d.attempts >= 1) {
            for d in &deliveries {
                let error = d.last_error.as_deref().unwrap_or_default();
                assert!(error.contains("not a public address"), "{error}");
                assert_eq!(d.status, keystead::domain::webhook::DeliveryStatus::Pending);
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "attempted and refused: {deliveries:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        receiver.requests().is_empty(),
        "nothing reached the loopback listener"
    );
    let listed = cli_support::ok_json_cmd(hooks.keystead().args(["webhook", "list", &t.tenant_id]));
    assert!(
        listed["endpoints"][0]["failing_since"].is_string(),
        "{listed}"
    );
}

/// A local endpoint answering every request with `status` after `delay` (each request on its own thread); its port.
fn answering(status: u16, delay: Duration) -> u16 {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let _ = request.respond(tiny_http::Response::empty(status));
            });
        }
    });
    port
}

#[tokio::test]
async fn an_endpoint_that_answers_410_is_disabled() {
    let hooks = Hooks::new().await;
    let t = common::seed(&hooks.stack, Seed::default()).await;
    let port = answering(410, Duration::ZERO);
    let (endpoint, _) =
        hooks.add_endpoint(&t.tenant_id, &format!("http://127.0.0.1:{port}/x"), &[]);
    assert_eq!(
        common::send(&hooks.stack.app, &common::new_sale(&t))
            .await
            .status,
        200
    );
    let dispatcher = hooks.dispatcher(true);
    let tenant_id = TenantId::parse(&t.tenant_id).unwrap();
    let store = hooks.stack.store.clone();
    let mut feed = LocalFeed::new(&hooks.sdk, &hooks.tables.events)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        feed.turn(&dispatcher).await.unwrap();
        let found = store
            .endpoint(&tenant_id, &endpoint)
            .await
            .unwrap()
            .unwrap();
        if found.status == keystead::domain::webhook::EndpointStatus::Disabled {
            break;
        }
        assert!(Instant::now() < deadline, "disabled by its 410");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = hooks
        .keystead()
        .args(["doctor", &t.tenant_id, "--json"])
        .output()
        .unwrap();
    let doctor = stdout_of(&output);
    assert!(
        doctor.contains(&endpoint) && doctor.contains("disabled"),
        "{doctor}"
    );
}

#[tokio::test]
async fn a_slow_endpoint_holds_back_no_other_endpoint() {
    let hooks = Hooks::new().await;
    let t = common::seed(&hooks.stack, Seed::default()).await;
    // One endpoint takes 8 s to answer each delivery; the other answers at once.
    let slow_port = answering(200, Duration::from_secs(8));
    let fast = Receiver::start(0, 0.0);
    hooks.add_endpoint(
        &t.tenant_id,
        &format!("http://127.0.0.1:{slow_port}/slow"),
        &[],
    );
    let (_, secret) = hooks.add_endpoint(&t.tenant_id, &fast.url(), &[]);
    fast.trust(&secret);
    for _ in 0..3 {
        assert_eq!(
            common::send(&hooks.stack.app, &common::new_sale(&t))
                .await
                .status,
            200
        );
    }
    let expected = delivered_events(&hooks, &t.tenant_id).await.len();
    let dispatcher = hooks.dispatcher(true);
    let started = Instant::now();
    // The first turn fans out twelve jobs (six events, two endpoints) and receives up to ten of them, slow ones
    // among them: the fast endpoint's arrive while the slow ones are still waiting for their answers.
    let mut feed = LocalFeed::new(&hooks.sdk, &hooks.tables.events)
        .await
        .unwrap();
    let turning = {
        let dispatcher = Arc::clone(&dispatcher);
        tokio::spawn(async move {
            for _ in 0..6 {
                feed.turn(&dispatcher).await.unwrap();
            }
        })
    };
    let deadline = started + Duration::from_secs(60);
    while fast.delivered().len() < expected {
        assert!(
            Instant::now() < deadline,
            "the fast endpoint got everything"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fast_took = started.elapsed();
    turning.await.unwrap();
    // Locally the feed's turns run one after another, each as long as its slowest delivery (8 s): the fast
    // endpoint's events arrive within two or three turns, however they were spread. Deliveries made one after
    // another would keep the last of them waiting on all six slow ones: 48 s.
    assert!(
        fast_took < Duration::from_secs(8) * 3,
        "the fast endpoint waited on the slow one: {fast_took:?}"
    );
    eprintln!(
        "fast endpoint: all {expected} events in {fast_took:?}, beside one taking 8 s an answer"
    );
}
