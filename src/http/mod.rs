//! The HTTP adapter: API Gateway (HTTP API) requests in, JSON responses out. Routing and the mapping of every
//! error to a status and body live here, and only here.

mod gumroad_verify;
mod jwks;
mod license_api;
mod portal;
mod response;
mod webhook;

use std::sync::Arc;

use lambda_http::{Body, Request, Response};

use crate::files::Bucket;
use crate::licensing::Checker;
use crate::mail::Mailer;
use crate::portal::{Portal, PortalSettings, WithDownloads};
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
    /// The buyer's portal: its MAC keys, limits, and the bucket downloads come from.
    pub portal: Arc<Portal>,
}

impl App {
    pub fn new(store: Arc<dyn Backend>, mailer: Arc<dyn Mailer>, vault: Arc<dyn KeyVault>) -> Self {
        Self::with_portal(store, mailer, vault, PortalSettings::default(), None)
    }

    /// The application with the portal's settings and the bucket (and credentials) downloads are presigned with.
    pub fn with_portal(
        store: Arc<dyn Backend>,
        mailer: Arc<dyn Mailer>,
        vault: Arc<dyn KeyVault>,
        settings: PortalSettings,
        files: Option<(
            Bucket,
            aws_credential_types::provider::SharedCredentialsProvider,
        )>,
    ) -> Self {
        let mut portal = Portal::new(Arc::clone(&vault), settings);
        portal.files = files;
        let portal = Arc::new(portal);
        // Key emails carry the product's download link when there is one.
        let mailer = Arc::new(WithDownloads {
            mailer,
            portal: Arc::clone(&portal),
            store: Arc::clone(&store),
        });
        Self {
            store,
            mailer,
            tenants: Arc::new(TenantCache::default()),
            keyring: Arc::new(Keyring::new(vault)),
            gumroad_api: std::env::var("GUMROAD_API_URL")
                .ok()
                .filter(|url| !url.trim().is_empty())
                .unwrap_or_else(|| crate::gumroad::readback::DEFAULT_API_URL.to_owned()),
            portal,
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
        use lambda_http::http::Method;
        portal::saw(self, &request);
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = request.method().clone();
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
            // The buyer's portal: pages, forms (each with a CSRF token once signed in) and downloads.
            ["portal", tenant_id] => match method {
                Method::GET => portal::signin_page(self, tenant_id).await,
                _ => response::method_not_allowed("GET"),
            },
            ["portal", tenant_id, "link"] => match method {
                Method::POST => portal::request_link(self, tenant_id, &request).await,
                _ => response::method_not_allowed("POST"),
            },
            ["portal", tenant_id, "signin"] => match method {
                Method::GET => portal::confirm_signin(self, tenant_id, &request).await,
                Method::POST => portal::sign_in(self, tenant_id, &request).await,
                _ => response::method_not_allowed("GET, POST"),
            },
            ["portal", tenant_id, "licenses"] => match method {
                Method::GET => portal::licenses(self, tenant_id, &request).await,
                _ => response::method_not_allowed("GET"),
            },
            [
                "portal",
                tenant_id,
                "licenses",
                license_id,
                action @ ("send-key" | "deactivate" | "replace"),
            ] => match method {
                Method::POST => portal::act(self, tenant_id, license_id, action, &request).await,
                _ => response::method_not_allowed("POST"),
            },
            ["portal", tenant_id, "signout"] => match method {
                Method::POST => portal::sign_out(self, tenant_id, &request).await,
                _ => response::method_not_allowed("POST"),
            },
            ["portal", tenant_id, "download", token] => match method {
                Method::GET => portal::download(self, tenant_id, token).await,
                _ => response::method_not_allowed("GET"),
            },
            _ => json(404, &serde_json::json!({"error": "Not found"})),
        }
    }
}
