//! What Gumroad's events do to a license: refunds revoke (by the tenant's policy), disputes suspend, won disputes
//! restore, ended subscriptions expire and restarted ones come back. An event for a sale keymint has not seen yet
//! leaves a marker, so that the sale, when it lands, is minted in the state the event says.

use std::time::Duration;

use time::OffsetDateTime;

use crate::domain::{LicenseStatus, RefundPolicy, SaleId, Tenant};
use crate::gumroad::{EventKind, EventSubject, GumroadEvent};
use crate::storage::{EventChange, EventStore, EventWrite, StoreError, Written};

/// Event records and markers outlive any retry or late-arriving sale by far.
const EVENT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often a write that lost a race (the license or marker changed underneath) is recomputed.
const STALE_RETRIES: usize = 8;

/// The status an event leaves a license in, given the status it had.
pub fn transition(current: LicenseStatus, kind: &EventKind, policy: RefundPolicy) -> LicenseStatus {
    use LicenseStatus::{Active, Expired, Revoked, Suspended};
    match kind {
        EventKind::Refund { full: true } if policy == RefundPolicy::Revoke => Revoked,
        EventKind::Dispute if current != Revoked => Suspended,
        EventKind::DisputeWon if current == Suspended => Active,
        EventKind::SubscriptionEnded { .. } if current == Active => Expired,
        EventKind::SubscriptionRestarted if current == Expired => Active,
        _ => current,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum EventResult {
    /// The event reached a license; its status is now this.
    Applied {
        status: LicenseStatus,
    },
    Duplicate,
    /// No license exists for the sale or subscription yet; a marker (if the event changes anything) was kept.
    Unknown,
}

pub async fn apply(
    store: &dyn EventStore,
    tenant: &Tenant,
    event: &GumroadEvent,
) -> Result<EventResult, StoreError> {
    let ttl = (OffsetDateTime::now_utc() + EVENT_TTL).unix_timestamp();
    match &event.subject {
        EventSubject::Sale(sale_id) => {
            apply_to_sale(store, tenant, event, sale_id, &event.idempotency_key, ttl).await
        }
        EventSubject::Subscription { id, purchase_ids } => {
            for _ in 0..STALE_RETRIES {
                let Some(license) = store
                    .license_for_subscription(&tenant.tenant_id, id)
                    .await?
                else {
                    // Unknown subscription: mark each of its purchases, so a late first sale is minted accordingly.
                    let mut result = EventResult::Unknown;
                    for sale_id in purchase_ids {
                        let key = format!("{}#{sale_id}", event.idempotency_key);
                        if apply_to_sale(store, tenant, event, sale_id, &key, ttl).await?
                            == EventResult::Duplicate
                        {
                            result = EventResult::Duplicate;
                        }
                    }
                    if purchase_ids.is_empty() {
                        let write = EventWrite {
                            tenant_id: tenant.tenant_id.clone(),
                            event_key: event.idempotency_key.clone(),
                            ttl,
                            change: EventChange::None,
                        };
                        if store.write_event(&write).await? == Written::Duplicate {
                            result = EventResult::Duplicate;
                        }
                    }
                    return Ok(result);
                };
                match change_license(store, tenant, event, &license, &event.idempotency_key, ttl)
                    .await?
                {
                    Some(result) => return Ok(result),
                    None => continue,
                }
            }
            Err(StoreError::Unavailable(
                "subscription event kept losing races".to_owned(),
            ))
        }
    }
}

async fn apply_to_sale(
    store: &dyn EventStore,
    tenant: &Tenant,
    event: &GumroadEvent,
    sale_id: &SaleId,
    event_key: &str,
    ttl: i64,
) -> Result<EventResult, StoreError> {
    for _ in 0..STALE_RETRIES {
        if let Some(license) = store.license_for_sale(&tenant.tenant_id, sale_id).await? {
            match change_license(store, tenant, event, &license, event_key, ttl).await? {
                Some(result) => return Ok(result),
                None => continue,
            }
        }
        let marker = store.marker(&tenant.tenant_id, sale_id).await?;
        let current = marker.unwrap_or(LicenseStatus::Active);
        let to = transition(current, &event.kind, tenant.refund_policy);
        let change = if to == current {
            EventChange::None
        } else {
            EventChange::Marker {
                sale_id: sale_id.clone(),
                from: marker,
                to,
            }
        };
        let write = EventWrite {
            tenant_id: tenant.tenant_id.clone(),
            event_key: event_key.to_owned(),
            ttl,
            change,
        };
        match store.write_event(&write).await? {
            Written::Applied => return Ok(EventResult::Unknown),
            Written::Duplicate => return Ok(EventResult::Duplicate),
            Written::Stale => continue,
        }
    }
    Err(StoreError::Unavailable(
        "event kept losing races".to_owned(),
    ))
}

/// `None` when the license changed underneath and the caller should look again.
async fn change_license(
    store: &dyn EventStore,
    tenant: &Tenant,
    event: &GumroadEvent,
    license: &crate::domain::License,
    event_key: &str,
    ttl: i64,
) -> Result<Option<EventResult>, StoreError> {
    let to = transition(license.status, &event.kind, tenant.refund_policy);
    let change = if to == license.status {
        EventChange::None
    } else {
        EventChange::License {
            key_hash: license.key_hash.clone(),
            from: license.status,
            to,
        }
    };
    let write = EventWrite {
        tenant_id: tenant.tenant_id.clone(),
        event_key: event_key.to_owned(),
        ttl,
        change,
    };
    Ok(match store.write_event(&write).await? {
        Written::Applied => Some(EventResult::Applied { status: to }),
        Written::Duplicate => Some(EventResult::Duplicate),
        Written::Stale => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use LicenseStatus::*;

    #[test]
    fn the_lifecycle_table() {
        let revoke = RefundPolicy::Revoke;
        let cases = [
            (Active, EventKind::Refund { full: true }, revoke, Revoked),
            (
                Active,
                EventKind::Refund { full: true },
                RefundPolicy::Keep,
                Active,
            ),
            (Active, EventKind::Refund { full: false }, revoke, Active),
            (Active, EventKind::Dispute, revoke, Suspended),
            (Revoked, EventKind::Dispute, revoke, Revoked),
            (Suspended, EventKind::DisputeWon, revoke, Active),
            (Revoked, EventKind::DisputeWon, revoke, Revoked),
            (Active, EventKind::Cancellation, revoke, Active),
            (
                Active,
                EventKind::SubscriptionEnded { ended_at: None },
                revoke,
                Expired,
            ),
            (
                Suspended,
                EventKind::SubscriptionEnded { ended_at: None },
                revoke,
                Suspended,
            ),
            (Expired, EventKind::SubscriptionRestarted, revoke, Active),
            (Revoked, EventKind::SubscriptionRestarted, revoke, Revoked),
            (Active, EventKind::SubscriptionUpdated, revoke, Active),
        ];
        for (from, kind, policy, to) in cases {
            assert_eq!(
                transition(from, &kind, policy),
                to,
                "{from:?} + {kind:?} ({policy:?})"
            );
        }
    }
}
