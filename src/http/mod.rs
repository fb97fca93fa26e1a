//! The HTTP adapter: API Gateway (HTTP API) requests in, JSON responses out. Routing and the mapping of every
//! error to a status and body live here, and only here.

mod license_api;
mod response;
mod webhook;

use std::sync::Arc;

use lambda_http::{Body, Request, Response};

use crate::licensing::ProductCache;
use crate::mail::Mailer;
use crate::storage::Backend;

pub use response::json;

/// The function's state, built once per process and shared by every request.
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Backend>,
    pub mailer: Arc<dyn Mailer>,
    /// Each tenant's products for up to a minute: entitlements without a second read per license check.
    pub products: Arc<ProductCache>,
}

impl App {
    pub fn new(store: Arc<dyn Backend>, mailer: Arc<dyn Mailer>) -> Self {
        Self {
            store,
            mailer,
            products: Arc::new(ProductCache::default()),
        }
    }

    /// The same application with products re-read after `ttl` (tests that change a product use zero).
    pub fn with_product_cache_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.products = Arc::new(ProductCache::new(ttl));
        self
    }

    /// Answers every request; never fails and never panics on input.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segments.as_slice() {
            ["webhooks", "gumroad", tenant_id] => {
                if request.method() == lambda_http::http::Method::POST {
                    webhook::handle(self, tenant_id, &request).await
                } else {
                    response::method_not_allowed("POST")
                }
            }
            [
                "v1",
                tenant_id,
                "licenses",
                action @ ("validate" | "activate" | "deactivate"),
            ] => {
                if request.method() == lambda_http::http::Method::POST {
                    license_api::handle(self, tenant_id, action, &request).await
                } else {
                    response::method_not_allowed("POST")
                }
            }
            _ => json(404, &serde_json::json!({"error": "Not found"})),
        }
    }
}
