//! DynamoDB going away mid-test: a private DynamoDB Local (so other tests keep theirs) is stopped, a sale gets a
//! retryable 503 and leaves nothing behind, and Gumroad's retry after the restart issues exactly one license.
//! And answers lost on the way back: the SDK retries a write DynamoDB already applied, and the write still
//! succeeds exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::common;

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

/// Issue 22, defect 11: the SDK's retry of a conditional write whose answer was lost met its own first attempt and
/// reported a conflict (a used sign-in link, a claim held by someone else, an existing product) or counted twice.
#[tokio::test]
async fn a_write_whose_answer_was_lost_succeeds_once_when_the_sdk_retries_it() {
    use faults::{Fault, Faults};
    use keystead::storage::{ActivationStore, PortalStore, Store};
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let tenant = keystead::domain::TenantId::parse(&t.tenant_id).unwrap();
    let faults = Faults::new();
    let store = faulty_store(&faults).await;
    let email = keystead::domain::Email::parse(&buyer()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();

    // A sign-in link used once.
    store
        .put_signin(&tenant, "link-hash", &email, now + 900)
        .await
        .unwrap();
    faults.add("UpdateItem", Some("SIGNIN#"), Fault::LoseAnswer, 1);
    faults.add("DeleteItem", Some("SIGNIN#"), Fault::LoseAnswer, 1);
    let used = store.take_signin(&tenant, "link-hash", now).await.unwrap();
    assert_eq!(used.as_ref(), Some(&email), "the buyer is signed in");
    assert_eq!(
        store.take_signin(&tenant, "link-hash", now).await.unwrap(),
        None,
        "once"
    );

    // A rate counter counts one use once.
    faults.add("UpdateItem", Some("RATE#"), Fault::LoseAnswer, 1);
    assert!(
        store
            .count_use(&tenant, "probe", 5, now + 3600)
            .await
            .unwrap()
    );
    let rate = events(&stack, &t.tenant_id).await;
    let counter = rate.iter().find(|i| s(i, "sk") == "RATE#probe").unwrap();
    assert_eq!(n(counter, "uses"), 1);

    // A product created once.
    let product = keystead::domain::Product::new(
        keystead::domain::ProductId::parse("retried").unwrap(),
        "Retried".into(),
        keystead::domain::KeyPrefix::parse("RT").unwrap(),
        "2026-12-06T00:00:00Z".into(),
    );
    faults.add("PutItem", Some("PRODUCT#retried"), Fault::LoseAnswer, 1);
    store.create_product(&tenant, &product).await.unwrap();

    // A license: its Gumroad `uses` counter, and its email claim.
    let sale = send(
        &stack.app,
        &Ping::new(
            &t.tenant_id,
            Some(&t.token),
            sale_body(&sale_id(), &buyer()),
        ),
    )
    .await;
    let key_hash = keystead::domain::LicenseKey::from_string(
        sale.json()["license"]["key"].as_str().unwrap().to_owned(),
    )
    .hash();
    faults.add("UpdateItem", Some("ADD uses"), Fault::LoseAnswer, 1);
    assert_eq!(
        store.count_gumroad_use(&tenant, &key_hash).await.unwrap(),
        Some(1)
    );
    stack
        .ddb
        .update_item()
        .table_name(&stack.tables.licenses)
        .key(
            "tenant_id",
            aws_sdk_dynamodb::types::AttributeValue::S(t.tenant_id.clone()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("LICENSE#{key_hash}")),
        )
        .update_expression("SET email_status = :failed REMOVE email_claim_until")
        .expression_attribute_values(
            ":failed",
            aws_sdk_dynamodb::types::AttributeValue::S("failed".into()),
        )
        .send()
        .await
        .unwrap();
    faults.add(
        "UpdateItem",
        Some("email_claim_until = :until"),
        Fault::LoseAnswer,
        1,
    );
    assert!(
        store
            .claim_email(&tenant, &key_hash, now, now + 30)
            .await
            .unwrap(),
        "our claim"
    );
    assert!(
        !store
            .claim_email(&tenant, &key_hash, now, now + 30)
            .await
            .unwrap(),
        "and only ours"
    );
    assert_eq!(faults.hits().len(), 5, "{:?}", faults.hits());
}

/// Issue 22, defect 8: a key replacement whose answer was lost had committed, and reported an error (no email;
/// the new key went out only with `license resend --failed`). It now finds its own commit.
#[tokio::test]
async fn a_key_replacement_whose_answer_was_lost_reports_the_new_key() {
    use faults::{Fault, Faults};
    use keystead::storage::Store;
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let tenant_id = keystead::domain::TenantId::parse(&t.tenant_id).unwrap();
    let sold = send(
        &stack.app,
        &Ping::new(
            &t.tenant_id,
            Some(&t.token),
            sale_body(&sale_id(), &buyer()),
        ),
    )
    .await;
    let key = keystead::domain::LicenseKey::from_string(
        sold.json()["license"]["key"].as_str().unwrap().to_owned(),
    );
    let faults = Faults::new();
    let store = faulty_store(&faults).await;
    let tenant = store.load_tenant(&tenant_id).await.unwrap().unwrap();
    // The first attempt commits and its answer is lost; so is the answer to the SDK's retry (DynamoDB knows the
    // retry by its request token and answers it as done).
    faults.add("TransactWriteItems", Some("MOVED#"), Fault::LoseAnswer, 2);
    let new = keystead::app::replace_key::rotate(&store, &tenant, &key.hash(), false)
        .await
        .unwrap();
    assert_eq!(faults.hits().len(), 2, "{:?}", faults.hits());
    assert_ne!(new.key_hash, key.hash());
    let items = licenses(&stack, &t.tenant_id).await;
    let minted = license_items(&items);
    assert_eq!(minted.len(), 1);
    assert_eq!(s(minted[0], "key_hash"), new.key_hash.as_str());
}
