//! `keymint tenant …`: create a tenant and its webhook token, show it, rotate the token, suspend and resume.

use clap::Subcommand;
use serde_json::json;
use time::OffsetDateTime;

use super::{CliError, Output, store};
use crate::domain::{Email, RefundPolicy, Tenant, TenantId, TenantStatus, WebhookToken, rfc3339};
use crate::storage::{Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its webhook token and ping URL once.
    Create {
        tenant_id: String,
        /// The SES-verified address license emails are sent from.
        #[arg(long)]
        sender: String,
        /// Pin the Gumroad seller_id: pings carrying another seller_id are refused.
        #[arg(long)]
        seller_id: Option<String>,
        /// The API's base URL, e.g. the stack's ApiUrl output.
        #[arg(long, env = "KEYMINT_API_URL")]
        api_url: Option<String>,
    },
    /// Show a tenant: status, sender, seller id, products and permalink mappings.
    Show { tenant_id: String },
}

pub(crate) fn ping_url(
    api_url: Option<&str>,
    tenant_id: &TenantId,
    token: &WebhookToken,
) -> String {
    let base = api_url.unwrap_or("<api-url>").trim_end_matches('/');
    format!(
        "{base}/webhooks/gumroad/{tenant_id}?token={}",
        token.expose()
    )
}

pub(crate) async fn load(
    store: &crate::storage::DynamoStore,
    tenant_id: &TenantId,
) -> Result<Tenant, CliError> {
    store
        .load_tenant(tenant_id)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("unknown tenant '{tenant_id}'")))
}

pub async fn run(command: TenantCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        TenantCommand::Create {
            tenant_id,
            sender,
            seller_id,
            api_url,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let sender = Email::parse(&sender)
                .map_err(|_| CliError::Invalid(format!("invalid sender address '{sender}'")))?;
            let token = WebhookToken::generate();
            let tenant = Tenant {
                tenant_id: tenant_id.clone(),
                status: TenantStatus::Active,
                token_hash: token.hash().to_hex(),
                seller_id: seller_id.filter(|s| !s.is_empty()),
                sender,
                permalinks: Default::default(),
                gumroad_enabled: true,
                refund_policy: RefundPolicy::default(),
                created_at: rfc3339(OffsetDateTime::now_utc()),
                products: Default::default(),
            };
            let store = store().await?;
            store.create_tenant(&tenant).await.map_err(|e| match e {
                StoreError::AlreadyExists => {
                    CliError::AlreadyExists(format!("tenant '{tenant_id}' already exists"))
                }
                other => other.into(),
            })?;
            let url = ping_url(api_url.as_deref(), &tenant_id, &token);
            out.line(format!("Created tenant {tenant_id}."));
            out.line(format!("Webhook token (shown once): {}", token.expose()));
            out.line(format!("Ping URL: {url}"));
            out.document(json!({"tenant_id": tenant_id, "token": token.expose(), "ping_url": url}));
        }
        TenantCommand::Show { tenant_id } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let tenant = load(&store().await?, &tenant_id).await?;
            show(&tenant, out);
        }
    }
    Ok(())
}

fn show(tenant: &Tenant, out: &mut Output) {
    let status = match tenant.status {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
    };
    out.line(format!("Tenant {}: {status}", tenant.tenant_id));
    out.line(format!("Sender: {}", tenant.sender));
    out.line(format!(
        "Seller id: {}",
        tenant.seller_id.as_deref().unwrap_or("(not pinned)")
    ));
    out.line("Products:");
    for p in tenant.products.values() {
        let duration = p
            .duration_days
            .map_or_else(|| "no expiry".to_owned(), |d| format!("{d} days"));
        out.line(format!(
            "  {}  {}  prefix {}  {} activations  {duration}",
            p.product_id, p.name, p.key_prefix, p.activation_limit
        ));
    }
    out.line("Permalinks:");
    for (slug, product) in &tenant.permalinks {
        out.line(format!("  {slug} -> {product}"));
    }
    out.document(json!({
        "tenant_id": tenant.tenant_id,
        "status": status,
        "sender": tenant.sender.as_str(),
        "seller_id": tenant.seller_id,
        "products": tenant.products.values().map(|p| json!({
            "product_id": p.product_id,
            "name": p.name,
            "key_prefix": p.key_prefix,
            "activation_limit": p.activation_limit,
            "duration_days": p.duration_days,
        })).collect::<Vec<_>>(),
        "permalinks": tenant.permalinks,
    }));
}
