//! Where a sale becomes a license: resolve the product, mint the key, write license + payment + idempotency
//! record in one transaction, then email the key exactly once. Pings and the CLI's manual issue share this path.

use std::time::Duration;

use time::OffsetDateTime;

use crate::domain::{
    Email, EmailStatus, GumroadPurchase, KeySource, License, LicenseKey, LicenseStatus, Payment,
    Permalink, Product, SaleId, Tenant, UsdCents, Variant, random_id, rfc3339, seats,
};
use crate::gumroad::EventKind;
use crate::gumroad::{Gift, SalePing};
use crate::mail::{MailError, Mailer, compose_key_email_with};
use crate::storage::{EmailOutcome, NewSale, Renewal, RenewalWrite, SaleWrite, Store, StoreError};

/// Idempotency records outlive Gumroad's last retry (about 14 minutes) by far.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long one sender holds the right to send a key email. Longer than any SES call, shorter than Gumroad's
/// first retry (60 s), so a crashed sender's email is sent by the retry.
pub const EMAIL_CLAIM: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SaleError {
    #[error("No product mapping for permalink '{0}'")]
    NoMapping(String),
    #[error("Product '{0}' not found")]
    ProductNotFound(String),
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// The license is committed but its email is still owed; the retry will send it.
    #[error("email failed: {0}")]
    EmailFailed(MailError),
    /// The license is committed and another request holds the right to send its email; a later retry sends it if
    /// that request never did.
    #[error("the key email is owed and claimed by another request")]
    EmailOwed,
    #[error(transparent)]
    Randomness(#[from] crate::domain::RandomnessError),
}

/// A sale from any source, with the product resolved.
#[derive(Debug, Clone)]
pub struct SaleOrder<'a> {
    pub sale_id: SaleId,
    pub product: &'a Product,
    pub buyer_email: Email,
    pub buyer_name: Option<String>,
    pub product_name: Option<String>,
    pub price: UsdCents,
    pub currency: String,
    pub quantity: u32,
    pub sale_timestamp: Option<String>,
    pub subscription_id: Option<String>,
    /// `is_recurring_charge=true`: a renewal when keystead knows the subscription.
    pub is_recurring_charge: bool,
    /// `gumroad` or `manual`.
    pub source: &'static str,
    pub send_email: bool,
    pub variants: Vec<Variant>,
    pub gift: Option<Gift>,
    /// The Gumroad permalink the sale resolved through, and Gumroad's product id.
    pub gumroad_permalink: Option<Permalink>,
    pub gumroad_product_id: Option<String>,
    /// Gumroad's own key for the purchase, used when the product's key source is Gumroad.
    pub gumroad_key: Option<String>,
    pub purchase: Option<GumroadPurchase>,
    /// What Gumroad already did to the sale (an imported past sale): minted in that state.
    pub refunded: bool,
    pub disputed: bool,
    /// When the sale happened, for an imported past sale: its expiry and renewals count from then.
    pub sold_at: Option<OffsetDateTime>,
}

#[derive(Debug)]
pub enum SaleResult {
    Created {
        license: Box<License>,
        email: EmailStatus,
    },
    /// A subscription's renewal: the existing license, its expiry extended; no new key, no email.
    Renewed {
        license: Box<License>,
    },
    Duplicate,
}

/// The product a ping's permalinks map to, and the permalink that mapped: a mapping of a permalink and one of
/// the sale's variants (`Tier=Team`) wins over a permalink's plain mapping; among candidates, the first wins.
pub fn resolve_product<'t>(
    tenant: &'t Tenant,
    ping: &SalePing,
) -> Result<(&'t Product, &'t Permalink), SaleError> {
    let by_variant = ping.product_refs.iter().find_map(|slug| {
        ping.variants
            .iter()
            .find_map(|variant| {
                tenant
                    .variants
                    .iter()
                    .find(|m| m.permalink == *slug && m.variant.is(variant))
            })
            .map(|m| (&m.permalink, &m.product_id))
    });
    let mapped = by_variant.or_else(|| {
        ping.product_refs
            .iter()
            .find_map(|slug| tenant.permalinks.get_key_value(slug))
    });
    let Some((permalink, product_id)) = mapped else {
        let first = ping.product_refs.first().map(|p| p.as_str().to_owned());
        return Err(SaleError::NoMapping(first.unwrap_or_default()));
    };
    let product = tenant
        .products
        .get(product_id)
        .ok_or_else(|| SaleError::ProductNotFound(product_id.to_string()))?;
    Ok((product, permalink))
}

impl<'a> SaleOrder<'a> {
    pub fn from_ping(ping: SalePing, product: &'a Product, permalink: &Permalink) -> Self {
        Self {
            sale_id: ping.sale_id,
            product,
            buyer_email: ping.email,
            buyer_name: ping.buyer_name,
            product_name: ping.product_name,
            price: ping.price,
            currency: ping.currency,
            quantity: ping.quantity,
            sale_timestamp: ping.sale_timestamp,
            subscription_id: ping.subscription_id,
            is_recurring_charge: ping.is_recurring_charge,
            source: "gumroad",
            send_email: product.emails_key(),
            variants: ping.variants,
            gift: ping.gift,
            gumroad_permalink: Some(permalink.clone()),
            gumroad_product_id: ping.gumroad_product_id,
            gumroad_key: ping.license_key,
            purchase: Some(ping.purchase),
            refunded: false,
            disputed: false,
            sold_at: None,
        }
    }

    /// A sale outside Gumroad (the CLI's `license issue`): one seat's worth, a payment of nothing.
    pub fn manual(
        sale_id: SaleId,
        product: &'a Product,
        buyer_email: Email,
        buyer_name: Option<String>,
        send_email: bool,
    ) -> Self {
        Self {
            sale_id,
            product,
            buyer_email,
            buyer_name,
            product_name: Some(product.name.clone()),
            price: UsdCents(0),
            currency: "usd".to_owned(),
            quantity: 1,
            sale_timestamp: Some(rfc3339(OffsetDateTime::now_utc())),
            subscription_id: None,
            is_recurring_charge: false,
            source: "manual",
            send_email,
            variants: Vec::new(),
            gift: None,
            gumroad_permalink: None,
            gumroad_product_id: None,
            gumroad_key: None,
            purchase: None,
            refunded: false,
            disputed: false,
            sold_at: None,
        }
    }
}

fn unix(at: OffsetDateTime) -> i64 {
    at.unix_timestamp()
}

/// The key a sale's license carries: Gumroad's own for a product whose key source is Gumroad (when the ping has
/// one and `own_key` allows it), keystead's otherwise.
fn license_key(order: &SaleOrder<'_>, own_key: bool) -> Result<LicenseKey, SaleError> {
    let product = order.product;
    if product.key_source == KeySource::Gumroad {
        match &order.gumroad_key {
            Some(key) if own_key => return Ok(LicenseKey::from_string(key.clone())),
            Some(_) => tracing::warn!(
                product = %product.product_id,
                "Gumroad's key is already another license's: minting a keystead key instead"
            ),
            None => tracing::warn!(
                product = %product.product_id,
                "the sale carries no license_key although the product keeps Gumroad's keys: minting a keystead key"
            ),
        }
    }
    Ok(LicenseKey::generate(&product.key_prefix)?)
}

/// The state Gumroad already left an imported sale in, as the lifecycle events would have.
fn initial_status(tenant: &Tenant, order: &SaleOrder<'_>) -> LicenseStatus {
    let mut status = LicenseStatus::Active;
    if order.refunded {
        status = crate::lifecycle::transition(
            status,
            &EventKind::Refund { full: true },
            tenant.refund_policy,
        );
    }
    if order.disputed {
        status = crate::lifecycle::transition(status, &EventKind::Dispute, tenant.refund_policy);
    }
    status
}

fn mint(
    tenant: &Tenant,
    order: &SaleOrder<'_>,
    now: OffsetDateTime,
    own_key: bool,
) -> Result<NewSale, SaleError> {
    let product = order.product;
    let key = license_key(order, own_key)?;
    let status = initial_status(tenant, order);
    let key_hash = key.hash();
    let sold = order.sold_at.unwrap_or(now);
    let expires = product
        .duration_days
        .map(|days| sold + Duration::from_secs(u64::from(days) * 24 * 3600));
    let created_at = rfc3339(sold);
    let license = License {
        license_id: random_id("lic")?,
        tenant_id: tenant.tenant_id.clone(),
        product_id: product.product_id.clone(),
        product_name: product.name.clone(),
        key,
        key_hash: key_hash.clone(),
        status,
        activation_limit: seats(product.activation_limit, order.quantity),
        activations: 0,
        expires_at: expires.map(rfc3339),
        buyer_email: order.buyer_email.clone(),
        buyer_name: order.buyer_name.clone(),
        sale_id: order.sale_id.clone(),
        subscription_id: order.subscription_id.clone(),
        source: order.source.to_owned(),
        created_at: created_at.clone(),
        email_status: EmailStatus::Pending,
        email_message_id: None,
        email_failure: None,
        email_maybe_sent: false,
        // The minting request holds the email claim from the start: no extra round trip to take it.
        email_claim_until: (order.send_email && status == LicenseStatus::Active)
            .then(|| unix(now + EMAIL_CLAIM)),
        quantity: order.quantity,
        gumroad_permalink: order.gumroad_permalink.clone(),
        gumroad_product_id: order.gumroad_product_id.clone(),
        pending_change: None,
        gumroad: order.purchase.clone(),
        uses: 0,
        refunded: order.refunded,
        chargebacked: order.disputed,
        disabled: false,
        subscription_cancelled_at: None,
        subscription_ended_at: None,
        subscription_failed_at: None,
    };
    let payment = Payment {
        tenant_id: tenant.tenant_id.clone(),
        sale_id: order.sale_id.clone(),
        product_id: product.product_id.clone(),
        license_id: license.license_id.clone(),
        key_hash,
        buyer_email: order.buyer_email.clone(),
        buyer_name: order.buyer_name.clone(),
        product_name: order
            .product_name
            .clone()
            .unwrap_or_else(|| "Unknown product".to_owned()),
        // A giftee's `price` is 0: what was paid is the gifter's `gift_price`.
        amount_usd_cents: order
            .gift
            .as_ref()
            .map_or(order.price.0, |gift| gift.price.0),
        currency: order.currency.clone(),
        quantity: order.quantity,
        sale_timestamp: order.sale_timestamp.clone(),
        source: order.source.to_owned(),
        created_at,
        gift: order.gift.is_some(),
        gifter_email: order
            .gift
            .as_ref()
            .and_then(|gift| gift.gifter_email.clone()),
        variants: order.variants.clone(),
    };
    Ok(NewSale {
        license,
        payment,
        idempotency_ttl: unix(now + IDEMPOTENCY_TTL),
        marker: None,
    })
}

/// What recording the email's outcome may take (one DynamoDB update's operation timeout), and the least time worth
/// starting a send with.
const RECORD_BUDGET: Duration = Duration::from_millis(1_200);
const LEAST_SEND_BUDGET: Duration = Duration::from_millis(300);

/// How long a duplicate waits for another request that holds the email claim to record the email as sent.
const OWED_EMAIL_POLL: Duration = Duration::from_millis(250);
const OWED_EMAIL_POLLS: usize = 10;

/// How many times a sale is re-minted because an event's marker changed while it was being written.
const MARKER_RETRIES: usize = 5;

/// Issues exactly one license for (tenant, sale id), however often and however concurrently it is called.
#[tracing::instrument(skip_all, fields(tenant = %tenant.tenant_id, sale_id = %order.sale_id))]
pub async fn issue(
    store: &dyn Store,
    mailer: &dyn Mailer,
    tenant: &Tenant,
    order: SaleOrder<'_>,
) -> Result<SaleResult, SaleError> {
    let now = OffsetDateTime::now_utc();
    if order.is_recurring_charge
        && let Some(subscription_id) = &order.subscription_id
        && let Some(license) = store
            .license_for_subscription(&tenant.tenant_id, subscription_id)
            .await?
    {
        return renew(store, tenant, &order, license, now).await;
    }
    let mut new_sale = mint(tenant, &order, now, true)?;
    let mut written = store.write_sale(&new_sale).await?;
    if matches!(written, SaleWrite::KeyTaken) {
        new_sale = mint(tenant, &order, now, false)?;
        written = store.write_sale(&new_sale).await?;
    }
    for _ in 0..MARKER_RETRIES {
        let SaleWrite::Marked(status) = written else {
            break;
        };
        // An event (a refund, a dispute) arrived before this sale: mint the license in the state it left.
        new_sale.marker = Some(status);
        new_sale.license.status = status;
        new_sale.license.refunded |= status == LicenseStatus::Revoked;
        new_sale.license.chargebacked |= status == LicenseStatus::Suspended;
        if status != LicenseStatus::Active {
            new_sale.license.email_claim_until = None;
        }
        written = store.write_sale(&new_sale).await?;
    }
    match written {
        SaleWrite::Created => {
            let mut license = new_sale.license;
            if order.send_email && license.status == LicenseStatus::Active {
                license.email_status = deliver(store, mailer, tenant, &license).await?;
            }
            let email = license.email_status;
            Ok(SaleResult::Created {
                license: Box::new(license),
                email,
            })
        }
        SaleWrite::Duplicate(Some(license))
            if order.send_email
                && license.email_intended()
                && license.email_status != EmailStatus::Sent
                && license.status == LicenseStatus::Active
                && license.source == "gumroad" =>
        {
            // An earlier attempt committed the license but its email is owed: send it once, if nobody else is.
            // Only when this order mails its key and the license was minted to be mailed: a duplicate of an
            // imported sale, or of a product that never emails its key, sends nothing.
            let claimed = store
                .claim_email(
                    &tenant.tenant_id,
                    &license.key_hash,
                    unix(now),
                    unix(now + EMAIL_CLAIM),
                )
                .await?;
            if claimed {
                deliver(store, mailer, tenant, &license).await?;
                return Ok(SaleResult::Duplicate);
            }
            // Someone else holds the claim: a request sending right now (it records the email within a second or
            // two), or one that died before sending. Wait a little for the first; for the second, answer 503 so
            // that Gumroad comes back after the claim has run out and that retry sends the email.
            for _ in 0..OWED_EMAIL_POLLS {
                tokio::time::sleep(OWED_EMAIL_POLL).await;
                let sent = store
                    .get_license(&tenant.tenant_id, &license.key_hash)
                    .await?
                    .is_some_and(|l| l.email_status == EmailStatus::Sent);
                if sent {
                    return Ok(SaleResult::Duplicate);
                }
            }
            Err(SaleError::EmailOwed)
        }
        SaleWrite::Duplicate(_) => Ok(SaleResult::Duplicate),
        SaleWrite::Bound(key_hash) => {
            // The subscription got its license from another of its charges first (a renewal imported or pinged
            // before its first sale): this sale is a charge of that license, as a renewal is.
            let license = store
                .get_license(&tenant.tenant_id, &key_hash)
                .await?
                .ok_or_else(|| {
                    StoreError::Unavailable(
                        "the subscription's pointer names a license that does not exist".to_owned(),
                    )
                })?;
            renew(store, tenant, &order, license, now).await
        }
        SaleWrite::Marked(_) | SaleWrite::KeyTaken => Err(SaleError::Storage(
            StoreError::Unavailable("the sale's event marker kept changing".to_owned()),
        )),
    }
}

/// A renewal payment on a subscription keystead knows: extend the license by the key type's duration (from its
/// current expiry, or from now when that has passed), record the payment, send nothing.
async fn renew(
    store: &dyn Store,
    tenant: &Tenant,
    order: &SaleOrder<'_>,
    mut license: License,
    now: OffsetDateTime,
) -> Result<SaleResult, SaleError> {
    // What an event for this renewal's sale (a refund, a dispute) that arrived first left, as last seen.
    let mut marker = None;
    for _ in 0..MARKER_RETRIES {
        let current_expiry = license.expires_at.as_deref().and_then(|at| {
            OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
        });
        let to_expires = match order.product.duration_days {
            Some(days) => {
                let sold = order.sold_at.unwrap_or(now);
                let base = current_expiry.filter(|at| *at > sold).unwrap_or(sold);
                Some(base + Duration::from_secs(u64::from(days) * 24 * 3600))
            }
            None => current_expiry,
        };
        let to_status = match (license.status, marker) {
            (LicenseStatus::Revoked, _) | (_, Some(LicenseStatus::Revoked)) => {
                LicenseStatus::Revoked
            }
            (_, Some(LicenseStatus::Suspended)) => LicenseStatus::Suspended,
            (LicenseStatus::Expired, _) => LicenseStatus::Active,
            (status, _) => status,
        };
        let mut minted = mint(tenant, order, now, true)?;
        minted.payment.license_id = license.license_id.clone();
        minted.payment.key_hash = license.key_hash.clone();
        let renewal = Renewal {
            payment: minted.payment,
            idempotency_ttl: minted.idempotency_ttl,
            from_expires_at: license.expires_at.clone(),
            to_expires_at: to_expires.map(rfc3339),
            from_status: license.status,
            to_status,
            marker,
        };
        match store.write_renewal(&license, &renewal).await? {
            RenewalWrite::Marked(status) => marker = Some(status),
            RenewalWrite::Applied => {
                license.expires_at = renewal.to_expires_at;
                license.status = to_status;
                return Ok(SaleResult::Renewed {
                    license: Box::new(license),
                });
            }
            RenewalWrite::Duplicate => return Ok(SaleResult::Duplicate),
            RenewalWrite::Stale => {
                match store
                    .get_license(&tenant.tenant_id, &license.key_hash)
                    .await?
                {
                    Some(fresh) => license = fresh,
                    None => return Err(SaleError::Storage(StoreError::NotFound)),
                }
            }
        }
    }
    Err(SaleError::Storage(StoreError::Unavailable(
        "the renewed license kept changing".to_owned(),
    )))
}

/// Sends the key email (the caller holds the claim) and records the outcome.
pub async fn deliver(
    store: &dyn Store,
    mailer: &dyn Mailer,
    tenant: &Tenant,
    license: &License,
) -> Result<EmailStatus, SaleError> {
    let download = match mailer.download_links() {
        Some(links) => links.for_license(tenant, license).await,
        None => None,
    };
    let email = compose_key_email_with(&tenant.sender, license, download.as_ref());
    // The outcome is recorded before the request's deadline: the send gets what is left after the record's
    // budget, and is not started at all when that is too little (Gumroad's retry sends it, after the claim).
    let send_budget = crate::deadline::remaining().map(|left| left.saturating_sub(RECORD_BUDGET));
    if send_budget.is_some_and(|budget| budget < LEAST_SEND_BUDGET) {
        tracing::warn!(
            "too little time left to send the key email and record it: owed to the next retry"
        );
        return Err(SaleError::EmailOwed);
    }
    let now = unix(OffsetDateTime::now_utc());
    let pending_before = license.email_status == EmailStatus::Pending
        && license.email_claim_until.is_some_and(|until| until < now);
    if license.email_maybe_sent || pending_before {
        tracing::warn!(
            outcome = "email_outcome_unknown",
            "an earlier send of this key may have been delivered (its answer never arrived): sending again, so the buyer may get it twice"
        );
    }
    let sent = match send_budget {
        Some(budget) => tokio::time::timeout(budget, mailer.send(&email))
            .await
            .unwrap_or_else(|_| {
                Err(MailError::unknown_outcome(
                    "the request's deadline came first",
                ))
            }),
        None => mailer.send(&email).await,
    };
    match sent {
        Ok(message_id) => {
            let outcome = EmailOutcome::Sent { message_id };
            if let Err(err) = store
                .record_email(&tenant.tenant_id, &license.key_hash, &outcome)
                .await
            {
                // The buyer has the key; answering 5xx now would only risk a second email.
                tracing::error!(error = %err, "email sent but its state could not be recorded");
            }
            Ok(EmailStatus::Sent)
        }
        Err(err) => {
            tracing::warn!(error = %err, reason = err.reason.as_str(), "key email failed");
            crate::telemetry::count_email_failure(err.reason, &tenant.tenant_id);
            let outcome = if err.maybe_delivered {
                EmailOutcome::Unknown
            } else {
                EmailOutcome::Failed { reason: err.reason }
            };
            if let Err(record_err) = store
                .record_email(&tenant.tenant_id, &license.key_hash, &outcome)
                .await
            {
                tracing::error!(error = %record_err, "email failure could not be recorded");
            }
            Err(SaleError::EmailFailed(err))
        }
    }
}
