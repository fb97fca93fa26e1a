//! No sale is lost even if every ping was (issue 24): on a schedule (hourly by default), every tenant with a
//! Gumroad access token has its recent sales read from Gumroad's sales API, and each one keystead has not
//! recorded is minted through exactly the ping's path: the same idempotency (a sale recorded by a ping, an import
//! or an earlier run is a duplicate and mails nothing), the same product mapping, the key email owed to a buyer
//! who never got one.

use serde::Serialize;
use time::OffsetDateTime;

use super::App;
use super::record_sale::{self, SaleError, SaleOrder, SaleResult};
use crate::domain::{Tenant, TenantId};
use crate::gumroad::readback;
use crate::storage::StoreError;

/// How far back each run reads: two days of Gumroad's `after` filter (a date, not a time), so an hourly run, or
/// one that failed for a day, still covers every sale.
const LOOKBACK_DAYS: i64 = 2;
/// At most this many pages per tenant and run: a seller's busiest two days, with room to spare.
const MAX_PAGES: usize = 50;

/// What one run did, per tenant and in all.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Reconciled {
    pub tenants: usize,
    pub read: usize,
    /// Sales no ping had brought: minted now.
    pub minted: usize,
    /// Renewals no ping had brought: the license extended now.
    pub renewed: usize,
    pub already_recorded: usize,
    /// Sales of products the tenant does not map (or preorder authorizations, which mint nothing).
    pub skipped: usize,
    /// Tenants Gumroad could not be read for, or sales that failed on our side: the next run tries again.
    pub failed: usize,
}

/// Reads every token-holding tenant's recent sales from Gumroad and mints what is missing.
pub async fn reconcile(app: &App) -> Result<Reconciled, StoreError> {
    let now = OffsetDateTime::now_utc();
    let mut total = Reconciled::default();
    for tenant_id in app.store.tenant_ids().await? {
        one_tenant(app, &tenant_id, now, &mut total).await?;
    }
    log(&total);
    Ok(total)
}

/// The same for one tenant.
pub async fn reconcile_tenant(app: &App, tenant_id: &TenantId) -> Result<Reconciled, StoreError> {
    let mut total = Reconciled::default();
    one_tenant(app, tenant_id, OffsetDateTime::now_utc(), &mut total).await?;
    log(&total);
    Ok(total)
}

async fn one_tenant(
    app: &App,
    tenant_id: &TenantId,
    now: OffsetDateTime,
    total: &mut Reconciled,
) -> Result<(), StoreError> {
    let Some(tenant) = app.store.load_tenant(tenant_id).await? else {
        return Ok(());
    };
    if tenant.gumroad_token.is_none() || !tenant.gumroad_enabled {
        return Ok(());
    }
    total.tenants += 1;
    if let Err(why) = sales_of(app, &tenant, now, total).await {
        total.failed += 1;
        tracing::error!(tenant = %tenant_id, error = %why, "reconciliation failed");
    }
    Ok(())
}

fn log(total: &Reconciled) {
    tracing::info!(
        tenants = total.tenants,
        read = total.read,
        minted = total.minted,
        renewed = total.renewed,
        skipped = total.skipped,
        failed = total.failed,
        "reconciliation"
    );
}

async fn sales_of(
    app: &App,
    tenant: &Tenant,
    now: OffsetDateTime,
    total: &mut Reconciled,
) -> Result<(), String> {
    let sealed = tenant
        .gumroad_token
        .as_ref()
        .ok_or("no Gumroad access token")?;
    let token = app
        .keyring
        .secret(&tenant.tenant_id, sealed)
        .await
        .map_err(|e| e.to_string())?;
    let after = (now - time::Duration::days(LOOKBACK_DAYS))
        .date()
        .to_string();
    let mut page_key: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let (sales, next) =
            readback::recent_sales(&app.gumroad_api, &token, &after, page_key.as_deref()).await?;
        for sale in &sales {
            total.read += 1;
            match mint_if_missing(app, tenant, sale).await {
                Ok(Outcome::Minted) => total.minted += 1,
                Ok(Outcome::Renewed) => total.renewed += 1,
                Ok(Outcome::Recorded) => total.already_recorded += 1,
                Ok(Outcome::Skipped) => total.skipped += 1,
                Err(why) => {
                    total.failed += 1;
                    tracing::error!(tenant = %tenant.tenant_id, error = %why, "reconciling a sale failed");
                }
            }
        }
        match next {
            Some(key) => page_key = Some(key),
            None => return Ok(()),
        }
    }
    Err(format!(
        "more than {MAX_PAGES} pages of sales; the next run goes on"
    ))
}

enum Outcome {
    Minted,
    Renewed,
    Recorded,
    Skipped,
}

/// One sale of Gumroad's listing, through the ping's path unless keystead has it already.
async fn mint_if_missing(
    app: &App,
    tenant: &Tenant,
    sale: &serde_json::Value,
) -> Result<Outcome, String> {
    let ping = match readback::sale_as_ping(sale) {
        Ok(ping) => ping,
        Err(why) => {
            tracing::warn!(tenant = %tenant.tenant_id, why, "a listed sale could not be read");
            return Ok(Outcome::Skipped);
        }
    };
    if ping.is_preorder_authorization {
        return Ok(Outcome::Skipped);
    }
    let tenant_id: &TenantId = &tenant.tenant_id;
    if app
        .store
        .sale_seen(tenant_id, &ping.sale_id)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(Outcome::Recorded);
    }
    let (product, permalink) = match record_sale::resolve_product(tenant, &ping) {
        Ok(found) => found,
        Err(SaleError::NoMapping(_) | SaleError::ProductNotFound(_)) => {
            return Ok(Outcome::Skipped);
        }
        Err(other) => return Err(other.to_string()),
    };
    let sale_id = ping.sale_id.clone();
    let order = SaleOrder::from_ping(ping, product, permalink);
    match record_sale::issue(app.store.as_ref(), app.mailer.as_ref(), tenant, order).await {
        Ok(SaleResult::Created { .. }) => {
            tracing::info!(tenant = %tenant_id, sale = %sale_id, outcome = "created", "reconciled a sale no ping brought");
            Ok(Outcome::Minted)
        }
        Ok(SaleResult::Renewed { .. }) => Ok(Outcome::Renewed),
        Ok(SaleResult::Duplicate) => Ok(Outcome::Recorded),
        // The license is stored; its key email is owed and `license resend --failed` (or the next ping) sends it.
        Err(SaleError::EmailFailed(_) | SaleError::EmailOwed) => Ok(Outcome::Minted),
        Err(other) => Err(other.to_string()),
    }
}
