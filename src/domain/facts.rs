//! A license's state is a fold of facts: everything Gumroad said about its sale and subscription (each charge,
//! refund, dispute, won dispute, cancellation, end, restart and plan change) and everything the seller did
//! (revoke, reinstate, extend), each recorded once, by an id that does not depend on how it arrived, with the time
//! it happened. `derive` computes status, expiry, flags and plan from the whole set: the same set, in any order
//! and with any duplicates, gives the same license (the README's lifecycle table states the rules).

use std::cmp::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{LicenseStatus, PlanChange, SaleId, rfc3339};

/// One thing that happened to a license's sale, subscription or key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// The same fact has the same id however it arrives: a retry, an import, through its sale or its subscription.
    pub id: String,
    /// When it happened (RFC 3339, UTC): Gumroad's own time when the ping carries one, else when keystead first
    /// heard of it. Where two facts conflict, the later one wins.
    pub at: String,
    pub kind: FactKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactKind {
    /// A payment: a first sale or a renewal. It pays for `period_days` (none: the license does not expire by
    /// time), counted from `period_from` (when keystead received it, or an imported sale's own date) or from the
    /// end of the periods already paid, whichever is later. It states the plan it was sold as (its tier's product
    /// and its quantity).
    Charge {
        sale_id: SaleId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        period_days: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        period_from: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        plan: Option<PlanChange>,
    },
    /// `full`: the whole sale was refunded (Gumroad's `refunded`); `revokes`: the tenant's refund policy revoked
    /// the license when it was recorded.
    Refund {
        sale_id: SaleId,
        full: bool,
        revokes: bool,
    },
    Dispute {
        sale_id: SaleId,
    },
    /// Lifts that sale's dispute, and nothing else.
    DisputeWon {
        sale_id: SaleId,
    },
    /// The subscription was cancelled: it runs to the end of the paid period.
    Cancelled,
    Ended {
        failed_payment: bool,
    },
    Restarted,
    /// A tier or seat change, effective at `to.effective_at`. `to` is `None` while the change is not resolved to
    /// a product (it arrived before the license), or when the new tier has no mapping (it changes nothing).
    PlanChanged {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<PlanChange>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<PlanRequest>,
    },
    /// The seller's `license revoke`: Gumroad's "disabled" key.
    Revoked,
    /// The seller's `license suspend`: refused until `license resume` (or `reinstate`).
    Suspended,
    Resumed,
    /// The seller's `license reinstate`: lifts the seller's revocation and every refund and dispute recorded
    /// before it (not a subscription's end).
    Reinstated,
    /// The license is good until at least `until` (the seller's extension; also the expiry a license made before
    /// facts existed already had).
    Extended {
        until: String,
    },
}

/// What `subscription_updated` asked for, kept until the change can be resolved against the license's product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downgrade: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_as_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_quantity: Option<u32>,
}

impl Fact {
    /// The ids of the facts a sale's own pings state: the same whether they come from a ping, an import or a
    /// license made before facts were kept.
    pub fn charge_id(sale_id: &SaleId) -> String {
        format!("charge#{sale_id}")
    }

    pub fn refund_id(sale_id: &SaleId, full: bool) -> String {
        format!("refund#{sale_id}#{}", if full { "full" } else { "partial" })
    }

    pub fn dispute_id(sale_id: &SaleId) -> String {
        format!("dispute#{sale_id}#")
    }
}

impl FactKind {
    /// At equal times, the fact that keeps a paying member going comes last, so it wins the tie.
    fn tie_order(&self) -> u8 {
        match self {
            Self::Ended { .. } | Self::Cancelled | Self::Revoked | Self::Suspended => 0,
            Self::Refund { .. } | Self::Dispute { .. } | Self::PlanChanged { .. } => 1,
            Self::DisputeWon { .. } | Self::Extended { .. } => 2,
            Self::Charge { .. } | Self::Restarted | Self::Reinstated | Self::Resumed => 3,
        }
    }
}

/// Everything about a license that facts decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub status: LicenseStatus,
    pub refunded: bool,
    pub chargebacked: bool,
    /// Revoked by the seller.
    pub disabled: bool,
    pub subscription_cancelled_at: Option<String>,
    pub subscription_ended_at: Option<String>,
    pub subscription_failed_at: Option<String>,
    pub expires_at: Option<String>,
    /// The plan in force; `None` when no fact states one (the license keeps the plan it has).
    pub plan: Option<PlanChange>,
    /// A stated change that is not due yet.
    pub pending_change: Option<PlanChange>,
}

fn parse(at: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(at, &Rfc3339).ok()
}

/// Orders two RFC 3339 times by the instant they name (text order when one does not parse).
fn cmp_time(a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => a.cmp(b),
    }
}

/// The facts once each (by id; of two with one id, the earlier), in the order they happened.
pub fn in_order(facts: &[Fact]) -> Vec<&Fact> {
    let mut by_id: Vec<&Fact> = facts.iter().collect();
    by_id.sort_by(|a, b| a.id.cmp(&b.id).then(cmp_time(&a.at, &b.at)));
    by_id.dedup_by(|later, earlier| later.id == earlier.id);
    by_id.sort_by(|a, b| {
        cmp_time(&a.at, &b.at)
            .then(a.kind.tie_order().cmp(&b.kind.tie_order()))
            .then(a.id.cmp(&b.id))
    });
    by_id
}

/// The license that `facts` describe at `now` (RFC 3339).
pub fn derive(facts: &[Fact], now: &str) -> Derived {
    let facts = in_order(facts);
    let last = |wanted: &dyn Fn(&FactKind) -> bool| facts.iter().rposition(|f| wanted(&f.kind));
    let after = |position: Option<usize>, wanted: &dyn Fn(&FactKind) -> bool| {
        facts
            .iter()
            .enumerate()
            .any(|(i, f)| position.is_none_or(|p| i > p) && wanted(&f.kind))
    };

    // The seller: the later of revoke and reinstate stands; a reinstatement waives what Gumroad said before it.
    let seller = last(&|k| matches!(k, FactKind::Revoked | FactKind::Reinstated));
    let disabled = seller.is_some_and(|i| facts[i].kind == FactKind::Revoked);
    let waived = last(&|k| *k == FactKind::Reinstated);
    let refunded = facts
        .iter()
        .any(|f| matches!(f.kind, FactKind::Refund { full: true, .. }));
    let refund_revokes = after(waived, &|k| {
        matches!(
            k,
            FactKind::Refund {
                full: true,
                revokes: true,
                ..
            }
        )
    });
    let won = |sale: &SaleId| {
        facts
            .iter()
            .any(|f| matches!(&f.kind, FactKind::DisputeWon { sale_id } if sale_id == sale))
    };
    let open_dispute = |k: &FactKind| matches!(k, FactKind::Dispute { sale_id } if !won(sale_id));
    let chargebacked = facts.iter().any(|f| open_dispute(&f.kind));
    let hold = last(&|k| {
        matches!(
            k,
            FactKind::Suspended | FactKind::Resumed | FactKind::Reinstated
        )
    });
    let held = hold.is_some_and(|i| facts[i].kind == FactKind::Suspended);
    let suspended = held || after(waived, &open_dispute);

    // The subscription: an end stands unless a restart or a charge came after it; a cancellation unless a restart.
    let end = last(&|k| matches!(k, FactKind::Ended { .. }));
    let ended = end.filter(|_| {
        !after(end, &|k| {
            matches!(k, FactKind::Restarted | FactKind::Charge { .. })
        })
    });
    let cancel = last(&|k| *k == FactKind::Cancelled);
    let cancelled = cancel.filter(|_| !after(cancel, &|k| *k == FactKind::Restarted));

    let status = if disabled || refund_revokes {
        LicenseStatus::Revoked
    } else if suspended {
        LicenseStatus::Suspended
    } else if ended.is_some() {
        LicenseStatus::Expired
    } else {
        LicenseStatus::Active
    };

    // Expiry: each charge pays for its period from when it came, or from the end of what was already paid.
    let mut expires: Option<OffsetDateTime> = None;
    for fact in &facts {
        if let FactKind::Charge {
            period_days: Some(days),
            period_from,
            ..
        } = &fact.kind
        {
            let from = parse(period_from.as_deref().unwrap_or(&fact.at));
            let base = match (expires, from) {
                (Some(paid), Some(from)) => paid.max(from),
                (paid, from) => match from.or(paid) {
                    Some(base) => base,
                    None => continue,
                },
            };
            expires = Some(base + Duration::from_secs(u64::from(*days) * 24 * 3600));
        }
    }
    for fact in &facts {
        if let FactKind::Extended { until } = &fact.kind
            && let Some(until) = parse(until)
        {
            expires = Some(expires.map_or(until, |e| e.max(until)));
        }
    }

    // The plan: statements in the order they were made; one that is due is in force, one that is not waits.
    let mut plan = None;
    let mut pending = None;
    for fact in &facts {
        let stated = match &fact.kind {
            FactKind::Charge {
                plan: Some(stated), ..
            } => Some(PlanChange {
                effective_at: fact.at.clone(),
                ..stated.clone()
            }),
            FactKind::PlanChanged { to: Some(to), .. } => Some(to.clone()),
            _ => None,
        };
        if let Some(stated) = stated {
            if cmp_time(&stated.effective_at, now) == Ordering::Greater {
                pending = Some(stated);
            } else {
                plan = Some(stated);
                pending = None;
            }
        }
    }

    let at = |position: Option<usize>| position.map(|i| facts[i].at.clone());
    Derived {
        status,
        refunded,
        chargebacked,
        disabled,
        subscription_cancelled_at: at(cancelled),
        subscription_ended_at: at(ended),
        subscription_failed_at: ended
            .filter(|&i| {
                matches!(
                    facts[i].kind,
                    FactKind::Ended {
                        failed_payment: true
                    }
                )
            })
            .map(|i| facts[i].at.clone()),
        expires_at: expires.map(rfc3339),
        plan,
        pending_change: pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProductId;
    use LicenseStatus::*;

    fn sale(id: &str) -> SaleId {
        SaleId::parse(id).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn fact(id: &str, at: &str, kind: FactKind) -> Fact {
        Fact {
            id: id.to_owned(),
            at: at.to_owned(),
            kind,
        }
    }

    fn plan(product: &str, limit: u32, effective_at: &str) -> PlanChange {
        PlanChange {
            product_id: ProductId::parse(product).unwrap_or_else(|e| panic!("{e:?}")),
            product_name: product.to_owned(),
            activation_limit: limit,
            quantity: 1,
            effective_at: effective_at.to_owned(),
        }
    }

    fn charge(sale_id: &str, at: &str, days: Option<u32>) -> Fact {
        fact(
            &format!("charge#{sale_id}"),
            at,
            FactKind::Charge {
                sale_id: sale(sale_id),
                period_days: days,
                period_from: None,
                plan: None,
            },
        )
    }

    const NOW: &str = "2026-12-01T00:00:00Z";

    fn status(facts: &[Fact]) -> LicenseStatus {
        derive(facts, NOW).status
    }

    #[test]
    fn the_lifecycle_table() {
        let first = charge("s1", "2026-01-01T00:00:00Z", None);
        let refund = |revokes| {
            fact(
                "refund#s1#full",
                "2026-02-01T00:00:00Z",
                FactKind::Refund {
                    sale_id: sale("s1"),
                    full: true,
                    revokes,
                },
            )
        };
        let dispute = fact(
            "dispute#s1#",
            "2026-02-02T00:00:00Z",
            FactKind::Dispute {
                sale_id: sale("s1"),
            },
        );
        let won = fact(
            "dispute_won#s1#",
            "2026-02-03T00:00:00Z",
            FactKind::DisputeWon {
                sale_id: sale("s1"),
            },
        );
        let end = |at: &str| {
            fact(
                &format!("end#{at}"),
                at,
                FactKind::Ended {
                    failed_payment: false,
                },
            )
        };
        let restart = |at: &str| fact(&format!("restart#{at}"), at, FactKind::Restarted);
        let reinstate = fact("reinstate#1", "2026-03-01T00:00:00Z", FactKind::Reinstated);
        let revoke = fact("revoke#1", "2026-02-15T00:00:00Z", FactKind::Revoked);

        assert_eq!(status(std::slice::from_ref(&first)), Active);
        assert_eq!(status(&[first.clone(), refund(true)]), Revoked);
        assert_eq!(
            status(&[first.clone(), refund(false)]),
            Active,
            "the keep policy"
        );
        assert!(derive(&[first.clone(), refund(false)], NOW).refunded);
        assert_eq!(status(&[first.clone(), dispute.clone()]), Suspended);
        assert_eq!(
            status(&[first.clone(), dispute.clone(), won.clone()]),
            Active
        );
        assert_eq!(
            status(&[first.clone(), dispute.clone(), refund(true), won.clone()]),
            Revoked,
            "a won dispute never undoes a refund"
        );
        // A won dispute lifts only its dispute: a subscription that ended meanwhile stays ended.
        let ended = end("2026-02-05T00:00:00Z");
        assert_eq!(
            status(&[first.clone(), dispute.clone(), ended.clone(), won.clone()]),
            Expired
        );
        // A restart after an end wins; a retried end from before the restart changes nothing.
        let restarted = restart("2026-02-10T00:00:00Z");
        assert_eq!(
            status(&[first.clone(), ended.clone(), restarted.clone()]),
            Active
        );
        assert_eq!(
            derive(&[first.clone(), restarted.clone(), ended.clone()], NOW).subscription_ended_at,
            None
        );
        // A charge after an end clears it too.
        let renewal = charge("s2", "2026-02-20T00:00:00Z", None);
        assert_eq!(
            status(&[first.clone(), ended.clone(), renewal.clone()]),
            Active
        );
        // The seller: revoke, then reinstate, which waives the refund and dispute recorded before it.
        assert_eq!(status(&[first.clone(), revoke.clone()]), Revoked);
        assert!(derive(&[first.clone(), revoke.clone()], NOW).disabled);
        assert_eq!(
            status(&[
                first.clone(),
                revoke.clone(),
                refund(true),
                dispute.clone(),
                reinstate.clone()
            ]),
            Active
        );
        let late_refund = fact(
            "refund#s2#full",
            "2026-04-01T00:00:00Z",
            FactKind::Refund {
                sale_id: sale("s2"),
                full: true,
                revokes: true,
            },
        );
        assert_eq!(
            status(&[first.clone(), reinstate.clone(), late_refund]),
            Revoked
        );
        assert_eq!(
            status(&[first, ended, reinstate]),
            Expired,
            "a reinstatement does not bring back a subscription that ended"
        );
    }

    #[test]
    fn the_sellers_suspension_lasts_until_a_resume_or_reinstatement_and_lifts_nothing_else() {
        let first = charge("s1", "2026-01-01T00:00:00Z", None);
        let at = |day: u32| format!("2026-02-{day:02}T00:00:00Z");
        let seller = |id: &str, day: u32, kind: FactKind| fact(id, &at(day), kind);
        let suspend = seller("suspend#1", 1, FactKind::Suspended);
        let resume = seller("resume#1", 2, FactKind::Resumed);
        let dispute = fact(
            "dispute#s1#",
            &at(3),
            FactKind::Dispute {
                sale_id: sale("s1"),
            },
        );
        assert_eq!(status(&[first.clone(), suspend.clone()]), Suspended);
        assert_eq!(
            status(&[first.clone(), resume.clone(), suspend.clone()]),
            Active
        );
        assert_eq!(
            status(&[first.clone(), suspend.clone(), resume.clone(), dispute]),
            Suspended,
            "a resume lifts only the seller's own suspension"
        );
        let revoke = seller("revoke#1", 4, FactKind::Revoked);
        assert_eq!(status(&[first, suspend, revoke]), Revoked);
    }

    #[test]
    fn expiry_adds_each_charges_period_from_when_it_came_or_from_what_was_paid() {
        let day = |d: u32| format!("2026-01-{d:02}T00:00:00Z");
        let first = charge("s1", &day(1), Some(30));
        let early_renewal = charge("s2", &day(20), Some(30));
        let derived = derive(&[early_renewal, first.clone()], NOW);
        assert_eq!(derived.expires_at.as_deref(), Some("2026-03-02T00:00:00Z"));
        let late_renewal = charge("s3", "2026-06-01T00:00:00Z", Some(30));
        let derived = derive(&[first.clone(), late_renewal], NOW);
        assert_eq!(derived.expires_at.as_deref(), Some("2026-07-01T00:00:00Z"));
        let extended = fact(
            "extend#1",
            &day(2),
            FactKind::Extended {
                until: "2027-01-01T00:00:00Z".to_owned(),
            },
        );
        assert_eq!(
            derive(&[first, extended], NOW).expires_at.as_deref(),
            Some("2027-01-01T00:00:00Z")
        );
        assert_eq!(derive(&[charge("s1", &day(1), None)], NOW).expires_at, None);
    }

    #[test]
    fn plans_in_the_order_stated_a_due_one_in_force_a_later_one_pending() {
        let minted = fact(
            "charge#s1",
            "2026-01-01T00:00:00Z",
            FactKind::Charge {
                sale_id: sale("s1"),
                period_days: None,
                period_from: None,
                plan: Some(plan("pro", 5, "")),
            },
        );
        let changed = |id: &str, at: &str, to: PlanChange| {
            fact(
                id,
                at,
                FactKind::PlanChanged {
                    to: Some(to),
                    request: None,
                },
            )
        };
        let downgrade = changed(
            "plan#down",
            "2026-11-01T00:00:00Z",
            plan("basic", 1, "2027-01-01T00:00:00Z"),
        );
        let derived = derive(&[minted.clone(), downgrade.clone()], NOW);
        assert_eq!(
            derived.plan.map(|p| p.product_id.to_string()),
            Some("pro".to_owned())
        );
        assert_eq!(
            derived.pending_change.map(|p| p.product_id.to_string()),
            Some("basic".to_owned())
        );
        let due = derive(&[minted.clone(), downgrade.clone()], "2027-02-01T00:00:00Z");
        assert_eq!(due.plan.map(|p| p.activation_limit), Some(1));
        assert_eq!(due.pending_change, None);
        // An upgrade stated after the pending downgrade replaces it.
        let upgrade = changed(
            "plan#up",
            "2026-11-15T00:00:00Z",
            plan("team", 10, "2026-11-15T00:00:00Z"),
        );
        let derived = derive(&[upgrade, downgrade, minted], NOW);
        assert_eq!(derived.plan.map(|p| p.activation_limit), Some(10));
        assert_eq!(derived.pending_change, None);
    }

    #[test]
    fn duplicates_and_order_change_nothing() {
        let facts = vec![
            charge("s1", "2026-01-01T00:00:00Z", Some(30)),
            charge("s2", "2026-01-31T00:00:00Z", Some(30)),
            fact(
                "dispute#s2#",
                "2026-02-02T00:00:00Z",
                FactKind::Dispute {
                    sale_id: sale("s2"),
                },
            ),
            fact("cancel#1", "2026-02-03T00:00:00Z", FactKind::Cancelled),
            fact(
                "end#1",
                "2026-03-02T00:00:00Z",
                FactKind::Ended {
                    failed_payment: true,
                },
            ),
        ];
        let expected = derive(&facts, NOW);
        let mut shuffled = facts.clone();
        shuffled.reverse();
        shuffled.extend(facts.iter().take(3).cloned());
        assert_eq!(derive(&shuffled, NOW), expected);
        assert_eq!(expected.status, Suspended);
        assert_eq!(
            expected.subscription_failed_at.as_deref(),
            Some("2026-03-02T00:00:00Z")
        );
        assert_eq!(
            expected.subscription_cancelled_at.as_deref(),
            Some("2026-02-03T00:00:00Z")
        );
    }
}
