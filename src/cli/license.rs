//! `keystead license …`: find a tenant's licenses, resend a key email, revoke and reinstate a license, and issue one
//! by hand through the same path a ping takes. Keys are shown to the seller, who owns them; they are never logged.

use clap::Subcommand;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::tenant::load;
use super::{CliError, Output, clients, store};
use crate::app::record_sale::{self as sale, SaleError, SaleOrder, SaleResult};
use crate::app::replace_key::RotateError;
use crate::domain::{
    Activation, Email, EmailFailure, EmailStatus, FactKind, License, LicenseKey, LicenseStatus,
    ProductId, SaleId, Tenant, TenantId, TenantStatus, format_duration, parse_duration, random_id,
    rfc3339,
};
use crate::storage::{
    ActivationStore, DynamoStore, EventStore, LicenseFilter, PortalStore, Store, StoreError,
};

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
    /// Send the key email again (even if it was sent before) and record its new message id; or, with --failed,
    /// every key email still owed: recorded failed, or pending after its send's claim ran out.
    Resend {
        tenant_id: String,
        /// The license's key (not with --failed).
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        key: Option<String>,
        /// Send every owed key email of the tenant, each once.
        #[arg(long)]
        failed: bool,
        /// With --failed: only licenses created this recently (90s, 45m, 12h, 7d; at most 365d).
        #[arg(long)]
        since: Option<String>,
    },
    /// Free the seat a machine holds (as the license API's deactivate does).
    Deactivate {
        tenant_id: String,
        key: String,
        machine_id: String,
    },
    /// Revoke a license: the license API refuses it from now on.
    Revoke { tenant_id: String, key: String },
    /// Make a revoked or suspended license active again (also lifting refunds and disputes recorded before).
    Reinstate { tenant_id: String, key: String },
    /// Suspend a license: the license API refuses it until `license resume`.
    Suspend { tenant_id: String, key: String },
    /// Lift the seller's own suspension (a dispute's stays until Gumroad says it was won).
    Resume { tenant_id: String, key: String },
    /// Move an expiring license's expiry later: to `--until` (a date, `2027-01-31`, or an RFC 3339 time).
    Extend {
        tenant_id: String,
        key: String,
        #[arg(long)]
        until: String,
    },
    /// Replace a license's key: a new key (emailed to the buyer), the old one refused at once; status, seats,
    /// machines and history stay. Refused for revoked licenses.
    Rotate {
        tenant_id: String,
        key: String,
        /// Do not email the new key (print it only).
        #[arg(long)]
        no_email: bool,
    },
    /// Make licenses sold before the email index existed findable by email (the portal, `list --email`); once.
    Index { tenant_id: String },
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
            let licenses = match &filter.buyer_email {
                // Through the email index: one query for the buyer's pointers, never the whole partition.
                Some(email) => {
                    let mut found = store.licenses_by_email(&tenant_id, email).await?;
                    found.retain(|l| {
                        filter
                            .product_id
                            .as_ref()
                            .is_none_or(|p| *p == l.product_id)
                            && filter.email_status.is_none_or(|s| s == l.email_status)
                    });
                    found.truncate(limit);
                    found
                }
                None => store.list_licenses(&tenant_id, &filter, limit).await?,
            };
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
            if !store.deactivate(&license, &machine_id).await? {
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
        LicenseCommand::Resend {
            tenant_id,
            key: None,
            since,
            ..
        } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let since = since.as_deref().map(parse_duration).transpose()?;
            resend_owed(&tenant_id, since, out).await?;
        }
        LicenseCommand::Resend {
            tenant_id,
            key: Some(key),
            since,
            ..
        } => {
            if since.is_some() {
                // clap counts the --failed flag's default as present, so `requires` cannot say this.
                return Err(CliError::Invalid(
                    "--since goes with --failed, not with a key (see --help)".to_owned(),
                ));
            }
            let tenant_id = TenantId::parse(&tenant_id)?;
            let key = parse_key(&key)?;
            let (store, mailer) = clients().await?;
            let tenant = load(&store, &tenant_id).await?;
            let license = find(&store, &tenant_id, &key).await?;
            if license.status == LicenseStatus::Revoked {
                return Err(CliError::Conflict(format!(
                    "the license is revoked: reinstate it first (`keystead license reinstate {tenant_id} <KEY>`) to send its key again"
                )));
            }
            // A seller's explicit resend is not a ping's retry: no claim, no once-only rule.
            sale::deliver(&store, mailer.as_ref(), &tenant, &license)
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
        LicenseCommand::Rotate {
            tenant_id,
            key,
            no_email,
        } => rotate(&tenant_id, &key, no_email, out).await?,
        LicenseCommand::Index { tenant_id } => {
            let tenant_id = TenantId::parse(&tenant_id)?;
            let store = store().await?;
            load(&store, &tenant_id).await?;
            let mut added = 0;
            let licenses = store.all_licenses(&tenant_id).await?;
            for license in &licenses {
                if store.index_license(license).await? {
                    added += 1;
                }
            }
            out.line(format!(
                "Indexed {added} license(s) of tenant {tenant_id} by buyer email ({} already were).",
                licenses.len() - added
            ));
            out.document(json!({
                "tenant_id": tenant_id,
                "licenses": licenses.len(),
                "indexed": added,
            }));
        }
        LicenseCommand::Revoke { tenant_id, key } => {
            set_status(&tenant_id, &key, LicenseStatus::Revoked, out).await?;
        }
        LicenseCommand::Reinstate { tenant_id, key } => {
            set_status(&tenant_id, &key, LicenseStatus::Active, out).await?;
        }
        LicenseCommand::Suspend { tenant_id, key } => {
            seller_action(&tenant_id, &key, FactKind::Suspended, "Suspended", out).await?;
        }
        LicenseCommand::Resume { tenant_id, key } => {
            seller_action(&tenant_id, &key, FactKind::Resumed, "Resumed", out).await?;
        }
        LicenseCommand::Extend {
            tenant_id,
            key,
            until,
        } => {
            let until = parse_until(&until)?;
            seller_action(
                &tenant_id,
                &key,
                FactKind::Extended { until },
                "Extended",
                out,
            )
            .await?;
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
                    "tenant '{tenant_id}' is suspended: resume it first (`keystead tenant resume {tenant_id}`)"
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
            match sale::issue(&store, mailer.as_ref(), &tenant, order).await {
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

async fn rotate(
    tenant_id: &str,
    key: &str,
    no_email: bool,
    out: &mut Output,
) -> Result<(), CliError> {
    let tenant_id = TenantId::parse(tenant_id)?;
    let key = parse_key(key)?;
    let (store, mailer) = clients().await?;
    let tenant = load(&store, &tenant_id).await?;
    let old = find(&store, &tenant_id, &key).await?;
    let new = crate::app::replace_key::rotate(&store, &tenant, &old.key_hash, !no_email)
        .await
        .map_err(|err| match err {
            RotateError::NotFound => {
                CliError::NotFound(format!("no license with that key for tenant '{tenant_id}'"))
            }
            RotateError::Storage(err) => err.into(),
            err @ (RotateError::Revoked | RotateError::TooManyMachines(_) | RotateError::Busy) => {
                CliError::Conflict(err.to_string())
            }
            RotateError::Randomness(err) => err.into(),
        })?;
    out.line(format!(
        "Replaced the key of license {} ({}, {}): the old key no longer works.",
        new.license_id, new.product_id, new.buyer_email
    ));
    out.fields(&[("New key", new.key.expose().to_owned())]);
    let mut doc = license_json(&new);
    doc["previous_key"] = json!(old.key.expose());
    if no_email {
        out.line(format!(
            "Email:    not sent (--no-email); buyer {}",
            new.buyer_email
        ));
        out.document(doc);
        return Ok(());
    }
    match sale::deliver(&store, mailer.as_ref(), &tenant, &new).await {
        Ok(_) => {
            out.line(format!("Email:    sent to {}", new.buyer_email));
            doc["email_status"] = json!("sent");
            out.document(doc);
            Ok(())
        }
        Err(err) => {
            doc["email_status"] = json!("failed");
            out.document(doc);
            Err(email_error(err, &tenant, &new, "the key is replaced"))
        }
    }
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
            "{kept}, but the key email to {} failed ({}: {}): {}, then run `keystead license resend {} {}`",
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
            "verify {sender} in SES (`keystead ses verify {sender}`, or its domain)"
        ),
        EmailFailure::RecipientNotVerified => {
            "the SES account is in the sandbox, where only verified addresses receive mail: request production access (`keystead ses status` says how)".to_owned()
        }
        EmailFailure::Other => format!(
            "check that {sender} is verified in SES and that SES answers (`keystead doctor`)"
        ),
    }
}

/// The tenant's licenses whose key email is owed now (see `License::email_owed`), created within `since` seconds
/// when given, oldest first.
pub(crate) async fn owed_emails(
    store: &DynamoStore,
    tenant_id: &TenantId,
    since: Option<u64>,
) -> Result<Vec<License>, CliError> {
    let now = OffsetDateTime::now_utc();
    let cutoff = since.map(|seconds| now - std::time::Duration::from_secs(seconds));
    let mut owed: Vec<License> = store
        .list_licenses(tenant_id, &LicenseFilter::default(), usize::MAX)
        .await?
        .into_iter()
        .filter(|license| license.email_owed(now))
        .filter(|license| {
            cutoff.is_none_or(|cutoff| {
                OffsetDateTime::parse(&license.created_at, &Rfc3339).is_ok_and(|at| at >= cutoff)
            })
        })
        .collect();
    owed.reverse();
    Ok(owed)
}

/// SES allows 14 emails a second to a new production account: a bulk resend stays well below that.
const RESEND_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Sends every owed key email once: each is claimed first (as a ping's retry would), so a retry running at the same
/// moment cannot send it a second time. One line per email and a summary; exit 9 when any failed again.
async fn resend_owed(
    tenant_id: &TenantId,
    since: Option<u64>,
    out: &mut Output,
) -> Result<(), CliError> {
    let (store, mailer) = clients().await?;
    let tenant = load(&store, tenant_id).await?;
    let owed = owed_emails(&store, tenant_id, since).await?;
    let window = since.map_or_else(String::new, |s| {
        format!(" created in the last {}", format_duration(s))
    });
    let mut rows = Vec::new();
    let mut results = Vec::new();
    let (mut sent, mut failed, mut skipped) = (0, 0, 0);
    let mut reasons = std::collections::BTreeSet::new();
    for (i, license) in owed.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(RESEND_INTERVAL).await;
        }
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claim_until = now + i64::try_from(sale::EMAIL_CLAIM.as_secs()).unwrap_or(30);
        let claimed = store
            .claim_email(tenant_id, &license.key_hash, now, claim_until)
            .await?;
        let (result, detail, reason, message_id) = if !claimed {
            skipped += 1;
            (
                "skipped",
                "sent or being sent by another attempt".to_owned(),
                None,
                None,
            )
        } else {
            match sale::deliver(&store, mailer.as_ref(), &tenant, license).await {
                Ok(_) => {
                    sent += 1;
                    let message_id = store
                        .get_license(tenant_id, &license.key_hash)
                        .await?
                        .and_then(|l| l.email_message_id);
                    let detail =
                        format!("message id {}", message_id.as_deref().unwrap_or("unknown"));
                    ("sent", detail, None, message_id)
                }
                Err(SaleError::EmailFailed(mail)) => {
                    failed += 1;
                    reasons.insert(mail.reason);
                    (
                        "failed",
                        mail.reason.describe().to_owned(),
                        Some(mail.reason),
                        None,
                    )
                }
                Err(other) => return Err(sale_error(other)),
            }
        };
        rows.push(vec![
            result.to_owned(),
            license.license_id.to_string(),
            license.product_id.to_string(),
            license.buyer_email.masked(),
            detail,
        ]);
        results.push(json!({
            "license_id": license.license_id,
            "product_id": license.product_id,
            "to": license.buyer_email.masked(),
            "result": result,
            "reason": reason.map(EmailFailure::as_str),
            "message_id": message_id,
        }));
    }
    if owed.is_empty() {
        out.line(format!(
            "No key emails of tenant {tenant_id}{window} are owed (failed, or pending after their send's claim ran out)."
        ));
    } else {
        out.table(&["RESULT", "LICENSE", "PRODUCT", "TO", "DETAIL"], &rows);
        out.line(format!(
            "Resent {sent} of {} owed key email(s) of tenant {tenant_id}{window}: {failed} failed, {skipped} skipped.",
            owed.len()
        ));
    }
    out.document(json!({
        "tenant_id": tenant_id,
        "since": since.map(format_duration),
        "owed": owed.len(),
        "sent": sent,
        "failed": failed,
        "skipped": skipped,
        "emails": results,
    }));
    match reasons.first() {
        None => Ok(()),
        Some(reason) => Err(CliError::EmailFailed(format!(
            "{failed} of {} key email(s) failed again ({}): {}, then run `keystead license resend {tenant_id} --failed`",
            owed.len(),
            reasons
                .iter()
                .map(|r| r.describe())
                .collect::<Vec<_>>()
                .join("; "),
            email_fix(*reason, &tenant.sender)
        ))),
    }
}

fn expired(license: &License) -> bool {
    license
        .expires_at
        .as_deref()
        .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
        .is_some_and(|at| at <= OffsetDateTime::now_utc())
}

/// `--until`: a date (midnight UTC) or an RFC 3339 time, as RFC 3339 in UTC.
fn parse_until(raw: &str) -> Result<String, CliError> {
    let raw = raw.trim();
    let date = time::macros::format_description!("[year]-[month]-[day]");
    let at = OffsetDateTime::parse(raw, &Rfc3339)
        .ok()
        .or_else(|| {
            time::Date::parse(raw, date)
                .ok()
                .map(|d| d.midnight().assume_utc())
        })
        .ok_or_else(|| {
            CliError::Invalid(format!(
                "invalid --until '{raw}': a date (2027-01-31) or an RFC 3339 time (2027-01-31T12:00:00Z)"
            ))
        })?;
    Ok(rfc3339(at.to_offset(time::UtcOffset::UTC)))
}

/// The tenant, the store and the license a seller's command names.
async fn named_license(
    tenant_id: &str,
    key: &str,
) -> Result<(TenantId, DynamoStore, License), CliError> {
    let tenant_id = TenantId::parse(tenant_id)?;
    let key = parse_key(key)?;
    let store = store().await?;
    load(&store, &tenant_id).await?;
    let license = find(&store, &tenant_id, &key).await?;
    Ok((tenant_id, store, license))
}

/// A seller's suspend, resume or extend, recorded as a fact of the license.
async fn seller_action(
    tenant_id: &str,
    key: &str,
    kind: FactKind,
    verb: &str,
    out: &mut Output,
) -> Result<(), CliError> {
    let (tenant_id, store, before) = named_license(tenant_id, key).await?;
    if let FactKind::Extended { until } = &kind {
        let Some(expires) = &before.expires_at else {
            return Err(CliError::Conflict(
                "the license does not expire: there is nothing to extend".to_owned(),
            ));
        };
        if until.as_str() <= expires.as_str() {
            return Err(CliError::Conflict(format!(
                "the license already runs until {expires}: --until must be later"
            )));
        }
    }
    let license = store
        .record_seller_fact(&tenant_id, &before.key_hash, kind)
        .await?;
    let changed = license.status != before.status || license.expires_at != before.expires_at;
    out.line(format!(
        "{verb} license {} ({}, {}): it is {}{}.",
        license.key.expose(),
        license.product_id,
        license.buyer_email,
        license.status.as_str(),
        license
            .expires_at
            .as_deref()
            .map(|at| format!(" until {at}"))
            .unwrap_or_default()
    ));
    out.document(json!({
        "tenant_id": tenant_id,
        "license_id": license.license_id,
        "key": license.key.expose(),
        "status": license.status.as_str(),
        "expires_at": license.expires_at,
        "changed": changed,
    }));
    Ok(())
}

async fn set_status(
    tenant_id: &str,
    key: &str,
    status: LicenseStatus,
    out: &mut Output,
) -> Result<(), CliError> {
    let (tenant_id, store, license) = named_license(tenant_id, key).await?;
    if status == LicenseStatus::Active && expired(&license) {
        return Err(CliError::Conflict(format!(
            "the license expired at {}: an expired license cannot be reinstated; issue a new one with `keystead license issue`",
            license.expires_at.as_deref().unwrap_or_default()
        )));
    }
    if status == LicenseStatus::Active && license.status == LicenseStatus::Expired {
        return Err(CliError::Conflict(format!(
            "the license's subscription ended at {}: an expired license cannot be reinstated; issue a new one with `keystead license issue`",
            license.subscription_ended_at.as_deref().unwrap_or_default()
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
