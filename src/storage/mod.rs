//! Storage: the port the request path writes through (`Store`), its DynamoDB adapter, and the table schema read
//! from `template.yaml` so that the local stack and production share one definition.

mod admin;
mod dynamo;
mod schema;

use async_trait::async_trait;

use crate::domain::{License, Payment, Tenant, TenantId};

pub use dynamo::{DynamoStore, Tables};
pub use schema::{TableSpec, create_tables, table_specs};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB unreachable, throttled, timing out or failing: retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A record holds data keymint cannot read back; a bug or a hand edit, never a client's mistake.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("already exists")]
    AlreadyExists,
    #[error("not found")]
    NotFound,
}

/// Everything one sale writes, committed together or not at all.
#[derive(Debug, Clone)]
pub struct NewSale {
    pub license: License,
    pub payment: Payment,
    /// Unix seconds after which the idempotency record for (tenant, sale id) may expire.
    pub idempotency_ttl: i64,
}

#[derive(Debug)]
pub enum SaleWrite {
    Created,
    /// The sale was seen before; the license it minted, when it still exists.
    Duplicate(Option<License>),
}

/// How the key email ended.
#[derive(Debug, Clone)]
pub enum EmailOutcome {
    Sent { message_id: String },
    Failed,
}

/// The storage a ping needs. `DynamoStore` is the real one.
#[async_trait]
pub trait Store: Send + Sync {
    /// The tenant with its products, in one consistent read.
    async fn load_tenant(&self, tenant_id: &TenantId) -> Result<Option<Tenant>, StoreError>;

    /// Writes the idempotency record, the license and the payment in one transaction.
    async fn write_sale(&self, sale: &NewSale) -> Result<SaleWrite, StoreError>;

    async fn get_license(
        &self,
        tenant_id: &TenantId,
        key_hash: &str,
    ) -> Result<Option<License>, StoreError>;

    /// Takes the right to send a license's key email until `until` (unix seconds), unless it was sent already or
    /// another sender holds an unexpired claim. `false` when the claim was not taken.
    async fn claim_email(
        &self,
        tenant_id: &TenantId,
        key_hash: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError>;

    /// Records how the email ended and releases the claim.
    async fn record_email(
        &self,
        tenant_id: &TenantId,
        key_hash: &str,
        outcome: &EmailOutcome,
    ) -> Result<(), StoreError>;
}
