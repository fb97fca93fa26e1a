//! License-gated releases (issue 26): which releases a license may have, for the update feeds (Sparkle, Tauri,
//! electron-updater, JSON) and the download that sends an updater to the file. A feed costs one read of the
//! license (the tenant and the product's releases usually come from this process's caches).

use std::sync::Arc;

use time::OffsetDateTime;

use super::App;
use super::licenses::{self, LicenseApiError, LicenseRequest};
use crate::domain::releases::{
    Access, Arch, Asset, Channel, FileRefused, Platform, Release, ReleaseSettings, Version, access,
    granted_file, newest,
};
use crate::domain::{License, ProductId, Tenant, TenantId};
use crate::portal::PortalError;
use crate::storage::StoreError;

/// Why a feed or a download answers no release.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// No key, or a key that names no license of this product: `401`.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A license without the right: `403`, with the reason.
    #[error("{0}")]
    Forbidden(&'static str),
    /// An unknown product, version or file: `404`.
    #[error("{0}")]
    NotFound(&'static str),
    /// A malformed parameter: `400`.
    #[error("{0}")]
    Invalid(String),
    /// The license's downloads for today are used up: `429`.
    #[error("Too many downloads for this license today; try again tomorrow")]
    TooMany,
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error("{0}")]
    Unavailable(String),
}

impl From<LicenseApiError> for FeedError {
    fn from(err: LicenseApiError) -> Self {
        match err {
            LicenseApiError::Storage(e) => Self::Storage(e),
            LicenseApiError::Signing(e) => Self::Unavailable(e.to_string()),
            LicenseApiError::Invalid(_) => Self::Unauthorized("Missing license key"),
            _ => Self::Unauthorized("Invalid license key"),
        }
    }
}

impl From<PortalError> for FeedError {
    fn from(err: PortalError) -> Self {
        match err {
            PortalError::Storage(e) => Self::Storage(e),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// Who asks: the feed's tenant and product, the key (header or `?key=`), and the machine when the app sends one.
pub struct Caller<'a> {
    pub tenant: &'a str,
    pub product: &'a str,
    pub key: Option<&'a str>,
    pub machine: Option<&'a str>,
}

/// A license allowed to read the feed, with what decides which releases it gets.
pub struct Reader {
    pub license: License,
    pub tenant: Arc<Tenant>,
    pub product_id: ProductId,
    pub entitlements: Vec<String>,
    pub settings: ReleaseSettings,
}

/// Which releases a feed lists: the updater's platform and arch (either may be open), and the channel followed.
#[derive(Debug, Clone, Copy)]
pub struct Filter {
    pub platform: Option<Platform>,
    pub arch: Option<Arch>,
    pub channel: Channel,
}

/// How many downloads one license may start a day through the feeds (each is the seller's S3 egress).
pub const RELEASE_DOWNLOADS_PER_DAY: u32 = 100;

/// The license a feed request names, checked: a key of this product (or one of its tiers), not suspended or
/// revoked, and when a machine is named, a machine holding a seat.
pub async fn reader(app: &App, caller: &Caller<'_>) -> Result<Reader, FeedError> {
    let tenant_id =
        TenantId::parse(caller.tenant).map_err(|_| FeedError::NotFound("Unknown product"))?;
    let product_id =
        ProductId::parse(caller.product).map_err(|_| FeedError::NotFound("Unknown product"))?;
    let key = caller
        .key
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(FeedError::Unauthorized("Missing license key"))?;
    let request = LicenseRequest {
        key: Some(key.to_owned()),
        product_id: None,
        machine_id: caller.machine.map(str::to_owned),
        label: None,
        nonce: None,
    };
    let machine = caller
        .machine
        .map(|m| licenses::machine_id(Some(m)))
        .transpose()
        .map_err(|e| FeedError::Invalid(e.to_string()))?;
    let store = app.store.as_ref();
    let (found, tenant, seat) = tokio::join!(
        licenses::find(store, caller.tenant, &request),
        app.tenants.tenant(store, &tenant_id),
        licenses::seat_of(store, caller.tenant, &request, machine.as_deref()),
    );
    let tenant = tenant?.ok_or(FeedError::NotFound("Unknown product"))?;
    let product = tenant
        .products
        .get(&product_id)
        .ok_or(FeedError::NotFound("Unknown product"))?;
    let (_, license) = found?;
    if !tenant.same_product_family(&product_id, &license.product_id) {
        return Err(FeedError::Unauthorized("Invalid license key"));
    }
    if machine.is_some() {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        match seat? {
            Some(seat) if seat.seat_until.is_none_or(|until| until > now) => {}
            _ => {
                return Err(FeedError::Forbidden(
                    "This machine holds no seat of the license",
                ));
            }
        }
    }
    let entitlements = tenant
        .products
        .get(&license.product_id)
        .map(|p| p.entitlements.clone())
        .unwrap_or_default();
    let settings = product.releases.clone();
    match access_status(&license) {
        Some(reason) => Err(FeedError::Forbidden(reason)),
        None => Ok(Reader {
            license,
            tenant: Arc::clone(&tenant),
            product_id,
            entitlements,
            settings,
        }),
    }
}

/// Suspended and revoked licenses get nothing, not even the feed.
fn access_status(license: &License) -> Option<&'static str> {
    use crate::domain::LicenseStatus::{Revoked, Suspended};
    match crate::domain::effective_status(license, OffsetDateTime::now_utc()) {
        status @ (Suspended | Revoked) => Some(reason(Access::NotActive(status))),
        _ => None,
    }
}

impl Reader {
    pub fn access(&self, release: &Release, channel: Channel, now: OffsetDateTime) -> Access {
        access(
            &self.license,
            &self.entitlements,
            &self.settings,
            release,
            channel,
            now,
        )
    }
}

/// The releases `reader` may have that match `filter`, newest version first.
pub async fn visible(
    app: &App,
    reader: &Reader,
    filter: Filter,
) -> Result<Vec<Release>, FeedError> {
    let all = app
        .releases
        .releases(
            app.store.as_ref(),
            &reader.tenant.tenant_id,
            &reader.product_id,
        )
        .await?;
    let now = OffsetDateTime::now_utc();
    let mut releases: Vec<(Version, Release)> = all
        .iter()
        .filter(|r| filter.platform.is_none_or(|p| r.platform == p))
        .filter(|r| filter.arch.is_none_or(|a| r.arch.runs_on(a)))
        .filter(|r| reader.access(r, filter.channel, now) == Access::Granted)
        .filter_map(|r| r.parsed_version().map(|v| (v, r.clone())))
        .collect();
    releases.sort_by(|(a, ra), (b, rb)| b.cmp(a).then_with(|| rb.created_at.cmp(&ra.created_at)));
    Ok(releases.into_iter().map(|(_, r)| r).collect())
}

/// The newest release `reader` may have for an updater at `current`, if it is newer.
pub async fn update(
    app: &App,
    reader: &Reader,
    filter: Filter,
    current: &Version,
) -> Result<Option<Release>, FeedError> {
    let releases = visible(app, reader, filter).await?;
    Ok(newest(&releases)
        .filter(|r| r.parsed_version().is_some_and(|v| v > *current))
        .cloned())
}

/// Where a download goes: a short-lived presigned URL of one release file.
pub struct Download {
    pub url: String,
    pub asset: Asset,
}

/// Checks that `reader` may have `filename` of `version` and presigns it. An unknown version or file (drafts
/// and yanked releases included) is `404`; a release the license may not have is `403` with the reason.
pub async fn download(
    app: &App,
    reader: &Reader,
    version: &str,
    filename: &str,
) -> Result<Download, FeedError> {
    let all = app
        .releases
        .releases(
            app.store.as_ref(),
            &reader.tenant.tenant_id,
            &reader.product_id,
        )
        .await?;
    let version = Version::parse(version).map_err(|_| FeedError::NotFound("Unknown version"))?;
    let now = OffsetDateTime::now_utc();
    let asset = granted_file(&all, version.as_str(), filename, |release| {
        reader.access(release, release.channel, now)
    })
    .map_err(|refused| match refused {
        FileRefused::UnknownVersion => FeedError::NotFound("Unknown version"),
        FileRefused::UnknownFile => FeedError::NotFound("Unknown file"),
        FileRefused::Refused(access) => FeedError::Forbidden(reason(access)),
    })?;
    count_download(app, reader, now).await?;
    let url = app
        .portal
        .presign_object(&asset.s3_key, &asset.name)
        .await?;
    Ok(Download {
        url,
        asset: asset.clone(),
    })
}

async fn count_download(app: &App, reader: &Reader, now: OffsetDateTime) -> Result<(), FeedError> {
    let day = now.unix_timestamp() / 86_400;
    let counted = app
        .store
        .count_use(
            &reader.tenant.tenant_id,
            &format!("release-download#{}#{day}", reader.license.license_id),
            RELEASE_DOWNLOADS_PER_DAY,
            (day + 2) * 86_400,
        )
        .await?;
    if counted {
        Ok(())
    } else {
        Err(FeedError::TooMany)
    }
}

/// What a `403` says.
pub fn reason(access: Access) -> &'static str {
    match access {
        Access::Granted => "Granted",
        Access::NotActive(crate::domain::LicenseStatus::Suspended) => "License suspended",
        Access::NotActive(_) => "License revoked",
        Access::Unlisted => "Release not published",
        Access::OtherChannel => "Release is in another channel",
        Access::MissingEntitlement => "License lacks an entitlement this release requires",
        Access::Expired => "License expired before this release",
        Access::OutsideUpdateWindow => "Release is outside the license's update window",
    }
}
