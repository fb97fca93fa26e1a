//! The signing-key port: a tenant's keys are records in the tenants table (`SIGNING_KEY#<kid>`), and the tenant
//! record names the current one. Installing a key and retiring the one it replaces is one transaction.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::dynamo::DynamoStore;
use super::sdk::{n, s, to_item};
use super::table::tenants::{SIGNING_KEY_SK_PREFIX, TENANT_SK};
use super::{Store, StoreError};
use crate::domain::{SealedSigningKey, TenantId};

/// The key being replaced: it stops signing now and stays published until `publish_until` (unix seconds).
#[derive(Debug, Clone)]
pub struct Retirement {
    pub kid: String,
    pub retired_at: String,
    pub publish_until: i64,
}

#[async_trait]
pub trait SigningKeyStore: Store {
    /// Stores `key` as the tenant's current signing key: its first (`replacing: None`, only if it has none) or
    /// in place of `replacing` (only if that is still current). `false` when the condition did not hold.
    async fn install_signing_key(
        &self,
        tenant_id: &TenantId,
        key: &SealedSigningKey,
        replacing: Option<&Retirement>,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
impl SigningKeyStore for DynamoStore {
    async fn install_signing_key(
        &self,
        tenant_id: &TenantId,
        key: &SealedSigningKey,
        replacing: Option<&Retirement>,
    ) -> Result<bool, StoreError> {
        let tenant = tenant_id.as_str();
        let corrupt = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt(e.to_string());
        let mut record = to_item(key, Some(format!("{SIGNING_KEY_SK_PREFIX}{}", key.kid)))?;
        record.insert("tenant_id".into(), s(tenant));
        let point = Update::builder()
            .table_name(&self.tables.tenants)
            .key("tenant_id", s(tenant))
            .key("sk", s(TENANT_SK))
            .update_expression("SET signing_kid = :new")
            .expression_attribute_values(":new", s(&key.kid));
        let point = match replacing {
            None => point
                .condition_expression("attribute_exists(sk) AND attribute_not_exists(signing_kid)"),
            Some(old) => point
                .condition_expression("signing_kid = :old")
                .expression_attribute_values(":old", s(&old.kid)),
        };
        let mut items = vec![
            self.put_if_new(&self.tables.tenants, record, "sk")?,
            TransactWriteItem::builder()
                .update(point.build().map_err(corrupt)?)
                .build(),
        ];
        if let Some(old) = replacing {
            // DynamoDB forgets the retired key a while after its last lease has expired.
            let retire = Update::builder()
                .table_name(&self.tables.tenants)
                .key("tenant_id", s(tenant))
                .key("sk", s(format!("{SIGNING_KEY_SK_PREFIX}{}", old.kid)))
                .update_expression("SET retired_at = :at, publish_until = :until, #ttl = :ttl")
                .condition_expression("attribute_exists(sk)")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":at", s(&old.retired_at))
                .expression_attribute_values(":until", n(old.publish_until))
                .expression_attribute_values(":ttl", n(old.publish_until + 30 * 24 * 3600))
                .build()
                .map_err(corrupt)?;
            items.push(TransactWriteItem::builder().update(retire).build());
        }
        match self.transact(items).await? {
            None => Ok(true),
            Some(reasons) if reasons.failed(1) => Ok(false),
            Some(reasons) => Err(reasons.unexpected()),
        }
    }
}
