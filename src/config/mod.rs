//! Configuration from the environment, and the AWS clients built from it once per process. Endpoints, region
//! and credentials follow the SDK's own conventions (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SES`,
//! `AWS_REGION`, the default credential chain); the function's TLS trusts Amazon's roots (`function_http_client`).

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::app::App;
use crate::mail::SesMailer;
use crate::portal::{KeysAtRest, MacKeys};
use crate::signing::KmsVault;
use crate::storage::{DynamoStore, Tables};

/// Budgets that keep a whole ping (one read, one transaction, one email, one update) well inside Gumroad's 5 s:
/// each call gets at most 1.2 s over two attempts, and the handler stops everything at 4.5 s.
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(400))
        .operation_attempt_timeout(Duration::from_millis(600))
        .operation_timeout(Duration::from_millis(1_200))
        .build()
}

/// The shared SDK configuration with keystead's timeouts and a short retry budget (the CLI, the tests, the bench).
pub async fn aws() -> SdkConfig {
    aws_with(timeouts()).await
}

/// The same configuration with other timeouts (the tests use generous ones on a shared, noisy machine).
pub async fn aws_with(timeouts: TimeoutConfig) -> SdkConfig {
    loader(timeouts).load().await
}

/// The function's SDK configuration: `aws()`, with TLS that trusts only the roots AWS's endpoints chain to
/// (`function_http_client`).
pub async fn function_aws() -> Result<SdkConfig, String> {
    Ok(loader(timeouts())
        .http_client(function_http_client(
            std::env::var(TLS_ROOTS_ENV).ok().as_deref(),
        )?)
        .load()
        .await)
}

fn loader(timeouts: TimeoutConfig) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(2))
}

/// Amazon Trust Services' root certificates (Amazon Root CA 1 to 4 and Starfield Services Root Certificate
/// Authority - G2, as published at <https://www.amazontrust.com/repository/>), which every AWS service endpoint
/// the function calls (DynamoDB, SES, KMS) chains to.
pub const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("amazon_trust_services.pem");

/// `KEYSTEAD_TLS_ROOTS=system`: trust the operating system's certificate store instead (a region or endpoint
/// whose certificates are not Amazon Trust Services', such as the China regions).
pub const TLS_ROOTS_ENV: &str = "KEYSTEAD_TLS_ROOTS";

/// The HTTP client of the function's AWS calls: the SDK's own (hyper and rustls with aws-lc), trusting
/// `AMAZON_TRUST_SERVICES` unless `roots` (`KEYSTEAD_TLS_ROOTS`) is `system`. The SDK's default reads and parses the whole
/// system store (every file under `/etc/ssl/certs`) in each new process, which was most of a cold start's own
/// time (BENCHMARKS.md, "Start-up"); five certificates cost next to nothing.
pub fn function_http_client(roots: Option<&str>) -> Result<SharedHttpClient, String> {
    let trust = match roots {
        None | Some("" | "amazon") => {
            TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES)
        }
        Some("system") => TrustStore::default(),
        Some(other) => {
            return Err(format!(
                "{TLS_ROOTS_ENV}={other:?}: expected \"amazon\" (the default) or \"system\""
            ));
        }
    };
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https())
}

/// The store, sealing license keys at rest under the stack's KMS key when `KEYSTEAD_SIGNING_KEY_ID` names it (the
/// function always has it; without it, a CLI command that reads a sealed key says which variable to set).
pub fn dynamo_store(sdk: &SdkConfig, tables: Tables) -> DynamoStore {
    match kms_vault(sdk) {
        Ok(vault) => sealing_store(sdk, tables, MacKeys::new(Arc::new(vault))),
        Err(_) => DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), tables),
    }
}

/// The store sealing license keys with the data keys `keys` opens.
pub fn sealing_store(sdk: &SdkConfig, tables: Tables, keys: MacKeys) -> DynamoStore {
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), tables);
    let sealing = KeysAtRest::new(keys, store.clone());
    store.with_key_cipher(Arc::new(sealing))
}

pub fn ses_mailer(sdk: &SdkConfig) -> SesMailer {
    SesMailer::from_config(aws_sdk_ses::config::Builder::from(sdk))
}

/// The KMS key that seals tenants' signing keys, from `KEYSTEAD_SIGNING_KEY_ID`; the error names the variable.
pub fn kms_vault(sdk: &SdkConfig) -> Result<KmsVault, String> {
    let key_id = std::env::var(KmsVault::ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!(
                "missing environment variable {}: the KMS key that seals signing keys (the stack's SigningKeyArn output; `eval \"$(infra/local/up)\"` locally)",
                KmsVault::ENV
            )
        })?;
    Ok(KmsVault::new(aws_sdk_kms::Client::new(sdk), key_id))
}

/// The function's application state from the environment; the error names what is missing.
pub async fn app_from_env() -> Result<App, String> {
    let tables = Tables::from_env()?;
    let sdk = function_aws().await?;
    let vault: Arc<dyn crate::signing::KeyVault> = Arc::new(kms_vault(&sdk)?);
    // One cache of the tenants' data keys for the keys at rest and the portal.
    let keys = MacKeys::new(Arc::clone(&vault));
    let app = App::with_portal_keys(
        Arc::new(sealing_store(&sdk, tables, keys.clone())),
        Arc::new(ses_mailer(&sdk)),
        vault,
        crate::portal::PortalSettings::default(),
        files(&sdk),
        keys,
    );
    Ok(match link_queue(&sdk) {
        Some(queue) => app.with_link_queue(Arc::new(queue)),
        None => app,
    })
}

/// The queue sign-in requests wait in for their mail (`KEYSTEAD_SIGNIN_QUEUE_URL`, the stack's `SigninQueue`);
/// `None` without one (links are then mailed before the answer).
pub fn link_queue(sdk: &SdkConfig) -> Option<crate::portal::SqsLinkQueue> {
    use crate::portal::SqsLinkQueue;
    let url = std::env::var(SqsLinkQueue::URL_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty())?;
    Some(SqsLinkQueue::new(aws_sdk_sqs::Client::new(sdk), url))
}

/// The webhook dispatcher (`keystead-dispatch`, `keystead dev dispatch`) from the environment: the tables, the KMS
/// key that seals webhook secrets, the delivery queues, and whether loopback targets are allowed (local mode).
#[cfg(feature = "dispatch")]
pub fn dispatcher(sdk: &SdkConfig, tables: Tables) -> Result<crate::dispatch::Dispatcher, String> {
    use crate::dispatch::{Dispatcher, queue::Queue, target};
    let vault: Arc<dyn crate::signing::KeyVault> = Arc::new(kms_vault(sdk)?);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), tables);
    let queue = Queue::from_env(aws_sdk_sqs::Client::new(sdk))?;
    Ok(Dispatcher::new(
        store,
        vault,
        queue,
        target::loopback_allowed_by_env(),
    ))
}

/// The dispatcher function's own: the function's AWS set-up, then `dispatcher`.
#[cfg(feature = "dispatch")]
pub async fn dispatcher_from_env() -> Result<crate::dispatch::Dispatcher, String> {
    let tables = Tables::from_env()?;
    let sdk = function_aws().await?;
    dispatcher(&sdk, tables)
}

/// The bucket of product files (`KEYSTEAD_FILES_BUCKET`) and the credentials downloads are presigned with;
/// `None` without a bucket (downloads are off).
pub fn files(
    sdk: &SdkConfig,
) -> Option<(
    crate::files::Bucket,
    aws_credential_types::provider::SharedCredentialsProvider,
)> {
    let bucket = crate::files::Bucket::from_env(sdk.region().map(|r| r.as_ref()))?;
    Some((bucket, sdk.credentials_provider()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_trusts_the_five_amazon_trust_services_roots() {
        let text = std::str::from_utf8(AMAZON_TRUST_SERVICES).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        // The subjects' common names are in each certificate's DER as plain ASCII.
        let ders: Vec<Vec<u8>> = text
            .split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|block| {
                let body: String = block
                    .split("-----END CERTIFICATE-----")
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect();
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, body)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        for (der, name) in ders.iter().zip([
            "Amazon Root CA 1",
            "Amazon Root CA 2",
            "Amazon Root CA 3",
            "Amazon Root CA 4",
            "Starfield Services Root Certificate Authority - G2",
        ]) {
            assert!(
                der.windows(name.len()).any(|w| w == name.as_bytes()),
                "{name}"
            );
        }
    }

    #[test]
    fn the_http_client_builds_with_each_trust_setting_and_refuses_others() {
        for roots in [None, Some("amazon"), Some("system"), Some("")] {
            assert!(function_http_client(roots).is_ok(), "{roots:?}");
        }
        let refused = function_http_client(Some("none")).err().unwrap_or_default();
        assert!(refused.contains("KEYSTEAD_TLS_ROOTS"), "{refused}");
    }
}
