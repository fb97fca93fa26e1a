//! Who may ping: the tenant's webhook token checked in constant time against its stored SHA-256, with the same
//! work done whether or not the tenant exists, so that every refusal looks and takes alike.

use subtle::Choice;

use crate::domain::{Tenant, TenantId, TenantStatus, TokenHash, WebhookToken};
use crate::storage::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown tenant, missing or wrong token, Gumroad disabled, or a different seller: one answer for all.
    #[error("invalid request")]
    Invalid,
    #[error("tenant suspended")]
    Suspended,
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

/// Compared against when the tenant does not exist, so that the comparison still happens.
const ABSENT: TokenHash = TokenHash([0x5a; 32]);

/// What a ping says about its seller. Gumroad's sale, refund and dispute pings always name one (their first
/// field); its subscription events never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seller<'a> {
    Named(&'a str),
    /// A ping that always names its seller, without one.
    Missing,
    /// A ping that never names one.
    NotCarried,
}

/// Checks a presented token (query `token=` or HTTP Basic password) and the ping's seller: a tenant pinned to a
/// seller (`tenant set --seller-id`) takes a sale-shaped ping only when it names that seller.
pub async fn authenticate(
    store: &dyn Store,
    raw_tenant_id: &str,
    token: Option<&str>,
    seller: Seller<'_>,
) -> Result<Tenant, AuthError> {
    let tenant = match TenantId::parse(raw_tenant_id) {
        Ok(id) => store.load_tenant(&id).await?,
        Err(_) => None,
    };
    let presented = WebhookToken::from_string(token.unwrap_or_default().to_owned()).hash();
    let stored = tenant
        .as_ref()
        .and_then(|t| TokenHash::from_hex(&t.token_hash));
    let token_matches = presented.ct_matches(&stored.unwrap_or(ABSENT))
        & Choice::from(u8::from(stored.is_some()))
        & Choice::from(u8::from(token.is_some_and(|t| !t.is_empty())));

    let Some(tenant) = tenant.filter(|_| bool::from(token_matches)) else {
        return Err(AuthError::Invalid);
    };
    let seller_differs = match (&tenant.seller_id, seller) {
        (Some(pinned), Seller::Named(sent)) => pinned != sent,
        (Some(_), Seller::Missing) => true,
        _ => false,
    };
    if !tenant.gumroad_enabled || seller_differs {
        return Err(AuthError::Invalid);
    }
    if tenant.status == TenantStatus::Suspended {
        return Err(AuthError::Suspended);
    }
    Ok(tenant)
}
