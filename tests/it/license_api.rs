//! The license API against the local stack: validate, activate and deactivate, seat counting under concurrency,
//! and the identical 404 for every key that is not this tenant's and product's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::common;

use common::*;
use serde_json::json;

/// A tenant with one freshly sold license; returns the tenant and the key.
async fn licensed(stack: &Stack, seed_with: Seed) -> (Seeded, String) {
    let t = seed(stack, seed_with).await;
    let reply = send(&stack.app, &new_sale(&t)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let key = reply.json()["license"]["key"].as_str().unwrap().to_owned();
    (t, key)
}

#[tokio::test]
async fn validate_reports_the_license_and_whether_a_machine_is_activated() {
    let stack = stack().await;
    let (t, key) = licensed(&stack, Seed::default()).await;

    let reply = api(&stack, &t.tenant_id, "validate", json!({"key": key})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.json(),
        json!({"valid": true, "status": "active", "product_id": "myapp", "expires_at": null, "activation_limit": 3, "activations": 0, "entitlements": []})
    );
    assert!(!reply.body.contains(&key), "responses never echo the key");

    let with_machine = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "product_id": "myapp", "machine_id": "laptop-1"}),
    )
    .await;
    assert_eq!(with_machine.json()["activated"], false);
    let activated = api(
        &stack,
        &t.tenant_id,
        "activate",
        json!({"key": key, "machine_id": "laptop-1", "label": "Jane's laptop"}),
    )
    .await;
    assert_eq!(activated.status, 200, "{}", activated.body);
    assert_eq!(activated.json()["activated"], true);
    assert_eq!(activated.json()["activations"], 1);
    let with_machine = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "machine_id": "laptop-1"}),
    )
    .await;
    assert_eq!(with_machine.json()["activated"], true);
    assert_eq!(with_machine.json()["activations"], 1);
}

#[tokio::test]
async fn every_key_that_is_not_this_tenants_and_products_is_the_same_404() {
    let stack = stack().await;
    let (t, key) = licensed(&stack, Seed::default()).await;
    let (other, other_key) = licensed(&stack, Seed::default()).await;
    let mut off_by_one = key.clone();
    let last = off_by_one.pop().unwrap();
    off_by_one.push(if last == 'A' { 'B' } else { 'A' });
    let cases = [
        (
            "unknown key",
            t.tenant_id.clone(),
            json!({"key": "ACME-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA-AAAAA"}),
        ),
        (
            "key one character off",
            t.tenant_id.clone(),
            json!({"key": off_by_one}),
        ),
        (
            "another tenant's key",
            t.tenant_id.clone(),
            json!({"key": other_key}),
        ),
        (
            "key under another tenant",
            other.tenant_id.clone(),
            json!({"key": key}),
        ),
        (
            "another product",
            t.tenant_id.clone(),
            json!({"key": key, "product_id": "other"}),
        ),
        (
            "unknown tenant",
            "no-such-tenant".to_owned(),
            json!({"key": key}),
        ),
        (
            "garbage key",
            t.tenant_id.clone(),
            json!({"key": "x".repeat(500)}),
        ),
    ];
    for action in ["validate", "activate", "deactivate"] {
        for (name, tenant, mut body) in cases.clone() {
            body["machine_id"] = json!("m1");
            let reply = api(&stack, &tenant, action, body).await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (404, r#"{"error":"License not found"}"#),
                "{action}: {name}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_activations_on_three_seats_give_exactly_three() {
    let stack = stack().await;
    let (t, key) = licensed(&stack, Seed::default()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for machine in 0..20 {
        let app = stack.app.clone();
        let event = call(
            &t.tenant_id,
            "activate",
            json!({"key": key, "machine_id": format!("machine-{machine}")}).to_string(),
        )
        .event()
        .to_string();
        tasks.spawn(async move {
            let reply = Reply::from(app.handle(&event).await.unwrap());
            (reply.status, reply.body)
        });
    }
    let (mut ok, mut full) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        let (status, body) = result.unwrap();
        match status {
            200 => ok += 1,
            409 => {
                assert_eq!(body, r#"{"error":"Activation limit reached"}"#);
                full += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, full), (3, 17));
    let stored = licenses(&stack, &t.tenant_id).await;
    let license = stored
        .iter()
        .find(|i| s(i, "sk").starts_with("LICENSE#"))
        .unwrap();
    assert_eq!(n(license, "activations"), 3);
    assert_eq!(
        stored
            .iter()
            .filter(|i| s(i, "sk").starts_with("ACTIVATION#"))
            .count(),
        3
    );
}

#[tokio::test]
async fn activation_is_idempotent_and_deactivation_frees_the_seat() {
    let stack = stack().await;
    let (t, key) = licensed(
        &stack,
        Seed {
            activation_limit: 1,
            ..Seed::default()
        },
    )
    .await;
    let activate = |m: &str| json!({"key": key, "machine_id": m});
    assert_eq!(
        api(&stack, &t.tenant_id, "activate", activate("a"))
            .await
            .status,
        200
    );
    let again = api(&stack, &t.tenant_id, "activate", activate("a")).await;
    assert_eq!(again.status, 200, "re-activating the same machine is free");
    assert_eq!(again.json()["activations"], 1);
    let other = api(&stack, &t.tenant_id, "activate", activate("b")).await;
    assert_eq!(
        (other.status, other.body.as_str()),
        (409, r#"{"error":"Activation limit reached"}"#)
    );

    let freed = api(&stack, &t.tenant_id, "deactivate", activate("a")).await;
    assert_eq!(freed.status, 200);
    assert_eq!(freed.json(), json!({"deactivated": true, "activations": 0}));
    let twice = api(&stack, &t.tenant_id, "deactivate", activate("a")).await;
    assert_eq!(
        twice.json(),
        json!({"deactivated": false, "activations": 0})
    );
    assert_eq!(
        api(&stack, &t.tenant_id, "activate", activate("b"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_leaked_key_cannot_churn_through_the_seats_faster_than_the_hourly_budget() {
    let stack = stack().await;
    let (t, key) = licensed(&stack, Seed::default()).await;
    let activate = |machine: String| {
        let (stack, tenant, key) = (&stack, t.tenant_id.clone(), key.clone());
        async move {
            api(
                stack,
                &tenant,
                "activate",
                json!({"key": key, "machine_id": machine}),
            )
            .await
        }
    };
    // The buyer's machine, then nine machines of whoever holds the leaked key, each taking a seat and freeing it.
    assert_eq!(activate("mine".to_owned()).await.status, 200);
    for i in 1..10 {
        let machine = format!("squatter-{i}");
        assert_eq!(activate(machine.clone()).await.status, 200, "{machine}");
        let freed = api(
            &stack,
            &t.tenant_id,
            "deactivate",
            json!({"key": key, "machine_id": machine}),
        )
        .await;
        assert_eq!(freed.status, 200);
    }
    // Ten new machines in the hour (the budget: the seat limit, at least ten): the eleventh is refused, with a
    // seat free.
    let refused = activate("squatter-10".to_owned()).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(
        refused.body,
        r#"{"error":"Too many new machines for this license; try again within the hour"}"#
    );
    // A machine holding its seat is not a new one: it still checks in.
    let mine = activate("mine".to_owned()).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.json()["activations"], 1);
}

#[tokio::test]
async fn a_seller_of_several_products_needs_the_product_named_and_a_tier_counts_as_its_product() {
    let stack = stack().await;
    let t = crate::sale_kinds::tiered(&stack).await;
    let sold = send(
        &stack.app,
        &Ping::new(
            &t.tenant_id,
            Some(&t.token),
            crate::sale_kinds::with_tier(sale_body(&sale_id(), &buyer()), "Team"),
        ),
    )
    .await;
    assert_eq!(sold.json()["license"]["product_id"], "team");
    let key = sold.json()["license"]["key"].as_str().unwrap().to_owned();

    // Without a product the app would take a license of any of the seller's products: refused, clearly.
    for action in ["validate", "activate", "deactivate"] {
        let reply = api(
            &stack,
            &t.tenant_id,
            action,
            json!({"key": key, "machine_id": "m1"}),
        )
        .await;
        assert_eq!(reply.status, 400, "{action}: {}", reply.body);
        assert_eq!(
            reply.json()["error"],
            "Missing required field 'product_id': this seller sells more than one product"
        );
    }
    // The app's own product takes its tiers' licenses; a product the seller sells otherwise does not.
    let own = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "product_id": "myapp"}),
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.json()["product_id"], "team");
    let tier = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "product_id": "studio"}),
    )
    .await;
    assert_eq!(
        tier.status, 200,
        "a sibling tier of the same Gumroad product"
    );

    let tenant_id = keystead::domain::TenantId::parse(&t.tenant_id).unwrap();
    let other = keystead::domain::Product::new(
        keystead::domain::ProductId::parse("otherapp").unwrap(),
        "Other App".to_owned(),
        keystead::domain::KeyPrefix::parse("OTHER").unwrap(),
        "2026-01-01T00:00:00Z".to_owned(),
    );
    stack
        .store
        .create_product(&tenant_id, &other)
        .await
        .unwrap();
    stack
        .store
        .set_permalink(
            &tenant_id,
            &keystead::domain::Permalink::parse("other-app").unwrap(),
            Some(&other.product_id),
        )
        .await
        .unwrap();
    let app = stack
        .app
        .clone()
        .with_tenant_cache_ttl(std::time::Duration::ZERO);
    let elsewhere = send(
        &app,
        &call(
            &t.tenant_id,
            "validate",
            json!({"key": key, "product_id": "otherapp"}).to_string(),
        ),
    )
    .await;
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.body);
    assert_eq!(elsewhere.body, r#"{"error":"License not found"}"#);
}

#[tokio::test]
async fn revoked_suspended_and_expired_licenses_cannot_activate() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let mut keys = Vec::new();
    for resource in ["refund", "dispute"] {
        let (sale, buyer) = (sale_id(), buyer());
        let sold = send(
            &stack.app,
            &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &buyer)),
        )
        .await;
        let key = sold.json()["license"]["key"].as_str().unwrap().to_owned();
        let event = sale_body(&sale, &buyer)
            .replace("refunded=false", "refunded=true")
            .replace("resource_name=sale", &format!("resource_name={resource}"));
        assert_eq!(
            send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), event))
                .await
                .status,
            200
        );
        keys.push(key);
    }
    let revoked = api(
        &stack,
        &t.tenant_id,
        "activate",
        json!({"key": keys[0], "machine_id": "m"}),
    )
    .await;
    assert_eq!(
        (revoked.status, revoked.body.as_str()),
        (403, r#"{"error":"License revoked"}"#)
    );
    let suspended = api(
        &stack,
        &t.tenant_id,
        "activate",
        json!({"key": keys[1], "machine_id": "m"}),
    )
    .await;
    assert_eq!(
        (suspended.status, suspended.body.as_str()),
        (403, r#"{"error":"License suspended"}"#)
    );
    let validated = api(&stack, &t.tenant_id, "validate", json!({"key": keys[0]})).await;
    assert_eq!(validated.json()["valid"], false);
    assert_eq!(validated.json()["status"], "revoked");
}

#[tokio::test]
async fn malformed_requests_get_clear_4xx() {
    let stack = stack().await;
    let (t, key) = licensed(&stack, Seed::default()).await;
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        (
            "validate",
            b"{".to_vec(),
            "application/json",
            400,
            "Malformed JSON body",
        ),
        (
            "validate",
            b"[]".to_vec(),
            "application/json",
            400,
            "Malformed JSON body",
        ),
        (
            "validate",
            b"{}".to_vec(),
            "application/json",
            400,
            "Missing required field 'key'",
        ),
        (
            "validate",
            br#"{"key": 5}"#.to_vec(),
            "application/json",
            400,
            "Malformed JSON body",
        ),
        (
            "activate",
            json!({"key": key}).to_string().into_bytes(),
            "application/json",
            400,
            "Missing required field 'machine_id'",
        ),
        (
            "activate",
            json!({"key": key, "machine_id": "x".repeat(200)})
                .to_string()
                .into_bytes(),
            "application/json",
            400,
            "Invalid machine_id",
        ),
        (
            "deactivate",
            json!({"key": key}).to_string().into_bytes(),
            "application/json",
            400,
            "Missing required field 'machine_id'",
        ),
        (
            "validate",
            json!({"key": key}).to_string().into_bytes(),
            "text/plain",
            415,
            "Unsupported content type",
        ),
        (
            "validate",
            vec![b' '; 17 * 1024],
            "application/json",
            413,
            "Request body too large",
        ),
    ];
    for (action, body, content_type, status, message) in cases {
        let reply = send(
            &stack.app,
            &call(&t.tenant_id, action, body).header("content-type", content_type),
        )
        .await;
        assert_eq!(reply.status, status, "{action} {message}: {}", reply.body);
        assert!(
            reply.json()["error"].as_str().unwrap().starts_with(message),
            "{}",
            reply.body
        );
    }
    let mut get = call(&t.tenant_id, "validate", json!({"key": key}).to_string());
    get.method = "GET";
    assert_eq!(send(&stack.app, &get).await.status, 405);
    let mut unknown = call(&t.tenant_id, "validate", json!({"key": key}).to_string());
    unknown.path = format!("/v1/{}/licenses/transfer", t.tenant_id);
    assert_eq!(send(&stack.app, &unknown).await.status, 404);
}
