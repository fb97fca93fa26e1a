//! The portal's HTTP side: forms in, pages and redirects out; the rules are in `app::sign_in`,
//! `app::buyer_licenses` and `app::download`. The headers every page carries (a strict Content-Security-Policy,
//! no caching, no referrer) and the session cookie's attributes are set here, once.

use std::sync::{Arc, LazyLock};

use axum::extract::{FromRequestParts, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY, SET_COOKIE,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::extract::{Bounded, Caller, Query, Segments, TooLarge, cookie};
use crate::app::App;
use crate::app::buyer_licenses::{self, BuyerAction};
use crate::app::download::{self, DownloadRefused, Granted};
use crate::app::sign_in;
use crate::domain::{Email, LicenseStatus, Tenant, TenantId};
use crate::portal::pages::{self, Notice, Page};
use crate::portal::{MacKey, Session};

const COOKIE_NAME: &str = "keystead_session";
const MAX_FORM_BYTES: usize = 8 * 1024;

/// Everything a portal page refuses or fails with; the only place those pages are chosen.
#[derive(Debug)]
pub enum PageError {
    NotFound,
    /// The form's CSRF token is missing or not this session's.
    FormExpired,
    /// A sign-in posted from another site (login CSRF: signing the victim into the attacker's account).
    CrossSite,
    /// No session, or one that is not valid: back to the sign-in page.
    SignedOut(TenantId),
    /// Ours or AWS's: logged, and a page that says to try again.
    Failed {
        tenant: TenantId,
        what: &'static str,
        error: String,
    },
}

impl PageError {
    fn failed(tenant: &TenantId, what: &'static str, error: impl std::fmt::Display) -> Self {
        Self::Failed {
            tenant: tenant.clone(),
            what,
            error: error.to_string(),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => html(pages::problem(404, "Not found", "There is no such page.")),
            Self::FormExpired => html(pages::problem(
                403,
                "Form expired",
                "This form has expired or did not come from this page. Go back, reload the page and try again.",
            )),
            Self::CrossSite => html(pages::problem(
                403,
                "Sign in from the link",
                "This sign-in did not come from this site. Open the link in your email and press Sign in there.",
            )),
            Self::SignedOut(tenant) => see_other(&format!("/portal/{tenant}"), None),
            Self::Failed {
                tenant,
                what,
                error,
            } => {
                tracing::error!(tenant = %tenant, error, what, "portal failure");
                unavailable_page()
            }
        }
    }
}

fn unavailable_page() -> Response {
    html(pages::problem(
        503,
        "Temporarily unavailable",
        "Something went wrong on our side. Please try again in a minute.",
    ))
}

/// What the deadline answers on a page: the same page as any failure of ours.
pub fn on_timeout(_tenant: &str) -> Response {
    unavailable_page()
}

/// What the deadline answers to a sign-in request: what every sign-in request is answered, so that a slow
/// answer tells no more than a fast one.
pub fn on_link_timeout(tenant: &str) -> Response {
    match TenantId::parse(tenant) {
        Ok(tenant) => html(pages::link_sent(&tenant)),
        Err(_) => PageError::NotFound.into_response(),
    }
}

/// `default-src 'none'`: no script, no frame, no plugin; the one inline stylesheet by its hash; forms post here.
static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash =
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(pages::STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
});

/// The headers every portal answer carries.
fn page_headers() -> [(HeaderName, String); 5] {
    [
        (CONTENT_SECURITY_POLICY, CSP.clone()),
        (CACHE_CONTROL, "no-store".to_owned()),
        (REFERRER_POLICY, "no-referrer".to_owned()),
        (X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (X_FRAME_OPTIONS, "DENY".to_owned()),
    ]
}

fn html(page: Page) -> Response {
    let status = StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        page_headers(),
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        page.html,
    )
        .into_response()
}

/// A redirect (`303 See Other` answers a form, `302 Found` sends to a download), optionally setting the
/// session cookie.
fn redirect(status: StatusCode, location: &str, cookie: Option<String>) -> Response {
    let mut response = (status, page_headers(), [(LOCATION, location.to_owned())]).into_response();
    if let Some(cookie) = cookie
        && let Ok(value) = cookie.parse()
    {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

fn see_other(location: &str, cookie: Option<String>) -> Response {
    redirect(StatusCode::SEE_OTHER, location, cookie)
}

/// HttpOnly (no script reads it), Secure (HTTPS only), SameSite=Lax (other sites' forms do not carry it; the
/// email link's navigation does), scoped to the tenant's portal, one hour at most.
fn session_cookie(tenant: &TenantId, value: &str, max_age: i64) -> String {
    format!(
        "{COOKIE_NAME}={value}; Path=/portal/{tenant}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"
    )
}

/// The tenant id a portal URL names, or the 404 page.
async fn tenant_of(parts: &mut Parts, app: &App) -> Result<TenantId, PageError> {
    let path = Segments::from_request_parts(parts, app)
        .await
        .unwrap_or_default();
    TenantId::parse(path.tenant()).map_err(|_| PageError::NotFound)
}

/// The tenant a portal URL names.
pub struct PortalTenant(Arc<Tenant>);

impl FromRequestParts<App> for PortalTenant {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, PageError> {
        let tenant_id = tenant_of(parts, app).await?;
        match app.tenants.tenant(app.store.as_ref(), &tenant_id).await {
            Ok(Some(tenant)) => Ok(Self(tenant)),
            Ok(None) => Err(PageError::NotFound),
            Err(err) => Err(PageError::failed(&tenant_id, "tenant", err)),
        }
    }
}

/// The signed-in buyer and the tenant's MAC key; without a valid session, back to the sign-in page.
pub struct SignedIn {
    session: Session,
    key: Arc<MacKey>,
    tenant_id: TenantId,
}

impl SignedIn {
    fn csrf_matches(&self, form: &PortalForm) -> bool {
        let csrf = form.field("csrf").unwrap_or_default();
        self.session.csrf_matches(&self.key, &self.tenant_id, &csrf)
    }
}

impl FromRequestParts<App> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, PageError> {
        let tenant_id = tenant_of(parts, app).await?;
        let Some(value) = cookie(parts, COOKIE_NAME) else {
            return Err(PageError::SignedOut(tenant_id));
        };
        let key = app
            .portal
            .keys
            .for_tenant(app.store.as_ref(), &tenant_id)
            .await
            .map_err(|err| PageError::failed(&tenant_id, "portal key", err))?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let Some(session) = Session::from_cookie(&value, &key, &tenant_id, now) else {
            tracing::info!(tenant = %tenant_id, outcome = "bad_session", "portal");
            return Err(PageError::SignedOut(tenant_id));
        };
        let current = sign_in::still_current(app.store.as_ref(), &tenant_id, &session)
            .await
            .map_err(|err| PageError::failed(&tenant_id, "session", err))?;
        if !current {
            tracing::info!(tenant = %tenant_id, outcome = "revoked_session", "portal");
            return Err(PageError::SignedOut(tenant_id));
        }
        Ok(Self {
            session,
            key,
            tenant_id,
        })
    }
}

/// A portal form, at most `MAX_FORM_BYTES`; a longer one reads as empty (every field missing).
pub struct PortalForm(Option<Bounded<PageError, MAX_FORM_BYTES>>);

impl From<TooLarge> for PageError {
    fn from(_: TooLarge) -> Self {
        Self::NotFound
    }
}

impl PortalForm {
    fn field(&self, name: &str) -> Option<String> {
        self.0.as_ref().and_then(|body| body.form_field(name))
    }
}

impl axum::extract::FromRequest<App> for PortalForm {
    type Rejection = std::convert::Infallible;

    async fn from_request(
        request: axum::extract::Request,
        app: &App,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(Bounded::from_request(request, app).await.ok()))
    }
}

/// `GET /portal/{tenant_id}`.
pub async fn signin_page(PortalTenant(tenant): PortalTenant) -> Response {
    html(pages::signin(&tenant.tenant_id, None))
}

/// `POST /portal/{tenant_id}/link`: the same answer whether or not the address bought anything, after the same
/// work (the request is queued; the lookup and the mail come after the answer) and the router's answer floor.
pub async fn request_link(
    State(app): State<App>,
    PortalTenant(tenant): PortalTenant,
    caller: Caller,
    form: PortalForm,
) -> Response {
    let tenant_id = &tenant.tenant_id;
    let Some(email) = form.field("email").and_then(|raw| Email::parse(&raw).ok()) else {
        return html(pages::signin(
            tenant_id,
            Some("Enter the email address you bought with, like name@example.com."),
        ));
    };
    let outcome = match sign_in::request_link(
        &app.portal,
        app.store.as_ref(),
        app.mailer.as_ref(),
        app.link_queue.as_deref(),
        &tenant,
        &email,
        caller.0.as_deref(),
    )
    .await
    {
        Ok(outcome) => outcome.as_str(),
        // A failure answers like a success: an error only some addresses could cause would tell who bought.
        Err(err) => {
            tracing::error!(tenant = %tenant_id, error = %err, "sign-in link failed");
            "failed"
        }
    };
    tracing::info!(tenant = %tenant_id, to = %email.masked(), outcome, "portal sign-in link");
    html(pages::link_sent(tenant_id))
}

/// `GET /portal/{tenant_id}/signin?token=…`: a button that signs in, while the link still works.
pub async fn confirm_signin(
    State(app): State<App>,
    PortalTenant(tenant): PortalTenant,
    query: Query,
) -> Result<Response, PageError> {
    let tenant_id = &tenant.tenant_id;
    let token = query.get("token").unwrap_or_default();
    let usable = sign_in::link_usable(app.store.as_ref(), tenant_id, &token)
        .await
        .map_err(|err| PageError::failed(tenant_id, "sign-in link", err))?;
    Ok(html(if usable {
        pages::confirm_signin(tenant_id, &token)
    } else {
        pages::link_invalid(tenant_id)
    }))
}

/// Whether the browser says the request came from another site: `Sec-Fetch-Site: cross-site` (every current
/// browser sends it), or else an `Origin` that is not this host. A request with neither (an older browser, a
/// script) is taken: the link's token is what authenticates it.
fn from_another_site(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return site.eq_ignore_ascii_case("cross-site");
    }
    match (header("origin"), header("host")) {
        (None, _) => false,
        (Some(origin), Some(host)) => {
            let origin_host = origin
                .split_once("://")
                .map_or("", |(_, rest)| rest.trim_end_matches('/'));
            !origin_host.eq_ignore_ascii_case(host)
        }
        (Some(_), None) => true,
    }
}

/// `POST /portal/{tenant_id}/signin`: uses the token, sets the session cookie.
pub async fn sign_in(
    State(app): State<App>,
    PortalTenant(tenant): PortalTenant,
    headers: HeaderMap,
    form: PortalForm,
) -> Result<Response, PageError> {
    let tenant_id = &tenant.tenant_id;
    if from_another_site(&headers) {
        tracing::info!(tenant = %tenant_id, outcome = "cross_site", "portal sign-in");
        return Err(PageError::CrossSite);
    }
    let token = form.field("token").unwrap_or_default();
    let Some(session) = sign_in::sign_in(app.store.as_ref(), tenant_id, &token)
        .await
        .map_err(|err| PageError::failed(tenant_id, "sign in", err))?
    else {
        tracing::info!(tenant = %tenant_id, outcome = "invalid_link", "portal sign-in");
        return Ok(html(pages::link_invalid(tenant_id)));
    };
    let key = app
        .portal
        .keys
        .for_tenant(app.store.as_ref(), tenant_id)
        .await
        .map_err(|err| PageError::failed(tenant_id, "portal key", err))?;
    tracing::info!(tenant = %tenant_id, to = %session.email.masked(), outcome = "signed_in", "portal sign-in");
    let cookie = session_cookie(
        tenant_id,
        &session.cookie_value(&key, tenant_id),
        Session::LIFETIME_SECONDS,
    );
    Ok(see_other(
        &format!("/portal/{tenant_id}/licenses"),
        Some(cookie),
    ))
}

/// `GET /portal/{tenant_id}/licenses`.
pub async fn licenses(
    State(app): State<App>,
    PortalTenant(tenant): PortalTenant,
    signed_in: SignedIn,
    query: Query,
) -> Result<Response, PageError> {
    let tenant_id = &tenant.tenant_id;
    let email = &signed_in.session.email;
    let views = buyer_licenses::buyer_licenses(&app.portal, app.store.as_ref(), &tenant, email)
        .await
        .map_err(|err| PageError::failed(tenant_id, "licenses", err))?;
    Ok(html(pages::licenses(
        tenant_id,
        email,
        &views,
        &signed_in.session.csrf_token(&signed_in.key, tenant_id),
        query.get("done").as_deref().and_then(Notice::parse),
    )))
}

/// `POST /portal/{tenant_id}/licenses/{license_id}/{send-key|deactivate|replace}`: the action is the path's last
/// segment (the router lists the three routes).
pub async fn act(
    State(app): State<App>,
    PortalTenant(tenant): PortalTenant,
    path: Segments,
    uri: Uri,
    signed_in: SignedIn,
    form: PortalForm,
) -> Result<Response, PageError> {
    let tenant_id = &tenant.tenant_id;
    let machine_id = form.field("machine_id").unwrap_or_default();
    let (name, action) = match uri.path().rsplit('/').next() {
        Some("send-key") => ("send-key", BuyerAction::SendKey),
        Some("deactivate") => (
            "deactivate",
            BuyerAction::Deactivate {
                machine_id: &machine_id,
            },
        ),
        Some("replace") => (
            "replace",
            BuyerAction::Replace {
                confirmed: form.field("confirm").as_deref() == Some("yes"),
            },
        ),
        _ => return Err(PageError::NotFound),
    };
    if !signed_in.csrf_matches(&form) {
        tracing::warn!(tenant = %tenant_id, action = name, outcome = "csrf_refused", "portal action");
        return Err(PageError::FormExpired);
    }
    let email = &signed_in.session.email;
    let license =
        buyer_licenses::buyer_license(app.store.as_ref(), &tenant, email, path.get("license_id"))
            .await
            .map_err(|err| PageError::failed(tenant_id, name, err))?
            .ok_or(PageError::NotFound)?;
    let notice = buyer_licenses::act(
        app.store.as_ref(),
        app.mailer.as_ref(),
        &tenant,
        &license,
        action,
    )
    .await
    .map_err(|err| PageError::failed(tenant_id, name, err))?;
    tracing::info!(tenant = %tenant_id, license = %license.license_id, action = name, outcome = notice.code(), "portal action");
    // Replacing the key signed the buyer out everywhere; this browser, which replaced it, gets a new session.
    let cookie = match notice {
        Notice::KeyReplaced | Notice::KeyReplacedNotSent => {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let session = Session::new(email.clone(), now)
                .map_err(|err| PageError::failed(tenant_id, name, err))?;
            Some(session_cookie(
                tenant_id,
                &session.cookie_value(&signed_in.key, tenant_id),
                Session::LIFETIME_SECONDS,
            ))
        }
        _ => None,
    };
    Ok(see_other(
        &format!("/portal/{tenant_id}/licenses?done={}", notice.code()),
        cookie,
    ))
}

/// `POST /portal/{tenant_id}/signout`.
pub async fn sign_out(
    State(app): State<App>,
    _tenant: PortalTenant,
    signed_in: SignedIn,
    form: PortalForm,
) -> Result<Response, PageError> {
    if !signed_in.csrf_matches(&form) {
        return Err(PageError::FormExpired);
    }
    let tenant_id = &signed_in.tenant_id;
    // Every copy of the cookie ends, not only this browser's.
    sign_in::sign_out(app.store.as_ref(), tenant_id, &signed_in.session.email)
        .await
        .map_err(|err| PageError::failed(tenant_id, "sign out", err))?;
    tracing::info!(tenant = %tenant_id, to = %signed_in.session.email.masked(), outcome = "signed_out", "portal");
    Ok(see_other(
        &format!("/portal/{tenant_id}"),
        Some(session_cookie(tenant_id, "", 0)),
    ))
}

/// `GET /portal/{tenant_id}/download/{token}`: `302` to a short-lived presigned S3 URL while the license is
/// active; otherwise a page saying why.
pub async fn download(
    State(app): State<App>,
    PortalTenant(tenant): PortalTenant,
    path: Segments,
) -> Result<Response, PageError> {
    let tenant_id = &tenant.tenant_id;
    let granted = download::download(&app, &tenant, path.get("token"))
        .await
        .map_err(|err| PageError::failed(tenant_id, "download", err))?;
    match granted {
        Ok(Granted { url, license_id }) => {
            tracing::info!(tenant = %tenant_id, license = %license_id, outcome = "redirected", "download");
            Ok(redirect(StatusCode::FOUND, &url, None))
        }
        Err(refused) => {
            tracing::info!(tenant = %tenant_id, outcome = refused.outcome(), "download");
            let (status, reason) = match refused {
                DownloadRefused::InvalidLink => (403, "This download link is not valid."),
                DownloadRefused::ExpiredLink => (
                    403,
                    "This download link has expired. Sign in to your licenses for a fresh one.",
                ),
                DownloadRefused::NoLicense => (
                    404,
                    "This link belongs to a key that was replaced, or a license that no longer exists. \
                     Use the link in your newest key email, or sign in to your licenses.",
                ),
                DownloadRefused::NotActive(LicenseStatus::Suspended) => (
                    403,
                    "This license is suspended while a payment dispute is open, so its download is unavailable for now.",
                ),
                DownloadRefused::NotActive(LicenseStatus::Expired) => (
                    403,
                    "This license has expired. Renew it to download the product again.",
                ),
                DownloadRefused::NotActive(_) => (
                    403,
                    "This license was revoked, so its download is no longer available.",
                ),
                DownloadRefused::NoFile => (404, "This product has no file to download."),
                DownloadRefused::TooMany => (
                    429,
                    "This license has been downloaded many times today. Try again tomorrow, or contact the seller.",
                ),
            };
            Ok(html(pages::download_refused(tenant_id, status, reason)))
        }
    }
}
