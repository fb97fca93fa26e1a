//! `POST /v1/{tenant_id}/licenses/{validate|activate|deactivate}`: JSON in, JSON out, for the seller's app.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::extract::{Bounded, Segments, TooLarge};
use super::render;
use crate::app::App;
use crate::app::activate::activate;
use crate::app::deactivate::deactivate;
use crate::app::licenses::{self, LicenseApiError, LicenseRequest};
use crate::app::validate::validate;

/// License API bodies are a few short fields.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// Everything the license API refuses or fails with; the only place its statuses and bodies are chosen.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Request body too large (limit {} bytes)", .0.limit)]
    TooLarge(TooLarge),
    #[error("Unsupported content type: send application/json")]
    UnsupportedMediaType,
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    Refused(#[from] LicenseApiError),
}

impl From<TooLarge> for ApiError {
    fn from(too_large: TooLarge) -> Self {
        Self::TooLarge(too_large)
    }
}

impl ApiError {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Refused(LicenseApiError::Storage(_) | LicenseApiError::Signing(_)) => {
                "unavailable"
            }
            _ => "refused",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Malformed(_) | Self::Refused(LicenseApiError::Invalid(_)) => {
                StatusCode::BAD_REQUEST
            }
            Self::Refused(LicenseApiError::NotFound) => StatusCode::NOT_FOUND,
            Self::Refused(LicenseApiError::NotActive(_)) => StatusCode::FORBIDDEN,
            Self::Refused(LicenseApiError::LimitReached) => StatusCode::CONFLICT,
            Self::Refused(LicenseApiError::TooManyNewMachines) => StatusCode::TOO_MANY_REQUESTS,
            Self::Refused(err @ (LicenseApiError::Storage(_) | LicenseApiError::Signing(_))) => {
                tracing::error!(error = %err, "license API failure");
                return render::unavailable();
            }
        };
        render::error(status, &self.to_string())
    }
}

/// What the app's deadline answers: the one retryable 503.
pub fn on_timeout(_tenant: &str) -> Response {
    render::unavailable()
}

/// The body: JSON (or sent without a `Content-Type`), at most `MAX_BODY_BYTES`.
pub struct Json(LicenseRequest);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Json {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let body = Bounded::<ApiError, MAX_BODY_BYTES>::from_request(request, state).await?;
        if body
            .media_type()
            .is_some_and(|media_type| media_type != "application/json")
        {
            return Err(ApiError::UnsupportedMediaType);
        }
        licenses::parse_request(&body.bytes)
            .map(Self)
            .map_err(ApiError::Malformed)
    }
}

fn answer<T: serde::Serialize>(
    tenant: &str,
    action: &'static str,
    result: Result<T, LicenseApiError>,
) -> Result<Response, ApiError> {
    let result = result.map_err(ApiError::from);
    let outcome = result.as_ref().map_or_else(ApiError::outcome, |_| "ok");
    tracing::info!(tenant, action, outcome, "license api");
    Ok(render::json(StatusCode::OK, &result?))
}

/// `POST /v1/{tenant_id}/licenses/{validate|activate|deactivate}`: the call is the path's last segment (the
/// router lists the three routes).
pub async fn call(
    State(app): State<App>,
    path: Segments,
    uri: Uri,
    Json(body): Json,
) -> Result<Response, ApiError> {
    let (tenant, checker) = (path.tenant(), app.checker());
    match uri.path().rsplit('/').next() {
        Some("validate") => answer(tenant, "validate", validate(checker, tenant, &body).await),
        Some("activate") => answer(tenant, "activate", activate(checker, tenant, &body).await),
        _ => answer(
            tenant,
            "deactivate",
            deactivate(checker, tenant, &body).await,
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::app::deactivate::Deactivation;
    use crate::app::licenses::Validation;
    use crate::domain::ProductId;

    /// What the answer was when it went through a `Value` (keys sorted) and what it is now, written straight from
    /// its type.
    fn both<T: serde::Serialize>(answer: &T) -> (String, String) {
        let direct = serde_json::to_string(answer).unwrap_or_default();
        (direct, serde_json::json!(answer).to_string())
    }

    #[test]
    fn answers_keep_their_keys_sorted() {
        let full = Validation {
            activated: Some(true),
            activation_limit: 3,
            activations: 1,
            entitlements: vec!["pro".to_owned()],
            expires_at: Some("2027-01-01T00:00:00Z".to_owned()),
            lease: Some("lease".to_owned()),
            product_id: ProductId::parse("myapp").unwrap_or_else(|e| panic!("{e}")),
            seat_expires_at: Some("2026-12-08T00:00:00Z".to_owned()),
            status: "active",
            valid: true,
        };
        let bare = Validation {
            activated: None,
            expires_at: None,
            lease: None,
            seat_expires_at: None,
            entitlements: Vec::new(),
            product_id: full.product_id.clone(),
            ..full
        };
        let deactivation = Deactivation {
            activations: 0,
            deactivated: true,
        };
        for (direct, via_value) in [both(&bare), both(&full), both(&deactivation)] {
            assert_eq!(direct, via_value);
        }
    }
}
