//! `POST /gumroad/{tenant_id}/v2/licenses/verify`: Gumroad's license API in Gumroad's shapes (form or JSON in,
//! `{"success":…}` out), for apps that still call Gumroad's verify.

use std::time::Duration;

use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::{Body, Request, Response};
use serde_json::json;

use super::{App, response};
use crate::compat::{self, VerifyError, VerifyRequest};
use crate::gumroad::{BodyError, Form};

/// Gumroad's requests are three short parameters.
const MAX_BODY_BYTES: usize = 16 * 1024;
const DEADLINE: Duration = Duration::from_millis(4_500);

fn failure(status: u16, message: &str) -> Response<Body> {
    response::json(status, &json!({"success": false, "message": message}))
}

pub async fn handle(app: &App, tenant_id: &str, request: &Request) -> Response<Body> {
    let body: &[u8] = request.body().as_ref();
    if body.len() > MAX_BODY_BYTES {
        return failure(
            413,
            &format!("Request body too large (limit {MAX_BODY_BYTES} bytes)"),
        );
    }
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let form = match Form::parse(content_type, body) {
        Ok(form) => form,
        Err(err @ BodyError::UnsupportedMediaType(_)) => return failure(415, &err.to_string()),
        Err(err) => return failure(400, &err.to_string()),
    };
    let verify = VerifyRequest::from_form(&form);
    let result = tokio::time::timeout(
        DEADLINE,
        compat::verify(app.store.as_ref(), tenant_id, &verify),
    )
    .await;
    let outcome = match &result {
        Ok(Ok(_)) => "ok",
        Ok(Err(VerifyError::Storage(_))) | Err(_) => "unavailable",
        Ok(Err(_)) => "refused",
    };
    tracing::info!(tenant = %tenant_id, outcome, counted = verify.increment, "gumroad verify");
    match result {
        Ok(Ok(answer)) => response::json(200, &answer),
        Ok(Err(err @ (VerifyError::NotFound | VerifyError::Disabled))) => {
            failure(404, &err.to_string())
        }
        Ok(Err(VerifyError::Storage(err))) => {
            tracing::error!(tenant = %tenant_id, error = %err, "gumroad verify storage failure");
            failure(503, "Temporarily unavailable")
        }
        Err(_) => failure(503, "Temporarily unavailable"),
    }
}
