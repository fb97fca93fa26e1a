//! The seller's reads and writes, used by the CLI: tenants, products, permalink mappings and licenses. The
//! function never calls these, so its IAM policy does not need them.

use std::collections::HashMap;

use super::StoreError;
use super::dynamo::DynamoStore;
use super::sdk::{Item, conditional, n, s, to_item, unavailable, version};
use super::table::events::MARKER_SK_PREFIX;
use super::table::licenses::LICENSE_SK_PREFIX;
use super::table::tenants::{PRODUCT_SK_PREFIX, TENANT_SK, VARIANT_SK_PREFIX};
use time::OffsetDateTime;

use crate::domain::{
    Email, EmailStatus, Fact, FactKind, KeyHash, License, LicenseStatus, Permalink, Product,
    ProductId, Tenant, TenantId, TenantStatus, TokenHash, Variant, VariantMapping, rfc3339,
};

fn product_sk(product_id: &ProductId) -> String {
    format!("{PRODUCT_SK_PREFIX}{product_id}")
}

fn variant_sk(permalink: &Permalink, variant: &Variant) -> String {
    format!(
        "{VARIANT_SK_PREFIX}{}",
        VariantMapping::key(permalink, variant)
    )
}

/// Which of a tenant's licenses `list_licenses` returns; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct LicenseFilter {
    pub product_id: Option<ProductId>,
    pub email_status: Option<EmailStatus>,
    /// Compared without regard to ASCII case: buyers type their address as they like.
    pub buyer_email: Option<Email>,
}

/// A record of a tenant's partition in the tenants table (a product, a variant mapping) as an item.
fn tenant_record<T: serde::Serialize>(
    tenant_id: &TenantId,
    record: &T,
    sk: String,
) -> Result<Item, StoreError> {
    let mut item = to_item(record, Some(sk))?;
    item.insert("tenant_id".to_owned(), s(tenant_id.as_str()));
    Ok(item)
}

impl DynamoStore {
    /// Creates a tenant; `AlreadyExists` when the id is taken.
    pub async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let item = to_item(tenant, Some(TENANT_SK.to_owned()))?;
        self.put_new(&self.tables.tenants, item).await
    }

    /// Sets attributes of an existing tenant record; `NotFound` when there is none.
    pub async fn update_tenant(
        &self,
        tenant_id: &TenantId,
        set: &[(&str, aws_sdk_dynamodb::types::AttributeValue)],
    ) -> Result<(), StoreError> {
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut clauses = Vec::new();
        for (i, (attr, value)) in set.iter().enumerate() {
            names.insert(format!("#a{i}"), (*attr).to_owned());
            values.insert(format!(":v{i}"), value.clone());
            clauses.push(format!("#a{i} = :v{i}"));
        }
        self.update_tenant_expr(
            tenant_id,
            &format!("SET {}", clauses.join(", ")),
            names,
            values,
        )
        .await
    }

    async fn update_tenant_expr(
        &self,
        tenant_id: &TenantId,
        expression: &str,
        names: HashMap<String, String>,
        values: HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.tenants)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(TENANT_SK))
            .update_expression(expression)
            .condition_expression("attribute_exists(sk)")
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .send()
            .await;
        conditional(result)?.map(drop).ok_or(StoreError::NotFound)
    }

    /// Creates a product under an existing tenant; `AlreadyExists` when the id is taken.
    pub async fn create_product(
        &self,
        tenant_id: &TenantId,
        product: &Product,
    ) -> Result<(), StoreError> {
        let item = tenant_record(tenant_id, product, product_sk(&product.product_id))?;
        self.put_new(&self.tables.tenants, item).await
    }

    /// Replaces an existing product's record, only while it is at the version `product` was read at; `false`
    /// when it changed meanwhile (read it again), `NotFound` when there is none.
    pub async fn replace_product(
        &self,
        tenant_id: &TenantId,
        product: &Product,
    ) -> Result<bool, StoreError> {
        let sk = product_sk(&product.product_id);
        let next = Product {
            v: product.v + 1,
            ..product.clone()
        };
        let item = tenant_record(tenant_id, &next, sk.clone())?;
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.tenants)
            .set_item(Some(item));
        // A product made before versions has no `v`; `create_product` writes 0.
        let condition = match product.v {
            0 => "attribute_exists(sk) AND (attribute_not_exists(v) OR v = :v)",
            _ => "attribute_exists(sk) AND v = :v",
        };
        let put = put
            .condition_expression(condition)
            .expression_attribute_values(":v", version(product.v));
        if conditional(put.send().await)?.is_some() {
            return Ok(true);
        }
        match self.read_item(&self.tables.tenants, tenant_id, &sk).await? {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound),
        }
    }

    /// Maps a permalink's variant to a product; mapping it again moves it.
    pub async fn put_variant_mapping(
        &self,
        tenant_id: &TenantId,
        mapping: &VariantMapping,
    ) -> Result<(), StoreError> {
        let item = tenant_record(
            tenant_id,
            mapping,
            variant_sk(&mapping.permalink, &mapping.variant),
        )?;
        self.client
            .put_item()
            .table_name(&self.tables.tenants)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Removes a variant mapping; `NotFound` when there is none.
    pub async fn delete_variant_mapping(
        &self,
        tenant_id: &TenantId,
        permalink: &Permalink,
        variant: &Variant,
    ) -> Result<(), StoreError> {
        self.delete_existing(tenant_id, variant_sk(permalink, variant))
            .await
    }

    async fn delete_existing(&self, tenant_id: &TenantId, sk: String) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.tenants)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(sk))
            .condition_expression("attribute_exists(sk)")
            .send()
            .await;
        conditional(result)?.map(drop).ok_or(StoreError::NotFound)
    }

    /// Records the file a product is delivered as; `NotFound` when there is no such product.
    pub async fn set_product_file(
        &self,
        tenant_id: &TenantId,
        product_id: &ProductId,
        file: &crate::domain::ProductFile,
    ) -> Result<(), StoreError> {
        let value = serde_dynamo::to_attribute_value(file)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.tenants)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(product_sk(product_id)))
            .update_expression("SET #file = :file ADD v :v1")
            .condition_expression("attribute_exists(sk)")
            .expression_attribute_values(":v1", n(1))
            .expression_attribute_names("#file", "file")
            .expression_attribute_values(":file", value)
            .send()
            .await;
        conditional(result)?.map(|_| ()).ok_or(StoreError::NotFound)
    }

    /// Deletes a product; `NotFound` when there is none.
    pub async fn delete_product(
        &self,
        tenant_id: &TenantId,
        product_id: &ProductId,
    ) -> Result<(), StoreError> {
        self.delete_existing(tenant_id, product_sk(product_id))
            .await
    }

    /// Suspends or resumes a tenant; `NotFound` when there is none.
    pub async fn set_tenant_status(
        &self,
        tenant_id: &TenantId,
        status: TenantStatus,
    ) -> Result<(), StoreError> {
        let value = match status {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        };
        self.update_tenant(tenant_id, &[("status", s(value))]).await
    }

    /// Replaces the tenant's webhook token hash: the old token stops working with this write.
    pub async fn set_token_hash(
        &self,
        tenant_id: &TenantId,
        token_hash: TokenHash,
    ) -> Result<(), StoreError> {
        self.update_tenant(tenant_id, &[("token_hash", s(token_hash.to_hex()))])
            .await
    }

    /// Removes a permalink mapping; `NotFound` when the tenant has no such mapping (or no tenant exists).
    pub async fn unmap_permalink(
        &self,
        tenant_id: &TenantId,
        permalink: &Permalink,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.tenants)
            .key("tenant_id", s(tenant_id.as_str()))
            .key("sk", s(TENANT_SK))
            .update_expression("REMOVE #m.#p")
            .condition_expression("attribute_exists(#m.#p)")
            .expression_attribute_names("#m", "permalinks")
            .expression_attribute_names("#p", permalink.as_str())
            .send()
            .await;
        conditional(result)?.map(drop).ok_or(StoreError::NotFound)
    }

    /// A tenant's licenses that match `filter`, newest first, at most `limit` of them.
    pub async fn list_licenses(
        &self,
        tenant_id: &TenantId,
        filter: &LicenseFilter,
        limit: usize,
    ) -> Result<Vec<License>, StoreError> {
        // Keys sort by their hash, which says nothing about age: read every license, then filter and sort.
        let mut licenses = Vec::new();
        for item in self
            .query_partition(&self.tables.licenses, tenant_id, LICENSE_SK_PREFIX)
            .await?
        {
            let license: License = self.license_from(item).await?;
            let wanted = filter
                .product_id
                .as_ref()
                .is_none_or(|p| *p == license.product_id)
                && filter
                    .email_status
                    .is_none_or(|status| status == license.email_status)
                && filter.buyer_email.as_ref().is_none_or(|wanted| {
                    wanted
                        .as_str()
                        .eq_ignore_ascii_case(license.buyer_email.as_str())
                });
            if wanted {
                licenses.push(license);
            }
        }
        // Parsed, not compared as text: RFC 3339 strings with different fraction lengths do not sort.
        let created = |l: &License| {
            time::OffsetDateTime::parse(
                &l.created_at,
                &time::format_description::well_known::Rfc3339,
            )
            .ok()
        };
        licenses.sort_by_cached_key(|l| (std::cmp::Reverse(created(l)), l.license_id.clone()));
        licenses.truncate(limit);
        Ok(licenses)
    }

    /// Records the seller's revocation (`Revoked`) or reinstatement (any other status) as a fact of the license
    /// and returns the license as stored; `NotFound` when there is none.
    pub async fn set_license_status(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        status: LicenseStatus,
    ) -> Result<License, StoreError> {
        let kind = if status == LicenseStatus::Revoked {
            FactKind::Revoked
        } else {
            FactKind::Reinstated
        };
        self.record_seller_fact(tenant_id, key_hash, kind).await
    }

    /// Records a seller's action (revoke, reinstate, suspend, resume, extend) as a fact of the license, under the
    /// version it read, and returns the license as stored; `NotFound` when there is none.
    pub async fn record_seller_fact(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        kind: FactKind,
    ) -> Result<License, StoreError> {
        use super::{EventStore, Store, Written};
        let fact = Fact {
            id: crate::domain::random_id("seller")
                .map_err(|e| StoreError::Unavailable(e.to_string()))?,
            at: rfc3339(OffsetDateTime::now_utc()),
            kind,
        };
        for attempt in 0..8 {
            if attempt > 0 {
                super::backoff(attempt.min(5)).await;
            }
            let license = self
                .get_license(tenant_id, key_hash)
                .await?
                .ok_or(StoreError::NotFound)?;
            let mut after = license.clone();
            after.record(fact.clone(), &rfc3339(OffsetDateTime::now_utc()));
            if self.write_facts(&license, &after).await? == Written::Applied {
                return Ok(after);
            }
        }
        Err(StoreError::Unavailable(
            "the license kept changing".to_owned(),
        ))
    }

    /// Maps a permalink slug to a product (`Some`) or removes the mapping (`None`).
    pub async fn set_permalink(
        &self,
        tenant_id: &TenantId,
        permalink: &Permalink,
        product_id: Option<&ProductId>,
    ) -> Result<(), StoreError> {
        let names = HashMap::from([
            ("#m".to_owned(), "permalinks".to_owned()),
            ("#p".to_owned(), permalink.to_string()),
        ]);
        match product_id {
            Some(product_id) => {
                let values = HashMap::from([(":v".to_owned(), s(product_id.as_str()))]);
                self.update_tenant_expr(tenant_id, "SET #m.#p = :v", names, values)
                    .await
            }
            None => {
                self.update_tenant_expr(tenant_id, "REMOVE #m.#p", names, HashMap::new())
                    .await
            }
        }
    }
}

impl Tenant {
    pub fn product(&self, product_id: &ProductId) -> Option<&Product> {
        self.products.get(product_id)
    }
}

/// What `remove_durable_ttls` found (and, unless it was a dry run, changed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TtlRemoval {
    pub licenses: usize,
    pub markers: usize,
}

impl DynamoStore {
    /// Removes the DynamoDB TTL that keystead before issue 22 set on licenses (expiry + 30 days) and on the
    /// markers of sales not seen yet: nothing a license depends on may expire. Idempotent and resumable; with
    /// `dry_run` it only counts.
    pub async fn remove_durable_ttls(
        &self,
        tenant_id: &TenantId,
        dry_run: bool,
    ) -> Result<TtlRemoval, StoreError> {
        let mut removal = TtlRemoval::default();
        for (table, prefix) in [
            (&self.tables.licenses, LICENSE_SK_PREFIX),
            (&self.tables.events, MARKER_SK_PREFIX),
        ] {
            let items = self.query_partition(table, tenant_id, prefix).await?;
            for item in items.iter().filter(|item| item.contains_key("ttl")) {
                let Some(sk) = item.get("sk").cloned() else {
                    continue;
                };
                if !dry_run {
                    let result = self
                        .client
                        .update_item()
                        .table_name(table)
                        .key("tenant_id", s(tenant_id.as_str()))
                        .key("sk", sk)
                        .update_expression("REMOVE #ttl")
                        .condition_expression("attribute_exists(sk)")
                        .expression_attribute_names("#ttl", "ttl")
                        .send()
                        .await;
                    // Gone meanwhile (TTL got there first, or a key replacement moved it): nothing to keep.
                    if conditional(result)?.is_none() {
                        continue;
                    }
                }
                if prefix == LICENSE_SK_PREFIX {
                    removal.licenses += 1;
                } else {
                    removal.markers += 1;
                }
            }
        }
        Ok(removal)
    }

    /// Seals the license keys of `tenant_id` still stored in plaintext (licenses sold before keys were sealed):
    /// each one rewritten only while its plaintext is what was read. How many were (or, with `dry_run`, would be).
    pub async fn seal_plain_keys(
        &self,
        tenant_id: &TenantId,
        dry_run: bool,
    ) -> Result<usize, StoreError> {
        let Some(cipher) = self.cipher.as_ref() else {
            return Err(StoreError::Corrupt(
                "sealing needs the stack's KMS key: set KEYSTEAD_SIGNING_KEY_ID (the stack's SigningKeyArn)".to_owned(),
            ));
        };
        let mut sealed = 0;
        for item in self
            .query_partition(&self.tables.licenses, tenant_id, LICENSE_SK_PREFIX)
            .await?
        {
            let (Some(sk), Some(plain), Some(hash)) = (
                item.get("sk").cloned(),
                item.get("key").and_then(|v| v.as_s().ok()).cloned(),
                item.get("key_hash").and_then(|v| v.as_s().ok()).cloned(),
            ) else {
                continue;
            };
            if !dry_run {
                let key_hash = crate::domain::KeyHash::from_stored(hash);
                let value = cipher.seal(tenant_id, &key_hash, &plain).await?;
                let result = self
                    .client
                    .update_item()
                    .table_name(&self.tables.licenses)
                    .key("tenant_id", s(tenant_id.as_str()))
                    .key("sk", sk)
                    .update_expression("SET #sealed = :sealed REMOVE #key")
                    .condition_expression("#key = :plain")
                    .expression_attribute_names("#sealed", super::dynamo::SEALED_KEY_ATTR)
                    .expression_attribute_names("#key", "key")
                    .expression_attribute_values(":sealed", s(value))
                    .expression_attribute_values(":plain", s(&plain))
                    .send()
                    .await;
                // Replaced or sealed meanwhile: nothing left to seal.
                if conditional(result)?.is_none() {
                    continue;
                }
            }
            sealed += 1;
        }
        Ok(sealed)
    }
}
