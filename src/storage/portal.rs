//! The portal's records: licenses by buyer email (pointer items written with the sale), sign-in tokens (stored
//! only hashed, single use, with a TTL), rate-limit counters, the tenant's sealed portal MAC key, and replacing a
//! license's key (the license, its machines and its pointers move to the new key's hash in one transaction).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, ReturnValue, TransactWriteItem};

use super::dynamo::DynamoStore;
use super::sdk::{Item, TOKEN_ATTR, conditional, n, request_token, s, version};
use super::table::events::{rate_sk, sessions_sk, signin_sk};
use super::table::licenses::{
    LICENSE_SK_PREFIX, activation_sk, email_pointer, email_prefix, key_hash_of, license_sk,
    moved_sk, subscription_sk,
};
use super::table::tenants::MAC_KEY_SK;
use super::{ActivationStore, Store, StoreError};
use crate::domain::{Activation, Email, KeyHash, License, LicenseStatus, TenantId};

/// How many machines a license may hold and still have its key replaced: the replacement frees them all in one
/// DynamoDB transaction of at most 100 items (one per machine, beside the license's own records).
pub const MAX_MACHINES_TO_FREE: u32 = 40;

/// What `replace_key` did.
#[derive(Debug)]
pub enum Replaced {
    Done,
    /// The license changed since it was read (a machine came or went, its status moved): read it again.
    Stale,
}

#[async_trait]
pub trait PortalStore: ActivationStore {
    /// Counts one use of `counter` (a rate-limit window) unless it reached `limit`; `false` when it had.
    async fn count_use(
        &self,
        tenant_id: &TenantId,
        counter: &str,
        limit: u32,
        ttl: i64,
    ) -> Result<bool, StoreError>;

    /// Stores a sign-in token's hash for `email`, usable until `expires_at` (unix seconds).
    async fn put_signin(
        &self,
        tenant_id: &TenantId,
        token_hash: &str,
        email: &Email,
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// Whether a sign-in token is still usable at `now`, without using it.
    async fn signin_usable(
        &self,
        tenant_id: &TenantId,
        token_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Uses a sign-in token: deletes it if it is still usable at `now` and answers its address; `None` when it
    /// is unknown, used or expired. Two concurrent uses: one wins.
    async fn take_signin(
        &self,
        tenant_id: &TenantId,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<Email>, StoreError>;

    /// Ends every session of `email` issued before `before` (unix seconds); the record lives until `expires_at`,
    /// when no such session can be alive anyway. A later revocation is never moved back.
    async fn revoke_sessions(
        &self,
        tenant_id: &TenantId,
        email: &Email,
        before: i64,
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// Since when `email`'s sessions are valid: sessions issued before it were revoked. `None` when never.
    async fn sessions_valid_from(
        &self,
        tenant_id: &TenantId,
        email: &Email,
    ) -> Result<Option<i64>, StoreError>;

    /// The buyer's licenses, found through the email pointers (never by reading the tenant's partition).
    async fn licenses_by_email(
        &self,
        tenant_id: &TenantId,
        email: &Email,
    ) -> Result<Vec<License>, StoreError>;

    /// Writes the email pointer of a license that predates the index; `false` when it existed.
    async fn index_license(&self, license: &License) -> Result<bool, StoreError>;

    /// The license a key hash names now, following replaced keys (payments keep the hash they were made under).
    async fn current_license(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
    ) -> Result<Option<License>, StoreError>;

    /// The tenant's portal MAC key as KMS encrypted it.
    async fn sealed_mac_key(&self, tenant_id: &TenantId) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores the tenant's first portal MAC key; `false` when another process stored one first.
    async fn put_sealed_mac_key(
        &self,
        tenant_id: &TenantId,
        sealed: &[u8],
        created_at: &str,
    ) -> Result<bool, StoreError>;

    /// Moves `old` to `new`'s key and frees every one of its `machines`' seats (a leaked key's squatters go with
    /// it; the buyer's own machines activate again with the new key), in one transaction that holds only while
    /// the license and its machines are as they were read and the license is not revoked.
    async fn replace_key(
        &self,
        old: &License,
        machines: &[Activation],
        new: &License,
    ) -> Result<Replaced, StoreError>;
}

fn built<T>(result: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn put(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = built(
        Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .build(),
    )?;
    Ok(TransactWriteItem::builder().put(put).build())
}

#[async_trait]
impl PortalStore for DynamoStore {
    async fn count_use(
        &self,
        tenant_id: &TenantId,
        counter: &str,
        limit: u32,
        ttl: i64,
    ) -> Result<bool, StoreError> {
        let token = request_token()?;
        let sk = rate_sk(counter);
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.events)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(&sk))
            .update_expression("ADD uses :one SET #ttl = :ttl, #rq = :token")
            // A retried attempt of this very count is not counted again.
            .condition_expression(
                "(attribute_not_exists(uses) OR uses < :limit) AND (attribute_not_exists(#rq) OR #rq <> :token)",
            )
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_names("#rq", TOKEN_ATTR)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(i64::from(limit)))
            .expression_attribute_values(":ttl", n(ttl))
            .expression_attribute_values(":token", s(&token))
            .send()
            .await;
        if conditional(result)?.is_some() {
            return Ok(true);
        }
        let ours = self
            .written_by(&self.tables.events, tenant_id, &sk, TOKEN_ATTR, &token)
            .await?;
        Ok(ours.is_some())
    }

    async fn revoke_sessions(
        &self,
        tenant_id: &TenantId,
        email: &Email,
        before: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.events)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(sessions_sk(email)))
            .update_expression("SET valid_from = :before, #ttl = :ttl")
            .condition_expression("attribute_not_exists(valid_from) OR valid_from <= :before")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":before", n(before))
            .expression_attribute_values(":ttl", n(expires_at))
            .send()
            .await;
        // A later revocation already stands: nothing to do.
        conditional(result).map(|_| ())
    }

    async fn sessions_valid_from(
        &self,
        tenant_id: &TenantId,
        email: &Email,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .read_item(&self.tables.events, tenant_id, &sessions_sk(email))
            .await?
            .and_then(|item| {
                item.get("valid_from")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok())
            }))
    }

    async fn put_signin(
        &self,
        tenant_id: &TenantId,
        token_hash: &str,
        email: &Email,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut item = Item::new();
        item.insert("tenant_id".into(), s(tenant_id.as_str()));
        item.insert("sk".into(), s(signin_sk(token_hash)));
        item.insert("email".into(), s(email.as_str()));
        item.insert("expires_at".into(), n(expires_at));
        // DynamoDB deletes it some time after it expired; `expires_at` is what is checked.
        item.insert("ttl".into(), n(expires_at));
        self.put_new(&self.tables.events, item).await
    }

    async fn signin_usable(
        &self,
        tenant_id: &TenantId,
        token_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let item = self
            .read_item(&self.tables.events, tenant_id, &signin_sk(token_hash))
            .await?;
        Ok(item
            .as_ref()
            .filter(|item| !item.contains_key("used_rq"))
            .and_then(|item| item.get("expires_at"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .is_some_and(|at| at > now))
    }

    async fn take_signin(
        &self,
        tenant_id: &TenantId,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<Email>, StoreError> {
        // Using the link marks it used (TTL deletes it later) rather than deleting it: a retried attempt of this
        // very use finds its own mark and succeeds, where a retried delete would find nothing ("already used").
        let token = request_token()?;
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.events)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(signin_sk(token_hash)))
            .update_expression("SET used_rq = :token")
            .condition_expression(
                "expires_at > :now AND (attribute_not_exists(used_rq) OR used_rq = :token)",
            )
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":token", s(&token))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        Ok(conditional(result)?
            .as_ref()
            .and_then(|out| out.attributes())
            .and_then(|item| item.get("email"))
            .and_then(|v| v.as_s().ok())
            .and_then(|raw| Email::parse(raw).ok()))
    }

    async fn licenses_by_email(
        &self,
        tenant_id: &TenantId,
        email: &Email,
    ) -> Result<Vec<License>, StoreError> {
        let pointers = self
            .query_partition(&self.tables.licenses, tenant_id, &email_prefix(email))
            .await?;
        let mut licenses = Vec::new();
        for pointer in pointers {
            if let Some(hash) = key_hash_of(&pointer)
                && let Some(license) = self.get_license(tenant_id, &hash).await?
            {
                licenses.push(license);
            }
        }
        licenses.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(licenses)
    }

    async fn index_license(&self, license: &License) -> Result<bool, StoreError> {
        match self
            .put_new(&self.tables.licenses, email_pointer(license))
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists) => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn current_license(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
    ) -> Result<Option<License>, StoreError> {
        let mut hash = key_hash.to_owned();
        // A key replaced n times leaves n forwarding records; a loop would be a corrupt chain.
        for _ in 0..32 {
            if let Some(license) = self.get_license(tenant_id, &hash).await? {
                return Ok(Some(license));
            }
            let moved = self
                .read_item(&self.tables.licenses, tenant_id, &moved_sk(&hash))
                .await?;
            match moved.as_ref().and_then(key_hash_of) {
                Some(next) => hash = next,
                None => return Ok(None),
            }
        }
        Err(StoreError::Corrupt(
            "a replaced key's forwarding records form a loop".to_owned(),
        ))
    }

    async fn sealed_mac_key(&self, tenant_id: &TenantId) -> Result<Option<Vec<u8>>, StoreError> {
        let item = self
            .read_item(&self.tables.tenants, tenant_id, MAC_KEY_SK)
            .await?;
        Ok(item
            .as_ref()
            .and_then(|item| item.get("sealed_key"))
            .and_then(|v| v.as_b().ok())
            .map(|blob| blob.as_ref().to_vec()))
    }

    async fn put_sealed_mac_key(
        &self,
        tenant_id: &TenantId,
        sealed: &[u8],
        created_at: &str,
    ) -> Result<bool, StoreError> {
        let mut item = Item::new();
        item.insert("tenant_id".into(), s(tenant_id.as_str()));
        item.insert("sk".into(), s(MAC_KEY_SK));
        item.insert(
            "sealed_key".into(),
            aws_sdk_dynamodb::types::AttributeValue::B(sealed.to_vec().into()),
        );
        item.insert("created_at".into(), s(created_at));
        match self.put_new(&self.tables.tenants, item).await {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists) => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn replace_key(
        &self,
        old: &License,
        machines: &[Activation],
        new: &License,
    ) -> Result<Replaced, StoreError> {
        let tenant = old.tenant_id.as_str();
        let table = &self.tables.licenses;
        // The license as it was read: its status (never revoked), seats, limit and product.
        let retire = Delete::builder()
            .table_name(table)
            .key("tenant_id", s(tenant))
            .key("sk", s(license_sk(&old.key_hash)))
            .condition_expression(format!(
                "attribute_exists(sk) AND #status = :status AND #status <> :revoked \
                 AND activations = :activations AND activation_limit = :limit AND product_id = :product \
                 AND {} AND {} AND {}",
                // A renewal or a deferred plan change that lands meanwhile must not be overwritten by the copy.
                if old.expires_at.is_some() { "expires_at = :expires" } else { "attribute_not_exists(expires_at)" },
                if old.pending_change.is_some() { "attribute_exists(pending_change)" } else { "attribute_not_exists(pending_change)" },
                // Every write to a license bumps its version: the copy is of the license exactly as it is.
                if old.v == 0 { "attribute_not_exists(v)" } else { "v = :v" },
            ))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(old.status.as_str()))
            .expression_attribute_values(":revoked", s(LicenseStatus::Revoked.as_str()))
            .expression_attribute_values(":activations", n(i64::from(old.activations)))
            .expression_attribute_values(":limit", n(i64::from(old.activation_limit)))
            .expression_attribute_values(":product", s(old.product_id.as_str()));
        let retire = match &old.expires_at {
            Some(expires) => retire.expression_attribute_values(":expires", s(expires)),
            None => retire,
        };
        let retire = match old.v {
            0 => retire,
            v => retire.expression_attribute_values(":v", version(v)),
        };
        let mut items = vec![
            TransactWriteItem::builder()
                .delete(built(retire.build())?)
                .build(),
            self.put_if_new(table, self.license_item(new).await?, "sk")?,
        ];
        for machine in machines {
            // Each machine as read: a seat renewed meanwhile would otherwise lose its renewal.
            let mut leave = Delete::builder()
                .table_name(table)
                .key("tenant_id", s(tenant))
                .key("sk", s(activation_sk(&old.key_hash, &machine.machine_id)));
            leave = match machine.seat_until {
                Some(until) => leave
                    .condition_expression("seat_until = :until")
                    .expression_attribute_values(":until", n(until)),
                None => leave.condition_expression("attribute_exists(sk)"),
            };
            items.push(
                TransactWriteItem::builder()
                    .delete(built(leave.build())?)
                    .build(),
            );
        }
        let old_pointer = Delete::builder()
            .table_name(table)
            .key("tenant_id", s(tenant))
            .key(
                "sk",
                s(format!(
                    "{}{}",
                    email_prefix(&old.buyer_email),
                    old.key_hash
                )),
            );
        items.push(
            TransactWriteItem::builder()
                .delete(built(old_pointer.build())?)
                .build(),
        );
        items.push(put(table, email_pointer(new))?);
        let mut forward = Item::new();
        forward.insert("tenant_id".into(), s(tenant));
        forward.insert("sk".into(), s(moved_sk(&old.key_hash)));
        forward.insert("key_hash".into(), s(&new.key_hash));
        items.push(put(table, forward)?);
        if let Some(subscription_id) = &new.subscription_id {
            let mut pointer = Item::new();
            pointer.insert("tenant_id".into(), s(tenant));
            pointer.insert("sk".into(), s(subscription_sk(subscription_id)));
            pointer.insert("key_hash".into(), s(&new.key_hash));
            // The pointer follows the key it named, and only that one.
            let moved = Put::builder()
                .table_name(table)
                .set_item(Some(pointer))
                .condition_expression("attribute_not_exists(sk) OR key_hash = :old")
                .expression_attribute_values(":old", s(&old.key_hash));
            items.push(
                TransactWriteItem::builder()
                    .put(built(moved.build())?)
                    .build(),
            );
        }
        items.extend(
            self.event_items(&old.tenant_id, |events| {
                events.key_replaced(old, new, machines.len())
            })
            .await?,
        );
        match self.transact(items).await? {
            None => Ok(Replaced::Done),
            Some(reasons) => {
                let machines_moved = (0..machines.len()).any(|i| reasons.failed(2 + 2 * i));
                if reasons.failed(0) || machines_moved {
                    Ok(Replaced::Stale)
                } else {
                    Err(StoreError::Unavailable(format!(
                        "transaction cancelled: {}",
                        reasons.summary()
                    )))
                }
            }
        }
    }
}

impl DynamoStore {
    /// Every license of a tenant, read page by page: only `keystead license index`, once, for licenses sold
    /// before the email index existed.
    pub async fn all_licenses(&self, tenant_id: &TenantId) -> Result<Vec<License>, StoreError> {
        let mut licenses = Vec::new();
        for item in self
            .query_partition(&self.tables.licenses, tenant_id, LICENSE_SK_PREFIX)
            .await?
        {
            licenses.push(self.license_from(item).await?);
        }
        Ok(licenses)
    }
}
