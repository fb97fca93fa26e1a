//! What happened, as the seller reads it (`keystead audit`) and as their own systems hear it (signed webhooks,
//! issue 25). An event is written in the same DynamoDB transaction as the change it reports, so neither exists
//! without the other; the events that are in the webhook catalogue are then delivered from there.
//!
//! Events are computed from the license before and after a write, never told by the caller: a new fact is the
//! event of its kind (`sale.refunded`, `subscription.ended`, …), and a change of what the license grants (status,
//! expiry, seats, tier) is `license.updated` with the previous and the new values.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::facts::{Fact, FactKind};
use super::ids::{KeyHash, LicenseId, TenantId};
use super::key::{RandomnessError, random_bytes, sha256_hex};
use super::records::License;

/// The kinds of event. Those `delivered` are the webhook catalogue; the `seller.*` ones are the audit log's own
/// (a seller's action through the CLI: its effect on a license is delivered as `license.updated`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    LicenseCreated,
    LicenseUpdated,
    LicenseKeyReplaced,
    LicenseMachineActivated,
    LicenseMachineDeactivated,
    SaleRecorded,
    SaleRefunded,
    SaleDisputed,
    SaleDisputeWon,
    SubscriptionCancelled,
    SubscriptionEnded,
    SubscriptionRestarted,
    SubscriptionUpdated,
    /// `keystead webhook test`: delivered to the one endpoint it names.
    PingTest,
    SellerLicenseRevoked,
    SellerLicenseSuspended,
    SellerLicenseResumed,
    SellerLicenseReinstated,
    SellerLicenseExtended,
    /// `keystead release publish` (or `publish-draft`): a release reached the feeds.
    ReleasePublished,
    /// Any other seller action through the CLI (a tenant, product or webhook changed).
    SellerCommand,
}

impl EventType {
    pub const ALL: [EventType; 21] = [
        Self::LicenseCreated,
        Self::LicenseUpdated,
        Self::LicenseKeyReplaced,
        Self::LicenseMachineActivated,
        Self::LicenseMachineDeactivated,
        Self::SaleRecorded,
        Self::SaleRefunded,
        Self::SaleDisputed,
        Self::SaleDisputeWon,
        Self::SubscriptionCancelled,
        Self::SubscriptionEnded,
        Self::SubscriptionRestarted,
        Self::SubscriptionUpdated,
        Self::PingTest,
        Self::SellerLicenseRevoked,
        Self::SellerLicenseSuspended,
        Self::SellerLicenseResumed,
        Self::SellerLicenseReinstated,
        Self::SellerLicenseExtended,
        Self::ReleasePublished,
        Self::SellerCommand,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LicenseCreated => "license.created",
            Self::LicenseUpdated => "license.updated",
            Self::LicenseKeyReplaced => "license.key_replaced",
            Self::LicenseMachineActivated => "license.machine_activated",
            Self::LicenseMachineDeactivated => "license.machine_deactivated",
            Self::SaleRecorded => "sale.recorded",
            Self::SaleRefunded => "sale.refunded",
            Self::SaleDisputed => "sale.disputed",
            Self::SaleDisputeWon => "sale.dispute_won",
            Self::SubscriptionCancelled => "subscription.cancelled",
            Self::SubscriptionEnded => "subscription.ended",
            Self::SubscriptionRestarted => "subscription.restarted",
            Self::SubscriptionUpdated => "subscription.updated",
            Self::PingTest => "ping.test",
            Self::SellerLicenseRevoked => "seller.license_revoked",
            Self::SellerLicenseSuspended => "seller.license_suspended",
            Self::SellerLicenseResumed => "seller.license_resumed",
            Self::SellerLicenseReinstated => "seller.license_reinstated",
            Self::SellerLicenseExtended => "seller.license_extended",
            Self::ReleasePublished => "release.published",
            Self::SellerCommand => "seller.command",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Whether webhooks deliver it (the catalogue an endpoint subscribes to).
    pub fn delivered(self) -> bool {
        !self.as_str().starts_with("seller.")
    }

    /// The catalogue an endpoint may subscribe to (`ping.test` goes to the endpoint it tests, whatever it chose).
    pub fn catalogue() -> impl Iterator<Item = EventType> {
        Self::ALL
            .into_iter()
            .filter(|kind| kind.delivered() && *kind != Self::PingTest)
    }
}

/// One event as it is stored and delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// `evt_` and 28 characters that sort by time: the webhook's `webhook-id`, the same on every attempt.
    pub id: String,
    pub tenant_id: TenantId,
    pub kind: EventType,
    /// RFC 3339 with milliseconds, UTC.
    pub at: String,
    /// The license it is about (its id survives a key replacement), for `keystead audit --license`.
    pub license_id: Option<LicenseId>,
    pub key_hash: Option<KeyHash>,
    /// SHA-256 of the buyer's address in lower case, for `keystead audit --email`.
    pub email_hash: Option<String>,
    /// Who did it, when a seller did through the CLI: their AWS principal.
    pub actor: Option<String>,
    /// `{"type","timestamp","data"}`, exactly the bytes a webhook sends.
    pub payload: String,
    /// The one endpoint it goes to (`ping.test`); `None`: every endpoint subscribed to its type.
    pub endpoint_id: Option<String>,
}

/// Payloads stay small (Standard Webhooks: "usually smaller than 20kb").
pub const MAX_PAYLOAD_BYTES: usize = 20 * 1024;

/// Makes the events of one write: one clock reading, ids in the order they were made.
pub struct Recorder {
    tenant_id: TenantId,
    at: OffsetDateTime,
    seq: u8,
    events: Vec<AuditEvent>,
}

impl Recorder {
    pub fn new(tenant_id: &TenantId, at: OffsetDateTime) -> Self {
        Self {
            tenant_id: tenant_id.clone(),
            at,
            seq: 0,
            events: Vec::new(),
        }
    }

    pub fn finish(self) -> Vec<AuditEvent> {
        self.events
    }

    /// Records an event; `license` names the license it is about (its key hash and buyer's address).
    pub fn push(
        &mut self,
        kind: EventType,
        license: Option<&License>,
        data: Map<String, Value>,
    ) -> Result<(), RandomnessError> {
        let id = event_id(self.at, self.seq)?;
        self.seq = self.seq.wrapping_add(1);
        let timestamp = timestamp(self.at);
        let payload =
            json!({"type": kind.as_str(), "timestamp": timestamp, "data": data}).to_string();
        self.events.push(AuditEvent {
            id,
            tenant_id: self.tenant_id.clone(),
            kind,
            at: timestamp,
            license_id: license.map(|l| l.license_id.clone()),
            key_hash: license.map(|l| l.key_hash.clone()),
            email_hash: license.map(|l| email_hash(l.buyer_email.as_str())),
            actor: None,
            payload,
            endpoint_id: None,
        });
        Ok(())
    }

    /// The events of a license written as `after`, having been `before` (`None`: it was just made).
    pub fn license_changed(
        &mut self,
        before: Option<&License>,
        after: &License,
    ) -> Result<(), RandomnessError> {
        let Some(before) = before else {
            self.push(EventType::LicenseCreated, Some(after), license_data(after))?;
            for fact in after.known_facts() {
                self.fact(after, &fact)?;
            }
            return Ok(());
        };
        let known = before.known_facts();
        for fact in after
            .facts
            .iter()
            .filter(|f| !known.iter().any(|k| k.id == f.id))
        {
            self.fact(after, fact)?;
        }
        let previous = granted(before);
        let now = granted(after);
        let changed: Vec<&String> = now
            .iter()
            .filter(|(name, value)| previous.get(*name) != Some(value))
            .map(|(name, _)| name)
            .collect();
        if !changed.is_empty() {
            let mut data = license_data(after);
            data.insert("changed".into(), json!(changed));
            data.insert("previous".into(), Value::Object(previous.clone()));
            self.push(EventType::LicenseUpdated, Some(after), data)?;
        }
        Ok(())
    }

    /// A machine took (`activated`) or freed a seat.
    pub fn machine(
        &mut self,
        license: &License,
        machine_id: &str,
        activated: bool,
    ) -> Result<(), RandomnessError> {
        let mut data = license_data(license);
        data.insert("machine_id".into(), json!(machine_id));
        let kind = if activated {
            EventType::LicenseMachineActivated
        } else {
            EventType::LicenseMachineDeactivated
        };
        self.push(kind, Some(license), data)
    }

    /// The license `old` was, now under a new key (`new`); the seats it held were freed.
    pub fn key_replaced(
        &mut self,
        old: &License,
        new: &License,
        machines_freed: usize,
    ) -> Result<(), RandomnessError> {
        let mut data = license_data(new);
        data.insert("previous_key".into(), json!(old.shown_key()));
        data.insert("machines_freed".into(), json!(machines_freed));
        self.push(EventType::LicenseKeyReplaced, Some(new), data)
    }

    fn fact(&mut self, license: &License, fact: &Fact) -> Result<(), RandomnessError> {
        let mut data = license_data(license);
        data.insert("fact_id".into(), json!(fact.id));
        data.insert("occurred_at".into(), json!(fact.at));
        let kind = match &fact.kind {
            FactKind::Charge { sale_id, .. } => {
                data.insert("sale_id".into(), json!(sale_id.as_str()));
                EventType::SaleRecorded
            }
            FactKind::Refund { sale_id, full, .. } => {
                data.insert("sale_id".into(), json!(sale_id.as_str()));
                data.insert("full_refund".into(), json!(full));
                EventType::SaleRefunded
            }
            FactKind::Dispute { sale_id } => {
                data.insert("sale_id".into(), json!(sale_id.as_str()));
                EventType::SaleDisputed
            }
            FactKind::DisputeWon { sale_id } => {
                data.insert("sale_id".into(), json!(sale_id.as_str()));
                EventType::SaleDisputeWon
            }
            FactKind::Cancelled => EventType::SubscriptionCancelled,
            FactKind::Ended { failed_payment } => {
                data.insert("failed_payment".into(), json!(failed_payment));
                EventType::SubscriptionEnded
            }
            FactKind::Restarted => EventType::SubscriptionRestarted,
            FactKind::PlanChanged { to, .. } => {
                if let Some(to) = to {
                    data.insert(
                        "plan".into(),
                        json!({
                            "product_id": to.product_id.as_str(),
                            "product_name": to.product_name,
                            "activation_limit": to.activation_limit,
                            "quantity": to.quantity,
                            "effective_at": to.effective_at,
                        }),
                    );
                }
                EventType::SubscriptionUpdated
            }
            FactKind::Revoked => EventType::SellerLicenseRevoked,
            FactKind::Suspended => EventType::SellerLicenseSuspended,
            FactKind::Resumed => EventType::SellerLicenseResumed,
            FactKind::Reinstated => EventType::SellerLicenseReinstated,
            FactKind::Extended { until } => {
                data.insert("until".into(), json!(until));
                EventType::SellerLicenseExtended
            }
        };
        self.push(kind, Some(license), data)
    }
}

/// What an event says about a license: its ids, product, status, the buyer's address (the seller's own
/// customer), the key's display form (never the key) and the Gumroad sale that made it.
pub fn license_data(license: &License) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("tenant_id".into(), json!(license.tenant_id.as_str()));
    data.insert("license_id".into(), json!(license.license_id.as_str()));
    data.insert("key".into(), json!(license.shown_key()));
    data.insert("buyer_email".into(), json!(license.buyer_email.as_str()));
    data.insert("sale_id".into(), json!(license.sale_id.as_str()));
    if let Some(subscription) = &license.subscription_id {
        data.insert("subscription_id".into(), json!(subscription));
    }
    data.extend(granted(license));
    data
}

/// What a license grants: a change to any of these is `license.updated`.
fn granted(license: &License) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("status".into(), json!(license.status.as_str()));
    data.insert("expires_at".into(), json!(license.expires_at));
    data.insert("product_id".into(), json!(license.product_id.as_str()));
    data.insert("product_name".into(), json!(license.product_name));
    data.insert("activation_limit".into(), json!(license.activation_limit));
    data.insert("quantity".into(), json!(license.quantity));
    data
}

/// SHA-256 of an address in lower case: how the audit log finds a buyer's events without indexing the address.
pub fn email_hash(email: &str) -> String {
    sha256_hex(&email.trim().to_lowercase())
}

/// RFC 3339 with milliseconds, UTC.
pub fn timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// `evt_`, the time in milliseconds (12 hex digits), the event's place in its write (2 hex digits) and 14 random
/// Crockford characters: ids sort by time, which is how the audit log pages newest first. No `.` (the spec's
/// rule for `webhook-id`).
pub fn event_id(at: OffsetDateTime, seq: u8) -> Result<String, RandomnessError> {
    let millis = (at.unix_timestamp_nanos() / 1_000_000).max(0);
    let random: String = random_bytes::<14>()?
        .iter()
        .map(|b| char::from(b"0123456789abcdefghjkmnpqrstvwxyz"[usize::from(b & 31)]))
        .collect();
    Ok(format!("evt_{millis:012x}{seq:02x}{random}"))
}

/// The time an event id was made at (milliseconds), for `--since` and paging.
pub fn event_millis(id: &str) -> Option<i64> {
    let hex = id.strip_prefix("evt_")?.get(..12)?;
    i64::from_str_radix(hex, 16).ok()
}

/// The first id an event made at or after `at` can have: `--since` as a sort key bound.
pub fn first_id_at(at: OffsetDateTime) -> String {
    let millis = (at.unix_timestamp_nanos() / 1_000_000).max(0);
    format!("evt_{millis:012x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_back_and_seller_types_are_not_delivered() {
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
            assert!(
                kind.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            );
        }
        assert!(!EventType::SellerCommand.delivered());
        assert!(EventType::SaleRefunded.delivered());
        assert!(EventType::ReleasePublished.delivered());
        assert_eq!(EventType::catalogue().count(), 14);
    }

    #[test]
    fn ids_sort_by_time_then_by_place_and_carry_no_dot() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let later = t + time::Duration::milliseconds(1);
        let (a, b, c) = (
            event_id(t, 0).unwrap(),
            event_id(t, 1).unwrap(),
            event_id(later, 0).unwrap(),
        );
        assert!(a < b && b < c, "{a} {b} {c}");
        assert!(!a.contains('.'));
        assert_eq!(a.len(), 4 + 12 + 2 + 14);
        assert_eq!(event_millis(&a), Some(1_800_000_000_000));
        assert!(first_id_at(t) <= a && first_id_at(later) > b);
    }

    #[test]
    fn timestamps_have_milliseconds_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_123_456_789).unwrap();
        assert_eq!(timestamp(t), "2027-01-15T08:00:00.123Z");
    }
}
