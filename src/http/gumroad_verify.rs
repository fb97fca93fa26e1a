//! `POST /gumroad/{tenant_id}/v2/licenses/verify`: Gumroad's license API in Gumroad's shapes (form or JSON in,
//! `{"success":…}` out), for apps that still call Gumroad's verify.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::extract::{Bounded, Segments, TooLarge};
use super::render;
use crate::app::App;
use crate::app::verify_gumroad::{self, VerifyError, VerifyRequest};
use crate::gumroad::{BodyError, Form};

/// Gumroad's requests are three short parameters.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Everything the Gumroad-compatible route refuses or fails with, in Gumroad's `{"success": false}` shape.
#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    #[error("Request body too large (limit {} bytes)", .0.limit)]
    TooLarge(TooLarge),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Refused(#[from] VerifyError),
}

impl From<TooLarge> for CompatError {
    fn from(too_large: TooLarge) -> Self {
        Self::TooLarge(too_large)
    }
}

impl IntoResponse for CompatError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(BodyError::UnsupportedMediaType(_)) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Body(_) => StatusCode::BAD_REQUEST,
            Self::Refused(VerifyError::NotFound | VerifyError::Disabled) => StatusCode::NOT_FOUND,
            Self::Refused(VerifyError::Storage(err)) => {
                tracing::error!(error = %err, "gumroad verify storage failure");
                return unavailable();
            }
        };
        failure(status, &self.to_string())
    }
}

fn failure(status: StatusCode, message: &str) -> Response {
    render::json(status, &json!({"success": false, "message": message}))
}

fn unavailable() -> Response {
    failure(StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable")
}

pub fn on_timeout(_tenant: &str) -> Response {
    unavailable()
}

pub async fn verify(
    State(app): State<App>,
    path: Segments,
    body: Bounded<CompatError, MAX_BODY_BYTES>,
) -> Result<Response, CompatError> {
    let form = Form::parse(body.content_type.as_deref(), &body.bytes)?;
    let request = VerifyRequest::from_form(&form);
    let tenant = path.tenant();
    let result =
        verify_gumroad::verify(app.store.as_ref(), app.tenants.as_ref(), tenant, &request).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(VerifyError::Storage(_)) => "unavailable",
        Err(_) => "refused",
    };
    tracing::info!(
        tenant,
        outcome,
        counted = request.increment,
        "gumroad verify"
    );
    Ok(render::json(StatusCode::OK, &result?))
}
