//! Configuration from the environment, and the AWS clients built from it once per process. Endpoints, region
//! and credentials follow the SDK's own conventions (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SES`,
//! `AWS_REGION`, the default credential chain).

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};

use crate::http::App;
use crate::mail::SesMailer;
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

/// The shared SDK configuration with keymint's timeouts and a short retry budget.
pub async fn aws() -> SdkConfig {
    aws_with(timeouts()).await
}

/// The same configuration with other timeouts (the tests use generous ones on a shared, noisy machine).
pub async fn aws_with(timeouts: TimeoutConfig) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts)
        .retry_config(RetryConfig::standard().with_max_attempts(2))
        .load()
        .await
}

pub fn dynamo_store(sdk: &SdkConfig, tables: Tables) -> DynamoStore {
    DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), tables)
}

pub fn ses_mailer(sdk: &SdkConfig) -> SesMailer {
    SesMailer::new(aws_sdk_ses::Client::new(sdk))
}

/// The KMS key that seals tenants' signing keys, from `KEYMINT_SIGNING_KEY_ID`; the error names the variable.
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
    let sdk = aws().await;
    Ok(App::with_portal(
        Arc::new(dynamo_store(&sdk, tables)),
        Arc::new(ses_mailer(&sdk)),
        Arc::new(kms_vault(&sdk)?),
        crate::portal::PortalSettings::default(),
        files(&sdk),
    ))
}

/// The bucket of product files (`KEYMINT_FILES_BUCKET`) and the credentials downloads are presigned with;
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
