//! Releases (licenses table, `RELEASE#<product>#<version>#<platform>#<arch>`): the CLI writes them, the function
//! only reads them, one query per product, kept a short while per process (`ReleaseCache`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::StoreError;
use super::dynamo::DynamoStore;
use super::sdk::{Item, conditional, from_item, s, to_item, unavailable};
use super::table::licenses::{release_prefix, release_sk};
use crate::domain::releases::Release;
use crate::domain::{ProductId, TenantId};

#[async_trait]
pub trait ReleaseStore: Send + Sync {
    /// Every release of a product, drafts and yanked ones included (the caller filters), one query.
    async fn releases(
        &self,
        tenant_id: &TenantId,
        product_id: &ProductId,
    ) -> Result<Vec<Release>, StoreError>;
}

fn release_item(tenant_id: &TenantId, release: &Release) -> Result<Item, StoreError> {
    let mut item = to_item(release, Some(release_sk(release)))?;
    item.insert("tenant_id".to_owned(), s(tenant_id.as_str()));
    Ok(item)
}

#[async_trait]
impl ReleaseStore for DynamoStore {
    async fn releases(
        &self,
        tenant_id: &TenantId,
        product_id: &ProductId,
    ) -> Result<Vec<Release>, StoreError> {
        let mut releases = Vec::new();
        let mut start_key = None;
        loop {
            // Eventually consistent: a release published a second ago may show on the next check.
            let page = self
                .client
                .query()
                .table_name(&self.tables.licenses)
                .key_condition_expression("tenant_id = :t AND begins_with(sk, :p)")
                .expression_attribute_values(":t", s(tenant_id.as_str()))
                .expression_attribute_values(":p", s(release_prefix(product_id.as_str())))
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                releases.push(from_item(item.clone())?);
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                return Ok(releases);
            }
        }
    }
}

impl DynamoStore {
    /// Records a new release; `AlreadyExists` when that version is already there for the platform and arch.
    pub async fn add_release(
        &self,
        tenant_id: &TenantId,
        release: &Release,
    ) -> Result<(), StoreError> {
        self.put_new(&self.tables.licenses, release_item(tenant_id, release)?)
            .await
    }

    /// Writes a release over itself (published, yanked): only while it exists.
    pub async fn save_release(
        &self,
        tenant_id: &TenantId,
        release: &Release,
    ) -> Result<(), StoreError> {
        let written = conditional(
            self.client
                .put_item()
                .table_name(&self.tables.licenses)
                .set_item(Some(release_item(tenant_id, release)?))
                .condition_expression("attribute_exists(sk)")
                .send()
                .await,
        )?;
        written.map(|_| ()).ok_or(StoreError::NotFound)
    }
}

type Entry = (Instant, Arc<Vec<Release>>);

/// Each product's releases as last read, for a short while per process: a feed then costs the license's read.
pub struct ReleaseCache {
    ttl: Duration,
    entries: Mutex<HashMap<(TenantId, ProductId), Entry>>,
}

impl Default for ReleaseCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_TTL)
    }
}

impl ReleaseCache {
    /// A release published (or yanked) reaches every instance within this long.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub async fn releases(
        &self,
        store: &dyn ReleaseStore,
        tenant_id: &TenantId,
        product_id: &ProductId,
    ) -> Result<Arc<Vec<Release>>, StoreError> {
        let key = (tenant_id.clone(), product_id.clone());
        let cached = self.entries.lock().ok().and_then(|entries| {
            entries
                .get(&key)
                .filter(|(read_at, _)| read_at.elapsed() < self.ttl)
                .map(|(_, releases)| Arc::clone(releases))
        });
        if let Some(releases) = cached {
            return Ok(releases);
        }
        let releases = Arc::new(store.releases(tenant_id, product_id).await?);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key, (Instant::now(), Arc::clone(&releases)));
        }
        Ok(releases)
    }
}
