//! The HTTP adapter: API Gateway (HTTP API) requests in, answers out. `router` is the one table of routes (the
//! template's `HttpApi` events list the same routes, and `tests/it/template.rs` checks that they do). Each
//! surface (the webhook, the license API, the Gumroad-compatible API, the key set, the portal) has its module:
//! extractors in, one use case from `crate::app` called, its answer or its error enum rendered.

mod extract;
mod feeds;
pub mod gateway;
mod gumroad_verify;
mod jwks;
mod layers;
mod license_api;
mod portal;
mod releases;
mod render;
mod webhook;

use axum::Router;
use axum::middleware::from_fn_with_state;

use crate::app::App;
use layers::OnTimeout;

pub use layers::DEADLINE;

/// Declares the route table once: `ROUTES` (what `tests/it/template.rs` compares with `template.yaml`) and the
/// router of each surface come from the same lines.
macro_rules! route_table {
    ($($surface:ident: [$($method:ident $path:literal => $handler:path,)*])*) => {
        /// Every route the function answers: (method, path), as API Gateway routes them.
        pub const ROUTES: &[(&str, &str)] = &[$($((route_table!(@method $method), $path),)*)*];

        /// Each surface's routes, before its layers.
        struct Surfaces {
            $($surface: Router<App>,)*
        }

        fn surfaces() -> Surfaces {
            Surfaces {
                $($surface: Router::new()$(.route($path, axum::routing::$method($handler)))*,)*
            }
        }
    };
    (@method get) => { "GET" };
    (@method post) => { "POST" };
}

// A new route is one line here, one line in `template.yaml`, a handler in its surface's module and a use case in
// `crate::app` (see ARCHITECTURE.md).
route_table! {
    gumroad: [
        post "/webhooks/gumroad/{tenant_id}" => webhook::receive,
    ]
    license_api: [
        post "/v1/{tenant_id}/licenses/validate" => license_api::call,
        post "/v1/{tenant_id}/licenses/activate" => license_api::call,
        post "/v1/{tenant_id}/licenses/deactivate" => license_api::call,
    ]
    key_set: [
        get "/v1/{tenant_id}/jwks.json" => jwks::get,
    ]
    releases: [
        get "/v1/{tenant_id}/products/{product_id}/appcast.xml" => releases::appcast,
        get "/v1/{tenant_id}/products/{product_id}/tauri/{target}/{arch}/{current_version}" => releases::tauri,
        get "/v1/{tenant_id}/products/{product_id}/electron/{file}" => releases::electron,
        get "/v1/{tenant_id}/products/{product_id}/releases" => releases::list,
        get "/v1/{tenant_id}/products/{product_id}/releases/{version}/{filename}" => releases::download,
    ]
    compat: [
        post "/gumroad/{tenant_id}/v2/licenses/verify" => gumroad_verify::verify,
    ]
    portal_link: [
        post "/portal/{tenant_id}/link" => portal::request_link,
    ]
    portal: [
        get "/portal/{tenant_id}" => portal::signin_page,
        get "/portal/{tenant_id}/signin" => portal::confirm_signin,
        post "/portal/{tenant_id}/signin" => portal::sign_in,
        get "/portal/{tenant_id}/licenses" => portal::licenses,
        post "/portal/{tenant_id}/licenses/{license_id}/send-key" => portal::act,
        post "/portal/{tenant_id}/licenses/{license_id}/deactivate" => portal::act,
        post "/portal/{tenant_id}/licenses/{license_id}/replace" => portal::act,
        post "/portal/{tenant_id}/signout" => portal::sign_out,
        get "/portal/{tenant_id}/download/{token}" => portal::download,
    ]
}

/// The function's HTTP side: the table of routes, each surface's under its own deadline answer and the sign-in
/// form under the answer floor, behind the edge (what every request meets first, `layers::edge`).
pub fn router(app: App) -> Api {
    let deadline = |on_timeout| from_fn_with_state(OnTimeout(on_timeout), layers::deadline);
    let s = surfaces();
    let routes = Router::new()
        .merge(s.gumroad.route_layer(deadline(webhook::on_timeout)))
        .merge(s.license_api.route_layer(deadline(license_api::on_timeout)))
        .merge(s.key_set.route_layer(deadline(jwks::on_timeout)))
        .merge(s.releases.route_layer(deadline(releases::on_timeout)))
        .merge(s.compat.route_layer(deadline(gumroad_verify::on_timeout)))
        .merge(
            s.portal_link
                .route_layer(from_fn_with_state(app.clone(), layers::answer_floor))
                .route_layer(deadline(portal::on_link_timeout)),
        )
        .merge(s.portal.route_layer(deadline(portal::on_timeout)))
        .fallback(layers::not_found)
        .method_not_allowed_fallback(layers::method_not_allowed)
        .with_state(app.clone());
    Api { app, routes }
}

/// The router behind the edge: what the function serves. Cloning it is cheap.
#[derive(Clone)]
pub struct Api {
    app: App,
    routes: Router,
}

impl Api {
    /// Answers one API Gateway event (its JSON text). Fails only for an event that is not an HTTP API request.
    pub async fn answer(&self, event: &str) -> Result<gateway::Answer, gateway::GatewayError> {
        let request = gateway::request(event)?;
        gateway::answer(layers::edge(&self.app, &self.routes, request).await).await
    }
}

impl App {
    /// Answers one API Gateway event (its JSON) as the function does (tests call this; the function and the bench
    /// build the router once). Fails only for an event that is not an HTTP API request.
    pub async fn handle(&self, event: &str) -> Result<gateway::Answer, gateway::GatewayError> {
        router(self.clone()).answer(event).await
    }
}
