//! `keymint dev …`: what the local stack and the tests need that a seller in production never runs.

use clap::Subcommand;

use super::{CliError, Output};

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Create the DynamoDB tables defined in template.yaml (if missing) and print `export` lines for their names.
    CreateTables {
        #[arg(long, default_value = "template.yaml")]
        template: String,
        /// Local table names are `<prefix>-tenants`, `<prefix>-licenses`, …
        #[arg(long, default_value = "keymint")]
        prefix: String,
    },
    /// Verify an SES sender identity (against the SES emulator locally).
    VerifySender { email: String },
}

pub async fn run(command: DevCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        DevCommand::CreateTables { template, prefix } => {
            let text = std::fs::read_to_string(&template)
                .map_err(|e| CliError::Config(format!("cannot read {template}: {e}")))?;
            let specs = crate::storage::table_specs(&text).map_err(CliError::Config)?;
            let sdk = crate::config::aws().await;
            let client = aws_sdk_dynamodb::Client::new(&sdk);
            let names = crate::storage::create_tables(&client, &specs, &prefix).await?;
            let mut doc = serde_json::Map::new();
            for (var, name) in names {
                out.line(format!("export {var}={name}"));
                doc.insert(var, name.into());
            }
            out.document(doc.into());
        }
        DevCommand::VerifySender { email } => {
            let email = crate::domain::Email::parse(&email)?;
            let sdk = crate::config::aws().await;
            aws_sdk_ses::Client::new(&sdk)
                .verify_email_identity()
                .email_address(email.as_str())
                .send()
                .await
                .map_err(|e| {
                    CliError::Aws(aws_sdk_ses::error::DisplayErrorContext(&e).to_string())
                })?;
            out.line(format!("verified {email}"));
            out.document(serde_json::json!({"verified": email.as_str()}));
        }
    }
    Ok(())
}
