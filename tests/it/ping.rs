//! The Gumroad ping endpoint against the local stack: every line of the HTTP contract, the records it leaves in
//! DynamoDB Local and the mail moto's SES received.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::common;

use common::*;
use keystead::domain::TenantStatus;
use serde_json::json;

#[tokio::test]
async fn a_sale_issues_one_license_one_payment_and_one_email() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());

    let reply = send(
        &stack.app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &buyer)),
    )
    .await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["received"], true);
    assert_eq!(body["duplicate"], false);
    assert_eq!(body["email"], "sent");
    let license = &body["license"];
    let key = license["key"].as_str().unwrap();
    assert!(keystead::domain::LicenseKey::is_well_formed(key), "{key}");
    assert!(key.starts_with("ACME-"));
    assert_eq!(license["product_id"], "myapp");
    assert_eq!(license["status"], "active");
    assert_eq!(license["activation_limit"], 3);
    assert_eq!(license["expires_at"], serde_json::Value::Null);

    let licenses = licenses(&stack, &t.tenant_id).await;
    assert_eq!(licenses.len(), 1);
    let l = &licenses[0];
    // The key is sealed at rest (issue 24): no attribute holds it, the hash finds it, the store opens it.
    assert!(l.get("key").is_none(), "no plaintext key attribute");
    assert!(s(l, "key_sealed").starts_with("v1."));
    assert!(
        !format!("{l:?}").contains(key),
        "the key appears nowhere in the item"
    );
    assert_eq!(s(l, "key_hash"), keystead::domain::sha256_hex(key));
    assert_eq!(key_of(&stack, l).await, key);
    assert_eq!(s(l, "license_id"), license["id"].as_str().unwrap());
    assert_eq!(s(l, "status"), "active");
    assert_eq!(s(l, "buyer_email"), buyer);
    assert_eq!(s(l, "buyer_name"), "Jane Doe");
    assert_eq!(s(l, "sale_id"), sale);
    assert_eq!(s(l, "email_status"), "sent");
    assert!(!s(l, "email_message_id").is_empty());
    assert!(
        l.get("ttl").is_none(),
        "an open-ended license never expires from the table"
    );
    assert!(l.get("email_claim_until").is_none());

    let payments = payments(&stack, &t.tenant_id).await;
    assert_eq!(payments.len(), 1);
    let p = &payments[0];
    assert_eq!(s(p, "sale_id"), sale);
    assert_eq!(s(p, "license_id"), license["id"].as_str().unwrap());
    assert_eq!(s(p, "product_id"), "myapp");
    assert_eq!(s(p, "product_name"), "MyApp Pro");
    assert_eq!(n(p, "amount_usd_cents"), 2900);
    assert_eq!(s(p, "currency"), "usd");
    assert_eq!(n(p, "quantity"), 1);
    assert_eq!(s(p, "sale_timestamp"), "2026-05-04T19:38:56Z");
    assert_eq!(s(p, "source"), "gumroad");
    assert_eq!(s(p, "buyer_email"), buyer);

    let events = events(&stack, &t.tenant_id).await;
    assert_eq!(events.len(), 1);
    // The outbox: what the sale changed, written with it (issue 25).
    assert_eq!(
        crate::common::audit_types(&stack, &t.tenant_id).await,
        ["license.created", "sale.recorded"]
    );
    let ttl = n(&events[0], "ttl");
    let in_30_days = time::OffsetDateTime::now_utc().unix_timestamp() + 30 * 24 * 3600;
    assert!(
        (in_30_days - ttl).abs() < 120,
        "idempotency TTL is 30 days: {ttl}"
    );

    let mails = emails_to(&buyer);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["source"], env("KEYSTEAD_LOCAL_SENDER"));
    assert_eq!(mails[0]["subject"], "Your license key for MyApp");
    assert_eq!(mails[0]["id"].as_str(), Some(s(l, "email_message_id")));
    assert!(
        mails[0]["body"].as_str().unwrap().contains(key),
        "HTML body carries the key"
    );
    let texts = recorded_text_bodies(&buyer);
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains(key), "text body carries the key");
}

#[tokio::test]
async fn a_product_with_a_duration_gives_an_expiring_license() {
    let stack = stack().await;
    let t = seed(
        &stack,
        Seed {
            duration_days: Some(365),
            activation_limit: 5,
            ..Seed::default()
        },
    )
    .await;
    let reply = send(&stack.app, &new_sale(&t)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let license = &reply.json()["license"];
    assert_eq!(license["activation_limit"], 5);
    let expires = time::OffsetDateTime::parse(
        license["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (expires - time::OffsetDateTime::now_utc()).whole_days();
    assert!((364..=365).contains(&days), "{days}");
    // Issue 22: an expired license is kept (a late renewal or refund must still find it), never deleted by TTL.
    let stored = licenses(&stack, &t.tenant_id).await;
    assert!(!stored[0].contains_key("ttl"), "{:?}", stored[0]);
}

#[tokio::test]
async fn the_same_sale_again_is_a_duplicate_with_no_second_effect() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());
    let first = send(
        &stack.app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &buyer)),
    )
    .await;
    assert_eq!(first.status, 200);

    for retry in ["", "&retry_count=1", "&retry_count=3"] {
        let body = format!("{}{retry}", sale_body(&sale, &buyer));
        let again = send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), body)).await;
        assert_eq!(again.status, 200);
        assert_eq!(again.body, r#"{"duplicate":true,"received":true}"#);
    }
    assert_eq!(licenses(&stack, &t.tenant_id).await.len(), 1);
    assert_eq!(payments(&stack, &t.tenant_id).await.len(), 1);
    assert_eq!(emails_to(&buyer).len(), 1);
}

/// Issue 22, defect 1: the duplicate path mailed the key whatever the order's email choice was.
#[tokio::test]
async fn a_duplicate_ping_for_a_product_that_never_emails_its_key_sends_nothing() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    stack
        .change_product(&t.tenant_id, &t.product_id, |product| {
            product.email_key = Some(keystead::domain::EmailKey::Never);
        })
        .await;
    let (sale, buyer) = (sale_id(), buyer());
    for retry in ["", "&retry_count=1", "&retry_count=2"] {
        let body = format!("{}{retry}", sale_body(&sale, &buyer));
        let reply = send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), body)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(
        license_items(&licenses(&stack, &t.tenant_id).await).len(),
        1
    );
    assert!(
        emails_to(&buyer).is_empty(),
        "the product never emails its key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_identical_pings_give_exactly_one_license_payment_and_email() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let app = stack.app.clone();
        let ping = Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &buyer));
        let event = ping.event().to_string();
        tasks.spawn(async move {
            let reply = Reply::from(app.handle(&event).await.unwrap());
            (reply.status, reply.body)
        });
    }
    let mut created = 0;
    let mut duplicates = 0;
    while let Some(result) = tasks.join_next().await {
        let (status, body) = result.unwrap();
        assert_eq!(status, 200, "{body}");
        if body.contains(r#""duplicate":false"#) {
            created += 1;
        } else {
            assert_eq!(body, r#"{"duplicate":true,"received":true}"#);
            duplicates += 1;
        }
    }
    assert_eq!((created, duplicates), (1, 49));
    assert_eq!(licenses(&stack, &t.tenant_id).await.len(), 1);
    assert_eq!(payments(&stack, &t.tenant_id).await.len(), 1);
    assert_eq!(events(&stack, &t.tenant_id).await.len(), 1);
    assert_eq!(
        crate::common::audit_types(&stack, &t.tenant_id).await,
        ["license.created", "sale.recorded"],
        "one sale, its events once"
    );
    assert_eq!(emails_to(&buyer).len(), 1);
}

#[tokio::test]
async fn every_authentication_failure_looks_the_same_and_writes_nothing() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let other = seed(&stack, Seed::default()).await;
    let disabled = seed(
        &stack,
        Seed {
            gumroad_enabled: false,
            ..Seed::default()
        },
    )
    .await;
    let pinned = seed(
        &stack,
        Seed {
            seller_id: Some("another-seller==".into()),
            ..Seed::default()
        },
    )
    .await;
    let pinned_here = seed(
        &stack,
        Seed {
            seller_id: Some("kL0psVL2admJSYRNs-OCMg==".into()),
            ..Seed::default()
        },
    )
    .await;
    let mut off_by_one = t.token.clone();
    let last = off_by_one.pop().unwrap();
    off_by_one.push(if last == 'a' { 'b' } else { 'a' });

    let body = || sale_body(&sale_id(), &buyer());
    let cases = [
        (
            "unknown tenant",
            Ping::new("no-such-tenant", Some(&t.token), body()),
        ),
        (
            "invalid tenant id",
            Ping::new("NOT_A_TENANT", Some(&t.token), body()),
        ),
        ("missing token", Ping::new(&t.tenant_id, None, body())),
        ("empty token", Ping::new(&t.tenant_id, Some(""), body())),
        (
            "wrong token",
            Ping::new(&t.tenant_id, Some("wrong"), body()),
        ),
        (
            "token one character off",
            Ping::new(&t.tenant_id, Some(&off_by_one), body()),
        ),
        (
            "another tenant's token",
            Ping::new(&t.tenant_id, Some(&other.token), body()),
        ),
        (
            "gumroad disabled",
            Ping::new(&disabled.tenant_id, Some(&disabled.token), body()),
        ),
        (
            "seller_id differs",
            Ping::new(&pinned.tenant_id, Some(&pinned.token), body()),
        ),
        (
            // Issue 24: a pinned seller is required, not only compared when present.
            "seller_id missing while pinned",
            Ping::new(
                &pinned_here.tenant_id,
                Some(&pinned_here.token),
                body().replace("seller_id=kL0psVL2admJSYRNs-OCMg%3D%3D&", ""),
            ),
        ),
        (
            "wrong basic auth password",
            Ping::new(&t.tenant_id, None, body())
                .header("authorization", basic("gumroad", "wrong")),
        ),
    ];
    let mut first: Option<Reply> = None;
    for (name, ping) in &cases {
        let reply = send(&stack.app, ping).await;
        assert_eq!(reply.status, 400, "{name}");
        assert_eq!(reply.body, r#"{"error":"Invalid request"}"#, "{name}");
        if let Some(first) = &first {
            assert_eq!(reply.headers, first.headers, "{name}: headers differ");
        }
        first.get_or_insert(reply);
    }
    for tenant in [&t, &other, &disabled, &pinned, &pinned_here] {
        assert_eq!(writes(&stack, &tenant.tenant_id).await, 0);
    }
    // The same tenant takes the same sale when it names its seller.
    let named = send(
        &stack.app,
        &Ping::new(&pinned_here.tenant_id, Some(&pinned_here.token), body()),
    )
    .await;
    assert_eq!(named.status, 200, "{}", named.body);
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn the_token_may_come_as_the_basic_auth_password() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let ping = Ping::new(&t.tenant_id, None, sale_body(&sale_id(), &buyer()))
        .header("authorization", basic("gumroad", &t.token));
    let reply = send(&stack.app, &ping).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn a_suspended_tenant_gets_403_and_nothing_is_written() {
    let stack = stack().await;
    let t = seed(
        &stack,
        Seed {
            status: TenantStatus::Suspended,
            ..Seed::default()
        },
    )
    .await;
    let reply = send(&stack.app, &new_sale(&t)).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body, r#"{"error":"Tenant suspended"}"#);
    assert_eq!(writes(&stack, &t.tenant_id).await, 0);
}

#[tokio::test]
async fn a_rotated_token_is_dead_at_once() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let new_token = keystead::domain::WebhookToken::generate().unwrap();
    let tenant_id = keystead::domain::TenantId::parse(&t.tenant_id).unwrap();
    stack
        .store
        .update_tenant(
            &tenant_id,
            &[(
                "token_hash",
                aws_sdk_dynamodb::types::AttributeValue::S(new_token.hash().to_hex()),
            )],
        )
        .await
        .unwrap();
    let old = send(&stack.app, &new_sale(&t)).await;
    assert_eq!(
        (old.status, old.body.as_str()),
        (400, r#"{"error":"Invalid request"}"#)
    );
    let new = send(
        &stack.app,
        &Ping::new(
            &t.tenant_id,
            Some(new_token.expose()),
            sale_body(&sale_id(), &buyer()),
        ),
    )
    .await;
    assert_eq!(new.status, 200, "{}", new.body);
}

#[tokio::test]
async fn test_pings_get_204_and_write_nothing() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let sale = sale_body(&sale_id(), &buyer());
    let test_button = sale.replace("&resource_name=sale", "") + "&test=true";
    let bodies = [
        test_button,
        format!("{sale}&test=true"),
        sale.replace("resource_name=sale", "resource_name=refund") + "&test=true",
        "subscription_id=sub1&resource_name=cancellation&cancelled=true&test=true".to_owned(),
    ];
    for body in bodies {
        let reply = send(
            &stack.app,
            &Ping::new(&t.tenant_id, Some(&t.token), body.clone()),
        )
        .await;
        assert_eq!(reply.status, 204, "{body}: {}", reply.body);
        assert_eq!(reply.body, "");
    }
    assert_eq!(writes(&stack, &t.tenant_id).await, 0);
}

#[tokio::test]
async fn events_for_sales_keystead_never_saw_get_204_and_mint_nothing() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let sale = sale_body(&sale_id(), &buyer());
    let bodies = [
        sale.replace("resource_name=sale", "resource_name=refund").replace("refunded=false", "refunded=true"),
        sale.replace("resource_name=sale", "resource_name=dispute"),
        "subscription_id=sub1&product_id=p&user_email=a%40b.co&purchase_ids%5B%5D=x&resource_name=cancellation&cancelled=true".to_owned(),
        "subscription_id=sub1&resource_name=subscription_ended&ended_at=2026-06-01T00%3A00%3A00Z".to_owned(),
        "subscription_id=sub1&resource_name=some_future_event".to_owned(),
    ];
    for body in bodies {
        let reply = send(
            &stack.app,
            &Ping::new(&t.tenant_id, Some(&t.token), body.clone()),
        )
        .await;
        assert_eq!(reply.status, 204, "{body}: {}", reply.body);
    }
    assert!(licenses(&stack, &t.tenant_id).await.is_empty());
    assert!(payments(&stack, &t.tenant_id).await.is_empty());
}

#[tokio::test]
async fn a_custom_field_named_email_or_sale_id_never_shadows_gumroads_own() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());
    let body = format!(
        "{}&email=attacker%40evil.example&sale_id=forged&custom_fields%5Bemail%5D=attacker%40evil.example",
        sale_body(&sale, &buyer)
    );
    let reply = send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let l = &licenses(&stack, &t.tenant_id).await[0];
    assert_eq!(s(l, "buyer_email"), buyer);
    assert_eq!(s(l, "sale_id"), sale);
    assert!(emails_to("attacker@evil.example").is_empty());
    assert_eq!(emails_to(&buyer).len(), 1);
}

#[tokio::test]
async fn missing_fields_and_unknown_products_are_clear_400s() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let sale = sale_body(&sale_id(), &buyer());
    let strip = |field: &str| {
        sale.split('&')
            .filter(|p| !p.starts_with(&format!("{field}=")))
            .collect::<Vec<_>>()
            .join("&")
    };
    for body in [strip("sale_id"), strip("email")] {
        let reply = send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), body)).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (400, r#"{"error":"Missing required fields"}"#)
        );
    }

    let unmapped = sale
        .replace("%2Fl%2Fmyapp-pro", "%2Fl%2Fother-app")
        .replace("permalink=myapp-pro", "permalink=other-app")
        .replace("short_product_id=qwxyz", "short_product_id=zzz");
    let reply = send(
        &stack.app,
        &Ping::new(&t.tenant_id, Some(&t.token), unmapped),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.json(),
        json!({"error": "No product mapping for permalink 'other-app'"})
    );

    // Falls back from product_permalink to permalink and short_product_id.
    let t2 = seed(&stack, Seed::default()).await;
    let only_short = strip("product_permalink")
        .replace("permalink=myapp-pro&", "")
        .replace("short_product_id=qwxyz", "short_product_id=myapp-pro");
    let reply = send(
        &stack.app,
        &Ping::new(&t2.tenant_id, Some(&t2.token), only_short),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let product = keystead::domain::ProductId::parse("myapp").unwrap();
    let tenant_id = keystead::domain::TenantId::parse(&t.tenant_id).unwrap();
    stack
        .store
        .delete_product(&tenant_id, &product)
        .await
        .unwrap();
    let reply = send(&stack.app, &new_sale(&t)).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json(), json!({"error": "Product 'myapp' not found"}));
    assert_eq!(writes(&stack, &t.tenant_id).await, 0);
}

#[tokio::test]
async fn json_and_base64_bodies_are_accepted() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let buyer_json = buyer();
    let body = json!({
        "seller_id": "kL0psVL2admJSYRNs-OCMg==", "product_permalink": "https://acme.gumroad.com/l/myapp-pro",
        "email": buyer_json, "sale_id": sale_id(), "price": 2900, "currency": "USD", "quantity": 2,
        "card": {"visual": "**** 4242"}, "resource_name": "sale"
    });
    let ping = Ping::new(&t.tenant_id, Some(&t.token), body.to_string())
        .header("content-type", "application/json");
    let reply = send(&stack.app, &ping).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let payments = payments(&stack, &t.tenant_id).await;
    assert_eq!(s(&payments[0], "currency"), "usd");
    assert_eq!(n(&payments[0], "quantity"), 2);
    assert_eq!(s(&payments[0], "product_name"), "Unknown product");

    let mut ping = new_sale(&t);
    ping.base64 = true;
    let reply = send(&stack.app, &ping).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(licenses(&stack, &t.tenant_id).await.len(), 2);
}

#[tokio::test]
async fn size_method_and_path_errors() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let huge = format!(
        "{}&pad={}",
        sale_body(&sale_id(), &buyer()),
        "a".repeat(256 * 1024)
    );
    let reply = send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), huge)).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.header("content-type"), Some("application/json"));

    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let mut ping = new_sale(&t);
        ping.method = method;
        let reply = send(&stack.app, &ping).await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("POST"));
    }
    for path in [
        "/",
        "/webhooks",
        "/webhooks/gumroad",
        "/webhooks/gumroad/a/b",
        "/webhooks/stripe/acme",
    ] {
        let mut ping = new_sale(&t);
        ping.path = path.to_owned();
        let reply = send(&stack.app, &ping).await;
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(reply.body, r#"{"error":"Not found"}"#);
    }
    assert_eq!(writes(&stack, &t.tenant_id).await, 0);
}

#[tokio::test]
async fn malformed_and_hostile_bodies_get_a_4xx_and_write_nothing() {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let good = sale_body(&sale_id(), &buyer());
    let with = |extra: &str| format!("{good}&{extra}");
    let replace = |from: &str, to: &str| good.replace(from, to);
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad percent escape", with("x=%zz").into_bytes(), form),
        ("truncated percent escape", with("x=%4").into_bytes(), form),
        ("lone percent", with("x=%").into_bytes(), form),
        ("invalid UTF-8 escaped", with("x=%ff%fe").into_bytes(), form),
        (
            "invalid UTF-8 raw",
            [good.as_bytes(), b"&x=\xff\xfe"].concat(),
            form,
        ),
        ("NUL byte", with("x=%00").into_bytes(), form),
        ("not a form", b"hello world".to_vec(), form),
        ("field without a name", with("=value").into_bytes(), form),
        (
            "binary garbage",
            vec![0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13],
            form,
        ),
        ("empty body", Vec::new(), form),
        ("only ampersands", b"&&&&".to_vec(), form),
        ("JSON sent as a form", br#"{"sale_id":"x"}"#.to_vec(), form),
        (
            "form sent as JSON",
            good.clone().into_bytes(),
            "application/json",
        ),
        ("JSON array", b"[1,2,3]".to_vec(), "application/json"),
        (
            "truncated JSON",
            br#"{"sale_id":"#.to_vec(),
            "application/json",
        ),
        (
            "deeply nested JSON",
            format!(
                "{}{}",
                "{\"a\":".repeat(50),
                "1".to_owned() + &"}".repeat(50)
            )
            .into_bytes(),
            "application/json",
        ),
        (
            "XML",
            b"<sale><id>1</id></sale>".to_vec(),
            "application/xml",
        ),
        (
            "multipart",
            b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--".to_vec(),
            "multipart/form-data; boundary=x",
        ),
        (
            "email with a header injection",
            replace("email=", "email=x%0d%0aBcc%3A%20all%40example.com").into_bytes(),
            form,
        ),
        (
            "email without an at",
            good.split('&')
                .map(|p| {
                    if p.starts_with("email=") {
                        "email=nobody.example.com"
                    } else {
                        p
                    }
                })
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes(),
            form,
        ),
        (
            "sale id with spaces",
            good.split('&')
                .map(|p| {
                    if p.starts_with("sale_id=") {
                        "sale_id=a%20b"
                    } else {
                        p
                    }
                })
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes(),
            form,
        ),
        (
            "sale id far too long",
            good.split('&')
                .map(|p| {
                    if p.starts_with("sale_id=") {
                        "sale_id=".to_owned() + &"a".repeat(300)
                    } else {
                        p.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes(),
            form,
        ),
        (
            "negative price",
            replace("price=2900", "price=-1").into_bytes(),
            form,
        ),
        (
            "fractional price",
            replace("price=2900", "price=29.00").into_bytes(),
            form,
        ),
        (
            "huge price",
            replace("price=2900", "price=99999999999999999999999").into_bytes(),
            form,
        ),
        (
            "bad quantity",
            replace("quantity=1", "quantity=lots").into_bytes(),
            form,
        ),
        (
            "path traversal permalink",
            replace(
                "product_permalink=https%3A%2F%2Facme.gumroad.com%2Fl%2Fmyapp-pro",
                "product_permalink=..%2F..%2Fetc",
            )
            .into_bytes(),
            form,
        ),
        (
            "permalink with spaces",
            replace("permalink=myapp-pro", "permalink=my%20app").into_bytes(),
            form,
        ),
        (
            "empty sale id and email",
            replace("email=", "email=&x=")
                .replace("sale_id=", "sale_id=&y=")
                .into_bytes(),
            form,
        ),
    ];
    assert!(cases.len() >= 25);
    for (name, body, content_type) in cases {
        let ping =
            Ping::new(&t.tenant_id, Some(&t.token), body).header("content-type", content_type);
        let reply = send(&stack.app, &ping).await;
        assert!(
            (400..500).contains(&reply.status),
            "{name}: {} {}",
            reply.status,
            reply.body
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/json"),
            "{name}"
        );
        let message = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(!message.is_empty(), "{name}: a clear message");
    }
    assert_eq!(writes(&stack, &t.tenant_id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_ses_fails_the_license_is_kept_and_the_retry_sends_exactly_one_email() {
    let stack = stack().await;
    let sender = format!("{}@unverified.example", unique("seller"));
    let t = seed(
        &stack,
        Seed {
            sender: sender.clone(),
            ..Seed::default()
        },
    )
    .await;
    let (sale, buyer) = (sale_id(), buyer());

    let reply = send(
        &stack.app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &buyer)),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, r#"{"error":"Temporarily unavailable"}"#)
    );
    let stored = licenses(&stack, &t.tenant_id).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(s(&stored[0], "email_status"), "failed");
    assert_eq!(payments(&stack, &t.tenant_id).await.len(), 1);
    assert!(emails_to(&buyer).is_empty());

    // A retry while SES still fails: still 503, still one license.
    let body = format!("{}&retry_count=1", sale_body(&sale, &buyer));
    let reply = send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), body)).await;
    assert_eq!(reply.status, 503);

    // SES recovers (the sender gets verified); ten concurrent retries send the owed email once.
    stack
        .ses
        .verify_email_identity()
        .email_address(&sender)
        .send()
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let app = stack.app.clone();
        let event = Ping::new(
            &t.tenant_id,
            Some(&t.token),
            format!("{}&retry_count=2", sale_body(&sale, &buyer)),
        )
        .event()
        .to_string();
        tasks.spawn(async move { app.handle(&event).await.unwrap().status.as_u16() });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let mails = emails_to(&buyer);
    assert_eq!(mails.len(), 1);
    let stored = licenses(&stack, &t.tenant_id).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(s(&stored[0], "email_status"), "sent");
    assert_eq!(
        mails[0]["id"].as_str(),
        Some(s(&stored[0], "email_message_id"))
    );
    assert!(
        mails[0]["body"]
            .as_str()
            .unwrap()
            .contains(&key_of(&stack, &stored[0]).await)
    );
}

/// Issue 22, defect 10: the SDK retried `SendEmail` after SES had accepted it, so a lost answer meant two emails.
#[tokio::test]
async fn an_email_whose_answer_is_lost_is_sent_once_and_owed_not_resent_by_the_sdk() {
    let faults = faults::Faults::new();
    let stack = faulty_stack(&faults).await;
    let t = seed(&stack, Seed::default()).await;
    let (sale, buyer) = (sale_id(), buyer());
    faults.add("SendEmail", None, faults::Fault::LoseAnswer, 1);

    let reply = send(
        &stack.app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &buyer)),
    )
    .await;
    assert_eq!(faults.hits(), ["SendEmail: LoseAnswer"]);
    assert_eq!(emails_to(&buyer).len(), 1, "SES got exactly one send");
    assert_eq!(reply.status, 503, "the email is owed: Gumroad retries");
    let stored = licenses(&stack, &t.tenant_id).await;
    assert_eq!(s(&stored[0], "email_status"), "failed");
    assert_eq!(stored[0]["email_maybe_sent"].as_bool().ok(), Some(&true));

    // Gumroad's retry sends it again (the buyer may now have it twice, and the log says so), then nothing more.
    for retry in 1..=2 {
        let body = format!("{}&retry_count={retry}", sale_body(&sale, &buyer));
        let reply = send(&stack.app, &Ping::new(&t.tenant_id, Some(&t.token), body)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    assert_eq!(emails_to(&buyer).len(), 2);
    let stored = licenses(&stack, &t.tenant_id).await;
    assert_eq!(s(&stored[0], "email_status"), "sent");
    assert!(!stored[0].contains_key("email_maybe_sent"));
}

#[tokio::test]
async fn the_sample_events_are_real_api_gateway_events() {
    let stack = stack().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/infra/events");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let response = stack
            .app
            .handle(&text)
            .await
            .unwrap_or_else(|e| panic!("{path:?}: {e}"));
        // Their placeholder token and key match nothing here: the tenant-agnostic refusals prove they parse.
        assert!(
            matches!(response.status.as_u16(), 400 | 404),
            "{path:?}: {}",
            response.status
        );
        seen += 1;
    }
    assert!(seen >= 5);
}
