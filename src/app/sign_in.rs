//! Sign in to the buyers' portal: a single-use link emailed to an address that bought something (within the
//! portal's limits, and with the same answer whether or not it did), a confirmation page while the link works,
//! and a session once it is used.

use super::App;
use crate::domain::{Email, Tenant, TenantId, sha256_hex};
use crate::mail::Mailer;
use crate::portal::{
    LinkQueue, LinkRequest, Portal, PortalError, SIGNIN_LINK_LIFETIME, Session, new_signin_token,
    now_unix, pages,
};
use crate::storage::Backend;

/// What happened to a sign-in request. The buyer sees the same page whatever it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOutcome {
    /// Queued for the worker, which mails the link after the answer.
    Queued,
    Sent,
    NoLicenses,
    Limited,
    /// A queued request the worker could not use (not one of ours, or its tenant is gone): dropped.
    Dropped,
}

impl LinkOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::NoLicenses => "no_licenses",
            Self::Limited => "rate_limited",
            Self::Dropped => "dropped",
        }
    }
}

/// Answers a request for a sign-in link to `email`: with a queue, the request is queued and the lookup and the
/// mail come after the answer (`mail_queued`), so the answer does the same work, and takes the same time, for
/// every address; without one, the link is mailed before answering. `caller` is the requester's address (API
/// Gateway's source IP), when known: one caller trying many addresses is stopped here, before anything is queued.
pub async fn request_link(
    portal: &Portal,
    store: &dyn Backend,
    mailer: &dyn Mailer,
    queue: Option<&dyn LinkQueue>,
    tenant: &Tenant,
    email: &Email,
    caller: Option<&str>,
) -> Result<LinkOutcome, PortalError> {
    let quarter = now_unix() / 900;
    if let Some(caller) = caller
        && !store
            .count_use(
                &tenant.tenant_id,
                &format!("ip#{}#{quarter}", sha256_hex(caller)),
                portal.settings.per_ip,
                (quarter + 2) * 900,
            )
            .await?
    {
        return Ok(LinkOutcome::Limited);
    }
    let Some(base) = portal.base_url() else {
        return Err(PortalError::NotConfigured(
            "the API's URL is not known yet (set KEYSTEAD_PUBLIC_URL)",
        ));
    };
    match queue {
        Some(queue) => {
            let request = LinkRequest {
                t: tenant.tenant_id.as_str().to_owned(),
                email: email.as_str().to_owned(),
                base,
            };
            queue.push(&request).await?;
            Ok(LinkOutcome::Queued)
        }
        None => mail_link(portal, store, mailer, tenant, email, &base).await,
    }
}

/// The worker's half of a queued request (`body`, an SQS message's): mails the link if the address bought
/// something and no limit is reached. An error is worth another try (storage or mail failed); a body that is not
/// a request, or a tenant that is gone, is dropped.
pub async fn mail_queued(app: &App, body: &str) -> Result<LinkOutcome, PortalError> {
    let Ok(request) = serde_json::from_str::<LinkRequest>(body) else {
        return Ok(LinkOutcome::Dropped);
    };
    let (Ok(tenant_id), Ok(email)) = (TenantId::parse(&request.t), Email::parse(&request.email))
    else {
        return Ok(LinkOutcome::Dropped);
    };
    let Some(tenant) = app.tenants.tenant(app.store.as_ref(), &tenant_id).await? else {
        return Ok(LinkOutcome::Dropped);
    };
    let outcome = mail_link(
        &app.portal,
        app.store.as_ref(),
        app.mailer.as_ref(),
        &tenant,
        &email,
        &request.base,
    )
    .await?;
    tracing::info!(tenant = %tenant_id, to = %email.masked(), outcome = outcome.as_str(), "portal sign-in link mailed after the answer");
    Ok(outcome)
}

/// Emails a single-use sign-in link to `email`, pointing at `base`, if it bought something from `tenant` and no
/// limit is reached.
async fn mail_link(
    portal: &Portal,
    store: &dyn Backend,
    mailer: &dyn Mailer,
    tenant: &Tenant,
    email: &Email,
    base: &str,
) -> Result<LinkOutcome, PortalError> {
    let now = now_unix();
    let tenant_id = &tenant.tenant_id;
    let address = sha256_hex(&email.as_str().to_ascii_lowercase());
    let quarter = now / 900;
    let hour = now / 3600;
    let within = |counter: String, limit: u32, until: i64| async move {
        store.count_use(tenant_id, &counter, limit, until).await
    };
    if !within(
        format!("email#{address}#{quarter}"),
        portal.settings.per_address,
        (quarter + 2) * 900,
    )
    .await?
    {
        return Ok(LinkOutcome::Limited);
    }
    // The link goes to an address as a buyer bought with it (the lookup ignores letter case): the one typed when
    // some license was bought with exactly it, else the first one found. The session it opens shows only that
    // spelling's licenses.
    let found = store.licenses_by_email(tenant_id, email).await?;
    let Some(to) = found
        .iter()
        .find(|license| license.buyer_email.as_str() == email.as_str())
        .or(found.first())
        .map(|license| license.buyer_email.clone())
    else {
        return Ok(LinkOutcome::NoLicenses);
    };
    // The tenant's budget counts addresses mailed this hour, not mails or requests: strangers' addresses cannot
    // use it up for the buyers, nor can a few buyers' addresses asking again and again.
    let first_this_hour = within(format!("mailed#{address}#{hour}"), 1, (hour + 2) * 3600).await?;
    if first_this_hour
        && !within(
            format!("tenant#{hour}"),
            portal.settings.per_tenant,
            (hour + 2) * 3600,
        )
        .await?
    {
        return Ok(LinkOutcome::Limited);
    }
    if !portal_mail_allowed(store, tenant_id, &to).await? {
        return Ok(LinkOutcome::Limited);
    }
    let token = new_signin_token()?;
    store
        .put_signin(
            tenant_id,
            &sha256_hex(&token),
            &to,
            now + SIGNIN_LINK_LIFETIME,
        )
        .await?;
    let link = format!("{base}/portal/{tenant_id}/signin?token={token}");
    mailer
        .send(&pages::signin_email(&tenant.sender, &to, tenant_id, &link))
        .await?;
    Ok(LinkOutcome::Sent)
}

/// Uses a sign-in token: a new session for its address, or `None` when it is unknown, used or expired.
pub async fn sign_in(
    store: &dyn Backend,
    tenant_id: &TenantId,
    token: &str,
) -> Result<Option<Session>, PortalError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let now = now_unix();
    match store
        .take_signin(tenant_id, &sha256_hex(token), now)
        .await?
    {
        Some(email) => Ok(Some(Session::new(email, now)?)),
        None => Ok(None),
    }
}

/// Whether a sign-in token still works (the confirmation page), without using it.
pub async fn link_usable(
    store: &dyn Backend,
    tenant_id: &TenantId,
    token: &str,
) -> Result<bool, PortalError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(false);
    }
    Ok(store
        .signin_usable(tenant_id, &sha256_hex(token), now_unix())
        .await?)
}

/// How long a revocation is kept: past it, every session it ended has expired on its own.
const REVOCATION_LIFETIME: i64 = Session::LIFETIME_SECONDS + 300;

/// Ends every session of `email`, the one signing out and any copy of its cookie (a shared or stolen one).
pub async fn sign_out(
    store: &dyn Backend,
    tenant_id: &TenantId,
    email: &Email,
) -> Result<(), PortalError> {
    let now = now_unix();
    // `+ 1`: a session issued in this very second ends too.
    store
        .revoke_sessions(tenant_id, email, now + 1, now + REVOCATION_LIFETIME)
        .await?;
    Ok(())
}

/// Ends the sessions of `email` issued before `now` (its key was replaced): the caller may open a new one.
pub async fn end_sessions_before(
    store: &dyn Backend,
    tenant_id: &TenantId,
    email: &Email,
    now: i64,
) -> Result<(), crate::storage::StoreError> {
    store
        .revoke_sessions(tenant_id, email, now, now + REVOCATION_LIFETIME)
        .await
}

/// Whether a session (its cookie valid) has not been revoked since it was issued.
pub async fn still_current(
    store: &dyn Backend,
    tenant_id: &TenantId,
    session: &Session,
) -> Result<bool, PortalError> {
    let issued = session.expires_at - Session::LIFETIME_SECONDS;
    Ok(store
        .sessions_valid_from(tenant_id, &session.email)
        .await?
        .is_none_or(|from| issued >= from))
}

/// Portal mails (sign-in links, keys sent again, replaced keys) one address may receive a day, whatever asks for
/// them: a buyer who marks them all as spam cannot pile up complaints against the account's SES reputation,
/// which every tenant's key emails share.
pub const PORTAL_MAILS_PER_DAY: u32 = 10;

/// Counts one portal mail to `to` today, unless the day's are used up (`false`).
pub(crate) async fn portal_mail_allowed(
    store: &dyn Backend,
    tenant_id: &TenantId,
    to: &Email,
) -> Result<bool, crate::storage::StoreError> {
    let day = now_unix() / 86_400;
    let address = sha256_hex(&to.as_str().to_ascii_lowercase());
    store
        .count_use(
            tenant_id,
            &format!("portal-mail#{address}#{day}"),
            PORTAL_MAILS_PER_DAY,
            (day + 2) * 86_400,
        )
        .await
}
