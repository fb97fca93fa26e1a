//! Deactivate a machine: free its seat, so another machine can take it.

use super::licenses::{Checker, LicenseApiError, LicenseRequest, find_with_tenant, machine_id};

/// Fields in the order of their names: the answer is written as it is, in the order the README shows.
#[derive(Debug, serde::Serialize)]
pub struct Deactivation {
    pub activations: u32,
    pub deactivated: bool,
}

/// Frees a machine's seat; `deactivated: false` when it held none.
pub async fn deactivate(
    checker: Checker<'_>,
    tenant: &str,
    request: &LicenseRequest,
) -> Result<Deactivation, LicenseApiError> {
    let machine = machine_id(request.machine_id.as_deref())?;
    let found = find_with_tenant(checker, tenant, request).await?;
    let license = &found.license;
    let deactivated = checker.store.deactivate(license, &machine).await?;
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
