//! `POST /webhooks/gumroad/{tenant_id}`: authenticate, classify the ping, and hand a sale to `sale::issue`.

use std::time::{Duration, Instant};

use base64::Engine;
use lambda_http::http::header::{AUTHORIZATION, CONTENT_TYPE};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;

use super::{App, response};
use crate::auth::{AuthError, authenticate};
use crate::domain::{License, Tenant};
use crate::gumroad::readback::{self, ReadBack};
use crate::gumroad::{BodyError, EventSubject, Form, GumroadEvent, Ping, PingError, SalePing};
use crate::lifecycle::{self, EventResult};
use crate::sale::{self, SaleError, SaleOrder, SaleResult};

/// Gumroad gives up after 5 s; whatever is still running by then is answered with a retryable 503.
const DEADLINE: Duration = Duration::from_millis(4_500);

enum Reply {
    Ignored(&'static str),
    Sale(SaleResult),
    Event(&'static str, EventResult),
}

fn license_json(license: &License) -> serde_json::Value {
    json!({
        "id": license.license_id,
        "key": license.key.expose(),
        "product_id": license.product_id,
        "status": license.status.as_str(),
        "activation_limit": license.activation_limit,
        "expires_at": license.expires_at,
    })
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Ping(#[from] PingError),
    #[error(transparent)]
    Sale(#[from] SaleError),
    /// Read-back is on and Gumroad does not confirm the sale: refused exactly like a wrong token.
    #[error("Gumroad does not confirm the sale ({0})")]
    Unconfirmed(&'static str),
    /// Read-back is on and Gumroad (or the sealed token) cannot be reached: retry later.
    #[error("sale read-back unavailable: {0}")]
    ReadBack(String),
    #[error("deadline exceeded")]
    Deadline,
}

impl Failure {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Body(_) | Self::Ping(_) => "bad_request",
            Self::Auth(AuthError::Invalid) => "unauthorized",
            Self::Auth(AuthError::Suspended) => "suspended",
            Self::Sale(SaleError::NoMapping(_) | SaleError::ProductNotFound(_)) => "unmapped",
            Self::Sale(SaleError::EmailFailed(_)) => "email_failed",
            Self::Sale(SaleError::EmailOwed) => "email_pending",
            Self::Unconfirmed(_) => "unconfirmed",
            Self::ReadBack(_) => "unavailable",
            Self::Auth(AuthError::Unavailable(_))
            | Self::Sale(SaleError::Storage(_) | SaleError::Randomness(_))
            | Self::Deadline => "unavailable",
        }
    }

    /// The only place a ping failure becomes a status and a body.
    fn into_response(self) -> Response<Body> {
        match self {
            Self::Body(BodyError::TooLarge) => response::error(413, &self.to_string()),
            Self::Body(e @ BodyError::UnsupportedMediaType(_)) => {
                response::error(415, &e.to_string())
            }
            Self::Body(e) => response::error(400, &e.to_string()),
            Self::Auth(AuthError::Invalid) | Self::Unconfirmed(_) => {
                response::error(400, "Invalid request")
            }
            Self::Auth(AuthError::Suspended) => response::error(403, "Tenant suspended"),
            Self::Ping(e) => response::error(400, &e.to_string()),
            Self::Sale(e @ (SaleError::NoMapping(_) | SaleError::ProductNotFound(_))) => {
                response::error(400, &e.to_string())
            }
            Self::Auth(AuthError::Unavailable(_))
            | Self::Sale(
                SaleError::Storage(_)
                | SaleError::EmailFailed(_)
                | SaleError::EmailOwed
                | SaleError::Randomness(_),
            )
            | Self::ReadBack(_)
            | Self::Deadline => response::unavailable(),
        }
    }
}

/// With read-back on, a sale keystead has not recorded yet must be one Gumroad confirms. Replays are not re-read.
async fn confirm_with_gumroad(app: &App, tenant: &Tenant, ping: &SalePing) -> Result<(), Failure> {
    if !tenant.verify_sales {
        return Ok(());
    }
    let seen = app
        .store
        .sale_seen(&tenant.tenant_id, &ping.sale_id)
        .await
        .map_err(SaleError::Storage)?;
    if seen {
        return Ok(());
    }
    let sealed = tenant.gumroad_token.as_ref().ok_or_else(|| {
        Failure::ReadBack("read-back is on but no Gumroad access token is stored".to_owned())
    })?;
    let token = app
        .keyring
        .secret(&tenant.tenant_id, sealed)
        .await
        .map_err(|e| Failure::ReadBack(e.to_string()))?;
    match readback::confirm(&app.gumroad_api, &token, ping).await {
        ReadBack::Confirmed => Ok(()),
        ReadBack::Refuted(why) => Err(Failure::Unconfirmed(why)),
        ReadBack::Unavailable(why) => Err(Failure::ReadBack(why)),
    }
}

/// The webhook token: `?token=` first, else the password of HTTP Basic auth (a ping URL's `user:token@`).
fn presented_token(request: &Request) -> Option<String> {
    if let Some(token) = request
        .query_string_parameters_ref()
        .and_then(|q| q.first("token"))
    {
        return Some(token.to_owned());
    }
    let header = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

pub async fn handle(app: &App, tenant_id: &str, request: &Request) -> Response<Body> {
    let started = Instant::now();
    let mut sale_id = None;
    let result =
        match crate::deadline::within(DEADLINE, process(app, tenant_id, request, &mut sale_id))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(Failure::Deadline),
        };
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let sale_id = sale_id.as_deref().unwrap_or("-");
    match result {
        Ok(reply) => {
            let outcome = match &reply {
                Reply::Ignored(why) => why,
                Reply::Sale(SaleResult::Created { .. }) => "created",
                Reply::Sale(SaleResult::Renewed { .. }) => "renewed",
                Reply::Sale(SaleResult::Duplicate) | Reply::Event(_, EventResult::Duplicate) => {
                    "duplicate"
                }
                Reply::Event(_, EventResult::Applied { .. }) => "event_applied",
                Reply::Event(_, EventResult::Unknown) => "event_for_unknown_sale",
                Reply::Event(_, EventResult::Plan { changed: false, .. }) => "plan_unchanged",
                Reply::Event(_, EventResult::Plan { deferred: true, .. }) => "plan_change_deferred",
                Reply::Event(_, EventResult::Plan { .. }) => "plan_changed",
            };
            tracing::info!(tenant = %tenant_id, sale_id, outcome, duration_ms, "ping");
            match reply {
                Reply::Ignored(_) | Reply::Event(_, EventResult::Unknown) => response::no_content(),
                Reply::Sale(SaleResult::Duplicate) | Reply::Event(_, EventResult::Duplicate) => {
                    response::json(200, &json!({"received": true, "duplicate": true}))
                }
                Reply::Sale(SaleResult::Created { license, email }) => response::json(
                    200,
                    &json!({
                        "received": true,
                        "duplicate": false,
                        "license": license_json(&license),
                        "email": email.as_str(),
                    }),
                ),
                Reply::Sale(SaleResult::Renewed { license }) => response::json(
                    200,
                    &json!({
                        "received": true,
                        "duplicate": false,
                        "renewed": true,
                        "license": license_json(&license),
                    }),
                ),
                Reply::Event(
                    event,
                    EventResult::Plan {
                        license,
                        changed,
                        deferred,
                    },
                ) => response::json(
                    200,
                    &json!({
                        "received": true,
                        "duplicate": false,
                        "event": event,
                        "changed": changed,
                        "license_status": license.status.as_str(),
                        "license": license_json(&license),
                        "pending_change": deferred.then(|| license.pending_change.as_ref().map(|change| json!({
                            "product_id": change.product_id,
                            "activation_limit": change.activation_limit,
                            "effective_at": change.effective_at,
                        }))).flatten(),
                    }),
                ),
                Reply::Event(event, EventResult::Applied { status }) => response::json(
                    200,
                    &json!({
                        "received": true,
                        "duplicate": false,
                        "event": event,
                        "license_status": status.as_str(),
                    }),
                ),
            }
        }
        Err(failure) => {
            let outcome = failure.outcome();
            if outcome == "unconfirmed" {
                tracing::warn!(tenant = %tenant_id, sale_id, outcome, duration_ms, error = %failure, "ping refused");
            } else if let Failure::Sale(SaleError::EmailFailed(mail)) = &failure {
                let reason = mail.reason.as_str();
                tracing::error!(tenant = %tenant_id, sale_id, outcome, reason, duration_ms, error = %failure, "ping failed");
            } else if outcome == "unavailable" || outcome == "email_pending" {
                tracing::error!(tenant = %tenant_id, sale_id, outcome, duration_ms, error = %failure, "ping failed");
            } else {
                tracing::info!(tenant = %tenant_id, sale_id, outcome, duration_ms, "ping refused");
            }
            failure.into_response()
        }
    }
}

async fn process(
    app: &App,
    tenant_id: &str,
    request: &Request,
    sale_id: &mut Option<String>,
) -> Result<Reply, Failure> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let form = Form::parse(content_type, request.body().as_ref())?;
    let token = presented_token(request);
    let tenant = authenticate(
        app.store.as_ref(),
        tenant_id,
        token.as_deref(),
        form.get_nonempty("seller_id"),
    )
    .await?;

    match Ping::classify(&form) {
        Ping::Test => Ok(Reply::Ignored("test")),
        Ping::Event(resource_name) => {
            let Some(event) = GumroadEvent::from_form(&resource_name, &form)? else {
                return Ok(Reply::Ignored("unknown_resource"));
            };
            if let EventSubject::Sale(id) = &event.subject {
                *sale_id = Some(id.to_string());
            }
            let result = lifecycle::apply(app.store.as_ref(), &tenant, &event)
                .await
                .map_err(SaleError::Storage)?;
            Ok(Reply::Event(event.kind.name(), result))
        }
        Ping::Sale => {
            let ping = SalePing::from_form(&form)?;
            *sale_id = Some(ping.sale_id.to_string());
            if ping.is_preorder_authorization {
                // Nothing is charged yet: the release charge pings again with a new sale id, and mints then.
                return Ok(Reply::Ignored("preorder_authorization"));
            }
            let (product, permalink) = sale::resolve_product(&tenant, &ping)?;
            confirm_with_gumroad(app, &tenant, &ping).await?;
            let order = SaleOrder::from_ping(ping, product, permalink);
            let result =
                sale::issue(app.store.as_ref(), app.mailer.as_ref(), &tenant, order).await?;
            Ok(Reply::Sale(result))
        }
    }
}
