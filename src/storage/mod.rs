//! Storage: the port the request path writes through (`Store`), its DynamoDB adapter, and the table schema read
//! from `template.yaml` so that the local stack and production share one definition.

mod activations;
mod admin;
mod audit;
mod cache;
mod dynamo;
mod events;
mod portal;
mod releases;
#[cfg(feature = "cli")]
mod schema;
mod sdk;
mod signing;
mod table;
mod webhooks;

use async_trait::async_trait;

use crate::domain::{EmailFailure, KeyHash, License, Payment, SaleId, Tenant, TenantId};

pub use activations::{ActivateResult, ActivationStore, SeatBudget, SeatTouch};
pub use admin::{LicenseFilter, TtlRemoval};
pub use audit::{AuditPage, AuditQuery};
pub use cache::TenantCache;
pub use dynamo::{DynamoStore, Tables};
pub use events::{EventStore, Written};
pub use portal::{MAX_MACHINES_TO_FREE, PortalStore, Replaced};
pub use releases::{ReleaseCache, ReleaseStore};
#[cfg(feature = "cli")]
pub use schema::{TableSpec, create_tables, table_specs};
pub use sdk::backoff;
pub use signing::{Retirement, SigningKeyStore};
pub use table::events::{Anchor, Orphans};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB unreachable, throttled, timing out or failing: retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A record holds data keystead cannot read back; a bug or a hand edit, never a client's mistake.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("already exists")]
    AlreadyExists,
    #[error("not found")]
    NotFound,
}

/// Every port the function uses, implemented together by `DynamoStore`.
pub trait Backend:
    Store + EventStore + ActivationStore + SigningKeyStore + PortalStore + ReleaseStore
{
}
impl<T: Store + EventStore + ActivationStore + SigningKeyStore + PortalStore + ReleaseStore> Backend
    for T
{
}

/// Everything one sale writes, committed together or not at all.
#[derive(Debug, Clone)]
pub struct NewSale {
    pub license: License,
    pub payment: Payment,
    /// Unix seconds after which the idempotency record for (tenant, sale id) may expire.
    pub idempotency_ttl: i64,
    /// The facts that arrived before this sale (its own, and its subscription's), as read: the license folds
    /// them in, and the write only succeeds while they are still so (`Marked` otherwise).
    pub sale_orphans: Orphans,
    pub subscription_orphans: Option<Orphans>,
}

/// A further charge of a license (a renewal, or a subscription's first sale that arrived after one of its
/// renewals): its payment, and the license with the charge and the sale's earlier facts folded in.
#[derive(Debug, Clone)]
pub struct Renewal {
    pub payment: Payment,
    pub idempotency_ttl: i64,
    /// The license as read (the write holds it to that version) and as it becomes.
    pub before: License,
    pub after: License,
    /// The facts that arrived before the charge's sale, as read.
    pub sale_orphans: Orphans,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalWrite {
    Applied,
    Duplicate,
    /// The license changed underneath: read it again and recompute.
    Stale,
    /// An event for the charge's sale arrived meanwhile: read its facts again.
    Marked,
}

#[derive(Debug)]
pub enum SaleWrite {
    Created,
    /// The sale was seen before; the license it minted, when it still exists.
    Duplicate(Option<Box<License>>),
    /// An event for this sale or its subscription arrived since its facts were read: read them again.
    Marked,
    /// Another license already has this key (a Gumroad key seen twice): nothing was written.
    KeyTaken,
    /// The sale's subscription already has its license (the key hash here): nothing was written. One
    /// subscription has one license, whatever order its charges arrive in: the sale is that license's charge.
    Bound(KeyHash),
}

/// How the key email ended.
#[derive(Debug, Clone)]
pub enum EmailOutcome {
    Sent {
        message_id: String,
    },
    /// SES refused, or the send never left: nothing was delivered.
    Failed {
        reason: EmailFailure,
    },
    /// The send left and no answer came back: it may have been delivered. Owed like a failure; the next send says
    /// in the log that it may be the buyer's second email.
    Unknown,
}

/// How license keys are kept at rest (issue 24): sealed under a key only KMS can open, the key hash staying the
/// lookup. Storage calls it on every license it writes and on every key it must hand back in the clear; the
/// implementation (`portal::KeysAtRest`) lives above storage, which knows no KMS.
#[async_trait]
pub trait KeyCipher: Send + Sync {
    /// `plaintext`, sealed for the license of `tenant_id` whose key hashes to `key_hash` (bound to both: a sealed
    /// key copied onto another license does not open).
    async fn seal(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        plaintext: &str,
    ) -> Result<String, StoreError>;

    async fn open(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        sealed: &str,
    ) -> Result<String, StoreError>;
}

/// Who is writing, named on the audit events a store records: the CLI's answer is the seller's AWS principal,
/// asked for the first time an event needs it.
#[async_trait]
pub trait Actor: Send + Sync {
    async fn name(&self) -> String;
}

/// The storage a ping needs. `DynamoStore` is the real one.
#[async_trait]
pub trait Store: Send + Sync {
    /// The tenant with its products, in one consistent read.
    async fn load_tenant(&self, tenant_id: &TenantId) -> Result<Option<Tenant>, StoreError>;

    /// Every tenant's id (a scan of the tenants table: for the hourly reconciliation and the CLI, never a request).
    async fn tenant_ids(&self) -> Result<Vec<TenantId>, StoreError>;

    /// Whether a sale was recorded already (its payment exists): a replay, not a new sale.
    async fn sale_seen(&self, tenant_id: &TenantId, sale_id: &SaleId) -> Result<bool, StoreError>;

    /// Writes the idempotency record, the license and the payment in one transaction.
    async fn write_sale(&self, sale: &NewSale) -> Result<SaleWrite, StoreError>;

    async fn get_license(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
    ) -> Result<Option<License>, StoreError>;

    /// Takes the right to send a license's key email until `until` (unix seconds), unless it was sent already or
    /// another sender holds an unexpired claim. `false` when the claim was not taken.
    async fn claim_email(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError>;

    /// The license a subscription's first sale minted.
    async fn license_for_subscription(
        &self,
        tenant_id: &TenantId,
        subscription_id: &str,
    ) -> Result<Option<License>, StoreError>;

    /// Writes a further charge's idempotency record and payment and the license with the charge folded in, all
    /// or nothing.
    async fn write_renewal(&self, renewal: &Renewal) -> Result<RenewalWrite, StoreError>;

    /// The facts that arrived before the license they are about (see `EventStore::write_orphan`).
    async fn orphans(
        &self,
        tenant_id: &TenantId,
        anchor: Anchor<'_>,
    ) -> Result<Orphans, StoreError>;

    /// Records how the email ended and releases the claim.
    async fn record_email(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        outcome: &EmailOutcome,
    ) -> Result<(), StoreError>;
}
