//! Validate a key, for the seller's app: is it valid, for which product and until when; from a machine that holds
//! a seat, the check renews the seat and answers with a fresh signed lease.

use time::OffsetDateTime;

use super::licenses::{
    Checker, LicenseApiError, LicenseRequest, Validation, effective_status, find_with_tenant,
    lease, machine_id, nonce, seat_of, signer, unix_to_rfc3339,
};
use crate::domain::{LicenseStatus, rfc3339};
use crate::storage::SeatTouch;

pub async fn validate(
    checker: Checker<'_>,
    tenant: &str,
    request: &LicenseRequest,
) -> Result<Validation, LicenseApiError> {
    let nonce = nonce(request.nonce.as_deref())?;
    let machine = request
        .machine_id
        .as_deref()
        .map(|raw| machine_id(Some(raw)))
        .transpose()?;
    let (found, held) = tokio::join!(
        find_with_tenant(checker, tenant, request),
        seat_of(checker.store, tenant, request, machine.as_deref()),
    );
    let found = found?;
    let now = OffsetDateTime::now_utc();
    let Some(machine) = machine else {
        return Ok(found.validation(None, now));
    };
    let key_hash = &found.license.key_hash;
    let tenant_id = &found.tenant.tenant_id;
    let active = effective_status(&found.license, now) == LicenseStatus::Active;
    let held = held?;
    let mut signer = match (&held, active) {
        (Some(_), true) => Some(signer(checker, &found).await?),
        _ => None,
    };
    let seat_until = match (&held, found.seat_lease()) {
        // A check from the machine renews its seat, as an activation would, and proves the seat still exists
        // (and the license is still active) before a lease is signed for it.
        (Some(_), Some(lease)) if active => {
            let until = (now + lease).unix_timestamp();
            match checker
                .store
                .touch_seat(tenant_id, key_hash, &machine, &rfc3339(now), Some(until))
                .await?
            {
                SeatTouch::Renewed => Some(Some(until)),
                SeatTouch::Gone => None,
                SeatTouch::NotActive(_) => {
                    signer = None;
                    held.as_ref().map(|activation| activation.seat_until)
                }
            }
        }
        (Some(activation), _) => Some(activation.seat_until),
        (None, _) => None,
    };
    let mut view = found.validation(Some(seat_until.is_some()), now);
    if let Some(seat_until) = seat_until {
        view.seat_expires_at = seat_until.and_then(unix_to_rfc3339);
        if let Some(signer) = &signer {
            view.lease = Some(lease(
                signer, &found, &view, &machine, seat_until, nonce, now,
            )?);
        }
    }
    Ok(view)
}
