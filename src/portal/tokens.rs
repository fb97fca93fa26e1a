//! The portal's keyed MACs: each tenant has a 256-bit HMAC key that only KMS can open (a data key generated under
//! the context `{tenant_id, kid: "portal-hmac"}`, stored encrypted), opened once per process. It signs session
//! cookies, CSRF tokens and download tokens, each under its own purpose label; tags are checked in constant time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

use super::PortalError;
use crate::domain::{Email, KeyHash, ProductId, RandomnessError, TenantId, random_bytes, rfc3339};
use crate::signing::KeyVault;
use crate::storage::PortalStore;

/// The `kid` of the portal's MAC key in the KMS encryption context (the function's IAM allows only `{tenant_id, kid}`).
pub const MAC_KID: &str = "portal-hmac";

/// A tenant's portal MAC key. Never printed.
pub struct MacKey([u8; 32]);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(<redacted>)")
    }
}

impl MacKey {
    /// A key from raw bytes (unit tests; KMS gives the real ones).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A 256-bit key of its own for `purpose` (HMAC-SHA-256 of the purpose under this key): the same data key
    /// never serves two algorithms directly. `None` cannot happen (HMAC takes keys of any length).
    pub fn derive(&self, purpose: &str) -> Option<[u8; 32]> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).ok()?;
        mac.update(b"derive");
        mac.update(&[0]);
        mac.update(purpose.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    /// HMAC-SHA-256 over the purpose, the tenant and the data. `None` cannot happen (HMAC takes keys of any
    /// length); it keeps a panic off the request path all the same.
    fn mac(&self, purpose: &str, tenant: &TenantId, data: &[u8]) -> Option<Hmac<Sha256>> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).ok()?;
        // Purpose and tenant first, separated by a byte no label contains: a tag for one use never fits another.
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(tenant.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(data);
        Some(mac)
    }

    fn tag(&self, purpose: &str, tenant: &TenantId, data: &[u8]) -> String {
        self.mac(purpose, tenant, data)
            .map(|mac| URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
            .unwrap_or_default()
    }

    /// Constant-time check of a presented tag.
    fn verify(&self, purpose: &str, tenant: &TenantId, data: &[u8], tag: &str) -> bool {
        let (Ok(tag), Some(mac)) = (URL_SAFE_NO_PAD.decode(tag), self.mac(purpose, tenant, data))
        else {
            return false;
        };
        mac.verify_slice(&tag).is_ok()
    }

    /// `payload.tag`, with the payload base64url-encoded.
    fn seal(&self, purpose: &str, tenant: &TenantId, payload: &str) -> String {
        let encoded = URL_SAFE_NO_PAD.encode(payload);
        let tag = self.tag(purpose, tenant, encoded.as_bytes());
        format!("{encoded}.{tag}")
    }

    /// The payload of a `seal`ed value, if its tag is right.
    fn open(&self, purpose: &str, tenant: &TenantId, sealed: &str) -> Option<String> {
        let (encoded, tag) = sealed.split_once('.')?;
        if encoded.len() > 2048 || !self.verify(purpose, tenant, encoded.as_bytes(), tag) {
            return None;
        }
        String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()
    }
}

/// The tenants' data keys this process has opened, by tenant: a handle, cloned to share one cache (the portal's
/// tags and the license keys at rest come from the same key, opened once).
#[derive(Clone)]
pub struct MacKeys {
    vault: Arc<dyn KeyVault>,
    opened: Arc<Mutex<HashMap<TenantId, Arc<MacKey>>>>,
}

impl MacKeys {
    pub fn new(vault: Arc<dyn KeyVault>) -> Self {
        Self {
            vault,
            opened: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn cached(&self, tenant_id: &TenantId) -> Option<Arc<MacKey>> {
        self.opened.lock().ok()?.get(tenant_id).cloned()
    }

    fn keep(&self, tenant_id: &TenantId, key: MacKey) -> Arc<MacKey> {
        let key = Arc::new(key);
        if let Ok(mut opened) = self.opened.lock() {
            opened.insert(tenant_id.clone(), Arc::clone(&key));
        }
        key
    }

    /// The tenant's key: from memory, else one KMS `Decrypt` of the stored one, else a new one (the tenant's
    /// first portal visit or key email with a download).
    pub async fn for_tenant(
        &self,
        store: &dyn PortalStore,
        tenant_id: &TenantId,
    ) -> Result<Arc<MacKey>, PortalError> {
        if let Some(key) = self.cached(tenant_id) {
            return Ok(key);
        }
        let context = [("tenant_id", tenant_id.as_str()), ("kid", MAC_KID)];
        for _ in 0..2 {
            if let Some(sealed) = store.sealed_mac_key(tenant_id).await? {
                let plain = self.vault.decrypt(&sealed, &context).await?;
                let bytes: [u8; 32] = plain
                    .try_into()
                    .map_err(|_| PortalError::Corrupt("portal MAC key is not 32 bytes"))?;
                return Ok(self.keep(tenant_id, MacKey(bytes)));
            }
            let data_key = self.vault.generate_data_key(&context).await?;
            let bytes: [u8; 32] = data_key
                .plaintext
                .try_into()
                .map_err(|_| PortalError::Corrupt("KMS data key is not 32 bytes"))?;
            let now = rfc3339(OffsetDateTime::now_utc());
            if store
                .put_sealed_mac_key(tenant_id, &data_key.ciphertext, &now)
                .await?
            {
                tracing::info!(tenant = %tenant_id, "portal key made");
                return Ok(self.keep(tenant_id, MacKey(bytes)));
            }
            // Another process stored the tenant's first key at the same moment: read theirs.
        }
        Err(PortalError::Corrupt("portal MAC key could not be stored"))
    }
}

/// A signed-in buyer: whose licenses, until when, and a random id the CSRF token is bound to.
#[derive(Clone)]
pub struct Session {
    pub email: Email,
    pub expires_at: i64,
    sid: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Sessions last one hour; the cookie's `Max-Age` says the same.
    pub const LIFETIME_SECONDS: i64 = 3600;

    pub fn new(email: Email, now: i64) -> Result<Self, RandomnessError> {
        Ok(Self {
            email,
            expires_at: now + Self::LIFETIME_SECONDS,
            sid: URL_SAFE_NO_PAD.encode(random_bytes::<16>()?),
        })
    }

    pub fn cookie_value(&self, key: &MacKey, tenant: &TenantId) -> String {
        key.seal(
            "session",
            tenant,
            &format!("{}|{}|{}", self.expires_at, self.sid, self.email),
        )
    }

    /// The session a cookie carries, if its tag is right and it has not expired at `now`.
    pub fn from_cookie(value: &str, key: &MacKey, tenant: &TenantId, now: i64) -> Option<Self> {
        let payload = key.open("session", tenant, value)?;
        let mut parts = payload.splitn(3, '|');
        let expires_at: i64 = parts.next()?.parse().ok()?;
        let sid = parts.next()?.to_owned();
        let email = Email::parse(parts.next()?).ok()?;
        (expires_at > now).then_some(Self {
            email,
            expires_at,
            sid,
        })
    }

    /// The token every form of this session carries.
    pub fn csrf_token(&self, key: &MacKey, tenant: &TenantId) -> String {
        key.tag("csrf", tenant, self.sid.as_bytes())
    }

    pub fn csrf_matches(&self, key: &MacKey, tenant: &TenantId, presented: &str) -> bool {
        key.verify("csrf", tenant, self.sid.as_bytes(), presented)
    }
}

/// The right to download a product's file with one license, until `expires_at`. The token names the license by
/// its key's hash, never by the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadGrant {
    pub key_hash: KeyHash,
    pub product_id: ProductId,
    pub expires_at: i64,
    /// A release's file (version, file name) rather than the product's file (issue 26).
    pub release_file: Option<(String, String)>,
}

/// Why a download token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantRefused {
    /// Not a token this tenant signed.
    Invalid,
    Expired,
}

impl DownloadGrant {
    pub fn token(&self, key: &MacKey, tenant: &TenantId) -> String {
        key.seal(
            "download",
            tenant,
            &match &self.release_file {
                None => format!("{}|{}|{}", self.expires_at, self.product_id, self.key_hash),
                Some((version, name)) => format!(
                    "{}|{}|{}|{version}|{name}",
                    self.expires_at, self.product_id, self.key_hash
                ),
            },
        )
    }

    pub fn from_token(
        token: &str,
        key: &MacKey,
        tenant: &TenantId,
        now: i64,
    ) -> Result<Self, GrantRefused> {
        let payload = key
            .open("download", tenant, token)
            .ok_or(GrantRefused::Invalid)?;
        let mut parts = payload.splitn(5, '|');
        let (Some(expires_at), Some(product_id), Some(key_hash)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(GrantRefused::Invalid);
        };
        let release_file = match (parts.next(), parts.next()) {
            (None, None) => None,
            (Some(version), Some(name)) => Some((version.to_owned(), name.to_owned())),
            _ => return Err(GrantRefused::Invalid),
        };
        let expires_at: i64 = expires_at.parse().map_err(|_| GrantRefused::Invalid)?;
        let product_id = ProductId::parse(product_id).map_err(|_| GrantRefused::Invalid)?;
        if expires_at <= now {
            return Err(GrantRefused::Expired);
        }
        Ok(Self {
            key_hash: KeyHash::from_stored(key_hash),
            product_id,
            expires_at,
            release_file,
        })
    }
}

/// A sign-in token for an email link: 192 random bits, base64url. Only its SHA-256 is stored.
pub fn new_signin_token() -> Result<String, RandomnessError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<24>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap_or_else(|e| panic!("{e}"))
    }

    fn email() -> Email {
        Email::parse("jane@example.com").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sessions_round_trip_and_refuse_forgeries_other_tenants_and_age() {
        let key = MacKey::from_bytes([7; 32]);
        let acme = tenant("acme");
        let session = Session::new(email(), 1_000).unwrap_or_else(|e| panic!("{e}"));
        let cookie = session.cookie_value(&key, &acme);
        let back = Session::from_cookie(&cookie, &key, &acme, 1_001);
        assert_eq!(back.map(|s| s.email), Some(email()));
        assert!(Session::from_cookie(&cookie, &key, &tenant("other"), 1_001).is_none());
        assert!(
            Session::from_cookie(&cookie, &MacKey::from_bytes([8; 32]), &acme, 1_001).is_none()
        );
        assert!(Session::from_cookie(&cookie, &key, &acme, 1_000 + 3600).is_none());
        // A payload naming someone else, with the old tag, is refused.
        let (_, tag) = cookie.split_once('.').unwrap_or_default();
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(format!("99999999999|{}|mallory@example.com", session.sid))
        );
        assert!(Session::from_cookie(&forged, &key, &acme, 1_001).is_none());
        assert!(Session::from_cookie("garbage", &key, &acme, 1_001).is_none());
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let key = MacKey::from_bytes([7; 32]);
        let acme = tenant("acme");
        let one = Session::new(email(), 0).unwrap_or_else(|e| panic!("{e}"));
        let two = Session::new(email(), 0).unwrap_or_else(|e| panic!("{e}"));
        let token = one.csrf_token(&key, &acme);
        assert!(one.csrf_matches(&key, &acme, &token));
        assert!(!two.csrf_matches(&key, &acme, &token));
        assert!(!one.csrf_matches(&key, &acme, ""));
    }

    #[test]
    fn download_tokens_expire_and_cannot_be_reused_as_sessions() {
        let key = MacKey::from_bytes([7; 32]);
        let acme = tenant("acme");
        let grant = DownloadGrant {
            key_hash: KeyHash::from_stored("ab".repeat(32)),
            product_id: ProductId::parse("app").unwrap_or_else(|e| panic!("{e}")),
            expires_at: 500,
            release_file: None,
        };
        let token = grant.token(&key, &acme);
        assert_eq!(
            DownloadGrant::from_token(&token, &key, &acme, 499),
            Ok(grant.clone())
        );
        assert_eq!(
            DownloadGrant::from_token(&token, &key, &acme, 500),
            Err(GrantRefused::Expired)
        );
        assert_eq!(
            DownloadGrant::from_token(&token, &key, &tenant("other"), 1),
            Err(GrantRefused::Invalid)
        );
        assert!(Session::from_cookie(&token, &key, &acme, 1).is_none());
        let release = DownloadGrant {
            release_file: Some(("1.2.0".to_owned(), "MyApp.dmg".to_owned())),
            ..grant
        };
        let token = release.token(&key, &acme);
        assert_eq!(
            DownloadGrant::from_token(&token, &key, &acme, 1),
            Ok(release)
        );
    }
}
