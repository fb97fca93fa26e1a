//! The license domain: the typed values every other part speaks in (tenants, products, permalinks, sales,
//! licenses and their keys). Strings are parsed into these once, at the edge, and never re-checked.

pub mod audit;
mod facts;
mod files;
mod gumroad;
mod ids;
mod key;
mod records;
pub mod releases;
mod tiers;
pub mod webhook;

pub use facts::{Derived, Fact, FactKind, PlanRequest, derive, in_order};
pub use files::ProductFile;
pub use gumroad::{EmailKey, GumroadPurchase, KeySource};
pub use ids::{
    Email, InvalidValue, KeyHash, KeyPrefix, LicenseId, Permalink, ProductId, SaleId, TenantId,
    UsdCents, one_line,
};
pub use key::{
    LicenseKey, RandomnessError, TokenHash, WebhookToken, random_bytes, random_id, sha256_hex,
};
pub use records::{
    Activation, EmailFailure, EmailStatus, License, LicenseStatus, Payment, Product, RefundPolicy,
    SealedSecret, SealedSigningKey, Tenant, TenantStatus, effective_status, rfc3339,
};
pub use tiers::{
    MAX_LEASE_SECONDS, MAX_SEATS, PlanChange, Variant, VariantMapping, format_duration,
    parse_duration, parse_entitlements, seats,
};
