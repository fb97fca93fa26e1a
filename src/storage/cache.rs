//! Tenants as last read, kept for a short while per process: a license check then costs one read (the license),
//! and a change to a tenant (its products' entitlements, a rotated signing key) reaches every instance within
//! the cache's lifetime.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Store, StoreError};
use crate::domain::{Tenant, TenantId};

type Entry = (Instant, Option<Arc<Tenant>>);

pub struct TenantCache {
    ttl: Duration,
    entries: Mutex<HashMap<TenantId, Entry>>,
}

impl TenantCache {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, tenant_id: &TenantId) -> Option<Option<Arc<Tenant>>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(tenant_id)
            .filter(|(read_at, _)| read_at.elapsed() < self.ttl)
            .map(|(_, tenant)| tenant.clone())
    }

    /// The tenant with its products and keys (`None` for an unknown tenant), from the cache or one read.
    pub async fn tenant(
        &self,
        store: &dyn Store,
        tenant_id: &TenantId,
    ) -> Result<Option<Arc<Tenant>>, StoreError> {
        if let Some(tenant) = self.cached(tenant_id) {
            return Ok(tenant);
        }
        let tenant = store.load_tenant(tenant_id).await?.map(Arc::new);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(tenant_id.clone(), (Instant::now(), tenant.clone()));
        }
        Ok(tenant)
    }

    /// Drops what is known of a tenant: the next look-up reads it again.
    pub fn forget(&self, tenant_id: &TenantId) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(tenant_id);
        }
    }
}

impl Default for TenantCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_TTL)
    }
}
