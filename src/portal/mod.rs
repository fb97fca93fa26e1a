//! The buyer's portal: sign-in by an emailed single-use link, a signed session, the buyer's licenses for one
//! tenant, what a buyer may do with them (email the key, free a seat, replace the key) and license-gated
//! downloads. The HTTP adapter (`http::portal`) turns these into pages; nothing here knows about HTTP.

mod keys_at_rest;
mod link_queue;
pub mod pages;
mod tokens;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use time::OffsetDateTime;

use crate::domain::{Activation, License, LicenseStatus, ProductFile, Tenant};
use crate::files::Bucket;
use crate::mail::{DownloadLink, DownloadLinks, KeyEmail, MailError, Mailer};
use crate::signing::{KeyVault, VaultError};
use crate::storage::{Backend, PortalStore, StoreError};

pub use keys_at_rest::KeysAtRest;
#[cfg(feature = "cli")]
pub(crate) use link_queue::failure as queue_failure;
pub use link_queue::{LinkQueue, LinkRequest, SqsLinkQueue};
pub use tokens::{
    DownloadGrant, GrantRefused, MAC_KID, MacKey, MacKeys, Session, new_signin_token,
};

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error("key vault unavailable: {0}")]
    Vault(#[from] VaultError),
    #[error("{0}")]
    Corrupt(&'static str),
    #[error(transparent)]
    Randomness(#[from] crate::domain::RandomnessError),
    #[error("email not sent: {0}")]
    Mail(#[from] MailError),
    #[error("cannot presign the download: {0}")]
    Presign(String),
    #[error("{0}")]
    NotConfigured(&'static str),
    #[error("the sign-in queue: {0}")]
    Queue(String),
}

/// Limits and lifetimes of the portal. The defaults are what the README documents.
#[derive(Debug, Clone)]
pub struct PortalSettings {
    /// The base URL links in emails point to (`KEYSTEAD_PUBLIC_URL`, e.g. a custom domain); without it, the API's
    /// own `https://<domain>` as API Gateway reports it.
    pub public_url: Option<String>,
    /// Sign-in emails per address per 15 minutes.
    pub per_address: u32,
    /// Sign-in emails per tenant per hour, each address counted once an hour however many links it asks for.
    pub per_tenant: u32,
    /// Sign-in requests per caller (IP address) per tenant per 15 minutes, counted before anything is looked up.
    pub per_ip: u32,
    /// Every sign-in request is answered no sooner than this, so that sending a mail or not takes alike.
    pub answer_floor: Duration,
}

impl Default for PortalSettings {
    fn default() -> Self {
        Self {
            public_url: std::env::var("KEYSTEAD_PUBLIC_URL")
                .ok()
                .filter(|v| !v.is_empty()),
            per_address: 3,
            per_tenant: 100,
            per_ip: 20,
            answer_floor: Duration::from_millis(400),
        }
    }
}

/// How long a sign-in link works.
pub const SIGNIN_LINK_LIFETIME: i64 = 15 * 60;
/// How long a download link shown on the buyer's page works.
pub const PAGE_LINK_LIFETIME: i64 = 3600;
/// How long a download link in a key email works (after that, the portal gives a fresh one).
pub const EMAIL_LINK_LIFETIME: i64 = 30 * 24 * 3600;
/// How long the presigned S3 URL a download redirects to works: long enough to start, resumable with Range.
pub const PRESIGNED_LIFETIME: Duration = Duration::from_secs(300);

/// The portal's state, built once per process.
pub struct Portal {
    pub keys: MacKeys,
    pub settings: PortalSettings,
    /// The stack's bucket and the credentials that presign downloads; `None` turns downloads off.
    pub files: Option<(Bucket, SharedCredentialsProvider)>,
    /// The API's URL as the first request saw it, when no `public_url` is set.
    seen_base: Mutex<Option<String>>,
}

impl Portal {
    pub fn new(vault: Arc<dyn KeyVault>, settings: PortalSettings) -> Self {
        Self::with_keys(MacKeys::new(vault), settings)
    }

    /// The portal over an existing cache of the tenants' data keys (shared with the store's `KeysAtRest`).
    pub fn with_keys(keys: MacKeys, settings: PortalSettings) -> Self {
        Self {
            keys,
            settings,
            files: None,
            seen_base: Mutex::new(None),
        }
    }

    /// Remembers the API's own domain (from API Gateway's request context, never a client's header).
    pub fn saw_domain(&self, domain: &str) {
        if self.settings.public_url.is_some() || domain.is_empty() {
            return;
        }
        if let Ok(mut seen) = self.seen_base.lock()
            && seen.is_none()
        {
            *seen = Some(format!("https://{domain}"));
        }
    }

    /// Where links in emails point.
    pub fn base_url(&self) -> Option<String> {
        self.settings
            .public_url
            .clone()
            .or_else(|| self.seen_base.lock().ok().and_then(|seen| seen.clone()))
            .map(|url| url.trim_end_matches('/').to_owned())
    }

    /// A download link for `license`'s product file, valid for `lifetime` seconds; `None` when the product has no
    /// file or downloads are off.
    pub async fn download_link(
        &self,
        store: &dyn PortalStore,
        tenant: &Tenant,
        license: &License,
        lifetime: i64,
        now: i64,
    ) -> Result<Option<DownloadLink>, PortalError> {
        let (Some(file), Some(base)) = (product_file(tenant, license), self.base_url()) else {
            return Ok(None);
        };
        if self.files.is_none() {
            return Ok(None);
        }
        let key = self.keys.for_tenant(store, &tenant.tenant_id).await?;
        let token = DownloadGrant {
            key_hash: license.key_hash.clone(),
            product_id: license.product_id.clone(),
            expires_at: now + lifetime,
            release_file: None,
        }
        .token(&key, &tenant.tenant_id);
        Ok(Some(DownloadLink {
            url: format!("{base}/portal/{}/download/{token}", tenant.tenant_id),
            name: file.name.clone(),
            size: file.human_size(),
            sha256: file.sha256.clone(),
        }))
    }

    /// The presigned S3 URL a download redirects to.
    pub async fn presign(&self, file: &ProductFile) -> Result<String, PortalError> {
        self.presign_object(&file.s3_key, &file.name).await
    }

    /// The presigned S3 URL of any object of the bucket, saved as `name`.
    pub async fn presign_object(&self, key: &str, name: &str) -> Result<String, PortalError> {
        let (bucket, credentials) = self
            .files
            .as_ref()
            .ok_or(PortalError::NotConfigured("downloads are not configured"))?;
        let credentials = credentials
            .provide_credentials()
            .await
            .map_err(|e| PortalError::Presign(e.to_string()))?;
        bucket
            .presigned_get_object()
            .key(key)
            .filename(name)
            .expires_in(PRESIGNED_LIFETIME)
            .sign(&credentials, SystemTime::now())
            .map_err(|e| PortalError::Presign(e.0))
    }
}

impl Portal {
    /// The stable releases `license` may have, of its product and of the products of its family (its tiers),
    /// newest first, each installer with a download link good for `lifetime` seconds.
    pub async fn release_links(
        &self,
        store: &dyn Backend,
        tenant: &Tenant,
        license: &License,
        lifetime: i64,
        now: OffsetDateTime,
    ) -> Result<Vec<ReleaseView>, PortalError> {
        use crate::domain::releases::{Access, Channel, access, released_at};
        let Some(base) = self.base_url() else {
            return Ok(Vec::new());
        };
        if self.files.is_none() {
            return Ok(Vec::new());
        }
        let entitlements = tenant
            .products
            .get(&license.product_id)
            .map(|p| p.entitlements.clone())
            .unwrap_or_default();
        let mut shown = Vec::new();
        for product in tenant
            .products
            .values()
            .filter(|p| tenant.same_product_family(&p.product_id, &license.product_id))
        {
            for release in store
                .releases(&tenant.tenant_id, &product.product_id)
                .await?
            {
                let granted = access(
                    license,
                    &entitlements,
                    &product.releases,
                    &release,
                    Channel::Stable,
                    now,
                ) == Access::Granted;
                if granted && let Some(version) = release.parsed_version() {
                    shown.push((version, product.product_id.clone(), release));
                }
            }
        }
        shown
            .sort_by(|(a, _, ra), (b, _, rb)| b.cmp(a).then_with(|| ra.platform.cmp(&rb.platform)));
        shown.truncate(RELEASES_SHOWN);
        if shown.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.keys.for_tenant(store, &tenant.tenant_id).await?;
        let expires_at = now.unix_timestamp() + lifetime;
        Ok(shown
            .into_iter()
            .map(|(_, product_id, release)| ReleaseView {
                files: release
                    .files
                    .iter()
                    .filter(|f| matches!(f.kind, crate::domain::releases::AssetKind::Installer))
                    .map(|file| {
                        let token = DownloadGrant {
                            key_hash: license.key_hash.clone(),
                            product_id: product_id.clone(),
                            expires_at,
                            release_file: Some((release.version.clone(), file.name.clone())),
                        }
                        .token(&key, &tenant.tenant_id);
                        DownloadLink {
                            url: format!("{base}/portal/{}/download/{token}", tenant.tenant_id),
                            name: file.name.clone(),
                            size: ProductFile::human_size_of(file.size),
                            sha256: file.sha256.clone(),
                        }
                    })
                    .collect(),
                target: format!("{} {}", release.platform, release.arch),
                released_at: released_at(&release).to_owned(),
                notes: release.notes.clone(),
                version: release.version,
            })
            .collect())
    }
}

pub fn product_file<'t>(tenant: &'t Tenant, license: &License) -> Option<&'t ProductFile> {
    tenant
        .products
        .get(&license.product_id)
        .and_then(|p| p.file.as_ref())
}

pub(crate) fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// One of the buyer's licenses as the page shows it.
pub struct LicenseView {
    pub license: License,
    pub status: LicenseStatus,
    pub machines: Vec<Activation>,
    pub download: Option<DownloadLink>,
    /// The stable releases the license may download, newest first (issue 26).
    pub releases: Vec<ReleaseView>,
}

/// A release as the portal lists it: its version, target, notes and installers' download links.
pub struct ReleaseView {
    pub version: String,
    pub target: String,
    pub notes: Option<String>,
    pub released_at: String,
    pub files: Vec<DownloadLink>,
}

/// The portal lists at most this many releases per license (the newest).
pub const RELEASES_SHOWN: usize = 10;

/// The key emails of a process that knows where the portal is carry the product's download link.
pub struct WithDownloads {
    pub mailer: Arc<dyn Mailer>,
    pub portal: Arc<Portal>,
    pub store: Arc<dyn Backend>,
}

#[async_trait::async_trait]
impl Mailer for WithDownloads {
    async fn send(&self, email: &KeyEmail) -> Result<String, MailError> {
        self.mailer.send(email).await
    }

    fn download_links(&self) -> Option<&dyn DownloadLinks> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl DownloadLinks for WithDownloads {
    async fn for_license(&self, tenant: &Tenant, license: &License) -> Option<DownloadLink> {
        match self
            .portal
            .download_link(
                self.store.as_ref(),
                tenant,
                license,
                EMAIL_LINK_LIFETIME,
                now_unix(),
            )
            .await
        {
            Ok(link) => link,
            Err(err) => {
                // The key matters more than the link: the email goes out without it.
                tracing::warn!(tenant = %tenant.tenant_id, error = %err, "no download link in the key email");
                None
            }
        }
    }
}
