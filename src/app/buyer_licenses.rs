//! What a signed-in buyer sees and does: their licenses with machines and downloads, and, per license, email the
//! key again, free a machine's seat, or replace the key. Actions that send mail are rate-limited per license, so
//! a signed-in buyer cannot drain the account's SES quota (shared by every tenant and every sale's key email).

use time::OffsetDateTime;

use super::record_sale::deliver;
use super::replace_key::{RotateError, rotate};
use super::sign_in::portal_mail_allowed;
use crate::domain::{Email, License, LicenseStatus, Tenant, effective_status};
use crate::mail::Mailer;
use crate::portal::pages::Notice;
use crate::portal::{LicenseView, PAGE_LINK_LIFETIME, Portal, PortalError};
use crate::storage::{Backend, StoreError};

/// The signed-in buyer's licenses with their machines and downloads, newest first.
pub async fn buyer_licenses(
    portal: &Portal,
    store: &dyn Backend,
    tenant: &Tenant,
    email: &Email,
) -> Result<Vec<LicenseView>, PortalError> {
    let now = OffsetDateTime::now_utc();
    let mut views = Vec::new();
    for license in exactly_theirs(store, tenant, email).await? {
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
        let releases = portal
            .release_links(store, tenant, &license, PAGE_LINK_LIFETIME, now)
            .await?;
        views.push(LicenseView {
            license,
            status,
            machines,
            download,
            releases,
        });
    }
    Ok(views)
}

/// The licenses bought with exactly the session's address. The index finds every letter-case spelling of it
/// (`Jane@` and `jane@`), but on a mail server that tells them apart they are different people: a session shows
/// only its own spelling's licenses.
async fn exactly_theirs(
    store: &dyn Backend,
    tenant: &Tenant,
    email: &Email,
) -> Result<Vec<License>, StoreError> {
    let mut licenses = store.licenses_by_email(&tenant.tenant_id, email).await?;
    licenses.retain(|license| license.buyer_email.as_str() == email.as_str());
    Ok(licenses)
}

/// The buyer's license with this id, or `None` when the buyer has none such.
pub async fn buyer_license(
    store: &dyn Backend,
    tenant: &Tenant,
    email: &Email,
    license_id: &str,
) -> Result<Option<License>, PortalError> {
    Ok(exactly_theirs(store, tenant, email)
        .await?
        .into_iter()
        .find(|l| l.license_id == *license_id))
}

/// How often a buyer may have a license's key emailed, and replace it, from the portal.
const SEND_KEY_PER_HOUR: u32 = 5;
const REPLACE_KEY_PER_DAY: u32 = 3;

/// What a buyer asks to do with one of their licenses.
pub enum BuyerAction<'a> {
    SendKey,
    /// Free this machine's seat.
    Deactivate {
        machine_id: &'a str,
    },
    /// Replace the key; only when the buyer confirmed.
    Replace {
        confirmed: bool,
    },
}

/// Whether `license` may send one more mail of `kind` in the current window of `window` seconds.
async fn mail_allowed(
    store: &dyn Backend,
    license: &License,
    kind: &str,
    limit: u32,
    window: i64,
) -> Result<bool, StoreError> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let slot = now / window;
    let counter = format!("{kind}#{}#{slot}", license.license_id);
    store
        .count_use(&license.tenant_id, &counter, limit, (slot + 2) * window)
        .await
}

/// A buyer's action failed on our side.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Replace(RotateError),
}

/// Does what the buyer asked with their `license`.
pub async fn act(
    store: &dyn Backend,
    mailer: &dyn Mailer,
    tenant: &Tenant,
    license: &License,
    action: BuyerAction<'_>,
) -> Result<Notice, ActionError> {
    match action {
        BuyerAction::SendKey => {
            if license.status == LicenseStatus::Revoked
                || !mail_allowed(store, license, "send", SEND_KEY_PER_HOUR, 3600).await?
                || !portal_mail_allowed(store, &tenant.tenant_id, &license.buyer_email).await?
            {
                return Ok(Notice::Refused);
            }
            Ok(match deliver(store, mailer, tenant, license).await {
                Ok(_) => Notice::KeySent,
                Err(_) => Notice::NotSent,
            })
        }
        BuyerAction::Deactivate { machine_id } => {
            if machine_id.is_empty() {
                return Ok(Notice::Refused);
            }
            Ok(if store.deactivate(license, machine_id).await? {
                Notice::SeatFreed
            } else {
                Notice::SeatAlreadyFree
            })
        }
        BuyerAction::Replace { confirmed } => {
            if !confirmed
                || !mail_allowed(store, license, "replace", REPLACE_KEY_PER_DAY, 24 * 3600).await?
                || !portal_mail_allowed(store, &tenant.tenant_id, &license.buyer_email).await?
            {
                return Ok(Notice::Refused);
            }
            match rotate(store, tenant, &license.key_hash, true).await {
                Ok(new) => Ok(match deliver(store, mailer, tenant, &new).await {
                    Ok(_) => Notice::KeyReplaced,
                    Err(_) => Notice::KeyReplacedNotSent,
                }),
                Err(
                    RotateError::Revoked | RotateError::TooManyMachines(_) | RotateError::NotFound,
                ) => Ok(Notice::Refused),
                Err(err) => Err(ActionError::Replace(err)),
            }
        }
    }
}
