//! The admin CLI `keystead`, driven as a seller drives it: the real binary against the local stack, every command's
//! human answer and its one JSON document, every failure's exit code and one-line message, and the Gumroad
//! commands against a small stand-in for Gumroad's API.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::cli_support;
use crate::common;

use cli_support::*;
use common::{Ping, buyer, emails_to, sale_body, sale_id, send};
use serde_json::{Value, json};

const API: &str = "https://keystead.example.com";

fn product(tenant_id: &str, product_id: &str, prefix: &str) {
    ok(&[
        "product",
        "create",
        tenant_id,
        product_id,
        "--name",
        "MyApp Pro",
        "--key-prefix",
        prefix,
    ]);
}

/// A license issued by hand without an email; returns its key.
fn issue_quietly(tenant_id: &str, product_id: &str, email: &str) -> String {
    let doc = ok_json(&[
        "license",
        "issue",
        tenant_id,
        product_id,
        "--email",
        email,
        "--no-email",
    ]);
    doc["key"].as_str().expect("key").to_owned()
}

#[tokio::test]
async fn the_whole_way_from_a_new_tenant_to_a_rotated_token() {
    let stack = common::stack().await;
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();
    assert_eq!(
        tenant.ping_url,
        format!("{API}/webhooks/gumroad/{t}?token={}", tenant.token)
    );
    assert!(tenant.token.len() >= 26, "at least 128 random bits");

    product(t, "myapp", "MYAPP");
    let mapped = ok_json(&[
        "product",
        "map",
        t,
        "https://acme.gumroad.com/l/myapp-pro",
        "myapp",
    ]);
    assert_eq!(mapped["permalink"], "myapp-pro");

    // Gumroad pings the printed URL.
    let old_token = token_of(&tenant.ping_url);
    let (sale, buyer) = (sale_id(), buyer());
    let reply = send(
        &stack.app,
        &Ping::new(t, Some(&old_token), sale_body(&sale, &buyer)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let key = reply.json()["license"]["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("MYAPP-"));
    assert_eq!(emails_to(&buyer).len(), 1);

    let listed = ok_json(&["license", "list", t]);
    assert_eq!(listed["count"], 1);
    let license = &listed["licenses"][0];
    assert_eq!(license["key"], key.as_str());
    assert_eq!(license["sale_id"], sale.as_str());
    assert_eq!(license["buyer_email"], buyer.as_str());
    assert_eq!(license["product_id"], "myapp");
    assert_eq!(license["status"], "active");
    assert_eq!(license["email_status"], "sent");
    assert_eq!(license["source"], "gumroad");
    let first_message = license["email_message_id"].as_str().unwrap().to_owned();

    let resent = ok_json(&["license", "resend", t, &key]);
    assert_eq!(resent["email_status"], "sent");
    let second_message = resent["email_message_id"].as_str().unwrap().to_owned();
    assert_ne!(first_message, second_message);
    let mails = emails_to(&buyer);
    assert_eq!(mails.len(), 2, "the resend delivered a second email");
    assert!(
        mails
            .iter()
            .any(|m| m["id"] == second_message.as_str()
                && m["body"].as_str().unwrap().contains(&key))
    );
    let shown = ok_json(&["license", "show", t, &key]);
    assert_eq!(shown["email_message_id"], second_message.as_str());

    let rotated = ok_json(&["tenant", "rotate-token", t, "--api-url", API]);
    let new_token = rotated["token"].as_str().unwrap();
    assert_ne!(new_token, old_token);
    assert_eq!(
        rotated["ping_url"],
        format!("{API}/webhooks/gumroad/{t}?token={new_token}")
    );
    let reply = send(
        &stack.app,
        &Ping::new(t, Some(&old_token), sale_body(&sale_id(), &buyer)),
    )
    .await;
    assert_eq!(reply.status, 400, "the old URL is dead at once");
    assert_eq!(reply.json(), json!({"error": "Invalid request"}));
    let reply = send(
        &stack.app,
        &Ping::new(t, Some(new_token), sale_body(&sale_id(), &buyer)),
    )
    .await;
    assert_eq!(reply.status, 200, "the new URL works: {}", reply.body);
}

#[tokio::test]
async fn tenant_create_show_suspend_resume_and_rotate() {
    let stack = common::stack().await;
    let tenant_id = common::unique("cli");
    let t = tenant_id.as_str();

    let human = ok(&[
        "tenant",
        "create",
        t,
        "--sender",
        &sender(),
        "--seller-id",
        "kL0psVL2admJSYRNs-OCMg==",
        "--api-url",
        "https://keystead.example.com/",
    ]);
    assert!(human.contains(&format!("Created tenant {t}.")), "{human}");
    let url_line = human
        .lines()
        .find(|l| l.starts_with("Ping URL:"))
        .expect("the ping URL");
    let url = url_line.trim_start_matches("Ping URL:").trim();
    assert!(url.starts_with(&format!(
        "https://keystead.example.com/webhooks/gumroad/{t}?token="
    )));
    let token = token_of(url);
    assert!(human.contains(&format!("{token} (shown once)")));

    // The API URL may come from KEYSTEAD_API_URL; without one, the URL says what to fill in.
    let other = common::unique("cli");
    let doc = ok_json_cmd(
        keystead()
            .args(["tenant", "create", &other, "--sender", &sender()])
            .env("KEYSTEAD_API_URL", "https://env.example.com"),
    );
    assert!(doc["ping_url"].as_str().unwrap().starts_with(&format!(
        "https://env.example.com/webhooks/gumroad/{other}?token="
    )));
    let bare = ok(&["tenant", "rotate-token", &other]);
    assert!(
        bare.contains(&format!("<api-url>/webhooks/gumroad/{other}?token=")),
        "{bare}"
    );

    product(t, "myapp", "MYAPP");
    ok(&["product", "map", t, "myapp-pro", "myapp"]);
    let shown = ok_json(&["tenant", "show", t]);
    assert_eq!(shown["tenant_id"], t);
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["sender"], sender().as_str());
    assert_eq!(shown["seller_id"], "kL0psVL2admJSYRNs-OCMg==");
    assert_eq!(shown["permalinks"], json!({"myapp-pro": "myapp"}));
    assert_eq!(shown["products"][0]["product_id"], "myapp");
    assert_eq!(shown["products"][0]["key_prefix"], "MYAPP");
    assert_eq!(shown["products"][0]["activation_limit"], 3);
    let text = shown.to_string();
    let hash = keystead::domain::WebhookToken::from_string(token.clone())
        .hash()
        .to_hex();
    assert!(!text.contains("token") && !text.contains(&hash) && !text.contains(&token));
    let human = ok(&["tenant", "show", t]);
    for expected in [
        "active",
        "kL0psVL2admJSYRNs-OCMg==",
        "MyApp Pro",
        "myapp-pro -> myapp",
    ] {
        assert!(human.contains(expected), "{expected} in {human}");
    }
    assert!(!human.contains(&hash) && !human.contains(&token));

    let body = || sale_body(&sale_id(), &buyer());
    let suspended = ok_json(&["tenant", "suspend", t]);
    assert_eq!(
        suspended,
        json!({"tenant_id": t, "status": "suspended", "changed": true})
    );
    assert!(ok(&["tenant", "suspend", t]).contains("already suspended"));
    assert_eq!(ok_json(&["tenant", "show", t])["status"], "suspended");
    let reply = send(&stack.app, &Ping::new(t, Some(&token), body())).await;
    assert_eq!(reply.status, 403, "{}", reply.body);

    let resumed = ok(&["tenant", "resume", t]);
    assert!(
        resumed.contains(&format!("Resumed tenant {t}")),
        "{resumed}"
    );
    assert_eq!(ok_json(&["tenant", "resume", t])["changed"], false);
    let reply = send(&stack.app, &Ping::new(t, Some(&token), body())).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let human = ok(&["tenant", "rotate-token", t, "--api-url", API]);
    assert!(
        human.contains("the old ping URL no longer works"),
        "{human}"
    );
    let reply = send(&stack.app, &Ping::new(t, Some(&token), body())).await;
    assert_eq!(reply.status, 400);
}

#[test]
fn tenant_errors_are_one_clear_line() {
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();
    let s = sender();

    let msg = fails(
        &["tenant", "create", "Bad_Id", "--sender", &s],
        exit::INVALID,
    );
    assert!(msg.contains("invalid tenant id 'Bad_Id'"), "{msg}");
    let msg = fails(&["tenant", "create", "ab", "--sender", &s], exit::INVALID);
    assert!(msg.contains("3 to 64"), "{msg}");
    let msg = fails(
        &["tenant", "create", t, "--sender", &s],
        exit::ALREADY_EXISTS,
    );
    assert!(
        msg.contains(&format!("tenant '{t}' already exists")),
        "{msg}"
    );
    let fresh = common::unique("cli");
    let msg = fails(
        &["tenant", "create", &fresh, "--sender", "not-an-address"],
        exit::INVALID,
    );
    assert!(
        msg.contains("invalid sender address 'not-an-address'"),
        "{msg}"
    );
    let msg = fails(
        &[
            "tenant",
            "create",
            &fresh,
            "--sender",
            &s,
            "--api-url",
            "ftp://x",
        ],
        exit::INVALID,
    );
    assert!(msg.contains("invalid API URL"), "{msg}");
    // None of the refused creates left a tenant behind.
    fails(&["tenant", "show", &fresh], exit::NOT_FOUND);

    let unknown = common::unique("cli");
    for command in ["show", "suspend", "resume", "rotate-token"] {
        let msg = fails(&["tenant", command, &unknown], exit::NOT_FOUND);
        assert_eq!(msg, format!("unknown tenant '{unknown}'"), "{command}");
    }
    // A usage error is one line too.
    let msg = fails(&["tenant", "create", &fresh], exit::INVALID);
    assert!(msg.contains("--sender"), "{msg}");
}

#[test]
fn products_are_created_mapped_unmapped_and_deleted() {
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();

    let human = ok(&[
        "product",
        "create",
        t,
        "pro",
        "--name",
        "MyApp Pro",
        "--key-prefix",
        "PRO",
        "--activation-limit",
        "5",
        "--duration-days",
        "365",
    ]);
    assert!(human.contains(&format!("Created product pro (MyApp Pro) for tenant {t}.")));
    let doc = ok_json(&[
        "product",
        "create",
        t,
        "lite",
        "--name",
        "Lite",
        "--key-prefix",
        "LITE",
    ]);
    assert_eq!(
        doc,
        json!({"tenant_id": t, "product_id": "lite", "name": "Lite", "key_prefix": "LITE",
               "activation_limit": 3, "duration_days": null, "entitlements": [],
               "seat_lease": null, "token_ttl": null, "key_source": "keystead", "email_key": "always",
               "releases": {"after_expiry": "keep-released", "updates_for": null,
                            "sparkle_public_key": null, "tauri_public_key": null}})
    );

    let human = ok(&[
        "product",
        "map",
        t,
        "https://acme.gumroad.com/l/pro-app?wanted=true",
        "pro",
    ]);
    assert!(
        human.contains("Mapped permalink pro-app to product pro."),
        "{human}"
    );
    ok(&["product", "map", t, "lite-app", "lite"]);
    let remap = ok(&["product", "map", t, "lite-app", "pro"]);
    assert!(remap.contains("(was lite)"), "{remap}");
    ok(&["product", "map", t, "lite-app", "lite"]);
    let shown = ok_json(&["tenant", "show", t]);
    assert_eq!(
        shown["permalinks"],
        json!({"pro-app": "pro", "lite-app": "lite"})
    );
    assert_eq!(shown["products"][1]["duration_days"], 365);
    assert_eq!(shown["products"][1]["activation_limit"], 5);

    let msg = fails(&["product", "delete", t, "lite"], exit::CONFLICT);
    assert!(
        msg.contains("still mapped from permalink(s) lite-app"),
        "{msg}"
    );
    let unmapped = ok_json(&["product", "unmap", t, "https://acme.gumroad.com/l/lite-app"]);
    assert_eq!(
        unmapped,
        json!({"tenant_id": t, "permalink": "lite-app", "variant": null, "product_id": "lite", "unmapped": true})
    );
    let msg = fails(&["product", "unmap", t, "lite-app"], exit::NOT_FOUND);
    assert!(
        msg.contains(&format!(
            "permalink 'lite-app' is not mapped for tenant '{t}'"
        )),
        "{msg}"
    );
    let human = ok(&["product", "delete", t, "lite"]);
    assert!(human.contains("Deleted product lite"), "{human}");
    let shown = ok_json(&["tenant", "show", t]);
    assert_eq!(shown["permalinks"], json!({"pro-app": "pro"}));
    assert_eq!(shown["products"].as_array().unwrap().len(), 1);
    let human = ok(&["product", "unmap", t, "pro-app"]);
    assert!(human.contains("Unmapped permalink pro-app"), "{human}");
    assert_eq!(
        ok_json(&["product", "delete", t, "pro"]),
        json!({"tenant_id": t, "product_id": "pro", "deleted": true})
    );
}

#[test]
fn product_errors_are_one_clear_line() {
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();
    product(t, "myapp", "MYAPP");
    let create = |id: &str, prefix: &str, extra: &[&str]| {
        let mut args = vec![
            "product",
            "create",
            t,
            id,
            "--name",
            "N",
            "--key-prefix",
            prefix,
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>, code| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&refs, code)
    };

    let msg = run(create("myapp", "MYAPP", &[]), exit::ALREADY_EXISTS);
    assert!(
        msg.contains(&format!("product 'myapp' already exists for tenant '{t}'")),
        "{msg}"
    );
    let msg = run(create("other", "lower", &[]), exit::INVALID);
    assert!(msg.contains("invalid key prefix 'lower'"), "{msg}");
    let msg = run(create("other", "WAYTOOLONGPREFIX", &[]), exit::INVALID);
    assert!(msg.contains("invalid key prefix"), "{msg}");
    let msg = run(create("bad id", "OK", &[]), exit::INVALID);
    assert!(msg.contains("invalid product id 'bad id'"), "{msg}");
    let msg = run(
        create("other", "OK", &["--activation-limit", "0"]),
        exit::INVALID,
    );
    assert!(msg.contains("activation limit"), "{msg}");
    let msg = run(
        create("other", "OK", &["--duration-days", "0"]),
        exit::INVALID,
    );
    assert!(msg.contains("duration"), "{msg}");
    let msg = run(
        create("other", "OK", &["--activation-limit", "many"]),
        exit::INVALID,
    );
    assert!(msg.contains("--activation-limit"), "{msg}");

    let unknown = common::unique("cli");
    let msg = fails(
        &[
            "product",
            "create",
            &unknown,
            "p",
            "--name",
            "N",
            "--key-prefix",
            "P",
        ],
        exit::NOT_FOUND,
    );
    assert_eq!(msg, format!("unknown tenant '{unknown}'"));
    let msg = fails(&["product", "map", t, "slug", "nope"], exit::NOT_FOUND);
    assert!(msg.contains("product 'nope' does not exist"), "{msg}");
    let msg = fails(
        &["product", "map", t, "https://acme.gumroad.com/", "myapp"],
        exit::INVALID,
    );
    assert!(msg.contains("invalid permalink"), "{msg}");
    let msg = fails(&["product", "map", t, "my app", "myapp"], exit::INVALID);
    assert!(msg.contains("invalid permalink"), "{msg}");
    let msg = fails(&["product", "unmap", t, "never-mapped"], exit::NOT_FOUND);
    assert!(msg.contains("is not mapped"), "{msg}");
    let msg = fails(&["product", "delete", t, "nope"], exit::NOT_FOUND);
    assert!(msg.contains("product 'nope' does not exist"), "{msg}");
    fails(&["product", "delete", &unknown, "myapp"], exit::NOT_FOUND);
    fails(&["product", "unmap", &unknown, "slug"], exit::NOT_FOUND);
    assert_eq!(ok_json(&["tenant", "show", t])["permalinks"], json!({}));
}

#[tokio::test]
async fn licenses_are_issued_listed_shown_revoked_and_reinstated() {
    let stack = common::stack().await;
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();
    product(t, "myapp", "MYAPP");
    ok(&[
        "product",
        "create",
        t,
        "yearly",
        "--name",
        "Yearly",
        "--key-prefix",
        "YR",
        "--duration-days",
        "365",
        "--activation-limit",
        "2",
    ]);

    // Manual issue: same records as a ping, an email, source "manual".
    let jane = buyer();
    let human = ok(&[
        "license", "issue", t, "myapp", "--email", &jane, "--name", "Jane Doe",
    ]);
    assert!(human.contains("Issued license MYAPP-"), "{human}");
    assert!(human.contains(&format!("sent to {jane}")), "{human}");
    let mails = emails_to(&jane);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["subject"], "Your license key for MyApp Pro");
    let payments = common::payments(&stack, t).await;
    assert_eq!(payments.len(), 1);
    assert_eq!(common::s(&payments[0], "source"), "manual");
    assert_eq!(common::n(&payments[0], "amount_usd_cents"), 0);
    assert!(common::s(&payments[0], "sale_id").starts_with("manual_"));
    assert_eq!(common::events(&stack, t).await.len(), 1);

    let joe = buyer();
    let issued = ok_json(&[
        "license",
        "issue",
        t,
        "yearly",
        "--email",
        &joe,
        "--no-email",
    ]);
    assert_eq!(issued["email_status"], "pending");
    assert_eq!(issued["source"], "manual");
    assert_eq!(issued["activation_limit"], 2);
    assert!(issued["expires_at"].as_str().is_some());
    assert!(emails_to(&joe).is_empty(), "--no-email sends nothing");
    let joe_key = issued["key"].as_str().unwrap().to_owned();
    assert!(joe_key.starts_with("YR-"));

    // List: newest first, filters, limit.
    let all = ok_json(&["license", "list", t]);
    assert_eq!(all["count"], 2);
    assert_eq!(all["licenses"][0]["key"], joe_key.as_str(), "newest first");
    let by_email = ok_json(&["license", "list", t, "--email", &jane.to_uppercase()]);
    assert_eq!(by_email["count"], 1);
    assert_eq!(by_email["licenses"][0]["buyer_email"], jane.as_str());
    assert_eq!(by_email["licenses"][0]["buyer_name"], "Jane Doe");
    let by_product = ok_json(&["license", "list", t, "--product", "yearly"]);
    assert_eq!(by_product["licenses"][0]["key"], joe_key.as_str());
    assert_eq!(by_product["count"], 1);
    let pending = ok_json(&["license", "list", t, "--email-status", "pending"]);
    assert_eq!(pending["count"], 1);
    let sent = ok_json(&[
        "license",
        "list",
        t,
        "--email-status",
        "sent",
        "--product",
        "myapp",
    ]);
    assert_eq!(sent["count"], 1);
    assert_eq!(
        ok_json(&["license", "list", t, "--email-status", "failed"])["count"],
        0
    );
    assert_eq!(ok_json(&["license", "list", t, "--limit", "1"])["count"], 1);
    let table = ok(&["license", "list", t]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("KEY") && lines[0].contains("BUYER"));
    assert!(lines[1].starts_with(&joe_key) && lines[1].contains(&joe));
    assert!(ok(&["license", "list", t, "--email", "nobody@example.com"]).contains("No licenses"));

    // Show, with the key as a buyer might paste it.
    let shown = ok_json(&[
        "license",
        "show",
        t,
        &format!("  {}  ", joe_key.to_lowercase()),
    ]);
    assert_eq!(shown["key"], joe_key.as_str());
    assert_eq!(shown["status"], "active");
    assert_eq!(shown["product_id"], "yearly");
    assert_eq!(shown["buyer_email"], joe.as_str());
    assert_eq!(shown["sale_id"], issued["sale_id"]);
    assert_eq!(shown["activations"], 0);
    assert_eq!(shown["activation_limit"], 2);
    assert_eq!(shown["activation_records"], json!([]));
    assert_eq!(shown["expires_at"], issued["expires_at"]);
    assert_eq!(shown["email_status"], "pending");
    assert!(shown.get("key_hash").is_none() && shown.get("email_claim_until").is_none());
    let human = ok(&["license", "show", t, &joe_key]);
    for expected in [
        "Status:",
        "active",
        "Product:",
        "yearly (Yearly)",
        "Buyer:",
        &joe,
        "Sale:",
        "Activations:",
        "0 of 2",
        "Expires:",
        "Email:",
        "pending",
    ] {
        assert!(human.contains(expected), "{expected} in {human}");
    }

    // Revoke and reinstate, each idempotent.
    let revoked = ok_json(&["license", "revoke", t, &joe_key]);
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["changed"], true);
    assert!(ok(&["license", "revoke", t, &joe_key]).contains("already revoked"));
    assert_eq!(
        ok_json(&["license", "show", t, &joe_key])["status"],
        "revoked"
    );
    let licenses = common::licenses(&stack, t).await;
    let stored = licenses
        .iter()
        .find(|l| common::s(l, "key_hash") == keystead::domain::sha256_hex(&joe_key))
        .unwrap();
    assert_eq!(common::s(stored, "status"), "revoked");
    let msg = fails(&["license", "resend", t, &joe_key], exit::CONFLICT);
    assert!(msg.contains("the license is revoked"), "{msg}");
    let human = ok(&["license", "reinstate", t, &joe_key]);
    assert!(human.contains("Reinstated license"), "{human}");
    assert_eq!(
        ok_json(&["license", "reinstate", t, &joe_key])["changed"],
        false
    );
    assert_eq!(
        ok_json(&["license", "show", t, &joe_key])["status"],
        "active"
    );

    // Resend of a never-sent key: delivers it and records it.
    let human = ok(&["license", "resend", t, &joe_key]);
    assert!(
        human.contains(&format!("Sent the key email again to {joe}")),
        "{human}"
    );
    assert_eq!(emails_to(&joe).len(), 1);
    assert_eq!(
        ok_json(&["license", "show", t, &joe_key])["email_status"],
        "sent"
    );
}

#[test]
fn a_failed_key_email_keeps_the_license_and_says_to_resend() {
    // moto's SES refuses to send from an unverified address; `--skip-ses-check` lets the seller set it up anyway.
    let unverified = format!("{}@unverified.example", common::unique("seller"));
    let tenant = new_tenant_with(
        &common::unique("cli"),
        &unverified,
        API,
        &["--skip-ses-check"],
    );
    let t = tenant.tenant_id.as_str();
    product(t, "myapp", "MYAPP");
    let jane = buyer();

    let output = keystead()
        .args(["license", "issue", t, "myapp", "--email", &jane, "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(exit::EMAIL_FAILED));
    let doc: Value =
        serde_json::from_str(&stdout_of(&output)).expect("the license is still printed");
    assert_eq!(doc["email_status"], "failed");
    assert_eq!(doc["email_failure"], "sender_not_verified");
    let key = doc["key"].as_str().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("keystead: the license is issued, but the key email to"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sender not verified in SES")
            && stderr.contains(&format!("`keystead ses verify {unverified}`")),
        "the reason and its fix: {stderr}"
    );
    assert!(
        stderr.contains(&format!("keystead license resend {t} {key}")),
        "{stderr}"
    );
    assert!(emails_to(&jane).is_empty());
    assert_eq!(
        ok_json(&["license", "list", t, "--email-status", "failed"])["count"],
        1
    );

    let msg = fails(&["license", "resend", t, key], exit::EMAIL_FAILED);
    assert!(
        msg.contains("the license is kept, but the key email"),
        "{msg}"
    );
    assert!(msg.contains(&unverified), "{msg}");
}

#[test]
fn license_errors_are_one_clear_line() {
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();
    product(t, "myapp", "MYAPP");
    let key = issue_quietly(t, "myapp", &buyer());
    let unknown = common::unique("cli");
    let missing_key = "MYAPP-00000-00000-00000-00000-00000-00000";

    let msg = fails(&["license", "show", t, "not-a-key"], exit::INVALID);
    assert!(msg.starts_with("invalid license key"), "{msg}");
    for command in ["show", "resend", "revoke", "reinstate"] {
        let msg = fails(&["license", command, t, missing_key], exit::NOT_FOUND);
        assert_eq!(
            msg,
            format!("no license with that key for tenant '{t}'"),
            "{command}"
        );
        let msg = fails(&["license", command, &unknown, &key], exit::NOT_FOUND);
        assert_eq!(msg, format!("unknown tenant '{unknown}'"), "{command}");
    }
    let msg = fails(&["license", "list", &unknown], exit::NOT_FOUND);
    assert_eq!(msg, format!("unknown tenant '{unknown}'"));
    let msg = fails(&["license", "list", t, "--email", "nobody"], exit::INVALID);
    assert_eq!(msg, "invalid email address 'nobody'");
    let msg = fails(
        &["license", "list", t, "--email-status", "bounced"],
        exit::INVALID,
    );
    assert!(msg.contains("invalid email status 'bounced'"), "{msg}");
    let msg = fails(&["license", "list", t, "--limit", "0"], exit::INVALID);
    assert!(msg.contains("invalid limit 0"), "{msg}");
    let msg = fails(&["license", "list", t, "--limit=-3"], exit::INVALID);
    assert!(msg.contains("--limit"), "{msg}");
    let msg = fails(
        &["license", "list", t, "--product", "bad id"],
        exit::INVALID,
    );
    assert!(msg.contains("invalid product id"), "{msg}");

    let msg = fails(
        &["license", "issue", t, "nope", "--email", "a@example.com"],
        exit::NOT_FOUND,
    );
    assert_eq!(
        msg,
        format!("product 'nope' does not exist for tenant '{t}'")
    );
    let msg = fails(
        &["license", "issue", t, "myapp", "--email", "a@b"],
        exit::INVALID,
    );
    assert_eq!(msg, "invalid email address 'a@b'");
    let msg = fails(
        &[
            "license",
            "issue",
            &unknown,
            "myapp",
            "--email",
            "a@example.com",
        ],
        exit::NOT_FOUND,
    );
    assert_eq!(msg, format!("unknown tenant '{unknown}'"));
    ok(&["tenant", "suspend", t]);
    let msg = fails(
        &["license", "issue", t, "myapp", "--email", "a@example.com"],
        exit::CONFLICT,
    );
    assert!(msg.contains(&format!("tenant '{t}' is suspended")), "{msg}");
    assert_eq!(
        ok_json(&["license", "list", t])["count"],
        1,
        "nothing was issued"
    );
}

#[test]
fn aws_unreachable_and_missing_configuration_are_clear() {
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();
    let key = "MYAPP-00000-00000-00000-00000-00000-00000";
    // A verified sender: SES answers, so what fails is DynamoDB.
    let s = sender();
    let commands: Vec<Vec<&str>> = vec![
        vec!["tenant", "create", "cli-unreachable", "--sender", &s],
        vec!["tenant", "show", t],
        vec!["tenant", "suspend", t],
        vec!["tenant", "rotate-token", t],
        vec![
            "product",
            "create",
            t,
            "p",
            "--name",
            "N",
            "--key-prefix",
            "P",
        ],
        vec!["product", "map", t, "slug", "p"],
        vec!["product", "unmap", t, "slug"],
        vec!["product", "delete", t, "p"],
        vec!["license", "list", t],
        vec!["license", "show", t, key],
        vec!["license", "resend", t, key],
        vec!["license", "revoke", t, key],
        vec!["license", "issue", t, "p", "--email", "a@example.com"],
    ];
    for args in &commands {
        let owned: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let msg = fails_cmd(
            || {
                let mut cmd = keystead();
                cmd.args(&owned)
                    .env("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:1");
                cmd
            },
            exit::AWS,
        );
        assert!(
            msg.starts_with("AWS unreachable or failing: "),
            "{args:?}: {msg}"
        );
        assert!(
            msg.contains("127.0.0.1:1") || msg.contains("refused"),
            "{msg}"
        );

        let msg = fails_cmd(
            || {
                let mut cmd = keystead();
                cmd.args(&owned)
                    .env_remove("KEYSTEAD_TENANTS_TABLE")
                    .env_remove("KEYSTEAD_EVENTS_TABLE");
                cmd
            },
            exit::CONFIG,
        );
        assert!(
            msg.contains(
                "missing environment variable(s) KEYSTEAD_TENANTS_TABLE, KEYSTEAD_EVENTS_TABLE"
            ),
            "{args:?}: {msg}"
        );
    }
    let msg = fails(&["tenant", "frobnicate"], exit::INVALID);
    assert!(msg.contains("frobnicate"), "{msg}");
}

fn subscribe_args<'a>(t: &'a str, url: &'a str) -> Vec<&'a str> {
    vec!["gumroad", "subscribe", t, "--webhook-url", url]
}

#[test]
fn gumroad_subscriptions_are_created_listed_and_deleted() {
    let gumroad = FakeGumroad::start();
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();

    // All events by default, one PUT each, the access token in the form body only.
    let human = ok_cmd(
        gumroad
            .keystead(GOOD_TOKEN)
            .args(subscribe_args(t, &tenant.ping_url)),
    );
    assert!(human.contains("to 8 Gumroad event(s)"), "{human}");
    assert!(
        !human.contains(&tenant.token),
        "the token is shown only once: {human}"
    );
    let subs = gumroad.subscriptions();
    assert_eq!(
        subs.iter().map(|(_, r, _)| r.as_str()).collect::<Vec<_>>(),
        RESOURCES.to_vec()
    );
    assert!(subs.iter().all(|(_, _, url)| *url == tenant.ping_url));
    for (id, resource, _) in &subs {
        assert!(human.contains(id.as_str()) && human.contains(resource.as_str()));
    }
    let received = gumroad.received();
    assert_eq!(received.len(), 8);
    for r in &received {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("PUT", "/v2/resource_subscriptions")
        );
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("Bearer {GOOD_TOKEN}").as_str()),
            "the token travels as a bearer header"
        );
        assert!(!r.form.contains_key("access_token"));
        assert!(r.query.is_empty(), "nothing secret in the URL");
    }

    // Only the events asked for, the Basic-auth form of the URL, and JSON.
    let basic = format!(
        "https://gumroad:{}@keystead.example.com/webhooks/gumroad/{t}",
        tenant.token
    );
    let doc = ok_json_cmd(
        gumroad
            .keystead(GOOD_TOKEN)
            .args(subscribe_args(t, &basic))
            .args(["--events", "refund,sale"]),
    );
    let created = doc["subscriptions"].as_array().unwrap();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["resource_name"], "sale");
    assert_eq!(created[1]["resource_name"], "refund");
    assert_eq!(
        created[0]["post_url"],
        format!("https://gumroad:***@keystead.example.com/webhooks/gumroad/{t}")
    );
    assert!(!doc.to_string().contains(&tenant.token));

    // List: every event by default, or the ones given; tokens hidden.
    let listed = ok_json_cmd(
        gumroad
            .keystead(GOOD_TOKEN)
            .args(["gumroad", "subscriptions"]),
    );
    let listed = listed["subscriptions"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 10);
    assert_eq!(
        listed[0]["post_url"],
        format!("{API}/webhooks/gumroad/{t}?token=***")
    );
    let gets = gumroad
        .received()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect::<Vec<_>>();
    assert_eq!(gets.len(), 8);
    assert_eq!(
        gets.iter()
            .map(|r| r.query["resource_name"].as_str())
            .collect::<Vec<_>>(),
        RESOURCES.to_vec()
    );
    let sales = ok_json_cmd(gumroad.keystead(GOOD_TOKEN).args([
        "gumroad",
        "subscriptions",
        "--events",
        "sale",
    ]));
    assert_eq!(sales["subscriptions"].as_array().unwrap().len(), 2);
    let table = ok_cmd(gumroad.keystead(GOOD_TOKEN).args([
        "gumroad",
        "subscriptions",
        "--events",
        "dispute",
    ]));
    assert!(
        table.starts_with("ID") && table.contains("dispute"),
        "{table}"
    );
    assert!(!table.contains(&tenant.token));

    // Delete one.
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let human = ok_cmd(
        gumroad
            .keystead(GOOD_TOKEN)
            .args(["gumroad", "unsubscribe", &id]),
    );
    assert!(
        human.contains(&format!("Deleted Gumroad resource subscription {id}")),
        "{human}"
    );
    assert_eq!(gumroad.subscriptions().len(), 9);
    let id2 = listed[1]["id"].as_str().unwrap().to_owned();
    let doc = ok_json_cmd(
        gumroad
            .keystead(GOOD_TOKEN)
            .args(["gumroad", "unsubscribe", &id2]),
    );
    assert_eq!(doc, json!({"id": id2, "deleted": true}));
    let delete = gumroad
        .received()
        .into_iter()
        .rfind(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(
        delete.path,
        format!("/v2/resource_subscriptions/{}", id2.replace('=', "%3D"))
    );
    assert_eq!(
        delete.authorization.as_deref(),
        Some(format!("Bearer {GOOD_TOKEN}").as_str())
    );
    assert!(delete.query.is_empty(), "nothing secret in the URL");

    let empty =
        ok_cmd(
            gumroad
                .keystead(GOOD_TOKEN)
                .args(["gumroad", "subscriptions", "--events", "sale"]),
        );
    assert!(
        empty.contains("No Gumroad resource subscriptions"),
        "{empty}"
    );
}

#[test]
fn gumroad_errors_say_what_to_do() {
    let gumroad = FakeGumroad::start();
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();
    let token = tenant.token.as_str();
    let url = tenant.ping_url.as_str();
    let run = |access: Option<&str>, args: Vec<String>, code: i32| {
        fails_cmd(
            || {
                let mut cmd = gumroad.keystead(access.unwrap_or_default());
                if access.is_none() {
                    cmd.env_remove("GUMROAD_ACCESS_TOKEN");
                }
                cmd.args(&args);
                cmd
            },
            code,
        )
    };
    let sub = |url: &str| -> Vec<String> {
        subscribe_args(t, url)
            .into_iter()
            .map(str::to_owned)
            .collect()
    };
    let list = || vec!["gumroad".to_owned(), "subscriptions".to_owned()];
    let unsub = |id: &str| {
        vec![
            "gumroad".to_owned(),
            "unsubscribe".to_owned(),
            id.to_owned(),
        ]
    };

    // Configuration and values checked before Gumroad is asked.
    for args in [sub(url), list(), unsub("x")] {
        let msg = run(None, args, exit::CONFIG);
        assert!(
            msg.contains("missing environment variable GUMROAD_ACCESS_TOKEN"),
            "{msg}"
        );
    }
    let path = format!("/webhooks/gumroad/{t}?token={token}");
    for (bad, why) in [
        (
            format!("http://localhost:9000{path}"),
            "Gumroad refuses localhost",
        ),
        (
            format!("http://127.0.0.1:9000{path}"),
            "Gumroad refuses localhost",
        ),
        (format!("http://0.0.0.0{path}"), "Gumroad refuses localhost"),
        (format!("ftp://keystead.example.com{path}"), "http(s)"),
        (
            format!("{API}/webhooks/gumroad/other-tenant?token={token}"),
            "its path must be",
        ),
        (format!("{API}/webhooks/gumroad/{t}"), "carries no token"),
        (
            format!("{API}/webhooks/gumroad/{t}?token=stale"),
            "not tenant",
        ),
        ("no url at all".to_owned(), "invalid webhook URL"),
    ] {
        let msg = run(Some(GOOD_TOKEN), sub(&bad), exit::INVALID);
        assert!(
            msg.starts_with("invalid webhook URL: ") && msg.contains(why),
            "{bad}: {msg}"
        );
        assert!(!msg.contains(token), "{msg}");
    }
    let mut events = sub(url);
    events.extend(["--events".to_owned(), "sale,purchase".to_owned()]);
    let msg = run(Some(GOOD_TOKEN), events, exit::INVALID);
    assert!(msg.contains("unknown Gumroad event 'purchase'"), "{msg}");
    let msg = run(
        Some(GOOD_TOKEN),
        vec![
            "gumroad".into(),
            "subscriptions".into(),
            "--events".into(),
            "sales".into(),
        ],
        exit::INVALID,
    );
    assert!(msg.contains("unknown Gumroad event 'sales'"), "{msg}");
    let unknown = common::unique("cli");
    let msg = run(
        Some(GOOD_TOKEN),
        subscribe_args(&unknown, url)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        exit::NOT_FOUND,
    );
    assert_eq!(msg, format!("unknown tenant '{unknown}'"));
    assert!(gumroad.received().is_empty(), "nothing reached Gumroad");

    // Gumroad's refusals.
    for args in [sub(url), list(), unsub("sub0001==")] {
        let msg = run(Some("tok-wrong"), args, exit::GUMROAD);
        assert!(
            msg.starts_with("Gumroad rejected the access token"),
            "{msg}"
        );
        assert!(
            msg.contains("GUMROAD_ACCESS_TOKEN") && !msg.contains("tok-wrong"),
            "{msg}"
        );
    }
    for args in [sub(url), list(), unsub("sub0001==")] {
        let msg = run(Some(NO_SCOPE_TOKEN), args, exit::GUMROAD);
        assert!(msg.contains("lacks the view_sales scope"), "{msg}");
    }
    let public = |host: &str| format!("https://{host}/webhooks/gumroad/{t}?token={token}");
    let msg = run(
        Some(GOOD_TOKEN),
        sub(&public("rejected.invalid")),
        exit::INVALID,
    );
    assert!(
        msg.starts_with("Gumroad refused the 'sale' subscription"),
        "{msg}"
    );
    assert!(
        msg.contains("Invalid post URL") && msg.contains("public http(s) URL"),
        "{msg}"
    );
    assert!(
        !msg.contains(token),
        "the token Gumroad quoted back is hidden: {msg}"
    );
    let msg = run(
        Some(GOOD_TOKEN),
        sub(&public("legacy.example")),
        exit::INVALID,
    );
    assert!(
        msg.contains("Invalid post URL") && !msg.contains(token),
        "{msg}"
    );
    let msg = run(
        Some(GOOD_TOKEN),
        sub(&public("unprocessable.example")),
        exit::GUMROAD,
    );
    assert!(
        msg.starts_with("Gumroad could not process the 'sale' subscription"),
        "{msg}"
    );
    // A refusal halfway says which subscriptions were made.
    let output = gumroad
        .keystead(GOOD_TOKEN)
        .args(sub(&public("partial.example")))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(exit::GUMROAD));
    assert_eq!(stdout_of(&output), "");
    let msg = stderr_of(&output);
    assert!(
        msg.starts_with("keystead: Gumroad could not process the 'dispute' subscription"),
        "{msg}"
    );
    assert!(
        msg.ends_with("[already subscribed: sale=sub0001==, refund=sub0002==]\n"),
        "{msg}"
    );
    for (id, _, _) in gumroad.subscriptions() {
        ok_cmd(
            gumroad
                .keystead(GOOD_TOKEN)
                .args(["gumroad", "unsubscribe", &id]),
        );
    }
    let msg = run(Some(GOOD_TOKEN), unsub("sub9999=="), exit::NOT_FOUND);
    assert!(
        msg.starts_with("Gumroad found no resource subscription 'sub9999=='"),
        "{msg}"
    );
    assert!(msg.contains("keystead gumroad subscriptions"), "{msg}");
    let msg = run(Some(GOOD_TOKEN), unsub("legacy-missing"), exit::NOT_FOUND);
    assert!(msg.contains("was not found"), "{msg}");
    assert!(gumroad.subscriptions().is_empty());

    // Gumroad unreachable.
    let msg = fails_cmd(
        || {
            let mut cmd = gumroad.keystead(GOOD_TOKEN);
            cmd.env("GUMROAD_API_URL", "http://127.0.0.1:1")
                .args(list());
            cmd
        },
        exit::GUMROAD,
    );
    assert!(
        msg.starts_with("cannot reach Gumroad at http://127.0.0.1:1"),
        "{msg}"
    );
    let msg = fails_cmd(
        || {
            let mut cmd = gumroad.keystead(GOOD_TOKEN);
            cmd.env("GUMROAD_API_URL", "not a url").args(list());
            cmd
        },
        exit::CONFIG,
    );
    assert!(msg.contains("invalid GUMROAD_API_URL"), "{msg}");
    let msg = run(Some(GOOD_TOKEN), unsub(""), exit::INVALID);
    assert!(msg.contains("invalid subscription id"), "{msg}");
}

#[tokio::test]
async fn tenant_settings_and_machine_seats() {
    let stack = common::stack().await;
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();
    product(t, "myapp", "MYAPP");
    ok(&["product", "map", t, "myapp-pro", "myapp"]);

    // The refund policy is the tenant's: with `keep`, a full refund leaves the license active.
    let shown = ok_json(&["tenant", "show", t]);
    assert_eq!(shown["refund_policy"], "revoke");
    assert_eq!(shown["gumroad_enabled"], true);
    let set = ok_json(&["tenant", "set", t, "--refund-policy", "keep"]);
    assert_eq!(set["refund_policy"], "keep");
    let token = token_of(&tenant.ping_url);
    let (sale, buyer) = (sale_id(), buyer());
    let sold = send(
        &stack.app,
        &Ping::new(t, Some(&token), sale_body(&sale, &buyer)),
    )
    .await;
    let key = sold.json()["license"]["key"].as_str().unwrap().to_owned();
    let refund = sale_body(&sale, &buyer)
        .replace("refunded=false", "refunded=true")
        .replace("resource_name=sale", "resource_name=refund");
    let refunded = send(&stack.app, &Ping::new(t, Some(&token), refund)).await;
    assert_eq!(refunded.json()["license_status"], "active");

    // Machines activated through the license API show up, and the CLI frees a seat.
    let activate = json!({"key": key, "machine_id": "studio-mac", "label": "Studio"}).to_string();
    let mut ping = Ping::new(t, None, activate).header("content-type", "application/json");
    ping.path = format!("/v1/{t}/licenses/activate");
    assert_eq!(send(&stack.app, &ping).await.status, 200);
    let shown = ok_json(&["license", "show", t, &key]);
    assert_eq!(shown["activations"], 1);
    assert_eq!(shown["activation_records"][0]["machine_id"], "studio-mac");
    assert_eq!(shown["activation_records"][0]["label"], "Studio");
    assert!(ok(&["license", "show", t, &key]).contains("studio-mac"));
    let freed = ok_json(&["license", "deactivate", t, &key, "studio-mac"]);
    assert_eq!(freed["activations"], 0);
    let message = fails(&["license", "deactivate", t, &key, "studio-mac"], 3);
    assert!(message.contains("holds no seat"), "{message}");
    assert_eq!(ok_json(&["license", "show", t, &key])["activations"], 0);

    // Disabling Gumroad makes the tenant's pings look like a wrong token.
    ok(&["tenant", "set", t, "--gumroad", "disabled"]);
    let refused = send(
        &stack.app,
        &Ping::new(t, Some(&token), sale_body(&sale_id(), &buyer)),
    )
    .await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (400, r#"{"error":"Invalid request"}"#)
    );
    let message = fails(&["tenant", "set", t], 2);
    assert!(message.contains("nothing to change"), "{message}");
    fails(&["tenant", "set", t, "--refund-policy", "sometimes"], 2);
    fails(
        &["tenant", "set", "no-such-tenant", "--gumroad", "enabled"],
        3,
    );
}

#[tokio::test]
async fn tiers_are_mapped_by_variant_and_products_are_set() {
    let stack = common::stack().await;
    let app = stack
        .app
        .clone()
        .with_tenant_cache_ttl(std::time::Duration::ZERO);
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();
    product(t, "solo", "SOLO");
    let created = ok_json(&[
        "product",
        "create",
        t,
        "team",
        "--name",
        "MyApp Team",
        "--key-prefix",
        "TEAM",
        "--activation-limit",
        "10",
        "--entitlements",
        "export, sync",
    ]);
    assert_eq!(created["entitlements"], json!(["export", "sync"]));
    ok(&[
        "product",
        "map",
        t,
        "https://acme.gumroad.com/l/myapp-pro",
        "solo",
    ]);
    let human = ok(&[
        "product",
        "map",
        t,
        "myapp-pro",
        "team",
        "--variant",
        "Tier=Team",
    ]);
    assert!(
        human.contains("Mapped permalink myapp-pro [Tier=Team] to product team."),
        "{human}"
    );
    let shown = ok_json(&["tenant", "show", t]);
    assert_eq!(shown["permalinks"], json!({"myapp-pro": "solo"}));
    assert_eq!(
        shown["variant_mappings"],
        json!([{"permalink": "myapp-pro", "variant": "Tier=Team", "category": "Tier", "name": "Team", "product_id": "team"}])
    );
    assert!(ok(&["tenant", "show", t]).contains("myapp-pro [Tier=Team] -> team"));
    let msg = fails(&["product", "delete", t, "team"], exit::CONFLICT);
    assert!(msg.contains("myapp-pro [Tier=Team]"), "{msg}");
    let msg = fails(
        &[
            "product",
            "map",
            t,
            "myapp-pro",
            "team",
            "--variant",
            "Team",
        ],
        exit::INVALID,
    );
    assert!(msg.contains("expected <CATEGORY>=<NAME>"), "{msg}");

    // A Team sale gets the Team key type; its entitlements follow the product as the seller sets it.
    let reply = send(
        &app,
        &Ping::new(
            t,
            Some(&token_of(&tenant.ping_url)),
            sale_body(&sale_id(), &buyer())
                .replace("variants%5BTier%5D=Pro", "variants%5BTier%5D=team"),
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let key = reply.json()["license"]["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("TEAM-"), "{key}");
    let set = ok_json(&[
        "product",
        "set",
        t,
        "team",
        "--entitlements",
        "export,sync,admin",
        "--name",
        "MyApp Teams",
        "--duration-days",
        "never",
    ]);
    assert_eq!(set["name"], "MyApp Teams");
    assert_eq!(set["activation_limit"], 10);
    let validated = send(
        &app,
        &common::call(
            t,
            "validate",
            json!({"key": key, "product_id": "team"}).to_string(),
        ),
    )
    .await
    .json();
    assert_eq!(
        validated["entitlements"],
        json!(["export", "sync", "admin"])
    );
    let msg = fails(
        &["product", "set", t, "team", "--entitlements", "Admin"],
        exit::INVALID,
    );
    assert!(msg.contains("invalid entitlement 'Admin'"), "{msg}");
    let msg = fails(
        &["product", "set", t, "nope", "--name", "x"],
        exit::NOT_FOUND,
    );
    assert!(msg.contains("product 'nope' does not exist"), "{msg}");

    let unmapped = ok_json(&[
        "product",
        "unmap",
        t,
        "myapp-pro",
        "--variant",
        "TIER = team",
    ]);
    assert_eq!(unmapped["variant"], "TIER=team");
    assert_eq!(unmapped["product_id"], "team");
    let msg = fails(
        &["product", "unmap", t, "myapp-pro", "--variant", "Tier=Team"],
        exit::NOT_FOUND,
    );
    assert!(
        msg.contains("permalink 'myapp-pro' [Tier=Team] is not mapped"),
        "{msg}"
    );
    assert_eq!(
        ok_json(&["tenant", "show", t])["variant_mappings"],
        json!([])
    );
}

/// Issue 22, defect 2: `keystead migrate ttl` removes the TTL older versions set on licenses and sale markers,
/// and leaves it on what is truly ephemeral (idempotency records, sign-in tokens).
#[tokio::test]
async fn migrate_ttl_removes_the_ttl_from_licenses_and_markers_only() {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let stack = common::stack().await;
    let t = common::seed(&stack, common::Seed::default()).await;
    let item = |sk: &str| {
        [
            ("tenant_id", S(t.tenant_id.clone())),
            ("sk", S(sk.to_owned())),
            ("ttl", N("1800000000".to_owned())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect::<std::collections::HashMap<_, _>>()
    };
    let put = |table: &str, sk: &str| {
        stack
            .ddb
            .put_item()
            .table_name(table)
            .set_item(Some(item(sk)))
            .send()
    };
    put(&stack.tables.licenses, "LICENSE#legacy").await.unwrap();
    put(&stack.tables.events, "MARKER#sale-1").await.unwrap();
    put(&stack.tables.events, "EVENT#refund-1").await.unwrap();
    put(&stack.tables.events, "SIGNIN#token").await.unwrap();

    let dry = ok_json(&["migrate", "ttl", &t.tenant_id, "--dry-run"]);
    assert_eq!(
        (
            dry["dry_run"].clone(),
            dry["licenses"].clone(),
            dry["markers"].clone()
        ),
        (json!(true), json!(1), json!(1))
    );
    let done = ok_json(&["migrate", "ttl", &t.tenant_id]);
    assert_eq!(
        (done["licenses"].clone(), done["markers"].clone()),
        (json!(1), json!(1))
    );
    let again = ok(&["migrate", "ttl", &t.tenant_id]);
    assert!(
        again.contains("removed the TTL of 0 license(s) and 0 sale marker(s) in 1 tenant(s)"),
        "{again}"
    );

    let ttl_of = |items: Vec<common::Item>, sk: &str| {
        items
            .iter()
            .find(|i| common::s(i, "sk") == sk)
            .unwrap()
            .contains_key("ttl")
    };
    let licenses = common::licenses(&stack, &t.tenant_id).await;
    assert!(!ttl_of(licenses, "LICENSE#legacy"));
    let events = common::events(&stack, &t.tenant_id).await;
    assert!(!ttl_of(events.clone(), "MARKER#sale-1"));
    assert!(
        ttl_of(events.clone(), "EVENT#refund-1"),
        "idempotency records keep theirs"
    );
    assert!(ttl_of(events, "SIGNIN#token"), "sign-in tokens keep theirs");
}

/// Issue 22: the seller's suspend, resume and extend are facts of the license like revoke and reinstate.
#[test]
fn licenses_are_suspended_resumed_and_extended() {
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();
    product(t, "myapp", "MYAPP");
    ok(&[
        "product",
        "create",
        t,
        "monthly",
        "--name",
        "Monthly",
        "--key-prefix",
        "MO",
        "--duration-days",
        "30",
    ]);
    let key = issue_quietly(t, "myapp", &buyer());

    let suspended = ok_json(&["license", "suspend", t, &key]);
    assert_eq!(
        (suspended["status"].clone(), suspended["changed"].clone()),
        (json!("suspended"), json!(true))
    );
    assert_eq!(
        ok_json(&["license", "show", t, &key])["status"],
        "suspended"
    );
    let resumed = ok(&["license", "resume", t, &key]);
    assert!(
        resumed.contains("Resumed license MYAPP-") && resumed.contains("it is active"),
        "{resumed}"
    );
    assert_eq!(ok_json(&["license", "show", t, &key])["status"], "active");

    let message = fails(&["license", "extend", t, &key, "--until", "2099-01-01"], 7);
    assert!(message.contains("does not expire"), "{message}");
    let monthly = issue_quietly(t, "monthly", &buyer());
    let extended = ok_json(&["license", "extend", t, &monthly, "--until", "2099-01-31"]);
    assert_eq!(extended["expires_at"], "2099-01-31T00:00:00Z");
    let earlier = fails(
        &["license", "extend", t, &monthly, "--until", "2000-01-01"],
        7,
    );
    assert!(earlier.contains("must be later"), "{earlier}");
    let invalid = fails(&["license", "extend", t, &monthly, "--until", "soon"], 2);
    assert!(invalid.contains("invalid --until 'soon'"), "{invalid}");
}

/// Issue 24: license keys are sealed at rest; `keystead migrate seal-keys` seals those older versions stored in
/// plaintext, and a sealed key opens only on its own license.
#[tokio::test]
async fn migrate_seal_keys_seals_what_older_versions_stored_in_plaintext() {
    use aws_sdk_dynamodb::types::AttributeValue::S;
    use keystead::storage::Store as _;
    let stack = common::stack().await;
    let t = common::seed(&stack, common::Seed::default()).await;
    // A function of the version before: its store writes keys as they are.
    let sdk = common::sdk().await;
    let plain = keystead::storage::DynamoStore::new(stack.ddb.clone(), stack.tables.clone());
    let before = keystead::app::App::new(
        std::sync::Arc::new(plain),
        std::sync::Arc::new(keystead::config::ses_mailer(&sdk)),
        std::sync::Arc::new(keystead::config::kms_vault(&sdk).unwrap()),
    );
    let mut keys = Vec::new();
    for _ in 0..2 {
        let sold = common::send(&before, &common::new_sale(&t)).await;
        keys.push(sold.json()["license"]["key"].as_str().unwrap().to_owned());
    }
    let items = common::license_items(&common::licenses(&stack, &t.tenant_id).await)
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    assert!(
        items.iter().all(|i| i.contains_key("key")),
        "stored in plaintext before"
    );

    let dry = ok_json(&["migrate", "seal-keys", &t.tenant_id, "--dry-run"]);
    assert_eq!(
        (dry["dry_run"].clone(), dry["sealed"].clone()),
        (json!(true), json!(2))
    );
    let done = ok_json(&["migrate", "seal-keys", &t.tenant_id]);
    assert_eq!(done["sealed"], 2);
    let again = ok(&["migrate", "seal-keys", &t.tenant_id]);
    assert!(again.contains("sealed 0 license key(s)"), "{again}");

    let items = common::license_items(&common::licenses(&stack, &t.tenant_id).await)
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    for (item, key) in items.iter().zip(&keys) {
        assert!(!item.contains_key("key"));
        assert!(
            !format!("{items:?}").contains(key.as_str()),
            "no key in the clear"
        );
        assert!(common::s(item, "key_sealed").starts_with("v1."));
    }
    // The keys still work, and the CLI shows them opened.
    for key in &keys {
        let validated = common::api(&stack, &t.tenant_id, "validate", json!({"key": key})).await;
        assert_eq!(validated.status, 200, "{}", validated.body);
        assert!(ok(&["license", "show", &t.tenant_id, key]).contains(key.as_str()));
    }

    // A sealed key copied onto another license does not open there.
    let hash_of = |key: &str| keystead::domain::sha256_hex(key);
    let first = items
        .iter()
        .find(|i| common::s(i, "key_hash") == hash_of(&keys[0]))
        .unwrap();
    stack
        .ddb
        .update_item()
        .table_name(&stack.tables.licenses)
        .key("tenant_id", S(t.tenant_id.clone()))
        .key("sk", S(format!("LICENSE#{}", hash_of(&keys[1]))))
        .update_expression("SET key_sealed = :sealed")
        .expression_attribute_values(":sealed", S(common::s(first, "key_sealed").to_owned()))
        .send()
        .await
        .unwrap();
    let swapped = stack
        .store
        .get_license(
            &keystead::domain::TenantId::parse(&t.tenant_id).unwrap(),
            &keystead::domain::KeyHash::from_stored(hash_of(&keys[1])),
        )
        .await;
    assert!(
        matches!(&swapped, Err(keystead::storage::StoreError::Corrupt(why)) if why.contains("does not open")),
        "{swapped:?}"
    );
}
