//! License keys at rest (issue 24): the one secret keystead stores that a leaked table or backup would hand
//! over. Each key is sealed with AES-256-GCM under a key derived from the tenant's KMS-wrapped 256-bit data key
//! (the one the portal's tags come from: one KMS `Decrypt` per tenant and process opens both), with the tenant
//! and the key's hash as associated data, so a sealed key copied onto another license does not open. The hash
//! stays the lookup: a license check never opens a key.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::PortalError;
use super::tokens::MacKeys;
use crate::domain::{KeyHash, TenantId, random_bytes};
use crate::storage::{DynamoStore, KeyCipher, StoreError};

/// The purpose the sealing key is derived under (never a tag's purpose).
const PURPOSE: &str = "license-key-seal";
const VERSION: &str = "v1";

/// Seals and opens license keys for `DynamoStore::with_key_cipher`.
pub struct KeysAtRest {
    keys: MacKeys,
    /// The store the tenants' data keys are read from (and written to, for a tenant's first one).
    store: DynamoStore,
}

impl KeysAtRest {
    /// Sealing with the data keys `keys` opens (share the portal's handle: one KMS `Decrypt` per tenant serves
    /// both), read from and stored in `store`.
    pub fn new(keys: MacKeys, store: DynamoStore) -> Self {
        Self { keys, store }
    }

    async fn cipher(&self, tenant_id: &TenantId) -> Result<Aes256Gcm, StoreError> {
        let key = self
            .keys
            .for_tenant(&self.store, tenant_id)
            .await
            .map_err(into_store)?;
        let derived = key
            .derive(PURPOSE)
            .ok_or_else(|| StoreError::Corrupt("sealing key".to_owned()))?;
        Aes256Gcm::new_from_slice(&derived)
            .map_err(|_| StoreError::Corrupt("sealing key length".to_owned()))
    }
}

fn into_store(err: PortalError) -> StoreError {
    match err {
        PortalError::Storage(err) => err,
        // KMS unreachable or refusing: a 503, and the client (or Gumroad) tries again.
        PortalError::Vault(err) => StoreError::Unavailable(err.to_string()),
        other => StoreError::Corrupt(other.to_string()),
    }
}

fn associated(tenant_id: &TenantId, key_hash: &KeyHash) -> String {
    format!("{tenant_id}|{key_hash}")
}

#[async_trait]
impl KeyCipher for KeysAtRest {
    async fn seal(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        plaintext: &str,
    ) -> Result<String, StoreError> {
        let cipher = self.cipher(tenant_id).await?;
        let nonce: [u8; 12] = random_bytes().map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let aad = associated(tenant_id, key_hash);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Corrupt("license key could not be sealed".to_owned()))?;
        Ok(format!(
            "{VERSION}.{}.{}",
            URL_SAFE_NO_PAD.encode(nonce),
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    async fn open(
        &self,
        tenant_id: &TenantId,
        key_hash: &KeyHash,
        sealed: &str,
    ) -> Result<String, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("sealed license key: {what}"));
        let mut parts = sealed.split('.');
        let (Some(VERSION), Some(nonce), Some(body), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt("not v1.<nonce>.<ciphertext>"));
        };
        let nonce = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| corrupt("nonce"))?;
        if nonce.len() != 12 {
            return Err(corrupt("nonce length"));
        }
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| corrupt("ciphertext"))?;
        let aad = associated(tenant_id, key_hash);
        let plain = self
            .cipher(tenant_id)
            .await?
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &body,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| corrupt("does not open for this tenant and key hash"))?;
        String::from_utf8(plain).map_err(|_| corrupt("not UTF-8"))
    }
}
