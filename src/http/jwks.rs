//! `GET /v1/{tenant_id}/jwks.json`: the tenant's current and retired public keys, for apps to verify leases with.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};

use super::extract::Segments;
use super::render;
use crate::app::App;
use crate::app::key_set::key_set;
use crate::domain::TenantId;
use crate::signing::SigningError;

/// Everything the key set's route refuses or fails with.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("Not found")]
    NotFound,
    #[error(transparent)]
    Signing(#[from] SigningError),
}

impl IntoResponse for JwksError {
    fn into_response(self) -> Response {
        match self {
            Self::NotFound => render::error(StatusCode::NOT_FOUND, "Not found"),
            Self::Signing(err) => {
                tracing::error!(error = %err, "jwks failed");
                render::unavailable()
            }
        }
    }
}

pub fn on_timeout(_tenant: &str) -> Response {
    render::unavailable()
}

pub async fn get(State(app): State<App>, path: Segments) -> Result<Response, JwksError> {
    let tenant_id = TenantId::parse(path.tenant()).map_err(|_| JwksError::NotFound)?;
    let jwks = key_set(&app, &tenant_id)
        .await?
        .ok_or(JwksError::NotFound)?;
    let mut reply = render::json(StatusCode::OK, &serde_json::json!(jwks));
    reply.headers_mut().insert(
        CACHE_CONTROL,
        axum::http::HeaderValue::from_static("public, max-age=60"),
    );
    Ok(reply)
}
