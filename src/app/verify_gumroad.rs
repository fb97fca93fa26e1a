//! Gumroad's own license API, answered by keystead: `POST /v2/licenses/verify` with Gumroad's parameters and in
//! Gumroad's shapes, from what each sale's ping carried, so an app moves by changing one base URL.

use serde_json::{Value, json};

use crate::domain::{License, LicenseKey, Permalink, TenantId};
use crate::gumroad::Form;
use crate::storage::{ActivationStore, StoreError, TenantCache};

pub const NOT_FOUND: &str = "That license does not exist for the provided product.";
pub const DISABLED: &str = "This license key has been disabled.";

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Unknown key, another product's key, or a request that names none: Gumroad's one 404.
    #[error("{NOT_FOUND}")]
    NotFound,
    /// A key the seller revoked by hand.
    #[error("{DISABLED}")]
    Disabled,
    #[error(transparent)]
    Storage(#[from] StoreError),
}

/// Gumroad's request: `product_id` (Gumroad's) or `product_permalink`, `license_key`, `increment_uses_count`.
pub struct VerifyRequest {
    pub product_id: Option<String>,
    pub product_permalink: Option<Permalink>,
    pub license_key: Option<String>,
    /// Gumroad counts unless the parameter is the string `false`.
    pub increment: bool,
}

impl VerifyRequest {
    pub fn from_form(form: &Form) -> Self {
        Self {
            product_id: form.get_nonempty("product_id").map(str::to_owned),
            product_permalink: form
                .get_nonempty("product_permalink")
                .and_then(|raw| Permalink::parse(raw).ok()),
            license_key: form.get_nonempty("license_key").map(str::to_owned),
            increment: form.get_nonempty("increment_uses_count") != Some("false"),
        }
    }
}

/// Whether the license was sold as the product the request names.
fn same_product(license: &License, request: &VerifyRequest) -> bool {
    let purchase = license.gumroad.as_ref();
    let by_id = request.product_id.as_deref().is_some_and(|id| {
        license.gumroad_product_id.as_deref() == Some(id)
            || purchase.and_then(|p| p.product_id.as_deref()) == Some(id)
    });
    let by_permalink = request.product_permalink.as_ref().is_some_and(|slug| {
        license.gumroad_permalink.as_ref() == Some(slug)
            || purchase
                .and_then(|p| p.permalink.as_deref())
                .is_some_and(|p| p == slug.as_str())
    });
    by_id || by_permalink
}

/// `200 {"success":true,"uses":N,"purchase":{…}}` for a license of the named product, counting the use unless asked
/// not to (one atomic update); Gumroad's 404 for a tenant that does not answer Gumroad's verify.
pub async fn verify(
    store: &dyn ActivationStore,
    tenants: &TenantCache,
    tenant: &str,
    request: &VerifyRequest,
) -> Result<Value, VerifyError> {
    let tenant_id = TenantId::parse(tenant).map_err(|_| VerifyError::NotFound)?;
    let answers = tenants
        .tenant(store, &tenant_id)
        .await?
        .is_some_and(|tenant| tenant.answers_gumroad_verify());
    if !answers {
        return Err(VerifyError::NotFound);
    }
    let key = request
        .license_key
        .as_deref()
        .filter(|k| k.len() <= 200)
        .ok_or(VerifyError::NotFound)?;
    let key = LicenseKey::from_string(key.to_owned());
    let license = store
        .license_to_verify(&tenant_id, &key.hash())
        .await?
        .ok_or(VerifyError::NotFound)?;
    if !same_product(&license, request) {
        return Err(VerifyError::NotFound);
    }
    if license.disabled {
        return Err(VerifyError::Disabled);
    }
    let uses = if request.increment {
        store
            .count_gumroad_use(&tenant_id, &license.key_hash)
            .await?
            .ok_or(VerifyError::NotFound)?
    } else {
        license.uses
    };
    Ok(json!({
        "success": true,
        "uses": uses,
        "purchase": purchase(&license, &key),
    }))
}

/// Gumroad's `variants` string: `"(Team)"`, `"(Team, Studio)"`, or `""`.
fn variants_text(license: &License) -> String {
    let names: Vec<&str> = license
        .gumroad
        .iter()
        .flat_map(|p| p.variants.iter())
        .map(|v| v.name.as_str())
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!("({})", names.join(", "))
    }
}

/// The purchase as Gumroad's license API describes it, built from what the sale's ping carried.
pub fn purchase(license: &License, key: &LicenseKey) -> Value {
    let p = license.gumroad.clone().unwrap_or_default();
    let created_at = p
        .sale_timestamp
        .clone()
        .unwrap_or_else(|| license.created_at.clone());
    json!({
        "seller_id": p.seller_id,
        "product_id": p.product_id.or_else(|| license.gumroad_product_id.clone()),
        "product_name": p.product_name.unwrap_or_else(|| license.product_name.clone()),
        "permalink": p.permalink.or_else(|| license.gumroad_permalink.as_ref().map(ToString::to_string)),
        "product_permalink": p.product_permalink,
        "email": license.buyer_email.as_str(),
        "price": p.price,
        "currency": p.currency.unwrap_or_else(|| "usd".to_owned()),
        "quantity": license.quantity,
        "order_number": p.order_number.and_then(|n| n.parse::<u64>().ok()),
        "sale_id": license.sale_id,
        "sale_timestamp": created_at,
        "full_name": p.full_name.or_else(|| license.buyer_name.clone()),
        "subscription_id": license.subscription_id,
        "variants": variants_text(license),
        "license_key": key.expose(),
        "is_gift_receiver_purchase": p.is_gift_receiver_purchase,
        "test": p.test,
        "id": license.sale_id,
        "created_at": created_at,
        "custom_fields": p.custom_fields.iter().map(|(name, value)| format!("{name}: {value}")).collect::<Vec<_>>(),
        "refunded": license.refunded,
        "disputed": license.chargebacked,
        "chargebacked": license.chargebacked,
        "subscription_ended_at": license.subscription_ended_at,
        "subscription_cancelled_at": license.subscription_cancelled_at,
        "subscription_failed_at": license.subscription_failed_at,
    })
}
