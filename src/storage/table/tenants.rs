//! The tenants table: the tenant (`TENANT`), its products (`PRODUCT#<id>`) and their variant mappings
//! (`VARIANT#…`), its signing keys (`SIGNING_KEY#<kid>`) and its sealed portal MAC key.

pub(crate) const TENANT_SK: &str = "TENANT";
pub(crate) const PRODUCT_SK_PREFIX: &str = "PRODUCT#";
pub(crate) const VARIANT_SK_PREFIX: &str = "VARIANT#";
pub(crate) const SIGNING_KEY_SK_PREFIX: &str = "SIGNING_KEY#";
pub(crate) const MAC_KEY_SK: &str = "MAC_KEY#portal-hmac";
/// A webhook endpoint (`WEBHOOK#<endpoint id>`), issue 25.
pub(crate) const WEBHOOK_SK_PREFIX: &str = "WEBHOOK#";

pub(crate) fn webhook_sk(endpoint_id: &str) -> String {
    format!("{WEBHOOK_SK_PREFIX}{endpoint_id}")
}
