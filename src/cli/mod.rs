//! The admin CLI `keymint`: every command a seller runs, from the first tenant to a resent email. Each command
//! prints a short human answer, or exactly one JSON document with `--json`; failures are one line on stderr.

mod dev;
mod output;
mod product;
mod tenant;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::storage::{DynamoStore, StoreError, Tables};

pub use output::Output;

#[derive(Debug, Parser)]
#[command(
    name = "keymint",
    version,
    about = "Administer keymint: tenants, products, licenses and Gumroad subscriptions"
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
    /// Local development helpers used by infra/local/up and the tests.
    #[command(subcommand)]
    Dev(dev::DevCommand),
}

/// A failure, shown to the seller as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Config(String),
    #[error("AWS unreachable or failing: {0}")]
    Aws(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Invalid(_) => 2,
            Self::NotFound(_) => 3,
            Self::AlreadyExists(_) => 4,
            Self::Config(_) => 5,
            Self::Aws(_) => 6,
            Self::Other(_) => 1,
        }
    }
}

impl From<StoreError> for CliError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(detail) => Self::Aws(first_line(&detail)),
            StoreError::Corrupt(detail) => {
                Self::Other(format!("stored record is corrupt: {}", first_line(&detail)))
            }
            StoreError::AlreadyExists => Self::AlreadyExists("already exists".to_owned()),
            StoreError::NotFound => Self::NotFound("not found".to_owned()),
        }
    }
}

impl From<crate::domain::InvalidValue> for CliError {
    fn from(err: crate::domain::InvalidValue) -> Self {
        Self::Invalid(err.0)
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect()
}

/// The store the CLI administers, configured exactly like the function.
pub(crate) async fn store() -> Result<DynamoStore, CliError> {
    let tables = Tables::from_env().map_err(CliError::Config)?;
    let sdk = crate::config::aws().await;
    Ok(crate::config::dynamo_store(&sdk, tables))
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("keymint: cannot start: {err}");
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
            eprintln!("keymint: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

async fn run(command: Command, out: &mut Output) -> Result<(), CliError> {
    match command {
        Command::Tenant(cmd) => tenant::run(cmd, out).await,
        Command::Product(cmd) => product::run(cmd, out).await,
        Command::Dev(cmd) => dev::run(cmd, out).await,
    }
}
