//! A seller's first deploy cannot go silently wrong (issue 13), tested as the seller meets it: the real `keystead`
//! binary against the local stack, whose SES (infra/local/moto_server.py) has production access in us-east-1 and
//! is in the sandbox everywhere else, as a real account is once production access was granted in one region.
//!
//! * `tenant create` / `tenant set --sender` refuse a sender SES has not verified, unless `--skip-ses-check`;
//! * `ses verify` and `ses status`;
//! * `doctor` green on a healthy stack, red with the right fix on a missing table, a table without TTL, an
//!   unverified sender, failed key emails and a stale Gumroad subscription;
//! * `license resend --failed` sends each owed email once;
//! * a refused key email is recorded with its reason (sender not verified, recipient not verified in the sandbox).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::cli_support;
use crate::common;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use cli_support::*;
use common::local_api::LocalApi;
use common::{Ping, buyer, emails_to, sale_body, sale_id, send};
use serde_json::Value;

const API: &str = "https://keystead.example.com";

fn unverified_address() -> String {
    format!("{}@unverified.example", common::unique("seller"))
}

/// A domain of the test's own, verified in SES with `keystead ses verify`.
fn verified_domain() -> String {
    let domain = format!("{}.example", common::unique("shop"));
    let doc = ok_json(&["ses", "verify", &domain]);
    assert_eq!(doc["type"], "domain");
    domain
}

/// The doctor's answer with `--json`, whatever its exit code, and the code.
fn doctor(cmd: &mut assert_cmd::Command) -> (Value, i32) {
    let output = cmd.arg("--json").output().unwrap();
    let code = output.status.code().unwrap();
    let doc: Value = serde_json::from_str(&stdout_of(&output))
        .unwrap_or_else(|e| panic!("one JSON checklist ({e}): {}", stdout_of(&output)));
    if code != 0 {
        let stderr = stderr_of(&output);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("keystead: "), "{stderr}");
    }
    (doc, code)
}

fn check<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {doc:#}"))
}

fn fixes(check: &Value) -> String {
    check["fix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The ids of the checks that are not `ok`.
fn not_ok(doc: &Value) -> Vec<String> {
    doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .map(|c| format!("{} ({}: {})", c["id"], c["status"], c["summary"]))
        .collect()
}

fn product(tenant_id: &str) {
    ok(&[
        "product",
        "create",
        tenant_id,
        "myapp",
        "--name",
        "MyApp Pro",
        "--key-prefix",
        "MYAPP",
    ]);
    ok(&["product", "map", tenant_id, "myapp-pro", "myapp"]);
}

/// A tenant whose sender SES has never verified (made with `--skip-ses-check`), with product `myapp` mapped.
fn tenant_with_unverified_sender() -> (NewTenant, String) {
    let sender = unverified_address();
    let tenant = new_tenant_with(&common::unique("fd"), &sender, API, &["--skip-ses-check"]);
    product(&tenant.tenant_id);
    (tenant, sender)
}

/// Gumroad's ping for a sale of `myapp-pro` to `buyer`.
async fn sell(
    app: &keystead::app::App,
    tenant: &NewTenant,
    sale: &str,
    buyer: &str,
) -> common::Reply {
    send(
        app,
        &Ping::new(
            &tenant.tenant_id,
            Some(&tenant.token),
            sale_body(sale, buyer),
        ),
    )
    .await
}

#[test]
fn an_unverified_sender_is_refused_unless_the_check_is_skipped() {
    let unverified = unverified_address();
    let t = common::unique("fd");
    let msg = fails(
        &["tenant", "create", &t, "--sender", &unverified],
        exit::CONFLICT,
    );
    assert_eq!(
        msg,
        format!(
            "sender {unverified} is not a verified SES identity in us-east-1 (neither the address nor unverified.example): \
             run `keystead ses verify {unverified}` (or `keystead ses verify unverified.example` for every address at the domain); \
             or pass --skip-ses-check to verify it later"
        )
    );
    fails(&["tenant", "show", &t], exit::NOT_FOUND);

    // A seller who verifies later says so; the answer says what that costs.
    let human = ok(&[
        "tenant",
        "create",
        &t,
        "--sender",
        &unverified,
        "--skip-ses-check",
    ]);
    assert!(
        human.contains(&format!(
            "SES check skipped: key emails from {unverified} fail until SES has verified it"
        )),
        "{human}"
    );
    assert!(human.contains(&format!("keystead doctor {t}")), "{human}");
    let other = common::unique("fd");
    let doc = ok_json(&[
        "tenant",
        "create",
        &other,
        "--sender",
        &unverified,
        "--skip-ses-check",
    ]);
    assert_eq!(doc["ses_check"], "skipped");

    // `tenant set --sender` runs the same check, before anything changes.
    let msg = fails(
        &["tenant", "set", &t, "--sender", &unverified_address()],
        exit::CONFLICT,
    );
    assert!(msg.contains("keystead ses verify"), "{msg}");
    assert_eq!(
        ok_json(&["tenant", "show", &t])["sender"],
        unverified.as_str()
    );
    let later = unverified_address();
    let set = ok_json(&["tenant", "set", &t, "--sender", &later, "--skip-ses-check"]);
    assert_eq!(set["sender"], later.as_str());
    let set = ok_json(&["tenant", "set", &t, "--sender", &sender()]);
    assert_eq!(set["sender"], sender().as_str());
    let msg = fails(&["tenant", "set", &t, "--skip-ses-check"], exit::INVALID);
    assert!(msg.contains("--sender"), "{msg}");
    let unknown = common::unique("fd");
    let msg = fails(
        &["tenant", "set", &unknown, "--sender", &unverified_address()],
        exit::NOT_FOUND,
    );
    assert_eq!(msg, format!("unknown tenant '{unknown}'"));
}

#[test]
fn a_verified_address_and_an_address_at_a_verified_domain_are_accepted() {
    // An address: SES mails it a link (moto verifies at once).
    let address = format!("{}@owner.example", common::unique("me"));
    let doc = ok_json(&["ses", "verify", &address]);
    assert_eq!(doc["type"], "address");
    assert_eq!(doc["identity"], address.as_str());
    let human = ok(&["ses", "verify", &address]);
    assert!(human.contains("sent a confirmation email"), "{human}");
    let t = common::unique("fd");
    let created = ok_json(&["tenant", "create", &t, "--sender", &address]);
    assert_eq!(created["ses_check"], "verified");

    // A domain: the TXT record and three DKIM CNAMEs to add.
    let domain = format!("{}.example", common::unique("shop"));
    let human = ok(&["ses", "verify", &domain]);
    assert!(human.contains(&format!("_amazonses.{domain}")), "{human}");
    let doc = ok_json(&["ses", "verify", &domain]);
    let records = doc["records"].as_array().unwrap();
    assert_eq!(records.len(), 4, "{doc}");
    assert_eq!(records[0]["type"], "TXT");
    assert_eq!(records[0]["name"], format!("_amazonses.{domain}"));
    for record in &records[1..] {
        assert_eq!(record["type"], "CNAME");
        let name = record["name"].as_str().unwrap();
        let token = name.strip_suffix(&format!("._domainkey.{domain}")).unwrap();
        assert_eq!(record["value"], format!("{token}.dkim.amazonses.com"));
    }
    // Any address at the domain, and at its subdomains, may send.
    for sender in [format!("licenses@{domain}"), format!("keys@mail.{domain}")] {
        let t = common::unique("fd");
        ok(&["tenant", "create", &t, "--sender", &sender]);
    }
    let msg = fails(&["ses", "verify", "not a domain"], exit::INVALID);
    assert!(msg.contains("invalid SES identity"), "{msg}");

    // `ses status` lists them with their state; us-east-1 has production access.
    let status = ok_json(&["ses", "status"]);
    assert_eq!(status["region"], "us-east-1");
    assert_eq!(status["sandbox"], false);
    let listed = |identity: &str| {
        status["identities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["identity"] == identity)
            .cloned()
            .unwrap_or_else(|| panic!("{identity} in {status:#}"))
    };
    assert_eq!(listed(&address)["verification"], "Success");
    assert_eq!(listed(&address)["type"], "address");
    assert_eq!(listed(&domain)["type"], "domain");
    assert_eq!(listed(&domain)["dkim"], "Success");
    let human = ok(&["ses", "status"]);
    assert!(
        human.contains("Account: production access in us-east-1"),
        "{human}"
    );
}

#[test]
fn ses_status_says_when_the_account_is_in_the_sandbox() {
    let status = ok_json_cmd(
        keystead()
            .args(["ses", "status"])
            .env("AWS_REGION", "eu-west-1"),
    );
    assert_eq!(status["region"], "eu-west-1");
    assert_eq!(status["sandbox"], true);
    assert_eq!(status["quota"]["max_24_hour_send"], 200.0);
    let human = ok_cmd(
        keystead()
            .args(["ses", "status"])
            .env("AWS_REGION", "eu-west-1"),
    );
    assert!(
        human.contains("Account: in the SES sandbox in eu-west-1")
            && human.contains("Request production access")
            && human.contains("--region eu-west-1"),
        "{human}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_green_on_a_healthy_stack() {
    let stack = common::stack().await;
    let api = LocalApi::start();
    let gumroad = FakeGumroad::start();
    let tenant = new_tenant(&api.url);
    let t = tenant.tenant_id.as_str();
    product(t);
    for event in RESOURCES {
        gumroad.add_subscription(event, &tenant.ping_url);
    }
    // Another tenant's subscription is none of this tenant's business.
    gumroad.add_subscription(
        "sale",
        "https://elsewhere.example/webhooks/gumroad/other?token=x",
    );
    let reply = send(
        &stack.app,
        &Ping::new(t, Some(&tenant.token), sale_body(&sale_id(), &buyer())),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let (doc, code) =
        doctor(
            gumroad
                .keystead(GOOD_TOKEN)
                .args(["doctor", t, "--api-url", &api.url]),
        );
    assert_eq!(not_ok(&doc), Vec::<String>::new(), "{doc:#}");
    assert_eq!(code, 0);
    assert_eq!(doc["ok"], true);
    let ids: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "tenants-table",
            "licenses-table",
            "payments-table",
            "events-table",
            "tenant",
            "kms-key",
            "ses-sender",
            "ses-sandbox",
            "ses-quota",
            "ses-suppression",
            "api",
            "gumroad-subscriptions",
            "key-emails",
            "webhooks"
        ]
    );
    assert!(
        check(&doc, "kms-key")["summary"]
            .as_str()
            .unwrap()
            .contains("opens tenant"),
        "{doc:#}"
    );

    // The human checklist, and the deployment-wide checks without a tenant (KEYSTEAD_API_URL read as documented).
    let human = ok_cmd(
        gumroad
            .keystead(GOOD_TOKEN)
            .args(["doctor", t, "--api-url", &api.url]),
    );
    assert!(human.contains("14 checks: 14 ok, 0 failed"), "{human}");
    let (doc, code) = doctor(keystead().arg("doctor").env("KEYSTEAD_API_URL", &api.url));
    assert_eq!(not_ok(&doc), Vec::<String>::new(), "{doc:#}");
    assert_eq!(code, 0);
    // With the stack's SenderIdentity (CliEnvironment exports it), the sender is compared with what the
    // function's role may send as.
    let summary = |doc: &Value| {
        check(doc, "ses-sender")["summary"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (doc, _) = doctor(keystead().args(["doctor", t, "--api-url", &api.url]));
    assert!(
        summary(&doc).contains("KEYSTEAD_SENDER_IDENTITY is not set"),
        "{doc:#}"
    );
    let sender = sender();
    let (doc, code) = doctor(
        keystead()
            .args(["doctor", t, "--api-url", &api.url])
            .env("KEYSTEAD_SENDER_IDENTITY", &sender),
    );
    assert_eq!(code, 0, "{doc:#}");
    assert!(
        summary(&doc).ends_with(&format!("which the stack's SenderIdentity {sender} covers")),
        "{doc:#}"
    );
    // Another domain; and the sender's own domain, which does not cover it either: the address is verified as an
    // identity of its own, and SES authorizes the send against that one.
    let (_, domain) = sender.split_once('@').unwrap();
    for elsewhere in ["elsewhere.example", domain] {
        let (doc, code) = doctor(
            keystead()
                .args(["doctor", t, "--api-url", &api.url])
                .env("KEYSTEAD_SENDER_IDENTITY", elsewhere),
        );
        assert_eq!(code, 10, "{doc:#}");
        let sender_check = check(&doc, "ses-sender");
        assert_eq!(sender_check["status"], "fail");
        assert!(
            summary(&doc).contains(&format!(
                "the function's role may send only as the stack's SenderIdentity {elsewhere} and its domain: SES refuses every key email with AccessDenied"
            )),
            "{doc:#}"
        );
        assert!(
            fixes(sender_check).contains(&format!("--parameter-overrides SenderIdentity={sender}")),
            "{doc:#}"
        );
    }
    // Gumroad is skipped, not failed, without an access token.
    let (doc, code) = doctor(keystead().args(["doctor", t, "--api-url", &api.url]));
    assert_eq!(code, 0, "{doc:#}");
    assert_eq!(check(&doc, "gumroad-subscriptions")["status"], "skip");
    assert!(fixes(check(&doc, "gumroad-subscriptions")).contains("GUMROAD_ACCESS_TOKEN"));
}

/// The account-level suppression list (SES v2), read in a region of its own: moto keeps it per region, as AWS does.
#[tokio::test]
async fn doctor_warns_when_the_accounts_suppression_list_is_off() {
    let region = "ap-southeast-2";
    let sesv2 = aws_sdk_sesv2::Client::from_conf(
        aws_sdk_sesv2::config::Builder::from(&common::sdk().await)
            .region(aws_sdk_sesv2::config::Region::new(region))
            .build(),
    );
    let suppression = |doc: &Value| check(doc, "ses-suppression").clone();
    let reasons = |reasons: &[aws_sdk_sesv2::types::SuppressionListReason]| {
        let sesv2 = sesv2.clone();
        let reasons = reasons.to_vec();
        async move {
            sesv2
                .put_account_suppression_attributes()
                .set_suppressed_reasons(Some(reasons))
                .send()
                .await
                .unwrap();
        }
    };
    use aws_sdk_sesv2::types::SuppressionListReason::{Bounce, Complaint};
    reasons(&[Bounce, Complaint]).await;
    let (doc, _) = doctor(keystead().arg("doctor").env("AWS_REGION", region));
    let on = suppression(&doc);
    assert_eq!(on["status"], "ok", "{doc:#}");
    assert!(on["summary"].as_str().unwrap().contains(region), "{doc:#}");

    reasons(&[Bounce]).await;
    let (doc, _) = doctor(keystead().arg("doctor").env("AWS_REGION", region));
    let off = suppression(&doc);
    assert_eq!(off["status"], "warn", "{doc:#}");
    assert!(
        off["summary"]
            .as_str()
            .unwrap()
            .contains("does not take complaints"),
        "{doc:#}"
    );
    assert_eq!(
        fixes(&off),
        format!(
            "aws sesv2 put-account-suppression-attributes --suppressed-reasons BOUNCE COMPLAINT --region {region}"
        )
    );
    reasons(&[Bounce, Complaint]).await;
}

#[tokio::test]
async fn doctor_names_a_missing_table_and_a_table_without_ttl() {
    let stack = common::stack().await;
    let missing = common::unique("keystead-gone");
    let (doc, code) = doctor(
        keystead()
            .arg("doctor")
            .env("KEYSTEAD_PAYMENTS_TABLE", &missing),
    );
    assert_eq!(code, 10, "{doc:#}");
    assert_eq!(doc["ok"], false);
    let payments = check(&doc, "payments-table");
    assert_eq!(payments["status"], "fail");
    assert_eq!(
        payments["summary"],
        format!("table '{missing}' (KEYSTEAD_PAYMENTS_TABLE) does not exist in us-east-1")
    );
    assert!(
        fixes(payments)
            .contains("set KEYSTEAD_PAYMENTS_TABLE to the stack's PaymentsTableName output"),
        "{payments}"
    );
    assert_eq!(check(&doc, "licenses-table")["status"], "ok");

    // A table someone made by hand, without TTL.
    let no_ttl = common::unique("keystead-nottl");
    stack
        .ddb
        .create_table()
        .table_name(&no_ttl)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("tenant_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("tenant_id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (doc, code) = doctor(
        keystead()
            .arg("doctor")
            .env("KEYSTEAD_EVENTS_TABLE", &no_ttl),
    );
    assert_eq!(code, 10);
    let events = check(&doc, "events-table");
    assert_eq!(events["status"], "fail", "{events}");
    assert!(
        events["summary"]
            .as_str()
            .unwrap()
            .contains("expired records are never deleted"),
        "{events}"
    );
    assert_eq!(
        fixes(events),
        format!(
            "aws dynamodb update-time-to-live --table-name {no_ttl} --time-to-live-specification Enabled=true,AttributeName=ttl"
        )
    );
    stack
        .ddb
        .delete_table()
        .table_name(&no_ttl)
        .send()
        .await
        .unwrap();

    // Without the table names at all, the checklist says where they come from.
    let (doc, code) = doctor(
        keystead()
            .arg("doctor")
            .env_remove("KEYSTEAD_TENANTS_TABLE"),
    );
    assert_eq!(code, 10);
    assert!(
        fixes(check(&doc, "tables")).contains("CliEnvironment"),
        "{doc:#}"
    );
}

#[tokio::test]
async fn doctor_names_an_unverified_sender_and_the_key_emails_it_cost() {
    let stack = common::stack().await;
    let (tenant, unverified) = tenant_with_unverified_sender();
    let t = tenant.tenant_id.as_str();
    let reply = sell(&stack.app, &tenant, &sale_id(), &buyer()).await;
    assert_eq!(reply.status, 503, "SES refused the key email");

    let (doc, code) = doctor(keystead().args(["doctor", t]));
    assert_eq!(code, 10, "{doc:#}");
    let sender_check = check(&doc, "ses-sender");
    assert_eq!(sender_check["status"], "fail");
    assert!(
        sender_check["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "sender {unverified} is not a verified SES identity"
            )),
        "{sender_check}"
    );
    assert!(
        fixes(sender_check).starts_with(&format!("run `keystead ses verify {unverified}`")),
        "{sender_check}"
    );
    let emails = check(&doc, "key-emails");
    assert_eq!(emails["status"], "fail");
    assert!(
        emails["summary"].as_str().unwrap().starts_with(
            "1 key email(s) from the last 7d never reached the buyer (1 sender_not_verified)"
        ),
        "{emails}"
    );
    assert!(
        fixes(emails).ends_with(&format!("keystead license resend {t} --failed --since 7d")),
        "{emails}"
    );
    assert_eq!(check(&doc, "api")["status"], "skip", "no API URL given");

    let output = keystead().args(["doctor", t]).output().unwrap();
    assert_eq!(output.status.code(), Some(10));
    let human = stdout_of(&output);
    assert!(human.contains("  FAIL  ses-sender"), "{human}");
    assert!(
        human.contains(&format!("fix: run `keystead ses verify {unverified}`")),
        "{human}"
    );
    assert_eq!(
        stderr_of(&output),
        "keystead: 2 check(s) failed: ses-sender, key-emails (the checklist says how to fix each)\n"
    );
    assert!(!human.contains(&tenant.token), "the token is never printed");

    // Once SES knows the sender, only the owed email is left; a resend clears that too.
    ok(&["ses", "verify", &unverified]);
    let (doc, _) = doctor(keystead().args(["doctor", t]));
    assert_eq!(check(&doc, "ses-sender")["status"], "ok");
    ok(&["license", "resend", t, "--failed"]);
    let (doc, code) = doctor(keystead().args(["doctor", t]));
    assert_eq!(code, 0, "{doc:#}");
}

#[test]
fn doctor_names_a_stale_gumroad_subscription() {
    let gumroad = FakeGumroad::start();
    let tenant = new_tenant(API);
    let t = tenant.tenant_id.as_str();
    for event in RESOURCES {
        gumroad.add_subscription(event, &tenant.ping_url);
    }
    let (doc, code) = doctor(
        gumroad
            .keystead(GOOD_TOKEN)
            .args(["doctor", t, "--api-url", API]),
    );
    assert_eq!(
        check(&doc, "gumroad-subscriptions")["status"],
        "ok",
        "{doc:#}"
    );
    // The API URL is not reachable from here: only that fails.
    assert_eq!(code, 10);
    assert_eq!(check(&doc, "api")["status"], "fail");

    // The token is rotated: every subscription now pings a URL that answers 400.
    ok(&["tenant", "rotate-token", t, "--api-url", API]);
    let (doc, code) = doctor(gumroad.keystead(GOOD_TOKEN).args(["doctor", t]));
    assert_eq!(code, 10);
    let subs = check(&doc, "gumroad-subscriptions");
    assert_eq!(subs["status"], "fail");
    let summary = subs["summary"].as_str().unwrap();
    assert!(
        summary.contains("sale subscription sub0001== carries a rotated-away token"),
        "{summary}"
    );
    assert!(
        summary.contains("no subscription to the current URL for sale, refund, dispute"),
        "{summary}"
    );
    let fix = fixes(subs);
    for id in (1..=8).map(|n| format!("sub{n:04}==")) {
        assert!(
            fix.contains(&format!("keystead gumroad unsubscribe {id}")),
            "{fix}"
        );
    }
    assert!(
        fix.contains(&format!(
            "keystead gumroad subscribe {t} --webhook-url '<ping URL>' --events sale,refund,dispute,dispute_won,cancellation,subscription_ended,subscription_restarted,subscription_updated"
        )),
        "{fix}"
    );
    assert!(
        !doc.to_string().contains(&token_of(&tenant.ping_url)),
        "no token is printed"
    );

    // Two events subscribed to the new URL: the rest are named as missing, the old ones as stale.
    let rotated = ok_json(&["tenant", "rotate-token", t, "--api-url", API]);
    let url = rotated["ping_url"].as_str().unwrap();
    gumroad.add_subscription("sale", url);
    gumroad.add_subscription("refund", url);
    let (doc, _) = doctor(
        gumroad
            .keystead(GOOD_TOKEN)
            .args(["doctor", t, "--api-url", API]),
    );
    let subs = check(&doc, "gumroad-subscriptions");
    assert!(
        subs["summary"].as_str().unwrap().contains(
            "no subscription to the current URL for dispute, dispute_won, cancellation, subscription_ended, subscription_restarted, subscription_updated"
        ),
        "{subs}"
    );
    // A subscription with the right token on another API is just as dead.
    gumroad.add_subscription(
        "dispute",
        &url.replace(API, "https://old-stack.example.com"),
    );
    let (doc, _) = doctor(
        gumroad
            .keystead(GOOD_TOKEN)
            .args(["doctor", t, "--api-url", API]),
    );
    assert!(
        check(&doc, "gumroad-subscriptions")["summary"]
            .as_str()
            .unwrap()
            .contains("dispute subscription sub0011== points at another API"),
        "{doc:#}"
    );
    // Gumroad refusing the token fails the check with Gumroad's advice.
    let (doc, _) = doctor(gumroad.keystead("tok-bad").args(["doctor", t]));
    let subs = check(&doc, "gumroad-subscriptions");
    assert_eq!(subs["status"], "fail");
    assert!(
        subs["summary"]
            .as_str()
            .unwrap()
            .contains("GUMROAD_ACCESS_TOKEN"),
        "{subs}"
    );
}

/// Changes a license record behind keystead's back: an email stuck in `pending`, a backdated sale.
async fn set_license(
    stack: &common::Stack,
    tenant_id: &str,
    sk: &str,
    expression: &str,
    values: &[(&str, AttributeValue)],
) {
    let mut update = stack
        .ddb
        .update_item()
        .table_name(&stack.tables.licenses)
        .key("tenant_id", AttributeValue::S(tenant_id.to_owned()))
        .key("sk", AttributeValue::S(sk.to_owned()))
        .update_expression(expression);
    for (name, value) in values {
        update = update.expression_attribute_values(*name, value.clone());
    }
    update.send().await.unwrap();
}

#[tokio::test]
async fn bulk_resend_sends_each_owed_email_once() {
    let stack = common::stack().await;
    let (tenant, unverified) = tenant_with_unverified_sender();
    let t = tenant.tenant_id.as_str();

    // Three sales whose key emails SES refused (the sender is not verified yet).
    let mut owed = Vec::new();
    for _ in 0..3 {
        let (sale, buyer) = (sale_id(), buyer());
        assert_eq!(sell(&stack.app, &tenant, &sale, &buyer).await.status, 503);
        owed.push((sale, buyer));
    }
    // One more whose sender crashed mid-send: still `pending`, its claim long run out.
    let stalled_buyer = buyer();
    sell(&stack.app, &tenant, &sale_id(), &stalled_buyer).await;
    // One refunded (revoked) and one issued without an email: neither is owed.
    let (refunded_sale, refunded_buyer) = (sale_id(), buyer());
    sell(&stack.app, &tenant, &refunded_sale, &refunded_buyer).await;
    let refund = common::sale_event("refund", &refunded_sale, &refunded_buyer, true);
    let reply = send(&stack.app, &Ping::new(t, Some(&tenant.token), refund)).await;
    assert_eq!(reply.json()["license_status"], "revoked");
    let no_email_buyer = buyer();
    ok(&[
        "license",
        "issue",
        t,
        "myapp",
        "--email",
        &no_email_buyer,
        "--no-email",
    ]);
    // And one from long ago, outside a `--since` window.
    let old_buyer = buyer();
    sell(&stack.app, &tenant, &sale_id(), &old_buyer).await;

    let licenses = common::licenses(&stack, t).await;
    let sk_of = |buyer: &str| {
        let item = licenses
            .iter()
            .find(|l| common::s(l, "buyer_email") == buyer)
            .unwrap();
        common::s(item, "sk").to_owned()
    };
    set_license(
        &stack,
        t,
        &sk_of(&stalled_buyer),
        "SET email_status = :p, email_claim_until = :c REMOVE email_failure",
        &[
            (":p", AttributeValue::S("pending".into())),
            (":c", AttributeValue::N("1000".into())),
        ],
    )
    .await;
    set_license(
        &stack,
        t,
        &sk_of(&old_buyer),
        "SET created_at = :c",
        &[(":c", AttributeValue::S("2020-01-01T00:00:00Z".into()))],
    )
    .await;

    // While SES still refuses the sender, each owed email fails again: exit 9, the answer still printed.
    let output = keystead()
        .args([
            "license", "resend", t, "--failed", "--since", "1d", "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(exit::EMAIL_FAILED),
        "{}",
        stderr_of(&output)
    );
    let doc: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(
        (
            doc["owed"].as_u64(),
            doc["failed"].as_u64(),
            doc["sent"].as_u64()
        ),
        (Some(4), Some(4), Some(0)),
        "{doc:#}"
    );
    assert!(
        doc["emails"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["reason"] == "sender_not_verified")
    );
    let stderr = stderr_of(&output);
    assert!(
        stderr
            .starts_with("keystead: 4 of 4 key email(s) failed again (sender not verified in SES)")
            && stderr.contains(&format!("`keystead ses verify {unverified}`"))
            && stderr.contains(&format!("keystead license resend {t} --failed")),
        "{stderr}"
    );

    ok(&["ses", "verify", &unverified]);
    let human = ok(&["license", "resend", t, "--failed", "--since", "1d"]);
    assert!(human.contains(&format!("Resent 4 of 4 owed key email(s) of tenant {t} created in the last 1d: 0 failed, 0 skipped.")), "{human}");
    for (_, buyer) in &owed {
        assert!(
            human.contains(&keystead::domain::Email::parse(buyer).unwrap().masked()),
            "{human}"
        );
        assert!(
            !human.contains(buyer.as_str()),
            "buyers' addresses are masked: {human}"
        );
    }
    for buyer in owed.iter().map(|(_, b)| b).chain([&stalled_buyer]) {
        assert_eq!(emails_to(buyer).len(), 1, "one email to {buyer}");
    }
    for buyer in [&refunded_buyer, &no_email_buyer, &old_buyer] {
        assert!(emails_to(buyer).is_empty(), "nothing to {buyer}");
    }

    // Without --since, the old one is owed too; after that nothing is.
    let doc = ok_json(&["license", "resend", t, "--failed"]);
    assert_eq!(
        (doc["owed"].as_u64(), doc["sent"].as_u64()),
        (Some(1), Some(1)),
        "{doc:#}"
    );
    assert_eq!(emails_to(&old_buyer).len(), 1);
    let doc = ok_json(&["license", "resend", t, "--failed"]);
    assert_eq!(doc["owed"], 0);
    assert!(ok(&["license", "resend", t, "--failed"]).contains("No key emails of tenant"));
    // Gumroad's own retry of a resent sale sends nothing more.
    let (sale, buyer) = &owed[0];
    let reply = sell(&stack.app, &tenant, sale, buyer).await;
    assert_eq!(reply.json()["duplicate"], true);
    assert_eq!(emails_to(buyer).len(), 1);

    // Usage: a key or --failed, not both; --since only with --failed.
    fails(&["license", "resend", t], exit::INVALID);
    fails(
        &[
            "license",
            "resend",
            t,
            "MYAPP-00000-00000-00000-00000-00000-00000",
            "--failed",
        ],
        exit::INVALID,
    );
    fails(
        &[
            "license",
            "resend",
            t,
            "MYAPP-00000-00000-00000-00000-00000-00000",
            "--since",
            "1d",
        ],
        exit::INVALID,
    );
    let msg = fails(
        &["license", "resend", t, "--failed", "--since", "soon"],
        exit::INVALID,
    );
    assert!(msg.contains("invalid duration 'soon'"), "{msg}");
    fails(
        &["license", "resend", &common::unique("fd"), "--failed"],
        exit::NOT_FOUND,
    );
}

#[tokio::test]
async fn refused_key_emails_are_recorded_with_their_reason() {
    // us-east-1 has production access: an unverified sender is the reason.
    let stack = common::stack().await;
    let (tenant, _) = tenant_with_unverified_sender();
    let t = tenant.tenant_id.as_str();
    let buyer_a = buyer();
    assert_eq!(
        sell(&stack.app, &tenant, &sale_id(), &buyer_a).await.status,
        503
    );
    let listed = ok_json(&["license", "list", t, "--email", &buyer_a]);
    assert_eq!(
        listed["licenses"][0]["email_failure"],
        "sender_not_verified"
    );
    let key = listed["licenses"][0]["key"].as_str().unwrap().to_owned();
    assert!(ok(&["license", "show", t, &key]).contains("failed (sender not verified in SES)"));

    // eu-west-1 is in the sandbox: the sender is verified there, the buyer is not.
    let sandboxed = common::stack_with_ses_in("eu-west-1", stack.tables.clone()).await;
    let domain = verified_domain();
    let sender = format!("licenses@{domain}");
    ok_cmd(
        keystead()
            .args(["ses", "verify", &domain])
            .env("AWS_REGION", "eu-west-1"),
    );
    let tenant = new_tenant_from(&common::unique("fd"), &sender, API);
    let t = tenant.tenant_id.as_str();
    product(t);
    let (sale, buyer_b) = (sale_id(), buyer());
    assert_eq!(
        sell(&sandboxed.app, &tenant, &sale, &buyer_b).await.status,
        503
    );
    let listed = ok_json(&["license", "list", t, "--email", &buyer_b]);
    assert_eq!(
        listed["licenses"][0]["email_failure"],
        "recipient_not_verified"
    );
    assert_eq!(listed["licenses"][0]["email_status"], "failed");
    assert!(emails_to(&buyer_b).is_empty());

    // In the sandbox, a verified recipient does get mail: Gumroad's retry sends the owed email.
    ok_cmd(
        keystead()
            .args(["ses", "verify", &buyer_b])
            .env("AWS_REGION", "eu-west-1"),
    );
    let reply = sell(&sandboxed.app, &tenant, &sale, &buyer_b).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(emails_to(&buyer_b).len(), 1);
    let listed = ok_json(&["license", "list", t, "--email", &buyer_b]);
    assert_eq!(listed["licenses"][0]["email_status"], "sent");
    assert_eq!(
        listed["licenses"][0]["email_failure"],
        Value::Null,
        "cleared once sent"
    );
}

/// The function's own SDK configuration (`config::function_aws`: TLS that trusts Amazon's five roots) builds its
/// connections and answers: the same set-up the deployed function uses, here against the local stack.
#[tokio::test]
async fn the_functions_own_sdk_configuration_reaches_the_stack() {
    let sdk = keystead::config::function_aws().await.unwrap();
    let tables = aws_sdk_dynamodb::Client::new(&sdk)
        .list_tables()
        .send()
        .await
        .unwrap();
    assert!(!tables.table_names().is_empty());
}

/// Issue 24: every mail goes out with the stack's SES configuration set (`KEYSTEAD_SES_CONFIGURATION_SET`, which the
/// template sets), whose suppression list then keeps bounced and complaining addresses from getting more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mail_goes_out_with_the_stacks_configuration_set() {
    use keystead::mail::Mailer as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    let faults = common::faults::Faults::new();
    let sdk = common::sdk().await;
    let mailer = keystead::mail::SesMailer::from_config(
        aws_sdk_ses::config::Builder::from(&sdk).interceptor(faults.clone()),
    )
    .with_configuration_set("keystead-test-set");
    let seen = std::sync::Arc::new(AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&seen);
    faults.before(
        "ConfigurationSetName=keystead-test-set",
        Box::new(move || {
            Box::pin(async move {
                flag.store(true, Ordering::SeqCst);
            })
        }),
    );
    let to = buyer();
    let email = keystead::mail::KeyEmail {
        from: keystead::domain::Email::parse(&common::env("KEYSTEAD_LOCAL_SENDER")).unwrap(),
        to: keystead::domain::Email::parse(&to).unwrap(),
        subject: "Your license key".to_owned(),
        text: "Hi".to_owned(),
        html: "<p>Hi</p>".to_owned(),
    };
    mailer.send(&email).await.unwrap();
    assert!(
        seen.load(Ordering::SeqCst),
        "SendEmail named the configuration set"
    );
    assert_eq!(emails_to(&to).len(), 1);
}
