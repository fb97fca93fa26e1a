//! The non-sale pings: refunds and disputes (sale-shaped, with the sale's own `sale_id`) and subscription
//! events (`subscription_id`, `purchase_ids[]`, no `sale_id`).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::SaleId;

use super::{Form, PingError, ping::one_line};

/// `subscription_updated`'s `type`: an upgrade applies at once, a downgrade from `effective_as_of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanDirection {
    Upgrade,
    Downgrade,
}

/// A tier or seat change of a membership, read from `subscription_updated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanUpdate {
    pub direction: Option<PlanDirection>,
    pub effective_as_of: Option<OffsetDateTime>,
    /// `old_plan[tier][name]` and `new_plan[tier][name]`.
    pub old_tier: Option<String>,
    pub new_tier: Option<String>,
    /// `new_plan[quantity]`: the seats bought from now on.
    pub new_quantity: Option<u32>,
}

impl PlanUpdate {
    /// `None` when the event says nothing about a plan (an older payload: recorded, nothing changes).
    fn from_form(form: &Form) -> Result<Option<Self>, PingError> {
        let direction = match form.get_nonempty("type") {
            None => None,
            Some("upgrade") => Some(PlanDirection::Upgrade),
            Some("downgrade") => Some(PlanDirection::Downgrade),
            Some(_) => return Err(PingError::Invalid("Invalid type".to_owned())),
        };
        let effective_as_of = form
            .get_nonempty("effective_as_of")
            .map(|raw| {
                parse_time(raw)
                    .ok_or_else(|| PingError::Invalid("Invalid effective_as_of".to_owned()))
            })
            .transpose()?;
        let new_quantity = form
            .get_nonempty("new_plan[quantity]")
            .map(|raw| match raw.parse::<u32>() {
                Ok(q) if q > 0 => Ok(q),
                _ => Err(PingError::Invalid("Invalid new_plan[quantity]".to_owned())),
            })
            .transpose()?;
        let tier = |field: &str| form.get_nonempty(field).map(one_line);
        let update = Self {
            direction,
            effective_as_of,
            old_tier: tier("old_plan[tier][name]"),
            new_tier: tier("new_plan[tier][name]"),
            new_quantity,
        };
        let says_something = update.direction.is_some()
            || update.new_tier.is_some()
            || update.new_quantity.is_some();
        Ok(says_something.then_some(update))
    }

    /// When the change applies: a downgrade waits for `effective_as_of`; everything else is immediate.
    pub fn effective_at(&self, now: OffsetDateTime) -> OffsetDateTime {
        match (self.direction, self.effective_as_of) {
            (Some(PlanDirection::Downgrade), Some(at)) if at > now => at,
            _ => now,
        }
    }
}

/// Gumroad's timestamps: RFC 3339, or Ruby's `2026-06-01 00:00:00 UTC`.
pub fn parse_time(raw: &str) -> Option<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Some(at);
    }
    let ruby =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::PrimitiveDateTime::parse(raw, ruby)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `refunded=true` for a full refund; `false` for a partial one, which leaves the license alone.
    Refund {
        full: bool,
    },
    Dispute,
    DisputeWon,
    Cancellation {
        cancelled_at: Option<String>,
    },
    SubscriptionEnded {
        ended_at: Option<String>,
        /// `ended_reason=failed_payment`.
        failed_payment: bool,
    },
    SubscriptionRestarted {
        restarted_at: Option<String>,
    },
    SubscriptionUpdated(Option<PlanUpdate>),
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Refund { .. } => "refund",
            Self::Dispute => "dispute",
            Self::DisputeWon => "dispute_won",
            Self::Cancellation { .. } => "cancellation",
            Self::SubscriptionEnded { .. } => "subscription_ended",
            Self::SubscriptionRestarted { .. } => "subscription_restarted",
            Self::SubscriptionUpdated(_) => "subscription_updated",
        }
    }
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventSubject {
    Sale(SaleId),
    Subscription {
        id: String,
        purchase_ids: Vec<SaleId>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GumroadEvent {
    pub kind: EventKind,
    pub subject: EventSubject,
    /// Identifies this event among all of the tenant's: a replay has the same key.
    pub idempotency_key: String,
}

impl GumroadEvent {
    /// Reads an event ping; `None` for a `resource_name` keystead does not know.
    pub fn from_form(resource_name: &str, form: &Form) -> Result<Option<Self>, PingError> {
        let kind = match resource_name {
            "refund" => EventKind::Refund {
                full: form.get("refunded").map(str::trim) != Some("false"),
            },
            "dispute" => EventKind::Dispute,
            "dispute_won" => EventKind::DisputeWon,
            "cancellation" => EventKind::Cancellation {
                cancelled_at: form.get_nonempty("cancelled_at").map(one_line),
            },
            "subscription_ended" => EventKind::SubscriptionEnded {
                ended_at: form.get_nonempty("ended_at").map(one_line),
                failed_payment: form.get_nonempty("ended_reason") == Some("failed_payment"),
            },
            "subscription_restarted" => EventKind::SubscriptionRestarted {
                restarted_at: form.get_nonempty("restarted_at").map(one_line),
            },
            "subscription_updated" => EventKind::SubscriptionUpdated(PlanUpdate::from_form(form)?),
            _ => return Ok(None),
        };
        let invalid = |e: crate::domain::InvalidValue| PingError::Invalid(e.0);
        let (subject, discriminator) = match &kind {
            EventKind::Refund { full } => {
                let sale = SaleId::parse(
                    form.get_nonempty("sale_id")
                        .ok_or(PingError::MissingFields)?,
                )
                .map_err(invalid)?;
                (
                    EventSubject::Sale(sale),
                    if *full { "full" } else { "partial" }.to_owned(),
                )
            }
            EventKind::Dispute | EventKind::DisputeWon => {
                let sale = SaleId::parse(
                    form.get_nonempty("sale_id")
                        .ok_or(PingError::MissingFields)?,
                )
                .map_err(invalid)?;
                (EventSubject::Sale(sale), String::new())
            }
            _ => {
                let id = form
                    .get_nonempty("subscription_id")
                    .ok_or(PingError::MissingFields)?;
                if id.len() > 256 || id.chars().any(|c| !c.is_ascii_graphic()) {
                    return Err(PingError::Invalid("Invalid subscription_id".to_owned()));
                }
                let purchase_ids = form
                    .get_all("purchase_ids[]")
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(SaleId::parse)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(invalid)?;
                // The moment the event describes tells two cancellations (or restarts) of one subscription apart.
                let at = [
                    "cancelled_at",
                    "ended_at",
                    "restarted_at",
                    "effective_as_of",
                ]
                .iter()
                .find_map(|field| form.get_nonempty(field))
                .map(one_line)
                .unwrap_or_default();
                // A plan change is told apart by what it changes to, too (two seat changes at one moment).
                let plan = ["type", "new_plan[tier][name]", "new_plan[quantity]"]
                    .iter()
                    .map(|field| form.get_nonempty(field).map(one_line).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("#");
                (
                    EventSubject::Subscription {
                        id: id.to_owned(),
                        purchase_ids,
                    },
                    format!("{at}#{plan}"),
                )
            }
        };
        let subject_id = match &subject {
            EventSubject::Sale(sale) => sale.to_string(),
            EventSubject::Subscription { id, .. } => id.clone(),
        };
        let idempotency_key = format!("{}#{subject_id}#{discriminator}", kind.name());
        Ok(Some(Self {
            kind,
            subject,
            idempotency_key,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Form {
        Form::from_urlencoded(body.as_bytes()).unwrap()
    }

    #[test]
    fn reads_refunds_and_disputes_by_sale_id() {
        let full = GumroadEvent::from_form("refund", &form("sale_id=s1&refunded=true"))
            .unwrap()
            .unwrap();
        assert_eq!(full.kind, EventKind::Refund { full: true });
        assert_eq!(
            full.subject,
            EventSubject::Sale(SaleId::parse("s1").unwrap())
        );
        let partial = GumroadEvent::from_form("refund", &form("sale_id=s1&refunded=false"))
            .unwrap()
            .unwrap();
        assert_eq!(partial.kind, EventKind::Refund { full: false });
        assert_ne!(full.idempotency_key, partial.idempotency_key);
        assert_eq!(
            GumroadEvent::from_form("dispute", &form("email=a")),
            Err(PingError::MissingFields)
        );
    }

    #[test]
    fn reads_subscription_events_without_a_sale_id() {
        let body = "subscription_id=sub%3D%3D&user_email=a%40b.co&purchase_ids%5B%5D=p1&purchase_ids%5B%5D=p2&resource_name=subscription_ended&ended_at=2026-06-01T00%3A00%3A00Z&ended_reason=cancelled";
        let event = GumroadEvent::from_form("subscription_ended", &form(body))
            .unwrap()
            .unwrap();
        assert_eq!(
            event.kind,
            EventKind::SubscriptionEnded {
                ended_at: Some("2026-06-01T00:00:00Z".into()),
                failed_payment: false,
            }
        );
        let EventSubject::Subscription { id, purchase_ids } = &event.subject else {
            panic!()
        };
        assert_eq!(id, "sub==");
        assert_eq!(purchase_ids.len(), 2);
        assert_eq!(GumroadEvent::from_form("whatever", &form(body)), Ok(None));
    }

    #[test]
    fn reads_plan_changes_and_tells_them_apart() {
        let body = "subscription_id=sub1&type=downgrade&effective_as_of=2026-07-01T00%3A00%3A00Z&old_plan%5Btier%5D%5Bname%5D=Studio&new_plan%5Btier%5D%5Bname%5D=Team&new_plan%5Bquantity%5D=3";
        let event = GumroadEvent::from_form("subscription_updated", &form(body))
            .unwrap()
            .unwrap();
        let EventKind::SubscriptionUpdated(Some(plan)) = &event.kind else {
            panic!("{:?}", event.kind)
        };
        assert_eq!(plan.direction, Some(PlanDirection::Downgrade));
        assert_eq!(plan.new_tier.as_deref(), Some("Team"));
        assert_eq!(plan.new_quantity, Some(3));
        let due = time::macros::datetime!(2026-07-01 00:00 UTC);
        assert_eq!(
            plan.effective_at(due - time::Duration::DAY),
            due,
            "a downgrade waits"
        );
        let seats = GumroadEvent::from_form(
            "subscription_updated",
            &form(&body.replace("new_plan%5Bquantity%5D=3", "new_plan%5Bquantity%5D=4")),
        )
        .unwrap()
        .unwrap();
        assert_ne!(seats.idempotency_key, event.idempotency_key);
        let ruby = GumroadEvent::from_form(
            "subscription_updated",
            &form(&body.replace(
                "2026-07-01T00%3A00%3A00Z",
                "2026-07-01%2000%3A00%3A00%20UTC",
            )),
        )
        .unwrap()
        .unwrap();
        let EventKind::SubscriptionUpdated(Some(ruby)) = ruby.kind else {
            panic!()
        };
        assert_eq!(ruby.effective_as_of, Some(due));
        assert_eq!(
            GumroadEvent::from_form("subscription_updated", &form("subscription_id=s&type=x")),
            Err(PingError::Invalid("Invalid type".into()))
        );
        let bare = GumroadEvent::from_form("subscription_updated", &form("subscription_id=s"))
            .unwrap()
            .unwrap();
        assert_eq!(bare.kind, EventKind::SubscriptionUpdated(None));
    }
}
