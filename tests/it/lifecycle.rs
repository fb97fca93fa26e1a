//! License lifecycle against the local stack: Gumroad's refund, dispute and subscription events replayed in their
//! own encoding, in order and out of order, and the license state and records they leave.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::common;

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

/// Issue 22, defect 2: licenses carried a DynamoDB TTL (expiry + 30 days), so a late renewal minted a second key
/// and a late refund answered 503 forever once DynamoDB had deleted the license.
#[tokio::test]
async fn nothing_a_license_depends_on_expires_so_late_renewals_and_refunds_still_find_it() {
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
    let key = minted.json()["license"]["key"].clone();
    let stored = licenses(&stack, &t.tenant_id).await;
    assert!(
        license_items(&stored)
            .iter()
            .all(|l| !l.contains_key("ttl")),
        "a license carries no TTL"
    );

    // Ten years on, DynamoDB's TTL has deleted whatever carried one.
    let decade = time::OffsetDateTime::now_utc().unix_timestamp() + 10 * 365 * 24 * 3600;
    let swept = ttl_sweep(&stack, &t.tenant_id, decade).await;
    assert!(
        swept.iter().all(|sk| !sk.starts_with("LICENSE#")),
        "{swept:?}"
    );

    let renewal = sale_id();
    let renewed = ping(
        &stack,
        &t,
        subscription_sale(&renewal, &buyer, &subscription, true),
    )
    .await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    assert_eq!(renewed.json()["renewed"], true, "{}", renewed.body);
    assert_eq!(renewed.json()["license"]["key"], key, "the same key");
    assert_eq!(
        license_items(&licenses(&stack, &t.tenant_id).await).len(),
        1
    );

    let refund = ping(&stack, &t, sale_event("refund", &first, &buyer, true)).await;
    assert_eq!(refund.status, 200, "{}", refund.body);
    assert_eq!(refund.json()["license_status"], "revoked");
}

/// Issue 22, defect 4: a won dispute re-activated a subscription that had ended while the dispute was open.
#[tokio::test]
async fn a_won_dispute_does_not_bring_back_a_subscription_that_ended() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (first, buyer) = (sale_id(), buyer());
    let subscription = format!("{}==", unique("sub"));
    let minted = ping(
        &stack,
        &t,
        subscription_sale(&first, &buyer, &subscription, false),
    )
    .await;
    let key = minted.json()["license"]["key"].as_str().unwrap().to_owned();
    let disputed = ping(&stack, &t, sale_event("dispute", &first, &buyer, false)).await;
    assert_eq!(disputed.json()["license_status"], "suspended");
    let ended = ping(
        &stack,
        &t,
        subscription_event(
            "subscription_ended",
            &subscription,
            &[&first],
            "ended_at=2026-07-01T10%3A00%3A00Z&ended_reason=cancelled",
        ),
    )
    .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    let won = ping(&stack, &t, sale_event("dispute_won", &first, &buyer, false)).await;
    assert_eq!(won.json()["license_status"], "expired", "{}", won.body);
    assert_eq!(status_of(&stack, &t).await, "expired");
    let validated = api(
        &stack,
        &t.tenant_id,
        "validate",
        serde_json::json!({"key": key}),
    )
    .await;
    assert_eq!(validated.json()["valid"], false, "{}", validated.body);
    assert_eq!(validated.json()["status"], "expired", "{}", validated.body);
}

/// Issue 22, defect 5: a refund of a renewal that arrived before the renewal itself was dropped, and the
/// refunded renewal extended the license.
#[tokio::test]
async fn a_refund_that_arrives_before_its_renewal_still_revokes() {
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

    let renewal = sale_id();
    let early = ping(&stack, &t, sale_event("refund", &renewal, &buyer, true)).await;
    assert_eq!(early.status, 204, "{}", early.body);
    let late = ping(
        &stack,
        &t,
        subscription_sale(&renewal, &buyer, &subscription, true),
    )
    .await;
    assert_eq!(late.status, 200, "{}", late.body);
    assert_eq!(status_of(&stack, &t).await, "revoked");
    let stored = licenses(&stack, &t.tenant_id).await;
    let license = license_items(&stored)[0];
    assert_eq!(license["refunded"].as_bool().ok(), Some(&true));
    assert_eq!(
        payments(&stack, &t.tenant_id).await.len(),
        2,
        "the renewal's payment is recorded"
    );
}

/// Issue 22, defect 3 (and issue 24's hijacked pointer): a subscription's first sale that arrived after one of its
/// renewals minted a second license and re-pointed the subscription to it.
#[tokio::test]
async fn one_subscription_has_one_license_whatever_order_its_charges_arrive_in() {
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
    let (renewal, later) = (sale_id(), sale_id());
    let subscription = format!("{}==", unique("sub"));

    let early = ping(
        &stack,
        &t,
        subscription_sale(&renewal, &buyer, &subscription, true),
    )
    .await;
    assert_eq!(early.status, 200, "{}", early.body);
    let key = early.json()["license"]["key"].clone();
    for (sale, recurring) in [(&first, false), (&later, true)] {
        let reply = ping(
            &stack,
            &t,
            subscription_sale(sale, &buyer, &subscription, recurring),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["renewed"], true, "{}", reply.body);
        assert_eq!(reply.json()["license"]["key"], key);
    }
    let stored = licenses(&stack, &t.tenant_id).await;
    let minted = license_items(&stored);
    assert_eq!(minted.len(), 1, "one license");
    let payments = payments(&stack, &t.tenant_id).await;
    assert_eq!(payments.len(), 3);
    assert!(
        payments
            .iter()
            .all(|p| s(p, "license_id") == s(minted[0], "license_id"))
    );
    assert_eq!(emails_to(&buyer).len(), 1);
}

fn the_license(items: &[common::Item]) -> &common::Item {
    let found = license_items(items);
    assert_eq!(found.len(), 1, "exactly one license");
    found[0]
}

/// Issue 22, defect 6: events that arrived before their sale kept only a status: the refunded and chargebacked
/// flags were lost, cancellations, keep-policy refunds and plan changes left nothing, and subscription events
/// without purchase ids were dropped.
#[tokio::test]
async fn events_before_their_sale_are_kept_whole_and_folded_in_when_it_lands() {
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
    let (first, buyer) = (sale_id(), buyer());
    let subscription = format!("{}==", unique("sub"));
    let early = [
        sale_event("refund", &first, &buyer, true),
        subscription_event(
            "cancellation",
            &subscription,
            &[],
            "cancelled=true&cancelled_at=2026-06-01T10%3A00%3A00Z&cancelled_by_buyer=true",
        ),
    ];
    for body in early {
        let reply = ping(&stack, &t, body).await;
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
    let late = ping(
        &stack,
        &t,
        subscription_sale(&first, &buyer, &subscription, false),
    )
    .await;
    assert_eq!(late.status, 200, "{}", late.body);
    let items = licenses(&stack, &t.tenant_id).await;
    let license = the_license(&items);
    assert_eq!(s(license, "status"), "active", "the keep policy");
    assert_eq!(license["refunded"].as_bool().ok(), Some(&true));
    assert_eq!(
        s(license, "subscription_cancelled_at"),
        "2026-06-01T10:00:00Z"
    );
}

/// Issue 22, defect 7: times were never compared, so a retried end (or cancellation) that landed after a restart
/// turned a paying member expired, and a renewal never cleared an end.
#[tokio::test]
async fn a_late_retry_of_an_older_end_or_cancellation_changes_nothing() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (first, buyer) = (sale_id(), buyer());
    let subscription = format!("{}==", unique("sub"));
    ping(
        &stack,
        &t,
        subscription_sale(&first, &buyer, &subscription, false),
    )
    .await;
    let event =
        |resource: &str, extra: &str| subscription_event(resource, &subscription, &[&first], extra);
    let cancelled = event(
        "cancellation",
        "cancelled=true&cancelled_at=2026-06-01T10%3A00%3A00Z&cancelled_by_buyer=true",
    );
    let ended = event(
        "subscription_ended",
        "ended_at=2026-07-01T10%3A00%3A00Z&ended_reason=failed_payment",
    );
    let restarted = event(
        "subscription_restarted",
        "restarted_at=2026-07-05T10%3A00%3A00Z",
    );
    // The restart lands first; the older cancellation and end land after it (Gumroad's retries after a 503).
    assert_eq!(ping(&stack, &t, restarted).await.status, 200);
    for body in [&ended, &cancelled] {
        let retried = ping(&stack, &t, format!("{body}&retry_count=1")).await;
        assert_eq!(retried.status, 200, "{}", retried.body);
        assert_eq!(
            retried.json()["license_status"],
            "active",
            "{}",
            retried.body
        );
    }
    assert_eq!(status_of(&stack, &t).await, "active");
    let items = licenses(&stack, &t.tenant_id).await;
    let license = the_license(&items);
    for attr in [
        "subscription_ended_at",
        "subscription_failed_at",
        "subscription_cancelled_at",
    ] {
        assert!(!license.contains_key(attr), "{attr}: {license:?}");
    }

    // An end, then the subscription's next charge: the charge clears the end.
    let (second, buyer2) = (sale_id(), common::buyer());
    let other = format!("{}==", unique("sub"));
    ping(
        &stack,
        &t,
        subscription_sale(&second, &buyer2, &other, false),
    )
    .await;
    let ended = subscription_event(
        "subscription_ended",
        &other,
        &[&second],
        "ended_at=2026-05-05T10%3A00%3A00Z&ended_reason=failed_payment",
    );
    assert_eq!(
        ping(&stack, &t, ended).await.json()["license_status"],
        "expired"
    );
    let renewal = subscription_sale(&sale_id(), &buyer2, &other, true).replace(
        "sale_timestamp=2026-05-04T19%3A38%3A56Z",
        "sale_timestamp=2026-05-06T10%3A00%3A00Z",
    );
    let renewed = ping(&stack, &t, renewal).await;
    assert_eq!(
        renewed.json()["license"]["status"],
        "active",
        "{}",
        renewed.body
    );
    let items = licenses(&stack, &t.tenant_id).await;
    let renewed = license_items(&items)
        .into_iter()
        .find(|l| s(l, "sale_id") == second.as_str())
        .unwrap();
    assert_eq!(s(renewed, "status"), "active");
    assert!(
        !renewed.contains_key("subscription_ended_at"),
        "{renewed:?}"
    );
    assert!(
        !renewed.contains_key("subscription_failed_at"),
        "{renewed:?}"
    );
}

/// Issue 22, defect 8: read-modify-writes wrote stale copies. A key replacement copied the license as it was read,
/// losing what landed in between (here a cancellation), and `product set` overwrote a product file uploaded
/// meanwhile. Every write now bumps a version, and these writes hold to the version they read.
#[tokio::test]
async fn a_key_replacement_or_product_set_computed_from_a_stale_read_writes_nothing() {
    use keystead::storage::{PortalStore, Replaced, Store};
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let tenant_id = keystead::domain::TenantId::parse(&t.tenant_id).unwrap();
    let (first, buyer) = (sale_id(), buyer());
    let subscription = format!("{}==", unique("sub"));
    let sold = ping(
        &stack,
        &t,
        subscription_sale(&first, &buyer, &subscription, false),
    )
    .await;
    let key = keystead::domain::LicenseKey::from_string(
        sold.json()["license"]["key"].as_str().unwrap().to_owned(),
    );
    let old = stack
        .store
        .get_license(&tenant_id, &key.hash())
        .await
        .unwrap()
        .unwrap();
    let cancelled = ping(
        &stack,
        &t,
        subscription_event(
            "cancellation",
            &subscription,
            &[&first],
            "cancelled=true&cancelled_at=2026-06-01T10%3A00%3A00Z",
        ),
    )
    .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    let mut new = old.clone();
    new.key = keystead::domain::LicenseKey::generate(
        &keystead::domain::KeyPrefix::parse("ACME").unwrap(),
    )
    .unwrap();
    new.key_hash = new.key.hash();
    let replaced = stack.store.replace_key(&old, &[], &new).await.unwrap();
    assert!(matches!(replaced, Replaced::Stale), "{replaced:?}");
    let items = licenses(&stack, &t.tenant_id).await;
    let license = the_license(&items);
    assert_eq!(s(license, "key_hash"), key.hash().as_str());
    assert_eq!(
        s(license, "subscription_cancelled_at"),
        "2026-06-01T10:00:00Z"
    );

    // `product set` read the product before a `product file` upload landed.
    let product_id = keystead::domain::ProductId::parse(&t.product_id).unwrap();
    let read = stack
        .store
        .load_tenant(&tenant_id)
        .await
        .unwrap()
        .unwrap()
        .products
        .remove(&product_id)
        .unwrap();
    let file = keystead::domain::ProductFile {
        s3_key: format!("products/{}/{}/x/MyApp.zip", t.tenant_id, t.product_id),
        name: "MyApp.zip".into(),
        size: 3,
        sha256: "00".repeat(32),
        uploaded_at: "2026-12-06T00:00:00Z".into(),
    };
    stack
        .store
        .set_product_file(&tenant_id, &product_id, &file)
        .await
        .unwrap();
    let mut renamed = read.clone();
    renamed.name = "Renamed".into();
    assert!(
        !stack
            .store
            .replace_product(&tenant_id, &renamed)
            .await
            .unwrap(),
        "the product changed since it was read"
    );
    let stored = stack.store.load_tenant(&tenant_id).await.unwrap().unwrap();
    assert_eq!(stored.products[&product_id].file.as_ref(), Some(&file));
}

/// Issue 24: a tenant pinned to its seller requires the seller on sale-shaped pings, and still takes Gumroad's
/// subscription events, which never name one.
#[tokio::test]
async fn a_pinned_seller_still_takes_subscription_events_which_name_no_seller() {
    let stack = stack().await;
    let t = seed(
        &stack,
        Seed {
            seller_id: Some("kL0psVL2admJSYRNs-OCMg==".into()),
            ..Seed::default()
        },
    )
    .await;
    let (first, buyer) = (sale_id(), buyer());
    let subscription = format!("{}==", unique("sub"));
    let sold = ping(
        &stack,
        &t,
        subscription_sale(&first, &buyer, &subscription, false),
    )
    .await;
    assert_eq!(sold.status, 200, "{}", sold.body);
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
        cancelled.json()["event"],
        "cancellation",
        "{}",
        cancelled.body
    );
    // A refund is sale-shaped: without the seller it is refused like a wrong token, and changes nothing.
    let refund = sale_body(&first, &buyer)
        .replace("refunded=false", "refunded=true")
        .replace("resource_name=sale", "resource_name=refund")
        .replace("seller_id=kL0psVL2admJSYRNs-OCMg%3D%3D&", "");
    let refused = ping(&stack, &t, refund).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(status_of(&stack, &t).await, "active");
}
