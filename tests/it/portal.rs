//! The buyer's portal against the local stack (DynamoDB Local, moto's SES, KMS and S3), driven through the real
//! handler as API Gateway would: the sign-in form that cannot tell buyers from strangers, its rate limits,
//! single-use expiring links, signed cookies, CSRF-protected actions, key replacement, license lookup by email
//! through the index, and downloads.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::cli_support;
use crate::common;

use common::portal::*;
use common::{Ping, Seed, api, buyer, emails_to, sale_body, sale_id, seed, send, stack};
use keystead::domain::{Email, TenantId};
use keystead::storage::{PortalStore, Store};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A sale to `buyer` of the seeded tenant's product; returns the key.
async fn buy(app: &keystead::app::App, t: &common::Seeded, buyer: &str) -> String {
    let reply = send(
        app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale_id(), buyer)),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["license"]["key"].as_str().unwrap().to_owned()
}

/// A portal with `limits`, a seeded tenant, and a buyer who bought its product once.
async fn portal_with_buyer(
    limits: keystead::portal::PortalSettings,
) -> (common::Stack, keystead::app::App, common::Seeded, String) {
    let stack = stack().await;
    let app = portal_app(&stack, limits).await;
    let t = seed(&stack, Seed::default()).await;
    let customer = buyer();
    buy(&app, &t, &customer).await;
    (stack, app, t, customer)
}

/// The buyer's (newest) license of the seeded tenant, found as the portal finds it.
async fn license_of(
    stack: &common::Stack,
    t: &common::Seeded,
    buyer: &str,
) -> keystead::domain::License {
    stack
        .store
        .licenses_by_email(
            &TenantId::parse(&t.tenant_id).unwrap(),
            &Email::parse(buyer).unwrap(),
        )
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test]
async fn asking_for_a_link_answers_the_same_for_buyers_and_strangers() {
    let (stack, app, t, customer) = portal_with_buyer(settings()).await;
    let nobody = stranger();

    let page = get(&app, &format!("/portal/{}", t.tenant_id), None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<label for=\"email\""), "{}", page.body);

    let to_buyer = ask_for_link(&app, &t.tenant_id, &customer).await;
    let to_stranger = ask_for_link(&app, &t.tenant_id, &nobody).await;
    assert_eq!(to_buyer.status, 200);
    assert_eq!(to_buyer.status, to_stranger.status);
    assert_eq!(
        to_buyer.body, to_stranger.body,
        "byte-for-byte the same page"
    );
    let headers = |r: &common::Reply| {
        let mut h: Vec<(String, String)> = r.headers.clone();
        h.sort();
        h
    };
    assert_eq!(headers(&to_buyer), headers(&to_stranger));
    assert!(
        to_buyer
            .body
            .contains("If that address bought something here")
    );

    assert_eq!(signin_links(&customer).len(), 1, "the buyer gets one link");
    assert!(emails_to(&nobody).is_empty(), "a stranger gets nothing");
    // The link names the tenant's portal; only its hash is stored.
    let link = &signin_links(&customer)[0];
    assert!(link.starts_with(&format!("{BASE}/portal/{}/signin?token=", t.tenant_id)));
    let token = token_of(link);
    let events = common::events(&stack, &t.tenant_id).await;
    assert!(events.iter().all(|e| !format!("{e:?}").contains(&token)));
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    assert!(
        events
            .iter()
            .any(|e| common::s(e, "sk") == format!("SIGNIN#{hash}") && e.contains_key("ttl"))
    );

    // Letter case does not matter, as at checkout.
    ask_for_link(&app, &t.tenant_id, &customer.to_uppercase()).await;
    assert_eq!(signin_links(&customer).len(), 2);

    // A malformed address is told so (that says nothing about who bought).
    let bad = ask_for_link(&app, &t.tenant_id, "not-an-address").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("Enter the email address"));
    // An unknown tenant has no portal.
    assert_eq!(get(&app, "/portal/no-such-tenant", None).await.status, 404);
}

#[tokio::test]
async fn past_the_limits_the_answer_is_the_same_and_no_mail_goes_out() {
    let mut limits = settings();
    limits.per_tenant = 3;
    let (_stack, app, t, customer) = portal_with_buyer(limits).await;

    let first = ask_for_link(&app, &t.tenant_id, &customer).await;
    for _ in 0..3 {
        let again = ask_for_link(&app, &t.tenant_id, &customer).await;
        assert_eq!((again.status, &again.body), (first.status, &first.body));
    }
    assert_eq!(
        signin_links(&customer).len(),
        3,
        "three links per address per 15 minutes, then nothing"
    );

    // The tenant's own limit: 3 addresses mailed an hour. The three links above count once (an address counts
    // once an hour, however often it asks), so two more buyers get theirs and the third does not.
    let others: Vec<String> = (0..3).map(|_| buyer()).collect();
    for other in &others {
        buy(&app, &t, other).await;
    }
    for other in &others {
        let reply = ask_for_link(&app, &t.tenant_id, other).await;
        assert_eq!((reply.status, &reply.body), (first.status, &first.body));
    }
    let sent: usize = others.iter().map(|o| signin_links(o).len()).sum();
    assert_eq!(sent, 2, "the tenant's hourly limit stops the third");
}

/// The answer to a link request does the same work for a buyer and a stranger, request for request (issue 24): it
/// queues the request, and the lookup and the mail come after it. (The times are measured by `scripts/bench`,
/// BENCHMARKS.md's "Sign-in answers".)
#[tokio::test(flavor = "multi_thread")]
async fn the_answer_to_a_link_request_does_the_same_work_for_buyers_and_strangers() {
    let stack = stack().await;
    let faults = common::faults::Faults::new();
    let sdk = common::sdk().await;
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .interceptor(faults.clone())
            .build(),
    );
    let store = Arc::new(common::faulty_store(&faults).await);
    let app = common::portal::portal_app_over(store, sqs, settings()).await;
    let t = seed(&stack, Seed::default()).await;
    let customer = buyer();
    buy(&app, &t, &customer).await;
    let nobody = stranger();
    let link = |email: &str| {
        common::portal::request(
            "POST",
            &format!("/portal/{}/link", t.tenant_id),
            &[],
            &[("email", email)],
            None,
        )
    };

    faults.take_sent();
    let to_buyer = send(&app, &link(&customer)).await;
    let buyer_work = faults.take_sent();
    let to_stranger = send(&app, &link(&nobody)).await;
    let stranger_work = faults.take_sent();
    assert_eq!(
        (to_buyer.status, &to_buyer.body),
        (to_stranger.status, &to_stranger.body)
    );
    assert_eq!(
        buyer_work, stranger_work,
        "the same requests, in the same order"
    );
    assert_eq!(
        buyer_work.iter().filter(|op| *op == "SendMessage").count(),
        1,
        "queued: {buyer_work:?}"
    );
    assert!(
        !buyer_work.iter().any(|op| op == "SendEmail"),
        "nothing mailed before the answer: {buyer_work:?}"
    );
    assert!(
        signin_links(&customer).is_empty(),
        "the mail comes after the answer"
    );

    // The worker looks the addresses up and mails the buyer, not the stranger.
    assert_eq!(
        keystead::cli::signin_worker::mail_waiting(&app)
            .await
            .unwrap(),
        2
    );
    assert_eq!(signin_links(&customer).len(), 1);
    assert!(emails_to(&nobody).is_empty());
    let cookie = {
        let token = token_of(&signin_links(&customer)[0]);
        let reply = post(
            &app,
            &format!("/portal/{}/signin", t.tenant_id),
            &[("token", &token)],
            None,
        )
        .await;
        assert_eq!(reply.status, 303, "{}", reply.body);
        cookie_of(&reply)
    };
    let page = get(
        &app,
        &format!("/portal/{}/licenses", t.tenant_id),
        Some(&cookie),
    )
    .await;
    assert_eq!(
        page.status, 200,
        "the link mailed after the answer signs in: {}",
        page.body
    );
}

#[tokio::test]
async fn a_queued_sign_in_request_that_is_not_one_is_dropped_and_a_failed_mail_is_tried_again() {
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let t = seed(&stack, Seed::default()).await;
    let customer = buyer();
    buy(&app, &t, &customer).await;
    use keystead::app::sign_in::{LinkOutcome, mail_queued};
    for junk in [
        "",
        "{}",
        "not json",
        r#"{"t":"no-such-tenant","email":"a@example.com","base":"https://x"}"#,
    ] {
        assert_eq!(
            mail_queued(&app, junk).await.unwrap(),
            LinkOutcome::Dropped,
            "{junk}"
        );
    }
    let request =
        serde_json::json!({"t": t.tenant_id, "email": customer, "base": BASE}).to_string();
    // SES refuses the mail: an error, so SQS gives the message again...
    let faults = common::faults::Faults::new();
    let failing = {
        let sdk = common::sdk().await;
        let mailer = keystead::mail::SesMailer::from_config(
            aws_sdk_ses::config::Builder::from(&sdk).interceptor(faults.clone()),
        );
        let mut app = app.clone();
        app.mailer = Arc::new(mailer);
        app
    };
    faults.add("SendEmail", None, common::faults::Fault::Refuse, 1);
    assert!(mail_queued(&failing, &request).await.is_err());
    // ...and the next try mails it.
    assert_eq!(
        mail_queued(&app, &request).await.unwrap(),
        LinkOutcome::Sent
    );
    assert_eq!(signin_links(&customer).len(), 1);
}

#[tokio::test]
async fn one_caller_trying_many_addresses_is_stopped_before_any_lookup() {
    let mut limits = settings();
    limits.per_ip = 5;
    let (_stack, app, t, customer) = portal_with_buyer(limits).await;
    let from = |ip: &str, email: &str| {
        let mut request = request(
            "POST",
            &format!("/portal/{}/link", t.tenant_id),
            &[],
            &[("email", email)],
            None,
        );
        request.source_ip = ip.to_owned();
        request
    };
    // Five guesses from one address use up its budget...
    for _ in 0..5 {
        send(&app, &from("198.51.100.9", &stranger())).await;
    }
    // ...so its sixth request, for a real buyer, sends nothing and answers the same.
    let limited = send(&app, &from("198.51.100.9", &customer)).await;
    assert_eq!(limited.status, 200);
    keystead::cli::signin_worker::mail_waiting(&app)
        .await
        .unwrap();
    assert!(signin_links(&customer).is_empty());
    // The buyer, asking from elsewhere, gets the link.
    let own = send(&app, &from("192.0.2.44", &customer)).await;
    assert_eq!((own.status, &own.body), (limited.status, &limited.body));
    keystead::cli::signin_worker::mail_waiting(&app)
        .await
        .unwrap();
    assert_eq!(signin_links(&customer).len(), 1);
}

#[tokio::test]
async fn a_session_shows_only_the_licenses_of_its_own_spelling_of_the_address() {
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let t = seed(&stack, Seed::default()).await;
    let lower = buyer();
    let upper = lower.to_uppercase().replace("@EXAMPLE.COM", "@example.com");
    let lower_key = buy(&app, &t, &lower).await;
    let upper_key = buy(&app, &t, &upper).await;

    let cookie = sign_in(&app, &t.tenant_id, &lower).await;
    let page = get(
        &app,
        &format!("/portal/{}/licenses", t.tenant_id),
        Some(&cookie),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&lower_key), "its own license");
    assert!(!page.body.contains(&upper_key), "not another spelling's");
    let cookie = sign_in(&app, &t.tenant_id, &upper).await;
    let page = get(
        &app,
        &format!("/portal/{}/licenses", t.tenant_id),
        Some(&cookie),
    )
    .await;
    assert!(page.body.contains(&upper_key) && !page.body.contains(&lower_key));
}

#[tokio::test]
async fn signing_out_or_replacing_the_key_ends_every_copy_of_the_session() {
    let (stack, app, t, customer) = portal_with_buyer(settings()).await;
    let licenses = format!("/portal/{}/licenses", t.tenant_id);
    let signed_out = |reply: &common::Reply| {
        reply.status == 303
            && reply.header("location") == Some(&*format!("/portal/{}", t.tenant_id))
    };

    // A copy of the cookie (a shared computer, a stolen cookie) dies with the sign-out.
    let cookie = sign_in(&app, &t.tenant_id, &customer).await;
    let page = get(&app, &licenses, Some(&cookie)).await;
    assert_eq!(page.status, 200);
    let out = post(
        &app,
        &format!("/portal/{}/signout", t.tenant_id),
        &[("csrf", &csrf_of(&page.body))],
        Some(&cookie),
    )
    .await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert!(signed_out(&get(&app, &licenses, Some(&cookie)).await));

    // Two browsers signed in; replacing the key from one ends the other's session, and the one that replaced it
    // carries on with a new cookie.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mine = sign_in(&app, &t.tenant_id, &customer).await;
    let other = sign_in(&app, &t.tenant_id, &customer).await;
    let page = get(&app, &licenses, Some(&mine)).await;
    assert_eq!(page.status, 200, "signed in again after signing out");
    let license_id = license_of(&stack, &t, &customer).await.license_id;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let replaced = post(
        &app,
        &format!("/portal/{}/licenses/{license_id}/replace", t.tenant_id),
        &[("csrf", &csrf_of(&page.body)), ("confirm", "yes")],
        Some(&mine),
    )
    .await;
    assert_eq!(replaced.status, 303, "{}", replaced.body);
    let fresh = cookie_of(&replaced);
    assert!(signed_out(&get(&app, &licenses, Some(&other)).await));
    assert!(signed_out(&get(&app, &licenses, Some(&mine)).await));
    let after = get(&app, &licenses, Some(&fresh)).await;
    assert_eq!(after.status, 200, "{}", after.body);
}

#[tokio::test]
async fn one_address_gets_at_most_ten_portal_mails_a_day_whatever_asks_for_them() {
    let mut limits = settings();
    limits.per_address = 100;
    let (stack, app, t, customer) = portal_with_buyer(limits).await;
    let key_emails = emails_to(&customer).len();
    // Nine sign-in links, then the key sent again from the portal: ten portal mails.
    for _ in 0..9 {
        ask_for_link(&app, &t.tenant_id, &customer).await;
    }
    let cookie = sign_in(&app, &t.tenant_id, &customer).await;
    assert_eq!(emails_to(&customer).len(), key_emails + 10);
    let licenses = format!("/portal/{}/licenses", t.tenant_id);
    let page = get(&app, &licenses, Some(&cookie)).await;
    let license_id = license_of(&stack, &t, &customer).await.license_id;
    let sent = post(
        &app,
        &format!("/portal/{}/licenses/{license_id}/send-key", t.tenant_id),
        &[("csrf", &csrf_of(&page.body))],
        Some(&cookie),
    )
    .await;
    assert_eq!(
        sent.header("location"),
        Some(format!("{licenses}?done=refused").as_str()),
        "the day's portal mails are used up"
    );
    // The next link request answers the same and sends nothing.
    let reply = ask_for_link(&app, &t.tenant_id, &customer).await;
    assert_eq!(reply.status, 200);
    assert_eq!(emails_to(&customer).len(), key_emails + 10);
}

#[tokio::test]
async fn a_link_works_once_and_not_after_it_expired() {
    let (stack, app, t, customer) = portal_with_buyer(settings()).await;
    ask_for_link(&app, &t.tenant_id, &customer).await;
    let token = token_of(&signin_links(&customer)[0]);
    let signin = format!("/portal/{}/signin", t.tenant_id);

    // Opening the link shows a button (mail scanners that follow links use nothing up).
    let confirm = send(
        &app,
        &request("GET", &signin, &[("token", &token)], &[], None),
    )
    .await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Sign in") && confirm.body.contains(&token));

    let used = post(&app, &signin, &[("token", &token)], None).await;
    assert_eq!(used.status, 303);
    assert_eq!(
        used.header("location"),
        Some(format!("/portal/{}/licenses", t.tenant_id).as_str())
    );
    let set_cookie = used.header("set-cookie").unwrap();
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Max-Age=3600",
        &format!("Path=/portal/{}", t.tenant_id),
    ] {
        assert!(
            set_cookie.contains(attribute),
            "{attribute} in {set_cookie}"
        );
    }

    // Used once: the second use, and the link itself, say it expired, and set no cookie.
    let again = post(&app, &signin, &[("token", &token)], None).await;
    assert_eq!(again.status, 400);
    assert!(again.header("set-cookie").is_none());
    assert!(again.body.contains("This link has expired"));
    let reopened = send(
        &app,
        &request("GET", &signin, &[("token", &token)], &[], None),
    )
    .await;
    assert_eq!(reopened.status, 400);

    // A token past its 15 minutes is refused though DynamoDB has not deleted it yet.
    let tenant_id = TenantId::parse(&t.tenant_id).unwrap();
    let old_token = "an-old-token-that-expired-a-minute-ago";
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    stack
        .store
        .put_signin(
            &tenant_id,
            &hex::encode(Sha256::digest(old_token.as_bytes())),
            &Email::parse(&customer).unwrap(),
            now - 60,
        )
        .await
        .unwrap();
    let expired = post(&app, &signin, &[("token", old_token)], None).await;
    assert_eq!(expired.status, 400);
    assert!(expired.header("set-cookie").is_none());
    // A made-up token too.
    let made_up = post(&app, &signin, &[("token", "made-up")], None).await;
    assert_eq!(made_up.status, 400);
}

#[tokio::test]
async fn a_sign_in_posted_from_another_site_is_refused_and_the_link_still_works() {
    let (_stack, app, t, customer) = portal_with_buyer(settings()).await;
    ask_for_link(&app, &t.tenant_id, &customer).await;
    let token = token_of(&signin_links(&customer)[0]);
    let signin = format!("/portal/{}/signin", t.tenant_id);
    let posted_with = |headers: &[(&'static str, &str)]| {
        let mut request = request("POST", &signin, &[], &[("token", &token)], None);
        for (name, value) in headers {
            request.headers.push((name, (*value).to_owned()));
        }
        request
    };

    // An attacker's page posting their own link's token into the victim's browser (login CSRF).
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("origin", "https://attacker.example")],
        &[("origin", "null")],
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://portal.test"),
        ],
    ] {
        let refused = send(&app, &posted_with(headers)).await;
        assert_eq!(refused.status, 403, "{headers:?}");
        assert!(refused.header("set-cookie").is_none(), "{headers:?}");
        assert!(refused.body.contains("did not come from this site"));
    }

    // The link was not used up: from the portal's own page it signs in.
    let signed_in = send(
        &app,
        &posted_with(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://portal.test"),
        ]),
    )
    .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert!(signed_in.header("set-cookie").is_some());
}

#[tokio::test]
async fn a_forged_or_foreign_cookie_signs_in_no_one() {
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let t = seed(&stack, Seed::default()).await;
    let other = seed(&stack, Seed::default()).await;
    let customer = buyer();
    let key = buy(&app, &t, &customer).await;
    buy(&app, &other, &customer).await;
    let cookie = sign_in(&app, &t.tenant_id, &customer).await;
    let licenses = format!("/portal/{}/licenses", t.tenant_id);

    let page = get(&app, &licenses, Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&key) && page.body.contains("Show license key"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.starts_with("default-src 'none'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));

    let back = format!("/portal/{}", t.tenant_id);
    // No cookie, garbage, a payload naming someone else under the real tag, a tag from another key.
    let (name, value) = cookie.split_once('=').unwrap();
    let (payload, tag) = value.split_once('.').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let decoded = String::from_utf8(b64.decode(payload).unwrap()).unwrap();
    let mallory = decoded.replace(&customer, "mallory@example.com");
    let forged = format!("{name}={}.{tag}", b64.encode(mallory));
    let flipped_tag = format!("{name}={payload}.{}", b64.encode([0u8; 32]));
    for bad in [
        None,
        Some("keystead_session=garbage".to_owned()),
        Some(forged),
        Some(flipped_tag),
    ] {
        let reply = get(&app, &licenses, bad.as_deref()).await;
        assert_eq!(reply.status, 303, "{bad:?}: {}", reply.body);
        assert_eq!(reply.header("location"), Some(back.as_str()));
        assert!(!reply.body.contains(&key));
    }
    // The other tenant's session is no session here, though it is the same buyer.
    let foreign = sign_in(&app, &other.tenant_id, &customer).await;
    let reply = get(&app, &licenses, Some(&foreign)).await;
    assert_eq!(reply.status, 303);
}

#[tokio::test]
async fn actions_need_the_sessions_csrf_token() {
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let t = seed(&stack, Seed::default()).await;
    let customer = buyer();
    let key = buy(&app, &t, &customer).await;
    let cookie = sign_in(&app, &t.tenant_id, &customer).await;
    let page = get(
        &app,
        &format!("/portal/{}/licenses", t.tenant_id),
        Some(&cookie),
    )
    .await;
    let csrf = csrf_of(&page.body);
    let license_id = license_of(&stack, &t, &customer).await.license_id;
    let send_key = format!("/portal/{}/licenses/{license_id}/send-key", t.tenant_id);
    let key_mails = || {
        emails_to(&customer)
            .iter()
            .filter(|m| {
                m["subject"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("Your license key")
            })
            .count()
    };
    let before = key_mails();

    let missing = post(&app, &send_key, &[], Some(&cookie)).await;
    assert_eq!(missing.status, 403, "{}", missing.body);
    let wrong = post(&app, &send_key, &[("csrf", "AAAA")], Some(&cookie)).await;
    assert_eq!(wrong.status, 403);
    // Another session's token does not fit this one.
    let second = sign_in(&app, &t.tenant_id, &customer).await;
    let other_page = get(
        &app,
        &format!("/portal/{}/licenses", t.tenant_id),
        Some(&second),
    )
    .await;
    let stolen = post(
        &app,
        &send_key,
        &[("csrf", &csrf_of(&other_page.body))],
        Some(&cookie),
    )
    .await;
    assert_eq!(stolen.status, 403);
    // Replacing a key needs the token just the same: nothing changed.
    let replace = format!("/portal/{}/licenses/{license_id}/replace", t.tenant_id);
    let refused = post(&app, &replace, &[("confirm", "yes")], Some(&cookie)).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        api(&stack, &t.tenant_id, "validate", json!({"key": key}))
            .await
            .status,
        200
    );
    assert_eq!(key_mails(), before, "no mail without a valid token");

    let done = post(&app, &send_key, &[("csrf", &csrf)], Some(&cookie)).await;
    assert_eq!(done.status, 303);
    assert_eq!(
        done.header("location"),
        Some(format!("/portal/{}/licenses?done=key-sent", t.tenant_id).as_str())
    );
    assert_eq!(key_mails(), before + 1);
    // A license id that is not the buyer's is not found.
    let foreign = format!("/portal/{}/licenses/lic_someoneelse/send-key", t.tenant_id);
    assert_eq!(
        post(&app, &foreign, &[("csrf", &csrf)], Some(&cookie))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn freeing_a_seat_and_replacing_a_key_from_the_portal() {
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let t = seed(&stack, Seed::default()).await;
    let customer = buyer();
    let sale = sale_id();
    let reply = send(
        &app,
        &Ping::new(&t.tenant_id, Some(&t.token), sale_body(&sale, &customer)),
    )
    .await;
    let key = reply.json()["license"]["key"].as_str().unwrap().to_owned();
    for machine in ["laptop-1", "desktop-2"] {
        let r = api(
            &stack,
            &t.tenant_id,
            "activate",
            json!({"key": key, "machine_id": machine, "label": format!("Jane {machine}")}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let cookie = sign_in(&app, &t.tenant_id, &customer).await;
    let licenses = format!("/portal/{}/licenses", t.tenant_id);
    let page = get(&app, &licenses, Some(&cookie)).await;
    assert!(page.body.contains("Jane laptop-1") && page.body.contains("2 of 3 in use"));
    let csrf = csrf_of(&page.body);
    let license_id = license_of(&stack, &t, &customer).await.license_id;

    let freed = post(
        &app,
        &format!("/portal/{}/licenses/{license_id}/deactivate", t.tenant_id),
        &[("csrf", &csrf), ("machine_id", "desktop-2")],
        Some(&cookie),
    )
    .await;
    assert_eq!(freed.status, 303);
    let page = get(&app, freed.header("location").unwrap(), Some(&cookie)).await;
    assert!(page.body.contains("1 of 3 in use") && !page.body.contains("Jane desktop-2"));
    assert!(page.body.contains("The seat is free"));

    // Without ticking "I understand", nothing is replaced.
    let replace = format!("/portal/{}/licenses/{license_id}/replace", t.tenant_id);
    let unconfirmed = post(&app, &replace, &[("csrf", &csrf)], Some(&cookie)).await;
    assert_eq!(
        unconfirmed.header("location"),
        Some(format!("{licenses}?done=refused").as_str())
    );
    let replace_key = |cookie: String, csrf: String| {
        let (app, replace) = (&app, &replace);
        async move {
            post(
                app,
                replace,
                &[("csrf", &csrf), ("confirm", "yes")],
                Some(&cookie),
            )
            .await
        }
    };
    let replaced = replace_key(cookie.clone(), csrf.clone()).await;
    assert_eq!(
        replaced.header("location"),
        Some(format!("{licenses}?done=key-replaced").as_str())
    );
    // The replacement ended every session of the buyer; this browser carries on with a fresh one.
    let cookie = cookie_of(&replaced);

    // The old key fails at once; the new one has the same license and status, and every seat free: the machine
    // activates again with it.
    let old = api(&stack, &t.tenant_id, "validate", json!({"key": key})).await;
    assert_eq!(old.status, 404);
    let new_key = license_of(&stack, &t, &customer)
        .await
        .key
        .expose()
        .to_owned();
    assert_ne!(new_key, key);
    assert!(new_key.starts_with("ACME-"));
    let new = api(
        &stack,
        &t.tenant_id,
        "validate",
        json!({"key": new_key, "machine_id": "laptop-1"}),
    )
    .await;
    assert_eq!(new.status, 200, "{}", new.body);
    let v = new.json();
    assert_eq!(
        (
            v["valid"].clone(),
            v["activations"].clone(),
            v["activated"].clone()
        ),
        (json!(true), json!(0), json!(false))
    );
    let again = api(
        &stack,
        &t.tenant_id,
        "activate",
        json!({"key": new_key, "machine_id": "laptop-1"}),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["activations"], 1);
    // The new key was emailed.
    let mails = emails_to(&customer);
    assert!(
        mails
            .iter()
            .any(|m| m["body"].as_str().unwrap_or_default().contains(&new_key))
    );
    // History stays: a refund of the original sale still reaches the license under its new key.
    let refund = send(
        &app,
        &Ping::new(
            &t.tenant_id,
            Some(&t.token),
            common::sale_event("refund", &sale, &customer, true),
        ),
    )
    .await;
    assert_eq!(refund.status, 200, "{}", refund.body);
    assert_eq!(refund.json()["license_status"], "revoked");
    // A revoked license's key cannot be replaced.
    let page = get(&app, &licenses, Some(&cookie)).await;
    assert!(page.body.contains("Revoked") && !page.body.contains("Replace my key"));
    let refused = replace_key(cookie.clone(), csrf_of(&page.body)).await;
    assert_eq!(
        refused.header("location"),
        Some(format!("{licenses}?done=refused").as_str())
    );
}

#[tokio::test]
async fn downloads_redirect_to_s3_while_the_license_is_active() {
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let t = seed(&stack, Seed::default()).await;
    // The seller uploads the product's file with the CLI.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("MyApp 1.0.zip");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let doc = cli_support::ok_json(&[
        "product",
        "file",
        &t.tenant_id,
        "myapp",
        path.to_str().unwrap(),
    ]);
    let sha = hex::encode(Sha256::digest(&content));
    assert_eq!(doc["file"]["sha256"], json!(sha));
    assert_eq!(doc["file"]["name"], "MyApp_1.0.zip");
    assert_eq!(doc["file"]["size"], 300_000);

    let customer = buyer();
    let key = buy(&app, &t, &customer).await;
    // The key email carries the download link and the checksum.
    let mail = emails_to(&customer)
        .into_iter()
        .find(|m| {
            m["subject"]
                .as_str()
                .unwrap_or_default()
                .starts_with("Your license key")
        })
        .unwrap();
    let body = mail["body"].as_str().unwrap();
    assert!(body.contains(&sha), "{body}");
    let marker = format!("{BASE}/portal/{}/download/", t.tenant_id);
    let start = body.find(&marker).unwrap();
    let end = body[start..].find('"').unwrap() + start;
    let path = body[start + BASE.len()..end].to_owned();
    assert!(!path.contains(&key), "the link never carries the key");

    let reply = get(&app, &path, None).await;
    assert_eq!(reply.status, 302, "{}", reply.body);
    let location = reply.header("location").unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature=") && location.contains("X-Amz-Expires=300"));
    let mut whole = ureq::get(&location).call().unwrap();
    let bytes = whole
        .body_mut()
        .with_config()
        .limit(10_000_000)
        .read_to_vec()
        .unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sha);
    // Resumable: a Range request answers the rest.
    let mut rest = ureq::get(&location)
        .header("range", "bytes=100000-")
        .call()
        .unwrap();
    assert_eq!(rest.status().as_u16(), 206);
    let tail = rest.body_mut().read_to_vec().unwrap();
    assert_eq!(tail, content[100_000..]);

    // A link posted to a forum: the license's downloads for the day run out (one was used above).
    for n in 2..=keystead::app::download::DOWNLOADS_PER_DAY {
        assert_eq!(get(&app, &path, None).await.status, 302, "download {n}");
    }
    let too_many = get(&app, &path, None).await;
    assert_eq!(too_many.status, 429, "{}", too_many.body);
    assert!(too_many.body.contains("downloaded many times today"));
    assert!(too_many.header("location").is_none());

    // A tampered token is refused; a revoked license gets a page that says why.
    let tampered = format!("{}x", path);
    let refused = get(&app, &tampered, None).await;
    assert_eq!(refused.status, 403);
    cli_support::ok(&["license", "revoke", &t.tenant_id, &key]);
    let revoked = get(&app, &path, None).await;
    assert_eq!(revoked.status, 403);
    assert!(revoked.body.contains("revoked"), "{}", revoked.body);
    assert!(revoked.header("location").is_none());
}

#[tokio::test]
async fn licenses_are_found_by_email_through_the_index_and_old_ones_are_indexed_once() {
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let t = seed(&stack, Seed::default()).await;
    let customer = buyer();
    let key = buy(&app, &t, &customer).await;
    let tenant_id = TenantId::parse(&t.tenant_id).unwrap();
    // The sale wrote one pointer for the buyer's address.
    let items = common::license_table(&stack, &t.tenant_id).await;
    let pointers: Vec<_> = items
        .iter()
        .filter(|i| common::s(i, "sk").starts_with("EMAIL#"))
        .collect();
    assert_eq!(pointers.len(), 1);
    assert!(
        !format!("{:?}", pointers[0]).contains(&customer),
        "the address is hashed"
    );

    // A license from before the index: its pointer is missing until `keystead license index`.
    stack
        .ddb
        .delete_item()
        .table_name(&stack.tables.licenses)
        .key(
            "tenant_id",
            aws_sdk_dynamodb::types::AttributeValue::S(t.tenant_id.clone()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S(common::s(pointers[0], "sk").to_owned()),
        )
        .send()
        .await
        .unwrap();
    let email = Email::parse(&customer).unwrap();
    assert!(
        stack
            .store
            .licenses_by_email(&tenant_id, &email)
            .await
            .unwrap()
            .is_empty()
    );
    let doc = cli_support::ok_json(&["license", "index", &t.tenant_id]);
    assert_eq!(
        (doc["licenses"].clone(), doc["indexed"].clone()),
        (json!(1), json!(1))
    );
    let doc = cli_support::ok_json(&["license", "index", &t.tenant_id]);
    assert_eq!(doc["indexed"], 0, "running it again changes nothing");

    let listed = cli_support::ok_json(&[
        "license",
        "list",
        &t.tenant_id,
        "--email",
        &customer.to_uppercase(),
    ]);
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["licenses"][0]["key"], json!(key));

    // The seller's `license rotate` is the portal's replacement.
    let rotated = cli_support::ok_json(&["license", "rotate", &t.tenant_id, &key, "--no-email"]);
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["previous_key"], json!(key));
    assert_eq!(
        api(&stack, &t.tenant_id, "validate", json!({"key": key}))
            .await
            .status,
        404
    );
    assert_eq!(
        api(&stack, &t.tenant_id, "validate", json!({"key": new_key}))
            .await
            .status,
        200
    );
    let listed = cli_support::ok_json(&["license", "list", &t.tenant_id, "--email", &customer]);
    assert_eq!(listed["licenses"][0]["key"], json!(new_key));
    cli_support::ok(&["license", "revoke", &t.tenant_id, &new_key]);
    cli_support::fails(&["license", "rotate", &t.tenant_id, &new_key], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_replaced_while_machines_come_and_go_frees_every_seat() {
    let stack = stack().await;
    let app = portal_app(&stack, settings()).await;
    let t = seed(
        &stack,
        Seed {
            activation_limit: 20,
            ..Seed::default()
        },
    )
    .await;
    let customer = buyer();
    let key = buy(&app, &t, &customer).await;
    for machine in 0..3 {
        let r = api(
            &stack,
            &t.tenant_id,
            "activate",
            json!({"key": key, "machine_id": format!("m{machine}")}),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let tenant = stack
        .store
        .load_tenant(&TenantId::parse(&t.tenant_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let old_hash = license_of(&stack, &t, &customer).await.key_hash;

    // Machines activate with the old key while the key is replaced (a leaked key's holder filling seats): each
    // either got in before the replacement (and is freed by it) or is refused after it; none survives it.
    let activations = (3..11).map(|machine| {
        let (stack, tenant, key) = (&stack, &t.tenant_id, &key);
        async move {
            api(
                stack,
                tenant,
                "activate",
                json!({"key": key, "machine_id": format!("m{machine}")}),
            )
            .await
            .status
        }
    });
    let (statuses, rotated) = tokio::join!(
        futures_join_all(activations),
        keystead::app::replace_key::rotate(&stack.store, &tenant, &old_hash, true)
    );
    let new = rotated.unwrap();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 404),
        "{statuses:?}"
    );
    let items = common::license_table(&stack, &t.tenant_id).await;
    let under = |hash: &keystead::domain::KeyHash| {
        items
            .iter()
            .filter(|i| common::s(i, "sk").starts_with(&format!("ACTIVATION#{hash}#")))
            .count()
    };
    let license = license_of(&stack, &t, &customer).await;
    assert_eq!(license.key_hash, new.key_hash);
    assert_eq!(under(&old_hash), 0, "no machine left behind on the old key");
    assert_eq!(under(&new.key_hash), 0, "no machine carried to the new key");
    assert_eq!(license.activations, 0, "every seat is free");
    assert_eq!(
        items
            .iter()
            .filter(|i| common::s(i, "sk").starts_with("LICENSE#"))
            .count(),
        1
    );
}

/// Runs the futures concurrently and collects their outputs as they finish.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs = Vec::new();
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    // Poll all of them together: a simple join without another dependency.
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for slot in pending.iter_mut() {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => {
                        outputs.push(out);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
}
