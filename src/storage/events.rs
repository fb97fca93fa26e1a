//! The event port: applying a Gumroad event to a license (or to the marker a not-yet-seen sale will be minted
//! from) together with the event's idempotency record, in one transaction.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};

use super::dynamo::{DynamoStore, Item, key_hash_of, license_sk, marker_sk, n, s};
use super::{Store, StoreError};
use crate::domain::{License, LicenseStatus, PlanChange, ProductId, SaleId, TenantId};

/// A fact an event records on the license besides its status, as Gumroad's own license API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Flag(&'static str, bool),
    At(&'static str, String),
    Clear(&'static str),
}

/// What an event changes besides recording itself.
#[derive(Debug, Clone)]
pub enum EventChange {
    None,
    /// The license's status moves `from` → `to` (only if it is still `from`), and the marks are recorded.
    License {
        key_hash: String,
        from: LicenseStatus,
        to: LicenseStatus,
        marks: Vec<Mark>,
    },
    /// A tier or seat change: applied now, or (`deferred`) kept on the license until `to.effective_at`. Only if
    /// the license still has the product and limit it was computed from.
    Plan {
        key_hash: String,
        from_product: ProductId,
        from_limit: u32,
        to: PlanChange,
        deferred: bool,
    },
    /// The marker for a sale not minted yet moves `from` (absent: `None`) → `to`, only while no payment exists.
    Marker {
        sale_id: SaleId,
        from: Option<LicenseStatus>,
        to: LicenseStatus,
    },
}

#[derive(Debug, Clone)]
pub struct EventWrite {
    pub tenant_id: TenantId,
    pub event_key: String,
    /// Unix seconds after which the event record and any marker may expire.
    pub ttl: i64,
    pub change: EventChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Applied,
    /// This event (or sale) was recorded before: nothing was changed.
    Duplicate,
    /// What the write was computed from changed underneath it; read again and recompute.
    Stale,
}

#[async_trait]
pub trait EventStore: Store {
    /// The license minted for a sale, found through its payment record.
    async fn license_for_sale(
        &self,
        tenant_id: &TenantId,
        sale_id: &SaleId,
    ) -> Result<Option<License>, StoreError>;

    /// The status an earlier event left for a sale that has no license yet.
    async fn marker(
        &self,
        tenant_id: &TenantId,
        sale_id: &SaleId,
    ) -> Result<Option<LicenseStatus>, StoreError>;

    async fn write_event(&self, write: &EventWrite) -> Result<Written, StoreError>;
}

impl DynamoStore {
    /// The update that moves a license to a plan (`deferred`: records it as the pending change instead).
    pub(crate) fn plan_update(
        &self,
        tenant: &str,
        key_hash: &str,
        to: &PlanChange,
        deferred: bool,
    ) -> Result<aws_sdk_dynamodb::types::builders::UpdateBuilder, StoreError> {
        let update = Update::builder()
            .table_name(&self.tables.licenses)
            .key("tenant_id", s(tenant))
            .key("sk", s(license_sk(key_hash)));
        Ok(if deferred {
            let pending = serde_dynamo::to_attribute_value(to)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            update
                .update_expression("SET pending_change = :pending")
                .expression_attribute_values(":pending", pending)
        } else {
            update
                .update_expression(
                    "SET product_id = :product, product_name = :name, activation_limit = :limit, quantity = :quantity REMOVE pending_change",
                )
                .expression_attribute_values(":product", s(to.product_id.as_str()))
                .expression_attribute_values(":name", s(&to.product_name))
                .expression_attribute_values(":limit", n(i64::from(to.activation_limit)))
                .expression_attribute_values(":quantity", n(i64::from(to.quantity)))
        })
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn license_for_sale(
        &self,
        tenant_id: &TenantId,
        sale_id: &SaleId,
    ) -> Result<Option<License>, StoreError> {
        let payment = self.read_payment(tenant_id, sale_id).await?;
        match payment.as_ref().and_then(key_hash_of) {
            // The payment keeps the hash it was made under; the license may have had its key replaced since.
            Some(hash) => super::PortalStore::current_license(self, tenant_id, &hash).await,
            None => Ok(None),
        }
    }

    async fn marker(
        &self,
        tenant_id: &TenantId,
        sale_id: &SaleId,
    ) -> Result<Option<LicenseStatus>, StoreError> {
        let marker = self
            .read_item(&self.tables.events, tenant_id, &marker_sk(sale_id.as_str()))
            .await?;
        Ok(marker
            .as_ref()
            .and_then(|item| item.get("status"))
            .and_then(|v| v.as_s().ok())
            .and_then(|status| LicenseStatus::parse(status)))
    }

    #[tracing::instrument(skip_all, fields(tenant = %write.tenant_id))]
    async fn write_event(&self, write: &EventWrite) -> Result<Written, StoreError> {
        let tenant = write.tenant_id.as_str();
        let mut record = Item::new();
        record.insert("tenant_id".into(), s(tenant));
        record.insert("sk".into(), s(format!("EVENT#{}", write.event_key)));
        record.insert("ttl".into(), n(write.ttl));
        let mut items = vec![self.put_if_new(&self.tables.events, record, "sk")?];
        let corrupt = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt(e.to_string());
        match &write.change {
            EventChange::None => {}
            EventChange::License {
                key_hash,
                from,
                to,
                marks,
            } => {
                let mut set = vec!["#status = :to".to_owned()];
                let mut remove = Vec::new();
                let mut update = Update::builder()
                    .table_name(&self.tables.licenses)
                    .key("tenant_id", s(tenant))
                    .key("sk", s(license_sk(key_hash)))
                    .condition_expression("#status = :from")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":from", s(from.as_str()))
                    .expression_attribute_values(":to", s(to.as_str()));
                for (i, mark) in marks.iter().enumerate() {
                    update = match mark {
                        Mark::Flag(attr, value) => {
                            set.push(format!("{attr} = :m{i}"));
                            update.expression_attribute_values(
                                format!(":m{i}"),
                                AttributeValue::Bool(*value),
                            )
                        }
                        Mark::At(attr, at) => {
                            set.push(format!("{attr} = :m{i}"));
                            update.expression_attribute_values(format!(":m{i}"), s(at))
                        }
                        Mark::Clear(attr) => {
                            remove.push(*attr);
                            update
                        }
                    };
                }
                let mut expression = format!("SET {}", set.join(", "));
                if !remove.is_empty() {
                    expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
                }
                let update = update
                    .update_expression(expression)
                    .build()
                    .map_err(corrupt)?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
            EventChange::Plan {
                key_hash,
                from_product,
                from_limit,
                to,
                deferred,
            } => {
                let update = self
                    .plan_update(tenant, key_hash, to, *deferred)?
                    .condition_expression(
                        "product_id = :from_product AND activation_limit = :from_limit",
                    )
                    .expression_attribute_values(":from_product", s(from_product.as_str()))
                    .expression_attribute_values(":from_limit", n(i64::from(*from_limit)))
                    .build()
                    .map_err(corrupt)?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
            EventChange::Marker { sale_id, from, to } => {
                let mut marker = Item::new();
                marker.insert("tenant_id".into(), s(tenant));
                marker.insert("sk".into(), s(marker_sk(sale_id.as_str())));
                marker.insert("status".into(), s(to.as_str()));
                let put = Put::builder()
                    .table_name(&self.tables.events)
                    .set_item(Some(marker));
                let put = match from {
                    None => put.condition_expression("attribute_not_exists(sk)"),
                    Some(status) => put
                        .condition_expression("#status = :from")
                        .expression_attribute_names("#status", "status")
                        .expression_attribute_values(":from", s(status.as_str())),
                };
                items.push(
                    TransactWriteItem::builder()
                        .put(put.build().map_err(corrupt)?)
                        .build(),
                );
                // The sale may land between reading and writing: then the event must go to its license instead.
                let no_sale = ConditionCheck::builder()
                    .table_name(&self.tables.payments)
                    .key("tenant_id", s(tenant))
                    .key("sale_id", s(sale_id.as_str()))
                    .condition_expression("attribute_not_exists(sale_id)")
                    .build()
                    .map_err(corrupt)?;
                items.push(
                    TransactWriteItem::builder()
                        .condition_check(no_sale)
                        .build(),
                );
            }
        }
        match self.transact(items).await? {
            None => Ok(Written::Applied),
            Some(reasons) if reasons.failed(0) => Ok(Written::Duplicate),
            Some(reasons) if reasons.failed(1) || reasons.failed(2) => Ok(Written::Stale),
            Some(reasons) => Err(reasons.unexpected()),
        }
    }
}
