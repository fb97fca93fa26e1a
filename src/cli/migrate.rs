//! `keystead migrate`: one-off changes to stored records that an upgrade needs. Each is idempotent and safe to
//! run again, or to stop half-way and run again.

use clap::Subcommand;
use serde_json::json;

use super::{CliError, Output};
use crate::domain::TenantId;
use crate::storage::Store as _;
use crate::storage::TtlRemoval;

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Remove the DynamoDB TTL that keystead before this version set on licenses (30 days after their expiry)
    /// and on the markers of sales not seen yet. Run it once after deploying this version.
    Ttl(Scope),
    /// Seal the license keys that keystead before this version stored in plaintext (under the stack's KMS key,
    /// as every key sold now is). Needs KEYSTEAD_SIGNING_KEY_ID. Run it once after deploying this version.
    SealKeys(Scope),
}

/// What a migration runs on: one tenant or `--all`, for real or `--dry-run`.
#[derive(Debug, clap::Args)]
pub struct Scope {
    /// The tenant to migrate; `--all` for every tenant.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    tenant_id: Option<String>,
    #[arg(long)]
    all: bool,
    /// Count what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
}

impl Scope {
    /// The tenant named, or with `--all` every tenant.
    async fn tenants(
        &self,
        store: &crate::storage::DynamoStore,
    ) -> Result<Vec<TenantId>, CliError> {
        Ok(match &self.tenant_id {
            Some(id) if !self.all => vec![TenantId::parse(id)?],
            _ => store.tenant_ids().await?,
        })
    }
}

pub async fn run(command: MigrateCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        MigrateCommand::Ttl(scope) => {
            let dry_run = scope.dry_run;
            let store = super::store().await?;
            let tenants = scope.tenants(&store).await?;
            let mut total = TtlRemoval::default();
            let mut per_tenant = Vec::new();
            for tenant_id in &tenants {
                let removal = store.remove_durable_ttls(tenant_id, dry_run).await?;
                total.licenses += removal.licenses;
                total.markers += removal.markers;
                per_tenant.push(json!({
                    "tenant_id": tenant_id,
                    "licenses": removal.licenses,
                    "markers": removal.markers,
                }));
            }
            let verb = if dry_run { "would remove" } else { "removed" };
            out.line(format!(
                "{verb} the TTL of {} license(s) and {} sale marker(s) in {} tenant(s)",
                total.licenses,
                total.markers,
                tenants.len()
            ));
            out.document(json!({
                "dry_run": dry_run,
                "licenses": total.licenses,
                "markers": total.markers,
                "tenants": per_tenant,
            }));
            Ok(())
        }
        MigrateCommand::SealKeys(scope) => {
            let dry_run = scope.dry_run;
            let store = super::store().await?;
            let tenants = scope.tenants(&store).await?;
            let mut total = 0;
            let mut per_tenant = Vec::new();
            for tenant_id in &tenants {
                let sealed = store.seal_plain_keys(tenant_id, dry_run).await?;
                total += sealed;
                per_tenant.push(json!({"tenant_id": tenant_id, "sealed": sealed}));
            }
            let verb = if dry_run { "would seal" } else { "sealed" };
            out.line(format!(
                "{verb} {total} license key(s) stored in plaintext, in {} tenant(s)",
                tenants.len()
            ));
            out.document(json!({"dry_run": dry_run, "sealed": total, "tenants": per_tenant}));
            Ok(())
        }
    }
}
