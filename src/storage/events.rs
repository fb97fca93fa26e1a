//! The event port: facts (issue 22) recorded on the license they are about, under a version condition, or, for a
//! sale or subscription keystead has not seen yet, kept as that sale's or subscription's orphans until it lands.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};

use super::dynamo::DynamoStore;
use super::sdk::{Item, n, s, version};
use super::table::events::{Anchor, Orphans};
use super::table::licenses::{key_hash_of, license_sk, subscription_sk};
use super::{Store, StoreError};
use crate::domain::{
    Fact, FactKind, KeyHash, License, LicenseStatus, PlanChange, SaleId, TenantId,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Applied,
    /// This fact was recorded before: nothing was changed.
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

    /// Records `after` (the license as `before` was read, with a fact more and everything derived again), only
    /// while the license is still at `before`'s version.
    async fn write_facts(&self, before: &License, after: &License) -> Result<Written, StoreError>;

    /// Adds `fact` to the orphans at `anchor` as `seen` (read by `Store::orphans`), only while they are still so
    /// and the license they wait for still does not exist (its payment, or its subscription's pointer).
    async fn write_orphan(
        &self,
        tenant_id: &TenantId,
        anchor: Anchor<'_>,
        seen: &Orphans,
        fact: &Fact,
    ) -> Result<Written, StoreError>;
}

/// The legacy marker's status (before facts were kept) as the fact that left it.
fn legacy_marker_fact(item: &Item, anchor: &Anchor<'_>) -> Option<Fact> {
    let status = LicenseStatus::parse(item.get("status")?.as_s().ok()?)?;
    let sale_id = match anchor {
        Anchor::Sale(sale_id) => (*sale_id).clone(),
        Anchor::Subscription(_) => return None,
    };
    let kind = match status {
        LicenseStatus::Revoked => FactKind::Refund {
            sale_id: sale_id.clone(),
            full: true,
            revokes: true,
        },
        LicenseStatus::Suspended => FactKind::Dispute {
            sale_id: sale_id.clone(),
        },
        LicenseStatus::Expired => FactKind::Ended {
            failed_payment: false,
        },
        LicenseStatus::Active => return None,
    };
    Some(Fact {
        id: format!("legacy#marker#{sale_id}"),
        at: "1970-01-01T00:00:00Z".to_owned(),
        kind,
    })
}

impl DynamoStore {
    pub(crate) async fn read_orphans(
        &self,
        tenant_id: &TenantId,
        anchor: Anchor<'_>,
    ) -> Result<Orphans, StoreError> {
        let Some(item) = self
            .read_item(&self.tables.events, tenant_id, &anchor.sk())
            .await?
        else {
            return Ok(Orphans::default());
        };
        let mut facts: Vec<Fact> = match item.get("facts") {
            Some(value) => serde_dynamo::from_attribute_value(value.clone())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            None => Vec::new(),
        };
        facts.extend(legacy_marker_fact(&item, &anchor));
        let v = item
            .get("v")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Orphans { facts, v: Some(v) })
    }

    /// The transaction item that holds a sale's or a subscription's orphans to the version a mint or a renewal
    /// read them at (0: none), so that an event arriving meanwhile is folded in, never lost.
    pub(crate) fn orphans_check(
        &self,
        tenant: &str,
        anchor: Anchor<'_>,
        seen: &Orphans,
    ) -> Result<TransactWriteItem, StoreError> {
        let (condition, value) = seen.unchanged();
        let check = ConditionCheck::builder()
            .table_name(&self.tables.events)
            .key("tenant_id", s(tenant))
            .key("sk", s(anchor.sk()))
            .condition_expression(condition)
            .set_expression_attribute_values(value.map(|v| [(":v".to_owned(), v)].into()));
        let check = check
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// The update of a license item to `after`: what facts decide, the facts themselves and the next version,
    /// only while it is at `before`'s version. Other attributes (seats, email, uses) are left as they are.
    pub(crate) fn fold_update(
        &self,
        before: &License,
        after: &License,
    ) -> Result<Update, StoreError> {
        let corrupt = |e: String| StoreError::Corrupt(e);
        let facts =
            serde_dynamo::to_attribute_value(&after.facts).map_err(|e| corrupt(e.to_string()))?;
        let mut set = vec![
            "facts = :facts",
            "#v = :next",
            "#status = :status",
            "refunded = :refunded",
            "chargebacked = :chargebacked",
            "disabled = :disabled",
            "product_id = :product",
            "product_name = :name",
            "activation_limit = :limit",
            "quantity = :quantity",
        ];
        let mut remove = Vec::new();
        let mut update = Update::builder()
            .table_name(&self.tables.licenses)
            .key("tenant_id", s(after.tenant_id.as_str()))
            .key("sk", s(license_sk(&after.key_hash)))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#v", "v")
            .expression_attribute_values(":facts", facts)
            .expression_attribute_values(":next", version(before.v + 1))
            .expression_attribute_values(":status", s(after.status.as_str()))
            .expression_attribute_values(":refunded", AttributeValue::Bool(after.refunded))
            .expression_attribute_values(":chargebacked", AttributeValue::Bool(after.chargebacked))
            .expression_attribute_values(":disabled", AttributeValue::Bool(after.disabled))
            .expression_attribute_values(":product", s(after.product_id.as_str()))
            .expression_attribute_values(":name", s(&after.product_name))
            .expression_attribute_values(":limit", n(i64::from(after.activation_limit)))
            .expression_attribute_values(":quantity", n(i64::from(after.quantity)));
        let optional = [
            (
                "expires_at",
                "expires_at = :expires",
                ":expires",
                &after.expires_at,
            ),
            (
                "subscription_cancelled_at",
                "subscription_cancelled_at = :cancelled",
                ":cancelled",
                &after.subscription_cancelled_at,
            ),
            (
                "subscription_ended_at",
                "subscription_ended_at = :ended",
                ":ended",
                &after.subscription_ended_at,
            ),
            (
                "subscription_failed_at",
                "subscription_failed_at = :failed",
                ":failed",
                &after.subscription_failed_at,
            ),
        ];
        for (attr, assign, placeholder, value) in optional {
            match value {
                Some(value) => {
                    set.push(assign);
                    update = update.expression_attribute_values(placeholder, s(value));
                }
                None => remove.push(attr),
            }
        }
        match &after.pending_change {
            Some(change) => {
                set.push("pending_change = :pending");
                let pending =
                    serde_dynamo::to_attribute_value(change).map_err(|e| corrupt(e.to_string()))?;
                update = update.expression_attribute_values(":pending", pending);
            }
            None => remove.push("pending_change"),
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let update = update.update_expression(expression);
        let update = match before.v {
            0 => update.condition_expression("attribute_exists(sk) AND attribute_not_exists(#v)"),
            v => update
                .condition_expression("attribute_exists(sk) AND #v = :seen")
                .expression_attribute_values(":seen", version(v)),
        };
        update
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// The update that moves a license to a plan (`deferred`: records it as the pending change instead).
    pub(crate) fn plan_update(
        &self,
        tenant: &str,
        key_hash: &KeyHash,
        to: &PlanChange,
        deferred: bool,
    ) -> Result<aws_sdk_dynamodb::types::builders::UpdateBuilder, StoreError> {
        let update = Update::builder()
            .table_name(&self.tables.licenses)
            .key("tenant_id", s(tenant))
            .key("sk", s(license_sk(key_hash)))
            .expression_attribute_values(":v1", n(1));
        Ok(if deferred {
            let pending = serde_dynamo::to_attribute_value(to)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            update
                .update_expression("SET pending_change = :pending ADD v :v1")
                .expression_attribute_values(":pending", pending)
        } else {
            update
                .update_expression(
                    "SET product_id = :product, product_name = :name, activation_limit = :limit, quantity = :quantity REMOVE pending_change ADD v :v1",
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

    #[tracing::instrument(skip_all, fields(tenant = %after.tenant_id))]
    async fn write_facts(&self, before: &License, after: &License) -> Result<Written, StoreError> {
        let update = self.fold_update(before, after)?;
        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        items.extend(
            self.event_items(&after.tenant_id, |events| {
                events.license_changed(Some(before), after)
            })
            .await?,
        );
        match self.transact(items).await? {
            None => Ok(Written::Applied),
            Some(reasons) if reasons.failed(0) => Ok(Written::Stale),
            Some(reasons) => Err(reasons.unexpected()),
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant_id))]
    async fn write_orphan(
        &self,
        tenant_id: &TenantId,
        anchor: Anchor<'_>,
        seen: &Orphans,
        fact: &Fact,
    ) -> Result<Written, StoreError> {
        if seen.facts.iter().any(|known| known.id == fact.id) {
            return Ok(Written::Duplicate);
        }
        let tenant = tenant_id.as_str();
        let corrupt = |e: String| StoreError::Corrupt(e);
        let mut facts = seen.facts.clone();
        facts.push(fact.clone());
        let mut item = Item::new();
        item.insert("tenant_id".into(), s(tenant));
        item.insert("sk".into(), s(anchor.sk()));
        item.insert(
            "facts".into(),
            serde_dynamo::to_attribute_value(&facts).map_err(|e| corrupt(e.to_string()))?,
        );
        item.insert("v".into(), version(seen.v.unwrap_or(0) + 1));
        let (condition, value) = seen.unchanged();
        let put = Put::builder()
            .table_name(&self.tables.events)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(value.map(|v| [(":v".to_owned(), v)].into()));
        // The license may land between reading and writing: then the fact must go to it instead.
        let absent = match anchor {
            Anchor::Sale(sale_id) => ConditionCheck::builder()
                .table_name(&self.tables.payments)
                .key("tenant_id", s(tenant))
                .key("sale_id", s(sale_id.as_str()))
                .condition_expression("attribute_not_exists(sale_id)"),
            Anchor::Subscription(id) => ConditionCheck::builder()
                .table_name(&self.tables.licenses)
                .key("tenant_id", s(tenant))
                .key("sk", s(subscription_sk(id)))
                .condition_expression("attribute_not_exists(sk)"),
        };
        let items = vec![
            TransactWriteItem::builder()
                .put(put.build().map_err(|e| corrupt(e.to_string()))?)
                .build(),
            TransactWriteItem::builder()
                .condition_check(absent.build().map_err(|e| corrupt(e.to_string()))?)
                .build(),
        ];
        match self.transact(items).await? {
            None => Ok(Written::Applied),
            Some(reasons) if reasons.failed(0) || reasons.failed(1) => Ok(Written::Stale),
            Some(reasons) => Err(reasons.unexpected()),
        }
    }
}
