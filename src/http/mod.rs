//! The HTTP adapter: API Gateway (HTTP API) requests in, answers out. `router` is the one table of routes (the
//! template's `HttpApi` events list the same routes, and `tests/it/template.rs` checks that they do). Each
//! surface (the webhook, the license API, the Gumroad-compatible API, the key set, the portal) has its module:
//! extractors in, one use case from `crate::app` called, its answer or its error enum rendered.

mod extract;
mod gumroad_verify;
mod jwks;
mod layers;
mod license_api;
mod portal;
mod render;
mod webhook;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use tower::ServiceExt;

use crate::app::App;
use layers::OnTimeout;

pub use layers::DEADLINE;

/// Every route the function answers, with its method. A new route is one line here, one line in
/// `template.yaml`, a handler in its surface's module and a use case in `crate::app` (see ARCHITECTURE.md).
pub fn router(app: App) -> Router {
    let deadline = |on_timeout| from_fn_with_state(OnTimeout(on_timeout), layers::deadline);
    let gumroad = Router::new()
        .route("/webhooks/gumroad/{tenant_id}", post(webhook::receive))
        .route_layer(deadline(webhook::on_timeout));
    let license_api = Router::new()
        .route(
            "/v1/{tenant_id}/licenses/validate",
            post(license_api::validate),
        )
        .route(
            "/v1/{tenant_id}/licenses/activate",
            post(license_api::activate),
        )
        .route(
            "/v1/{tenant_id}/licenses/deactivate",
            post(license_api::deactivate),
        )
        .route_layer(deadline(license_api::on_timeout));
    let key_set = Router::new()
        .route("/v1/{tenant_id}/jwks.json", get(jwks::get))
        .route_layer(deadline(jwks::on_timeout));
    let compat = Router::new()
        .route(
            "/gumroad/{tenant_id}/v2/licenses/verify",
            post(gumroad_verify::verify),
        )
        .route_layer(deadline(gumroad_verify::on_timeout));
    let portal_link = Router::new()
        .route("/portal/{tenant_id}/link", post(portal::request_link))
        .route_layer(from_fn_with_state(app.clone(), layers::answer_floor))
        .route_layer(deadline(portal::on_link_timeout));
    let portal = Router::new()
        .route("/portal/{tenant_id}", get(portal::signin_page))
        .route(
            "/portal/{tenant_id}/signin",
            get(portal::confirm_signin).post(portal::sign_in),
        )
        .route("/portal/{tenant_id}/licenses", get(portal::licenses))
        .route(
            "/portal/{tenant_id}/licenses/{license_id}/send-key",
            post(portal::send_key),
        )
        .route(
            "/portal/{tenant_id}/licenses/{license_id}/deactivate",
            post(portal::deactivate),
        )
        .route(
            "/portal/{tenant_id}/licenses/{license_id}/replace",
            post(portal::replace),
        )
        .route("/portal/{tenant_id}/signout", post(portal::sign_out))
        .route(
            "/portal/{tenant_id}/download/{token}",
            get(portal::download),
        )
        .route_layer(deadline(portal::on_timeout));
    Router::new()
        .merge(gumroad)
        .merge(license_api)
        .merge(key_set)
        .merge(compat)
        .merge(portal_link)
        .merge(portal)
        .fallback(layers::not_found)
        .method_not_allowed_fallback(layers::method_not_allowed)
        .layer(from_fn_with_state(app.clone(), layers::edge))
        .with_state(app)
}

impl App {
    /// Answers one request through the router, in `lambda_http`'s types (tests and the bench call this; the
    /// function serves `router` itself). Never fails and never panics on input.
    pub async fn handle(
        &self,
        request: lambda_http::Request,
    ) -> lambda_http::Response<lambda_http::Body> {
        let response = match router(self.clone()).oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let text = parts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/") || ct.starts_with("application/json"));
        let body = match (bytes.is_empty(), text) {
            (true, _) => lambda_http::Body::Empty,
            (false, true) => lambda_http::Body::Text(String::from_utf8_lossy(&bytes).into_owned()),
            (false, false) => lambda_http::Body::Binary(bytes.to_vec()),
        };
        lambda_http::Response::from_parts(parts, body)
    }
}
