//! DynamoDB going away mid-test: a private DynamoDB Local (so other tests keep theirs) is stopped, a sale gets a
//! retryable 503 and leaves nothing behind, and Gumroad's retry after the restart issues exactly one license.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_dynamodb(port: u16, data: &std::path::Path) -> Child {
    let jar_dir = env("KEYMINT_DYNAMODB_LOCAL_DIR");
    let launcher = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/infra/local/LoopbackDynamoDBLocal.java"
    );
    let child = Command::new("java")
        .arg(format!("-Djava.library.path={jar_dir}/DynamoDBLocal_lib"))
        .arg("-cp")
        .arg(format!(
            "{jar_dir}/DynamoDBLocal.jar:{jar_dir}/DynamoDBLocal_lib/*"
        ))
        .arg(launcher)
        .args([
            "-port",
            &port.to_string(),
            "-sharedDb",
            "-disableTelemetry",
            "-dbPath",
        ])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "DynamoDB Local did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_down_gives_503_and_nothing_partial_then_the_retry_succeeds_once() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut dynamodb = start_dynamodb(port, data.path());

    let sdk = sdk().await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .build(),
    );
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    let specs = keymint::storage::table_specs(&template).unwrap();
    let names = keymint::storage::create_tables(&client, &specs, "outage")
        .await
        .unwrap();
    let name = |var: &str| names.iter().find(|(v, _)| v == var).unwrap().1.clone();
    let tables = keymint::storage::Tables {
        tenants: name("KEYMINT_TENANTS_TABLE"),
        licenses: name("KEYMINT_LICENSES_TABLE"),
        payments: name("KEYMINT_PAYMENTS_TABLE"),
        events: name("KEYMINT_EVENTS_TABLE"),
    };
    let store = keymint::storage::DynamoStore::new(client.clone(), tables.clone());
    let stack = Stack {
        app: keymint::http::App::new(
            Arc::new(store.clone()),
            Arc::new(keymint::config::ses_mailer(&sdk)),
        ),
        store,
        ddb: client,
        ses: aws_sdk_ses::Client::new(&sdk),
        tables,
    };
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());

    dynamodb.kill().unwrap();
    dynamodb.wait().unwrap();
    let reply = send(
        &stack.app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &buyer)),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, r#"{"error":"Temporarily unavailable"}"#)
    );

    let mut dynamodb = start_dynamodb(port, data.path());
    assert_eq!(
        writes(&stack, &t.tenant_id).await,
        0,
        "nothing partial was written"
    );
    assert!(emails_to(&buyer).is_empty());

    let retry = format!("{}&retry_count=1", sale_body(&sale, &buyer));
    let reply = send(
        &stack.app,
        &Ping::new(&t.tenant_id, Some(&t.token), retry.clone()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["duplicate"], false);
    let again = send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), retry)).await;
    assert_eq!(again.body, r#"{"duplicate":true,"received":true}"#);
    assert_eq!(licenses(&stack, &t.tenant_id).await.len(), 1);
    assert_eq!(payments(&stack, &t.tenant_id).await.len(), 1);
    assert_eq!(events(&stack, &t.tenant_id).await.len(), 1);
    assert_eq!(emails_to(&buyer).len(), 1);

    dynamodb.kill().unwrap();
    dynamodb.wait().unwrap();
}
