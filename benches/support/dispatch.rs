//! Webhook delivery throughput of one dispatcher (issue 25): tables and queues of its own, `BENCH_DISPATCH_N` audit
//! events written in transactions of 25, and one dispatcher (the stream's reader and one receiver of the queue,
//! as one Lambda instance of each would be) delivering them to a local endpoint that answers 200 at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use keystead::dispatch::Dispatcher;
use keystead::dispatch::local::LocalFeed;
use keystead::dispatch::queue::Queue;
use keystead::domain::audit::{EventType, Recorder};
use keystead::domain::webhook::{Endpoint, EndpointStatus, secret_context};
use keystead::domain::{Email, TenantId};
use keystead::signing::KeyVault;
use keystead::storage::{DynamoStore, Tables};

use super::{Report, env_usize, unique};

pub async fn section(report: &mut Report, sdk: &aws_config::SdkConfig, sender: &Email) {
    let n = env_usize("BENCH_DISPATCH_N", 500);
    let prefix = unique("bd");
    let specs = keystead::storage::table_specs(include_str!("../../template.yaml")).unwrap();
    let names: HashMap<String, String> =
        keystead::storage::create_tables(&aws_sdk_dynamodb::Client::new(sdk), &specs, &prefix)
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
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut urls = Vec::new();
    for name in [format!("{prefix}-dlq"), format!("{prefix}-q")] {
        let created = sqs.create_queue().queue_name(name).send().await.unwrap();
        urls.push(created.queue_url().unwrap().to_owned());
    }
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), tables.clone());
    let seeded = super::seed(&store, sender).await;
    let tenant_id = TenantId::parse(&seeded.tenant_id).unwrap();

    // The endpoint: a local listener that answers 200 at once and counts.
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut body = Vec::new();
            let _ = std::io::Read::read_to_end(request.as_reader(), &mut body);
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = request.respond(tiny_http::Response::empty(200));
        }
    });
    let vault = Arc::new(keystead::config::kms_vault(sdk).unwrap());
    let endpoint_id = keystead::domain::random_id("ep").unwrap();
    let context = secret_context(&tenant_id, &endpoint_id);
    let context: Vec<(&str, &str)> = context.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let key = vault.generate_data_key(&context).await.unwrap();
    store
        .add_endpoint(&Endpoint {
            endpoint_id,
            tenant_id: tenant_id.clone(),
            url: format!("http://127.0.0.1:{port}/hooks"),
            events: Vec::new(),
            description: None,
            secret_sealed: base64::engine::general_purpose::STANDARD.encode(&key.ciphertext),
            previous_secret_sealed: None,
            previous_until: None,
            status: EndpointStatus::Enabled,
            disabled_reason: None,
            failing_since: None,
            last_error: None,
            created_at: "2026-01-01T00:00:00Z".to_owned(),
        })
        .await
        .unwrap();

    // The events, as sales would leave them (their payloads the size of a real one's).
    for chunk in (0..n).collect::<Vec<_>>().chunks(25) {
        let mut recorder = Recorder::new(&tenant_id, time::OffsetDateTime::now_utc());
        for i in chunk {
            let mut data = serde_json::Map::new();
            data.insert("tenant_id".into(), tenant_id.as_str().into());
            data.insert("sale_id".into(), format!("bench-{i}").into());
            data.insert("padding".into(), "x".repeat(400).into());
            recorder.push(EventType::SaleRecorded, None, data).unwrap();
        }
        store.record_events(recorder.finish()).await.unwrap();
    }

    let queue = Queue::new(sqs, urls[1].clone(), urls[0].clone());
    let dispatcher = Arc::new(Dispatcher::new(store, vault, queue, true));
    let mut feed = LocalFeed::new(sdk, &tables.events).await.unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut turns = 0;
    while received.load(Ordering::SeqCst) < n && Instant::now() < deadline {
        let turn = feed.turn(&dispatcher).await.unwrap();
        turns += 1;
        if turn.queued == 0 && turn.attempted == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = received.load(Ordering::SeqCst);
    report.line(format!(
        "### Webhook delivery throughput: one dispatcher, {n} events, a local endpoint answering 200"
    ));
    report.line("");
    report.line(
        "The dispatcher's own code (`keystead::dispatch`) fed as `keystead dev dispatch` feeds it: DynamoDB Local's stream \
         read and fanned out to moto's SQS, 10 messages received at a time and delivered at once (signed, each with its \
         delivery record read and written). The events were written before the clock started.",
    );
    report.line("");
    report.line("| events | delivered | seconds | deliveries/s | feed turns |");
    report.line("|---:|---:|---:|---:|---:|");
    report.line(format!(
        "| {n} | {delivered} | {elapsed:.1} | {:.0} | {turns} |",
        delivered as f64 / elapsed
    ));
    report.line("");
}
