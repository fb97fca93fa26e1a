//! The use cases: one file per thing a seller, a buyer, an app or Gumroad does, free of HTTP and AWS types. Each
//! takes typed input and the ports it needs (`storage`, `mail`, `signing`), and answers with a typed result that
//! the HTTP adapter (`crate::http`) or the CLI renders.
//!
//! Gumroad: `receive_ping` (authenticate, classify, then) `record_sale` or `apply_event`. Apps: `validate`,
//! `activate`, `deactivate` (sharing `licenses`), `key_set` (the public keys leases verify with), and
//! `verify_gumroad` for apps still on Gumroad's API. Buyers:
//! `sign_in`, `buyer_licenses` (send the key, free a seat, `replace_key`) and `download`. `authenticate` checks
//! a ping's token.

pub mod activate;
pub mod apply_event;
pub mod authenticate;
pub mod buyer_licenses;
pub mod deactivate;
pub mod download;
pub mod key_set;
pub mod licenses;
pub mod ping_budget;
pub mod receive_ping;
pub mod reconcile;
pub mod record_sale;
pub mod releases;
pub mod replace_key;
pub mod sign_in;
pub mod validate;
pub mod verify_gumroad;

use std::sync::Arc;

use crate::files::Bucket;
use crate::mail::Mailer;
use crate::portal::{LinkQueue, MacKeys, Portal, PortalSettings, WithDownloads};
use crate::signing::{KeyVault, Keyring};
use crate::storage::{Backend, ReleaseCache, TenantCache};
use licenses::Checker;

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
    pub gumroad_api: Arc<str>,
    /// The buyer's portal: its MAC keys, limits, and the bucket downloads come from.
    pub portal: Arc<Portal>,
    /// With the WAF edge (`EdgeProtection=waf`), the secret CloudFront adds to every request it forwards
    /// (`KEYSTEAD_EDGE_SECRET`): a request without it did not come through the edge and is refused.
    pub edge_secret: Option<Arc<str>>,
    /// Failed authentications per tenant in this process (`ping_budget`).
    pub ping_budget: Arc<ping_budget::PingBudget>,
    /// Where sign-in requests wait for their mail (`KEYSTEAD_SIGNIN_QUEUE_URL`); without one, the link is mailed
    /// before the answer.
    pub link_queue: Option<Arc<dyn LinkQueue>>,
    /// Each product's releases for a short while: a feed is one read of the license.
    pub releases: Arc<ReleaseCache>,
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
        let keys = MacKeys::new(Arc::clone(&vault));
        Self::with_portal_keys(store, mailer, vault, settings, files, keys)
    }

    /// The same, with the tenants' data keys opened through `keys` (the handle the store's `KeysAtRest` holds, so
    /// a cold process opens each tenant's key once, not once for the portal and once for the keys at rest).
    pub fn with_portal_keys(
        store: Arc<dyn Backend>,
        mailer: Arc<dyn Mailer>,
        vault: Arc<dyn KeyVault>,
        settings: PortalSettings,
        files: Option<(
            Bucket,
            aws_credential_types::provider::SharedCredentialsProvider,
        )>,
        keys: MacKeys,
    ) -> Self {
        let mut portal = Portal::with_keys(keys, settings);
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
                .unwrap_or_else(|| crate::gumroad::readback::DEFAULT_API_URL.to_owned())
                .into(),
            portal,
            ping_budget: Arc::default(),
            edge_secret: std::env::var("KEYSTEAD_EDGE_SECRET")
                .ok()
                .filter(|secret| !secret.trim().is_empty())
                .map(Arc::from),
            link_queue: None,
            releases: Arc::default(),
        }
    }

    /// The same application mailing sign-in links after answering, from `queue`.
    pub fn with_link_queue(mut self, queue: Arc<dyn LinkQueue>) -> Self {
        self.link_queue = Some(queue);
        self
    }

    /// The same application behind the WAF edge: only requests carrying `secret` are served.
    pub fn with_edge_secret(mut self, secret: &str) -> Self {
        self.edge_secret = Some(Arc::from(secret));
        self
    }

    /// The same application reading sales back from another Gumroad API base (tests use a fake Gumroad).
    pub fn with_gumroad_api(mut self, base: &str) -> Self {
        self.gumroad_api = base.into();
        self
    }

    /// The same application with tenants re-read after `ttl` (tests that change a product or a key use zero).
    pub fn with_tenant_cache_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.tenants = Arc::new(TenantCache::new(ttl));
        self.releases = Arc::new(ReleaseCache::new(ttl));
        self
    }

    pub fn checker(&self) -> Checker<'_> {
        Checker {
            store: self.store.as_ref(),
            tenants: self.tenants.as_ref(),
            keyring: self.keyring.as_ref(),
        }
    }
}
