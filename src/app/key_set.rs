//! Publish a tenant's key set: the public keys an app verifies leases with, the current one and the retired ones
//! whose leases may still be valid.

use time::OffsetDateTime;

use super::App;
use crate::domain::TenantId;
use keystead_verify::Jwks;

use crate::signing::{self, SigningError};

/// The tenant's JWKS, or `None` for a tenant that does not exist.
pub async fn key_set(app: &App, tenant_id: &TenantId) -> Result<Option<Jwks>, SigningError> {
    // Read fresh, not from the tenant cache: a rotated key is published the moment it is made, while the
    // functions' signers switch to it within the cache's minute, so it is never used before it is published.
    app.tenants.forget(tenant_id);
    let Some(tenant) = app.tenants.tenant(app.store.as_ref(), tenant_id).await? else {
        return Ok(None);
    };
    // A tenant made before leases existed gets its first key now, so an app can ship it before its first lease.
    let tenant = if tenant.current_signing_key().is_none() {
        app.keyring
            .current(app.store.as_ref(), &app.tenants, tenant)
            .await?;
        app.tenants.tenant(app.store.as_ref(), tenant_id).await?
    } else {
        Some(tenant)
    };
    Ok(tenant.map(|t| signing::jwks(&t, OffsetDateTime::now_utc())))
}
