//! The HTTP adapter: API Gateway (HTTP API) requests in, JSON responses out. Routing and the mapping of every
//! error to a status and body live here, and only here.

mod gumroad_verify;
mod jwks;
mod license_api;
mod response;
mod webhook;

use std::sync::Arc;

use lambda_http::{Body, Request, Response};

use crate::licensing::Checker;
use crate::mail::Mailer;
use crate::signing::{KeyVault, Keyring};
use crate::storage::{Backend, TenantCache};

pub use response::json;

/// The function's state, built once per process and shared by every request.
#[derive(Clone)]
pub struct App {
    pub store: Arc<dyn Backend>,
    pub mailer: Arc<dyn Mailer>,
    /// Each tenant (its products and keys) for up to a minute: a license check is one read of the license.
    pub tenants: Arc<TenantCache>,
    /// The signing keys this process has opened: KMS is asked once per key.
    pub keyring: Arc<Keyring>,
    /// Gumroad's API, for reading sales back (`GUMROAD_API_URL`, default Gumroad's own).
    pub gumroad_api: String,
}

impl App {
    pub fn new(store: Arc<dyn Backend>, mailer: Arc<dyn Mailer>, vault: Arc<dyn KeyVault>) -> Self {
        Self {
            store,
            mailer,
            tenants: Arc::new(TenantCache::default()),
            keyring: Arc::new(Keyring::new(vault)),
            gumroad_api: std::env::var("GUMROAD_API_URL")
                .ok()
                .filter(|url| !url.trim().is_empty())
                .unwrap_or_else(|| crate::gumroad::readback::DEFAULT_API_URL.to_owned()),
        }
    }

    /// The same application reading sales back from another Gumroad API base (tests use a fake Gumroad).
    pub fn with_gumroad_api(mut self, base: &str) -> Self {
        self.gumroad_api = base.to_owned();
        self
    }

    /// The same application with tenants re-read after `ttl` (tests that change a product or a key use zero).
    pub fn with_tenant_cache_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.tenants = Arc::new(TenantCache::new(ttl));
        self
    }

    pub fn checker(&self) -> Checker<'_> {
        Checker {
            store: self.store.as_ref(),
            tenants: self.tenants.as_ref(),
            keyring: self.keyring.as_ref(),
        }
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
            ["gumroad", tenant_id, "v2", "licenses", "verify"] => {
                if request.method() == lambda_http::http::Method::POST {
                    gumroad_verify::handle(self, tenant_id, &request).await
                } else {
                    response::method_not_allowed("POST")
                }
            }
            ["v1", tenant_id, "jwks.json"] => {
                if request.method() == lambda_http::http::Method::GET {
                    jwks::handle(self, tenant_id).await
                } else {
                    response::method_not_allowed("GET")
                }
            }
            _ => json(404, &serde_json::json!({"error": "Not found"})),
        }
    }
}
