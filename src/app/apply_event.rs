//! What Gumroad's events do to a license. Each event is a fact (issue 22): recorded once on the license it is
//! about, whose status, flags, expiry and plan are then derived from all of its facts (`domain::derive`), so the
//! same events in any order, any number of times, leave the same license. An event for a sale or a subscription
//! keystead has not seen yet waits with that sale's or subscription's orphans and is folded in when it lands.

use time::OffsetDateTime;

use crate::domain::{
    Fact, FactKind, License, PlanChange, PlanRequest, Product, RefundPolicy, Tenant, Variant,
    rfc3339, seats,
};
use crate::gumroad::{EventKind, EventSubject, GumroadEvent, PlanDirection, PlanUpdate};
use crate::storage::{Anchor, EventStore, StoreError, Written};

/// How often a write that lost a race (the license or the orphans changed underneath) is recomputed.
const STALE_RETRIES: usize = 8;

#[derive(Debug)]
pub enum EventResult {
    /// The event reached a license; its status is now this.
    Applied {
        status: crate::domain::LicenseStatus,
    },
    Duplicate,
    /// No license exists for the sale or subscription yet: the fact waits for it.
    Unknown,
    /// A tier or seat change reached the subscription's license: `changed` is false when the new tier has no
    /// mapping (the license is left as it was); `deferred` when it waits for `effective_as_of`.
    Plan {
        license: Box<License>,
        changed: bool,
        deferred: bool,
    },
}

/// The fact an event states, at `now` when Gumroad's ping carries no time of its own.
pub fn fact_of(event: &GumroadEvent, policy: RefundPolicy, now: OffsetDateTime) -> Option<Fact> {
    let received = rfc3339(now);
    let at = |given: &Option<String>| {
        given
            .as_deref()
            .and_then(crate::gumroad::parse_time)
            .map(rfc3339)
            .unwrap_or_else(|| received.clone())
    };
    let sale = match &event.subject {
        EventSubject::Sale(sale_id) => Some(sale_id.clone()),
        EventSubject::Subscription { .. } => None,
    };
    let (at, kind) = match &event.kind {
        EventKind::Refund { full } => (
            received.clone(),
            FactKind::Refund {
                sale_id: sale?,
                full: *full,
                revokes: *full && policy == RefundPolicy::Revoke,
            },
        ),
        EventKind::Dispute => (received.clone(), FactKind::Dispute { sale_id: sale? }),
        EventKind::DisputeWon => (received.clone(), FactKind::DisputeWon { sale_id: sale? }),
        EventKind::Cancellation { cancelled_at } => (at(cancelled_at), FactKind::Cancelled),
        EventKind::SubscriptionEnded {
            ended_at,
            failed_payment,
        } => (
            at(ended_at),
            FactKind::Ended {
                failed_payment: *failed_payment,
            },
        ),
        EventKind::SubscriptionRestarted { restarted_at } => {
            (at(restarted_at), FactKind::Restarted)
        }
        EventKind::SubscriptionUpdated(plan) => {
            // An upgrade is stated when it takes effect; a downgrade that waits was stated when it was heard of.
            let stated = plan
                .as_ref()
                .and_then(|p| p.effective_as_of)
                .filter(|effective| *effective <= now)
                .map_or_else(|| received.clone(), rfc3339);
            (
                stated,
                FactKind::PlanChanged {
                    to: None,
                    request: plan.as_ref().map(plan_request),
                },
            )
        }
    };
    Some(Fact {
        id: event.idempotency_key.clone(),
        at,
        kind,
    })
}

fn plan_request(plan: &PlanUpdate) -> PlanRequest {
    PlanRequest {
        downgrade: plan.direction.map(|d| d == PlanDirection::Downgrade),
        effective_as_of: plan.effective_as_of.map(rfc3339),
        old_tier: plan.old_tier.clone(),
        new_tier: plan.new_tier.clone(),
        new_quantity: plan.new_quantity,
    }
}

/// The plan a license moves to for a tier or seat change stated at `stated`: effective then, or (a downgrade) when
/// it is due; `None` when the new tier is not mapped to a product.
pub fn plan_target(
    tenant: &Tenant,
    license: &License,
    request: &PlanRequest,
    stated: OffsetDateTime,
    now: OffsetDateTime,
) -> Option<PlanChange> {
    let current = || tenant.products.get(&license.product_id);
    let product: &Product = match request.new_tier.as_deref() {
        Some(tier) => {
            let mapped = license.gumroad_permalink.as_ref().and_then(|permalink| {
                let variant = Variant::new("Tier", tier).ok()?;
                tenant.variant_product(permalink, &variant)
            });
            let same_tier = request
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
    let quantity = request.new_quantity.unwrap_or(license.quantity);
    let due = request
        .effective_as_of
        .as_deref()
        .and_then(crate::gumroad::parse_time)
        .filter(|at| request.downgrade == Some(true) && *at > now)
        .unwrap_or(stated);
    Some(PlanChange {
        product_id: product.product_id.clone(),
        product_name: product.name.clone(),
        activation_limit: seats(product.activation_limit, quantity),
        quantity,
        effective_at: rfc3339(due),
    })
}

/// `fact` as it is recorded on `license`: a plan change is resolved against the license's product and the
/// tenant's tier mappings (once; it keeps what it resolved to).
pub fn resolve(tenant: &Tenant, license: &License, mut fact: Fact, now: OffsetDateTime) -> Fact {
    let stated = crate::gumroad::parse_time(&fact.at).unwrap_or(now);
    if let FactKind::PlanChanged {
        to: to @ None,
        request: Some(request),
    } = &mut fact.kind
    {
        *to = plan_target(tenant, license, request, stated, now);
    }
    fact
}

pub async fn apply(
    store: &dyn EventStore,
    tenant: &Tenant,
    event: &GumroadEvent,
) -> Result<EventResult, StoreError> {
    let now = OffsetDateTime::now_utc();
    let Some(fact) = fact_of(event, tenant.refund_policy, now) else {
        return Ok(EventResult::Unknown);
    };
    let tenant_id = &tenant.tenant_id;
    for _ in 0..STALE_RETRIES {
        let (license, anchor) = match &event.subject {
            EventSubject::Sale(sale_id) => (
                store.license_for_sale(tenant_id, sale_id).await?,
                Anchor::Sale(sale_id),
            ),
            EventSubject::Subscription { id, purchase_ids } => {
                let mut license = store.license_for_subscription(tenant_id, id).await?;
                // A license minted before subscriptions had pointers is found through its purchases.
                for sale_id in purchase_ids {
                    if license.is_some() {
                        break;
                    }
                    license = store
                        .license_for_sale(tenant_id, sale_id)
                        .await?
                        .filter(|l| l.subscription_id.as_deref() == Some(id.as_str()));
                }
                (license, Anchor::Subscription(id))
            }
        };
        let Some(license) = license else {
            let seen = store.orphans(tenant_id, anchor).await?;
            match store.write_orphan(tenant_id, anchor, &seen, &fact).await? {
                Written::Applied => return Ok(EventResult::Unknown),
                Written::Duplicate => return Ok(EventResult::Duplicate),
                Written::Stale => continue,
            }
        };
        let fact = resolve(tenant, &license, fact.clone(), now);
        let mut after = license.clone();
        if !after.record(fact.clone(), &rfc3339(now)) {
            return Ok(EventResult::Duplicate);
        }
        match store.write_facts(&license, &after).await? {
            Written::Applied => return Ok(result(&license, after, &fact, now)),
            Written::Duplicate => return Ok(EventResult::Duplicate),
            Written::Stale => continue,
        }
    }
    Err(StoreError::Unavailable(
        "the event's license kept changing".to_owned(),
    ))
}

fn result(before: &License, after: License, fact: &Fact, now: OffsetDateTime) -> EventResult {
    let FactKind::PlanChanged { to, .. } = &fact.kind else {
        return EventResult::Applied {
            status: after.status,
        };
    };
    let deferred = to
        .as_ref()
        .is_some_and(|to| to.effective_at.as_str() > rfc3339(now).as_str());
    let changed = to.as_ref().is_some_and(|to| {
        to.product_id != before.product_id
            || to.activation_limit != before.activation_limit
            || to.quantity != before.quantity
            || deferred
            || before.pending_change.is_some()
    });
    if to.is_none() {
        tracing::info!(
            tenant = %after.tenant_id,
            license = %after.license_id,
            "plan change leaves the license as it is (no mapping for the new tier)"
        );
    }
    EventResult::Plan {
        license: Box::new(after),
        changed,
        deferred,
    }
}
