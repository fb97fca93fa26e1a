//! Moving from Gumroad's license keys, against the local stack: Gumroad's own verify endpoint answered by keystead in
//! Gumroad's shapes, and products whose licenses keep the keys Gumroad already issued.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::cli_support;
use crate::common;

use cli_support::{FakeGumroad, GOOD_TOKEN, ok_json_cmd};
use common::*;
use keystead::domain::{KeySource, TenantId};
use keystead::storage::Store;
use serde_json::{Value, json};

const GUMROAD_PRODUCT_ID: &str = "32-nPAicqbLj8B_WswVlMw==";
const NOT_FOUND: &str =
    r#"{"message":"That license does not exist for the provided product.","success":false}"#;

/// A tenant that answers Gumroad's verify (`tenant set --gumroad-verify on`).
fn answering_verify() -> Seed {
    Seed {
        gumroad_verify: true,
        ..Seed::default()
    }
}

fn verify_request<'a>(tenant: &str, body: String) -> Ping<'a> {
    let mut ping = Ping::new(tenant, None, body);
    ping.path = format!("/gumroad/{tenant}/v2/licenses/verify");
    ping
}

/// Gumroad's request, form-encoded as Gumroad's client libraries send it.
async fn verify(stack: &Stack, tenant: &str, params: &[(&str, &str)]) -> Reply {
    let body = serde_urlencoded::to_string(params).unwrap();
    send(&stack.app, &verify_request(tenant, body)).await
}

/// Makes the seeded product keep Gumroad's keys.
async fn keep_gumroads_keys(stack: &Stack, t: &Seeded) {
    stack
        .change_product(&t.tenant_id, &t.product_id, |product| {
            product.key_source = KeySource::Gumroad;
        })
        .await;
}

fn with_custom_fields(body: String) -> String {
    body.replace(
        "&ip_country",
        "&Company=Acme%20Ltd&custom_fields%5BCompany%5D=Acme%20Ltd&custom_fields%5BSeats%20wanted%5D=5&ip_country",
    )
}

#[tokio::test]
async fn verify_answers_in_gumroads_shapes_and_counts_uses() {
    let stack = stack().await;
    let t = seed(&stack, answering_verify()).await;
    let (sale, buyer) = (sale_id(), buyer());
    let sold = send(
        &stack.app,
        &Ping::new(
            &t.tenant_id,
            Some(&t.token),
            with_custom_fields(sale_body(&sale, &buyer)),
        ),
    )
    .await;
    let key = sold.json()["license"]["key"].as_str().unwrap().to_owned();

    let first = verify(
        &stack,
        &t.tenant_id,
        &[("product_id", GUMROAD_PRODUCT_ID), ("license_key", &key)],
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let answer = first.json();
    assert_eq!(answer["success"], true);
    assert_eq!(answer["uses"], 1);
    let purchase = &answer["purchase"];
    assert_eq!(purchase["id"], sale.as_str());
    assert_eq!(purchase["sale_id"], sale.as_str());
    assert_eq!(purchase["email"], buyer.as_str());
    assert_eq!(purchase["license_key"], key.as_str());
    assert_eq!(purchase["product_id"], GUMROAD_PRODUCT_ID);
    assert_eq!(purchase["permalink"], "myapp-pro");
    assert_eq!(
        purchase["product_permalink"],
        "https://acme.gumroad.com/l/myapp-pro"
    );
    assert_eq!(purchase["price"], 2900);
    assert_eq!(purchase["seller_id"], "kL0psVL2admJSYRNs-OCMg==");
    assert_eq!(purchase["created_at"], "2026-05-04T19:38:56Z");
    assert_eq!(purchase["variants"], "(Pro)");
    assert_eq!(
        purchase["custom_fields"],
        json!(["Company: Acme Ltd", "Seats wanted: 5"])
    );
    assert_eq!(purchase["refunded"], false);
    assert_eq!(purchase["chargebacked"], false);
    assert_eq!(purchase["subscription_cancelled_at"], Value::Null);

    // Counting again, then only reading; the permalink resolves too, as a slug or a URL.
    let second = verify(
        &stack,
        &t.tenant_id,
        &[("product_permalink", "myapp-pro"), ("license_key", &key)],
    )
    .await;
    assert_eq!(second.json()["uses"], 2);
    let read = send(
        &stack.app,
        &verify_request(
            &t.tenant_id,
            json!({"product_permalink": "https://acme.gumroad.com/l/myapp-pro", "license_key": key,
                   "increment_uses_count": "false"})
            .to_string(),
        )
        .header("content-type", "application/json"),
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(
        read.json()["uses"],
        2,
        "increment_uses_count=false only reads"
    );

    for params in [
        vec![
            ("product_id", GUMROAD_PRODUCT_ID),
            ("license_key", "NOPE-1234"),
        ],
        vec![
            ("product_id", "another-product=="),
            ("license_key", key.as_str()),
        ],
        vec![
            ("product_permalink", "other-app"),
            ("license_key", key.as_str()),
        ],
        vec![("license_key", key.as_str())],
    ] {
        let reply = verify(&stack, &t.tenant_id, &params).await;
        assert_eq!(reply.status, 404, "{params:?}");
        assert_eq!(reply.body, NOT_FOUND, "{params:?}");
    }
    let other_tenant = verify(
        &stack,
        "someone-else",
        &[("product_id", GUMROAD_PRODUCT_ID), ("license_key", &key)],
    )
    .await;
    assert_eq!(other_tenant.body, NOT_FOUND);
}

#[tokio::test]
async fn gumroads_verify_answers_only_for_a_tenant_that_opted_in() {
    let stack = stack().await;
    let app = stack
        .app
        .clone()
        .with_tenant_cache_ttl(std::time::Duration::ZERO);
    let t = seed(&stack, Seed::default()).await;
    let sold = send(
        &app,
        &Ping::new(
            &t.tenant_id,
            Some(&t.token),
            sale_body(&sale_id(), &buyer()),
        ),
    )
    .await;
    let key = sold.json()["license"]["key"].as_str().unwrap().to_owned();
    let params = [
        ("product_id", GUMROAD_PRODUCT_ID),
        ("license_key", key.as_str()),
    ];
    let body = || serde_urlencoded::to_string(params).unwrap();

    // Off by default: a real key gets Gumroad's 404, and no use is counted.
    let off = send(&app, &verify_request(&t.tenant_id, body())).await;
    assert_eq!(off.status, 404, "{}", off.body);
    assert_eq!(off.body, NOT_FOUND);
    let shown = cli_support::ok_json(&["tenant", "show", &t.tenant_id]);
    assert_eq!(shown["gumroad_verify"], false);

    cli_support::ok(&["tenant", "set", &t.tenant_id, "--gumroad-verify", "on"]);
    let on = send(&app, &verify_request(&t.tenant_id, body())).await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(on.json()["uses"], 1, "the refused call counted nothing");

    cli_support::ok(&["tenant", "set", &t.tenant_id, "--gumroad-verify", "off"]);
    let off_again = send(&app, &verify_request(&t.tenant_id, body())).await;
    assert_eq!(off_again.status, 404);
}

#[tokio::test]
async fn refunds_disputes_and_the_sellers_revocation_read_as_gumroad_says_them() {
    let stack = stack().await;
    let t = seed(&stack, answering_verify()).await;
    let sale_key = |sold: &Reply| sold.json()["license"]["key"].as_str().unwrap().to_owned();
    fn params(key: &str) -> Vec<(&str, &str)> {
        vec![("product_id", GUMROAD_PRODUCT_ID), ("license_key", key)]
    }
    let ping = |body: String| Ping::new(&t.tenant_id, Some(&t.token), body);

    let (refunded_sale, refunded_buyer) = (sale_id(), buyer());
    let key = sale_key(
        &send(
            &stack.app,
            &ping(sale_body(&refunded_sale, &refunded_buyer)),
        )
        .await,
    );
    send(
        &stack.app,
        &ping(sale_event("refund", &refunded_sale, &refunded_buyer, true)),
    )
    .await;
    let refunded = verify(&stack, &t.tenant_id, &params(&key)).await;
    assert_eq!(refunded.status, 200, "{}", refunded.body);
    assert_eq!(refunded.json()["purchase"]["refunded"], true);

    let (disputed_sale, buyer) = (sale_id(), buyer());
    let key = sale_key(&send(&stack.app, &ping(sale_body(&disputed_sale, &buyer))).await);
    send(
        &stack.app,
        &ping(sale_event("dispute", &disputed_sale, &buyer, false)),
    )
    .await;
    let disputed = verify(&stack, &t.tenant_id, &params(&key)).await;
    assert_eq!(disputed.json()["purchase"]["chargebacked"], true);

    let key = sale_key(&send(&stack.app, &new_sale(&t)).await);
    let tenant_id = TenantId::parse(&t.tenant_id).unwrap();
    let hash = keystead::domain::LicenseKey::from_string(key.clone()).hash();
    stack
        .store
        .set_license_status(&tenant_id, &hash, keystead::domain::LicenseStatus::Revoked)
        .await
        .unwrap();
    let disabled = verify(&stack, &t.tenant_id, &params(&key)).await;
    assert_eq!(disabled.status, 404);
    assert_eq!(
        disabled.body,
        r#"{"message":"This license key has been disabled.","success":false}"#
    );
}

#[tokio::test]
async fn a_product_that_keeps_gumroads_keys_works_through_ping_activate_and_verify() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    keep_gumroads_keys(&stack, &t).await;
    let gumroad_key = "4A1B2C3D-5E6F7081-92A3B4C5-D6E7F809";
    let (sale, buyer) = (sale_id(), buyer());
    let body = sale_body(&sale, &buyer).replace(
        "&ip_country",
        &format!("&license_key={gumroad_key}&is_multiseat_license=false&ip_country"),
    );
    let sold = send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), body)).await;
    assert_eq!(sold.status, 200, "{}", sold.body);
    assert_eq!(sold.json()["license"]["key"], gumroad_key);
    assert_eq!(
        sold.json()["email"],
        "pending",
        "Gumroad's key is on Gumroad's receipt already: no email by default"
    );
    assert!(emails_to(&buyer).is_empty());

    let activated = api(
        &stack,
        &t.tenant_id,
        "activate",
        json!({"key": gumroad_key, "machine_id": "m1"}),
    )
    .await;
    assert_eq!(activated.status, 200, "{}", activated.body);
    let verified = verify(
        &stack,
        &t.tenant_id,
        &[
            ("product_id", GUMROAD_PRODUCT_ID),
            ("license_key", gumroad_key),
        ],
    )
    .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(verified.json()["purchase"]["license_key"], gumroad_key);

    // Lifecycle events find it like any license.
    send(
        &stack.app,
        &Ping::new(
            &t.tenant_id,
            Some(&t.token),
            sale_event("refund", &sale, &buyer, true),
        ),
    )
    .await;
    let validated = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": gumroad_key}),
    )
    .await;
    assert_eq!(validated.json()["status"], "revoked");

    // A sale without Gumroad's key still gets a license: keystead's own.
    let fallback = send(&stack.app, &new_sale(&t)).await;
    assert_eq!(fallback.status, 200, "{}", fallback.body);
    assert!(
        fallback.json()["license"]["key"]
            .as_str()
            .unwrap()
            .starts_with("ACME-")
    );
}

fn api_sale(id: &str, email: &str, price: u64) -> Value {
    json!({"id": id, "email": email, "seller_id": "kL0psVL2admJSYRNs-OCMg==", "product_id": GUMROAD_PRODUCT_ID,
           "product_permalink": "https://acme.gumroad.com/l/myapp-pro", "price": price, "quantity": 1,
           "created_at": "2026-05-04T19:38:56Z", "refunded": false})
}

#[tokio::test]
async fn read_back_mints_only_sales_gumroad_confirms() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let gumroad = FakeGumroad::start();
    gumroad.read_back_on(&t.tenant_id);
    let tenant_id = TenantId::parse(&t.tenant_id).unwrap();
    let stored = stack.store.load_tenant(&tenant_id).await.unwrap().unwrap();
    let sealed = serde_json::to_string(&stored.gumroad_token).unwrap();
    assert!(
        !sealed.contains(GOOD_TOKEN),
        "the token is stored sealed, never in plaintext"
    );
    let app = stack.app.clone().with_gumroad_api(&gumroad.url);
    let ping = |body: String| Ping::new(&t.tenant_id, Some(&t.token), body);

    let (real, real_buyer) = (sale_id(), buyer());
    let (forged, forged_buyer) = (sale_id(), buyer());
    let (cheap, cheap_buyer) = (sale_id(), buyer());
    gumroad.set_sales(vec![
        api_sale(&real, &real_buyer, 2900),
        api_sale(&cheap, &cheap_buyer, 100),
    ]);

    let confirmed = send(&app, &ping(sale_body(&real, &real_buyer))).await;
    assert_eq!(confirmed.status, 200, "{}", confirmed.body);
    let reads = gumroad.received().len();
    let replay = send(&app, &ping(sale_body(&real, &real_buyer))).await;
    assert_eq!(replay.json()["duplicate"], true);
    assert_eq!(
        gumroad.received().len(),
        reads,
        "a replay is not read back again"
    );

    for (sale, buyer) in [(&forged, &forged_buyer), (&cheap, &cheap_buyer)] {
        let refused = send(&app, &ping(sale_body(sale, buyer))).await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert_eq!(refused.body, r#"{"error":"Invalid request"}"#);
        assert!(emails_to(buyer).is_empty());
    }
    assert_eq!(
        payments(&stack, &t.tenant_id).await.len(),
        1,
        "nothing written for them"
    );

    // Gumroad down: 503, which Gumroad retries; once it answers, the sale mints.
    let (later, later_buyer) = (sale_id(), buyer());
    let mut sales = vec![api_sale(&later, &later_buyer, 2900)];
    sales.push(api_sale(&real, &real_buyer, 2900));
    gumroad.set_sales(sales);
    gumroad.fail_sales_requests(1);
    let down = send(&app, &ping(sale_body(&later, &later_buyer))).await;
    assert_eq!(down.status, 503, "{}", down.body);
    assert_eq!(payments(&stack, &t.tenant_id).await.len(), 1);
    let retried = send(&app, &ping(sale_body(&later, &later_buyer))).await;
    assert_eq!(retried.status, 200, "{}", retried.body);

    let off = ok_json_cmd(cli_support::keystead().args([
        "tenant",
        "set",
        &t.tenant_id,
        "--verify-sales",
        "off",
    ]));
    assert_eq!(off["verify_sales"], false);
    let unchecked = send(&app, &ping(sale_body(&forged, &forged_buyer))).await;
    assert_eq!(
        unchecked.status, 200,
        "read-back off: pings are trusted again"
    );
}
