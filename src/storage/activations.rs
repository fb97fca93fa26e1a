//! The activation port: machines holding a license's seats. The seat count is enforced by a DynamoDB condition
//! inside the same transaction that records the machine, never by reading first.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, TransactWriteItem, Update};

use super::dynamo::DynamoStore;
use super::sdk::{Item, conditional, from_item, n, request_token, s, to_item};
use super::table::events::rate_sk;
use super::table::licenses::{
    FACTS_ATTR, GUMROAD_PURCHASE_ATTR, activation_sk, license_sk, status_at,
};
use super::{Store, StoreError};
use crate::domain::{Activation, KeyHash, License, LicenseStatus, PlanChange, TenantId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActivateResult {
    /// The machine took a seat; `activations` is the new count.
    Activated {
        activations: u32,
    },
    /// The machine already held a seat: nothing changed.
    AlreadyActive,
    LimitReached,
    /// The license has taken as many new machines as its budget allows this window.
    OverBudget,
    /// The license is not active (or has expired): its status.
    NotActive(LicenseStatus),
    NotFound,
}

/// What `touch_seat` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatTouch {
    /// The seat exists and the license is active: it is renewed.
    Renewed,
    /// The machine holds no seat (freed by a deactivation, or reclaimed by another machine): nothing written.
    Gone,
    /// The license is no longer active (or has expired): its status; nothing written.
    NotActive(LicenseStatus),
}

/// How many new seats a license may take in a window: the counter (`RATE#<counter>`, events table) counts one per
/// seat taken, in the same transaction that takes it, and refuses the seat past `limit`. DynamoDB forgets it
/// after `until` (unix seconds).
#[derive(Debug, Clone)]
pub struct SeatBudget {
    pub counter: String,
    pub limit: u32,
    pub until: i64,
}

#[async_trait]
pub trait ActivationStore: Store {
    /// The license the key hash names, as a check needs it: its state, its key left sealed (a check looks keys
    /// up by hash and never answers with one, so the license API's path makes no KMS call), without its facts
    /// (the state derived from them is stored beside them) and without Gumroad's description of the sale, which
    /// only the Gumroad-compatible verify answers with (`license_to_verify`). Never write back or show what this
    /// returns: its `key` is empty when the key is sealed, its `facts` always.
    async fn license_to_check(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
    ) -> Result<Option<License>, StoreError>;

    /// `license_to_check` with Gumroad's description of the sale (`License::gumroad`) kept.
    async fn license_to_verify(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
    ) -> Result<Option<License>, StoreError>;

    async fn activation(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        machine_id: &str,
    ) -> Result<Option<Activation>, StoreError>;

    async fn activations(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
    ) -> Result<Vec<Activation>, StoreError>;

    /// Takes a seat for the machine while seats remain, the license is active and unexpired at `now`, and the
    /// seat is within `budget`.
    async fn activate(
        &self,
        license: &License,
        activation: &Activation,
        now: &str,
        budget: &SeatBudget,
    ) -> Result<ActivateResult, StoreError>;

    /// Adds one to the license's Gumroad-style `uses` counter, atomically; the new count, `None` without a license.
    async fn count_gumroad_use(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
    ) -> Result<Option<u64>, StoreError>;

    /// Records the machine as seen at `now` and moves its seat end to `until` (unix seconds; `None` keeps it), in
    /// one transaction with a check that the license is active and unexpired at that moment: a lease is signed
    /// only for a seat this write proved to exist.
    async fn touch_seat(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        machine_id: &str,
        now: &str,
        until: Option<i64>,
    ) -> Result<SeatTouch, StoreError>;

    /// Takes a seat for `activation` while freeing the `expired` machines' seats, all in one transaction: each
    /// freed seat only if its lease still has run out, the count only if it stays within `license`'s limit.
    /// `None` when something changed underneath (read again and retry).
    async fn activate_reclaiming(
        &self,
        license: &License,
        activation: &Activation,
        expired: &[String],
        now: &str,
        now_unix: i64,
        budget: &SeatBudget,
    ) -> Result<Option<ActivateResult>, StoreError>;

    /// Applies the license's pending plan change, only while it is still that change; `false` when it is not.
    async fn apply_due_change(
        &self,
        license: &License,
        change: &PlanChange,
    ) -> Result<bool, StoreError>;

    /// Frees the machine's seat; `false` when it held none.
    async fn deactivate(&self, license: &License, machine_id: &str) -> Result<bool, StoreError>;
}

impl DynamoStore {
    /// The license the key hash names, read for a check: see `license_unopened`.
    async fn license_unopened_at(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        unread: &[&str],
    ) -> Result<Option<License>, StoreError> {
        self.read_item(&self.tables.licenses, tenant_id, &license_sk(key_hash))
            .await?
            .map(|item| DynamoStore::license_unopened(item, unread))
            .transpose()
    }
}

#[async_trait]
impl ActivationStore for DynamoStore {
    async fn license_to_check(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
    ) -> Result<Option<License>, StoreError> {
        self.license_unopened_at(tenant_id, key_hash, &[FACTS_ATTR, GUMROAD_PURCHASE_ATTR])
            .await
    }

    async fn license_to_verify(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
    ) -> Result<Option<License>, StoreError> {
        self.license_unopened_at(tenant_id, key_hash, &[FACTS_ATTR])
            .await
    }

    async fn activation(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        machine_id: &str,
    ) -> Result<Option<Activation>, StoreError> {
        self.read_item(
            &self.tables.licenses,
            tenant_id,
            &activation_sk(key_hash, machine_id),
        )
        .await?
        .map(from_item)
        .transpose()
    }

    async fn activations(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
    ) -> Result<Vec<Activation>, StoreError> {
        let prefix = format!("ACTIVATION#{key_hash}#");
        self.query_partition(&self.tables.licenses, tenant_id, &prefix)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn activate(
        &self,
        license: &License,
        activation: &Activation,
        now: &str,
        budget: &SeatBudget,
    ) -> Result<ActivateResult, StoreError> {
        let (tenant_id, key_hash) = (&license.tenant_id, &license.key_hash);
        let tenant = tenant_id.as_str();
        let record = to_item(
            activation,
            Some(activation_sk(key_hash, &activation.machine_id)),
        )?;
        let mut record = record;
        record.insert("tenant_id".into(), s(tenant));
        let corrupt = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt(e.to_string());
        let seat = Update::builder()
            .table_name(&self.tables.licenses)
            .key("tenant_id", s(tenant))
            .key("sk", s(license_sk(key_hash)))
            .update_expression("SET activations = activations + :one ADD v :one")
            .condition_expression(
                "attribute_exists(sk) AND #status = :active AND activations < activation_limit \
                 AND (attribute_not_exists(expires_at) OR expires_at > :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":now", s(now))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .build()
            .map_err(corrupt)?;
        let mut items = vec![
            self.put_if_new(&self.tables.licenses, record, "sk")?,
            TransactWriteItem::builder().update(seat).build(),
            self.budget_item(tenant_id, budget)?,
        ];
        items.extend(
            self.event_items(tenant_id, |events| {
                events.machine(license, &activation.machine_id, true)
            })
            .await?,
        );
        let Some(reasons) = self.transact(items).await? else {
            let license = self.get_license(tenant_id, key_hash).await?;
            return Ok(ActivateResult::Activated {
                activations: license.map_or(0, |l| l.activations),
            });
        };
        // The license's condition fails for a full license too, so its status decides between "already active"
        // (the machine's seat exists) and "not active" (the license was revoked or expired meanwhile).
        let license_status = reasons.old(&[1]).map(|old| status_at(old, now));
        if reasons.failed(1) && license_status.is_none() {
            return Ok(ActivateResult::NotFound);
        }
        Ok(match license_status {
            Some(status) if reasons.failed(1) && status != LicenseStatus::Active => {
                ActivateResult::NotActive(status)
            }
            _ if reasons.failed(0) => ActivateResult::AlreadyActive,
            Some(_) if reasons.failed(1) => ActivateResult::LimitReached,
            _ if reasons.failed(2) => ActivateResult::OverBudget,
            _ => return Err(reasons.unexpected()),
        })
    }

    async fn count_gumroad_use(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
    ) -> Result<Option<u64>, StoreError> {
        let token = request_token()?;
        let uses = |item: Option<&Item>| {
            item.and_then(|a| a.get("uses"))
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
        };
        let result = self
            .update_license_item(tenant_id, license_sk(key_hash))
            .update_expression("ADD uses :one, v :one SET uses_rq = :token")
            // A retried attempt of this very use is not counted again.
            .condition_expression(
                "attribute_exists(sk) AND (attribute_not_exists(uses_rq) OR uses_rq <> :token)",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":token", s(&token))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await;
        if let Some(out) = conditional(result)? {
            return Ok(uses(out.attributes()));
        }
        let ours = self
            .written_by(
                &self.tables.licenses,
                tenant_id,
                &license_sk(key_hash),
                "uses_rq",
                &token,
            )
            .await?;
        Ok(uses(ours.as_ref()))
    }

    async fn touch_seat(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        machine_id: &str,
        now: &str,
        until: Option<i64>,
    ) -> Result<SeatTouch, StoreError> {
        let corrupt = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt(e.to_string());
        let seat = Update::builder()
            .table_name(&self.tables.licenses)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(activation_sk(key_hash, machine_id)))
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_values(":now", s(now));
        let seat = match until {
            Some(until) => seat
                .update_expression("SET last_seen = :now, seat_until = :until")
                .expression_attribute_values(":until", n(until)),
            None => seat.update_expression("SET last_seen = :now"),
        };
        let license = ConditionCheck::builder()
            .table_name(&self.tables.licenses)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(license_sk(key_hash)))
            .condition_expression(
                "#status = :active AND (attribute_not_exists(expires_at) OR expires_at > :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":now", s(now))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .build()
            .map_err(corrupt)?;
        let items = vec![
            TransactWriteItem::builder()
                .update(seat.build().map_err(corrupt)?)
                .build(),
            TransactWriteItem::builder()
                .condition_check(license)
                .build(),
        ];
        let Some(reasons) = self.transact(items).await? else {
            return Ok(SeatTouch::Renewed);
        };
        if reasons.failed(1) {
            let status = reasons
                .old(&[1])
                .map_or(LicenseStatus::Revoked, |old| status_at(old, now));
            return Ok(SeatTouch::NotActive(status));
        }
        if reasons.failed(0) {
            return Ok(SeatTouch::Gone);
        }
        Err(reasons.unexpected())
    }

    async fn activate_reclaiming(
        &self,
        license: &License,
        activation: &Activation,
        expired: &[String],
        now: &str,
        now_unix: i64,
        budget: &SeatBudget,
    ) -> Result<Option<ActivateResult>, StoreError> {
        let tenant = license.tenant_id.as_str();
        let key_hash = &license.key_hash;
        let corrupt = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt(e.to_string());
        let mut record = to_item(
            activation,
            Some(activation_sk(key_hash, &activation.machine_id)),
        )?;
        record.insert("tenant_id".into(), s(tenant));
        let freed = i64::try_from(expired.len()).unwrap_or(i64::MAX);
        // activations - freed + 1 <= limit, i.e. activations <= limit + freed - 1.
        let seat = Update::builder()
            .table_name(&self.tables.licenses)
            .key("tenant_id", s(tenant))
            .key("sk", s(license_sk(key_hash)))
            .update_expression("SET activations = activations + :delta ADD v :v1")
            .expression_attribute_values(":v1", n(1))
            .condition_expression(
                "attribute_exists(sk) AND #status = :active AND activation_limit = :limit \
                 AND activations <= :max AND (attribute_not_exists(expires_at) OR expires_at > :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":delta", n(1 - freed))
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":limit", n(i64::from(license.activation_limit)))
            .expression_attribute_values(":max", n(i64::from(license.activation_limit) + freed - 1))
            .expression_attribute_values(":now", s(now))
            .build()
            .map_err(corrupt)?;
        let mut items = vec![
            self.put_if_new(&self.tables.licenses, record, "sk")?,
            TransactWriteItem::builder().update(seat).build(),
            self.budget_item(&license.tenant_id, budget)?,
        ];
        for machine in expired {
            let free = Delete::builder()
                .table_name(&self.tables.licenses)
                .key("tenant_id", s(tenant))
                .key("sk", s(activation_sk(key_hash, machine)))
                .condition_expression("seat_until < :now")
                .expression_attribute_values(":now", n(now_unix))
                .build()
                .map_err(corrupt)?;
            items.push(TransactWriteItem::builder().delete(free).build());
        }
        items.extend(
            self.event_items(&license.tenant_id, |events| {
                for machine in expired {
                    events.machine(license, machine, false)?;
                }
                events.machine(license, &activation.machine_id, true)
            })
            .await?,
        );
        let Some(reasons) = self.transact(items).await? else {
            let license = self.get_license(&license.tenant_id, key_hash).await?;
            return Ok(Some(ActivateResult::Activated {
                activations: license.map_or(0, |l| l.activations),
            }));
        };
        if reasons.failed(0) {
            return Ok(Some(ActivateResult::AlreadyActive));
        }
        if reasons.failed(2) {
            return Ok(Some(ActivateResult::OverBudget));
        }
        Ok(None)
    }

    async fn apply_due_change(
        &self,
        license: &License,
        change: &PlanChange,
    ) -> Result<bool, StoreError> {
        let update = self
            .plan_update(license.tenant_id.as_str(), &license.key_hash, change, false)?
            .condition_expression(
                "pending_change.effective_at = :at AND pending_change.product_id = :pid",
            )
            .expression_attribute_values(":at", s(&change.effective_at))
            .expression_attribute_values(":pid", s(change.product_id.as_str()))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        let mut after = license.clone();
        after.apply_plan(change);
        items.extend(
            self.event_items(&license.tenant_id, |events| {
                events.license_changed(Some(license), &after)
            })
            .await?,
        );
        match self.transact(items).await? {
            None => Ok(true),
            Some(reasons) if reasons.failed(0) => Ok(false),
            Some(reasons) => Err(reasons.unexpected()),
        }
    }

    async fn deactivate(&self, license: &License, machine_id: &str) -> Result<bool, StoreError> {
        let (tenant_id, key_hash) = (&license.tenant_id, &license.key_hash);
        let tenant = tenant_id.as_str();
        let corrupt = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Corrupt(e.to_string());
        let delete = Delete::builder()
            .table_name(&self.tables.licenses)
            .key("tenant_id", s(tenant))
            .key("sk", s(activation_sk(key_hash, machine_id)))
            .condition_expression("attribute_exists(sk)")
            .build()
            .map_err(corrupt)?;
        let free = Update::builder()
            .table_name(&self.tables.licenses)
            .key("tenant_id", s(tenant))
            .key("sk", s(license_sk(key_hash)))
            .update_expression("SET activations = activations - :one ADD v :one")
            .condition_expression("activations > :zero")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":zero", n(0))
            .build()
            .map_err(corrupt)?;
        let mut items = vec![
            TransactWriteItem::builder().delete(delete).build(),
            TransactWriteItem::builder().update(free).build(),
        ];
        items.extend(
            self.event_items(tenant_id, |events| {
                events.machine(license, machine_id, false)
            })
            .await?,
        );
        match self.transact(items).await? {
            None => Ok(true),
            Some(reasons) if reasons.failed(0) => Ok(false),
            Some(reasons) => Err(reasons.unexpected()),
        }
    }
}

impl DynamoStore {
    /// One more seat counted against `budget`, only while it stays within its limit.
    fn budget_item(
        &self,
        tenant_id: &TenantId,
        budget: &SeatBudget,
    ) -> Result<TransactWriteItem, StoreError> {
        let count = Update::builder()
            .table_name(&self.tables.events)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(rate_sk(&budget.counter)))
            .update_expression("ADD uses :one SET #ttl = :ttl")
            .condition_expression("attribute_not_exists(uses) OR uses < :limit")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(i64::from(budget.limit)))
            .expression_attribute_values(":ttl", n(budget.until))
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(count).build())
    }
}
