//! The records keystead keeps: tenants and their products, licenses, and payments. Storage adapters persist these
//! as they are; nothing here knows about DynamoDB.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    Derived, Email, EmailKey, Fact, FactKind, GumroadPurchase, KeyHash, KeyPrefix, KeySource,
    LicenseId, LicenseKey, Permalink, PlanChange, ProductId, SaleId, TenantId, Variant,
    VariantMapping, derive,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Suspended,
}

/// What a refund does to the license minted for the refunded sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundPolicy {
    #[default]
    Revoke,
    Keep,
}

/// A seller running keystead: who may ping, who sends the mail, and which Gumroad product is which keystead product.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    pub tenant_id: TenantId,
    pub status: TenantStatus,
    /// Hex SHA-256 of the webhook token; the token itself is never stored.
    pub token_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<String>,
    pub sender: Email,
    #[serde(default)]
    pub permalinks: BTreeMap<Permalink, ProductId>,
    #[serde(default = "enabled")]
    pub gumroad_enabled: bool,
    #[serde(default)]
    pub refund_policy: RefundPolicy,
    pub created_at: String,
    /// Loaded alongside the tenant in the same read; stored as records of their own.
    #[serde(skip)]
    pub products: BTreeMap<ProductId, Product>,
    /// A permalink's variants sold as products of their own (`Tier=Team` → `team`); records of their own too.
    #[serde(skip)]
    pub variants: Vec<VariantMapping>,
    /// The `kid` of the key that signs the tenant's leases now; `None` until the first one is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_kid: Option<String>,
    /// The current and retired signing keys, records of their own loaded in the same read.
    #[serde(skip)]
    pub signing_keys: Vec<SealedSigningKey>,
    /// Confirm each new sale with Gumroad's sales API before minting (`tenant set --verify-sales on`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify_sales: bool,
    /// The Gumroad access token read-back uses, sealed like a signing key (`kid` `gumroad-token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gumroad_token: Option<SealedSecret>,
    /// Answer Gumroad's own license API (`POST /gumroad/<tenant>/v2/licenses/verify`) for this tenant
    /// (`tenant set --gumroad-verify on`, or `gumroad import`); see `answers_gumroad_verify`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gumroad_verify: bool,
}

/// A secret sealed with AES-256-GCM under a KMS data key, with the tenant id and `kid` as encryption context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub kid: String,
    pub sealed_data_key: String,
    pub nonce: String,
    pub ciphertext: String,
}

impl Tenant {
    /// A new, active tenant with nothing mapped yet.
    pub fn new(tenant_id: TenantId, token_hash: String, sender: Email, created_at: String) -> Self {
        Self {
            tenant_id,
            status: TenantStatus::Active,
            token_hash,
            seller_id: None,
            sender,
            permalinks: BTreeMap::new(),
            gumroad_enabled: true,
            refund_policy: RefundPolicy::default(),
            created_at,
            products: BTreeMap::new(),
            variants: Vec::new(),
            signing_kid: None,
            signing_keys: Vec::new(),
            verify_sales: false,
            gumroad_token: None,
            gumroad_verify: false,
        }
    }

    /// Whether a license of `sold` is one an app of `named` accepts: the same product, or a tier of the same
    /// Gumroad product (both mapped from one permalink, plainly or by variant). An app sold in tiers names its
    /// base product and takes every tier's license; another app of the seller takes none of them.
    pub fn same_product_family(&self, named: &ProductId, sold: &ProductId) -> bool {
        if named == sold {
            return true;
        }
        // Whether the products one permalink sells (plainly or by variant) include `product`.
        let sells = |permalink: &Permalink, product: &ProductId| {
            self.permalinks.get(permalink) == Some(product)
                || self
                    .variants
                    .iter()
                    .any(|m| m.permalink == *permalink && m.product_id == *product)
        };
        self.permalinks
            .keys()
            .chain(self.variants.iter().map(|m| &m.permalink))
            .any(|p| sells(p, named) && sells(p, sold))
    }

    /// Whether the Gumroad-compatible verify route answers for this tenant. It tells any key holder the buyer's
    /// email, name, custom fields and price, and counts `uses`: a tenant opts in (`tenant set --gumroad-verify
    /// on`, which `gumroad import` does) or keeps Gumroad's keys on a product (`--key-source gumroad`), the two
    /// ways an app that already calls Gumroad's verify moves here. Otherwise it answers Gumroad's 404.
    pub fn answers_gumroad_verify(&self) -> bool {
        self.gumroad_verify
            || self
                .products
                .values()
                .any(|product| product.key_source == crate::domain::KeySource::Gumroad)
    }

    /// The key that signs the tenant's leases now.
    pub fn current_signing_key(&self) -> Option<&SealedSigningKey> {
        let kid = self.signing_kid.as_deref()?;
        self.signing_keys.iter().find(|key| key.kid == kid)
    }

    /// The keys a verifier may need at `now` (unix seconds): the current one and every retired one whose leases
    /// may still be unexpired.
    pub fn published_signing_keys(&self, now: i64) -> impl Iterator<Item = &SealedSigningKey> {
        self.signing_keys.iter().filter(move |key| {
            self.signing_kid.as_deref() == Some(key.kid.as_str())
                || key.publish_until.is_some_and(|until| until > now)
        })
    }

    /// The longest any lease of this tenant's products can last: how long a retired key stays published.
    pub fn longest_lease_seconds(&self) -> u64 {
        self.products
            .values()
            .map(Product::longest_lease_seconds)
            .fold(Product::DEFAULT_TOKEN_TTL_SECONDS, u64::max)
    }

    /// The product a permalink's variant is mapped to, if the seller mapped it.
    pub fn variant_product(&self, permalink: &Permalink, variant: &Variant) -> Option<&ProductId> {
        self.variants
            .iter()
            .find(|m| m.permalink == *permalink && m.variant.is(variant))
            .map(|m| &m.product_id)
    }
}

fn enabled() -> bool {
    true
}

/// A product the seller licenses, with its default key type.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Product {
    pub product_id: ProductId,
    pub name: String,
    pub key_prefix: KeyPrefix,
    pub activation_limit: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_days: Option<u32>,
    /// Feature names the product's licenses unlock, answered by `validate` and `activate`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<String>,
    /// A machine's seat lasts this long after its last `activate` or `validate`; `None`: until deactivated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_lease_seconds: Option<u64>,
    /// How long a lease is good for when seats do not expire; `None`: 30 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ttl_seconds: Option<u64>,
    /// Whose keys its licenses carry: keystead's own, or the ones Gumroad already issued.
    #[serde(default)]
    pub key_source: KeySource,
    /// Whether the key email is sent; `None`: the key source's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_key: Option<EmailKey>,
    pub created_at: String,
    /// The file buyers download (`keystead product file`); `None` until one is uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<super::ProductFile>,
    /// What its releases need: the keys its apps pin, what expired and perpetual licenses get (issue 26).
    #[serde(default, skip_serializing_if = "is_default")]
    pub releases: super::releases::ReleaseSettings,
    /// Bumped by every write to the product; `product set` writes only over the version it read.
    #[serde(default)]
    pub v: u64,
}

impl Product {
    pub const DEFAULT_ACTIVATION_LIMIT: u32 = 3;

    /// A product with the default key type: 3 activations, no expiry, no entitlements, seats held until freed.
    pub fn new(
        product_id: ProductId,
        name: String,
        key_prefix: KeyPrefix,
        created_at: String,
    ) -> Self {
        Self {
            product_id,
            name,
            key_prefix,
            activation_limit: Self::DEFAULT_ACTIVATION_LIMIT,
            duration_days: None,
            entitlements: Vec::new(),
            seat_lease_seconds: None,
            token_ttl_seconds: None,
            key_source: KeySource::default(),
            email_key: None,
            created_at,
            file: None,
            releases: Default::default(),
            v: 0,
        }
    }

    /// Whether a sale of this product emails its key.
    pub fn emails_key(&self) -> bool {
        self.email_key
            .unwrap_or(EmailKey::default_for(self.key_source))
            == EmailKey::Always
    }
    pub const DEFAULT_TOKEN_TTL_SECONDS: u64 = 30 * 24 * 3600;

    /// The longest a lease of this product can last.
    pub fn longest_lease_seconds(&self) -> u64 {
        self.seat_lease_seconds.unwrap_or(
            self.token_ttl_seconds
                .unwrap_or(Self::DEFAULT_TOKEN_TTL_SECONDS),
        )
    }
}

/// A tenant's Ed25519 signing key. The public half is in the clear; the private half is sealed with AES-256-GCM
/// under a data key that only KMS can open, with the tenant id and `kid` as encryption context.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedSigningKey {
    pub kid: String,
    /// The 32-byte public key, base64url without padding (as in the JWKS).
    pub public_key: String,
    /// KMS's ciphertext of the data key, base64.
    pub sealed_data_key: String,
    /// AES-GCM nonce and ciphertext (with tag) of the 32-byte private key, base64.
    pub nonce: String,
    pub sealed_private_key: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    /// Unix seconds until which a retired key stays published: every lease it signed has expired by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_until: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseStatus {
    Active,
    Suspended,
    Revoked,
    Expired,
}

impl LicenseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "revoked" => Some(Self::Revoked),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// Where the license's key email stands. `pending` until SES accepts it; `failed` is retried by the next ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailStatus {
    Pending,
    Sent,
    Failed,
}

impl EmailStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(Self::Pending),
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// Why a key email was not sent, in the seller's terms: each category has its own fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailFailure {
    /// SES does not know the tenant's sender (nor its domain) as a verified identity: `keystead ses verify`.
    SenderNotVerified,
    /// The account is in the SES sandbox, where only verified recipients get mail: request production access.
    RecipientNotVerified,
    /// Anything else: throttling, a timeout, SES unreachable, a permission missing.
    Other,
}

impl EmailFailure {
    pub const ALL: [Self; 3] = [
        Self::SenderNotVerified,
        Self::RecipientNotVerified,
        Self::Other,
    ];

    /// The name in logs, in the `Reason` dimension of the `EmailFailures` metric, and on the license.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SenderNotVerified => "sender_not_verified",
            Self::RecipientNotVerified => "recipient_not_verified",
            Self::Other => "other",
        }
    }

    /// A few words for people: "sender not verified".
    pub fn describe(self) -> &'static str {
        match self {
            Self::SenderNotVerified => "sender not verified in SES",
            Self::RecipientNotVerified => {
                "recipient not verified (the SES account is in the sandbox)"
            }
            Self::Other => "SES failed",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct License {
    pub license_id: LicenseId,
    pub tenant_id: TenantId,
    pub product_id: ProductId,
    pub product_name: String,
    pub key: LicenseKey,
    pub key_hash: KeyHash,
    /// The key's display form (`LicenseKey::display`), stored beside a sealed key so that events about a license
    /// read for a check (its key left sealed) can still name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_display: Option<String>,
    pub status: LicenseStatus,
    pub activation_limit: u32,
    #[serde(default)]
    pub activations: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub buyer_email: Email,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_name: Option<String>,
    pub sale_id: SaleId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    pub source: String,
    pub created_at: String,
    pub email_status: EmailStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_message_id: Option<String>,
    /// Why the last attempt failed, while `email_status` is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_failure: Option<EmailFailure>,
    /// The last send's answer never arrived: SES may have delivered it (see `EmailOutcome::Unknown`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub email_maybe_sent: bool,
    /// Unix seconds until which one sender holds the right to send the key email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_claim_until: Option<i64>,
    /// Seats bought (`quantity`): the activation limit is the product's times this.
    #[serde(default = "one")]
    pub quantity: u32,
    /// The Gumroad product the sale was for, so that tier changes and Gumroad's own ids resolve later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gumroad_permalink: Option<Permalink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gumroad_product_id: Option<String>,
    /// A downgrade waiting for the end of the paid period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_change: Option<PlanChange>,
    /// The sale as Gumroad described it, for answers in Gumroad's shapes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gumroad: Option<GumroadPurchase>,
    /// Gumroad's `uses` counter, kept by the Gumroad-compatible verify endpoint.
    #[serde(default)]
    pub uses: u64,
    /// Set by a full refund or a dispute (whatever the refund policy did to the status), as Gumroad reports them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refunded: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chargebacked: bool,
    /// Revoked by the seller by hand (`keystead license revoke`): Gumroad's "disabled" key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// When Gumroad said the subscription was cancelled, ended, or ended by failed payments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_cancelled_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_failed_at: Option<String>,
    /// Everything that happened to the license (issue 22): status, flags, expiry and plan are derived from these
    /// (`License::apply_derived`), never edited in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<Fact>,
    /// Bumped by every write to the license; a read-modify-write of it is conditioned on the value it read.
    #[serde(default)]
    pub v: u64,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn one() -> u32 {
    1
}

impl License {
    /// The key's display form: from the key when it is open, else as stored beside the sealed key.
    pub fn shown_key(&self) -> Option<String> {
        if self.key.expose().is_empty() {
            self.key_display.clone()
        } else {
            Some(self.key.display())
        }
    }

    /// The license's facts; for a license made before facts were kept, the facts its stored state implies.
    pub fn known_facts(&self) -> Vec<Fact> {
        if !self.facts.is_empty() {
            return self.facts.clone();
        }
        let at = self.created_at.clone();
        let mut facts = vec![Fact {
            id: Fact::charge_id(&self.sale_id),
            at: at.clone(),
            kind: FactKind::Charge {
                sale_id: self.sale_id.clone(),
                period_days: None,
                period_from: None,
                plan: Some(self.plan()),
            },
        }];
        let mut add = |id: String, at: &str, kind: FactKind| {
            facts.push(Fact {
                id,
                at: at.to_owned(),
                kind,
            });
        };
        if let Some(until) = &self.expires_at {
            add(
                "legacy#expires".to_owned(),
                &at,
                FactKind::Extended {
                    until: until.clone(),
                },
            );
        }
        if self.refunded {
            let revokes = self.status == LicenseStatus::Revoked && !self.disabled;
            add(
                Fact::refund_id(&self.sale_id, true),
                &at,
                FactKind::Refund {
                    sale_id: self.sale_id.clone(),
                    full: true,
                    revokes,
                },
            );
        }
        if self.chargebacked {
            add(
                Fact::dispute_id(&self.sale_id),
                &at,
                FactKind::Dispute {
                    sale_id: self.sale_id.clone(),
                },
            );
        }
        if self.disabled {
            add("legacy#revoked".to_owned(), &at, FactKind::Revoked);
        }
        if let Some(cancelled) = &self.subscription_cancelled_at {
            add(
                "legacy#cancelled".to_owned(),
                cancelled,
                FactKind::Cancelled,
            );
        }
        if let Some(ended) = &self.subscription_ended_at {
            let failed_payment = self.subscription_failed_at.is_some();
            add(
                "legacy#ended".to_owned(),
                ended,
                FactKind::Ended { failed_payment },
            );
        }
        if let Some(pending) = &self.pending_change {
            add(
                "legacy#pending".to_owned(),
                &at,
                FactKind::PlanChanged {
                    to: Some(pending.clone()),
                    request: None,
                },
            );
        }
        facts
    }

    /// The plan the license has now.
    pub fn plan(&self) -> PlanChange {
        PlanChange {
            product_id: self.product_id.clone(),
            product_name: self.product_name.clone(),
            activation_limit: self.activation_limit,
            quantity: self.quantity,
            effective_at: self.created_at.clone(),
        }
    }

    /// Sets everything facts decide to what `derived` says.
    pub fn apply_derived(&mut self, derived: &Derived) {
        self.status = derived.status;
        self.refunded = derived.refunded;
        self.chargebacked = derived.chargebacked;
        self.disabled = derived.disabled;
        self.subscription_cancelled_at = derived.subscription_cancelled_at.clone();
        self.subscription_ended_at = derived.subscription_ended_at.clone();
        self.subscription_failed_at = derived.subscription_failed_at.clone();
        self.expires_at = derived.expires_at.clone();
        if let Some(plan) = &derived.plan {
            self.apply_plan(plan);
        }
        self.pending_change = derived.pending_change.clone();
    }

    /// Adds `fact` (unless one with its id is there) and derives the license from the result at `now`; `false`
    /// when the fact was known already and nothing changed.
    pub fn record(&mut self, fact: Fact, now: &str) -> bool {
        let mut facts = self.known_facts();
        if facts.iter().any(|known| known.id == fact.id) {
            return false;
        }
        facts.push(fact);
        self.refold(facts, now);
        true
    }

    /// Replaces the license's facts and derives everything they decide.
    pub fn refold(&mut self, facts: Vec<Fact>, now: &str) {
        let derived = derive(&facts, now);
        self.facts = facts;
        self.apply_derived(&derived);
    }

    /// The license as a tier or seat change leaves it: same key, status, seats taken and expiry.
    pub fn apply_plan(&mut self, plan: &PlanChange) {
        self.product_id = plan.product_id.clone();
        self.product_name = plan.product_name.clone();
        self.activation_limit = plan.activation_limit;
        self.quantity = plan.quantity;
        self.pending_change = None;
    }

    /// Whether the buyer is still owed the key email at `now`: an active, unexpired license whose email failed, or
    /// is still pending after the claim of whoever was sending it ran out (a send that crashed or timed out). A
    /// license issued without an email (no claim was ever taken) owes none, nor does one that is not active.
    pub fn email_owed(&self, now: OffsetDateTime) -> bool {
        let active = self.status == LicenseStatus::Active
            && self
                .expires_at
                .as_deref()
                .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
                .is_none_or(|at| at > now);
        let stalled = |claim_until: i64| claim_until < now.unix_timestamp();
        active
            && match self.email_status {
                EmailStatus::Failed => true,
                EmailStatus::Pending => self.email_claim_until.is_some_and(stalled),
                EmailStatus::Sent => false,
            }
    }

    /// Whether the license was minted to have its key mailed: the minting request took the email claim, or a
    /// send was tried and failed. A license minted without an email (an import, `--email-key never`, a sale that
    /// was already refunded) has neither, and no later duplicate of its sale mails it.
    pub fn email_intended(&self) -> bool {
        self.email_status == EmailStatus::Failed || self.email_claim_until.is_some()
    }

    /// The pending change, once its time has come (`now` in RFC 3339).
    pub fn due_change(&self, now: &str) -> Option<&PlanChange> {
        self.pending_change
            .as_ref()
            .filter(|change| change.effective_at.as_str() <= now)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    pub tenant_id: TenantId,
    pub sale_id: SaleId,
    pub product_id: ProductId,
    pub license_id: LicenseId,
    pub key_hash: KeyHash,
    pub buyer_email: Email,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_name: Option<String>,
    pub product_name: String,
    pub amount_usd_cents: u64,
    pub currency: String,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale_timestamp: Option<String>,
    pub source: String,
    pub created_at: String,
    /// A gift: the license went to the giftee (`buyer_email`); this is who paid, and `amount_usd_cents` is what.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gift: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gifter_email: Option<Email>,
    /// The variants the buyer chose, as Gumroad sent them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
}

/// A machine holding one of a license's seats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub machine_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub activated_at: String,
    /// The last `activate` or `validate` from this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// Unix seconds when the seat ends unless renewed (products with a seat lease); `None`: held until freed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_until: Option<i64>,
}

/// RFC 3339 in UTC, the one timestamp format in keystead's records.
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

impl serde::Serialize for LicenseKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> serde::Deserialize<'de> for LicenseKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(LicenseKey::from_string)
    }
}

/// The status a license has right now: an active license past its expiry, or whose subscription Gumroad said
/// has ended, is expired.
pub fn effective_status(license: &License, now: OffsetDateTime) -> LicenseStatus {
    let now = rfc3339(now);
    let passed = |at: &Option<String>| at.as_deref().is_some_and(|at| at <= now.as_str());
    let expired = passed(&license.expires_at) || passed(&license.subscription_ended_at);
    match license.status {
        LicenseStatus::Active if expired => LicenseStatus::Expired,
        status => status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn license(
        status: &str,
        email_status: &str,
        claim: Option<i64>,
        expires: Option<&str>,
    ) -> License {
        let doc = serde_json::json!({
            "license_id": "lic_1", "tenant_id": "acme", "product_id": "myapp", "product_name": "MyApp",
            "key": "ACME-00000-00000-00000-00000-00000-00000", "key_hash": "h", "status": status,
            "activation_limit": 3, "buyer_email": "jane@example.com", "sale_id": "s1", "source": "gumroad",
            "created_at": "2026-01-01T00:00:00Z", "email_status": email_status,
            "email_claim_until": claim, "expires_at": expires,
        });
        serde_json::from_value(doc).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_email_is_owed_when_it_failed_or_its_claim_ran_out_on_an_active_license() {
        let now =
            OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or_else(|e| panic!("{e}"));
        let t = now.unix_timestamp();
        assert!(license("active", "failed", None, None).email_owed(now));
        assert!(license("active", "pending", Some(t - 1), None).email_owed(now));
        assert!(
            !license("active", "pending", Some(t + 30), None).email_owed(now),
            "still being sent"
        );
        assert!(
            !license("active", "pending", None, None).email_owed(now),
            "issued with --no-email"
        );
        assert!(!license("active", "sent", None, None).email_owed(now));
        assert!(!license("revoked", "failed", None, None).email_owed(now));
        assert!(!license("active", "failed", None, Some("2020-01-01T00:00:00Z")).email_owed(now));
        assert!(license("active", "failed", None, Some("2099-01-01T00:00:00Z")).email_owed(now));
    }
}
