//! Tenant signing keys and the leases they sign. Each tenant has an Ed25519 key whose private half is sealed under
//! a data key from KMS (`vault`); a process opens a key once and keeps it (`Keyring`), so a lease costs no AWS call
//! after the tenant's first. The lease format itself is defined once, in the `keystead-verify` crate apps use; the
//! signature is AWS-LC's Ed25519 (`Signer`).

mod vault;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use keystead_verify::{Jwk, Jwks, LeaseClaims};
use time::OffsetDateTime;

use crate::domain::{
    SealedSecret, SealedSigningKey, Tenant, TenantId, random_bytes, random_id, rfc3339,
};
use crate::storage::{SigningKeyStore, StoreError, TenantCache};

pub use vault::{KeyVault, KmsVault, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// KMS unreachable or refusing: no lease rather than an unsigned or broken one.
    #[error("key vault unavailable: {0}")]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error("sealed signing key is unusable: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Randomness(#[from] crate::domain::RandomnessError),
    #[error("unknown tenant")]
    UnknownTenant,
}

/// The encryption context every KMS call about a key carries; IAM allows the function no call without it.
fn context<'a>(tenant_id: &'a str, kid: &'a str) -> [(&'static str, &'a str); 2] {
    [("tenant_id", tenant_id), ("kid", kid)]
}

/// Seals `secret` for a tenant: AES-256-GCM under a fresh KMS data key, with the tenant id and `kid` as both KMS
/// encryption context and AES associated data, so a sealed secret opens only as what it was sealed as.
pub async fn seal(
    vault: &dyn KeyVault,
    tenant_id: &TenantId,
    kid: &str,
    secret: &[u8],
) -> Result<SealedSecret, SigningError> {
    let data_key = vault
        .generate_data_key(&context(tenant_id.as_str(), kid))
        .await?;
    let nonce = random_bytes::<12>()?;
    let cipher = Aes256Gcm::new_from_slice(&data_key.plaintext)
        .map_err(|_| SigningError::Corrupt("the data key is not 32 bytes".to_owned()))?;
    let aad = format!("{tenant_id}:{kid}");
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: secret,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| SigningError::Corrupt("sealing failed".to_owned()))?;
    Ok(SealedSecret {
        kid: kid.to_owned(),
        sealed_data_key: STANDARD.encode(&data_key.ciphertext),
        nonce: STANDARD.encode(nonce),
        ciphertext: STANDARD.encode(ciphertext),
    })
}

/// Opens a sealed secret: one KMS `Decrypt` of its data key, then AES-GCM.
pub async fn unseal(
    vault: &dyn KeyVault,
    tenant_id: &TenantId,
    sealed: &SealedSecret,
) -> Result<Vec<u8>, SigningError> {
    let corrupt = |what: &str| SigningError::Corrupt(format!("{what} of sealed {}", sealed.kid));
    let blob = STANDARD
        .decode(&sealed.sealed_data_key)
        .map_err(|_| corrupt("data key"))?;
    let data_key = vault
        .decrypt(&blob, &context(tenant_id.as_str(), &sealed.kid))
        .await?;
    let cipher = Aes256Gcm::new_from_slice(&data_key).map_err(|_| corrupt("data key length"))?;
    let nonce = STANDARD
        .decode(&sealed.nonce)
        .map_err(|_| corrupt("nonce"))?;
    if nonce.len() != 12 {
        return Err(corrupt("nonce length"));
    }
    let ciphertext = STANDARD
        .decode(&sealed.ciphertext)
        .map_err(|_| corrupt("ciphertext"))?;
    let aad = format!("{tenant_id}:{}", sealed.kid);
    cipher
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &ciphertext,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| corrupt("seal"))
}

/// A new key pair for a tenant, its private half sealed: the record to store, and the key ready to sign.
pub async fn seal_new(
    vault: &dyn KeyVault,
    tenant_id: &TenantId,
    now: OffsetDateTime,
) -> Result<(SealedSigningKey, Signer), SigningError> {
    let kid = random_id("k")?
        .replace('_', "")
        .chars()
        .take(12)
        .collect::<String>();
    seal_key(vault, tenant_id, kid, &random_bytes::<32>()?, now).await
}

/// Seals the key whose private half is `seed`, as `kid`.
async fn seal_key(
    vault: &dyn KeyVault,
    tenant_id: &TenantId,
    kid: String,
    seed: &[u8; 32],
    now: OffsetDateTime,
) -> Result<(SealedSigningKey, Signer), SigningError> {
    let signer = Signer::from_seed(&kid, seed)?;
    let sealed = seal(vault, tenant_id, &kid, seed).await?;
    let record = SealedSigningKey {
        public_key: URL_SAFE_NO_PAD.encode(signer.public_key()),
        sealed_data_key: sealed.sealed_data_key,
        nonce: sealed.nonce,
        sealed_private_key: sealed.ciphertext,
        created_at: rfc3339(now),
        retired_at: None,
        publish_until: None,
        ttl: None,
        kid,
    };
    Ok((record, signer))
}

/// Opens a sealed signing key, checked against its stored public key.
pub async fn open(
    vault: &dyn KeyVault,
    tenant_id: &TenantId,
    sealed: &SealedSigningKey,
) -> Result<Signer, SigningError> {
    let secret = SealedSecret {
        kid: sealed.kid.clone(),
        sealed_data_key: sealed.sealed_data_key.clone(),
        nonce: sealed.nonce.clone(),
        ciphertext: sealed.sealed_private_key.clone(),
    };
    let seed: [u8; 32] = unseal(vault, tenant_id, &secret)
        .await?
        .try_into()
        .map_err(|_| SigningError::Corrupt(format!("private key length of key {}", sealed.kid)))?;
    let signer = Signer::from_seed(&sealed.kid, &seed)?;
    if URL_SAFE_NO_PAD.encode(signer.public_key()) != sealed.public_key {
        return Err(SigningError::Corrupt(format!(
            "public key of key {}",
            sealed.kid
        )));
    }
    Ok(signer)
}

/// The tenant's published keys as a JWKS: the current one and the retired ones whose leases may still be valid.
pub fn jwks(tenant: &Tenant, now: OffsetDateTime) -> Jwks {
    let keys = tenant
        .published_signing_keys(now.unix_timestamp())
        .filter_map(|key| {
            let bytes: [u8; 32] = URL_SAFE_NO_PAD
                .decode(&key.public_key)
                .ok()?
                .try_into()
                .ok()?;
            Some(Jwk::ed25519(&key.kid, &bytes))
        })
        .collect();
    Jwks { keys }
}

/// A key that is ready to sign, with its `kid`. The signature is AWS-LC's Ed25519, which the function links anyway
/// for TLS: it signs a lease in about half of ed25519-dalek's time (BENCHMARKS.md, run 13). Ed25519 is
/// deterministic, so a lease's bytes are what any implementation makes of the same key and claims (a unit test holds
/// them to `keystead_verify::sign`'s).
pub struct Signer {
    pub kid: String,
    key: Ed25519KeyPair,
}

impl Signer {
    /// The signer of the key whose private half (RFC 8032's 32-byte seed) is `seed`.
    pub fn from_seed(kid: &str, seed: &[u8; 32]) -> Result<Self, SigningError> {
        let key = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| SigningError::Corrupt(format!("private key of key {kid}: {e}")))?;
        Ok(Self {
            kid: kid.to_owned(),
            key,
        })
    }

    /// The public half, as the JWKS publishes it.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// A lease: the JWS compact serialization `keystead-verify` defines, signed with this key.
    pub fn sign(&self, claims: &LeaseClaims) -> Result<String, SigningError> {
        let input = keystead_verify::signing_input(&self.kid, claims)
            .map_err(|e| SigningError::Corrupt(format!("lease claims do not serialize: {e}")))?;
        let signature = self
            .key
            .try_sign(input.as_bytes())
            .ok()
            .and_then(|signature| <[u8; 64]>::try_from(signature.as_ref()).ok())
            .ok_or_else(|| SigningError::Corrupt(format!("key {} did not sign", self.kid)))?;
        Ok(keystead_verify::assemble(&input, &signature))
    }
}

/// The signing keys this process has opened, by tenant and `kid`: KMS is asked once per key and process.
pub struct Keyring {
    vault: Arc<dyn KeyVault>,
    opened: Mutex<HashMap<(TenantId, String), Arc<Signer>>>,
    /// Other sealed secrets (a tenant's Gumroad access token), by tenant and seal: a re-sealed one is opened anew.
    secrets: Mutex<HashMap<(TenantId, String), Arc<String>>>,
}

impl Keyring {
    pub fn new(vault: Arc<dyn KeyVault>) -> Self {
        Self {
            vault,
            opened: Mutex::new(HashMap::new()),
            secrets: Mutex::new(HashMap::new()),
        }
    }

    /// A sealed text secret of the tenant's, opened once per process (and again after it is re-sealed).
    pub async fn secret(
        &self,
        tenant_id: &TenantId,
        sealed: &SealedSecret,
    ) -> Result<Arc<String>, SigningError> {
        let id = (tenant_id.clone(), sealed.nonce.clone());
        if let Some(secret) = self.secrets.lock().ok().and_then(|s| s.get(&id).cloned()) {
            return Ok(secret);
        }
        let bytes = unseal(self.vault.as_ref(), tenant_id, sealed).await?;
        let secret =
            Arc::new(String::from_utf8(bytes).map_err(|_| {
                SigningError::Corrupt(format!("sealed {} is not text", sealed.kid))
            })?);
        if let Ok(mut secrets) = self.secrets.lock() {
            secrets.insert(id, Arc::clone(&secret));
        }
        Ok(secret)
    }

    pub fn vault(&self) -> &dyn KeyVault {
        self.vault.as_ref()
    }

    fn cached(&self, tenant_id: &TenantId, kid: &str) -> Option<Arc<Signer>> {
        let opened = self.opened.lock().ok()?;
        opened.get(&(tenant_id.clone(), kid.to_owned())).cloned()
    }

    fn keep(&self, tenant_id: &TenantId, signer: Signer) -> Arc<Signer> {
        let signer = Arc::new(signer);
        if let Ok(mut opened) = self.opened.lock() {
            opened.insert((tenant_id.clone(), signer.kid.clone()), Arc::clone(&signer));
        }
        signer
    }

    async fn opened(
        &self,
        tenant_id: &TenantId,
        sealed: &SealedSigningKey,
    ) -> Result<Arc<Signer>, SigningError> {
        if let Some(signer) = self.cached(tenant_id, &sealed.kid) {
            return Ok(signer);
        }
        let signer = open(self.vault.as_ref(), tenant_id, sealed).await?;
        Ok(self.keep(tenant_id, signer))
    }

    /// The key that signs `tenant`'s leases now. A tenant made before leases existed gets its first key here.
    pub async fn current(
        &self,
        store: &dyn SigningKeyStore,
        tenants: &TenantCache,
        tenant: Arc<Tenant>,
    ) -> Result<Arc<Signer>, SigningError> {
        if let Some(sealed) = tenant.current_signing_key() {
            return self.opened(&tenant.tenant_id, sealed).await;
        }
        let tenant_id = tenant.tenant_id.clone();
        let (sealed, signer) =
            seal_new(self.vault.as_ref(), &tenant_id, OffsetDateTime::now_utc()).await?;
        let installed = store.install_signing_key(&tenant_id, &sealed, None).await?;
        tenants.forget(&tenant_id);
        if installed {
            tracing::info!(tenant = %tenant_id, kid = %sealed.kid, "first signing key made");
            return Ok(self.keep(&tenant_id, signer));
        }
        // Another request made the tenant's first key at the same moment: use theirs.
        let fresh = tenants
            .tenant(store, &tenant_id)
            .await?
            .ok_or(SigningError::UnknownTenant)?;
        let sealed = fresh.current_signing_key().ok_or_else(|| {
            SigningError::Corrupt("no current signing key after install".to_owned())
        })?;
        self.opened(&tenant_id, sealed).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vault that "encrypts" by XOR with a fixed pad and checks the context, like KMS does.
    struct FakeVault;

    #[async_trait::async_trait]
    impl KeyVault for FakeVault {
        async fn generate_data_key(
            &self,
            context: &[(&str, &str)],
        ) -> Result<vault::DataKey, VaultError> {
            let plaintext = vec![7u8; 32];
            let mut ciphertext = plaintext.iter().map(|b| b ^ 0x5a).collect::<Vec<_>>();
            ciphertext.extend(format!("{context:?}").bytes());
            Ok(vault::DataKey {
                plaintext,
                ciphertext,
            })
        }

        async fn decrypt(
            &self,
            blob: &[u8],
            context: &[(&str, &str)],
        ) -> Result<Vec<u8>, VaultError> {
            let (key, ctx) = blob.split_at(32);
            if ctx != format!("{context:?}").as_bytes() {
                return Err(VaultError("InvalidCiphertextException".to_owned()));
            }
            Ok(key.iter().map(|b| b ^ 0x5a).collect())
        }
    }

    #[tokio::test]
    async fn a_sealed_key_opens_only_under_its_own_tenant_and_kid() {
        let acme = TenantId::parse("acme").unwrap_or_else(|e| panic!("{e}"));
        let other = TenantId::parse("other").unwrap_or_else(|e| panic!("{e}"));
        let seed = [9u8; 32];
        let now = OffsetDateTime::now_utc();
        let (sealed, key) = seal_key(&FakeVault, &acme, "kid000000000".to_owned(), &seed, now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!sealed.sealed_private_key.contains(&STANDARD.encode(seed)));
        let opened = open(&FakeVault, &acme, &sealed)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opened.public_key(), key.public_key());
        assert!(open(&FakeVault, &other, &sealed).await.is_err());
        let mut tampered = sealed.clone();
        tampered.public_key = URL_SAFE_NO_PAD.encode([1u8; 32]);
        assert!(open(&FakeVault, &acme, &tampered).await.is_err());
        let mut swapped = sealed.clone();
        swapped.kid = "otherkid0000".to_owned();
        assert!(open(&FakeVault, &acme, &swapped).await.is_err());

        let (fresh, _) = seal_new(&FakeVault, &acme, now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fresh.kid.len(), 12);
        assert_ne!(fresh.public_key, sealed.public_key);
    }

    /// AWS-LC's signature is the one ed25519-dalek makes (through `keystead_verify::sign`), and apps verify it.
    #[test]
    fn a_lease_is_the_same_bytes_as_keystead_verify_signs() {
        let seed = [42u8; 32];
        let signer = Signer::from_seed("k1", &seed).unwrap_or_else(|e| panic!("{e}"));
        let dalek = keystead_verify::ed25519_dalek::SigningKey::from_bytes(&seed);
        assert_eq!(signer.public_key(), dalek.verifying_key().as_bytes());
        let claims = LeaseClaims {
            iss: "acme".to_owned(),
            sub: "lic_1".to_owned(),
            product_id: "myapp".to_owned(),
            machine_id: "machine-1".to_owned(),
            status: "active".to_owned(),
            entitlements: vec!["pro".to_owned()],
            license_expires_at: None,
            iat: 1_800_000_000,
            exp: 1_800_086_400,
            nonce: Some("n1".to_owned()),
        };
        let lease = signer.sign(&claims).unwrap_or_else(|e| panic!("{e}"));
        let expected =
            keystead_verify::sign("k1", &claims, &dalek).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lease, expected);
        let mut keys = keystead_verify::PublicKeys::new();
        keys.insert("k1", *dalek.verifying_key().as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let expected = keystead_verify::Expected {
            tenant_id: "acme",
            product_id: "myapp",
            other_products: &[],
            machine_id: "machine-1",
            nonce: Some("n1"),
        };
        let verified = keystead_verify::verify(&lease, &keys, &expected, 1_800_000_100)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verified.sub, "lic_1");
    }
}
