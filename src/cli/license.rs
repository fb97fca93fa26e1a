//! `keymint license …`: find a tenant's licenses, resend a key email, revoke and reinstate a license, and issue one
//! by hand through the same path a ping takes. Keys are shown to the seller, who owns them; they are never logged.

use clap::Subcommand;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::tenant::load;
use super::{CliError, Output, clients, store};
use crate::domain::{
    Activation, Email, EmailFailure, EmailStatus, License, LicenseKey, LicenseStatus, ProductId,
    SaleId, Tenant, TenantId, TenantStatus, random_id, rfc3339,
};
use crate::sale::{self, SaleError, SaleOrder, SaleResult};
use crate::storage::{ActivationStore, DynamoStore, EventStore, LicenseFilter, Store, StoreError};

const DEFAULT_LIST_LIMIT: u32 = 50;

#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// List a tenant's licenses, newest first.
    List {
        tenant_id: String,
        /// Only licenses bought with this address (any letter case).
        #[arg(long)]
        email: Option<String>,
        /// Only licenses of this product.
        #[arg(long)]
        product: Option<String>,
        /// Only licenses whose key email is pending, sent or failed.
        #[arg(long)]
        email_status: Option<String>,
        /// At most this many licenses.
        #[arg(long, default_value_t = DEFAULT_LIST_LIMIT)]
        limit: u32,
    },
    /// Show a license: status, product, buyer, sale, activations, expiry and email state.
    Show { tenant_id: String, key: String },
    /// Send the key email again (even if it was sent before) and record its new message id.
    Resend { tenant_id: String, key: String },
    /// Free the seat a machine holds (as the license API's deactivate does).
    Deactivate {
        tenant_id: String,
        key: String,
        machine_id: String,
    },
    /// Revoke a license: the license API refuses it from now on.
    Revoke { tenant_id: String, key: String },
    /// Make a revoked or suspended license active again.
    Reinstate { tenant_id: String, key: String },
    /// Issue a license by hand (a giveaway, a replacement), written exactly like a sale's.
    Issue {
        tenant_id: String,
        product_id: String,
        /// The buyer's address; the key email goes there.
        #[arg(long)]
        email: String,
        /// The buyer's name, used in the email's greeting.
        #[arg(long)]
        name: Option<String>,
        /// Store the license without emailing it.
        #[arg(long)]
        no_email: bool,
    },
}

pub async fn run(command: LicenseCommand, out: &mut Output) -> Result<(), CliError> {
    match command {
        LicenseCommand::List {
            tenant_id,
            email,
            product,
            email_status,
            limit,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let filter = LicenseFilter {
                product_id: product.as_deref().map(ProductId::parse).transpose()?,
                email_status: email_status
                    .as_deref()
                    .map(parse_email_status)
                    .transpose()?,
                buyer_email: email.as_deref().map(parse_email).transpose()?,
            };
            if limit == 0 {
                return Err(CliError::Invalid(
                    "invalid limit 0: list at least 1 license".to_owned(),
                ));
            }
            let store = store().await?;
            load(&store, &tenant_id).await?;
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let licenses = store.list_licenses(&tenant_id, &filter, limit).await?;
            list(&tenant_id, &licenses, out);
        }
        LicenseCommand::Show { tenant_id, key } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let key = parse_key(&key)?;
            let store = store().await?;
            load(&store, &tenant_id).await?;
            let license = find(&store, &tenant_id, &key).await?;
            let activations = store.activations(&tenant_id, &license.key_hash).await?;
            show(&license, &activations, out);
        }
        LicenseCommand::Deactivate {
            tenant_id,
            key,
            machine_id,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let key = parse_key(&key)?;
            let store = store().await?;
            load(&store, &tenant_id).await?;
            let license = find(&store, &tenant_id, &key).await?;
            if !store
                .deactivate(&tenant_id, &license.key_hash, &machine_id)
                .await?
            {
                return Err(CliError::NotFound(format!(
                    "machine '{machine_id}' holds no seat of this license"
                )));
            }
            let activations = license.activations.saturating_sub(1);
            out.line(format!(
                "Freed the seat of machine {machine_id}: {activations} of {} in use.",
                license.activation_limit
            ));
            out.document(json!({
                "tenant_id": tenant_id,
                "license_id": license.license_id,
                "machine_id": machine_id,
                "deactivated": true,
                "activations": activations,
            }));
        }
        LicenseCommand::Resend { tenant_id, key } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let key = parse_key(&key)?;
            let (store, mailer) = clients().await?;
            let tenant = load(&store, &tenant_id).await?;
            let license = find(&store, &tenant_id, &key).await?;
            if license.status == LicenseStatus::Revoked {
                return Err(CliError::Conflict(format!(
                    "the license is revoked: reinstate it first (`keymint license reinstate {tenant_id} <KEY>`) to send its key again"
                )));
            }
            // A seller's explicit resend is not a ping's retry: no claim, no once-only rule.
            sale::deliver(&store, &mailer, &tenant, &license)
                .await
                .map_err(|e| email_error(e, &tenant, &license, "the license is kept"))?;
            let sent = store
                .get_license(&tenant_id, &license.key_hash)
                .await?
                .unwrap_or(license);
            out.line(format!(
                "Sent the key email again to {} (message id {}).",
                sent.buyer_email,
                sent.email_message_id.as_deref().unwrap_or("unknown")
            ));
            out.document(json!({
                "tenant_id": tenant_id,
                "license_id": sent.license_id,
                "to": sent.buyer_email.as_str(),
                "email_status": sent.email_status.as_str(),
                "email_message_id": sent.email_message_id,
            }));
        }
        LicenseCommand::Revoke { tenant_id, key } => {
            set_status(&tenant_id, &key, LicenseStatus::Revoked, out).await?;
        }
        LicenseCommand::Reinstate { tenant_id, key } => {
            set_status(&tenant_id, &key, LicenseStatus::Active, out).await?;
        }
        LicenseCommand::Issue {
            tenant_id,
            product_id,
            email,
            name,
            no_email,
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let product_id = ProductId::parse(&product_id)?;
            let buyer_email = parse_email(&email)?;
            let buyer_name = name
                .as_deref()
                .map(crate::gumroad::one_line)
                .filter(|n| !n.is_empty());
            let (store, mailer) = clients().await?;
            let tenant = load(&store, &tenant_id).await?;
            if tenant.status == TenantStatus::Suspended {
                return Err(CliError::Conflict(format!(
                    "tenant '{tenant_id}' is suspended: resume it first (`keymint tenant resume {tenant_id}`)"
                )));
            }
            let Some(product) = tenant.product(&product_id) else {
                return Err(CliError::NotFound(format!(
                    "product '{product_id}' does not exist for tenant '{tenant_id}'"
                )));
            };
            let sale_id = SaleId::parse(&random_id("manual")?)?;
            let order =
                SaleOrder::manual(sale_id.clone(), product, buyer_email, buyer_name, !no_email);
            match sale::issue(&store, &mailer, &tenant, order).await {
                Ok(SaleResult::Created { license, .. }) => issued(&license, out),
                Ok(SaleResult::Duplicate | SaleResult::Renewed { .. }) => {
                    return Err(CliError::Other(
                        "a sale with the generated id already exists; run the command again"
                            .to_owned(),
                    ));
                }
                Err(err @ SaleError::EmailFailed(_)) => {
                    // The license is committed; show it, then say the email is owed.
                    let license = store
                        .license_for_sale(&tenant_id, &sale_id)
                        .await?
                        .ok_or_else(|| CliError::Other(err.to_string()))?;
                    issued(&license, out);
                    return Err(email_error(err, &tenant, &license, "the license is issued"));
                }
                Err(err) => return Err(sale_error(err)),
            }
        }
    }
    Ok(())
}

fn parse_email(raw: &str) -> Result<Email, CliError> {
    Email::parse(raw).map_err(|_| CliError::Invalid(format!("invalid email address '{raw}'")))
}

fn parse_email_status(raw: &str) -> Result<EmailStatus, CliError> {
    EmailStatus::parse(raw.trim()).ok_or_else(|| {
        CliError::Invalid(format!(
            "invalid email status '{raw}': use pending, sent or failed"
        ))
    })
}

/// Keys are read back from emails and support tickets: surrounding space and lower case are forgiven.
fn parse_key(raw: &str) -> Result<LicenseKey, CliError> {
    let key = raw.trim().to_ascii_uppercase();
    if LicenseKey::is_well_formed(&key) {
        Ok(LicenseKey::from_string(key))
    } else {
        Err(CliError::Invalid(
            "invalid license key: expected PREFIX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX".to_owned(),
        ))
    }
}

async fn find(
    store: &DynamoStore,
    tenant_id: &TenantId,
    key: &LicenseKey,
) -> Result<License, CliError> {
    store
        .get_license(tenant_id, &key.hash())
        .await?
        .ok_or_else(|| {
            CliError::NotFound(format!("no license with that key for tenant '{tenant_id}'"))
        })
}

fn sale_error(err: SaleError) -> CliError {
    match err {
        SaleError::Storage(err) => err.into(),
        other => CliError::Other(other.to_string()),
    }
}

fn email_error(err: SaleError, tenant: &Tenant, license: &License, kept: &str) -> CliError {
    match err {
        SaleError::EmailFailed(mail) => CliError::EmailFailed(format!(
            "{kept}, but the key email to {} failed ({}: {}): {}, then run `keymint license resend {} {}`",
            license.buyer_email,
            mail.reason.describe(),
            super::first_line(super::without_debug(&mail.detail)),
            email_fix(mail.reason, &tenant.sender),
            tenant.tenant_id,
            license.key.expose(),
        )),
        other => sale_error(other),
    }
}

/// What the seller does about a failed key email, by its category.
pub(crate) fn email_fix(reason: EmailFailure, sender: &Email) -> String {
    match reason {
        EmailFailure::SenderNotVerified => format!(
            "verify {sender} in SES (`keymint ses verify {sender}`, or its domain)"
        ),
        EmailFailure::RecipientNotVerified => {
            "the SES account is in the sandbox, where only verified addresses receive mail: request production access (`keymint ses status` says how)".to_owned()
        }
        EmailFailure::Other => format!(
            "check that {sender} is verified in SES and that SES answers (`keymint doctor`)"
        ),
    }
}

fn expired(license: &License) -> bool {
    license
        .expires_at
        .as_deref()
        .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
        .is_some_and(|at| at <= OffsetDateTime::now_utc())
}

async fn set_status(
    tenant_id: &str,
    key: &str,
    status: LicenseStatus,
    out: &mut Output,
) -> Result<(), CliError> {
    let tenant_id = TenantId::parse(tenant_id)?;
    let key = parse_key(key)?;
    let store = store().await?;
    load(&store, &tenant_id).await?;
    let license = find(&store, &tenant_id, &key).await?;
    if status == LicenseStatus::Active && expired(&license) {
        return Err(CliError::Conflict(format!(
            "the license expired at {}: an expired license cannot be reinstated; issue a new one with `keymint license issue`",
            license.expires_at.as_deref().unwrap_or_default()
        )));
    }
    let changed = license.status != status;
    let license = if changed {
        store
            .set_license_status(&tenant_id, &license.key_hash, status)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => {
                    CliError::NotFound(format!("no license with that key for tenant '{tenant_id}'"))
                }
                other => other.into(),
            })?
    } else {
        license
    };
    out.line(match (status, changed) {
        (LicenseStatus::Revoked, true) => format!(
            "Revoked license {} ({}, {}).",
            license.key.expose(),
            license.product_id,
            license.buyer_email
        ),
        (_, true) => format!(
            "Reinstated license {} ({}, {}): it is active again.",
            license.key.expose(),
            license.product_id,
            license.buyer_email
        ),
        (_, false) => format!(
            "License {} is already {}.",
            license.key.expose(),
            status.as_str()
        ),
    });
    out.document(json!({
        "tenant_id": tenant_id,
        "license_id": license.license_id,
        "key": license.key.expose(),
        "status": license.status.as_str(),
        "changed": changed,
    }));
    Ok(())
}

/// The fields every license answer carries, in JSON.
fn license_json(license: &License) -> Value {
    json!({
        "tenant_id": license.tenant_id,
        "license_id": license.license_id,
        "key": license.key.expose(),
        "product_id": license.product_id,
        "product_name": license.product_name,
        "status": license.status.as_str(),
        "buyer_email": license.buyer_email.as_str(),
        "buyer_name": license.buyer_name,
        "sale_id": license.sale_id,
        "subscription_id": license.subscription_id,
        "source": license.source,
        "created_at": license.created_at,
        "expires_at": license.expires_at,
        "activation_limit": license.activation_limit,
        "activations": license.activations,
        "email_status": license.email_status.as_str(),
        "email_message_id": license.email_message_id,
        "email_failure": license.email_failure.map(EmailFailure::as_str),
        "quantity": license.quantity,
        "gumroad_permalink": license.gumroad_permalink,
        "gumroad_product_id": license.gumroad_product_id,
        "pending_change": license.pending_change,
    })
}

fn list(tenant_id: &TenantId, licenses: &[License], out: &mut Output) {
    if licenses.is_empty() {
        out.line(format!("No licenses of tenant {tenant_id} match."));
    } else {
        let rows: Vec<Vec<String>> = licenses
            .iter()
            .map(|l| {
                vec![
                    l.key.expose().to_owned(),
                    l.product_id.to_string(),
                    l.status.as_str().to_owned(),
                    l.email_status.as_str().to_owned(),
                    l.created_at.chars().take(10).collect(),
                    l.buyer_email.to_string(),
                ]
            })
            .collect();
        out.table(
            &["KEY", "PRODUCT", "STATUS", "EMAIL", "CREATED", "BUYER"],
            &rows,
        );
    }
    out.document(json!({
        "tenant_id": tenant_id,
        "count": licenses.len(),
        "licenses": licenses.iter().map(license_json).collect::<Vec<_>>(),
    }));
}

fn show(license: &License, activations: &[Activation], out: &mut Output) {
    let seat_end = |a: &Activation| {
        a.seat_until
            .and_then(|until| OffsetDateTime::from_unix_timestamp(until).ok())
            .map(rfc3339)
    };
    let devices: Vec<Value> = activations
        .iter()
        .map(|a| {
            json!({
                "machine_id": a.machine_id,
                "label": a.label,
                "activated_at": a.activated_at,
                "last_seen": a.last_seen,
                "seat_until": seat_end(a),
            })
        })
        .collect();
    let buyer = match &license.buyer_name {
        Some(name) => format!("{name} <{}>", license.buyer_email),
        None => license.buyer_email.to_string(),
    };
    let email = match (&license.email_message_id, license.email_failure) {
        (_, Some(reason)) if license.email_status == EmailStatus::Failed => {
            format!("failed ({})", reason.describe())
        }
        (Some(id), _) => format!("{} (message id {id})", license.email_status.as_str()),
        (None, _) => license.email_status.as_str().to_owned(),
    };
    out.fields(&[
        ("Key", license.key.expose().to_owned()),
        ("Status", license.status.as_str().to_owned()),
        (
            "Product",
            format!("{} ({})", license.product_id, license.product_name),
        ),
        ("Buyer", buyer),
        ("Sale", format!("{} ({})", license.sale_id, license.source)),
        ("Created", license.created_at.clone()),
        (
            "Expires",
            license
                .expires_at
                .clone()
                .unwrap_or_else(|| "never".to_owned()),
        ),
        (
            "Activations",
            if license.quantity > 1 {
                format!(
                    "{} of {} ({} seats bought)",
                    license.activations, license.activation_limit, license.quantity
                )
            } else {
                format!("{} of {}", license.activations, license.activation_limit)
            },
        ),
        ("Email", email),
    ]);
    if let Some(change) = &license.pending_change {
        out.line(format!(
            "Pending:      becomes {} ({} activations) at {}",
            change.product_id, change.activation_limit, change.effective_at
        ));
    }
    for a in activations {
        out.line(format!(
            "  {}  {}  since {}  last seen {}  seat {}",
            a.machine_id,
            a.label.as_deref().unwrap_or("-"),
            a.activated_at,
            a.last_seen.as_deref().unwrap_or(&a.activated_at),
            seat_end(a).map_or_else(
                || "held until deactivated".to_owned(),
                |end| format!("until {end}")
            ),
        ));
    }
    let mut doc = license_json(license);
    doc["activation_records"] = Value::Array(devices);
    out.document(doc);
}

fn issued(license: &License, out: &mut Output) {
    let email = match license.email_status {
        EmailStatus::Sent => format!("sent to {}", license.buyer_email),
        EmailStatus::Failed => format!("FAILED for {}", license.buyer_email),
        EmailStatus::Pending => format!("not sent (--no-email); buyer {}", license.buyer_email),
    };
    out.line(format!(
        "Issued license {} for product {}.",
        license.key.expose(),
        license.product_id
    ));
    out.fields(&[("Sale id", license.sale_id.to_string()), ("Email", email)]);
    out.document(license_json(license));
}
