//! Activate a machine: take one of the license's seats (reclaiming seats whose lease ran out when it is full) and
//! answer with a signed lease.

use time::OffsetDateTime;

use super::licenses::{
    Checker, LicenseApiError, LicenseRequest, Validation, effective_status, find_with_tenant,
    lease, machine_id, nonce, seat_of, signer, unix_to_rfc3339,
};
use crate::domain::{Activation, License, LicenseStatus, rfc3339};
use crate::storage::{ActivateResult, Backend, SeatBudget, SeatTouch, StoreError};

/// How many expired seats one activation reclaims at most (a transaction holds up to 100 items).
const RECLAIM_BATCH: usize = 24;
/// How often an activation that lost a race for an expired seat looks again.
const RECLAIM_RETRIES: usize = 20;
/// How often an activation starts over because the machine's seat was freed between finding it and renewing it.
const SEAT_RETRIES: usize = 4;
/// New machines a license may activate in an hour: its seat limit, and at least this many. A leaked key can
/// fill the free seats once, but not churn through them (each seat freed and taken by another machine) faster.
const NEW_MACHINES_PER_HOUR: u32 = 10;

/// This hour's budget of new seats for `license`, counted in the transaction that takes each seat: a refused
/// activation (no seat free) costs nothing, a machine renewing its seat is not new.
fn new_machine_budget(license: &License, now: OffsetDateTime) -> SeatBudget {
    let hour = now.unix_timestamp() / 3600;
    SeatBudget {
        counter: format!("new-machine#{}#{hour}", license.license_id),
        limit: NEW_MACHINES_PER_HOUR.max(license.activation_limit),
        until: (hour + 2) * 3600,
    }
}

/// Takes a seat for a machine; activating a machine that already holds one is free and idempotent (and renews a
/// seat lease). When the license is full, seats whose lease ran out are reclaimed in the same transaction.
pub async fn activate(
    checker: Checker<'_>,
    tenant: &str,
    request: &LicenseRequest,
) -> Result<Validation, LicenseApiError> {
    let machine = machine_id(request.machine_id.as_deref())?;
    let nonce = nonce(request.nonce.as_deref())?;
    let label = request
        .label
        .as_deref()
        .map(crate::gumroad::one_line)
        .filter(|l| !l.is_empty());
    // The license and the machine's seat are read side by side, so that exactly one write follows: a renewal of
    // the seat the machine holds, or a new seat.
    let (found, held) = tokio::join!(
        find_with_tenant(checker, tenant, request),
        seat_of(checker.store, tenant, request, Some(&machine)),
    );
    let found = found?;
    let mut held = held?.is_some();
    let now = OffsetDateTime::now_utc();
    let status = effective_status(&found.license, now);
    if status != LicenseStatus::Active {
        return Err(LicenseApiError::NotActive(status));
    }
    let signer = signer(checker, &found).await?;
    let seat_until = found
        .seat_lease()
        .map(|lease| (now + lease).unix_timestamp());
    let activation = Activation {
        machine_id: machine.clone(),
        label,
        activated_at: rfc3339(now),
        last_seen: Some(rfc3339(now)),
        seat_until,
    };
    let store = checker.store;
    let (tenant_id, key_hash) = (&found.tenant.tenant_id, &found.license.key_hash);
    let mut activations = None;
    let budget = new_machine_budget(&found.license, now);
    for _ in 0..SEAT_RETRIES {
        // The machine holds a seat: renew it, in the same write that proves it still exists and the license is
        // still active. A seat freed in between (another machine reclaimed it, a deactivation) is taken again,
        // limit and all.
        if held {
            match store
                .touch_seat(tenant_id, key_hash, &machine, &rfc3339(now), seat_until)
                .await?
            {
                SeatTouch::Renewed => {
                    activations = Some(found.license.activations);
                    break;
                }
                // Gone: taken again below.
                SeatTouch::Gone => {}
                SeatTouch::NotActive(status) => return Err(LicenseApiError::NotActive(status)),
            }
        }
        let mut result = store
            .activate(&found.license, &activation, &rfc3339(now), &budget)
            .await?;
        if result == ActivateResult::LimitReached && seat_until.is_some() {
            result = reclaim(store, &found.license, &activation, now, &budget).await?;
        }
        match result {
            ActivateResult::Activated { activations: count } => {
                activations = Some(count);
                break;
            }
            // The machine took its seat meanwhile (a concurrent activation): renew that one.
            ActivateResult::AlreadyActive => held = true,
            ActivateResult::LimitReached => return Err(LicenseApiError::LimitReached),
            ActivateResult::OverBudget => return Err(LicenseApiError::TooManyNewMachines),
            ActivateResult::NotActive(status) => return Err(LicenseApiError::NotActive(status)),
            ActivateResult::NotFound => return Err(LicenseApiError::NotFound),
        }
    }
    let Some(activations) = activations else {
        return Err(LicenseApiError::Storage(StoreError::Unavailable(
            "the machine's seat kept changing".to_owned(),
        )));
    };
    let mut view = found.validation(Some(true), now);
    view.activations = activations;
    view.seat_expires_at = seat_until.and_then(unix_to_rfc3339);
    view.lease = Some(lease(
        &signer, &found, &view, &machine, seat_until, nonce, now,
    )?);
    Ok(view)
}

/// Frees seats whose lease ran out and takes one, in one conditional transaction per attempt, so the count stays
/// exact however many machines race for them.
async fn reclaim(
    store: &dyn Backend,
    license: &License,
    activation: &Activation,
    now: OffsetDateTime,
    budget: &SeatBudget,
) -> Result<ActivateResult, LicenseApiError> {
    let now_unix = now.unix_timestamp();
    for attempt in 0..RECLAIM_RETRIES {
        if attempt > 0 {
            crate::storage::backoff(u32::try_from(attempt.min(5)).unwrap_or(5)).await;
        }
        let Some(current) = store
            .license_to_check(&license.tenant_id, &license.key_hash)
            .await?
        else {
            return Ok(ActivateResult::NotFound);
        };
        let status = effective_status(&current, now);
        if status != LicenseStatus::Active {
            return Ok(ActivateResult::NotActive(status));
        }
        if current.activations < current.activation_limit {
            // Someone else's reclaim left a seat free: take it the ordinary way.
            match store
                .activate(&current, activation, &rfc3339(now), budget)
                .await?
            {
                ActivateResult::LimitReached => continue,
                other => return Ok(other),
            }
        }
        let expired: Vec<String> = store
            .activations(&license.tenant_id, &license.key_hash)
            .await?
            .into_iter()
            .filter(|a| a.seat_until.is_some_and(|until| until < now_unix))
            .map(|a| a.machine_id)
            .take(RECLAIM_BATCH)
            .collect();
        if expired.is_empty() {
            return Ok(ActivateResult::LimitReached);
        }
        match store
            .activate_reclaiming(
                &current,
                activation,
                &expired,
                &rfc3339(now),
                now_unix,
                budget,
            )
            .await?
        {
            // Another machine took the freed seats first, or renewed its own: look again.
            None => continue,
            Some(result) => return Ok(result),
        }
    }
    Ok(ActivateResult::LimitReached)
}
