//! `keymint product …`: products with their key type, and the Gumroad permalinks that sell them.

use clap::Subcommand;
use serde_json::json;
use time::OffsetDateTime;

use super::tenant::load;
use super::{CliError, Output, store};
use crate::domain::{KeyPrefix, Permalink, Product, ProductId, TenantId, rfc3339};
use crate::storage::StoreError;

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// Create a product and its default key type.
    Create {
        tenant_id: String,
        product_id: String,
        #[arg(long)]
        name: String,
        /// 1–12 characters of A-Z and 0-9, e.g. ACME.
        #[arg(long)]
        key_prefix: String,
        #[arg(long, default_value_t = Product::DEFAULT_ACTIVATION_LIMIT)]
        activation_limit: u32,
        /// Licenses expire this many days after issue (default: never).
        #[arg(long)]
        duration_days: Option<u32>,
    },
    /// Delete a product that no permalink maps to any more. Its licenses stay valid.
    Delete {
        tenant_id: String,
        product_id: String,
    },
    /// Map a Gumroad permalink (slug or https://…/l/<slug> URL) to a product.
    Map {
        tenant_id: String,
        permalink: String,
        product_id: String,
    },
    /// Remove a permalink mapping (slug or https://…/l/<slug> URL): its pings are refused again.
    Unmap {
        tenant_id: String,
        permalink: String,
    },
}

fn no_such_product(tenant_id: &TenantId, product_id: &ProductId) -> CliError {
    CliError::NotFound(format!(
        "product '{product_id}' does not exist for tenant '{tenant_id}'"
    ))
}

pub async fn run(command: ProductCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        ProductCommand::Create {
            tenant_id,
            product_id,
            name,
            key_prefix,
            activation_limit,
            duration_days,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let name = crate::gumroad::one_line(&name);
            if name.is_empty() {
                return Err(CliError::Invalid(
                    "product name must not be empty".to_owned(),
                ));
            }
            if activation_limit == 0 {
                return Err(CliError::Invalid(
                    "activation limit must be at least 1".to_owned(),
                ));
            }
            if duration_days == Some(0) {
                return Err(CliError::Invalid(
                    "duration must be at least 1 day".to_owned(),
                ));
            }
            let product = Product {
                product_id: ProductId::parse(&product_id)?,
                name,
                key_prefix: KeyPrefix::parse(&key_prefix)?,
                activation_limit,
                duration_days,
                created_at: rfc3339(OffsetDateTime::now_utc()),
            };
            let store = store().await?;
            load(&store, &tenant_id).await?;
            store
                .create_product(&tenant_id, &product)
                .await
                .map_err(|e| match e {
                    StoreError::AlreadyExists => CliError::AlreadyExists(format!(
                        "product '{}' already exists for tenant '{tenant_id}'",
                        product.product_id
                    )),
                    other => other.into(),
                })?;
            out.line(format!(
                "Created product {} ({}) for tenant {tenant_id}.",
                product.product_id, product.name
            ));
            out.document(json!({
                "tenant_id": tenant_id,
                "product_id": product.product_id,
                "name": product.name,
                "key_prefix": product.key_prefix,
                "activation_limit": product.activation_limit,
                "duration_days": product.duration_days,
            }));
        }
        ProductCommand::Map {
            tenant_id,
            permalink,
            product_id,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let permalink = Permalink::parse(&permalink)?;
            let product_id = ProductId::parse(&product_id)?;
            let store = store().await?;
            let tenant = load(&store, &tenant_id).await?;
            if tenant.product(&product_id).is_none() {
                return Err(CliError::NotFound(format!(
                    "product '{product_id}' does not exist for tenant '{tenant_id}': create it first with `keymint product create`"
                )));
            }
            store
                .set_permalink(&tenant_id, &permalink, Some(&product_id))
                .await?;
            let previous = tenant
                .permalinks
                .get(&permalink)
                .filter(|p| **p != product_id)
                .map(|p| format!(" (was {p})"))
                .unwrap_or_default();
            out.line(format!(
                "Mapped permalink {permalink} to product {product_id}{previous}."
            ));
            out.document(
                json!({"tenant_id": tenant_id, "permalink": permalink, "product_id": product_id}),
            );
        }
        ProductCommand::Delete {
            tenant_id,
            product_id,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let product_id = ProductId::parse(&product_id)?;
            let store = store().await?;
            let tenant = load(&store, &tenant_id).await?;
            if tenant.product(&product_id).is_none() {
                return Err(no_such_product(&tenant_id, &product_id));
            }
            let mapped: Vec<&str> = tenant
                .permalinks
                .iter()
                .filter(|(_, p)| **p == product_id)
                .map(|(slug, _)| slug.as_str())
                .collect();
            if let Some(first) = mapped.first() {
                return Err(CliError::Conflict(format!(
                    "product '{product_id}' is still mapped from permalink(s) {}: unmap them first (`keymint product unmap {tenant_id} {first}`)",
                    mapped.join(", ")
                )));
            }
            store
                .delete_product(&tenant_id, &product_id)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound => no_such_product(&tenant_id, &product_id),
                    other => other.into(),
                })?;
            out.line(format!(
                "Deleted product {product_id} of tenant {tenant_id}; its licenses are unchanged."
            ));
            out.document(
                json!({"tenant_id": tenant_id, "product_id": product_id, "deleted": true}),
            );
        }
        ProductCommand::Unmap {
            tenant_id,
            permalink,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let permalink = Permalink::parse(&permalink)?;
            let store = store().await?;
            let tenant = load(&store, &tenant_id).await?;
            let not_mapped = || {
                CliError::NotFound(format!(
                    "permalink '{permalink}' is not mapped for tenant '{tenant_id}' (see `keymint tenant show {tenant_id}`)"
                ))
            };
            let Some(product_id) = tenant.permalinks.get(&permalink).cloned() else {
                return Err(not_mapped());
            };
            store
                .unmap_permalink(&tenant_id, &permalink)
                .await
                .map_err(|e| match e {
                    StoreError::NotFound => not_mapped(),
                    other => other.into(),
                })?;
            out.line(format!(
                "Unmapped permalink {permalink} (was product {product_id}): its pings are now refused."
            ));
            out.document(json!({
                "tenant_id": tenant_id,
                "permalink": permalink,
                "product_id": product_id,
                "unmapped": true,
            }));
        }
    }
    Ok(())
}
