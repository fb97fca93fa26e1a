//! Replacing a license's key (a leaked or lost key): a new key of the same product, the old one refused at once.
//! Status, seat limit, expiry and history stay; every machine's seat is freed (whoever held the leaked key may
//! have filled them), and the buyer's own machines activate again with the new key. The buyer's portal and
//! `keystead license rotate` share this path.

use crate::domain::{KeyHash, License, LicenseKey, LicenseStatus, Tenant};
use crate::storage::{Backend, MAX_MACHINES_TO_FREE, Replaced, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("no such license")]
    NotFound,
    #[error("the license is revoked: its key cannot be replaced")]
    Revoked,
    #[error(
        "the license holds {0} machines; free some first (a new key frees at most {MAX_MACHINES_TO_FREE} at once)"
    )]
    TooManyMachines(u32),
    #[error("the license kept changing while its key was being replaced; try again")]
    Busy,
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error(transparent)]
    Randomness(#[from] crate::domain::RandomnessError),
}

/// How many times the move is recomputed when a machine comes or goes meanwhile.
const ATTEMPTS: usize = 5;

/// Gives the license whose key hashes to `key_hash` a new key and returns the license under it. The key prefix
/// is the product's (the license's own prefix when the product is gone).
#[tracing::instrument(skip_all, fields(tenant = %tenant.tenant_id))]
pub async fn rotate(
    store: &dyn Backend,
    tenant: &Tenant,
    key_hash: &KeyHash,
    will_email: bool,
) -> Result<License, RotateError> {
    // The replacement last tried: when its answer was lost, the next look finds it committed (issue 22).
    let mut tried: Option<License> = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            crate::storage::backoff(u32::try_from(attempt).unwrap_or(5)).await;
        }
        let Some(old) = store.get_license(&tenant.tenant_id, key_hash).await? else {
            return committed(store, tenant, key_hash, tried).await;
        };
        if old.status == LicenseStatus::Revoked {
            return Err(RotateError::Revoked);
        }
        if old.activations > MAX_MACHINES_TO_FREE {
            return Err(RotateError::TooManyMachines(old.activations));
        }
        let machines = store.activations(&tenant.tenant_id, key_hash).await?;
        let new = rekeyed(tenant, &old, will_email)?;
        let replaced = store.replace_key(&old, &machines, &new).await;
        tried = Some(new.clone());
        match replaced {
            Ok(Replaced::Done) => {
                tracing::info!(license = %new.license_id, machines = machines.len(), "key replaced");
                end_sessions(store, &new).await?;
                return Ok(new);
            }
            Ok(Replaced::Stale) => continue,
            // The answer may be lost while the replacement committed: look before reporting a failure.
            Err(err) => {
                return match committed(store, tenant, key_hash, tried).await {
                    Ok(new) => {
                        end_sessions(store, &new).await?;
                        Ok(new)
                    }
                    Err(_) => Err(err.into()),
                };
            }
        }
    }
    Err(RotateError::Busy)
}

/// Signs the buyer out everywhere once the key is replaced: a session opened by whoever had the key's mail (or a
/// shared computer) must not outlive it. The portal opens a fresh session for the buyer who replaced it.
async fn end_sessions(store: &dyn Backend, license: &License) -> Result<(), RotateError> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    super::sign_in::end_sessions_before(store, &license.tenant_id, &license.buyer_email, now)
        .await?;
    Ok(())
}

/// The replacement `tried`, when the old key now leads to it: the write committed although its answer never
/// arrived. `NotFound` otherwise.
async fn committed(
    store: &dyn Backend,
    tenant: &Tenant,
    old_hash: &KeyHash,
    tried: Option<License>,
) -> Result<License, RotateError> {
    let Some(new) = tried else {
        return Err(RotateError::NotFound);
    };
    let current = store.current_license(&tenant.tenant_id, old_hash).await?;
    match current {
        Some(license) if license.key_hash == new.key_hash => {
            tracing::info!(license = %new.license_id, "key replaced (its answer was lost)");
            Ok(new)
        }
        _ => Err(RotateError::NotFound),
    }
}

/// The same license under a fresh key; its key email is owed again.
fn rekeyed(tenant: &Tenant, old: &License, will_email: bool) -> Result<License, RotateError> {
    let prefix = match tenant.products.get(&old.product_id) {
        Some(product) => product.key_prefix.clone(),
        None => {
            let raw = old.key.expose().split('-').next().unwrap_or_default();
            crate::domain::KeyPrefix::parse(raw).map_err(|_| {
                RotateError::Storage(StoreError::Corrupt(
                    "license key without a prefix".to_owned(),
                ))
            })?
        }
    };
    let key = LicenseKey::generate(&prefix)?;
    let mut new = old.clone();
    new.key_hash = key.hash();
    new.key = key;
    new.email_status = crate::domain::EmailStatus::Pending;
    new.email_message_id = None;
    new.email_failure = None;
    new.email_maybe_sent = false;
    new.v = old.v + 1;
    new.activations = 0;
    // The replacing request holds the claim, as a minting one does: if it dies before the email goes out, the claim
    // runs out and `license resend --failed` (and `doctor`) see the email as owed.
    new.email_claim_until = will_email.then(|| {
        (time::OffsetDateTime::now_utc() + crate::app::record_sale::EMAIL_CLAIM).unix_timestamp()
    });
    Ok(new)
}
