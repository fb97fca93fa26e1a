//! Signed leases and seat leases against the local stack (DynamoDB Local, moto's KMS): what an app receives from
//! `activate`/`validate`, checked with the `keystead-verify` crate against the tenant's published JWKS, and seats
//! that free themselves when their lease runs out, exactly, under concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::cli_support;
use crate::common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use common::*;
use keystead::storage::Store;
use keystead_verify::{Expected, LeaseClaims, PublicKeys, verify_now};
use serde_json::{Value, json};

async fn jwks(app: &keystead::app::App, tenant: &str) -> Reply {
    let mut request = Ping::new(tenant, None, Vec::new());
    request.method = "GET";
    request.path = format!("/v1/{tenant}/jwks.json");
    send(app, &request).await
}

async fn keys_of(app: &keystead::app::App, tenant: &str) -> PublicKeys {
    let reply = jwks(app, tenant).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    PublicKeys::from_jwks_json(&reply.body).unwrap()
}

/// A seeded tenant and one fresh license; the app re-reads tenants every time, as a cold instance would.
async fn licensed(stack: &Stack, seed_with: Seed) -> (Seeded, String) {
    let t = seed(stack, seed_with).await;
    let reply = send(&stack.app, &new_sale(&t)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    (
        t,
        reply.json()["license"]["key"].as_str().unwrap().to_owned(),
    )
}

fn kid_of(lease: &str) -> String {
    let header = lease.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "keystead-lease+jwt");
    header["kid"].as_str().unwrap().to_owned()
}

fn lease_of(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["lease"]
        .as_str()
        .unwrap_or_else(|| panic!("no lease in {}", reply.body))
        .to_owned()
}

#[tokio::test]
async fn an_activation_lease_verifies_with_the_tenants_jwks_and_a_tampered_one_does_not() {
    let stack = stack().await;
    let (t, key) = licensed(&stack, Seed::default()).await;
    let nonce = unique("nonce");
    let reply = api(
        &stack,
        &t.tenant_id,
        "activate",
        json!({"key": key, "machine_id": "laptop-1", "nonce": nonce}),
    )
    .await;
    let lease = lease_of(&reply);
    let keys = keys_of(&stack.app, &t.tenant_id).await;
    let expected = Expected::new(&t.tenant_id, "myapp", "laptop-1").nonce(&nonce);
    let claims: LeaseClaims = verify_now(&lease, &keys, &expected).unwrap();
    assert_eq!(claims.status, "active");
    assert_eq!(claims.product_id, "myapp");
    assert_eq!(claims.nonce.as_deref(), Some(nonce.as_str()));
    assert_eq!(claims.license_expires_at, None);
    assert_eq!(claims.entitlements, Vec::<String>::new());
    assert_eq!(claims.exp - claims.iat, 30 * 24 * 3600, "default token TTL");
    assert!(!lease.contains(&key), "the lease never carries the key");

    // Change one claim: the signature no longer holds.
    let mut parts: Vec<String> = lease.split('.').map(str::to_owned).collect();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forged = String::from_utf8(engine.decode(&parts[1]).unwrap())
        .unwrap()
        .replace("laptop-1", "laptop-2");
    parts[1] = engine.encode(forged);
    let tampered = parts.join(".");
    assert_eq!(
        verify_now(
            &tampered,
            &keys,
            &Expected::new(&t.tenant_id, "myapp", "laptop-2")
        ),
        Err(keystead_verify::Error::BadSignature)
    );
    assert!(
        verify_now(
            &lease,
            &keys,
            &Expected::new(&t.tenant_id, "myapp", "laptop-2")
        )
        .is_err()
    );

    // validate with a machine holding a seat renews its lease; without one, no lease.
    let validated = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "machine_id": "laptop-1"}),
    )
    .await;
    let renewed = lease_of(&validated);
    assert!(
        verify_now(
            &renewed,
            &keys,
            &Expected::new(&t.tenant_id, "myapp", "laptop-1")
        )
        .is_ok()
    );
    for body in [
        json!({"key": key}),
        json!({"key": key, "machine_id": "never-activated"}),
    ] {
        let reply = api(&stack, &t.tenant_id, "validate", body).await;
        assert_eq!(reply.status, 200);
        assert!(reply.json().get("lease").is_none(), "{}", reply.body);
    }
    let long = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "machine_id": "laptop-1", "nonce": "n".repeat(129)}),
    )
    .await;
    assert_eq!(long.status, 400);
    assert!(long.json()["error"].as_str().unwrap().contains("nonce"));
}

#[tokio::test]
async fn only_an_active_license_gets_a_lease_and_it_never_outlives_the_license() {
    let stack = stack().await;
    let (t, key) = licensed(
        &stack,
        Seed {
            duration_days: Some(1),
            ..Seed::default()
        },
    )
    .await;
    let lease = lease_of(
        &api(
            &stack,
            &t.tenant_id,
            "activate",
            json!({"key": key, "machine_id": "m1"}),
        )
        .await,
    );
    let keys = keys_of(&stack.app, &t.tenant_id).await;
    let claims = verify_now(&lease, &keys, &Expected::new(&t.tenant_id, "myapp", "m1")).unwrap();
    let expires = time::OffsetDateTime::parse(
        claims.license_expires_at.as_deref().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(
        claims.exp,
        expires.unix_timestamp(),
        "capped at the license's expiry"
    );

    let tenant_id = keystead::domain::TenantId::parse(&t.tenant_id).unwrap();
    let key_hash = keystead::domain::LicenseKey::from_string(key.clone()).hash();
    stack
        .store
        .set_license_status(
            &tenant_id,
            &key_hash,
            keystead::domain::LicenseStatus::Revoked,
        )
        .await
        .unwrap();
    let validated = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "machine_id": "m1"}),
    )
    .await;
    assert_eq!(validated.json()["valid"], false);
    assert!(
        validated.json().get("lease").is_none(),
        "{}",
        validated.body
    );
}

#[tokio::test]
async fn tenants_have_their_own_keys_and_rotation_keeps_old_leases_verifiable() {
    let stack = stack().await;
    let app = stack.app.clone().with_tenant_cache_ttl(Duration::ZERO);
    let (a, key_a) = licensed(&stack, Seed::default()).await;
    let (b, key_b) = licensed(&stack, Seed::default()).await;
    let activate = |tenant: String, key: String| {
        let app = app.clone();
        async move {
            let request = call(
                &tenant,
                "activate",
                json!({"key": key, "machine_id": "m1"}).to_string(),
            );
            lease_of(&send(&app, &request).await)
        }
    };
    let lease_a = activate(a.tenant_id.clone(), key_a.clone()).await;
    let lease_b = activate(b.tenant_id.clone(), key_b.clone()).await;
    let keys_a = keys_of(&app, &a.tenant_id).await;
    let keys_b = keys_of(&app, &b.tenant_id).await;
    assert_ne!(kid_of(&lease_a), kid_of(&lease_b));
    assert_eq!(
        verify_now(
            &lease_b,
            &keys_a,
            &Expected::new(&b.tenant_id, "myapp", "m1")
        ),
        Err(keystead_verify::Error::UnknownKey(kid_of(&lease_b)))
    );
    assert!(
        verify_now(
            &lease_b,
            &keys_b,
            &Expected::new(&b.tenant_id, "myapp", "m1")
        )
        .is_ok()
    );

    let rotated = cli_support::ok_json(&["tenant", "rotate-signing-key", &a.tenant_id]);
    assert_eq!(rotated["retired_kid"], kid_of(&lease_a).as_str());
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, kid_of(&lease_a));

    let after = activate(a.tenant_id.clone(), key_a.clone()).await;
    assert_eq!(kid_of(&after), new_kid, "new leases carry the new kid");
    let published = keys_of(&app, &a.tenant_id).await;
    assert_eq!(published.len(), 2, "current and retired");
    for lease in [&lease_a, &after] {
        assert!(
            verify_now(
                lease,
                &published,
                &Expected::new(&a.tenant_id, "myapp", "m1")
            )
            .is_ok()
        );
    }
    let shown = cli_support::ok_json(&["tenant", "show", &a.tenant_id]);
    let keys = shown["signing_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .any(|k| k["kid"] == new_kid.as_str() && k["current"] == true)
    );

    let unknown = jwks(&app, "no-such-tenant").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body, r#"{"error":"Not found"}"#);
    let reply = jwks(&app, &a.tenant_id).await;
    assert_eq!(reply.header("cache-control"), Some("public, max-age=60"));
    let jwk = &reply.json()["keys"][0];
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["alg"], "EdDSA");
}

#[tokio::test]
async fn a_signing_key_revoked_now_leaves_the_jwks_at_once_and_its_leases_stop_verifying() {
    let stack = stack().await;
    let app = stack.app.clone().with_tenant_cache_ttl(Duration::ZERO);
    let (t, key) = licensed(&stack, Seed::default()).await;
    let activate = || {
        let request = call(
            &t.tenant_id,
            "activate",
            json!({"key": key, "machine_id": "m1"}).to_string(),
        );
        let app = app.clone();
        async move { lease_of(&send(&app, &request).await) }
    };
    let leaked = activate().await;
    let expected = Expected::new(&t.tenant_id, "myapp", "m1");
    assert!(verify_now(&leaked, &keys_of(&app, &t.tenant_id).await, &expected).is_ok());

    let rotated =
        cli_support::ok_json(&["tenant", "rotate-signing-key", &t.tenant_id, "--revoke-now"]);
    assert_eq!(rotated["revoked"], true);
    assert_eq!(rotated["retired_kid"], kid_of(&leaked).as_str());
    let published = keys_of(&app, &t.tenant_id).await;
    assert_eq!(published.len(), 1, "only the new key is published");
    assert_eq!(
        verify_now(&leaked, &published, &expected),
        Err(keystead_verify::Error::UnknownKey(kid_of(&leaked)))
    );
    // The next check-in gets a lease under the new key.
    let fresh = activate().await;
    assert_eq!(kid_of(&fresh), rotated["kid"].as_str().unwrap());
    assert!(verify_now(&fresh, &published, &expected).is_ok());
    let human = cli_support::ok(&["tenant", "rotate-signing-key", &t.tenant_id, "--revoke-now"]);
    assert!(human.contains("is revoked"), "{human}");
}

#[tokio::test]
async fn a_tenant_made_before_leases_gets_its_first_key_when_it_is_needed() {
    let stack = stack().await;
    // Seeded straight into the table, like a tenant created before signing keys existed.
    let (t, key) = licensed(&stack, Seed::default()).await;
    let tenant_id = keystead::domain::TenantId::parse(&t.tenant_id).unwrap();
    assert!(
        stack
            .store
            .load_tenant(&tenant_id)
            .await
            .unwrap()
            .unwrap()
            .signing_kid
            .is_none()
    );
    // Many machines at once: one key is made, every lease verifies with it.
    let mut tasks = Vec::new();
    for i in 0..3 {
        let app = stack.app.clone().with_tenant_cache_ttl(Duration::ZERO);
        let (tenant, key) = (t.tenant_id.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"key": key, "machine_id": format!("m{i}")}).to_string();
            lease_of(&send(&app, &call(&tenant, "activate", body)).await)
        }));
    }
    let mut leases = Vec::new();
    for task in tasks {
        leases.push(task.await.unwrap());
    }
    let keys = keys_of(
        &stack.app.clone().with_tenant_cache_ttl(Duration::ZERO),
        &t.tenant_id,
    )
    .await;
    assert_eq!(keys.len(), 1, "exactly one key was installed");
    for (i, lease) in leases.iter().enumerate() {
        let machine = format!("m{i}");
        let verified = verify_now(
            lease,
            &keys,
            &Expected::new(&t.tenant_id, "myapp", &machine),
        );
        assert!(verified.is_ok(), "{verified:?}");
    }
}

#[tokio::test]
async fn a_seat_lease_frees_the_seat_of_a_machine_that_stopped_checking_in() {
    let stack = stack().await;
    let (t, key) = licensed(
        &stack,
        Seed {
            activation_limit: 1,
            seat_lease_seconds: Some(2),
            ..Seed::default()
        },
    )
    .await;
    let first = api(
        &stack,
        &t.tenant_id,
        "activate",
        json!({"key": key, "machine_id": "old-laptop", "label": "Old laptop"}),
    )
    .await;
    let lease = lease_of(&first);
    let keys = keys_of(&stack.app, &t.tenant_id).await;
    let claims = verify_now(
        &lease,
        &keys,
        &Expected::new(&t.tenant_id, "myapp", "old-laptop"),
    )
    .unwrap();
    assert_eq!(claims.exp - claims.iat, 2, "the lease ends with the seat");
    assert!(first.json()["seat_expires_at"].is_string());

    let refused = api(
        &stack,
        &t.tenant_id,
        "activate",
        json!({"key": key, "machine_id": "new-laptop"}),
    )
    .await;
    assert_eq!(refused.status, 409, "{}", refused.body);

    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let taken = api(
        &stack,
        &t.tenant_id,
        "activate",
        json!({"key": key, "machine_id": "new-laptop"}),
    )
    .await;
    assert_eq!(taken.status, 200, "{}", taken.body);
    assert_eq!(taken.json()["activations"], 1);
    let old = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": key, "machine_id": "old-laptop"}),
    )
    .await;
    assert_eq!(
        old.json()["activated"],
        false,
        "its seat went to the new laptop"
    );
    assert!(old.json().get("lease").is_none());

    let shown = cli_support::ok_json(&["license", "show", &t.tenant_id, &key]);
    let machines = shown["activation_records"].as_array().unwrap();
    assert_eq!(machines.len(), 1);
    assert_eq!(machines[0]["machine_id"], "new-laptop");
    assert!(machines[0]["last_seen"].is_string());
    assert!(machines[0]["seat_until"].is_string());
}

#[tokio::test]
async fn twenty_machines_racing_for_expired_seats_leave_an_exact_count() {
    let stack = stack().await;
    let (t, key) = licensed(
        &stack,
        Seed {
            activation_limit: 3,
            seat_lease_seconds: Some(1),
            ..Seed::default()
        },
    )
    .await;
    for machine in ["a", "b", "c"] {
        let reply = api(
            &stack,
            &t.tenant_id,
            "activate",
            json!({"key": key, "machine_id": machine}),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    // The racers' own seats last an hour, so however slow the machine, no winner's seat runs out mid-race.
    stack
        .change_product(&t.tenant_id, "myapp", |product| {
            product.seat_lease_seconds = Some(3600);
        })
        .await;
    let app = Arc::new(stack.app.clone().with_tenant_cache_ttl(Duration::ZERO));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (app, tenant, key) = (app.clone(), t.tenant_id.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"key": key, "machine_id": format!("racer-{i}")}).to_string();
            send(&app, &call(&tenant, "activate", body)).await.status
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let won = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((won, refused), (3, 17), "{statuses:?}");
    let items = licenses(&stack, &t.tenant_id).await;
    let seats = items
        .iter()
        .filter(|i| s(i, "sk").starts_with("ACTIVATION#"))
        .count();
    let license = items
        .iter()
        .find(|i| s(i, "sk").starts_with("LICENSE#"))
        .unwrap();
    assert_eq!(seats, 3, "exactly three machines hold seats");
    assert_eq!(n(license, "activations"), 3, "and the count says so");
}

#[tokio::test]
async fn kms_down_before_the_key_is_opened_is_a_503_never_an_unsigned_lease() {
    let stack = stack().await;
    let (t, key) = licensed(&stack, Seed::default()).await;
    // Give the tenant its key through a working instance, then ask one whose KMS is unreachable.
    keys_of(&stack.app, &t.tenant_id).await;
    let sdk = sdk().await;
    let dead_kms = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::config::Builder::from(&sdk)
            .endpoint_url("http://127.0.0.1:9")
            .build(),
    );
    let vault = keystead::signing::KmsVault::new(dead_kms, env("KEYSTEAD_SIGNING_KEY_ID"));
    let cold = keystead::app::App::new(
        Arc::new(stack.store.clone()),
        Arc::new(keystead::config::ses_mailer(&sdk)),
        Arc::new(vault),
    );
    let body = json!({"key": key, "machine_id": "m1"}).to_string();
    let reply = send(&cold, &call(&t.tenant_id, "activate", body.clone())).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body, r#"{"error":"Temporarily unavailable"}"#);
    // The license API without a lease still answers.
    let plain = send(
        &cold,
        &call(&t.tenant_id, "validate", json!({"key": key}).to_string()),
    )
    .await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    // And an instance that has the key open signs without KMS.
    let warm = send(&stack.app, &call(&t.tenant_id, "activate", body)).await;
    assert_eq!(warm.status, 200, "{}", warm.body);
}

/// Issue 22, defect 9: a machine whose run-out seat another machine reclaimed between `activate` finding it and
/// renewing it was signed a lease anyway, one machine over the license's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_signed_only_for_a_seat_that_still_exists() {
    let stack = stack().await;
    let faults = faults::Faults::new();
    let faulty = faulty_stack(&faults).await;
    let (t, key) = licensed(
        &stack,
        Seed {
            activation_limit: 1,
            seat_lease_seconds: Some(2),
            ..Seed::default()
        },
    )
    .await;
    let activate = |machine: &str| json!({"key": key, "machine_id": machine});
    let first = api(&faulty, &t.tenant_id, "activate", activate("old-laptop")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    tokio::time::sleep(Duration::from_millis(3_100)).await;

    // The old laptop comes back just as the new one reclaims its run-out seat.
    let (app, tenant, body) = (
        stack.app.clone(),
        t.tenant_id.clone(),
        activate("new-laptop"),
    );
    faults.before(
        "seat_until = :until",
        Box::new(move || {
            Box::pin(async move {
                let taken = send(&app, &call(&tenant, "activate", body.to_string())).await;
                assert_eq!(taken.status, 200, "{}", taken.body);
            })
        }),
    );
    let late = api(&faulty, &t.tenant_id, "activate", activate("old-laptop")).await;
    assert_eq!(faults.hits().len(), 1, "{:?}", faults.hits());
    assert_eq!(late.status, 409, "{}", late.body);
    assert!(late.json().get("lease").is_none());
    let shown = cli_support::ok_json(&["license", "show", &t.tenant_id, &key]);
    let machines = shown["activation_records"].as_array().unwrap();
    assert_eq!(machines.len(), 1);
    assert_eq!(machines[0]["machine_id"], "new-laptop");
}
