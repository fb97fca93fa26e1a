//! Response builders shared by the routes.

use lambda_http::http::header::{ALLOW, CONTENT_TYPE};
use lambda_http::{Body, Response};

/// A JSON response; `serde_json::Value` bodies are serialised compactly.
pub fn json(status: u16, body: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

pub fn no_content() -> Response<Body> {
    Response::builder()
        .status(204)
        .body(Body::Empty)
        .unwrap_or_default()
}

pub fn error(status: u16, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message }))
}

pub fn method_not_allowed(allow: &str) -> Response<Body> {
    let mut response = error(405, "Method not allowed");
    if let Ok(value) = allow.parse() {
        response.headers_mut().insert(ALLOW, value);
    }
    response
}

/// The one body for every failure of ours or of AWS: details go to the log, never to the client.
pub fn unavailable() -> Response<Body> {
    error(503, "Temporarily unavailable")
}
