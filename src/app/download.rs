//! Send a download: a signed download link is good while it has not expired, its key is still the license's, and
//! the license is active; then the buyer is sent to a short-lived presigned URL of the product's file.

use time::OffsetDateTime;

use super::App;
use crate::domain::releases::{Access, Asset, FileRefused, access, granted_file};
use crate::domain::{LicenseId, LicenseStatus, Tenant, effective_status};
use crate::portal::{self, DownloadGrant, GrantRefused, PortalError};

/// Why a download link gives no file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadRefused {
    InvalidLink,
    ExpiredLink,
    /// The key was replaced, or the license no longer exists.
    NoLicense,
    NotActive(LicenseStatus),
    NoFile,
    /// The license's downloads for today are used up.
    TooMany,
}

impl DownloadRefused {
    /// The outcome's name in the log.
    pub fn outcome(self) -> &'static str {
        match self {
            Self::InvalidLink => "invalid_link",
            Self::ExpiredLink => "expired_link",
            Self::NoLicense => "no_license",
            Self::NotActive(_) => "not_active",
            Self::NoFile => "no_file",
            Self::TooMany => "rate_limited",
        }
    }
}

/// How many downloads one license may start a day: plenty for a buyer and their machines, few for a link
/// posted to a forum (every download is the seller's S3 egress).
pub const DOWNLOADS_PER_DAY: u32 = 20;

/// Where to send the buyer: a presigned URL, for the license with this id.
pub struct Granted {
    pub url: String,
    pub license_id: LicenseId,
}

/// Checks a download link's `token` and presigns the file it grants.
pub async fn download(
    app: &App,
    tenant: &Tenant,
    token: &str,
) -> Result<Result<Granted, DownloadRefused>, PortalError> {
    let tenant_id = &tenant.tenant_id;
    let key = app
        .portal
        .keys
        .for_tenant(app.store.as_ref(), tenant_id)
        .await?;
    let now = OffsetDateTime::now_utc();
    let grant = match DownloadGrant::from_token(token, &key, tenant_id, now.unix_timestamp()) {
        Ok(grant) => grant,
        Err(GrantRefused::Invalid) => return Ok(Err(DownloadRefused::InvalidLink)),
        Err(GrantRefused::Expired) => return Ok(Err(DownloadRefused::ExpiredLink)),
    };
    let license = match app.store.get_license(tenant_id, &grant.key_hash).await? {
        Some(license) if tenant.same_product_family(&grant.product_id, &license.product_id) => {
            license
        }
        _ => return Ok(Err(DownloadRefused::NoLicense)),
    };
    let (s3_key, name) = match &grant.release_file {
        None => {
            if license.product_id != grant.product_id {
                return Ok(Err(DownloadRefused::NoLicense));
            }
            match effective_status(&license, now) {
                LicenseStatus::Active => {}
                status => return Ok(Err(DownloadRefused::NotActive(status))),
            }
            let Some(file) = portal::product_file(tenant, &license) else {
                return Ok(Err(DownloadRefused::NoFile));
            };
            (file.s3_key.clone(), file.name.clone())
        }
        Some((version, name)) => {
            match release_file(app, tenant, &license, &grant.product_id, version, name, now).await?
            {
                Ok(asset) => (asset.s3_key, asset.name),
                Err(refused) => return Ok(Err(refused)),
            }
        }
    };
    let day = now.unix_timestamp() / 86_400;
    let counted = app
        .store
        .count_use(
            tenant_id,
            &format!("download#{}#{day}", license.license_id),
            DOWNLOADS_PER_DAY,
            (day + 2) * 86_400,
        )
        .await?;
    if !counted {
        return Ok(Err(DownloadRefused::TooMany));
    }
    let url = app.portal.presign_object(&s3_key, &name).await?;
    Ok(Ok(Granted {
        url,
        license_id: license.license_id,
    }))
}

/// A release's file the license may still have: the release published and in reach of the license (the same
/// rules as the feeds, in the release's own channel).
async fn release_file(
    app: &App,
    tenant: &Tenant,
    license: &crate::domain::License,
    product_id: &crate::domain::ProductId,
    version: &str,
    name: &str,
    now: OffsetDateTime,
) -> Result<Result<Asset, DownloadRefused>, PortalError> {
    let Some(product) = tenant.products.get(product_id) else {
        return Ok(Err(DownloadRefused::NoFile));
    };
    let entitlements = tenant
        .products
        .get(&license.product_id)
        .map(|p| p.entitlements.clone())
        .unwrap_or_default();
    let releases = app
        .releases
        .releases(app.store.as_ref(), &tenant.tenant_id, product_id)
        .await?;
    let granted = granted_file(&releases, version, name, |release| {
        access(
            license,
            &entitlements,
            &product.releases,
            release,
            release.channel,
            now,
        )
    });
    Ok(match granted {
        Ok(asset) => Ok(asset.clone()),
        Err(FileRefused::Refused(Access::NotActive(status))) => {
            Err(DownloadRefused::NotActive(status))
        }
        Err(FileRefused::Refused(Access::Expired)) => {
            Err(DownloadRefused::NotActive(LicenseStatus::Expired))
        }
        Err(_) => Err(DownloadRefused::NoFile),
    })
}
