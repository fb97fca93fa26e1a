//! The non-sale pings: refunds and disputes (sale-shaped, with the sale's own `sale_id`) and subscription
//! events (`subscription_id`, `purchase_ids[]`, no `sale_id`).

use crate::domain::SaleId;

use super::{Form, PingError, ping::one_line};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `refunded=true` for a full refund; `false` for a partial one, which leaves the license alone.
    Refund {
        full: bool,
    },
    Dispute,
    DisputeWon,
    Cancellation,
    SubscriptionEnded {
        ended_at: Option<String>,
    },
    SubscriptionRestarted,
    SubscriptionUpdated,
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Refund { .. } => "refund",
            Self::Dispute => "dispute",
            Self::DisputeWon => "dispute_won",
            Self::Cancellation => "cancellation",
            Self::SubscriptionEnded { .. } => "subscription_ended",
            Self::SubscriptionRestarted => "subscription_restarted",
            Self::SubscriptionUpdated => "subscription_updated",
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
    /// Reads an event ping; `None` for a `resource_name` keymint does not know.
    pub fn from_form(resource_name: &str, form: &Form) -> Result<Option<Self>, PingError> {
        let kind = match resource_name {
            "refund" => EventKind::Refund {
                full: form.get("refunded").map(str::trim) != Some("false"),
            },
            "dispute" => EventKind::Dispute,
            "dispute_won" => EventKind::DisputeWon,
            "cancellation" => EventKind::Cancellation,
            "subscription_ended" => EventKind::SubscriptionEnded {
                ended_at: form.get_nonempty("ended_at").map(one_line),
            },
            "subscription_restarted" => EventKind::SubscriptionRestarted,
            "subscription_updated" => EventKind::SubscriptionUpdated,
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
                let update_type = form.get_nonempty("type").map(one_line).unwrap_or_default();
                (
                    EventSubject::Subscription {
                        id: id.to_owned(),
                        purchase_ids,
                    },
                    format!("{at}#{update_type}"),
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
                ended_at: Some("2026-06-01T00:00:00Z".into())
            }
        );
        let EventSubject::Subscription { id, purchase_ids } = &event.subject else {
            panic!()
        };
        assert_eq!(id, "sub==");
        assert_eq!(purchase_ids.len(), 2);
        assert_eq!(GumroadEvent::from_form("whatever", &form(body)), Ok(None));
    }
}
