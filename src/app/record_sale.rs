//! Where a sale becomes a license: resolve the product, mint the key, write license + payment + idempotency
//! record in one transaction, then email the key exactly once. Pings and the CLI's manual issue share this path.

use std::time::Duration;

use time::OffsetDateTime;

use crate::domain::{
    Email, EmailStatus, Fact, FactKind, GumroadPurchase, KeySource, License, LicenseId, LicenseKey,
    LicenseStatus, Payment, Permalink, PlanChange, Product, RefundPolicy, SaleId, Tenant, UsdCents,
    Variant, random_id, rfc3339, seats,
};
use crate::gumroad::{Gift, SalePing};
use crate::mail::{MailError, Mailer, compose_key_email_with};
use crate::storage::{
    Anchor, EmailOutcome, NewSale, Orphans, Renewal, RenewalWrite, SaleWrite, Store, StoreError,
};

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

/// When a charge happened, for ordering it among a subscription's facts: Gumroad's `sale_timestamp` (an imported
/// sale's own date), else when keystead heard of it.
fn charge_time(order: &SaleOrder<'_>, now: OffsetDateTime) -> String {
    order
        .sold_at
        .or_else(|| {
            order
                .sale_timestamp
                .as_deref()
                .and_then(crate::gumroad::parse_time)
        })
        .map_or_else(|| rfc3339(now), rfc3339)
}

/// The facts a sale states by itself: its charge (which pays for the product's duration from when it came, and
/// states the plan it was sold as: its tier's product and its quantity), and for an imported past sale what Gumroad
/// had already done to it (the same facts, by the same ids, as the refund and dispute pings state).
fn sale_facts(tenant: &Tenant, order: &SaleOrder<'_>, now: OffsetDateTime) -> Vec<Fact> {
    let product = order.product;
    let at = charge_time(order, now);
    let plan = Some(PlanChange {
        product_id: product.product_id.clone(),
        product_name: product.name.clone(),
        activation_limit: seats(product.activation_limit, order.quantity),
        quantity: order.quantity,
        effective_at: at.clone(),
    });
    let sale_id = order.sale_id.clone();
    let mut facts = vec![Fact {
        id: Fact::charge_id(&sale_id),
        at: at.clone(),
        kind: FactKind::Charge {
            sale_id: sale_id.clone(),
            period_days: product.duration_days,
            period_from: Some(rfc3339(order.sold_at.unwrap_or(now))),
            plan,
        },
    }];
    if order.refunded {
        facts.push(Fact {
            id: Fact::refund_id(&sale_id, true),
            at: at.clone(),
            kind: FactKind::Refund {
                sale_id: sale_id.clone(),
                full: true,
                revokes: tenant.refund_policy == RefundPolicy::Revoke,
            },
        });
    }
    if order.disputed {
        facts.push(Fact {
            id: Fact::dispute_id(&sale_id),
            at,
            kind: FactKind::Dispute { sale_id },
        });
    }
    facts
}

/// `known` with each of `more` that it does not have yet (by id), the orphans resolved against `license`.
fn with_facts(
    tenant: &Tenant,
    license: &License,
    mut known: Vec<Fact>,
    more: impl IntoIterator<Item = Fact>,
    now: OffsetDateTime,
) -> Vec<Fact> {
    for fact in more {
        if !known.iter().any(|k| k.id == fact.id) {
            known.push(crate::app::apply_event::resolve(tenant, license, fact, now));
        }
    }
    known
}

fn mint(
    tenant: &Tenant,
    order: &SaleOrder<'_>,
    now: OffsetDateTime,
    own_key: bool,
    sale_orphans: Orphans,
    subscription_orphans: Option<Orphans>,
) -> Result<NewSale, SaleError> {
    let product = order.product;
    let key = license_key(order, own_key)?;
    let key_hash = key.hash();
    let created_at = rfc3339(order.sold_at.unwrap_or(now));
    let license = License {
        license_id: LicenseId::from_stored(random_id("lic")?),
        tenant_id: tenant.tenant_id.clone(),
        product_id: product.product_id.clone(),
        product_name: product.name.clone(),
        key,
        key_hash: key_hash.clone(),
        key_display: None,
        // Status, expiry, flags and plan are derived from the sale's facts below.
        status: LicenseStatus::Active,
        activation_limit: seats(product.activation_limit, order.quantity),
        activations: 0,
        expires_at: None,
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
        email_claim_until: None,
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
        facts: Vec::new(),
        v: 1,
    };
    let orphans = sale_orphans
        .facts
        .iter()
        .chain(subscription_orphans.iter().flat_map(|o| &o.facts))
        .cloned();
    let facts = with_facts(
        tenant,
        &license,
        sale_facts(tenant, order, now),
        orphans,
        now,
    );
    let mut license = license;
    license.refold(facts, &rfc3339(now));
    // The minting request holds the email claim from the start: no extra round trip to take it.
    if order.send_email && license.status == LicenseStatus::Active {
        license.email_claim_until = Some(unix(now + EMAIL_CLAIM));
    }
    let payment = payment(tenant, order, &license, created_at);
    Ok(NewSale {
        license,
        payment,
        idempotency_ttl: unix(now + IDEMPOTENCY_TTL),
        sale_orphans,
        subscription_orphans,
    })
}

/// The payment record of a sale, for `license`.
fn payment(
    tenant: &Tenant,
    order: &SaleOrder<'_>,
    license: &License,
    created_at: String,
) -> Payment {
    let product = order.product;
    Payment {
        tenant_id: tenant.tenant_id.clone(),
        sale_id: order.sale_id.clone(),
        product_id: product.product_id.clone(),
        license_id: license.license_id.clone(),
        key_hash: license.key_hash.clone(),
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
    }
}

/// What recording the email's outcome may take (one DynamoDB update's operation timeout), and the least time worth
/// starting a send with.
const RECORD_BUDGET: Duration = Duration::from_millis(1_200);
const LEAST_SEND_BUDGET: Duration = Duration::from_millis(300);
/// How many times recording a sent email is tried.
const RECORD_ATTEMPTS: u32 = 3;

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
        // A retry of the charge that minted this license (a renewal seen before its first sale) may owe the email.
        let minted_by_this_sale = license.sale_id == order.sale_id;
        return match renew(store, tenant, &order, license.clone(), now).await? {
            SaleResult::Duplicate if minted_by_this_sale => {
                owed_email(store, mailer, tenant, &order, &license, now).await
            }
            other => Ok(other),
        };
    }
    // Most sales have no facts waiting for them: the transaction checks that, and only if it fails are they read.
    let no_orphans = || order.subscription_id.as_ref().map(|_| Orphans::default());
    let mut own_key = true;
    let mut new_sale = mint(
        tenant,
        &order,
        now,
        own_key,
        Orphans::default(),
        no_orphans(),
    )?;
    let mut written = store.write_sale(&new_sale).await?;
    for _ in 0..MARKER_RETRIES {
        match written {
            SaleWrite::KeyTaken if own_key => own_key = false,
            // Events (a refund, a dispute, a cancellation) arrived before this sale: mint the license with them.
            SaleWrite::Marked => {}
            _ => break,
        }
        let tenant_id = &tenant.tenant_id;
        let sale_orphans = store
            .orphans(tenant_id, Anchor::Sale(&order.sale_id))
            .await?;
        let subscription_orphans = match &order.subscription_id {
            Some(id) => Some(store.orphans(tenant_id, Anchor::Subscription(id)).await?),
            None => None,
        };
        new_sale = mint(
            tenant,
            &order,
            now,
            own_key,
            sale_orphans,
            subscription_orphans,
        )?;
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
        SaleWrite::Duplicate(Some(license)) => {
            owed_email(store, mailer, tenant, &order, &license, now).await
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
        SaleWrite::Marked | SaleWrite::KeyTaken => Err(SaleError::Storage(
            StoreError::Unavailable("the sale's event marker kept changing".to_owned()),
        )),
    }
}

/// A duplicate of the sale that minted `license`: an earlier attempt committed the license, and its email may be
/// owed. It is sent once, if nobody else is sending it, and only when this order mails its key and the license was
/// minted to be mailed: a duplicate of an imported sale, or of a product that never emails its key, sends nothing.
async fn owed_email(
    store: &dyn Store,
    mailer: &dyn Mailer,
    tenant: &Tenant,
    order: &SaleOrder<'_>,
    license: &License,
    now: OffsetDateTime,
) -> Result<SaleResult, SaleError> {
    let owed = order.send_email
        && license.email_intended()
        && license.email_status != EmailStatus::Sent
        && license.status == LicenseStatus::Active
        && license.source == "gumroad";
    if !owed {
        return Ok(SaleResult::Duplicate);
    }
    let claimed = store
        .claim_email(
            &tenant.tenant_id,
            &license.key_hash,
            unix(now),
            unix(now + EMAIL_CLAIM),
        )
        .await?;
    if claimed {
        deliver(store, mailer, tenant, license).await?;
        return Ok(SaleResult::Duplicate);
    }
    // Someone else holds the claim: a request sending right now (it records the email within a second or two), or
    // one that died before sending. Wait a little for the first; for the second, answer 503 so that Gumroad comes
    // back after the claim has run out and that retry sends the email.
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

/// A further charge of a license keystead knows (a renewal, or a subscription's first sale that came after one of
/// its renewals): the charge is folded into the license (extending it by the key type's duration), its payment is
/// recorded, nothing is sent.
async fn renew(
    store: &dyn Store,
    tenant: &Tenant,
    order: &SaleOrder<'_>,
    mut license: License,
    now: OffsetDateTime,
) -> Result<SaleResult, SaleError> {
    // Events for this charge's sale (a refund, a dispute) that arrived first: read only when the write says so.
    let mut sale_orphans = Orphans::default();
    for _ in 0..MARKER_RETRIES {
        let facts = with_facts(
            tenant,
            &license,
            license.known_facts(),
            sale_facts(tenant, order, now)
                .into_iter()
                .chain(sale_orphans.facts.iter().cloned()),
            now,
        );
        let mut after = license.clone();
        after.refold(facts, &rfc3339(now));
        let renewal = Renewal {
            payment: payment(
                tenant,
                order,
                &license,
                rfc3339(order.sold_at.unwrap_or(now)),
            ),
            idempotency_ttl: unix(now + IDEMPOTENCY_TTL),
            before: license.clone(),
            after,
            sale_orphans: sale_orphans.clone(),
        };
        match store.write_renewal(&renewal).await? {
            RenewalWrite::Applied => {
                return Ok(SaleResult::Renewed {
                    license: Box::new(renewal.after),
                });
            }
            RenewalWrite::Duplicate => return Ok(SaleResult::Duplicate),
            RenewalWrite::Marked => {
                sale_orphans = store
                    .orphans(&tenant.tenant_id, Anchor::Sale(&order.sale_id))
                    .await?;
            }
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
            // An email sent but not recorded as sent would be sent again once its claim runs out: the record
            // gets a few tries within the budget kept for it.
            let mut recorded = Err(StoreError::NotFound);
            for attempt in 0..RECORD_ATTEMPTS {
                if attempt > 0 {
                    crate::storage::backoff(attempt).await;
                }
                recorded = store
                    .record_email(&tenant.tenant_id, &license.key_hash, &outcome)
                    .await;
                if matches!(recorded, Ok(()) | Err(StoreError::NotFound)) {
                    break;
                }
            }
            if let Err(err) = recorded {
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
