//! `keystead gumroad import`: a seller's past Gumroad sales become licenses, through the same transaction and the
//! same idempotency record as a ping, so re-running is harmless and pings and imports never double a license.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::gumroad_api::{ApiError, GumroadApi, SalesPage};
use super::{CliError, Output};
use crate::app::record_sale::{self as sale, SaleError, SaleOrder, SaleResult};
use crate::domain::{Permalink, Product, Tenant};
use crate::gumroad::{Form, SalePing};
use crate::mail::Mailer;
use crate::storage::{DynamoStore, EventStore};

/// How often a page that failed with a 5xx, a 429 or no answer at all is asked for again, and the first wait.
const PAGE_ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

pub struct ImportOptions {
    pub products: Vec<Permalink>,
    pub after: Option<String>,
    pub before: Option<String>,
    pub dry_run: bool,
    pub send_email: bool,
}

/// What happened to the sales read, for the summary.
#[derive(Debug, Default)]
struct Summary {
    pages: usize,
    read: usize,
    imported: usize,
    renewed: usize,
    already_present: usize,
    refunded: usize,
    disputed: usize,
    skipped: usize,
    unmapped: BTreeMap<String, usize>,
    invalid: Vec<String>,
    email_failed: usize,
}

/// A `YYYY-MM-DD` date for Gumroad's `after`/`before`.
pub fn parse_date(raw: &str) -> Result<String, CliError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(raw.trim(), format)
        .map(|_| raw.trim().to_owned())
        .map_err(|_| CliError::Invalid(format!("invalid date '{raw}': use YYYY-MM-DD")))
}

/// A sale from Gumroad's sales API in the field names of a sale ping, so that it is read exactly as a ping is.
pub fn sale_form(sale: &Value) -> Form {
    let text = |value: &Value| match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let mut pairs = Vec::new();
    let fields = [
        ("seller_id", "seller_id"),
        ("product_id", "product_id"),
        ("product_name", "product_name"),
        ("product_permalink", "product_permalink"),
        ("permalink", "permalink"),
        ("email", "email"),
        ("email", "purchase_email"),
        ("price", "price"),
        ("currency", "currency"),
        ("quantity", "quantity"),
        ("order_number", "order_id"),
        ("sale_id", "id"),
        ("sale_timestamp", "created_at"),
        ("full_name", "full_name"),
        ("subscription_id", "subscription_id"),
        ("is_recurring_charge", "recurring_charge"),
        ("is_gift_receiver_purchase", "is_gift_receiver_purchase"),
        ("gift_price", "gift_price"),
        ("gifter_email", "gifter_email"),
        ("license_key", "license_key"),
    ];
    for (ping_name, api_name) in fields {
        if let Some(value) = sale.get(api_name).and_then(text) {
            pairs.push((ping_name.to_owned(), value));
        }
    }
    for (nested, ping_name) in [("variants", "variants"), ("custom_fields", "custom_fields")] {
        if let Some(Value::Object(map)) = sale.get(nested) {
            for (name, value) in map {
                if let Some(value) = text(value) {
                    pairs.push((format!("{ping_name}[{name}]"), value));
                }
            }
        }
    }
    Form::from_pairs(pairs)
}

/// The order a sale read from Gumroad's sales API makes: its ping's, minted in the state Gumroad already left it
/// in (refunded, disputed and not won), dated when it was sold, and mailed only with `--send-email`.
pub fn imported_order<'p>(
    ping: SalePing,
    product: &'p Product,
    permalink: &Permalink,
    sale: &Value,
    send_email: bool,
) -> SaleOrder<'p> {
    let sold_at = ping
        .sale_timestamp
        .as_deref()
        .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok());
    let mut order = SaleOrder::from_ping(ping, product, permalink);
    order.send_email = send_email && product.emails_key();
    order.refunded = flag(sale, "refunded");
    order.disputed =
        (flag(sale, "chargedback") || flag(sale, "disputed")) && !flag(sale, "dispute_won");
    order.sold_at = sold_at;
    order
}

fn flag(sale: &Value, name: &str) -> bool {
    sale.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Every page of the seller's sales in the window, retrying what Gumroad may answer later.
fn read_all(
    api: &GumroadApi,
    options: &ImportOptions,
    progress: &mut Progress,
) -> Result<(Vec<Value>, usize), ApiError> {
    let mut sales = Vec::new();
    let mut page_key: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = read_page(api, options, page_key.as_deref())?;
        pages += 1;
        sales.extend(page.sales);
        progress.line(&format!(
            "read page {pages} of Gumroad's sales: {} so far",
            sales.len()
        ));
        match page.next_page_key {
            Some(next) => page_key = Some(next),
            None => return Ok((sales, pages)),
        }
    }
}

fn read_page(
    api: &GumroadApi,
    options: &ImportOptions,
    page_key: Option<&str>,
) -> Result<SalesPage, ApiError> {
    let mut wait = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let result = api.sales(
            options.after.as_deref(),
            options.before.as_deref(),
            page_key,
        );
        let retryable = match &result {
            Err(ApiError::Refused { status, .. }) => *status >= 500 || *status == 429,
            Err(ApiError::Unreachable(_)) => true,
            _ => false,
        };
        if !retryable || attempt >= PAGE_ATTEMPTS {
            return result;
        }
        std::thread::sleep(wait);
        wait *= 2;
        attempt += 1;
    }
}

/// Progress on stderr: a bar on a terminal, plain lines otherwise (logs, CI).
struct Progress {
    terminal: bool,
}

impl Progress {
    fn line(&mut self, text: &str) {
        let mut err = std::io::stderr();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{text}");
        } else {
            let _ = writeln!(err, "keystead: {text}");
        }
        let _ = err.flush();
    }

    fn bar(&mut self, done: usize, total: usize) {
        if self.terminal {
            let width = 30;
            let filled = (done * width).checked_div(total).unwrap_or(width);
            self.line(&format!(
                "importing [{}{}] {done}/{total}",
                "#".repeat(filled),
                " ".repeat(width - filled)
            ));
        } else if done == total || done.is_multiple_of(100) {
            self.line(&format!("imported {done} of {total} sales"));
        }
    }

    fn finish(&mut self) {
        if self.terminal {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[allow(clippy::too_many_lines)]
pub async fn run(
    store: &DynamoStore,
    mailer: &dyn Mailer,
    api: &GumroadApi,
    tenant: &Tenant,
    options: &ImportOptions,
    out: &mut Output,
) -> Result<(), ApiError> {
    let mut progress = Progress {
        terminal: std::io::stderr().is_terminal(),
    };
    let (mut sales, pages) = read_all(api, options, &mut progress)?;
    // Gumroad answers newest first; oldest first makes a subscription's first sale mint before its renewals.
    sales.reverse();
    let mut summary = Summary {
        pages,
        read: sales.len(),
        ..Summary::default()
    };
    let total = sales.len();
    for (done, sale) in sales.iter().enumerate() {
        import_one(store, mailer, tenant, options, sale, &mut summary).await;
        progress.bar(done + 1, total);
    }
    progress.finish();
    report(tenant, options, &summary, out);
    Ok(())
}

async fn import_one(
    store: &DynamoStore,
    mailer: &dyn Mailer,
    tenant: &Tenant,
    options: &ImportOptions,
    sale: &Value,
    summary: &mut Summary,
) {
    let id = sale
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let ping = match SalePing::from_form(&sale_form(sale)) {
        Ok(ping) => ping,
        Err(err) => {
            summary.invalid.push(format!("{id}: {err}"));
            return;
        }
    };
    if !options.products.is_empty()
        && !ping
            .product_refs
            .iter()
            .any(|slug| options.products.contains(slug))
    {
        summary.skipped += 1;
        return;
    }
    let (product, permalink) = match sale::resolve_product(tenant, &ping) {
        Ok(found) => found,
        Err(SaleError::NoMapping(slug) | SaleError::ProductNotFound(slug)) => {
            *summary.unmapped.entry(slug).or_default() += 1;
            return;
        }
        Err(err) => {
            summary.invalid.push(format!("{id}: {err}"));
            return;
        }
    };
    let order = imported_order(ping, product, permalink, sale, options.send_email);
    let (refunded, disputed) = (order.refunded, order.disputed);
    if options.dry_run {
        match store
            .license_for_sale(&tenant.tenant_id, &order.sale_id)
            .await
        {
            Ok(Some(_)) => summary.already_present += 1,
            Ok(None) => count_imported(summary, refunded, disputed),
            Err(err) => summary.invalid.push(format!("{id}: {err}")),
        }
        return;
    }
    match sale::issue(store, mailer, tenant, order).await {
        Ok(SaleResult::Created { .. }) => count_imported(summary, refunded, disputed),
        Ok(SaleResult::Renewed { .. }) => summary.renewed += 1,
        Ok(SaleResult::Duplicate) => summary.already_present += 1,
        Err(SaleError::EmailFailed(_)) => {
            count_imported(summary, refunded, disputed);
            summary.email_failed += 1;
        }
        Err(err) => summary.invalid.push(format!("{id}: {err}")),
    }
}

fn count_imported(summary: &mut Summary, refunded: bool, disputed: bool) {
    summary.imported += 1;
    summary.refunded += usize::from(refunded);
    summary.disputed += usize::from(disputed);
}

fn report(tenant: &Tenant, options: &ImportOptions, summary: &Summary, out: &mut Output) {
    let verb = if options.dry_run {
        "Would import"
    } else {
        "Imported"
    };
    out.line(format!(
        "{verb} Gumroad's sales for tenant {} ({} read from {} page(s)){}.",
        tenant.tenant_id,
        summary.read,
        summary.pages,
        if options.dry_run {
            "; nothing was written (--dry-run)"
        } else {
            ""
        }
    ));
    let unmapped: usize = summary.unmapped.values().sum();
    out.fields(&[
        (
            "Imported",
            format!(
                "{} ({} refunded, {} disputed)",
                summary.imported, summary.refunded, summary.disputed
            ),
        ),
        ("Renewals", summary.renewed.to_string()),
        ("Already present", summary.already_present.to_string()),
        ("Unmapped", unmapped.to_string()),
        ("Not selected", summary.skipped.to_string()),
        ("Unreadable", summary.invalid.len().to_string()),
    ]);
    for (slug, count) in &summary.unmapped {
        out.line(format!(
            "  {slug}: {count} sale(s); map it with `keystead product map {} {slug} <PRODUCT_ID>` and run the import again",
            tenant.tenant_id
        ));
    }
    for problem in &summary.invalid {
        out.line(format!("  {problem}"));
    }
    if summary.email_failed > 0 {
        out.line(format!(
            "{} key email(s) failed: see `keystead license list {} --email-status failed`",
            summary.email_failed, tenant.tenant_id
        ));
    }
    out.document(json!({
        "tenant_id": tenant.tenant_id,
        "dry_run": options.dry_run,
        "pages": summary.pages,
        "read": summary.read,
        "imported": summary.imported,
        "renewed": summary.renewed,
        "already_present": summary.already_present,
        "refunded": summary.refunded,
        "disputed": summary.disputed,
        "unmapped": summary.unmapped,
        "skipped": summary.skipped,
        "invalid": summary.invalid,
        "email_failed": summary.email_failed,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sale_from_the_api_reads_like_its_ping() {
        let sale = json!({
            "id": "S1==", "email": "jane@example.com", "product_id": "P1==", "product_permalink": "myapp-pro",
            "price": 2900, "quantity": 2, "created_at": "2025-03-01T10:00:00Z", "variants": {"Tier": "Team"},
            "custom_fields": {"Company": "Acme"}, "license_key": "AAAA0000-BBBB1111-CCCC2222-DDDD3333",
            "refunded": false, "subscription_id": null
        });
        let ping = SalePing::from_form(&sale_form(&sale)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ping.sale_id.as_str(), "S1==");
        assert_eq!(ping.quantity, 2);
        assert_eq!(ping.variants[0].to_string(), "Tier=Team");
        assert_eq!(ping.product_refs[0].as_str(), "myapp-pro");
        assert_eq!(
            ping.license_key.as_deref(),
            Some("AAAA0000-BBBB1111-CCCC2222-DDDD3333")
        );
        assert_eq!(
            ping.purchase.custom_fields,
            [("Company".to_owned(), "Acme".to_owned())]
        );
        assert_eq!(ping.subscription_id, None);
    }

    #[test]
    fn dates_are_days() {
        assert!(parse_date("2025-01-31").is_ok());
        assert!(parse_date("31/01/2025").is_err());
        assert!(parse_date("2025-02-30").is_err());
    }
}
