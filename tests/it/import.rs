//! `keystead gumroad import` as a seller runs it: the real binary against the local stack and a fake Gumroad that
//! lists sales in pages, in Gumroad's shapes; imports and pings share one idempotency record.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::cli_support;
use crate::common;

use cli_support::*;
use common::*;
use serde_json::{Value, json};

fn gumroad_sale(id: &str, email: &str, permalink: &str, extra: Value) -> Value {
    let mut sale = json!({
        "id": id, "email": email, "seller_id": "kL0psVL2admJSYRNs-OCMg==", "product_id": "32-nPAicqbLj8B_WswVlMw==",
        "product_name": "MyApp Pro", "product_permalink": format!("https://acme.gumroad.com/l/{permalink}"),
        "price": 2900, "currency": "usd", "quantity": 1, "order_id": 524459935, "created_at": "2025-03-01T10:00:00Z",
        "full_name": "Jane Doe", "variants": {"Tier": "Pro"}, "custom_fields": {}, "refunded": false,
        "chargedback": false, "disputed": false, "subscription_id": null, "recurring_charge": false,
    });
    if let (Value::Object(sale), Value::Object(extra)) = (&mut sale, extra) {
        sale.extend(extra);
    }
    sale
}

struct Fixture {
    stack: Stack,
    t: Seeded,
    gumroad: FakeGumroad,
    /// `(sale id, buyer)` of the mapped sales, oldest first.
    mapped: Vec<(String, String)>,
    refunded: String,
}

/// Five sales, newest first as Gumroad lists them: three pages of two. One of an unmapped product, one refunded.
async fn fixture() -> Fixture {
    let stack = stack().await;
    let t = seed(&stack, Seed::default()).await;
    let gumroad = FakeGumroad::start();
    let mapped: Vec<(String, String)> = (0..3).map(|_| (sale_id(), buyer())).collect();
    let refunded = sale_id();
    let mut sales = vec![
        gumroad_sale(
            &mapped[0].0,
            &mapped[0].1,
            "myapp-pro",
            json!({"created_at": "2025-01-01T10:00:00Z"}),
        ),
        gumroad_sale(&sale_id(), &buyer(), "old-app", json!({})),
        gumroad_sale(
            &mapped[1].0,
            &mapped[1].1,
            "myapp-pro",
            json!({"quantity": 2}),
        ),
        gumroad_sale(&refunded, &buyer(), "myapp-pro", json!({"refunded": true})),
        gumroad_sale(
            &mapped[2].0,
            &mapped[2].1,
            "myapp-pro",
            json!({"created_at": "2025-06-01T10:00:00Z"}),
        ),
    ];
    sales.reverse();
    gumroad.set_sales(sales);
    Fixture {
        stack,
        t,
        gumroad,
        mapped,
        refunded,
    }
}

fn import(f: &Fixture, extra: &[&str]) -> Value {
    let mut cmd = f.gumroad.keystead(GOOD_TOKEN);
    cmd.args(["gumroad", "import", &f.t.tenant_id]).args(extra);
    ok_json_cmd(&mut cmd)
}

#[tokio::test]
async fn an_import_pages_through_every_sale_and_running_it_again_changes_nothing() {
    let f = fixture().await;
    let dry = import(&f, &["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["pages"], 3);
    assert_eq!(dry["read"], 5);
    assert_eq!(dry["imported"], 4);
    assert_eq!(dry["unmapped"], json!({"old-app": 1}));
    assert_eq!(
        writes(&f.stack, &f.t.tenant_id).await,
        0,
        "a dry run writes nothing"
    );

    let shown = |f: &Fixture| cli_support::ok_json(&["tenant", "show", &f.t.tenant_id]);
    assert_eq!(
        shown(&f)["gumroad_verify"],
        false,
        "a dry run turns nothing on"
    );
    let first = import(&f, &[]);
    assert_eq!(first["imported"], 4, "{first}");
    assert_eq!(
        shown(&f)["gumroad_verify"],
        true,
        "the imported buyers' apps may still call Gumroad's verify"
    );
    assert_eq!(first["refunded"], 1);
    assert_eq!(first["unmapped"], json!({"old-app": 1}));
    let items = licenses(&f.stack, &f.t.tenant_id).await;
    let minted = license_items(&items);
    assert_eq!(minted.len(), 4);
    let of = |sale: &str| *minted.iter().find(|l| s(l, "sale_id") == sale).unwrap();
    assert_eq!(s(of(&f.refunded), "status"), "revoked");
    assert_eq!(
        n(of(&f.mapped[1].0), "activation_limit"),
        6,
        "quantity 2 × 3 seats"
    );
    assert_eq!(s(of(&f.mapped[0].0), "created_at"), "2025-01-01T10:00:00Z");
    for (_, buyer) in &f.mapped {
        assert!(emails_to(buyer).is_empty(), "no email without --send-email");
    }

    let again = import(&f, &[]);
    assert_eq!(again["imported"], 0);
    assert_eq!(again["already_present"], 4);
    assert_eq!(
        license_items(&licenses(&f.stack, &f.t.tenant_id).await).len(),
        4
    );
    // The same sale's ping after the import is a duplicate.
    let (sale, buyer) = &f.mapped[2];
    let ping = send(
        &f.stack.app,
        &Ping::new(&f.t.tenant_id, Some(&f.t.token), sale_body(sale, buyer)),
    )
    .await;
    assert_eq!(ping.json()["duplicate"], true, "{}", ping.body);
    // Issue 22, defect 1: neither the second import nor the ping mails a key the import did not.
    for (_, buyer) in &f.mapped {
        assert!(
            emails_to(buyer).is_empty(),
            "import never emails unless asked"
        );
    }
}

#[tokio::test]
async fn a_sale_already_pinged_is_skipped_and_send_email_mails_the_rest() {
    let f = fixture().await;
    let (sale, buyer) = &f.mapped[0];
    let pinged = send(
        &f.stack.app,
        &Ping::new(&f.t.tenant_id, Some(&f.t.token), sale_body(sale, buyer)),
    )
    .await;
    assert_eq!(pinged.status, 200);
    let key = pinged.json()["license"]["key"].as_str().unwrap().to_owned();
    let summary = import(&f, &["--send-email", "--product", "myapp-pro"]);
    assert_eq!(summary["already_present"], 1);
    assert_eq!(summary["imported"], 3);
    assert_eq!(summary["skipped"], 1, "old-app is not selected");
    assert_eq!(emails_to(buyer).len(), 1, "only the ping's own email");
    assert_eq!(emails_to(&f.mapped[1].1).len(), 1, "imported and mailed");
    let items = licenses(&f.stack, &f.t.tenant_id).await;
    let kept = license_items(&items)
        .into_iter()
        .find(|l| s(l, "sale_id") == sale.as_str())
        .unwrap();
    assert_eq!(
        s(kept, "key_hash"),
        keystead::domain::sha256_hex(&key),
        "the pinged license is untouched"
    );
}

#[tokio::test]
async fn gumroad_failures_are_retried_and_a_bad_token_says_what_to_do() {
    let f = fixture().await;
    f.gumroad.fail_sales_requests(2);
    let summary = import(&f, &[]);
    assert_eq!(
        summary["imported"], 4,
        "two 502s, then the import goes through"
    );

    let t = f.t.tenant_id.clone();
    let url = f.gumroad.url.clone();
    let msg = fails_cmd(
        || {
            let mut cmd = keystead();
            cmd.env("GUMROAD_API_URL", &url)
                .env("GUMROAD_ACCESS_TOKEN", "tok-wrong")
                .args(["gumroad", "import", &t]);
            cmd
        },
        exit::GUMROAD,
    );
    assert!(msg.contains("set GUMROAD_ACCESS_TOKEN"), "{msg}");
    f.gumroad.fail_sales_requests(100);
    let msg = fails_cmd(
        || {
            let mut cmd = f.gumroad.keystead(GOOD_TOKEN);
            cmd.args(["gumroad", "import", &t]);
            cmd
        },
        exit::GUMROAD,
    );
    assert!(msg.contains("HTTP 502"), "{msg}");
    let msg = fails(
        &["gumroad", "import", &t, "--after", "March 1"],
        exit::INVALID,
    );
    assert!(msg.contains("YYYY-MM-DD"), "{msg}");
}
