//! The admin CLI `keystead`: every command a seller runs, from the first tenant to a resent email. Each command
//! prints a short human answer, or exactly one JSON document with `--json`; failures are one line on stderr.

mod dev;
mod dev_dispatch;
mod doctor;
mod gumroad;
mod gumroad_api;
mod import;
mod license;
mod migrate;
mod output;
mod product;
mod product_file;
mod release;
mod s3;
mod ses;
pub mod signin_worker;
mod tenant;
mod webhook;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::sync::Arc;

use crate::mail::Mailer;
use crate::storage::{DynamoStore, StoreError, Tables};

pub use import::{imported_order, sale_form};
pub use output::Output;

#[derive(Debug, Parser)]
#[command(
    name = "keystead",
    version,
    about = "Administer keystead: tenants, products, licenses and Gumroad subscriptions"
)]
pub struct Cli {
    /// Print exactly one JSON document instead of the human answer.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect, suspend and resume tenants; rotate webhook tokens.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Create and delete products; map Gumroad permalinks to them.
    #[command(subcommand)]
    Product(product::ProductCommand),
    /// List, show, resend, revoke, reinstate and manually issue licenses.
    #[command(subcommand)]
    License(license::LicenseCommand),
    /// Subscribe the tenant's ping URL to Gumroad's resource events (Gumroad API v2).
    #[command(subcommand)]
    Gumroad(gumroad::GumroadCommand),
    /// Verify sender identities in SES; show them and whether the account is still in the SES sandbox.
    #[command(subcommand)]
    Ses(ses::SesCommand),
    /// Check what a working deployment needs (tables, KMS key, SES, the API, Gumroad subscriptions, failed key
    /// emails) and print a checklist with the fix for each failure.
    Doctor(doctor::DoctorArgs),
    /// One-off changes to stored records that an upgrade needs (each safe to run again).
    #[command(subcommand)]
    Migrate(migrate::MigrateCommand),
    /// Signed outbound webhooks: endpoints, secrets, deliveries, replays.
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
    /// Releases and the license-gated update feeds: publish, list, publish a draft, yank.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// What happened to a tenant's licenses and who did it, newest first.
    Audit(webhook::AuditArgs),
    /// Local development helpers used by infra/local/up and the tests.
    #[command(subcommand)]
    Dev(dev::DevCommand),
}

/// The tenant and the name of a seller's command that changes a tenant or its products, for the audit log (the
/// commands that change licenses record their own events, the webhook commands theirs).
fn seller_action(command: &Command) -> Option<(String, &'static str)> {
    use product::ProductCommand as P;
    use release::ReleaseCommand as R;
    use tenant::TenantCommand as T;
    Some(match command {
        Command::Tenant(T::Create { tenant_id, .. }) => (tenant_id.clone(), "tenant create"),
        Command::Tenant(T::RotateToken { tenant_id, .. }) => {
            (tenant_id.clone(), "tenant rotate-token")
        }
        Command::Tenant(T::RotateSigningKey { tenant_id, .. }) => {
            (tenant_id.clone(), "tenant rotate-signing-key")
        }
        Command::Tenant(T::Suspend { tenant_id }) => (tenant_id.clone(), "tenant suspend"),
        Command::Tenant(T::Resume { tenant_id }) => (tenant_id.clone(), "tenant resume"),
        Command::Tenant(T::Set { tenant_id, .. }) => (tenant_id.clone(), "tenant set"),
        Command::Product(P::Create { tenant_id, .. }) => (tenant_id.clone(), "product create"),
        Command::Product(P::Set { tenant_id, .. }) => (tenant_id.clone(), "product set"),
        Command::Product(P::Delete { tenant_id, .. }) => (tenant_id.clone(), "product delete"),
        Command::Product(P::Map { tenant_id, .. }) => (tenant_id.clone(), "product map"),
        Command::Product(P::Unmap { tenant_id, .. }) => (tenant_id.clone(), "product unmap"),
        Command::Product(P::File { tenant_id, .. }) => (tenant_id.clone(), "product file"),
        Command::Release(R::Publish(args)) => (args.tenant_id.clone(), "release publish"),
        Command::Release(R::PublishDraft(v)) => (v.tenant_id.clone(), "release publish-draft"),
        Command::Release(R::Yank(v)) => (v.tenant_id.clone(), "release yank"),
        _ => return None,
    })
}

/// The command line as the audit log keeps it: its arguments after the command's two words (none of these
/// commands takes a secret on the command line: tokens come from the environment).
fn audited_arguments() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| a != "--json")
        .skip(2)
        .collect()
}

/// A failure, shown to the seller as one line. Each kind has its own exit code (documented in the README).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A value on the command line is malformed (also clap's usage errors).
    #[error("{0}")]
    Invalid(String),
    /// An unknown tenant, product, permalink mapping, license or Gumroad subscription.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Missing or unusable configuration: table names, the Gumroad access token.
    #[error("{0}")]
    Config(String),
    #[error("AWS unreachable or failing: {0}")]
    Aws(String),
    /// The records are in a state that forbids the command (a mapped product, a suspended tenant, …).
    #[error("{0}")]
    Conflict(String),
    /// Gumroad refused the request or could not be reached.
    #[error("{0}")]
    Gumroad(String),
    /// The license is stored but its key email could not be sent. The answer is still printed.
    #[error("{0}")]
    EmailFailed(String),
    /// `doctor` found at least one failing check. The checklist is still printed.
    #[error("{0}")]
    ChecksFailed(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Other(_) => 1,
            Self::Invalid(_) => 2,
            Self::NotFound(_) => 3,
            Self::AlreadyExists(_) => 4,
            Self::Config(_) => 5,
            Self::Aws(_) => 6,
            Self::Conflict(_) => 7,
            Self::Gumroad(_) => 8,
            Self::EmailFailed(_) => 9,
            Self::ChecksFailed(_) => 10,
        }
    }

    /// Failures after which the command's answer still describes what was done.
    fn keeps_answer(&self) -> bool {
        matches!(self, Self::EmailFailed(_) | Self::ChecksFailed(_))
    }
}

impl From<StoreError> for CliError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) => Self::Aws(first_line(without_debug(&detail))),
            StoreError::Corrupt(detail) => {
                Self::Other(format!("stored record is corrupt: {}", first_line(&detail)))
            }
            StoreError::AlreadyExists => Self::AlreadyExists("already exists".to_owned()),
            StoreError::NotFound => Self::NotFound("not found".to_owned()),
        }
    }
}

impl From<crate::signing::SigningError> for CliError {
    fn from(err: crate::signing::SigningError) -> Self {
        use crate::signing::SigningError;
        match err {
            SigningError::Storage(err) => err.into(),
            SigningError::Vault(err) => Self::Aws(first_line(without_debug(&err.0))),
            SigningError::UnknownTenant => Self::NotFound("unknown tenant".to_owned()),
            other => Self::Other(other.to_string()),
        }
    }
}

impl From<crate::domain::RandomnessError> for CliError {
    fn from(err: crate::domain::RandomnessError) -> Self {
        Self::Other(err.to_string())
    }
}

impl From<crate::domain::InvalidValue> for CliError {
    fn from(err: crate::domain::InvalidValue) -> Self {
        Self::Invalid(err.0)
    }
}

/// The SDK's error text up to where it starts repeating itself as a `Debug` dump (` (DispatchFailure(…`).
pub(crate) fn without_debug(detail: &str) -> &str {
    let mut rest = detail;
    let mut offset = 0;
    while let Some(i) = rest.find(" (") {
        let after = &rest[i + 2..];
        let ident_len = after
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(after.len());
        let dump = after.starts_with(|c: char| c.is_ascii_uppercase())
            && matches!(after[ident_len..].chars().next(), Some('(' | ' ' | '{'));
        if dump {
            return detail[..offset + i].trim_end();
        }
        offset += i + 2;
        rest = after;
    }
    detail
}

/// An AWS SDK error as one line: `what` (the service and operation) and the SDK's description.
pub(crate) fn aws_error<E: std::error::Error + 'static>(what: &str, err: &E) -> CliError {
    let detail = aws_sdk_ses::error::DisplayErrorContext(err).to_string();
    CliError::Aws(format!("{what}: {}", first_line(without_debug(&detail))))
}

pub(crate) fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// The SDK configuration and the table names, configured exactly like the function. The tables are read first,
/// so that missing configuration fails before any call is made.
pub(crate) async fn configured() -> Result<(aws_config::SdkConfig, Tables), CliError> {
    let tables = Tables::from_env().map_err(CliError::Config)?;
    Ok((crate::config::aws().await, tables))
}

/// The seller running the CLI, as AWS knows them (STS `GetCallerIdentity`), named on every event the CLI's writes
/// record in the audit log. Asked once, and only when a command writes an event.
struct CallerIdentity {
    sdk: aws_config::SdkConfig,
    name: std::sync::Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl crate::storage::Actor for CallerIdentity {
    async fn name(&self) -> String {
        if let Some(name) = self.name.lock().ok().and_then(|n| n.clone()) {
            return name;
        }
        let config = aws_sdk_sts::config::Builder::from(&self.sdk)
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_timeout(std::time::Duration::from_secs(5))
                    .build(),
            )
            .build();
        let name = match aws_sdk_sts::Client::from_conf(config)
            .get_caller_identity()
            .send()
            .await
        {
            Ok(who) => who.arn().unwrap_or("unknown principal").to_owned(),
            Err(err) => {
                let detail = aws_sdk_sts::error::DisplayErrorContext(&err).to_string();
                format!(
                    "unknown principal (STS: {})",
                    first_line(without_debug(&detail))
                )
            }
        };
        if let Ok(mut cached) = self.name.lock() {
            *cached = Some(name.clone());
        }
        name
    }
}

/// The store the CLI administers from `sdk`, naming the seller's principal on the events it writes.
pub(crate) fn seller_store(sdk: &aws_config::SdkConfig, tables: Tables) -> DynamoStore {
    let actor = CallerIdentity {
        sdk: sdk.clone(),
        name: std::sync::Mutex::new(None),
    };
    crate::config::dynamo_store(sdk, tables).with_actor(Arc::new(actor))
}

/// The store the CLI administers.
pub(crate) async fn store() -> Result<DynamoStore, CliError> {
    let (sdk, tables) = configured().await?;
    Ok(seller_store(&sdk, tables))
}

/// The store and the KMS key that seals signing keys, for commands that make a tenant's signing key, and the SDK
/// configuration they came from.
pub(crate) async fn keyed_store()
-> Result<(DynamoStore, crate::signing::KmsVault, aws_config::SdkConfig), CliError> {
    let (sdk, tables) = configured().await?;
    let vault = crate::config::kms_vault(&sdk).map_err(CliError::Config)?;
    Ok((seller_store(&sdk, tables), vault, sdk))
}

/// The store and the mailer, from one SDK configuration, for commands that send key emails. When the stack's
/// API URL (`KEYSTEAD_API_URL`), signing key and files bucket are configured, key emails carry the product's
/// download link as the function's do.
pub(crate) async fn clients() -> Result<(DynamoStore, Arc<dyn Mailer>), CliError> {
    let (sdk, tables) = configured().await?;
    let store = seller_store(&sdk, tables);
    let ses: Arc<dyn Mailer> = Arc::new(crate::mail::SesMailer::with_timeout(
        aws_sdk_ses::config::Builder::from(&sdk),
        std::time::Duration::from_secs(10),
    ));
    let api_url = std::env::var("KEYSTEAD_API_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let (Some(api_url), Ok(vault), Some(files)) = (
        api_url,
        crate::config::kms_vault(&sdk),
        crate::config::files(&sdk),
    ) else {
        return Ok((store, ses));
    };
    let settings = crate::portal::PortalSettings {
        public_url: Some(api_url),
        ..crate::portal::PortalSettings::default()
    };
    let mut portal = crate::portal::Portal::new(Arc::new(vault), settings);
    portal.files = Some(files);
    let mailer = crate::portal::WithDownloads {
        mailer: ses,
        portal: Arc::new(portal),
        store: Arc::new(store.clone()),
    };
    Ok((store, Arc::new(mailer)))
}

/// clap's usage error as one line: the message and what it lists, without the usage block and tips.
fn usage_error_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let mut parts = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.is_empty() {
            if parts.is_empty() {
                continue;
            }
            break;
        }
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        parts.push(line.trim_start_matches("error:").trim());
    }
    format!("{} (see --help)", parts.join(" "))
}

pub fn main() -> ExitCode {
    crate::telemetry::disable_metrics();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `keystead` or `keystead tenant` alone: the list of commands is the useful answer.
        Err(err)
            if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            let _ = err.print();
            return ExitCode::from(CliError::Invalid(String::new()).exit_code());
        }
        Err(err) if err.use_stderr() => {
            eprintln!("keystead: {}", usage_error_line(&err));
            return ExitCode::from(CliError::Invalid(String::new()).exit_code());
        }
        Err(err) => {
            // --help and --version: clap prints them to stdout.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("keystead: cannot start: {err}");
            return ExitCode::from(1);
        }
    };
    let mut out = Output::new(cli.json);
    let result = runtime.block_on(run(cli.command, &mut out));
    match result {
        Ok(()) => {
            out.flush();
            ExitCode::SUCCESS
        }
        Err(err) => {
            if err.keeps_answer() {
                out.flush();
            }
            let message = err.to_string();
            eprintln!("keystead: {}", message.lines().next().unwrap_or_default());
            ExitCode::from(err.exit_code())
        }
    }
}

async fn run(command: Command, out: &mut Output) -> Result<(), CliError> {
    let action = seller_action(&command);
    run_command(command, out).await?;
    if let Some((tenant_id, name)) = action {
        // The command is done: a failure to log it is reported, not turned into the command's failure.
        let logged = async {
            let tenant_id = crate::domain::TenantId::parse(&tenant_id)?;
            let store = store().await?;
            let details = serde_json::json!({"arguments": audited_arguments()});
            webhook::seller_command(&store, &tenant_id, name, details).await
        };
        if let Err(err) = logged.await {
            eprintln!("keystead: warning: the audit log did not record `{name}`: {err}");
        }
    }
    Ok(())
}

async fn run_command(command: Command, out: &mut Output) -> Result<(), CliError> {
    match command {
        Command::Tenant(cmd) => tenant::run(cmd, out).await,
        Command::Product(cmd) => product::run(cmd, out).await,
        Command::License(cmd) => license::run(cmd, out).await,
        Command::Gumroad(cmd) => gumroad::run(cmd, out).await,
        Command::Ses(cmd) => ses::run(cmd, out).await,
        Command::Doctor(args) => doctor::run(args, out).await,
        Command::Migrate(cmd) => migrate::run(cmd, out).await,
        Command::Webhook(cmd) => webhook::run(cmd, out).await,
        Command::Release(cmd) => release::run(cmd, out).await,
        Command::Audit(args) => webhook::audit(args, out).await,
        Command::Dev(cmd) => dev::run(cmd, out).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_errors_lose_their_debug_dump() {
        let detail = "dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111) (DispatchFailure(DispatchFailure { source: x }))";
        assert_eq!(
            without_debug(detail),
            "dispatch failure: io error: client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
        assert_eq!(without_debug("plain"), "plain");
    }
}
