//! `keystead product …`: products with their key type, and the Gumroad permalinks that sell them.

use clap::Subcommand;
use serde_json::json;
use time::OffsetDateTime;

use super::tenant::load;
use super::{CliError, Output, store};
use crate::domain::releases::AfterExpiry;
use crate::domain::{
    EmailKey, KeyPrefix, KeySource, MAX_SEATS, Permalink, Product, ProductId, TenantId, Variant,
    VariantMapping, format_duration, parse_duration, parse_entitlements, rfc3339,
};
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
        /// Feature names its licenses unlock, comma-separated (answered by validate and activate).
        #[arg(long)]
        entitlements: Option<String>,
        /// A machine's seat lasts this long after its last activate or validate (90s, 12h, 7d); default: until
        /// deactivated.
        #[arg(long)]
        seat_lease: Option<String>,
        /// How long a signed lease lasts when seats do not expire (default 30d).
        #[arg(long)]
        token_ttl: Option<String>,
        /// Whose keys its licenses carry: keystead's own (default) or the `license_key` Gumroad already issued.
        #[arg(long, value_parser = ["gumroad", "keystead"])]
        key_source: Option<String>,
        /// Send the key email: `always` (default for keystead keys) or `never` (default for Gumroad's keys).
        #[arg(long, value_parser = ["always", "never"])]
        email_key: Option<String>,
    },
    /// Change a product: its name, and the key type of the licenses it issues from now on. Entitlements apply
    /// at once to every license of the product.
    Set {
        tenant_id: String,
        product_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        activation_limit: Option<u32>,
        /// Days until expiry for licenses issued from now on, or `never`.
        #[arg(long)]
        duration_days: Option<String>,
        /// Feature names, comma-separated; an empty string removes them all.
        #[arg(long)]
        entitlements: Option<String>,
        /// A machine's seat lasts this long after its last activate or validate (90s, 12h, 7d), or `off`.
        #[arg(long)]
        seat_lease: Option<String>,
        /// How long a signed lease lasts when seats do not expire (90s, 12h, 7d), or `default` (30d).
        #[arg(long)]
        token_ttl: Option<String>,
        /// Whose keys new licenses carry: keystead's own or the `license_key` Gumroad already issued.
        #[arg(long, value_parser = ["gumroad", "keystead"])]
        key_source: Option<String>,
        /// Send the key email: `always`, `never`, or `default` (always for keystead keys, never for Gumroad's).
        #[arg(long, value_parser = ["always", "never", "default"])]
        email_key: Option<String>,
        /// The Sparkle public key its macOS apps pin (`SUPublicEDKey`, base64); `release publish` then refuses a
        /// `--sparkle-signature` that does not verify with it. `none` removes it.
        #[arg(long)]
        sparkle_public_key: Option<String>,
        /// The Tauri updater public key its apps pin (`plugins.updater.pubkey`, base64 of the minisign key file);
        /// `release publish` then refuses a `--tauri-signature` that does not verify with it. `none` removes it.
        #[arg(long)]
        tauri_public_key: Option<String>,
        /// What an expired license keeps of the releases: `keep-released` (default: those made before it
        /// expired), `nothing` or `everything`.
        #[arg(long, value_parser = ["keep-released", "nothing", "everything"])]
        after_expiry: Option<String>,
        /// A license that never expires gets the releases made within this long of its purchase (e.g. 365d),
        /// or `forever` (default).
        #[arg(long)]
        updates_for: Option<String>,
    },
    /// Delete a product that no permalink maps to any more. Its licenses stay valid.
    Delete {
        tenant_id: String,
        product_id: String,
    },
    /// Map a Gumroad permalink (slug or https://…/l/<slug> URL), or one of its variants, to a product.
    Map {
        tenant_id: String,
        permalink: String,
        product_id: String,
        /// Only sales of this variant, e.g. `Tier=Team` or `Version=Studio` (compared without letter case).
        #[arg(long)]
        variant: Option<String>,
    },
    /// Upload the file buyers download (into the stack's bucket) and record its name, size and SHA-256.
    File {
        tenant_id: String,
        product_id: String,
        /// The file to upload; large files go up in parts, with progress on stderr.
        path: String,
    },
    /// Remove a permalink mapping (slug or https://…/l/<slug> URL), or one of its variant mappings.
    Unmap {
        tenant_id: String,
        permalink: String,
        #[arg(long)]
        variant: Option<String>,
    },
}

fn check_name(raw: &str) -> Result<String, CliError> {
    let name = crate::gumroad::one_line(raw);
    if name.is_empty() {
        return Err(CliError::Invalid(
            "product name must not be empty".to_owned(),
        ));
    }
    Ok(name)
}

fn check_activation_limit(limit: u32) -> Result<u32, CliError> {
    if limit == 0 || limit > MAX_SEATS {
        return Err(CliError::Invalid(format!(
            "invalid activation limit {limit}: use 1 to {MAX_SEATS}"
        )));
    }
    Ok(limit)
}

fn check_duration(days: u32) -> Result<u32, CliError> {
    if days == 0 {
        return Err(CliError::Invalid(
            "duration must be at least 1 day (or `never`)".to_owned(),
        ));
    }
    Ok(days)
}

/// A duration flag of `product set`: a duration, or the word that removes it.
fn optional_duration(raw: &str, none_word: &str) -> Result<Option<u64>, CliError> {
    if raw.trim() == none_word {
        Ok(None)
    } else {
        Ok(Some(parse_duration(raw)?))
    }
}

/// A public key flag of `product set`: checked by `check`, or `none` to remove it.
fn optional_key(
    raw: &str,
    check: fn(&str) -> Result<String, CliError>,
) -> Result<Option<String>, CliError> {
    match raw.trim() {
        "none" => Ok(None),
        key => check(key).map(Some),
    }
}

/// `--updates-for`: whole days (`365d`, at most ten years), or `forever`.
fn update_window(raw: &str) -> Result<Option<u32>, CliError> {
    let raw = raw.trim();
    if raw == "forever" {
        return Ok(None);
    }
    raw.strip_suffix('d')
        .and_then(|days| days.parse::<u32>().ok())
        .filter(|days| (1..=3650).contains(days))
        .map(Some)
        .ok_or_else(|| {
            CliError::Invalid(format!(
                "invalid --updates-for '{}': a number of days such as 365d (at most 3650d), or `forever`",
                crate::gumroad::one_line(raw)
            ))
        })
}

fn product_json(tenant_id: &TenantId, product: &Product) -> serde_json::Value {
    json!({
        "releases": {
            "after_expiry": product.releases.after_expiry.as_str(),
            "updates_for": product.releases.updates_for_days.map(|d| format!("{d}d")),
            "sparkle_public_key": product.releases.sparkle_public_key,
            "tauri_public_key": product.releases.tauri_public_key,
        },
        "key_source": product.key_source.as_str(),
        "email_key": if product.emails_key() { "always" } else { "never" },
        "seat_lease": product.seat_lease_seconds.map(format_duration),
        "token_ttl": product.token_ttl_seconds.map(format_duration),
        "tenant_id": tenant_id,
        "product_id": product.product_id,
        "name": product.name,
        "key_prefix": product.key_prefix,
        "activation_limit": product.activation_limit,
        "duration_days": product.duration_days,
        "entitlements": product.entitlements,
    })
}

fn variant_label(variant: Option<&Variant>) -> String {
    variant.map(|v| format!(" [{v}]")).unwrap_or_default()
}

fn no_such_product(tenant_id: &TenantId, product_id: &ProductId) -> CliError {
    CliError::NotFound(format!(
        "product '{product_id}' does not exist for tenant '{tenant_id}'"
    ))
}

pub async fn run(command: ProductCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        ProductCommand::File {
            tenant_id,
            product_id,
            path,
        } => super::product_file::run(&tenant_id, &product_id, &path, out).await?,
        ProductCommand::Create {
            tenant_id,
            product_id,
            name,
            key_prefix,
            activation_limit,
            duration_days,
            entitlements,
            seat_lease,
            token_ttl,
            key_source,
            email_key,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let product = Product {
                key_source: key_source
                    .as_deref()
                    .and_then(KeySource::parse)
                    .unwrap_or_default(),
                email_key: email_key.as_deref().and_then(EmailKey::parse),
                seat_lease_seconds: seat_lease.as_deref().map(parse_duration).transpose()?,
                token_ttl_seconds: token_ttl.as_deref().map(parse_duration).transpose()?,
                product_id: ProductId::parse(&product_id)?,
                name: check_name(&name)?,
                key_prefix: KeyPrefix::parse(&key_prefix)?,
                activation_limit: check_activation_limit(activation_limit)?,
                duration_days: duration_days.map(check_duration).transpose()?,
                entitlements: parse_entitlements(entitlements.as_deref().unwrap_or_default())?,
                created_at: rfc3339(OffsetDateTime::now_utc()),
                file: None,
                releases: Default::default(),
                v: 0,
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
            out.document(product_json(&tenant_id, &product));
        }
        ProductCommand::Set {
            tenant_id,
            product_id,
            name,
            activation_limit,
            duration_days,
            entitlements,
            seat_lease,
            token_ttl,
            key_source,
            email_key,
            sparkle_public_key,
            tauri_public_key,
            after_expiry,
            updates_for,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let product_id = ProductId::parse(&product_id)?;
            let sparkle_public_key = sparkle_public_key
                .as_deref()
                .map(|raw| optional_key(raw, super::release::sparkle_public_key))
                .transpose()?;
            let tauri_public_key = tauri_public_key
                .as_deref()
                .map(|raw| optional_key(raw, super::release::tauri_public_key))
                .transpose()?;
            let after_expiry = after_expiry
                .as_deref()
                .map(AfterExpiry::parse)
                .transpose()?;
            let updates_for = updates_for.as_deref().map(update_window).transpose()?;
            let seat_lease = seat_lease
                .as_deref()
                .map(|raw| optional_duration(raw, "off"))
                .transpose()?;
            let token_ttl = token_ttl
                .as_deref()
                .map(|raw| optional_duration(raw, "default"))
                .transpose()?;
            let name = name.as_deref().map(check_name).transpose()?;
            let activation_limit = activation_limit.map(check_activation_limit).transpose()?;
            let duration_days = match duration_days.as_deref().map(str::trim) {
                None => None,
                Some("never") => Some(None),
                Some(raw) => Some(Some(check_duration(raw.parse().map_err(|_| {
                    CliError::Invalid(format!(
                        "invalid duration '{raw}': a number of days, or `never`"
                    ))
                })?)?)),
            };
            let entitlements = entitlements
                .as_deref()
                .map(parse_entitlements)
                .transpose()?;
            let store = store().await?;
            // Read, change, write only while the product is as read (a `product file` upload meanwhile is kept).
            let mut written = None;
            for _ in 0..5 {
                let tenant = load(&store, &tenant_id).await?;
                let mut product = tenant
                    .product(&product_id)
                    .cloned()
                    .ok_or_else(|| no_such_product(&tenant_id, &product_id))?;
                if let Some(name) = name.clone() {
                    product.name = name;
                }
                if let Some(limit) = activation_limit {
                    product.activation_limit = limit;
                }
                if let Some(days) = duration_days {
                    product.duration_days = days;
                }
                if let Some(entitlements) = entitlements.clone() {
                    product.entitlements = entitlements;
                }
                if let Some(seat_lease) = seat_lease {
                    product.seat_lease_seconds = seat_lease;
                }
                if let Some(token_ttl) = token_ttl {
                    product.token_ttl_seconds = token_ttl;
                }
                if let Some(source) = key_source.as_deref().and_then(KeySource::parse) {
                    product.key_source = source;
                }
                if let Some(email_key) = email_key.as_deref() {
                    product.email_key = EmailKey::parse(email_key);
                }
                let releases = &mut product.releases;
                if let Some(key) = sparkle_public_key.clone() {
                    releases.sparkle_public_key = key;
                }
                if let Some(key) = tauri_public_key.clone() {
                    releases.tauri_public_key = key;
                }
                if let Some(after_expiry) = after_expiry {
                    releases.after_expiry = after_expiry;
                }
                if let Some(days) = updates_for {
                    releases.updates_for_days = days;
                }
                let replaced = store
                    .replace_product(&tenant_id, &product)
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound => no_such_product(&tenant_id, &product_id),
                        other => other.into(),
                    })?;
                if replaced {
                    written = Some(product);
                    break;
                }
            }
            let Some(product) = written else {
                return Err(CliError::Conflict(format!(
                    "product {product_id} kept changing while it was being set; run the command again"
                )));
            };
            out.line(format!(
                "Updated product {product_id} ({}) of tenant {tenant_id}.",
                product.name
            ));
            out.document(product_json(&tenant_id, &product));
        }
        ProductCommand::Map {
            tenant_id,
            permalink,
            product_id,
            variant,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let permalink = Permalink::parse(&permalink)?;
            let product_id = ProductId::parse(&product_id)?;
            let variant = variant.as_deref().map(Variant::parse).transpose()?;
            let store = store().await?;
            let tenant = load(&store, &tenant_id).await?;
            if tenant.product(&product_id).is_none() {
                return Err(CliError::NotFound(format!(
                    "product '{product_id}' does not exist for tenant '{tenant_id}': create it first with `keystead product create`"
                )));
            }
            let previous = match &variant {
                Some(variant) => {
                    let mapping = VariantMapping {
                        permalink: permalink.clone(),
                        variant: variant.clone(),
                        product_id: product_id.clone(),
                    };
                    store.put_variant_mapping(&tenant_id, &mapping).await?;
                    tenant.variant_product(&permalink, variant)
                }
                None => {
                    store
                        .set_permalink(&tenant_id, &permalink, Some(&product_id))
                        .await?;
                    tenant.permalinks.get(&permalink)
                }
            };
            let previous = previous
                .filter(|p| **p != product_id)
                .map(|p| format!(" (was {p})"))
                .unwrap_or_default();
            out.line(format!(
                "Mapped permalink {permalink}{} to product {product_id}{previous}.",
                variant_label(variant.as_ref())
            ));
            out.document(json!({
                "tenant_id": tenant_id,
                "permalink": permalink,
                "variant": variant.as_ref().map(ToString::to_string),
                "product_id": product_id,
            }));
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
            let mut mapped: Vec<(String, String)> = tenant
                .permalinks
                .iter()
                .filter(|(_, p)| **p == product_id)
                .map(|(slug, _)| (slug.to_string(), slug.to_string()))
                .collect();
            mapped.extend(
                tenant
                    .variants
                    .iter()
                    .filter(|m| m.product_id == product_id)
                    .map(|m| {
                        (
                            format!("{} [{}]", m.permalink, m.variant),
                            format!("{} --variant '{}'", m.permalink, m.variant),
                        )
                    }),
            );
            if let Some((_, first)) = mapped.first() {
                let names: Vec<&str> = mapped.iter().map(|(name, _)| name.as_str()).collect();
                return Err(CliError::Conflict(format!(
                    "product '{product_id}' is still mapped from permalink(s) {}: unmap them first (`keystead product unmap {tenant_id} {first}`)",
                    names.join(", ")
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
            variant,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let permalink = Permalink::parse(&permalink)?;
            let variant = variant.as_deref().map(Variant::parse).transpose()?;
            let store = store().await?;
            let tenant = load(&store, &tenant_id).await?;
            let label = variant_label(variant.as_ref());
            let not_mapped = || {
                CliError::NotFound(format!(
                    "permalink '{permalink}'{label} is not mapped for tenant '{tenant_id}' (see `keystead tenant show {tenant_id}`)"
                ))
            };
            let (product_id, removed) = match &variant {
                Some(variant) => {
                    let product_id = tenant
                        .variant_product(&permalink, variant)
                        .cloned()
                        .ok_or_else(not_mapped)?;
                    let removed = store
                        .delete_variant_mapping(&tenant_id, &permalink, variant)
                        .await;
                    (product_id, removed)
                }
                None => {
                    let product_id = tenant
                        .permalinks
                        .get(&permalink)
                        .cloned()
                        .ok_or_else(not_mapped)?;
                    let removed = store.unmap_permalink(&tenant_id, &permalink).await;
                    (product_id, removed)
                }
            };
            removed.map_err(|e| match e {
                StoreError::NotFound => not_mapped(),
                other => other.into(),
            })?;
            let consequence = if variant.is_some() {
                "its sales resolve to the permalink's own mapping"
            } else {
                "its pings are now refused unless a variant mapping matches"
            };
            out.line(format!(
                "Unmapped permalink {permalink}{label} (was product {product_id}): {consequence}."
            ));
            out.document(json!({
                "tenant_id": tenant_id,
                "permalink": permalink,
                "variant": variant.as_ref().map(ToString::to_string),
                "product_id": product_id,
                "unmapped": true,
            }));
        }
    }
    Ok(())
}
