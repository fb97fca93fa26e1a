//! The license API's domain: find a key (by its SHA-256, scoped to the tenant and optionally the product),
//! tell whether it is valid, and take or free activation seats.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::domain::{
    Activation, License, LicenseKey, LicenseStatus, Product, ProductId, TenantId, rfc3339,
};
use crate::storage::{ActivateResult, ActivationStore, Store, StoreError};

type Products = Arc<BTreeMap<ProductId, Product>>;

/// A tenant's products as last read, kept for a short while so that a license check costs one read: a
/// product's entitlements are read from here, so a change reaches every license within `ttl`.
pub struct ProductCache {
    ttl: Duration,
    entries: Mutex<HashMap<TenantId, (Instant, Products)>>,
}

impl ProductCache {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, tenant_id: &TenantId) -> Option<Products> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(tenant_id)
            .filter(|(read_at, _)| read_at.elapsed() < self.ttl)
            .map(|(_, products)| Arc::clone(products))
    }

    /// The tenant's products (none for an unknown tenant), from the cache or one read.
    pub async fn products(
        &self,
        store: &dyn Store,
        tenant_id: &TenantId,
    ) -> Result<Products, StoreError> {
        if let Some(products) = self.cached(tenant_id) {
            return Ok(products);
        }
        let products: Products = Arc::new(
            store
                .load_tenant(tenant_id)
                .await?
                .map(|tenant| tenant.products)
                .unwrap_or_default(),
        );
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(tenant_id.clone(), (Instant::now(), Arc::clone(&products)));
        }
        Ok(products)
    }
}

impl Default for ProductCache {
    fn default() -> Self {
        Self::new(Self::DEFAULT_TTL)
    }
}

/// The JSON body of every license API call.
#[derive(Debug, Deserialize)]
pub struct LicenseRequest {
    pub key: Option<String>,
    pub product_id: Option<String>,
    pub machine_id: Option<String>,
    pub label: Option<String>,
}

/// Reads a license API body: one JSON object. The message names what is wrong, fit to show the client.
pub fn parse_request(body: &[u8]) -> Result<LicenseRequest, String> {
    let malformed = |e: serde_json::Error| format!("Malformed JSON body: {e}");
    // The whole body is read as JSON first: the typed read skips fields it does not know without checking them
    // (fuzzing found invalid UTF-8, lone surrogates and out-of-range numbers accepted there), and would also take
    // an array of the fields in order (`["key", null, "machine", null]`).
    let value: serde_json::Value = serde_json::from_slice(body).map_err(malformed)?;
    if !value.is_object() {
        return Err("Malformed JSON body: expected a JSON object".to_owned());
    }
    // Typed from the bytes rather than from `value`, so that a repeated field is refused instead of the last winning.
    serde_json::from_slice(body).map_err(malformed)
}

#[derive(Debug, thiserror::Error)]
pub enum LicenseApiError {
    /// Unknown key, or a key of another tenant or product: one answer for all.
    #[error("License not found")]
    NotFound,
    #[error("License {}", .0.as_str())]
    NotActive(LicenseStatus),
    #[error("Activation limit reached")]
    LimitReached,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// A machine id: 1–128 printable characters (whatever the seller's app derives from the machine).
fn machine_id(raw: Option<&str>) -> Result<String, LicenseApiError> {
    let raw = raw
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            LicenseApiError::Invalid("Missing required field 'machine_id'".to_owned())
        })?;
    if raw.chars().count() > 128 || raw.chars().any(char::is_control) {
        return Err(LicenseApiError::Invalid(
            "Invalid machine_id: use 1 to 128 printable characters".to_owned(),
        ));
    }
    Ok(raw.to_owned())
}

/// The status a license has right now: an active license past its expiry is expired.
pub fn effective_status(license: &License, now: OffsetDateTime) -> LicenseStatus {
    let expired = license
        .expires_at
        .as_deref()
        .is_some_and(|at| at <= rfc3339(now).as_str());
    match license.status {
        LicenseStatus::Active if expired => LicenseStatus::Expired,
        status => status,
    }
}

/// Finds the license a request names, or `NotFound` whatever the reason.
pub async fn find(
    store: &dyn ActivationStore,
    raw_tenant_id: &str,
    request: &LicenseRequest,
) -> Result<(TenantId, License), LicenseApiError> {
    let key = request
        .key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| LicenseApiError::Invalid("Missing required field 'key'".to_owned()))?;
    if key.len() > 200 {
        return Err(LicenseApiError::NotFound);
    }
    let product_id = match request.product_id.as_deref() {
        Some(raw) => Some(ProductId::parse(raw).map_err(|_| LicenseApiError::NotFound)?),
        None => None,
    };
    let tenant_id = TenantId::parse(raw_tenant_id).map_err(|_| LicenseApiError::NotFound)?;
    let key = LicenseKey::from_string(key.to_owned());
    let key_hash = key.hash();
    let mut license = store
        .get_license(&tenant_id, &key_hash)
        .await?
        .ok_or(LicenseApiError::NotFound)?;
    let same_key = license.key_hash.as_bytes().ct_eq(key_hash.as_bytes());
    if !bool::from(same_key) {
        return Err(LicenseApiError::NotFound);
    }
    license = with_due_change(store, license).await?;
    let same_product = product_id.as_ref().is_none_or(|p| *p == license.product_id);
    if !same_product {
        return Err(LicenseApiError::NotFound);
    }
    Ok((tenant_id, license))
}

/// A downgrade waiting for the end of the paid period is applied by the first read after it: no scheduler.
async fn with_due_change(
    store: &dyn ActivationStore,
    license: License,
) -> Result<License, StoreError> {
    let now = rfc3339(OffsetDateTime::now_utc());
    let Some(change) = license.due_change(&now).cloned() else {
        return Ok(license);
    };
    if store.apply_due_change(&license, &change).await? {
        let mut license = license;
        license.apply_plan(&change);
        return Ok(license);
    }
    // Someone else applied (or replaced) it first: read what they left.
    store
        .get_license(&license.tenant_id, &license.key_hash)
        .await?
        .ok_or(StoreError::NotFound)
}

#[derive(Debug, serde::Serialize)]
pub struct Validation {
    pub valid: bool,
    pub status: &'static str,
    pub product_id: ProductId,
    pub expires_at: Option<String>,
    pub activation_limit: u32,
    pub activations: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated: Option<bool>,
    /// What the license's product unlocks, as the product says now.
    pub entitlements: Vec<String>,
}

fn validation(license: &License, activated: Option<bool>, products: &Products) -> Validation {
    let status = effective_status(license, OffsetDateTime::now_utc());
    Validation {
        entitlements: products
            .get(&license.product_id)
            .map(|product| product.entitlements.clone())
            .unwrap_or_default(),
        valid: status == LicenseStatus::Active,
        status: status.as_str(),
        product_id: license.product_id.clone(),
        expires_at: license.expires_at.clone(),
        activation_limit: license.activation_limit,
        activations: license.activations,
        activated,
    }
}

/// The license a request names, and its tenant's products, read side by side.
async fn find_with_products(
    store: &dyn ActivationStore,
    products: &ProductCache,
    tenant: &str,
    request: &LicenseRequest,
) -> Result<(TenantId, License, Products), LicenseApiError> {
    let tenant_id = TenantId::parse(tenant).map_err(|_| LicenseApiError::NotFound)?;
    let (found, catalog) = tokio::join!(
        find(store, tenant, request),
        products.products(store, &tenant_id)
    );
    let (tenant_id, license) = found?;
    Ok((tenant_id, license, catalog?))
}

pub async fn validate(
    store: &dyn ActivationStore,
    products: &ProductCache,
    tenant: &str,
    request: &LicenseRequest,
) -> Result<Validation, LicenseApiError> {
    let (tenant_id, license, catalog) =
        find_with_products(store, products, tenant, request).await?;
    let activated = match request.machine_id.as_deref() {
        Some(raw) => {
            let machine = machine_id(Some(raw))?;
            Some(
                store
                    .activation(&tenant_id, &license.key_hash, &machine)
                    .await?
                    .is_some(),
            )
        }
        None => None,
    };
    Ok(validation(&license, activated, &catalog))
}

/// Takes a seat for a machine; activating a machine that already holds one is free and idempotent.
pub async fn activate(
    store: &dyn ActivationStore,
    products: &ProductCache,
    tenant: &str,
    request: &LicenseRequest,
) -> Result<Validation, LicenseApiError> {
    let machine = machine_id(request.machine_id.as_deref())?;
    let label = request
        .label
        .as_deref()
        .map(crate::gumroad::one_line)
        .filter(|l| !l.is_empty());
    let (tenant_id, license, catalog) =
        find_with_products(store, products, tenant, request).await?;
    let now = OffsetDateTime::now_utc();
    let status = effective_status(&license, now);
    if status != LicenseStatus::Active {
        return Err(LicenseApiError::NotActive(status));
    }
    let activation = Activation {
        machine_id: machine,
        label,
        activated_at: rfc3339(now),
    };
    let result = store
        .activate(&tenant_id, &license.key_hash, &activation, &rfc3339(now))
        .await?;
    let activations = match result {
        ActivateResult::Activated { activations } => activations,
        ActivateResult::AlreadyActive => license.activations,
        ActivateResult::LimitReached => return Err(LicenseApiError::LimitReached),
        ActivateResult::NotActive(status) => return Err(LicenseApiError::NotActive(status)),
        ActivateResult::NotFound => return Err(LicenseApiError::NotFound),
    };
    let mut view = validation(&license, Some(true), &catalog);
    view.activations = activations;
    Ok(view)
}

#[derive(Debug, serde::Serialize)]
pub struct Deactivation {
    pub deactivated: bool,
    pub activations: u32,
}

/// Frees a machine's seat; `deactivated: false` when it held none.
pub async fn deactivate(
    store: &dyn ActivationStore,
    tenant: &str,
    request: &LicenseRequest,
) -> Result<Deactivation, LicenseApiError> {
    let machine = machine_id(request.machine_id.as_deref())?;
    let (tenant_id, license) = find(store, tenant, request).await?;
    let deactivated = store
        .deactivate(&tenant_id, &license.key_hash, &machine)
        .await?;
    let activations = if deactivated {
        license.activations.saturating_sub(1)
    } else {
        license.activations
    };
    Ok(Deactivation {
        deactivated,
        activations,
    })
}
