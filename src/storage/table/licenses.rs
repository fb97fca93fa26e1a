//! The licenses table: licenses (`LICENSE#<key hash>`), their machines (`ACTIVATION#<key hash>#<machine>`), and
//! the pointers that find a license by buyer address (`EMAIL#<address hash>#<key hash>`), by subscription
//! (`SUBSCRIPTION#<id>`, set once) and by a replaced key (`MOVED#<old hash>`).

use crate::domain::{Email, KeyHash, License, LicenseStatus, sha256_hex};
use crate::storage::sdk::{Item, s};

pub(crate) const LICENSE_SK_PREFIX: &str = "LICENSE#";

/// A license item's history (`License::facts`): a check reads the state derived from it, stored beside it.
pub(crate) const FACTS_ATTR: &str = "facts";

/// Gumroad's description of the sale (`License::gumroad`): only the Gumroad-compatible verify answers with it.
pub(crate) const GUMROAD_PURCHASE_ATTR: &str = "gumroad";

pub(crate) fn license_sk(key_hash: &KeyHash) -> String {
    format!("{LICENSE_SK_PREFIX}{key_hash}")
}

pub(crate) fn subscription_sk(subscription_id: &str) -> String {
    format!("SUBSCRIPTION#{subscription_id}")
}

pub(crate) fn activation_sk(key_hash: &KeyHash, machine_id: &str) -> String {
    format!("ACTIVATION#{key_hash}#{machine_id}")
}

pub(crate) fn moved_sk(old_hash: &KeyHash) -> String {
    format!("MOVED#{old_hash}")
}

/// The pointer prefix of a buyer's licenses: `EMAIL#<sha256 of the lower-cased address>#`.
pub(crate) fn email_prefix(email: &Email) -> String {
    format!(
        "EMAIL#{}#",
        sha256_hex(&email.as_str().to_ascii_lowercase())
    )
}

/// The pointer that makes `license` findable by its buyer's address.
pub(crate) fn email_pointer(license: &License) -> Item {
    let mut item = Item::new();
    item.insert("tenant_id".into(), s(license.tenant_id.as_str()));
    item.insert(
        "sk".into(),
        s(format!(
            "{}{}",
            email_prefix(&license.buyer_email),
            license.key_hash
        )),
    );
    item.insert("key_hash".into(), s(&license.key_hash));
    item
}

/// The key hash a pointer (or a payment) names.
pub(crate) fn key_hash_of(item: &Item) -> Option<KeyHash> {
    item.get("key_hash")
        .and_then(|v| v.as_s().ok())
        .map(KeyHash::from_stored)
}

/// The status a license item read back from a failed condition has at `now`: expired when past its expiry.
pub(crate) fn status_at(item: &Item, now: &str) -> LicenseStatus {
    let status = item
        .get("status")
        .and_then(|v| v.as_s().ok())
        .and_then(|status| LicenseStatus::parse(status))
        .unwrap_or(LicenseStatus::Revoked);
    let expired = item
        .get("expires_at")
        .and_then(|v| v.as_s().ok())
        .is_some_and(|at| at.as_str() <= now);
    match status {
        LicenseStatus::Active if expired => LicenseStatus::Expired,
        other => other,
    }
}

/// A product's releases (issue 26): `RELEASE#<product>#`, then `<version>#<platform>#<arch>`.
pub(crate) fn release_prefix(product_id: &str) -> String {
    format!("RELEASE#{product_id}#")
}

pub(crate) fn release_sk(release: &crate::domain::releases::Release) -> String {
    format!(
        "{}{}#{}#{}",
        release_prefix(release.product_id.as_str()),
        release.version,
        release.platform,
        release.arch
    )
}
