//! What every license API call shares: its request, its errors, finding a key (by its SHA-256, scoped to the
//! tenant and optionally the product), a license's status now, and signing the lease an app keeps to work
//! offline. The calls themselves are `validate`, `activate` and `deactivate`.

use std::sync::Arc;
use std::time::Duration;

use keystead_verify::LeaseClaims;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use crate::domain::effective_status;
use crate::domain::{
    Activation, License, LicenseKey, LicenseStatus, Product, ProductId, Tenant, TenantId, rfc3339,
};
use crate::signing::{Keyring, Signer, SigningError};
use crate::storage::{ActivationStore, Backend, StoreError, TenantCache};

/// Everything a license check reads besides the request: the store, tenants as last read, and the signing keys.
#[derive(Clone, Copy)]
pub struct Checker<'a> {
    pub store: &'a dyn Backend,
    pub tenants: &'a TenantCache,
    pub keyring: &'a Keyring,
}

/// The JSON body of every license API call.
#[derive(Debug, Default)]
pub struct LicenseRequest {
    pub key: Option<String>,
    pub product_id: Option<String>,
    pub machine_id: Option<String>,
    pub label: Option<String>,
    /// Echoed in the lease: a client sends a fresh one to defeat replayed answers.
    pub nonce: Option<String>,
}

/// Reads a license API body: one JSON object. The message names what is wrong, fit to show the client.
///
/// One pass over the body: `LicenseRequest`'s own `Deserialize` takes only an object, refuses a repeated field
/// (instead of the last winning), and reads every field it does not know as checked JSON (fuzzing found invalid
/// UTF-8, lone surrogates and out-of-range numbers accepted where unknown fields were skipped unread).
pub fn parse_request(body: &[u8]) -> Result<LicenseRequest, String> {
    serde_json::from_slice(body).map_err(|typed| refusal(body, &typed))
}

/// Why a body was refused, in the words it always had: what makes it not JSON at all, else that it is not an
/// object, else what the typed read found.
fn refusal(body: &[u8], typed: &serde_json::Error) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Err(not_json) => format!("Malformed JSON body: {not_json}"),
        Ok(value) if !value.is_object() => "Malformed JSON body: expected a JSON object".to_owned(),
        Ok(_) => format!("Malformed JSON body: {typed}"),
    }
}

impl<'de> Deserialize<'de> for LicenseRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RequestFields)
    }
}

struct RequestFields;

impl<'de> serde::de::Visitor<'de> for RequestFields {
    type Value = LicenseRequest;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<LicenseRequest, A::Error> {
        const FIELDS: [&str; 5] = ["key", "product_id", "machine_id", "label", "nonce"];
        let mut request = LicenseRequest::default();
        let mut seen = [false; FIELDS.len()];
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let Some(at) = FIELDS.iter().position(|field| *field == name) else {
                // Read, not skipped: a field the API ignores must still be valid JSON.
                map.next_value::<serde_json::Value>()?;
                continue;
            };
            if std::mem::replace(&mut seen[at], true) {
                return Err(serde::de::Error::duplicate_field(FIELDS[at]));
            }
            let value = map.next_value::<Option<String>>()?;
            *[
                &mut request.key,
                &mut request.product_id,
                &mut request.machine_id,
                &mut request.label,
                &mut request.nonce,
            ][at] = value;
        }
        Ok(request)
    }
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
    /// More new machines in an hour than the license's budget (a leaked key being spread).
    #[error("Too many new machines for this license; try again within the hour")]
    TooManyNewMachines,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// The tenant's signing key could not be opened (KMS unreachable): no lease rather than a broken one.
    #[error(transparent)]
    Signing(#[from] SigningError),
}

/// A nonce: at most 128 printable characters.
pub(crate) fn nonce(raw: Option<&str>) -> Result<Option<String>, LicenseApiError> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.chars().count() > 128 || raw.chars().any(char::is_control) => {
            Err(LicenseApiError::Invalid(
                "Invalid nonce: use at most 128 printable characters".to_owned(),
            ))
        }
        Some(raw) => Ok(Some(raw.to_owned())),
    }
}

/// A machine id: 1–128 printable characters (whatever the seller's app derives from the machine).
pub(crate) fn machine_id(raw: Option<&str>) -> Result<String, LicenseApiError> {
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

/// Finds the license a request's key names, or `NotFound` whatever the reason; the product is checked with the
/// tenant (`find_with_tenant`).
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
    let tenant_id = TenantId::parse(raw_tenant_id).map_err(|_| LicenseApiError::NotFound)?;
    let key = LicenseKey::from_string(key.to_owned());
    let key_hash = key.hash();
    let mut license = store
        .license_to_check(&tenant_id, &key_hash)
        .await?
        .ok_or(LicenseApiError::NotFound)?;
    let same_key = license
        .key_hash
        .as_str()
        .as_bytes()
        .ct_eq(key_hash.as_str().as_bytes());
    if !bool::from(same_key) {
        return Err(LicenseApiError::NotFound);
    }
    license = with_due_change(store, license).await?;
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
        .license_to_check(&license.tenant_id, &license.key_hash)
        .await?
        .ok_or(StoreError::NotFound)
}

/// Fields in the order of their names: the answer is written as it is, in the order the README shows.
#[derive(Debug, serde::Serialize)]
pub struct Validation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated: Option<bool>,
    pub activation_limit: u32,
    pub activations: u32,
    /// What the license's product unlocks, as the product says now.
    pub entitlements: Vec<String>,
    pub expires_at: Option<String>,
    /// The signed answer an app can check offline; only for an active license and a machine holding a seat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    pub product_id: ProductId,
    /// When the machine's seat ends unless renewed (products with a seat lease).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seat_expires_at: Option<String>,
    pub status: &'static str,
    pub valid: bool,
}

/// A license together with its tenant as last read, and the license's product if it still exists.
pub(crate) struct Found {
    pub(crate) license: License,
    pub(crate) tenant: Arc<Tenant>,
}

impl Found {
    fn product(&self) -> Option<&Product> {
        self.tenant.products.get(&self.license.product_id)
    }

    pub(crate) fn seat_lease(&self) -> Option<Duration> {
        self.product()
            .and_then(|p| p.seat_lease_seconds)
            .map(Duration::from_secs)
    }

    pub(crate) fn validation(&self, activated: Option<bool>, now: OffsetDateTime) -> Validation {
        let license = &self.license;
        let status = effective_status(license, now);
        Validation {
            valid: status == LicenseStatus::Active,
            status: status.as_str(),
            product_id: license.product_id.clone(),
            expires_at: license.expires_at.clone(),
            activation_limit: license.activation_limit,
            activations: license.activations,
            activated,
            entitlements: self
                .product()
                .map(|product| product.entitlements.clone())
                .unwrap_or_default(),
            seat_expires_at: None,
            lease: None,
        }
    }
}

/// The seat `machine` holds on the license the request's key names, read beside the license itself (so that a
/// call from a machine reads both in the time of one); `None` without a machine, or for what names no license
/// (the license's own read answers that).
pub(crate) async fn seat_of(
    store: &dyn Backend,
    tenant: &str,
    request: &LicenseRequest,
    machine: Option<&str>,
) -> Result<Option<Activation>, StoreError> {
    let (Ok(tenant_id), Some(key), Some(machine)) =
        (TenantId::parse(tenant), request.key.as_deref(), machine)
    else {
        return Ok(None);
    };
    let key_hash = LicenseKey::from_string(key.to_owned()).hash();
    store.activation(&tenant_id, &key_hash, machine).await
}

/// Whether the request's `product_id` takes this license: the same product or a tier of it (see
/// `Tenant::same_product_family`); another product's license is `NotFound`, like an unknown key. The product is
/// required where the seller sells more than one: without it, an app would take a license of any of them.
fn product_accepted(
    tenant: &Tenant,
    license: &License,
    raw: Option<&str>,
) -> Result<(), LicenseApiError> {
    let Some(raw) = raw else {
        return if tenant.products.len() > 1 {
            Err(LicenseApiError::Invalid(
                "Missing required field 'product_id': this seller sells more than one product"
                    .to_owned(),
            ))
        } else {
            Ok(())
        };
    };
    let named = ProductId::parse(raw).map_err(|_| LicenseApiError::NotFound)?;
    if tenant.same_product_family(&named, &license.product_id) {
        Ok(())
    } else {
        Err(LicenseApiError::NotFound)
    }
}

/// The license a request names and its tenant, read side by side (the tenant usually from the cache).
pub(crate) async fn find_with_tenant(
    checker: Checker<'_>,
    tenant: &str,
    request: &LicenseRequest,
) -> Result<Found, LicenseApiError> {
    let tenant_id = TenantId::parse(tenant).map_err(|_| LicenseApiError::NotFound)?;
    let (found, tenant) = tokio::join!(
        find(checker.store, tenant, request),
        checker.tenants.tenant(checker.store, &tenant_id)
    );
    let (_, license) = found?;
    let tenant = tenant?.ok_or(LicenseApiError::NotFound)?;
    product_accepted(&tenant, &license, request.product_id.as_deref())?;
    Ok(Found { license, tenant })
}

pub(crate) fn unix_to_rfc3339(at: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(at).ok().map(rfc3339)
}

/// Signs the lease for a machine holding a seat: it ends with the seat (seat leases) or after the product's token
/// lifetime, and never after the license itself.
pub(crate) fn lease(
    signer: &Signer,
    found: &Found,
    view: &Validation,
    machine_id: &str,
    seat_until: Option<i64>,
    nonce: Option<String>,
    now: OffsetDateTime,
) -> Result<String, LicenseApiError> {
    let iat = now.unix_timestamp();
    let ttl = found
        .product()
        .and_then(|p| p.token_ttl_seconds)
        .unwrap_or(Product::DEFAULT_TOKEN_TTL_SECONDS);
    let mut exp =
        seat_until.unwrap_or_else(|| iat.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
    if let Some(license_end) = found
        .license
        .expires_at
        .as_deref()
        .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
    {
        exp = exp.min(license_end.unix_timestamp());
    }
    let claims = LeaseClaims {
        iss: found.tenant.tenant_id.to_string(),
        sub: found.license.license_id.to_string(),
        product_id: found.license.product_id.to_string(),
        machine_id: machine_id.to_owned(),
        status: view.status.to_owned(),
        entitlements: view.entitlements.clone(),
        license_expires_at: found.license.expires_at.clone(),
        iat,
        exp,
        nonce,
    };
    signer.sign(&claims).map_err(LicenseApiError::from)
}

/// The tenant's signing key, opened before anything is written: if KMS cannot be reached, nothing changes.
pub(crate) async fn signer(
    checker: Checker<'_>,
    found: &Found,
) -> Result<Arc<Signer>, LicenseApiError> {
    Ok(checker
        .keyring
        .current(checker.store, checker.tenants, Arc::clone(&found.tenant))
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader before it was one pass: the whole body as JSON, then as an object, then field by field with
    /// serde's derived reader.
    fn in_two_passes(body: &[u8]) -> Result<[Option<String>; 5], String> {
        #[derive(Deserialize)]
        struct Fields {
            key: Option<String>,
            product_id: Option<String>,
            machine_id: Option<String>,
            label: Option<String>,
            nonce: Option<String>,
        }
        let malformed = |e: serde_json::Error| format!("Malformed JSON body: {e}");
        let value: serde_json::Value = serde_json::from_slice(body).map_err(malformed)?;
        if !value.is_object() {
            return Err("Malformed JSON body: expected a JSON object".to_owned());
        }
        let f: Fields = serde_json::from_slice(body).map_err(malformed)?;
        Ok([f.key, f.product_id, f.machine_id, f.label, f.nonce])
    }

    /// The one-pass read accepts exactly what the two passes accepted, with the same fields, and refuses the rest
    /// with the same message.
    #[test]
    fn one_pass_reads_what_two_passes_read() {
        let bodies: [&[u8]; 17] = [
            br#"{"key": "K", "product_id": "p", "machine_id": "m", "label": "l", "nonce": "n"}"#,
            br#" {"key": "K", "app": {"v": [1, 2.5, null, {"x": "\u00e9"}]}, "label": null} "#,
            br#"{"k\u0065y": "K", "nonce": "a\"b"}"#,
            br#"{}"#,
            br#"{"key": "a", "key": "b"}"#,
            br#"{"key": null, "key": "b"}"#,
            br#"{"key": "a", "key": 5}"#,
            br#"{"other": 1, "other": 2, "key": "K"}"#,
            br#"["K", null, "m", null]"#,
            br#"{"key": "K", "label2": "\udeee"}"#,
            br#"{"key": "K", "build": 475.8e5555444}"#,
            b"{\"key\": \"K\", \"os\": \"ma\x8b\"}",
            br#"{"key": 5}"#,
            br#"{"key": "K"} x"#,
            br#"{"key": "K""#,
            br#"null"#,
            br#""#,
        ];
        let mut accepted = 0;
        for body in bodies {
            let one =
                parse_request(body).map(|r| [r.key, r.product_id, r.machine_id, r.label, r.nonce]);
            accepted += usize::from(one.is_ok());
            assert_eq!(
                one,
                in_two_passes(body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(accepted, 5);
    }
}
