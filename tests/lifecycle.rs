//! License lifecycle against the local stack: Gumroad's refund, dispute and subscription events replayed in their
//! own encoding, in order and out of order, and the license state and records they leave.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

mod common;

use common::*;
use serde_json::Value;

async fn ping(stack: &Stack, t: &Seeded, body: String) -> Reply {
    send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), body)).await
}

async fn status_of(stack: &Stack, t: &Seeded) -> String {
    let all = licenses(stack, &t.tenant_id).await;
    let found: Vec<_> = all
        .iter()
        .filter(|i| s(i, "sk").starts_with("LICENSE#"))
        .collect();
    assert_eq!(found.len(), 1, "exactly one license");
    s(found[0], "status").to_owned()
}

#[tokio::test]
async fn a_full_refund_revokes_a_partial_one_does_not_and_replays_are_duplicates() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());
    assert_eq!(ping(&stack, &t, sale_body(&sale, &buyer)).await.status, 200);

    let partial = ping(&stack, &t, sale_event("refund", &sale, &buyer, false)).await;
    assert_eq!(partial.status, 200, "{}", partial.body);
    assert_eq!(partial.json()["license_status"], "active");
    assert_eq!(status_of(&stack, &t).await, "active");

    let full = ping(&stack, &t, sale_event("refund", &sale, &buyer, true)).await;
    assert_eq!(full.status, 200);
    assert_eq!(full.json()["event"], "refund");
    assert_eq!(full.json()["license_status"], "revoked");
    assert_eq!(status_of(&stack, &t).await, "revoked");

    let replay = ping(
        &stack,
        &t,
        format!(
            "{}&retry_count=1",
            sale_event("refund", &sale, &buyer, true)
        ),
    )
    .await;
    assert_eq!(replay.body, r#"{"duplicate":true,"received":true}"#);
    assert_eq!(status_of(&stack, &t).await, "revoked");
    assert_eq!(payments(&stack, &t.tenant_id).await.len(), 1);
    assert_eq!(emails_to(&buyer).len(), 1);
}

#[tokio::test]
async fn a_tenant_whose_refund_policy_is_keep_keeps_the_license() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let tenant_id = keystead::domain::TenantId::parse(&t.tenant_id).unwrap();
    stack
        .store
        .update_tenant(
            &tenant_id,
            &[(
                "refund_policy",
                aws_sdk_dynamodb::types::AttributeValue::S("keep".into()),
            )],
        )
        .await
        .unwrap();
    let (sale, buyer) = (sale_id(), buyer());
    assert_eq!(ping(&stack, &t, sale_body(&sale, &buyer)).await.status, 200);
    let refund = ping(&stack, &t, sale_event("refund", &sale, &buyer, true)).await;
    assert_eq!(refund.json()["license_status"], "active");
    assert_eq!(status_of(&stack, &t).await, "active");
}

#[tokio::test]
async fn disputes_suspend_won_disputes_restore_but_never_undo_a_refund() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());
    assert_eq!(ping(&stack, &t, sale_body(&sale, &buyer)).await.status, 200);

    assert_eq!(
        ping(&stack, &t, sale_event("dispute", &sale, &buyer, false))
            .await
            .json()["license_status"],
        "suspended"
    );
    assert_eq!(status_of(&stack, &t).await, "suspended");
    assert_eq!(
        ping(&stack, &t, sale_event("dispute_won", &sale, &buyer, false))
            .await
            .json()["license_status"],
        "active"
    );
    assert_eq!(status_of(&stack, &t).await, "active");

    let t2 = seed(&stack, Seed::default()).await;
    let (sale2, buyer2) = (common::sale_id(), common::buyer());
    assert_eq!(
        ping(&stack, &t2, sale_body(&sale2, &buyer2)).await.status,
        200
    );
    ping(&stack, &t2, sale_event("dispute", &sale2, &buyer2, false)).await;
    ping(&stack, &t2, sale_event("refund", &sale2, &buyer2, true)).await;
    let won = ping(
        &stack,
        &t2,
        sale_event("dispute_won", &sale2, &buyer2, false),
    )
    .await;
    assert_eq!(won.json()["license_status"], "revoked");
    assert_eq!(status_of(&stack, &t2).await, "revoked");
}

#[tokio::test]
async fn a_refund_that_arrives_before_the_sale_leaves_no_active_license() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());

    let refund = ping(&stack, &t, sale_event("refund", &sale, &buyer, true)).await;
    assert_eq!(refund.status, 204);
    assert!(licenses(&stack, &t.tenant_id).await.is_empty());

    // The sale's own ping (a Gumroad retry) lands afterwards.
    let late = ping(
        &stack,
        &t,
        format!("{}&retry_count=2", sale_body(&sale, &buyer)),
    )
    .await;
    assert_eq!(late.status, 200, "{}", late.body);
    assert_eq!(late.json()["license"]["status"], "revoked");
    assert_eq!(status_of(&stack, &t).await, "revoked");
    assert_eq!(payments(&stack, &t.tenant_id).await.len(), 1);
    assert!(
        emails_to(&buyer).is_empty(),
        "a refunded buyer is not sent a key"
    );

    // Dispute first, then the sale: minted suspended; the won dispute then restores it.
    let (sale2, buyer2) = (common::sale_id(), common::buyer());
    assert_eq!(
        ping(&stack, &t, sale_event("dispute", &sale2, &buyer2, false))
            .await
            .status,
        204
    );
    let late = ping(&stack, &t, sale_body(&sale2, &buyer2)).await;
    assert_eq!(late.json()["license"]["status"], "suspended");
    let won = ping(
        &stack,
        &t,
        sale_event("dispute_won", &sale2, &buyer2, false),
    )
    .await;
    assert_eq!(won.json()["license_status"], "active");
}

#[tokio::test]
async fn renewals_extend_the_subscription_license_without_a_new_key_or_email() {
    let stack = stack().await;
    let t = seed(
        &stack,
        Seed {
            duration_days: Some(30),
            ..Seed::default()
        },
    )
    .await;
    let (first, buyer) = (sale_id(), buyer());
    let subscription = format!("{}==", unique("sub"));

    let minted = ping(
        &stack,
        &t,
        subscription_sale(&first, &buyer, &subscription, false),
    )
    .await;
    assert_eq!(minted.status, 200, "{}", minted.body);
    let license = minted.json()["license"].clone();
    let first_expiry = parse_time(&license["expires_at"]);

    let renewal_sale = sale_id();
    let renewed = ping(
        &stack,
        &t,
        subscription_sale(&renewal_sale, &buyer, &subscription, true),
    )
    .await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let body = renewed.json();
    assert_eq!(body["renewed"], true);
    assert_eq!(body["license"]["id"], license["id"]);
    assert_eq!(body["license"]["key"], license["key"]);
    let second_expiry = parse_time(&body["license"]["expires_at"]);
    assert_eq!((second_expiry - first_expiry).whole_days(), 30);

    let stored: Vec<_> = licenses(&stack, &t.tenant_id)
        .await
        .into_iter()
        .filter(|i| s(i, "sk").starts_with("LICENSE#"))
        .collect();
    assert_eq!(stored.len(), 1, "no second license");
    assert_eq!(
        s(&stored[0], "expires_at"),
        body["license"]["expires_at"].as_str().unwrap()
    );
    let payments = payments(&stack, &t.tenant_id).await;
    assert_eq!(payments.len(), 2);
    assert!(
        payments
            .iter()
            .all(|p| s(p, "license_id") == license["id"].as_str().unwrap())
    );
    assert_eq!(emails_to(&buyer).len(), 1, "no new key email");

    let replay = ping(
        &stack,
        &t,
        subscription_sale(&renewal_sale, &buyer, &subscription, true),
    )
    .await;
    assert_eq!(replay.body, r#"{"duplicate":true,"received":true}"#);
    let stored: Vec<_> = licenses(&stack, &t.tenant_id)
        .await
        .into_iter()
        .filter(|i| s(i, "sk").starts_with("LICENSE#"))
        .collect();
    assert_eq!(
        s(&stored[0], "expires_at"),
        body["license"]["expires_at"].as_str().unwrap()
    );
}

fn parse_time(value: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        value.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

#[tokio::test]
async fn subscription_events_cancel_end_restart_and_update() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (first, buyer) = (sale_id(), buyer());
    let subscription = format!("{}==", unique("sub"));
    assert_eq!(
        ping(
            &stack,
            &t,
            subscription_sale(&first, &buyer, &subscription, false)
        )
        .await
        .status,
        200
    );

    let cancelled = ping(
        &stack,
        &t,
        subscription_event(
            "cancellation",
            &subscription,
            &[&first],
            "cancelled=true&cancelled_at=2026-06-01T10%3A00%3A00Z&cancelled_by_buyer=true",
        ),
    )
    .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(
        cancelled.json()["license_status"],
        "active",
        "a cancellation runs to the paid-through date"
    );

    let updated = ping(
        &stack,
        &t,
        subscription_event("subscription_updated", &subscription, &[&first], "type=upgrade&effective_as_of=2026-06-02T00%3A00%3A00Z&old_plan%5Btier%5D=Basic&new_plan%5Btier%5D=Pro"),
    )
    .await;
    assert_eq!(updated.json()["license_status"], "active");

    let ended_body = subscription_event(
        "subscription_ended",
        &subscription,
        &[&first],
        "ended_at=2026-07-01T10%3A00%3A00Z&ended_reason=cancelled",
    );
    let ended = ping(&stack, &t, ended_body.clone()).await;
    assert_eq!(ended.json()["license_status"], "expired");
    assert_eq!(status_of(&stack, &t).await, "expired");
    assert_eq!(
        ping(&stack, &t, ended_body).await.body,
        r#"{"duplicate":true,"received":true}"#
    );

    let restarted = ping(
        &stack,
        &t,
        subscription_event(
            "subscription_restarted",
            &subscription,
            &[&first],
            "restarted_at=2026-07-05T10%3A00%3A00Z",
        ),
    )
    .await;
    assert_eq!(restarted.json()["license_status"], "active");
    assert_eq!(status_of(&stack, &t).await, "active");

    // The test ping of each event kind changes nothing.
    for resource in [
        "cancellation",
        "subscription_ended",
        "subscription_restarted",
        "subscription_updated",
    ] {
        let reply = ping(
            &stack,
            &t,
            subscription_event(resource, &subscription, &[&first], "test=true"),
        )
        .await;
        assert_eq!(reply.status, 204);
    }
    for resource in ["refund", "dispute", "dispute_won"] {
        let reply = ping(
            &stack,
            &t,
            format!("{}&test=true", sale_event(resource, &first, &buyer, true)),
        )
        .await;
        assert_eq!(reply.status, 204);
    }
    assert_eq!(status_of(&stack, &t).await, "active");
}

#[tokio::test]
async fn an_ended_subscription_seen_before_its_first_sale_mints_it_expired() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (first, buyer) = (sale_id(), buyer());
    let subscription = format!("{}==", unique("sub"));
    let ended = ping(
        &stack,
        &t,
        subscription_event(
            "subscription_ended",
            &subscription,
            &[&first],
            "ended_at=2026-07-01T10%3A00%3A00Z",
        ),
    )
    .await;
    assert_eq!(ended.status, 204);
    let late = ping(
        &stack,
        &t,
        subscription_sale(&first, &buyer, &subscription, false),
    )
    .await;
    assert_eq!(late.json()["license"]["status"], "expired");
}
