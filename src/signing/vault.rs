//! The key vault port: data keys from KMS and their decryption, always under an encryption context. The real one is
//! KMS (moto's locally, through `AWS_ENDPOINT_URL_KMS`); unit tests use a small fake.

use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

/// KMS failed or refused; the message is the SDK's, never key material.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct VaultError(pub String);

/// A fresh AES-256 data key: in the clear for sealing once, and as KMS's ciphertext to store.
pub struct DataKey {
    pub plaintext: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

#[async_trait]
pub trait KeyVault: Send + Sync {
    async fn generate_data_key(&self, context: &[(&str, &str)]) -> Result<DataKey, VaultError>;

    async fn decrypt(&self, blob: &[u8], context: &[(&str, &str)]) -> Result<Vec<u8>, VaultError>;
}

/// KMS, with the stack's key (`KEYSTEAD_SIGNING_KEY_ID`).
pub struct KmsVault {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsVault {
    pub const ENV: &'static str = "KEYSTEAD_SIGNING_KEY_ID";

    pub fn new(client: aws_sdk_kms::Client, key_id: String) -> Self {
        Self { client, key_id }
    }
}

fn failure<E: std::error::Error + 'static>(err: E) -> VaultError {
    VaultError(aws_sdk_kms::error::DisplayErrorContext(&err).to_string())
}

fn context_map(context: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    context
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[async_trait]
impl KeyVault for KmsVault {
    async fn generate_data_key(&self, context: &[(&str, &str)]) -> Result<DataKey, VaultError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(failure)?;
        match (out.plaintext, out.ciphertext_blob) {
            (Some(plaintext), Some(ciphertext)) => Ok(DataKey {
                plaintext: plaintext.into_inner(),
                ciphertext: ciphertext.into_inner(),
            }),
            _ => Err(VaultError(
                "KMS answered GenerateDataKey without a key".to_owned(),
            )),
        }
    }

    async fn decrypt(&self, blob: &[u8], context: &[(&str, &str)]) -> Result<Vec<u8>, VaultError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(blob))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(failure)?;
        out.plaintext
            .map(Blob::into_inner)
            .ok_or_else(|| VaultError("KMS answered Decrypt without a key".to_owned()))
    }
}
