//! The DynamoDB adapter. Four tables, each keyed by `tenant_id` and a sort key:
//! tenants (`TENANT`, `PRODUCT#<id>`), licenses (`LICENSE#<key hash>`), payments (`sale_id`) and
//! events (`SALE#<sale id>` idempotency records, with a TTL).

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use super::sdk::{
    Item, Reasons, TOKEN_ATTR, backoff, conditional, from_item, is_condition_failure, n,
    request_token, s, to_item, unavailable,
};
use super::table::events::{Anchor, Orphans, sale_event_sk};
use super::table::licenses::{email_pointer, key_hash_of, license_sk, subscription_sk};
use super::table::tenants::{
    PRODUCT_SK_PREFIX, SIGNING_KEY_SK_PREFIX, TENANT_SK, VARIANT_SK_PREFIX,
};
use super::{
    EmailOutcome, KeyCipher, NewSale, Renewal, RenewalWrite, SaleWrite, Store, StoreError,
};
use crate::domain::{
    EmailFailure, KeyHash, License, Product, SaleId, SealedSigningKey, Tenant, TenantId,
    VariantMapping,
};
use std::sync::Arc;

/// The physical table names, read from the environment the SAM template (or `infra/local/up`) sets.
#[derive(Debug, Clone)]
pub struct Tables {
    pub tenants: String,
    pub licenses: String,
    pub payments: String,
    pub events: String,
}

impl Tables {
    pub const ENV: [&'static str; 4] = [
        "KEYSTEAD_TENANTS_TABLE",
        "KEYSTEAD_LICENSES_TABLE",
        "KEYSTEAD_PAYMENTS_TABLE",
        "KEYSTEAD_EVENTS_TABLE",
    ];

    /// Reads the four table names, naming every missing variable in the error.
    pub fn from_env() -> Result<Self, String> {
        let values: Vec<Option<String>> = Self::ENV
            .iter()
            .map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
            .collect();
        let missing: Vec<&str> = Self::ENV
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "missing environment variable(s) {}: run `eval \"$(infra/local/up)\"` locally, or export the deployed stack's table names (see README, Deploy)",
                missing.join(", ")
            ));
        }
        let mut v = values.into_iter().flatten();
        let mut next = || v.next().unwrap_or_default();
        Ok(Self {
            tenants: next(),
            licenses: next(),
            payments: next(),
            events: next(),
        })
    }
}

/// Concurrent transactions on the same items are cancelled with `TransactionConflict`; they are retried
/// this many times before the caller is told to come back later.
const CONFLICT_RETRIES: u32 = 12;

#[derive(Clone)]
pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) tables: Tables,
    /// Seals license keys at rest; without one (tests, the bench) keys are stored as they are.
    pub(crate) cipher: Option<Arc<dyn KeyCipher>>,
    /// The seller's AWS principal, named on the events the CLI's writes record (`with_actor`).
    pub(crate) actor: Option<Arc<dyn super::Actor>>,
}

/// The attribute a sealed license key is stored in (the plaintext `key` attribute is then absent).
pub(crate) const SEALED_KEY_ATTR: &str = "key_sealed";

impl DynamoStore {
    pub fn new(client: Client, tables: Tables) -> Self {
        Self {
            client,
            tables,
            cipher: None,
            actor: None,
        }
    }

    /// The same store, sealing every license key it writes with `cipher` and opening them on the way back.
    pub fn with_key_cipher(mut self, cipher: Arc<dyn KeyCipher>) -> Self {
        self.cipher = Some(cipher);
        self
    }

    /// A license's item as it is stored: its key sealed when the store has a cipher.
    pub(crate) async fn license_item(&self, license: &License) -> Result<Item, StoreError> {
        let mut item = to_item(license, Some(license_sk(&license.key_hash)))?;
        if !license.key.expose().is_empty() {
            item.insert("key_display".to_owned(), s(license.key.display()));
        }
        if let Some(cipher) = &self.cipher {
            let sealed = cipher
                .seal(&license.tenant_id, &license.key_hash, license.key.expose())
                .await?;
            item.remove("key");
            item.insert(SEALED_KEY_ATTR.to_owned(), s(sealed));
        }
        Ok(item)
    }

    /// A license read back, its key opened (one KMS `Decrypt` per tenant and process, then memory).
    pub(crate) async fn license_from(&self, mut item: Item) -> Result<License, StoreError> {
        if let Some(sealed) = item.remove(SEALED_KEY_ATTR) {
            let cipher = self.cipher.as_ref().ok_or_else(|| {
                StoreError::Corrupt(
                    "license keys are sealed with KMS: set KEYSTEAD_SIGNING_KEY_ID (the stack's SigningKeyArn)"
                        .to_owned(),
                )
            })?;
            let text = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt(format!("license without {name}")))
            };
            let tenant_id = TenantId::parse(&text("tenant_id")?)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let key_hash = KeyHash::from_stored(text("key_hash")?);
            let sealed = sealed
                .as_s()
                .map_err(|_| StoreError::Corrupt("sealed key is not a string".to_owned()))?;
            let plain = cipher.open(&tenant_id, &key_hash, sealed).await?;
            item.insert("key".to_owned(), s(plain));
        }
        from_item(item)
    }

    /// A license read for a check, which never needs its key: a sealed key stays sealed (no KMS call on the
    /// license API's path) and the license's `key` is empty. The attributes named in `unread` (lists and maps the
    /// check does not look at) are left out before the item is decoded: decoding is most of a check's own work.
    pub(crate) fn license_unopened(mut item: Item, unread: &[&str]) -> Result<License, StoreError> {
        if item.remove(SEALED_KEY_ATTR).is_some() {
            item.insert("key".to_owned(), s(""));
        }
        for name in unread {
            item.remove(*name);
        }
        from_item(item)
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }
}

impl DynamoStore {
    /// An `UpdateItem` of one item of a tenant's partition in the licenses table, ready for its expressions.
    pub(crate) fn update_license_item(
        &self,
        tenant_id: &TenantId,
        sk: String,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.tables.licenses)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(sk))
    }

    /// One item of a tenant's partition in a table keyed by `sk`, read consistently.
    pub(crate) async fn read_item(
        &self,
        table: &str,
        tenant_id: &TenantId,
        sk: &str,
    ) -> Result<Option<Item>, StoreError> {
        self.read_keyed(table, tenant_id, "sk", sk).await
    }

    /// A sale's payment (the payments table is keyed by `sale_id`), read consistently.
    pub(crate) async fn read_payment(
        &self,
        tenant_id: &TenantId,
        sale_id: &SaleId,
    ) -> Result<Option<Item>, StoreError> {
        self.read_keyed(
            &self.tables.payments,
            tenant_id,
            "sale_id",
            sale_id.as_str(),
        )
        .await
    }

    async fn read_keyed(
        &self,
        table: &str,
        tenant_id: &TenantId,
        key_attr: &str,
        key: &str,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .key("tenant_id", s(tenant_id.as_str()))
            .key(key_attr, s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    pub(crate) fn put_if_new(
        &self,
        table: &str,
        item: Item,
        key_attr: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression(format!("attribute_not_exists({key_attr})"))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Every item of a tenant's partition in `table` whose sort key starts with `sk_prefix` (all of them for
    /// `""`), read consistently, page after page.
    pub(crate) async fn query_partition(
        &self,
        table: &str,
        tenant_id: &TenantId,
        sk_prefix: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start_key = None;
        loop {
            let query = self
                .client
                .query()
                .table_name(table)
                .expression_attribute_values(":t", s(tenant_id.as_str()))
                .consistent_read(true)
                .set_exclusive_start_key(start_key);
            let query = if sk_prefix.is_empty() {
                query.key_condition_expression("tenant_id = :t")
            } else {
                query
                    .key_condition_expression("tenant_id = :t AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(sk_prefix))
            };
            let page = query.send().await.map_err(unavailable)?;
            items.extend(page.items().iter().cloned());
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                return Ok(items);
            }
        }
    }

    /// Puts an item that must not exist yet; `AlreadyExists` when it does (and not when what exists is this very
    /// put, applied by an attempt whose answer was lost and retried by the SDK).
    pub(crate) async fn put_new(&self, table: &str, mut item: Item) -> Result<(), StoreError> {
        let token = request_token()?;
        item.insert(TOKEN_ATTR.into(), s(&token));
        let key = (item.get("tenant_id").cloned(), item.get("sk").cloned());
        let result = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => {
                let (Some(AttributeValue::S(tenant)), Some(AttributeValue::S(sk))) = key else {
                    return Err(StoreError::AlreadyExists);
                };
                let tenant_id =
                    TenantId::parse(&tenant).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                match self
                    .written_by(table, &tenant_id, &sk, TOKEN_ATTR, &token)
                    .await?
                {
                    Some(_) => Ok(()),
                    None => Err(StoreError::AlreadyExists),
                }
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    /// After a conditional write failed its condition: the item, when it carries `token` in `attr`, i.e. when what
    /// failed the condition is this write's own earlier attempt (the SDK retried a write whose answer was lost),
    /// which is the write's success, not a conflict.
    pub(crate) async fn written_by(
        &self,
        table: &str,
        tenant_id: &TenantId,
        sk: &str,
        attr: &str,
        token: &str,
    ) -> Result<Option<Item>, StoreError> {
        let item = self.read_item(table, tenant_id, sk).await?;
        Ok(item.filter(|item| {
            item.get(attr)
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some(token)
        }))
    }

    /// The idempotency record of a sale: which license it minted, kept for 30 days.
    fn sale_record(&self, tenant: &str, sale_id: &SaleId, license: &License, ttl: i64) -> Item {
        let mut event = Item::new();
        event.insert("tenant_id".into(), s(tenant));
        event.insert("sk".into(), s(sale_event_sk(sale_id.as_str())));
        event.insert("key_hash".into(), s(&license.key_hash));
        event.insert("license_id".into(), s(&license.license_id));
        event.insert("created_at".into(), s(&license.created_at));
        event.insert("ttl".into(), n(ttl));
        event
    }

    /// Runs a transaction, retrying it while it only conflicts with concurrent ones. `None` when it committed;
    /// the cancellation reasons when a condition failed.
    pub(crate) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Option<Reasons>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await
            {
                Ok(_) => return Ok(None),
                Err(err) => err,
            };
            let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                err.as_service_error()
            else {
                return Err(unavailable(err));
            };
            let reasons = Reasons(
                cancelled
                    .cancellation_reasons()
                    .iter()
                    .map(|r| (r.code().unwrap_or("None").to_owned(), r.item().cloned()))
                    .collect(),
            );
            let conflict_only = !reasons
                .0
                .iter()
                .any(|(code, _)| code == "ConditionalCheckFailed")
                && reasons
                    .0
                    .iter()
                    .any(|(code, _)| code == "TransactionConflict");
            if conflict_only && attempt < CONFLICT_RETRIES {
                backoff(attempt).await;
                continue;
            }
            if conflict_only {
                return Err(unavailable(err));
            }
            return Ok(Some(reasons));
        }
    }

    /// The key hash of the license an earlier write of this sale minted, from its idempotency record or
    /// (once that has expired) its payment.
    async fn minted_key_hash(&self, sale: &NewSale) -> Result<Option<KeyHash>, StoreError> {
        let tenant_id = &sale.license.tenant_id;
        let sale_id = &sale.payment.sale_id;
        let event = self
            .read_item(
                &self.tables.events,
                tenant_id,
                &sale_event_sk(sale_id.as_str()),
            )
            .await?;
        if let Some(hash) = event.as_ref().and_then(key_hash_of) {
            return Ok(Some(hash));
        }
        let payment = self.read_payment(tenant_id, sale_id).await?;
        Ok(payment.as_ref().and_then(key_hash_of))
    }
}

#[async_trait]
impl Store for DynamoStore {
    /// Every tenant's id, from a scan of the tenants table (a tenant's own record, not its products).
    async fn tenant_ids(&self) -> Result<Vec<TenantId>, StoreError> {
        let mut ids = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.tables.tenants)
                .filter_expression("sk = :tenant")
                .expression_attribute_values(":tenant", s(TENANT_SK))
                .projection_expression("tenant_id")
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                if let Some(id) = item.get("tenant_id").and_then(|v| v.as_s().ok()) {
                    ids.push(TenantId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))?);
                }
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                return Ok(ids);
            }
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %tenant_id))]
    async fn load_tenant(&self, tenant_id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let mut tenant: Option<Tenant> = None;
        let mut products = Vec::new();
        let mut variants = Vec::new();
        let mut signing_keys = Vec::new();
        for item in self
            .query_partition(&self.tables.tenants, tenant_id, "")
            .await?
        {
            match item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
            {
                Some(TENANT_SK) => tenant = Some(from_item(item)?),
                Some(sk) if sk.starts_with(PRODUCT_SK_PREFIX) => {
                    products.push(from_item::<Product>(item)?)
                }
                Some(sk) if sk.starts_with(VARIANT_SK_PREFIX) => {
                    variants.push(from_item::<VariantMapping>(item)?)
                }
                Some(sk) if sk.starts_with(SIGNING_KEY_SK_PREFIX) => {
                    signing_keys.push(from_item::<SealedSigningKey>(item)?)
                }
                _ => {}
            }
        }
        Ok(tenant.map(|mut t| {
            t.products = products
                .into_iter()
                .map(|p| (p.product_id.clone(), p))
                .collect();
            t.variants = variants;
            t.signing_keys = signing_keys;
            t
        }))
    }

    async fn sale_seen(&self, tenant_id: &TenantId, sale_id: &SaleId) -> Result<bool, StoreError> {
        Ok(self.read_payment(tenant_id, sale_id).await?.is_some())
    }

    #[tracing::instrument(skip_all, fields(tenant = %sale.license.tenant_id, sale_id = %sale.payment.sale_id))]
    async fn write_sale(&self, sale: &NewSale) -> Result<SaleWrite, StoreError> {
        let license = &sale.license;
        let tenant = license.tenant_id.as_str();
        let mut items = vec![
            self.put_if_new(
                &self.tables.events,
                self.sale_record(tenant, &sale.payment.sale_id, license, sale.idempotency_ttl),
                "sk",
            )?,
            self.put_if_new(
                &self.tables.licenses,
                self.license_item(license).await?,
                "sk",
            )?,
            self.put_if_new(
                &self.tables.payments,
                to_item(&sale.payment, None)?,
                "sale_id",
            )?,
            self.orphans_check(
                tenant,
                Anchor::Sale(&sale.payment.sale_id),
                &sale.sale_orphans,
            )?,
        ];
        // The buyer's portal finds their licenses through this pointer.
        items.push(self.put_if_new(&self.tables.licenses, email_pointer(license), "sk")?);
        // The subscription's pointer is set once: a sale for a subscription that already has a license never
        // re-points it (nor mints a second license for it).
        if let Some(subscription_id) = &license.subscription_id {
            let mut pointer = Item::new();
            pointer.insert("tenant_id".into(), s(tenant));
            pointer.insert("sk".into(), s(subscription_sk(subscription_id)));
            pointer.insert("key_hash".into(), s(&license.key_hash));
            items.push(self.put_if_new(&self.tables.licenses, pointer, "sk")?);
            if let Some(seen) = &sale.subscription_orphans {
                items.push(self.orphans_check(
                    tenant,
                    Anchor::Subscription(subscription_id),
                    seen,
                )?);
            }
        }
        items.extend(
            self.event_items(&license.tenant_id, |events| {
                events.license_changed(None, license)
            })
            .await?,
        );

        let reasons = match self.transact(items).await? {
            None => return Ok(SaleWrite::Created),
            Some(reasons) => reasons,
        };
        if reasons.failed(0) || reasons.failed(2) {
            let key_hash = match reasons.old(&[0, 2]).and_then(key_hash_of) {
                Some(hash) => Some(hash),
                None => self.minted_key_hash(sale).await?,
            };
            let license = match key_hash {
                Some(hash) => self.get_license(&license.tenant_id, &hash).await?,
                None => None,
            };
            return Ok(SaleWrite::Duplicate(license.map(Box::new)));
        }
        if reasons.failed(1) {
            return Ok(SaleWrite::KeyTaken);
        }
        if reasons.failed(3) || reasons.failed(6) {
            return Ok(SaleWrite::Marked);
        }
        if reasons.failed(5)
            && let Some(hash) = reasons.old(&[5]).and_then(key_hash_of)
        {
            return Ok(SaleWrite::Bound(hash));
        }
        Err(reasons.unexpected())
    }

    async fn license_for_subscription(
        &self,
        tenant_id: &TenantId,
        subscription_id: &str,
    ) -> Result<Option<License>, StoreError> {
        let pointer = self
            .read_item(
                &self.tables.licenses,
                tenant_id,
                &subscription_sk(subscription_id),
            )
            .await?;
        match pointer.as_ref().and_then(key_hash_of) {
            Some(hash) => self.get_license(tenant_id, &hash).await,
            None => Ok(None),
        }
    }

    async fn write_renewal(&self, renewal: &Renewal) -> Result<RenewalWrite, StoreError> {
        let license = &renewal.after;
        let tenant = license.tenant_id.as_str();
        let sale_id = &renewal.payment.sale_id;
        let mut items = vec![
            self.put_if_new(
                &self.tables.events,
                self.sale_record(tenant, sale_id, license, renewal.idempotency_ttl),
                "sk",
            )?,
            self.put_if_new(
                &self.tables.payments,
                to_item(&renewal.payment, None)?,
                "sale_id",
            )?,
            TransactWriteItem::builder()
                .update(self.fold_update(&renewal.before, license)?)
                .build(),
            self.orphans_check(tenant, Anchor::Sale(sale_id), &renewal.sale_orphans)?,
        ];
        items.extend(
            self.event_items(&license.tenant_id, |events| {
                events.license_changed(Some(&renewal.before), license)
            })
            .await?,
        );
        match self.transact(items).await? {
            None => Ok(RenewalWrite::Applied),
            Some(reasons) if reasons.failed(0) || reasons.failed(1) => Ok(RenewalWrite::Duplicate),
            Some(reasons) if reasons.failed(3) => Ok(RenewalWrite::Marked),
            Some(reasons) if reasons.failed(2) => Ok(RenewalWrite::Stale),
            Some(reasons) => Err(reasons.unexpected()),
        }
    }

    async fn orphans(
        &self,
        tenant_id: &TenantId,
        anchor: Anchor<'_>,
    ) -> Result<Orphans, StoreError> {
        self.read_orphans(tenant_id, anchor).await
    }

    async fn get_license(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
    ) -> Result<Option<License>, StoreError> {
        match self
            .read_item(&self.tables.licenses, tenant_id, &license_sk(key_hash))
            .await?
        {
            Some(item) => Ok(Some(self.license_from(item).await?)),
            None => Ok(None),
        }
    }

    async fn claim_email(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let token = request_token()?;
        let result = self
            .update_license_item(tenant_id, license_sk(key_hash))
            .update_expression("SET email_claim_until = :until, claim_rq = :token ADD v :v1")
            .expression_attribute_values(":v1", n(1))
            .condition_expression(
                // Only an active license's key is owed: a refund that lands meanwhile stops the email.
                "attribute_exists(sk) AND #status = :active AND email_status <> :sent \
                 AND (attribute_not_exists(email_claim_until) OR email_claim_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", s("active"))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":sent", s("sent"))
            .expression_attribute_values(":token", s(&token))
            .send()
            .await;
        if conditional(result)?.is_some() {
            return Ok(true);
        }
        // The claim this very call took, on an attempt whose answer was lost, is still ours.
        let ours = self
            .written_by(
                &self.tables.licenses,
                tenant_id,
                &license_sk(key_hash),
                "claim_rq",
                &token,
            )
            .await?;
        Ok(ours.is_some_and(|item| {
            item.get("email_claim_until")
                .and_then(|v| v.as_n().ok())
                .is_some_and(|claimed| *claimed == until.to_string())
        }))
    }

    async fn record_email(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        outcome: &EmailOutcome,
    ) -> Result<(), StoreError> {
        let update = self
            .update_license_item(tenant_id, license_sk(key_hash))
            .expression_attribute_values(":v1", n(1));
        // A failure never overwrites a success: another request may have sent the email since this one's claim
        // was released (found by the model-based test: the email went out again after the overwrite).
        let update = match outcome {
            EmailOutcome::Sent { .. } => update.condition_expression("attribute_exists(sk)"),
            EmailOutcome::Failed { .. } | EmailOutcome::Unknown => update
                .condition_expression("attribute_exists(sk) AND email_status <> :sent")
                .expression_attribute_values(":sent", s("sent")),
        };
        let update = match outcome {
            EmailOutcome::Sent { message_id } => update
                .update_expression(
                    "SET email_status = :status, email_message_id = :id REMOVE email_claim_until, email_failure, email_maybe_sent ADD v :v1",
                )
                .expression_attribute_values(":status", s("sent"))
                .expression_attribute_values(":id", s(message_id)),
            EmailOutcome::Failed { reason } => update
                .update_expression(
                    "SET email_status = :status, email_failure = :reason REMOVE email_claim_until ADD v :v1",
                )
                .expression_attribute_values(":status", s("failed"))
                .expression_attribute_values(":reason", s(reason.as_str())),
            EmailOutcome::Unknown => update
                .update_expression(
                    "SET email_status = :status, email_failure = :reason, email_maybe_sent = :maybe REMOVE email_claim_until ADD v :v1",
                )
                .expression_attribute_values(":status", s("failed"))
                .expression_attribute_values(":reason", s(EmailFailure::Other.as_str()))
                .expression_attribute_values(":maybe", AttributeValue::Bool(true)),
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => match outcome {
                EmailOutcome::Sent { .. } => Err(StoreError::NotFound),
                // Sent meanwhile by another request, or gone: nothing to record.
                _ => Ok(()),
            },
            Err(err) => Err(unavailable(err)),
        }
    }
}
