//! `POST /webhooks/gumroad/{tenant_id}`: Gumroad's ping in, `app::receive_ping` does the work, JSON out.

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::extract::{Bounded, PresentedToken, Segments, TooLarge};
use super::render;
use crate::app::App;
use crate::app::apply_event::EventResult;
use crate::app::authenticate::AuthError;
use crate::app::receive_ping::{PingFailure, Received, Reply, receive_ping};
use crate::app::record_sale::{SaleError, SaleResult};
use crate::domain::License;
use crate::gumroad::{BodyError, Form, MAX_BODY_BYTES};

/// Everything a ping is refused or fails with; the only place a ping failure becomes a status and a body.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Failed(#[from] PingFailure),
}

impl From<TooLarge> for WebhookError {
    fn from(_: TooLarge) -> Self {
        Self::Body(BodyError::TooLarge)
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Body(BodyError::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(BodyError::UnsupportedMediaType(_)) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Body(_)
            | Self::Failed(
                PingFailure::Ping(_)
                | PingFailure::Sale(SaleError::NoMapping(_) | SaleError::ProductNotFound(_)),
            ) => StatusCode::BAD_REQUEST,
            // A wrong token and a sale Gumroad does not confirm look alike.
            Self::Failed(PingFailure::Auth(AuthError::Invalid) | PingFailure::Unconfirmed(_)) => {
                return render::error(StatusCode::BAD_REQUEST, "Invalid request");
            }
            Self::Failed(PingFailure::Auth(AuthError::Suspended)) => {
                return render::error(StatusCode::FORBIDDEN, "Tenant suspended");
            }
            Self::Failed(
                PingFailure::Auth(AuthError::Unavailable(_))
                | PingFailure::Sale(
                    SaleError::Storage(_)
                    | SaleError::EmailFailed(_)
                    | SaleError::EmailOwed
                    | SaleError::Randomness(_),
                )
                | PingFailure::ReadBack(_)
                | PingFailure::Throttled,
            ) => return render::unavailable(),
        };
        render::error(status, &self.to_string())
    }
}

/// What the deadline answers: a retryable 503, so Gumroad pings again.
pub fn on_timeout(_tenant: &str) -> Response {
    render::unavailable()
}

pub async fn receive(
    State(app): State<App>,
    path: Segments,
    PresentedToken(token): PresentedToken,
    body: Result<Bounded<WebhookError, MAX_BODY_BYTES>, WebhookError>,
) -> Result<Response, WebhookError> {
    let started = Instant::now();
    let tenant = path.tenant();
    let form = body.and_then(|body| Ok(Form::parse(body.content_type.as_deref(), &body.bytes)?));
    let (sale_id, result) = match form {
        Ok(form) => {
            let Received { sale_id, result } =
                receive_ping(&app, tenant, token.as_deref(), &form).await;
            (sale_id, result.map_err(WebhookError::from))
        }
        Err(err) => (None, Err(err)),
    };
    log(tenant, sale_id.as_deref().unwrap_or("-"), &result, started);
    Ok(answer(result?))
}

fn log(tenant: &str, sale_id: &str, result: &Result<Reply, WebhookError>, started: Instant) {
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let failure = match result {
        Ok(reply) => {
            let outcome = reply.outcome();
            tracing::info!(tenant, sale_id, outcome, duration_ms, "ping");
            return;
        }
        Err(WebhookError::Body(_)) => {
            tracing::info!(
                tenant,
                sale_id,
                outcome = "bad_request",
                duration_ms,
                "ping refused"
            );
            return;
        }
        Err(WebhookError::Failed(failure)) => failure,
    };
    let outcome = failure.outcome();
    if outcome == "unconfirmed" {
        tracing::warn!(tenant, sale_id, outcome, duration_ms, error = %failure, "ping refused");
    } else if let PingFailure::Sale(SaleError::EmailFailed(mail)) = failure {
        let reason = mail.reason.as_str();
        tracing::error!(tenant, sale_id, outcome, reason, duration_ms, error = %failure, "ping failed");
    } else if outcome == "unavailable" || outcome == "email_pending" {
        tracing::error!(tenant, sale_id, outcome, duration_ms, error = %failure, "ping failed");
    } else {
        tracing::info!(tenant, sale_id, outcome, duration_ms, "ping refused");
    }
}

/// The license as a sale's answer shows it: with its key, which the seller's ping sender may hand to the buyer.
fn license_json(license: &License) -> serde_json::Value {
    let mut shown = event_license_json(license);
    shown["key"] = json!(license.key.expose());
    shown
}

/// The license as a lifecycle event's answer shows it: never with its key. An event names a subscription or a
/// sale anyone may have seen; its answer must not hand out the license it changed.
fn event_license_json(license: &License) -> serde_json::Value {
    json!({
        "id": license.license_id,
        "product_id": license.product_id,
        "status": license.status.as_str(),
        "activation_limit": license.activation_limit,
        "expires_at": license.expires_at,
    })
}

fn answer(reply: Reply) -> Response {
    let body = match reply {
        Reply::Ignored(_) | Reply::Event(_, EventResult::Unknown) => {
            return StatusCode::NO_CONTENT.into_response();
        }
        Reply::Sale(SaleResult::Duplicate) | Reply::Event(_, EventResult::Duplicate) => {
            json!({"received": true, "duplicate": true})
        }
        Reply::Sale(SaleResult::Created { license, email }) => json!({
            "received": true,
            "duplicate": false,
            "license": license_json(&license),
            "email": email.as_str(),
        }),
        Reply::Sale(SaleResult::Renewed { license }) => json!({
            "received": true,
            "duplicate": false,
            "renewed": true,
            "license": license_json(&license),
        }),
        Reply::Event(
            event,
            EventResult::Plan {
                license,
                changed,
                deferred,
            },
        ) => json!({
            "received": true,
            "duplicate": false,
            "event": event,
            "changed": changed,
            "license_status": license.status.as_str(),
            "license": event_license_json(&license),
            "pending_change": deferred.then(|| license.pending_change.as_ref().map(|change| json!({
                "product_id": change.product_id,
                "activation_limit": change.activation_limit,
                "effective_at": change.effective_at,
            }))).flatten(),
        }),
        Reply::Event(event, EventResult::Applied { status }) => json!({
            "received": true,
            "duplicate": false,
            "event": event,
            "license_status": status.as_str(),
        }),
    };
    render::json(StatusCode::OK, &body)
}
