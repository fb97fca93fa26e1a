//! `keystead tenant …`: create a tenant and its webhook token, show it, rotate the token, suspend and resume.

use clap::Subcommand;
use serde_json::json;
use time::OffsetDateTime;

use super::ses::SesAdmin;
use super::{CliError, Output, configured, keyed_store, store};
use crate::domain::{Email, RefundPolicy, Tenant, TenantId, TenantStatus, WebhookToken, rfc3339};
use crate::signing;
use crate::storage::{DynamoStore, Retirement, SigningKeyStore, Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its webhook token and ping URL once.
    Create {
        tenant_id: String,
        /// The SES-verified address license emails are sent from (the address, or any address at a verified
        /// domain).
        #[arg(long)]
        sender: String,
        /// Pin the Gumroad seller_id: pings carrying another seller_id are refused.
        #[arg(long)]
        seller_id: Option<String>,
        /// The API's base URL, e.g. the stack's ApiUrl output.
        #[arg(long, env = "KEYSTEAD_API_URL")]
        api_url: Option<String>,
        /// Accept a sender SES has not verified yet (key emails fail until it is).
        #[arg(long)]
        skip_ses_check: bool,
    },
    /// Replace the webhook token: the old one stops working at once; prints the new ping URL once.
    RotateToken {
        tenant_id: String,
        /// The API's base URL, e.g. the stack's ApiUrl output.
        #[arg(long, env = "KEYSTEAD_API_URL")]
        api_url: Option<String>,
    },
    /// Make a new signing key for the tenant's leases; the old one stays published until its last lease expires.
    RotateSigningKey {
        tenant_id: String,
        /// The old key leaked: drop it from the JWKS at once, so every lease it signed stops verifying as soon as
        /// apps fetch the key set again (they must then check in for a new lease).
        #[arg(long)]
        revoke_now: bool,
    },
    /// Refuse the tenant's pings (403) until it is resumed.
    Suspend { tenant_id: String },
    /// Accept the tenant's pings again.
    Resume { tenant_id: String },
    /// Show a tenant: status, sender, seller id, products and permalink mappings.
    Show { tenant_id: String },
    /// Change a tenant's settings.
    Set {
        tenant_id: String,
        /// What a full refund does to the sale's license: revoke it (the default) or keep it.
        #[arg(long, value_parser = ["revoke", "keep"])]
        refund_policy: Option<String>,
        /// Accept Gumroad pings for this tenant (enabled) or refuse them like a wrong token (disabled).
        #[arg(long, value_parser = ["enabled", "disabled"])]
        gumroad: Option<String>,
        /// The SES-verified address license emails are sent from.
        #[arg(long)]
        sender: Option<String>,
        /// Accept a --sender SES has not verified yet (key emails fail until it is).
        #[arg(long, requires = "sender")]
        skip_ses_check: bool,
        /// Pin the Gumroad seller_id: pings carrying another seller_id are refused.
        #[arg(long)]
        seller_id: Option<String>,
        /// Confirm every new sale with Gumroad's sales API before minting (`on` stores GUMROAD_ACCESS_TOKEN
        /// sealed under KMS; `off` forgets it).
        #[arg(long, value_parser = ["on", "off"])]
        verify_sales: Option<String>,
        /// Answer Gumroad's own license API (`/gumroad/<tenant>/v2/licenses/verify`) for apps moving from Gumroad's
        /// keys; it tells any key holder the buyer's email and name, so it is off unless needed.
        #[arg(long, value_parser = ["on", "off"])]
        gumroad_verify: Option<String>,
    },
}

/// The API base URL without a trailing slash; only http(s) URLs make a ping URL Gumroad can call.
pub(crate) fn api_base(api_url: Option<&str>) -> Result<Option<String>, CliError> {
    let Some(raw) = api_url.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let valid = raw.parse::<ureq::http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|h| !h.is_empty())
            && uri.query().is_none()
    });
    if !valid {
        return Err(CliError::Invalid(format!(
            "invalid API URL '{raw}': expected the stack's ApiUrl, e.g. https://abc123.execute-api.us-east-1.amazonaws.com"
        )));
    }
    Ok(Some(raw.trim_end_matches('/').to_owned()))
}

pub(crate) fn ping_url(
    api_base: Option<&str>,
    tenant_id: &TenantId,
    token: &WebhookToken,
) -> String {
    let base = api_base.unwrap_or("<api-url>");
    format!(
        "{base}/webhooks/gumroad/{tenant_id}?token={}",
        token.expose()
    )
}

/// What a seller who skipped the SES check is told: the emails fail until the sender is verified.
fn skipped_ses_check(tenant_id: &TenantId, sender: &Email) -> String {
    format!(
        "SES check skipped: key emails from {sender} fail until SES has verified it (`keystead ses verify {sender}`); `keystead doctor {tenant_id}` tells when it is."
    )
}

pub(crate) async fn load(store: &DynamoStore, tenant_id: &TenantId) -> Result<Tenant, CliError> {
    store
        .load_tenant(tenant_id)
        .await?
        .ok_or_else(|| unknown(tenant_id))
}

pub(crate) fn unknown(tenant_id: &TenantId) -> CliError {
    CliError::NotFound(format!("unknown tenant '{tenant_id}'"))
}

fn status_str(status: TenantStatus) -> &'static str {
    match status {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
    }
}

/// The `kid` the Gumroad access token for read-back is sealed under (the IAM policy allows only `tenant_id` and
/// `kid` as encryption context).
const READBACK_TOKEN_KID: &str = "gumroad-token";

/// The answer of `create` and `rotate-token`: the only time the token is ever shown.
fn print_token(out: &mut Output, tenant_id: &TenantId, token: &WebhookToken, url: &str) {
    out.fields(&[
        ("Webhook token", format!("{} (shown once)", token.expose())),
        ("Ping URL", url.to_owned()),
    ]);
    if url.starts_with("<api-url>") {
        out.line("Replace <api-url> with the stack's ApiUrl output (or pass --api-url / set KEYSTEAD_API_URL).");
    }
    out.document(json!({"tenant_id": tenant_id, "token": token.expose(), "ping_url": url}));
}

pub async fn run(command: TenantCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        TenantCommand::Create {
            tenant_id,
            sender,
            seller_id,
            api_url,
            skip_ses_check,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let sender = Email::parse(&sender)
                .map_err(|_| CliError::Invalid(format!("invalid sender address '{sender}'")))?;
            let base = api_base(api_url.as_deref())?;
            let token = WebhookToken::generate()?;
            let tenant = Tenant {
                seller_id: seller_id
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty()),
                ..Tenant::new(
                    tenant_id.clone(),
                    token.hash().to_hex(),
                    sender,
                    rfc3339(OffsetDateTime::now_utc()),
                )
            };
            let (store, vault, sdk) = keyed_store().await?;
            if !skip_ses_check {
                SesAdmin::new(&sdk).require_verified(&tenant.sender).await?;
            }
            let (signing_key, _) =
                signing::seal_new(&vault, &tenant_id, OffsetDateTime::now_utc()).await?;
            store.create_tenant(&tenant).await.map_err(|e| match e {
                StoreError::AlreadyExists => CliError::AlreadyExists(format!(
                    "tenant '{tenant_id}' already exists (use `keystead tenant rotate-token {tenant_id}` for a new ping URL)"
                )),
                other => other.into(),
            })?;
            // Were this to fail, the tenant's first lease would make the key instead.
            store
                .install_signing_key(&tenant_id, &signing_key, None)
                .await?;
            let url = ping_url(base.as_deref(), &tenant_id, &token);
            out.line(format!("Created tenant {tenant_id}."));
            print_token(out, &tenant_id, &token, &url);
            out.line(format!("Signing key:    {} (leases are verified with GET <api-url>/v1/{tenant_id}/jwks.json)", signing_key.kid));
            if skip_ses_check {
                out.line(skipped_ses_check(&tenant_id, &tenant.sender));
            }
            out.document(json!({
                "tenant_id": tenant_id,
                "token": token.expose(),
                "ping_url": url,
                "ses_check": if skip_ses_check { "skipped" } else { "verified" },
            }));
        }
        TenantCommand::RotateSigningKey {
            tenant_id,
            revoke_now,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let (store, vault, _) = keyed_store().await?;
            let tenant = load(&store, &tenant_id).await?;
            let now = OffsetDateTime::now_utc();
            let (key, _) = signing::seal_new(&vault, &tenant_id, now).await?;
            let retirement = tenant.current_signing_key().map(|old| Retirement {
                kid: old.kid.clone(),
                retired_at: rfc3339(now),
                publish_until: if revoke_now {
                    // Published until this very second: gone from the next key set served.
                    now.unix_timestamp()
                } else {
                    // Every lease the old key signed has expired by then (plus the verifiers' clock skew).
                    now.unix_timestamp()
                        + i64::try_from(tenant.longest_lease_seconds()).unwrap_or(i64::MAX / 2)
                        + keystead_verify::CLOCK_SKEW_SECONDS
                },
            });
            let installed = store
                .install_signing_key(&tenant_id, &key, retirement.as_ref())
                .await?;
            if !installed {
                return Err(CliError::Conflict(format!(
                    "the signing key of tenant '{tenant_id}' changed while rotating it; run the command again"
                )));
            }
            let until = retirement
                .as_ref()
                .and_then(|r| OffsetDateTime::from_unix_timestamp(r.publish_until).ok())
                .map(rfc3339);
            out.line(format!(
                "Rotated the signing key of tenant {tenant_id}: new leases carry kid {}.",
                key.kid
            ));
            match (&retirement, &until) {
                (Some(old), Some(_)) if revoke_now => out.line(format!(
                    "Key {} is revoked: running functions drop it from the JWKS within a minute, and apps that fetch the key set again (it is cached for a minute) stop trusting the leases it signed. Apps holding a pinned or long-cached key set trust them until they expire. Every app needs a new lease: its next check-in gets one.",
                    old.kid
                )),
                (Some(old), Some(until)) => out.line(format!(
                    "Key {} signs nothing more and stays in the JWKS until {until}, when its last lease has expired.",
                    old.kid
                )),
                _ => {}
            }
            out.line("Running functions pick up the new key within a minute.");
            out.document(json!({
                "tenant_id": tenant_id,
                "kid": key.kid,
                "retired_kid": retirement.as_ref().map(|r| r.kid.clone()),
                "retired_published_until": until,
                "revoked": revoke_now && retirement.is_some(),
            }));
        }
        TenantCommand::RotateToken { tenant_id, api_url } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let base = api_base(api_url.as_deref())?;
            let token = WebhookToken::generate()?;
            store()
                .await?
                .set_token_hash(&tenant_id, token.hash())
                .await
                .map_err(|e| match e {
                    StoreError::NotFound => unknown(&tenant_id),
                    other => other.into(),
                })?;
            let url = ping_url(base.as_deref(), &tenant_id, &token);
            out.line(format!(
                "Rotated the webhook token of tenant {tenant_id}: the old ping URL no longer works."
            ));
            print_token(out, &tenant_id, &token, &url);
            out.line("Update the ping URL in Gumroad (or run `keystead gumroad subscribe` again).");
        }
        TenantCommand::Suspend { tenant_id } => {
            set_status(&tenant_id, TenantStatus::Suspended, out).await?;
        }
        TenantCommand::Resume { tenant_id } => {
            set_status(&tenant_id, TenantStatus::Active, out).await?;
        }
        TenantCommand::Show { tenant_id } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let tenant = load(&store().await?, &tenant_id).await?;
            show(&tenant, out);
        }
        TenantCommand::Set {
            tenant_id,
            refund_policy,
            gumroad,
            sender,
            skip_ses_check,
            seller_id,
            verify_sales,
            gumroad_verify,
        } => {
            use aws_sdk_dynamodb::types::AttributeValue;
            let tenant_id = TenantId::parse(&tenant_id)?;
            let mut changes: Vec<(&str, AttributeValue)> = Vec::new();
            if let Some(policy) = refund_policy {
                changes.push(("refund_policy", AttributeValue::S(policy)));
            }
            if let Some(state) = gumroad {
                changes.push(("gumroad_enabled", AttributeValue::Bool(state == "enabled")));
            }
            let sender = sender
                .map(|raw| {
                    Email::parse(&raw)
                        .map_err(|_| CliError::Invalid(format!("invalid sender address '{raw}'")))
                })
                .transpose()?;
            if let Some(sender) = &sender {
                changes.push(("sender", AttributeValue::S(sender.to_string())));
            }
            if let Some(seller) = seller_id.map(|s| s.trim().to_owned()) {
                if seller.is_empty() {
                    return Err(CliError::Invalid("seller id must not be empty".to_owned()));
                }
                changes.push(("seller_id", AttributeValue::S(seller)));
            }
            if let Some(state) = gumroad_verify {
                changes.push(("gumroad_verify", AttributeValue::Bool(state == "on")));
            }
            if changes.is_empty() && verify_sales.is_none() {
                return Err(CliError::Invalid(
                    "nothing to change: give --refund-policy, --gumroad, --sender, --seller-id, --verify-sales or --gumroad-verify"
                        .to_owned(),
                ));
            }
            let (sdk, tables) = configured().await?;
            let store = super::seller_store(&sdk, tables);
            if let Some(sender) = sender.as_ref().filter(|_| !skip_ses_check) {
                // An unknown tenant is named as such, not as an unverified sender.
                load(&store, &tenant_id).await?;
                SesAdmin::new(&sdk).require_verified(sender).await?;
            }
            match verify_sales.as_deref() {
                Some("on") => {
                    // Read (and checked) first, so that a missing token changes nothing.
                    let api =
                        super::gumroad_api::GumroadApi::from_env().map_err(CliError::Config)?;
                    let (_, vault, _) = keyed_store().await?;
                    let sealed = signing::seal(
                        &vault,
                        &tenant_id,
                        READBACK_TOKEN_KID,
                        api.token().as_bytes(),
                    )
                    .await?;
                    let sealed = serde_dynamo::to_attribute_value(&sealed)
                        .map_err(|e| CliError::Other(e.to_string()))?;
                    changes.push(("gumroad_token", sealed));
                    changes.push(("verify_sales", AttributeValue::Bool(true)));
                }
                Some(_) => {
                    changes.push(("gumroad_token", AttributeValue::Null(true)));
                    changes.push(("verify_sales", AttributeValue::Bool(false)));
                }
                None => {}
            }
            store
                .update_tenant(&tenant_id, &changes)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound => {
                        CliError::NotFound(format!("unknown tenant '{tenant_id}'"))
                    }
                    other => other.into(),
                })?;
            let tenant = load(&store, &tenant_id).await?;
            out.line(format!("Updated tenant {tenant_id}."));
            show(&tenant, out);
            if let Some(sender) = sender.as_ref().filter(|_| skip_ses_check) {
                out.line(skipped_ses_check(&tenant_id, sender));
            }
        }
    }
    Ok(())
}

async fn set_status(
    tenant_id: &str,
    status: TenantStatus,
    out: &mut Output,
) -> Result<(), CliError> {
    let tenant_id = TenantId::parse(tenant_id)?;
    let store = store().await?;
    let tenant = load(&store, &tenant_id).await?;
    let changed = tenant.status != status;
    if changed {
        store
            .set_tenant_status(&tenant_id, status)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => unknown(&tenant_id),
                other => other.into(),
            })?;
    }
    out.line(match (status, changed) {
        (TenantStatus::Suspended, true) => {
            format!(
                "Suspended tenant {tenant_id}: its pings are refused (403) until it is resumed."
            )
        }
        (TenantStatus::Active, true) => {
            format!("Resumed tenant {tenant_id}: its pings are accepted again.")
        }
        (_, false) => format!("Tenant {tenant_id} is already {}.", status_str(status)),
    });
    out.document(json!({
        "tenant_id": tenant_id,
        "status": status_str(status),
        "changed": changed,
    }));
    Ok(())
}

fn show(tenant: &Tenant, out: &mut Output) {
    let status = status_str(tenant.status);
    out.fields(&[
        ("Tenant", tenant.tenant_id.to_string()),
        ("Status", status.to_owned()),
        ("Sender", tenant.sender.to_string()),
        (
            "Seller id",
            tenant
                .seller_id
                .clone()
                .unwrap_or_else(|| "(not pinned)".to_owned()),
        ),
        (
            "Refunds",
            match tenant.refund_policy {
                RefundPolicy::Revoke => "revoke the license".to_owned(),
                RefundPolicy::Keep => "keep the license".to_owned(),
            },
        ),
        (
            "Gumroad",
            if tenant.gumroad_enabled {
                "enabled"
            } else {
                "disabled"
            }
            .to_owned(),
        ),
        (
            "Read-back",
            if tenant.verify_sales {
                "on: new sales are confirmed with Gumroad's sales API".to_owned()
            } else {
                "off".to_owned()
            },
        ),
        (
            "Gumroad verify",
            match (tenant.gumroad_verify, tenant.answers_gumroad_verify()) {
                (true, _) => "on: /gumroad/<tenant>/v2/licenses/verify answers".to_owned(),
                (false, true) => "on: a product keeps Gumroad's keys".to_owned(),
                (false, false) => "off".to_owned(),
            },
        ),
        ("Created", tenant.created_at.clone()),
    ]);
    if tenant.products.is_empty() {
        out.line("Products:   (none)");
    } else {
        out.line("Products:");
        let rows: Vec<Vec<String>> = tenant
            .products
            .values()
            .map(|p| {
                vec![
                    format!("  {}", p.product_id),
                    p.name.clone(),
                    p.key_prefix.to_string(),
                    p.activation_limit.to_string(),
                    p.duration_days
                        .map_or_else(|| "never".to_owned(), |d| format!("{d} days")),
                    if p.entitlements.is_empty() {
                        "-".to_owned()
                    } else {
                        p.entitlements.join(",")
                    },
                ]
            })
            .collect();
        out.table(
            &[
                "  PRODUCT",
                "NAME",
                "PREFIX",
                "ACTIVATIONS",
                "EXPIRES AFTER",
                "ENTITLEMENTS",
            ],
            &rows,
        );
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let keys: Vec<_> = tenant.published_signing_keys(now).collect();
    if keys.is_empty() {
        out.line("Signing:    no key yet (made with the first lease)");
    } else {
        out.line("Signing keys:");
        for key in &keys {
            let state = match key.publish_until {
                _ if tenant.signing_kid.as_deref() == Some(key.kid.as_str()) => {
                    "current".to_owned()
                }
                Some(until) => format!(
                    "retired, published until {}",
                    OffsetDateTime::from_unix_timestamp(until)
                        .map(rfc3339)
                        .unwrap_or_default()
                ),
                None => "retired".to_owned(),
            };
            out.line(format!(
                "  {}  created {}  {state}",
                key.kid, key.created_at
            ));
        }
    }
    let files: Vec<_> = tenant
        .products
        .values()
        .filter_map(|p| p.file.as_ref().map(|f| (p, f)))
        .collect();
    if !files.is_empty() {
        out.line("Downloads:");
        for (product, file) in files {
            out.line(format!(
                "  {}  {}  {}  sha256 {}",
                product.product_id,
                file.name,
                file.human_size(),
                file.sha256
            ));
        }
    }
    if tenant.permalinks.is_empty() && tenant.variants.is_empty() {
        out.line("Permalinks: (none)");
    } else {
        out.line("Permalinks:");
        for (slug, product) in &tenant.permalinks {
            out.line(format!("  {slug} -> {product}"));
        }
        for mapping in &tenant.variants {
            out.line(format!(
                "  {} [{}] -> {}",
                mapping.permalink, mapping.variant, mapping.product_id
            ));
        }
    }
    out.document(json!({
        "tenant_id": tenant.tenant_id,
        "status": status,
        "sender": tenant.sender.as_str(),
        "seller_id": tenant.seller_id,
        "refund_policy": tenant.refund_policy,
        "gumroad_enabled": tenant.gumroad_enabled,
        "verify_sales": tenant.verify_sales,
        "gumroad_verify": tenant.answers_gumroad_verify(),
        "created_at": tenant.created_at,
        "products": tenant.products.values().map(|p| {
            let mut product = json!({
                "product_id": p.product_id,
                "name": p.name,
                "key_prefix": p.key_prefix,
                "activation_limit": p.activation_limit,
                "duration_days": p.duration_days,
                "entitlements": p.entitlements,
            });
            if let Some(file) = &p.file {
                product["file"] = json!(file);
            }
            product
        }).collect::<Vec<_>>(),
        "permalinks": tenant.permalinks,
        "signing_keys": keys.iter().map(|k| json!({
            "kid": k.kid,
            "created_at": k.created_at,
            "current": tenant.signing_kid.as_deref() == Some(k.kid.as_str()),
            "retired_at": k.retired_at,
            "publish_until": k.publish_until,
        })).collect::<Vec<_>>(),
        "variant_mappings": tenant.variants.iter().map(|m| json!({
            "permalink": m.permalink,
            "variant": m.variant.to_string(),
            "category": m.variant.category,
            "name": m.variant.name,
            "product_id": m.product_id,
        })).collect::<Vec<_>>(),
    }));
}
