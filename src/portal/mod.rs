//! The buyer's portal: sign-in by an emailed single-use link, a signed session, the buyer's licenses for one
//! tenant, what a buyer may do with them (email the key, free a seat, replace the key) and license-gated
//! downloads. The HTTP adapter (`http::portal`) turns these into pages; nothing here knows about HTTP.

pub mod pages;
mod tokens;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use time::OffsetDateTime;

use crate::domain::{
    Activation, Email, License, LicenseStatus, ProductFile, Tenant, TenantId, sha256_hex,
};
use crate::files::Bucket;
use crate::licensing::effective_status;
use crate::mail::{DownloadLink, DownloadLinks, KeyEmail, MailError, Mailer};
use crate::signing::{KeyVault, VaultError};
use crate::storage::{Backend, PortalStore, StoreError};

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
}

/// Limits and lifetimes of the portal. The defaults are what the README documents.
#[derive(Debug, Clone)]
pub struct PortalSettings {
    /// The base URL links in emails point to (`KEYSTEAD_PUBLIC_URL`, e.g. a custom domain); without it, the API's
    /// own `https://<domain>` as API Gateway reports it.
    pub public_url: Option<String>,
    /// Sign-in emails per address per 15 minutes.
    pub per_address: u32,
    /// Sign-in emails per tenant per hour.
    pub per_tenant: u32,
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
        Self {
            keys: MacKeys::new(vault),
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
            .key(&file.s3_key)
            .filename(&file.name)
            .expires_in(PRESIGNED_LIFETIME)
            .sign(&credentials, SystemTime::now())
            .map_err(|e| PortalError::Presign(e.0))
    }
}

pub fn product_file<'t>(tenant: &'t Tenant, license: &License) -> Option<&'t ProductFile> {
    tenant
        .products
        .get(&license.product_id)
        .and_then(|p| p.file.as_ref())
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// What happened to a sign-in request. The buyer sees the same page whatever it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOutcome {
    Sent,
    NoLicenses,
    Limited,
}

impl LinkOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::NoLicenses => "no_licenses",
            Self::Limited => "rate_limited",
        }
    }
}

/// Emails a single-use sign-in link to `email` if it bought something from `tenant` and no limit is reached.
pub async fn request_link(
    portal: &Portal,
    store: &dyn Backend,
    mailer: &dyn Mailer,
    tenant: &Tenant,
    email: &Email,
) -> Result<LinkOutcome, PortalError> {
    let now = now_unix();
    let tenant_id = &tenant.tenant_id;
    let address = sha256_hex(&email.as_str().to_ascii_lowercase());
    let quarter = now / 900;
    let hour = now / 3600;
    if !store
        .count_use(
            tenant_id,
            &format!("email#{address}#{quarter}"),
            portal.settings.per_address,
            (quarter + 2) * 900,
        )
        .await?
    {
        return Ok(LinkOutcome::Limited);
    }
    // The link goes to the address as the buyer bought with it (the lookup ignores letter case).
    let Some(to) = store
        .licenses_by_email(tenant_id, email)
        .await?
        .into_iter()
        .next()
        .map(|license| license.buyer_email)
    else {
        return Ok(LinkOutcome::NoLicenses);
    };
    // The tenant's budget counts mails, not requests: strangers' addresses cannot use it up for the buyers.
    if !store
        .count_use(
            tenant_id,
            &format!("tenant#{hour}"),
            portal.settings.per_tenant,
            (hour + 2) * 3600,
        )
        .await?
    {
        return Ok(LinkOutcome::Limited);
    }
    let Some(base) = portal.base_url() else {
        return Err(PortalError::NotConfigured(
            "the API's URL is not known yet (set KEYSTEAD_PUBLIC_URL)",
        ));
    };
    let token = new_signin_token()?;
    store
        .put_signin(
            tenant_id,
            &sha256_hex(&token),
            &to,
            now + SIGNIN_LINK_LIFETIME,
        )
        .await?;
    let link = format!("{base}/portal/{tenant_id}/signin?token={token}");
    mailer
        .send(&pages::signin_email(&tenant.sender, &to, tenant_id, &link))
        .await?;
    Ok(LinkOutcome::Sent)
}

/// Uses a sign-in token: a new session for its address, or `None` when it is unknown, used or expired.
pub async fn sign_in(
    store: &dyn Backend,
    tenant_id: &TenantId,
    token: &str,
) -> Result<Option<Session>, PortalError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(None);
    }
    let now = now_unix();
    match store
        .take_signin(tenant_id, &sha256_hex(token), now)
        .await?
    {
        Some(email) => Ok(Some(Session::new(email, now)?)),
        None => Ok(None),
    }
}

/// Whether a sign-in token still works (the confirmation page), without using it.
pub async fn link_usable(
    store: &dyn Backend,
    tenant_id: &TenantId,
    token: &str,
) -> Result<bool, PortalError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(false);
    }
    Ok(store
        .signin_usable(tenant_id, &sha256_hex(token), now_unix())
        .await?)
}

/// One of the buyer's licenses as the page shows it.
pub struct LicenseView {
    pub license: License,
    pub status: LicenseStatus,
    pub machines: Vec<Activation>,
    pub download: Option<DownloadLink>,
}

/// The signed-in buyer's licenses with their machines and downloads, newest first.
pub async fn buyer_licenses(
    portal: &Portal,
    store: &dyn Backend,
    tenant: &Tenant,
    email: &Email,
) -> Result<Vec<LicenseView>, PortalError> {
    let now = OffsetDateTime::now_utc();
    let mut views = Vec::new();
    for license in store.licenses_by_email(&tenant.tenant_id, email).await? {
        let status = effective_status(&license, now);
        let machines = store
            .activations(&tenant.tenant_id, &license.key_hash)
            .await?;
        let download = if status == LicenseStatus::Active {
            portal
                .download_link(
                    store,
                    tenant,
                    &license,
                    PAGE_LINK_LIFETIME,
                    now.unix_timestamp(),
                )
                .await?
        } else {
            None
        };
        views.push(LicenseView {
            license,
            status,
            machines,
            download,
        });
    }
    Ok(views)
}

/// The buyer's license with this id, or `None` when the buyer has none such.
pub async fn buyer_license(
    store: &dyn Backend,
    tenant: &Tenant,
    email: &Email,
    license_id: &str,
) -> Result<Option<License>, PortalError> {
    Ok(store
        .licenses_by_email(&tenant.tenant_id, email)
        .await?
        .into_iter()
        .find(|l| l.license_id == license_id))
}

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
