//! DynamoDB going away mid-test: a private DynamoDB Local (so other tests keep theirs) is stopped, a sale gets a
//! retryable 503 and leaves nothing behind, and Gumroad's retry after the restart issues exactly one license.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

mod common;

use common::private_dynamodb::{free_port, private_stack, start_dynamodb};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_down_gives_503_and_nothing_partial_then_the_retry_succeeds_once() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut dynamodb = start_dynamodb(port, data.path());

    let stack = private_stack(port, "outage").await;
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());

    dynamodb.stop();
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

    dynamodb.stop();
}
