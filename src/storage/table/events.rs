//! The events table: what a sale left (`SALE#<sale id>`, the idempotency record), facts waiting for a sale or a
//! subscription not seen yet (`MARKER#<sale id>`, `MARKER#SUB#<id>`, versioned), sign-in tokens
//! (`SIGNIN#<token hash>`), rate-limit counters (`RATE#<counter>`) and session revocations
//! (`SESSIONS#<address hash>`), the last three with a TTL; the audit log and webhook outbox (`AUDIT#<event id>`,
//! no TTL: kept as long as the licenses it is about) and webhook deliveries
//! (`DELIVERY#<endpoint id>#<event id>`, kept 30 days after their last attempt).

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::{Fact, SaleId};
use crate::storage::sdk::version;

pub(crate) fn sale_event_sk(sale_id: &str) -> String {
    format!("SALE#{sale_id}")
}

pub(crate) const MARKER_SK_PREFIX: &str = "MARKER#";

/// The audit log's items: event ids sort by time, so a partition's `AUDIT#` range reads newest first backwards.
pub(crate) const AUDIT_SK_PREFIX: &str = "AUDIT#";

pub(crate) fn audit_sk(event_id: &str) -> String {
    format!("{AUDIT_SK_PREFIX}{event_id}")
}

pub(crate) fn delivery_sk(endpoint_id: &str, event_id: &str) -> String {
    format!("DELIVERY#{endpoint_id}#{event_id}")
}

/// Delivery records are the dispatcher's working state and a recent history, not facts: kept this long after
/// their last attempt.
pub(crate) const DELIVERY_TTL_SECONDS: i64 = 30 * 24 * 3600;

pub(crate) fn signin_sk(token_hash: &str) -> String {
    format!("SIGNIN#{token_hash}")
}

pub(crate) fn rate_sk(counter: &str) -> String {
    format!("RATE#{counter}")
}

/// When a buyer's sessions were last revoked (sign-out, key replacement): `SESSIONS#<sha256 of the address>`, with
/// a TTL past the longest session.
pub(crate) fn sessions_sk(email: &crate::domain::Email) -> String {
    format!("SESSIONS#{}", crate::domain::sha256_hex(email.as_str()))
}

/// Where facts wait for a license that does not exist yet: its sale, or (for a subscription event that names no
/// purchase keystead knows) its subscription.
#[derive(Debug, Clone, Copy)]
pub enum Anchor<'a> {
    Sale(&'a SaleId),
    Subscription(&'a str),
}

impl Anchor<'_> {
    pub(crate) fn sk(&self) -> String {
        match self {
            Self::Sale(sale_id) => format!("{MARKER_SK_PREFIX}{sale_id}"),
            Self::Subscription(id) => format!("{MARKER_SK_PREFIX}SUB#{id}"),
        }
    }
}

/// The facts waiting at an anchor, and the version they were read at: `None` when there were none, `Some(0)` for
/// a marker left before facts were kept (it has no version).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Orphans {
    pub facts: Vec<Fact>,
    pub v: Option<u64>,
}

impl Orphans {
    /// The condition that holds while the anchor is as it was read, with its values.
    pub(crate) fn unchanged(&self) -> (&'static str, Option<AttributeValue>) {
        match self.v {
            None => ("attribute_not_exists(sk)", None),
            Some(0) => ("attribute_exists(sk) AND attribute_not_exists(v)", None),
            Some(v) => ("v = :v", Some(version(v))),
        }
    }
}
