//! Gumroad's kinds of sale against the local stack, in Gumroad's own encoding: preorders, gifts, seats, tiers,
//! and tier or seat changes of a membership, each ending as the right license (and only one).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::common;

use std::time::Duration;

use common::*;
use keystead::domain::{
    KeyPrefix, MAX_SEATS, Permalink, Product, ProductId, TenantId, Variant, VariantMapping,
};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Adds a product to a seeded tenant and maps `myapp-pro` with `variant` to it.
async fn tier(
    stack: &Stack,
    t: &Seeded,
    variant: &str,
    id: &str,
    prefix: &str,
    seats: u32,
    entitlements: &[&str],
) {
    let tenant_id = TenantId::parse(&t.tenant_id).unwrap();
    let product = Product {
        activation_limit: seats,
        entitlements: entitlements.iter().map(|e| (*e).to_owned()).collect(),
        ..Product::new(
            ProductId::parse(id).unwrap(),
            format!("MyApp {id}"),
            KeyPrefix::parse(prefix).unwrap(),
            "2026-01-01T00:00:00Z".to_owned(),
        )
    };
    stack
        .store
        .create_product(&tenant_id, &product)
        .await
        .unwrap();
    let mapping = VariantMapping {
        permalink: Permalink::parse("myapp-pro").unwrap(),
        variant: Variant::parse(variant).unwrap(),
        product_id: product.product_id,
    };
    stack
        .store
        .put_variant_mapping(&tenant_id, &mapping)
        .await
        .unwrap();
}

/// A tenant whose `myapp-pro` sells three tiers: the plain mapping (`myapp`, 3 seats, no entitlements),
/// `Tier=Team` (`team`, 10 seats) and `Tier=Studio` (`studio`, 25 seats).
pub(crate) async fn tiered(stack: &Stack) -> Seeded {
    let t = seed(stack, Seed::default()).await;
    tier(
        stack,
        &t,
        "Tier=Team",
        "team",
        "TEAM",
        10,
        &["export", "sync"],
    )
    .await;
    tier(
        stack,
        &t,
        "tier = STUDIO",
        "studio",
        "STUDIO",
        25,
        &["export", "sync", "render"],
    )
    .await;
    t
}

async fn ping(stack: &Stack, t: &Seeded, body: String) -> Reply {
    send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), body)).await
}

/// What validate answers for `key`, asked as the app of the tiered product (`myapp`).
async fn validated(stack: &Stack, t: &Seeded, key: &str) -> serde_json::Value {
    api(
        stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "product_id": "myapp"}),
    )
    .await
    .json()
}

pub(crate) fn with_tier(body: String, tier: &str) -> String {
    body.replace(
        "variants%5BTier%5D=Pro",
        &format!("variants%5BTier%5D={tier}"),
    )
}

#[tokio::test]
async fn a_preorder_mints_once_at_release_and_never_at_authorization() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let buyer = buyer();
    let authorization = sale_body(&sale_id(), &buyer).replace(
        "&full_name=Jane%20Doe",
        "&full_name=Jane%20Doe&is_preorder_authorization=true",
    );
    for _ in 0..2 {
        let reply = ping(&stack, &t, authorization.clone()).await;
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
    assert_eq!(
        writes(&stack, &t.tenant_id).await,
        0,
        "an authorization writes nothing"
    );
    assert!(emails_to(&buyer).is_empty());

    // The release charges a new purchase: a new sale id and no flag.
    let release = ping(&stack, &t, sale_body(&sale_id(), &buyer)).await;
    assert_eq!(release.status, 200, "{}", release.body);
    assert_eq!(release.json()["duplicate"], false);
    assert_eq!(
        license_items(&licenses(&stack, &t.tenant_id).await).len(),
        1
    );
    assert_eq!(emails_to(&buyer).len(), 1, "one preorder, one email");

    // A malformed authorization is still refused like any ping.
    let bad = ping(
        &stack,
        &t,
        authorization.replace("quantity=1", "quantity=zero"),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"], "Invalid quantity");
}

#[tokio::test]
async fn a_gift_goes_to_the_giftee_and_its_payment_remembers_the_gifter() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (sale, giftee, gifter) = (sale_id(), buyer(), buyer());
    let body = sale_body(&sale, &giftee)
        .replace("price=2900", "price=0")
        .replace(
            "&ip_country",
            &format!(
                "&is_gift_receiver_purchase=true&gift_price=4900&gifter_email={}&ip_country",
                gifter.replace('@', "%40")
            ),
        );
    let reply = ping(&stack, &t, body.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    assert_eq!(emails_to(&giftee).len(), 1, "the giftee gets the key");
    assert!(emails_to(&gifter).is_empty(), "the gifter gets nothing");
    let items = licenses(&stack, &t.tenant_id).await;
    let license = license_items(&items)[0];
    assert_eq!(s(license, "buyer_email"), giftee);
    let payments = payments(&stack, &t.tenant_id).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(n(&payments[0], "amount_usd_cents"), 4900);
    assert_eq!(
        payments[0].get("gift").and_then(|v| v.as_bool().ok()),
        Some(&true)
    );
    assert_eq!(s(&payments[0], "gifter_email"), gifter);
    assert_eq!(s(&payments[0], "buyer_email"), giftee);

    assert_eq!(ping(&stack, &t, body).await.json()["duplicate"], true);
    let bad = ping(
        &stack,
        &t,
        sale_body(&sale_id(), &giftee).replace(
            "&ip_country",
            "&is_gift_receiver_purchase=true&gift_price=lots&ip_country",
        ),
    )
    .await;
    assert_eq!(bad.json()["error"], "Invalid gift_price");
}

#[tokio::test]
async fn quantity_multiplies_the_seats_and_is_capped_never_refused() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let four = ping(
        &stack,
        &t,
        sale_body(&sale_id(), &buyer()).replace("quantity=1", "quantity=4"),
    )
    .await;
    assert_eq!(four.status, 200, "{}", four.body);
    assert_eq!(four.json()["license"]["activation_limit"], 12);

    let huge = ping(
        &stack,
        &t,
        sale_body(&sale_id(), &buyer()).replace("quantity=1", "quantity=99999999999999999999"),
    )
    .await;
    assert_eq!(huge.status, 200, "{}", huge.body);
    assert_eq!(huge.json()["license"]["activation_limit"], MAX_SEATS);

    for bad in ["0", "000", "-1", "2.5", "four", "%2B3"] {
        let reply = ping(
            &stack,
            &t,
            sale_body(&sale_id(), &buyer()).replace("quantity=1", &format!("quantity={bad}")),
        )
        .await;
        assert_eq!(reply.status, 400, "quantity={bad}");
        assert_eq!(reply.json()["error"], "Invalid quantity", "quantity={bad}");
    }
    assert_eq!(
        license_items(&licenses(&stack, &t.tenant_id).await).len(),
        2
    );
}

#[tokio::test]
async fn a_tier_picks_its_product_and_an_unmapped_tier_the_permalinks() {
    let stack = stack().await;
    let t = tiered(&stack).await;
    let team = ping(
        &stack,
        &t,
        with_tier(sale_body(&sale_id(), &buyer()), "Team"),
    )
    .await;
    assert_eq!(team.status, 200, "{}", team.body);
    let license = &team.json()["license"];
    assert_eq!(license["product_id"], "team");
    assert!(license["key"].as_str().unwrap().starts_with("TEAM-"));
    assert_eq!(license["activation_limit"], 10);

    // Mapped as "tier = STUDIO": compared without case or stray spaces.
    let studio = ping(
        &stack,
        &t,
        with_tier(sale_body(&sale_id(), &buyer()), "%20studio"),
    )
    .await;
    assert_eq!(studio.json()["license"]["product_id"], "studio");

    let unmapped = ping(
        &stack,
        &t,
        with_tier(sale_body(&sale_id(), &buyer()), "Solo"),
    )
    .await;
    assert_eq!(unmapped.json()["license"]["product_id"], "myapp");
    assert!(
        unmapped.json()["license"]["key"]
            .as_str()
            .unwrap()
            .starts_with("ACME-")
    );

    // The entitlements come from the license's product.
    let key = license["key"].as_str().unwrap();
    let validated = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "product_id": "myapp"}),
    )
    .await;
    assert_eq!(validated.json()["entitlements"], json!(["export", "sync"]));
    let activated = api(
        &stack,
        &t.tenant_id,
        "activate",
        json!({"key": key, "product_id": "myapp", "machine_id": "m1"}),
    )
    .await;
    assert_eq!(activated.status, 200, "{}", activated.body);
    assert_eq!(activated.json()["entitlements"], json!(["export", "sync"]));
    let plain = unmapped.json()["license"]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let validated = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": plain, "product_id": "myapp"}),
    )
    .await;
    assert_eq!(validated.json()["entitlements"], json!([]));
}

/// A membership's first sale on `tier` with `quantity` seats; returns its key.
async fn subscribe(
    stack: &Stack,
    t: &Seeded,
    subscription: &str,
    tier: &str,
    quantity: u32,
) -> String {
    let body = with_tier(
        subscription_sale(&sale_id(), &buyer(), subscription, false),
        tier,
    )
    .replace("quantity=1", &format!("quantity={quantity}"));
    let reply = ping(stack, t, body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["license"]["key"].as_str().unwrap().to_owned()
}

fn plan_change(
    subscription: &str,
    kind: &str,
    from: (&str, u32),
    to: (&str, u32),
    effective: &str,
) -> String {
    subscription_event(
        "subscription_updated",
        subscription,
        &[],
        &format!(
            "type={kind}&effective_as_of={}&old_plan%5Btier%5D%5Bid%5D=t1&old_plan%5Btier%5D%5Bname%5D={}\
             &old_plan%5Brecurrence%5D=monthly&old_plan%5Bprice_cents%5D=900&old_plan%5Bquantity%5D={}\
             &new_plan%5Btier%5D%5Bid%5D=t2&new_plan%5Btier%5D%5Bname%5D={}&new_plan%5Brecurrence%5D=monthly\
             &new_plan%5Bprice_cents%5D=2900&new_plan%5Bquantity%5D={}",
            effective.replace(':', "%3A"),
            from.0,
            from.1,
            to.0,
            to.1
        ),
    )
}

fn now_plus(seconds: i64) -> String {
    (OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap()
}

#[tokio::test]
async fn an_upgrade_moves_the_same_key_at_once_and_replays_are_duplicates() {
    let stack = stack().await;
    let t = tiered(&stack).await;
    let sub = format!("{}==", unique("sub"));
    let key = subscribe(&stack, &t, &sub, "Team", 1).await;

    let upgrade = plan_change(&sub, "upgrade", ("Team", 1), ("Studio", 2), &now_plus(0));
    let reply = ping(&stack, &t, upgrade.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["changed"], true);
    assert_eq!(answer["license"]["product_id"], "studio");
    assert_eq!(answer["license"]["activation_limit"], 50);
    // An event's answer never carries the key (issue 24): whoever can send the event must not learn it.
    assert_eq!(answer["license"].get("key"), None);
    assert!(!reply.body.contains(key.as_str()), "{}", reply.body);

    // The same key now validates for the new tier.
    let validated = validated(&stack, &t, &key).await;
    assert_eq!(validated["product_id"], "studio");
    assert_eq!(validated["activation_limit"], 50);
    assert_eq!(
        validated["entitlements"],
        json!(["export", "sync", "render"])
    );
    assert_eq!(validated["valid"], true);

    let replay = ping(&stack, &t, format!("{upgrade}&retry_count=1")).await;
    assert_eq!(replay.body, r#"{"duplicate":true,"received":true}"#);
    assert_eq!(
        license_items(&licenses(&stack, &t.tenant_id).await).len(),
        1
    );

    // A tier nobody mapped leaves the license as it is.
    let unmapped = plan_change(
        &sub,
        "upgrade",
        ("Studio", 2),
        ("Enterprise", 2),
        &now_plus(0),
    );
    let reply = ping(&stack, &t, unmapped).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["changed"], false);
    assert_eq!(reply.json()["license"]["product_id"], "studio");
}

#[tokio::test]
async fn a_downgrade_waits_for_effective_as_of_and_then_applies_on_its_own() {
    let stack = stack().await;
    let t = tiered(&stack).await;
    let sub = format!("{}==", unique("sub"));
    let key = subscribe(&stack, &t, &sub, "Studio", 1).await;

    let downgrade = plan_change(&sub, "downgrade", ("Studio", 1), ("Team", 1), &now_plus(3));
    let reply = ping(&stack, &t, downgrade.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["changed"], true);
    assert_eq!(reply.json()["license"]["product_id"], "studio", "not yet");
    assert_eq!(reply.json()["pending_change"]["product_id"], "team");

    let before = validated(&stack, &t, &key).await;
    assert_eq!(before["product_id"], "studio");
    assert_eq!(before["activation_limit"], 25);
    assert_eq!(before["entitlements"], json!(["export", "sync", "render"]));
    assert_eq!(ping(&stack, &t, downgrade).await.json()["duplicate"], true);
    let items = licenses(&stack, &t.tenant_id).await;
    let facts_before = license_items(&items)[0]
        .get("facts")
        .cloned()
        .expect("the license keeps its facts");

    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "product_id": "team"}),
    )
    .await;
    assert_eq!(after.status, 200, "{}", after.body);
    let after = after.json();
    assert_eq!(after["product_id"], "team");
    assert_eq!(after["activation_limit"], 10);
    assert_eq!(after["entitlements"], json!(["export", "sync"]));
    let items = licenses(&stack, &t.tenant_id).await;
    let stored = license_items(&items)[0];
    assert_eq!(
        s(stored, "product_id"),
        "team",
        "applied to the record by the first read after it was due"
    );
    assert!(!stored.contains_key("pending_change"));
    assert_eq!(
        stored.get("facts"),
        Some(&facts_before),
        "a check reads a license without its facts and Gumroad's purchase, and writes neither away"
    );
    assert!(stored.contains_key("gumroad"));
}

#[tokio::test]
async fn a_seat_change_moves_the_limit_and_machines_above_it_keep_working() {
    let stack = stack().await;
    let t = tiered(&stack).await;
    let sub = format!("{}==", unique("sub"));
    let key = subscribe(&stack, &t, &sub, "Team", 2).await;
    for machine in ["m1", "m2", "m3"] {
        let reply = api(
            &stack,
            &t.tenant_id,
            "activate",
            json!({"key": key, "product_id": "myapp", "machine_id": machine}),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(
        api(
            &stack,
            &t.tenant_id,
            "validate",
            json!({"key": key, "product_id": "myapp"})
        )
        .await
        .json()["activation_limit"],
        20
    );

    // Fewer seats, on a tier that is not mapped at all (Solo): the license's own product stays.
    let solo = format!("{}==", unique("sub"));
    let solo_key = subscribe(&stack, &t, &solo, "Solo", 1).await;
    let more = plan_change(&solo, "upgrade", ("Solo", 1), ("Solo", 2), &now_plus(0));
    let reply = ping(&stack, &t, more).await;
    assert_eq!(reply.json()["changed"], true, "{}", reply.body);
    assert_eq!(reply.json()["license"]["product_id"], "myapp");
    assert_eq!(reply.json()["license"]["activation_limit"], 6);
    assert!(solo_key.starts_with("ACME-"));

    // Team seats 2 → 1 by a seat change the buyer makes now: the limit drops to 10 with 3 machines on it…
    tier(&stack, &t, "Tier=Tiny", "tiny", "TINY", 1, &[]).await;
    let fewer = plan_change(&sub, "downgrade", ("Team", 2), ("Tiny", 2), &now_plus(-5));
    let reply = ping(&stack, &t, fewer.clone()).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["license"]["activation_limit"], 2);
    let validated = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "product_id": "tiny", "machine_id": "m3"}),
    )
    .await
    .json();
    assert_eq!(
        validated["activated"], true,
        "machines already on it keep working"
    );
    assert_eq!(validated["activations"], 3);
    let refused = api(
        &stack,
        &t.tenant_id,
        "activate",
        json!({"key": key, "product_id": "tiny", "machine_id": "m4"}),
    )
    .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    // …until enough machines leave.
    for machine in ["m1", "m2"] {
        api(
            &stack,
            &t.tenant_id,
            "deactivate",
            json!({"key": key, "product_id": "tiny", "machine_id": machine}),
        )
        .await;
    }
    let taken = api(
        &stack,
        &t.tenant_id,
        "activate",
        json!({"key": key, "product_id": "tiny", "machine_id": "m4"}),
    )
    .await;
    assert_eq!(taken.status, 200, "{}", taken.body);
    assert_eq!(ping(&stack, &t, fewer).await.json()["duplicate"], true);
}

#[tokio::test]
async fn malformed_plan_fields_name_the_field() {
    let stack = stack().await;
    let t = tiered(&stack).await;
    let sub = format!("{}==", unique("sub"));
    subscribe(&stack, &t, &sub, "Team", 1).await;
    let cases = [
        (
            plan_change(&sub, "sideways", ("Team", 1), ("Studio", 1), &now_plus(0)),
            "Invalid type",
        ),
        (
            plan_change(&sub, "upgrade", ("Team", 1), ("Studio", 1), "soon"),
            "Invalid effective_as_of",
        ),
        (
            plan_change(&sub, "upgrade", ("Team", 1), ("Studio", 0), &now_plus(0)),
            "Invalid new_plan[quantity]",
        ),
    ];
    for (body, error) in cases {
        let reply = ping(&stack, &t, body).await;
        assert_eq!(reply.status, 400, "{error}");
        assert_eq!(reply.json()["error"], error);
    }
    let items = licenses(&stack, &t.tenant_id).await;
    assert_eq!(
        s(license_items(&items)[0], "product_id"),
        "team",
        "nothing changed"
    );
}
