//! Read-back (`tenant set --verify-sales on`) against a leaked ping URL (issue 24): a forged ping for a real
//! sale mints what Gumroad sold, not what the ping claims; a forged lifecycle event changes nothing unless
//! Gumroad's records show it; the seller's token travels in a header, never in a URL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::cli_support::{self, FakeGumroad, GOOD_TOKEN};
use crate::common::*;
use crate::sale_kinds::{tiered, with_tier};
use keystead::app::App;
use serde_json::{Value, json};

const PRODUCT: &str = "32-nPAicqbLj8B_WswVlMw==";

/// A sale as Gumroad's `GET /v2/sales/:id` answers it: the cheap plain product, one seat, tier Pro.
fn gumroad_sale(id: &str, email: &str) -> Value {
    json!({"id": id, "email": email, "seller_id": "kL0psVL2admJSYRNs-OCMg==", "product_id": PRODUCT,
           "product_permalink": "https://acme.gumroad.com/l/myapp-pro", "price": 2900, "quantity": 1,
           "variants": {"Tier": "Pro"}, "created_at": "2026-05-04T19:38:56Z", "refunded": false,
           "partially_refunded": false, "disputed": false, "dispute_won": false, "chargedback": false,
           "recurring_charge": false, "is_gift_receiver_purchase": false})
}

/// The tiered tenant with read-back on, and the application reading `gumroad`.
async fn reading_back(stack: &Stack, gumroad: &FakeGumroad) -> (Seeded, App) {
    let t = tiered(stack).await;
    gumroad.read_back_on(&t.tenant_id);
    (t, stack.app.clone().with_gumroad_api(&gumroad.url))
}

async fn ping(app: &App, t: &Seeded, body: String) -> Reply {
    send(app, &Ping::new(&t.tenant_id, Some(&t.token), body)).await
}

async fn status(stack: &Stack, t: &Seeded, key: &str) -> Value {
    let reply = api(
        stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "product_id": "myapp"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

#[tokio::test]
async fn a_forged_ping_for_a_real_cheap_sale_mints_what_gumroad_sold() {
    let stack = stack().await;
    let gumroad = FakeGumroad::start();
    let (t, app) = reading_back(&stack, &gumroad).await;
    let (sale, buyer) = (sale_id(), buyer());
    gumroad.set_sales(vec![gumroad_sale(&sale, &buyer)]);

    // The real sale's id, email and price; the top tier, 99,999 seats, a key of the forger's choosing and a
    // victim's subscription.
    let forged = with_tier(sale_body(&sale, &buyer), "Studio")
        .replace("quantity=1", "quantity=99999")
        .replace(
            "&full_name=Jane%20Doe",
            "&full_name=Jane%20Doe&subscription_id=victim-sub&license_key=FORGED-KEY",
        );
    let reply = ping(&app, &t, forged).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let license = &reply.json()["license"];
    assert_eq!(
        license["product_id"], "myapp",
        "Gumroad sold the plain tier"
    );
    assert_eq!(license["activation_limit"], 3, "one seat's worth");
    let key = license["key"].as_str().unwrap();
    assert!(key.starts_with("ACME-"), "{key}");
    let items = licenses(&stack, &t.tenant_id).await;
    assert!(
        !items
            .iter()
            .any(|i| s(i, "sk").starts_with("SUBSCRIPTION#")),
        "no subscription pointer: Gumroad's sale has no subscription"
    );

    // The token went in a header, never in the URL.
    let reads: Vec<_> = gumroad
        .received()
        .into_iter()
        .filter(|r| r.path.starts_with("/v2/sales/"))
        .collect();
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].authorization.as_deref(), Some("Bearer tok-good"));
    assert!(reads[0].query.is_empty(), "{:?}", reads[0].query);
}

#[tokio::test]
async fn a_forged_lifecycle_event_changes_nothing_until_gumroad_shows_it() {
    let stack = stack().await;
    let gumroad = FakeGumroad::start();
    let (t, app) = reading_back(&stack, &gumroad).await;
    let (sale, buyer) = (sale_id(), buyer());
    let mut known = gumroad_sale(&sale, &buyer);
    gumroad.set_sales(vec![known.clone()]);
    let sold = ping(&app, &t, sale_body(&sale, &buyer)).await;
    assert_eq!(sold.status, 200, "{}", sold.body);
    let key = sold.json()["license"]["key"].as_str().unwrap().to_owned();

    // A forged refund, dispute and won dispute of a sale Gumroad shows as paid: refused, nothing changes.
    for (resource, refunded) in [("refund", true), ("refund", false), ("dispute", false)] {
        let reply = ping(&app, &t, sale_event(resource, &sale, &buyer, refunded)).await;
        assert_eq!(reply.status, 400, "{resource}: {}", reply.body);
        assert_eq!(reply.body, r#"{"error":"Invalid request"}"#);
        assert_eq!(
            status(&stack, &t, &key).await["status"],
            "active",
            "{resource}"
        );
    }

    // Gumroad shows the chargeback: the dispute applies; a forged win does not undo it.
    known["disputed"] = json!(true);
    known["chargedback"] = json!(true);
    gumroad.set_sales(vec![known.clone()]);
    let dispute = ping(&app, &t, sale_event("dispute", &sale, &buyer, false)).await;
    assert_eq!(dispute.status, 200, "{}", dispute.body);
    let disputed = status(&stack, &t, &key).await["status"].clone();
    assert_ne!(disputed, "active");
    let forged_win = ping(&app, &t, sale_event("dispute_won", &sale, &buyer, false)).await;
    assert_eq!(forged_win.status, 400, "{}", forged_win.body);
    assert_eq!(status(&stack, &t, &key).await["status"], disputed);

    // Once Gumroad shows the dispute won, the same ping applies.
    known["dispute_won"] = json!(true);
    gumroad.set_sales(vec![known.clone()]);
    let won = ping(&app, &t, sale_event("dispute_won", &sale, &buyer, false)).await;
    assert_eq!(won.status, 200, "{}", won.body);
    assert_eq!(status(&stack, &t, &key).await["status"], "active");

    // Gumroad down: 503, which Gumroad retries; nothing changed.
    known["refunded"] = json!(true);
    gumroad.set_sales(vec![known]);
    gumroad.fail_sales_requests(1);
    let down = ping(&app, &t, sale_event("refund", &sale, &buyer, true)).await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(status(&stack, &t, &key).await["status"], "active");
    let refund = ping(&app, &t, sale_event("refund", &sale, &buyer, true)).await;
    assert_eq!(refund.status, 200, "{}", refund.body);
    assert_eq!(status(&stack, &t, &key).await["status"], "revoked");
}

#[tokio::test]
async fn a_forged_subscription_event_changes_nothing_until_gumroad_shows_it() {
    let stack = stack().await;
    let gumroad = FakeGumroad::start();
    let (t, app) = reading_back(&stack, &gumroad).await;
    let (first, buyer, subscription) = (sale_id(), buyer(), unique("sub"));
    let mut charge = gumroad_sale(&first, &buyer);
    charge["subscription_id"] = json!(subscription);
    gumroad.set_sales(vec![charge.clone()]);
    let mut subscriber = json!({"id": subscription, "product_id": PRODUCT, "purchase_ids": [first],
                                "status": "alive", "cancelled_at": null, "ended_at": null,
                                "user_requested_cancellation_at": null});
    gumroad.set_subscribers(vec![subscriber.clone()]);
    let sold = ping(
        &app,
        &t,
        subscription_sale(&first, &buyer, &subscription, false),
    )
    .await;
    assert_eq!(sold.status, 200, "{}", sold.body);
    let key = sold.json()["license"]["key"].as_str().unwrap().to_owned();

    let upgrade = |tier: &str| {
        subscription_event(
            "subscription_updated",
            &subscription,
            &[&first],
            &format!(
                "type=upgrade&effective_as_of=2026-06-02T00%3A00%3A00Z&old_plan%5Btier%5D%5Bname%5D=Pro&new_plan%5Btier%5D%5Bname%5D={tier}&new_plan%5Bquantity%5D=1"
            ),
        )
    };
    let ended = subscription_event(
        "subscription_ended",
        &subscription,
        &[&first],
        "ended_at=2026-07-01T10%3A00%3A00Z&ended_reason=cancelled",
    );
    // Gumroad shows the subscription alive, its latest charge sold as Pro: a forged end and a forged upgrade to
    // the top tier are refused.
    for forged in [ended.clone(), upgrade("Studio")] {
        let reply = ping(&app, &t, forged).await;
        assert_eq!(reply.status, 400, "{}", reply.body);
        let now = status(&stack, &t, &key).await;
        assert_eq!(now["status"], "active");
        assert_eq!(now["product_id"], "myapp");
    }

    // A real upgrade: Gumroad charged it as Studio, so it applies.
    let upgrade_charge = sale_id();
    let mut studio = gumroad_sale(&upgrade_charge, &buyer);
    studio["variants"] = json!({"Tier": "Studio"});
    studio["subscription_id"] = json!(subscription);
    gumroad.set_sales(vec![charge, studio]);
    subscriber["purchase_ids"] = json!([first, upgrade_charge]);
    gumroad.set_subscribers(vec![subscriber.clone()]);
    let real = ping(&app, &t, upgrade("Studio")).await;
    assert_eq!(real.status, 200, "{}", real.body);
    assert_eq!(status(&stack, &t, &key).await["product_id"], "studio");

    // A real end.
    subscriber["status"] = json!("cancelled");
    subscriber["ended_at"] = json!("2026-07-01T10:00:00Z");
    gumroad.set_subscribers(vec![subscriber]);
    let real_end = ping(&app, &t, ended).await;
    assert_eq!(real_end.status, 200, "{}", real_end.body);
    assert_eq!(status(&stack, &t, &key).await["status"], "expired");

    let reads = gumroad.received();
    assert!(reads.iter().any(|r| r.path.starts_with("/v2/subscribers/")));
    assert!(
        reads
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer tok-good")
                && !r.query.contains_key("access_token"))
    );
}

#[test]
fn a_gumroad_api_url_that_would_send_the_token_in_the_clear_is_refused() {
    let out = cli_support::keystead()
        .env("GUMROAD_API_URL", "http://api.gumroad.example")
        .env("GUMROAD_ACCESS_TOKEN", GOOD_TOKEN)
        .args(["gumroad", "subscriptions"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = cli_support::stderr_of(&out);
    assert!(err.contains("must be an https:// URL"), "{err}");
    assert!(!err.contains(GOOD_TOKEN));
}

#[tokio::test]
async fn read_back_through_a_plain_http_gumroad_api_url_is_refused_and_retried() {
    let stack = stack().await;
    let gumroad = FakeGumroad::start();
    let (t, _) = reading_back(&stack, &gumroad).await;
    let app = stack
        .app
        .clone()
        .with_gumroad_api("http://api.gumroad.example");
    let (sale, buyer) = (sale_id(), buyer());
    let reply = ping(&app, &t, sale_body(&sale, &buyer)).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(payments(&stack, &t.tenant_id).await.is_empty());
}
