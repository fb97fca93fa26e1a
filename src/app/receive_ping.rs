//! Receive a Gumroad ping: check the tenant's token (and pinned seller), tell a test ping, a lifecycle event and a
//! sale apart, confirm a new sale with Gumroad when read-back is on, and hand it to `record_sale` or
//! `apply_event`.

use super::App;
use super::apply_event::{self, EventResult};
use super::authenticate::{AuthError, Seller, authenticate};
use super::record_sale::{self, SaleError, SaleOrder, SaleResult};
use crate::domain::Tenant;
use crate::gumroad::readback::{self, ReadBack};
use crate::gumroad::{EventSubject, Form, GumroadEvent, Ping, PingError, SalePing};

/// What a ping did.
pub enum Reply {
    Ignored(&'static str),
    Sale(SaleResult),
    Event(&'static str, EventResult),
}

impl Reply {
    /// The outcome's name in the log.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Ignored(why) => why,
            Self::Sale(SaleResult::Created { .. }) => "created",
            Self::Sale(SaleResult::Renewed { .. }) => "renewed",
            Self::Sale(SaleResult::Duplicate) | Self::Event(_, EventResult::Duplicate) => {
                "duplicate"
            }
            Self::Event(_, EventResult::Applied { .. }) => "event_applied",
            Self::Event(_, EventResult::Unknown) => "event_for_unknown_sale",
            Self::Event(_, EventResult::Plan { changed: false, .. }) => "plan_unchanged",
            Self::Event(_, EventResult::Plan { deferred: true, .. }) => "plan_change_deferred",
            Self::Event(_, EventResult::Plan { .. }) => "plan_changed",
        }
    }
}

/// Why a ping changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum PingFailure {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Ping(#[from] PingError),
    #[error(transparent)]
    Sale(#[from] SaleError),
    /// Read-back is on and Gumroad does not confirm the sale or event: refused exactly like a wrong token.
    #[error("Gumroad does not confirm the ping ({0})")]
    Unconfirmed(&'static str),
    /// The tenant's budget of failed authentications is used up and the token is not the one last read: a 503,
    /// which Gumroad retries, without touching DynamoDB.
    #[error("too many failed authentications for this tenant; retry later")]
    Throttled,
    /// Read-back is on and Gumroad (or the sealed token) cannot be reached: retry later.
    #[error("sale read-back unavailable: {0}")]
    ReadBack(String),
}

impl PingFailure {
    /// The outcome's name in the log.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Ping(_) => "bad_request",
            Self::Auth(AuthError::Invalid) => "unauthorized",
            Self::Auth(AuthError::Suspended) => "suspended",
            Self::Sale(SaleError::NoMapping(_) | SaleError::ProductNotFound(_)) => "unmapped",
            Self::Sale(SaleError::EmailFailed(_)) => "email_failed",
            Self::Sale(SaleError::EmailOwed) => "email_pending",
            Self::Unconfirmed(_) => "unconfirmed",
            Self::Throttled => "throttled",
            Self::ReadBack(_)
            | Self::Auth(AuthError::Unavailable(_))
            | Self::Sale(SaleError::Storage(_) | SaleError::Randomness(_)) => "unavailable",
        }
    }
}

/// A ping's result, with the sale it named (for the log) once that was read.
pub struct Received {
    pub sale_id: Option<String>,
    pub result: Result<Reply, PingFailure>,
}

/// Handles one ping, already parsed as a form, presented with `token`.
pub async fn receive_ping(
    app: &App,
    tenant_id: &str,
    token: Option<&str>,
    form: &Form,
) -> Received {
    let mut sale_id = None;
    let result = receive(app, tenant_id, token, form, &mut sale_id).await;
    Received { sale_id, result }
}

async fn receive(
    app: &App,
    tenant_id: &str,
    token: Option<&str>,
    form: &Form,
    sale_id: &mut Option<String>,
) -> Result<Reply, PingFailure> {
    let ping = Ping::classify(form);
    let seller = match form.get_nonempty("seller_id") {
        Some(sent) => Seller::Named(sent),
        None if Ping::names_seller(form) => Seller::Missing,
        None => Seller::NotCarried,
    };
    if app.ping_budget.exhausted(tenant_id) && !matches_last_read(app, tenant_id, token).await? {
        return Err(PingFailure::Throttled);
    }
    let tenant = match authenticate(app.store.as_ref(), tenant_id, token, seller).await {
        Err(AuthError::Invalid) => {
            app.ping_budget.failed(tenant_id);
            return Err(AuthError::Invalid.into());
        }
        other => other?,
    };

    match ping {
        Ping::Test => Ok(Reply::Ignored("test")),
        Ping::Event(resource_name) => {
            let Some(event) = GumroadEvent::from_form(&resource_name, form)? else {
                return Ok(Reply::Ignored("unknown_resource"));
            };
            if let EventSubject::Sale(id) = &event.subject {
                *sale_id = Some(id.to_string());
            }
            confirm_event_with_gumroad(app, &tenant, &event).await?;
            let result = apply_event::apply(app.store.as_ref(), &tenant, &event)
                .await
                .map_err(SaleError::Storage)?;
            Ok(Reply::Event(event.kind.name(), result))
        }
        Ping::Sale => {
            let ping = SalePing::from_form(form)?;
            *sale_id = Some(ping.sale_id.to_string());
            if ping.is_preorder_authorization {
                // Nothing is charged yet: the release charge pings again with a new sale id, and mints then.
                return Ok(Reply::Ignored("preorder_authorization"));
            }
            // An unmapped product is refused before Gumroad is asked anything.
            record_sale::resolve_product(&tenant, &ping)?;
            let ping = confirm_sale_with_gumroad(app, &tenant, form, ping).await?;
            let (product, permalink) = record_sale::resolve_product(&tenant, &ping)?;
            let order = SaleOrder::from_ping(ping, product, permalink);
            let result =
                record_sale::issue(app.store.as_ref(), app.mailer.as_ref(), &tenant, order).await?;
            Ok(Reply::Sale(result))
        }
    }
}

/// With read-back on, a sale keystead has not recorded yet must be one Gumroad confirms, and it mints what
/// Gumroad's sale says. Replays are not re-read.
async fn confirm_sale_with_gumroad(
    app: &App,
    tenant: &Tenant,
    form: &Form,
    ping: SalePing,
) -> Result<SalePing, PingFailure> {
    if !tenant.verify_sales {
        return Ok(ping);
    }
    let seen = app
        .store
        .sale_seen(&tenant.tenant_id, &ping.sale_id)
        .await
        .map_err(SaleError::Storage)?;
    if seen {
        return Ok(ping);
    }
    let token = gumroad_token(app, tenant).await?;
    confirmed(readback::confirm_sale(&app.gumroad_api, &token, form, &ping).await)
}

/// With read-back on, a lifecycle event changes nothing unless Gumroad's records show it.
async fn confirm_event_with_gumroad(
    app: &App,
    tenant: &Tenant,
    event: &GumroadEvent,
) -> Result<(), PingFailure> {
    if !tenant.verify_sales {
        return Ok(());
    }
    let token = gumroad_token(app, tenant).await?;
    confirmed(readback::confirm_event(&app.gumroad_api, &token, event).await)
}

/// The seller's Gumroad access token, unsealed.
async fn gumroad_token(app: &App, tenant: &Tenant) -> Result<std::sync::Arc<String>, PingFailure> {
    let sealed = tenant.gumroad_token.as_ref().ok_or_else(|| {
        PingFailure::ReadBack("read-back is on but no Gumroad access token is stored".to_owned())
    })?;
    app.keyring
        .secret(&tenant.tenant_id, sealed)
        .await
        .map_err(|e| PingFailure::ReadBack(e.to_string()))
}

fn confirmed<T>(answer: ReadBack<T>) -> Result<T, PingFailure> {
    match answer {
        ReadBack::Confirmed(value) => Ok(value),
        ReadBack::Refuted(why) => Err(PingFailure::Unconfirmed(why)),
        ReadBack::Unavailable(why) => Err(PingFailure::ReadBack(why)),
    }
}

/// Whether `token` is the tenant's as this process last read it (the cache: at most one read a minute, however
/// many pings come). Only under a flood of failed authentications.
async fn matches_last_read(
    app: &App,
    raw_tenant_id: &str,
    token: Option<&str>,
) -> Result<bool, PingFailure> {
    let Ok(tenant_id) = crate::domain::TenantId::parse(raw_tenant_id) else {
        return Ok(false);
    };
    let tenant = app
        .tenants
        .tenant(app.store.as_ref(), &tenant_id)
        .await
        .map_err(AuthError::Unavailable)?;
    let (Some(tenant), Some(token)) = (tenant, token) else {
        return Ok(false);
    };
    let presented = crate::domain::WebhookToken::from_string(token.to_owned()).hash();
    Ok(crate::domain::TokenHash::from_hex(&tenant.token_hash)
        .is_some_and(|stored| bool::from(presented.ct_matches(&stored))))
}
