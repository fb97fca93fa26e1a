//! The shapes answers take, shared by the surfaces: JSON bodies, our `{"error": …}`, and the one 503.

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

/// A JSON answer, serialised compactly: a `Value`'s object keys in sorted order, as the README shows them, and a
/// type's fields in their declared order (the license API's answers declare theirs in the order of their names).
pub fn json<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "answer not serialisable");
            unavailable()
        }
    }
}

/// `{"error": message}`, the license API's and the webhook's refusal.
pub fn error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}

/// The one body for every failure of ours or of AWS: details go to the log, never to the client.
pub fn unavailable() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable")
}
