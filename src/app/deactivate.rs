//! Deactivate a machine: free its seat, so another machine can take it.

use super::licenses::{LicenseApiError, LicenseRequest, find, machine_id};
use crate::storage::ActivationStore;

#[derive(Debug, serde::Serialize)]
pub struct Deactivation {
    pub deactivated: bool,
    pub activations: u32,
}

/// Frees a machine's seat; `deactivated: false` when it held none.
pub async fn deactivate(
    store: &dyn ActivationStore,
    tenant: &str,
    request: &LicenseRequest,
) -> Result<Deactivation, LicenseApiError> {
    let machine = machine_id(request.machine_id.as_deref())?;
    let (tenant_id, license) = find(store, tenant, request).await?;
    let deactivated = store
        .deactivate(&tenant_id, &license.key_hash, &machine)
        .await?;
    let activations = if deactivated {
        license.activations.saturating_sub(1)
    } else {
        license.activations
    };
    Ok(Deactivation {
        deactivated,
        activations,
    })
}
