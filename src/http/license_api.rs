//! `POST /v1/{tenant_id}/licenses/{validate|activate|deactivate}`: JSON in, JSON out, for the seller's app.

use lambda_http::{Body, Request, Response};

use super::{App, response};
use crate::licensing::{self, LicenseApiError, LicenseRequest};
use crate::storage::StoreError;

/// License API bodies are a few short fields.
const MAX_BODY_BYTES: usize = 16 * 1024;

fn failure(err: LicenseApiError) -> Response<Body> {
    match err {
        LicenseApiError::NotFound => response::error(404, "License not found"),
        e @ LicenseApiError::NotActive(_) => response::error(403, &e.to_string()),
        e @ LicenseApiError::LimitReached => response::error(409, &e.to_string()),
        LicenseApiError::Invalid(message) => response::error(400, &message),
        LicenseApiError::Storage(err) => {
            tracing::error!(error = %err, "license API storage failure");
            response::unavailable()
        }
        LicenseApiError::Signing(err) => {
            tracing::error!(error = %err, "license API signing failure");
            response::unavailable()
        }
    }
}

fn parse(request: &Request) -> Result<LicenseRequest, Box<Response<Body>>> {
    let body: &[u8] = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return Err(Box::new(response::error(
            413,
            &format!("Request body too large (limit {MAX_BODY_BYTES} bytes)"),
        )));
    }
    let content_type = request
        .headers()
        .get(lambda_http::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .map(|mt| mt.trim().to_ascii_lowercase());
    if content_type
        .as_deref()
        .is_some_and(|mt| mt != "application/json")
    {
        return Err(Box::new(response::error(
            415,
            "Unsupported content type: send application/json",
        )));
    }
    licensing::parse_request(body).map_err(|message| Box::new(response::error(400, &message)))
}

pub async fn handle(app: &App, tenant_id: &str, action: &str, request: &Request) -> Response<Body> {
    let body = match parse(request) {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let checker = app.checker();
    let result = match tokio::time::timeout(std::time::Duration::from_millis(4_500), async {
        match action {
            "validate" => licensing::validate(checker, tenant_id, &body)
                .await
                .map(|v| serde_json::json!(v)),
            "activate" => licensing::activate(checker, tenant_id, &body)
                .await
                .map(|v| serde_json::json!(v)),
            _ => licensing::deactivate(checker.store, tenant_id, &body)
                .await
                .map(|v| serde_json::json!(v)),
        }
    })
    .await
    {
        Ok(result) => result,
        Err(_) => Err(LicenseApiError::Storage(StoreError::Unavailable(
            "deadline exceeded".to_owned(),
        ))),
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(LicenseApiError::Storage(_) | LicenseApiError::Signing(_)) => "unavailable",
        Err(_) => "refused",
    };
    tracing::info!(tenant = %tenant_id, action, outcome, "license api");
    match result {
        Ok(value) => response::json(200, &value),
        Err(err) => failure(err),
    }
}
