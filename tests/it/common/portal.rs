//! Helpers for the buyer's portal: an application with the portal's settings and the local bucket, form posts
//! and page loads with cookies, and the sign-in link read from the mail moto's SES received.

use std::sync::Arc;

use keystead::app::App;
use keystead::portal::PortalSettings;

use super::{Ping, Reply, Stack, emails_to, send, unique};

/// Where links in the test's emails point (the in-process tests never follow them over the network).
pub const BASE: &str = "https://portal.test";

/// The application as `config::app_from_env` builds it, with `settings`, the local stack's bucket and a sign-in
/// queue of its own (in moto's SQS; `ask_for_link` works it, as the deployed function's SQS event would).
pub async fn portal_app(stack: &Stack, settings: PortalSettings) -> App {
    let sdk = super::sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    portal_app_over(Arc::new(stack.store.clone()), sqs, settings).await
}

/// The same over `store` and `sqs` (clients with faults or a record of their requests in them).
pub async fn portal_app_over(
    store: Arc<dyn keystead::storage::Backend>,
    sqs: aws_sdk_sqs::Client,
    settings: PortalSettings,
) -> App {
    let sdk = super::sdk().await;
    let url = super::create_queue(&sqs, &unique("signin")).await;
    App::with_portal(
        store,
        Arc::new(keystead::config::ses_mailer(&sdk)),
        Arc::new(keystead::config::kms_vault(&sdk).unwrap_or_else(|e| panic!("{e}"))),
        settings,
        keystead::config::files(&sdk),
    )
    .with_tenant_cache_ttl(std::time::Duration::ZERO)
    .with_link_queue(Arc::new(keystead::portal::SqsLinkQueue::new(sqs, url)))
}

pub fn settings() -> PortalSettings {
    PortalSettings {
        public_url: Some(BASE.to_owned()),
        per_address: 3,
        per_tenant: 100,
        per_ip: 20,
        answer_floor: std::time::Duration::from_millis(50),
    }
}

/// A request to the portal: `GET` (with `query`) or a form `POST`, with the session cookie if any.
pub fn request<'a>(
    method: &'a str,
    path: &str,
    query: &[(&'a str, &str)],
    form: &[(&str, &str)],
    cookie: Option<&str>,
) -> Ping<'a> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut ping = Ping::new("unused", None, body);
    ping.method = method;
    ping.path = path.to_owned();
    ping.query = query.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    ping.headers = vec![
        (
            "content-type",
            "application/x-www-form-urlencoded".to_owned(),
        ),
        ("host", "portal.test".to_owned()),
    ];
    if let Some(cookie) = cookie {
        ping.headers.push(("cookie", cookie.to_owned()));
    }
    ping
}

pub async fn get(app: &App, path: &str, cookie: Option<&str>) -> Reply {
    send(app, &request("GET", path, &[], &[], cookie)).await
}

pub async fn post(app: &App, path: &str, form: &[(&str, &str)], cookie: Option<&str>) -> Reply {
    send(app, &request("POST", path, &[], form, cookie)).await
}

/// Asks for a sign-in link, then works the sign-in queue (the mail, if any, comes after the answer).
pub async fn ask_for_link(app: &App, tenant: &str, email: &str) -> Reply {
    let reply = post(
        app,
        &format!("/portal/{tenant}/link"),
        &[("email", email)],
        None,
    )
    .await;
    keystead::cli::signin_worker::mail_waiting(app)
        .await
        .unwrap();
    reply
}

/// The sign-in links mailed to `to`, oldest first.
pub fn signin_links(to: &str) -> Vec<String> {
    emails_to(to)
        .iter()
        .filter(|m| m["subject"] == "Your sign-in link")
        .filter_map(|m| {
            let body = m["body"].as_str()?;
            let start = body.find("href=\"")? + 6;
            let end = body[start..].find('"')? + start;
            Some(body[start..end].replace("&amp;", "&"))
        })
        .collect()
}

/// The token of a sign-in link.
pub fn token_of(link: &str) -> String {
    link.split("token=").nth(1).unwrap_or_default().to_owned()
}

/// `name=value` of the session cookie a reply sets.
pub fn cookie_of(reply: &Reply) -> String {
    let set = reply
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no Set-Cookie in {} {}", reply.status, reply.body));
    set.split(';').next().unwrap_or_default().to_owned()
}

/// The CSRF token the page's forms carry.
pub fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page
        .find(marker)
        .map(|i| i + marker.len())
        .expect("a form with a CSRF token");
    let end = page[start..].find('"').expect("a closing quote") + start;
    page[start..end].to_owned()
}

/// Signs `buyer` in through the emailed link and returns the session cookie.
pub async fn sign_in(app: &App, tenant: &str, buyer: &str) -> String {
    let before = signin_links(buyer).len();
    let reply = ask_for_link(app, tenant, buyer).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let links = signin_links(buyer);
    assert_eq!(links.len(), before + 1, "one sign-in mail for {buyer}");
    let token = token_of(links.last().expect("a link"));
    let reply = post(
        app,
        &format!("/portal/{tenant}/signin"),
        &[("token", &token)],
        None,
    )
    .await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    cookie_of(&reply)
}

/// A stranger's address: never bought anything.
pub fn stranger() -> String {
    format!("{}@example.com", unique("nobody"))
}
