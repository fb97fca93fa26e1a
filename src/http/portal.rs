//! The portal's HTTP side: forms in, pages and redirects out. The headers every page carries (a strict
//! Content-Security-Policy, no caching, no referrer) and the session cookie's attributes are set here, once.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use base64::Engine;
use lambda_http::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, LOCATION, REFERRER_POLICY,
    SET_COOKIE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use lambda_http::{Body, Request, RequestExt, Response};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::App;
use crate::domain::{Email, LicenseStatus, Tenant, TenantId};
use crate::licensing::effective_status;
use crate::portal::pages::{self, Notice, Page};
use crate::portal::{self, DownloadGrant, GrantRefused, Session};
use crate::rotation::{self, RotateError};

const COOKIE_NAME: &str = "keystead_session";
/// How often a buyer may have a license's key emailed, and replace it, from the portal.
const SEND_KEY_PER_HOUR: u32 = 5;
const REPLACE_KEY_PER_DAY: u32 = 3;
const MAX_FORM_BYTES: usize = 8 * 1024;
const DEADLINE: Duration = Duration::from_millis(4_500);

/// `default-src 'none'`: no script, no frame, no plugin; the one inline stylesheet by its hash; forms post here.
static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash =
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(pages::STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
});

fn with_page_headers(
    mut builder: lambda_http::http::response::Builder,
) -> lambda_http::http::response::Builder {
    builder = builder
        .header(CONTENT_SECURITY_POLICY, CSP.as_str())
        .header(CACHE_CONTROL, "no-store")
        .header(REFERRER_POLICY, "no-referrer")
        .header(X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(X_FRAME_OPTIONS, "DENY");
    builder
}

fn html(page: Page) -> Response<Body> {
    with_page_headers(Response::builder())
        .status(page.status)
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .body(Body::from(page.html))
        .unwrap_or_default()
}

/// A `303 See Other` (a form's answer), optionally setting the session cookie.
fn see_other(location: &str, cookie: Option<String>) -> Response<Body> {
    let mut builder = with_page_headers(Response::builder())
        .status(303)
        .header(LOCATION, location);
    if let Some(cookie) = cookie {
        builder = builder.header(SET_COOKIE, cookie);
    }
    builder.body(Body::Empty).unwrap_or_default()
}

/// HttpOnly (no script reads it), Secure (HTTPS only), SameSite=Lax (other sites' forms do not carry it; the
/// email link's navigation does), scoped to the tenant's portal, one hour at most.
fn session_cookie(tenant: &TenantId, value: &str, max_age: i64) -> String {
    format!(
        "{COOKIE_NAME}={value}; Path=/portal/{tenant}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"
    )
}

fn unavailable(err: &dyn std::fmt::Display, tenant: &TenantId, what: &str) -> Response<Body> {
    tracing::error!(tenant = %tenant, error = %err, what, "portal failure");
    html(pages::problem(
        503,
        "Temporarily unavailable",
        "Something went wrong on our side. Please try again in a minute.",
    ))
}

fn not_found() -> Response<Body> {
    html(pages::problem(404, "Not found", "There is no such page."))
}

fn form(request: &Request) -> Option<HashMap<String, String>> {
    let body: &[u8] = request.body().as_ref();
    if body.len() > MAX_FORM_BYTES {
        return None;
    }
    Some(
        form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    )
}

fn query(request: &Request, name: &str) -> Option<String> {
    request.uri().query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    })
}

fn cookie(request: &Request) -> Option<String> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
}

/// The tenant a portal URL names, or the 404 page.
async fn tenant(app: &App, raw: &str) -> Result<std::sync::Arc<Tenant>, Response<Body>> {
    let Ok(tenant_id) = TenantId::parse(raw) else {
        return Err(not_found());
    };
    match app.tenants.tenant(app.store.as_ref(), &tenant_id).await {
        Ok(Some(tenant)) => Ok(tenant),
        Ok(None) => Err(not_found()),
        Err(err) => Err(unavailable(&err, &tenant_id, "tenant")),
    }
}

/// Remembers the API's domain from API Gateway's own request context (links in emails point there).
pub fn saw(app: &App, request: &Request) {
    if let Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) =
        request.request_context_ref()
        && let Some(domain) = context.domain_name.as_deref()
    {
        app.portal.saw_domain(domain);
    }
}

async fn within<F>(tenant: &TenantId, what: &str, work: F) -> Response<Body>
where
    F: std::future::Future<Output = Response<Body>>,
{
    match tokio::time::timeout(DEADLINE, work).await {
        Ok(response) => response,
        Err(_) => unavailable(&"deadline exceeded", tenant, what),
    }
}

/// `GET /portal/{tenant_id}`.
pub async fn signin_page(app: &App, raw_tenant: &str) -> Response<Body> {
    match tenant(app, raw_tenant).await {
        Ok(tenant) => html(pages::signin(&tenant.tenant_id, None)),
        Err(response) => response,
    }
}

/// `POST /portal/{tenant_id}/link`: the same answer whether or not the address bought anything.
pub async fn request_link(app: &App, raw_tenant: &str, request: &Request) -> Response<Body> {
    let started = Instant::now();
    let tenant = match tenant(app, raw_tenant).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let tenant_id = &tenant.tenant_id;
    let email = form(request)
        .and_then(|f| f.get("email").cloned())
        .and_then(|raw| Email::parse(&raw).ok());
    let Some(email) = email else {
        return html(pages::signin(
            tenant_id,
            Some("Enter the email address you bought with, like name@example.com."),
        ));
    };
    let outcome = tokio::time::timeout(
        DEADLINE,
        portal::request_link(
            &app.portal,
            app.store.as_ref(),
            app.mailer.as_ref(),
            &tenant,
            &email,
        ),
    )
    .await;
    let outcome = match outcome {
        Ok(Ok(outcome)) => outcome.as_str(),
        // A failure answers like a success: an error only some addresses could cause would tell who bought.
        Ok(Err(err)) => {
            tracing::error!(tenant = %tenant_id, error = %err, "sign-in link failed");
            "failed"
        }
        Err(_) => "deadline",
    };
    tracing::info!(tenant = %tenant_id, to = %email.masked(), outcome, "portal sign-in link");
    let floor = app.portal.settings.answer_floor;
    if let Some(rest) = floor.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    html(pages::link_sent(tenant_id))
}

/// `GET /portal/{tenant_id}/signin?token=…`: a button that signs in, while the link still works.
pub async fn confirm_signin(app: &App, raw_tenant: &str, request: &Request) -> Response<Body> {
    let tenant = match tenant(app, raw_tenant).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let token = query(request, "token").unwrap_or_default();
    match portal::link_usable(app.store.as_ref(), &tenant.tenant_id, &token).await {
        Ok(true) => html(pages::confirm_signin(&tenant.tenant_id, &token)),
        Ok(false) => html(pages::link_invalid(&tenant.tenant_id)),
        Err(err) => unavailable(&err, &tenant.tenant_id, "sign-in link"),
    }
}

/// `POST /portal/{tenant_id}/signin`: uses the token, sets the session cookie.
pub async fn sign_in(app: &App, raw_tenant: &str, request: &Request) -> Response<Body> {
    let tenant = match tenant(app, raw_tenant).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let tenant_id = tenant.tenant_id.clone();
    let token = form(request)
        .and_then(|f| f.get("token").cloned())
        .unwrap_or_default();
    within(&tenant_id, "sign in", async {
        let session = match portal::sign_in(app.store.as_ref(), &tenant_id, &token).await {
            Ok(Some(session)) => session,
            Ok(None) => {
                tracing::info!(tenant = %tenant_id, outcome = "invalid_link", "portal sign-in");
                return html(pages::link_invalid(&tenant_id));
            }
            Err(err) => return unavailable(&err, &tenant_id, "sign in"),
        };
        let key = match app.portal.keys.for_tenant(app.store.as_ref(), &tenant_id).await {
            Ok(key) => key,
            Err(err) => return unavailable(&err, &tenant_id, "portal key"),
        };
        tracing::info!(tenant = %tenant_id, to = %session.email.masked(), outcome = "signed_in", "portal sign-in");
        let cookie = session_cookie(
            &tenant_id,
            &session.cookie_value(&key, &tenant_id),
            Session::LIFETIME_SECONDS,
        );
        see_other(&format!("/portal/{tenant_id}/licenses"), Some(cookie))
    })
    .await
}

/// The signed-in buyer and the tenant's MAC key, or the answer to give instead: back to the sign-in page.
async fn session(
    app: &App,
    tenant: &TenantId,
    request: &Request,
) -> Result<(Session, std::sync::Arc<portal::MacKey>), Response<Body>> {
    let back = || see_other(&format!("/portal/{tenant}"), None);
    let Some(value) = cookie(request) else {
        return Err(back());
    };
    let key = app
        .portal
        .keys
        .for_tenant(app.store.as_ref(), tenant)
        .await
        .map_err(|err| unavailable(&err, tenant, "portal key"))?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    match Session::from_cookie(&value, &key, tenant, now) {
        Some(session) => Ok((session, key)),
        None => {
            tracing::info!(tenant = %tenant, outcome = "bad_session", "portal");
            Err(back())
        }
    }
}

/// `GET /portal/{tenant_id}/licenses`.
pub async fn licenses(app: &App, raw_tenant: &str, request: &Request) -> Response<Body> {
    let tenant = match tenant(app, raw_tenant).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let tenant_id = &tenant.tenant_id;
    within(tenant_id, "licenses", async {
        let (session, key) = match session(app, tenant_id, request).await {
            Ok(found) => found,
            Err(response) => return response,
        };
        match portal::buyer_licenses(&app.portal, app.store.as_ref(), &tenant, &session.email).await
        {
            Ok(views) => html(pages::licenses(
                tenant_id,
                &session.email,
                &views,
                &session.csrf_token(&key, tenant_id),
                query(request, "done").as_deref().and_then(Notice::parse),
            )),
            Err(err) => unavailable(&err, tenant_id, "licenses"),
        }
    })
    .await
}

fn forbidden_form() -> Response<Body> {
    html(pages::problem(
        403,
        "Form expired",
        "This form has expired or did not come from this page. Go back, reload the page and try again.",
    ))
}

/// `POST /portal/{tenant_id}/licenses/{license_id}/{send-key|deactivate|replace}`.
pub async fn act(
    app: &App,
    raw_tenant: &str,
    license_id: &str,
    action: &str,
    request: &Request,
) -> Response<Body> {
    let tenant = match tenant(app, raw_tenant).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let tenant_id = &tenant.tenant_id;
    within(tenant_id, action, async {
        let (session, key) = match session(app, tenant_id, request).await {
            Ok(found) => found,
            Err(response) => return response,
        };
        let form = form(request).unwrap_or_default();
        let csrf = form.get("csrf").map(String::as_str).unwrap_or_default();
        if !session.csrf_matches(&key, tenant_id, csrf) {
            tracing::warn!(tenant = %tenant_id, action, outcome = "csrf_refused", "portal action");
            return forbidden_form();
        }
        let license = match portal::buyer_license(app.store.as_ref(), &tenant, &session.email, license_id).await {
            Ok(Some(license)) => license,
            Ok(None) => return not_found(),
            Err(err) => return unavailable(&err, tenant_id, action),
        };
        let notice = match perform(app, &tenant, &license, action, &form).await {
            Ok(notice) => notice,
            Err(response) => return response,
        };
        tracing::info!(tenant = %tenant_id, license = %license.license_id, action, outcome = notice.code(), "portal action");
        see_other(
            &format!("/portal/{tenant_id}/licenses?done={}", notice.code()),
            None,
        )
    })
    .await
}

async fn perform(
    app: &App,
    tenant: &Tenant,
    license: &crate::domain::License,
    action: &str,
    form: &HashMap<String, String>,
) -> Result<Notice, Response<Body>> {
    let store = app.store.as_ref();
    let tenant_id = &tenant.tenant_id;
    // Every action that sends mail is rate-limited per license, so a signed-in buyer cannot drain the account's
    // SES quota (shared by every tenant and every sale's key email).
    let mail_allowed = |kind: &'static str, limit: u32, window: i64| {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let slot = now / window;
        let counter = format!("{kind}#{}#{slot}", license.license_id);
        async move {
            store
                .count_use(tenant_id, &counter, limit, (slot + 2) * window)
                .await
        }
    };
    match action {
        "send-key" => {
            if license.status == LicenseStatus::Revoked {
                return Ok(Notice::Refused);
            }
            match mail_allowed("send", SEND_KEY_PER_HOUR, 3600).await {
                Ok(true) => {}
                Ok(false) => return Ok(Notice::Refused),
                Err(err) => return Err(unavailable(&err, tenant_id, "send key")),
            }
            Ok(
                match crate::sale::deliver(store, app.mailer.as_ref(), tenant, license).await {
                    Ok(_) => Notice::KeySent,
                    Err(_) => Notice::NotSent,
                },
            )
        }
        "deactivate" => {
            let machine = form
                .get("machine_id")
                .map(String::as_str)
                .unwrap_or_default();
            if machine.is_empty() {
                return Ok(Notice::Refused);
            }
            match store
                .deactivate(tenant_id, &license.key_hash, machine)
                .await
            {
                Ok(true) => Ok(Notice::SeatFreed),
                Ok(false) => Ok(Notice::SeatAlreadyFree),
                Err(err) => Err(unavailable(&err, tenant_id, "deactivate")),
            }
        }
        _ => {
            if form.get("confirm").map(String::as_str) != Some("yes") {
                return Ok(Notice::Refused);
            }
            match mail_allowed("replace", REPLACE_KEY_PER_DAY, 24 * 3600).await {
                Ok(true) => {}
                Ok(false) => return Ok(Notice::Refused),
                Err(err) => return Err(unavailable(&err, tenant_id, "replace key")),
            }
            match rotation::rotate(store, tenant, &license.key_hash, true).await {
                Ok(new) => Ok(
                    match crate::sale::deliver(store, app.mailer.as_ref(), tenant, &new).await {
                        Ok(_) => Notice::KeyReplaced,
                        Err(_) => Notice::KeyReplacedNotSent,
                    },
                ),
                Err(
                    RotateError::Revoked | RotateError::TooManyMachines(_) | RotateError::NotFound,
                ) => Ok(Notice::Refused),
                Err(err) => Err(unavailable(&err, tenant_id, "replace key")),
            }
        }
    }
}

/// `POST /portal/{tenant_id}/signout`.
pub async fn sign_out(app: &App, raw_tenant: &str, request: &Request) -> Response<Body> {
    let tenant = match tenant(app, raw_tenant).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let tenant_id = &tenant.tenant_id;
    let (session, key) = match session(app, tenant_id, request).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let csrf = form(request)
        .and_then(|f| f.get("csrf").cloned())
        .unwrap_or_default();
    if !session.csrf_matches(&key, tenant_id, &csrf) {
        return forbidden_form();
    }
    see_other(
        &format!("/portal/{tenant_id}"),
        Some(session_cookie(tenant_id, "", 0)),
    )
}

/// `GET /portal/{tenant_id}/download/{token}`: `302` to a short-lived presigned S3 URL while the license is
/// active; otherwise a page saying why.
pub async fn download(app: &App, raw_tenant: &str, token: &str) -> Response<Body> {
    let tenant = match tenant(app, raw_tenant).await {
        Ok(tenant) => tenant,
        Err(response) => return response,
    };
    let tenant_id = &tenant.tenant_id;
    within(tenant_id, "download", async {
        let refused = |status: u16, outcome: &str, reason: &str| {
            tracing::info!(tenant = %tenant_id, outcome, "download");
            html(pages::download_refused(tenant_id, status, reason))
        };
        let key = match app.portal.keys.for_tenant(app.store.as_ref(), tenant_id).await {
            Ok(key) => key,
            Err(err) => return unavailable(&err, tenant_id, "portal key"),
        };
        let now = OffsetDateTime::now_utc();
        let grant = match DownloadGrant::from_token(token, &key, tenant_id, now.unix_timestamp()) {
            Ok(grant) => grant,
            Err(GrantRefused::Invalid) => {
                return refused(403, "invalid_link", "This download link is not valid.");
            }
            Err(GrantRefused::Expired) => {
                return refused(
                    403,
                    "expired_link",
                    "This download link has expired. Sign in to your licenses for a fresh one.",
                );
            }
        };
        let license = match app.store.get_license(tenant_id, &grant.key_hash).await {
            Ok(Some(license)) if license.product_id == grant.product_id => license,
            Ok(_) => {
                return refused(
                    404,
                    "no_license",
                    "This link belongs to a key that was replaced, or a license that no longer exists. \
                     Use the link in your newest key email, or sign in to your licenses.",
                );
            }
            Err(err) => return unavailable(&err, tenant_id, "download"),
        };
        let reason = match effective_status(&license, now) {
            LicenseStatus::Active => None,
            LicenseStatus::Revoked => Some("This license was revoked, so its download is no longer available."),
            LicenseStatus::Suspended => Some(
                "This license is suspended while a payment dispute is open, so its download is unavailable for now.",
            ),
            LicenseStatus::Expired => Some("This license has expired. Renew it to download the product again."),
        };
        if let Some(reason) = reason {
            return refused(403, "not_active", reason);
        }
        let Some(file) = portal::product_file(&tenant, &license) else {
            return refused(404, "no_file", "This product has no file to download.");
        };
        match app.portal.presign(file).await {
            Ok(url) => {
                tracing::info!(tenant = %tenant_id, license = %license.license_id, outcome = "redirected", "download");
                with_page_headers(Response::builder())
                    .status(302)
                    .header(LOCATION, url)
                    .body(Body::Empty)
                    .unwrap_or_default()
            }
            Err(err) => unavailable(&err, tenant_id, "presign"),
        }
    })
    .await
}
