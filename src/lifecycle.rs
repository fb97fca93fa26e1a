//! What Gumroad's events do to a license: refunds revoke (by the tenant's policy), disputes suspend, won disputes
//! restore, ended subscriptions expire and restarted ones come back. An event for a sale keystead has not seen yet
//! leaves a marker, so that the sale, when it lands, is minted in the state the event says.

use std::time::Duration;

use time::OffsetDateTime;

use crate::domain::{
    License, LicenseStatus, PlanChange, Product, RefundPolicy, SaleId, Tenant, Variant, rfc3339,
    seats,
};
use crate::gumroad::{EventKind, EventSubject, GumroadEvent, PlanUpdate};
use crate::storage::{EventChange, EventStore, EventWrite, Mark, StoreError, Written};

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

/// What an event records on a license besides its status: the flags and times Gumroad's license API reports.
pub fn marks(kind: &EventKind, now: OffsetDateTime) -> Vec<Mark> {
    let at = |given: &Option<String>| given.clone().unwrap_or_else(|| rfc3339(now));
    match kind {
        EventKind::Refund { full: true } => vec![Mark::Flag("refunded", true)],
        EventKind::Dispute => vec![Mark::Flag("chargebacked", true)],
        EventKind::DisputeWon => vec![Mark::Flag("chargebacked", false)],
        EventKind::Cancellation { cancelled_at } => {
            vec![Mark::At("subscription_cancelled_at", at(cancelled_at))]
        }
        EventKind::SubscriptionEnded {
            ended_at,
            failed_payment,
        } => {
            let mut marks = vec![Mark::At("subscription_ended_at", at(ended_at))];
            if *failed_payment {
                marks.push(Mark::At("subscription_failed_at", at(ended_at)));
            }
            marks
        }
        EventKind::SubscriptionRestarted => vec![
            Mark::Clear("subscription_cancelled_at"),
            Mark::Clear("subscription_ended_at"),
            Mark::Clear("subscription_failed_at"),
        ],
        EventKind::Refund { full: false } | EventKind::SubscriptionUpdated(_) => Vec::new(),
    }
}

#[derive(Debug)]
pub enum EventResult {
    /// The event reached a license; its status is now this.
    Applied {
        status: LicenseStatus,
    },
    Duplicate,
    /// No license exists for the sale or subscription yet; a marker (if the event changes anything) was kept.
    Unknown,
    /// A tier or seat change reached the subscription's license: `changed` is false when the new tier has no
    /// mapping (the license is left as it was); `deferred` when it waits for `effective_as_of`.
    Plan {
        license: Box<License>,
        changed: bool,
        deferred: bool,
    },
}

/// The plan a license moves to for a tier or seat change, and whether it waits (a downgrade until the end of the
/// paid period). `None` when nothing would change, or the new tier is not mapped to a product.
pub fn plan_target(
    tenant: &Tenant,
    license: &License,
    plan: &PlanUpdate,
    now: OffsetDateTime,
) -> Option<(PlanChange, bool)> {
    let current = || tenant.products.get(&license.product_id);
    let product: &Product = match plan.new_tier.as_deref() {
        Some(tier) => {
            let mapped = license.gumroad_permalink.as_ref().and_then(|permalink| {
                let variant = Variant::new("Tier", tier).ok()?;
                tenant.variant_product(permalink, &variant)
            });
            let same_tier = plan
                .old_tier
                .as_deref()
                .is_some_and(|old| old.trim().eq_ignore_ascii_case(tier.trim()));
            match mapped {
                Some(product_id) => tenant.products.get(product_id)?,
                // A seat change within an unmapped tier keeps the product the license has.
                None if same_tier => current()?,
                None => return None,
            }
        }
        None => current()?,
    };
    let quantity = plan.new_quantity.unwrap_or(license.quantity);
    let effective_at = plan.effective_at(now);
    let to = PlanChange {
        product_id: product.product_id.clone(),
        product_name: product.name.clone(),
        activation_limit: seats(product.activation_limit, quantity),
        quantity,
        effective_at: rfc3339(effective_at),
    };
    let deferred = effective_at > now;
    let same = to.product_id == license.product_id
        && to.activation_limit == license.activation_limit
        && to.quantity == license.quantity;
    if same && !deferred && license.pending_change.is_none() {
        return None;
    }
    Some((to, deferred))
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
                        if matches!(
                            apply_to_sale(store, tenant, event, sale_id, &key, ttl).await?,
                            EventResult::Duplicate
                        ) {
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
                let key = &event.idempotency_key;
                let result = match &event.kind {
                    EventKind::SubscriptionUpdated(Some(plan)) => {
                        change_plan(store, tenant, plan, &license, key, ttl).await?
                    }
                    _ => change_license(store, tenant, event, &license, key, ttl).await?,
                };
                if let Some(result) = result {
                    return Ok(result);
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

/// Moves a subscription's license to its new tier or seat count, now or (a downgrade) when it is due. `None` when
/// the license changed underneath and the caller should look again.
async fn change_plan(
    store: &dyn EventStore,
    tenant: &Tenant,
    plan: &PlanUpdate,
    license: &License,
    event_key: &str,
    ttl: i64,
) -> Result<Option<EventResult>, StoreError> {
    let target = plan_target(tenant, license, plan, OffsetDateTime::now_utc());
    let change = match &target {
        Some((to, deferred)) => EventChange::Plan {
            key_hash: license.key_hash.clone(),
            from_product: license.product_id.clone(),
            from_limit: license.activation_limit,
            to: to.clone(),
            deferred: *deferred,
        },
        None => {
            tracing::info!(
                tenant = %tenant.tenant_id,
                license = %license.license_id,
                "plan change leaves the license as it is (no mapping for the new tier, or nothing changes)"
            );
            EventChange::None
        }
    };
    let write = EventWrite {
        tenant_id: tenant.tenant_id.clone(),
        event_key: event_key.to_owned(),
        ttl,
        change,
    };
    Ok(match store.write_event(&write).await? {
        Written::Applied => {
            let mut view = license.clone();
            let deferred = target.as_ref().is_some_and(|(_, deferred)| *deferred);
            match &target {
                Some((to, true)) => view.pending_change = Some(to.clone()),
                Some((to, false)) => view.apply_plan(to),
                None => {}
            }
            Some(EventResult::Plan {
                license: Box::new(view),
                changed: target.is_some(),
                deferred,
            })
        }
        Written::Duplicate => Some(EventResult::Duplicate),
        Written::Stale => None,
    })
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
    let mut to = transition(license.status, &event.kind, tenant.refund_policy);
    // A won dispute lifts the dispute's suspension only: a subscription that ended meanwhile stays ended.
    if matches!(event.kind, EventKind::DisputeWon)
        && to == LicenseStatus::Active
        && license.subscription_ended_at.is_some()
    {
        to = LicenseStatus::Expired;
    }
    let marks = marks(&event.kind, OffsetDateTime::now_utc());
    let change = if to == license.status && marks.is_empty() {
        EventChange::None
    } else {
        EventChange::License {
            key_hash: license.key_hash.clone(),
            from: license.status,
            to,
            marks,
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
            (
                Active,
                EventKind::Cancellation { cancelled_at: None },
                revoke,
                Active,
            ),
            (
                Active,
                EventKind::SubscriptionEnded {
                    ended_at: None,
                    failed_payment: false,
                },
                revoke,
                Expired,
            ),
            (
                Suspended,
                EventKind::SubscriptionEnded {
                    ended_at: None,
                    failed_payment: false,
                },
                revoke,
                Suspended,
            ),
            (Expired, EventKind::SubscriptionRestarted, revoke, Active),
            (Revoked, EventKind::SubscriptionRestarted, revoke, Revoked),
            (Active, EventKind::SubscriptionUpdated(None), revoke, Active),
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
