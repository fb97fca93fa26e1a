//! Reading a sale back from Gumroad's API before anything changes (`tenant set --verify-sales on`): Gumroad's
//! pings are unsigned, so a leaked ping URL could otherwise mint keys for sales that never happened, or revoke,
//! restore and upgrade licenses at will. With read-back on, a new sale is minted from what Gumroad's sale says
//! (never from the ping's product, tier, quantity or key), and every lifecycle event must be one Gumroad's
//! records show.

use std::time::Duration;

use aws_smithy_http_client::{Connector, tls};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::byte_stream::ByteStream;
use serde_json::Value;

use super::{EventKind, EventSubject, Form, GumroadEvent, PlanUpdate, SalePing};

/// Gumroad's own API, unless `GUMROAD_API_URL` says otherwise (a test server, a proxy).
pub const DEFAULT_API_URL: &str = "https://api.gumroad.com";
/// The read-back's whole budget: the ping still answers well inside Gumroad's 5 s.
const TIMEOUT: Duration = Duration::from_millis(2_000);

#[derive(Debug, PartialEq, Eq)]
pub enum ReadBack<T> {
    Confirmed(T),
    /// Gumroad does not know the sale, or knows it differently (which field, for the log).
    Refuted(&'static str),
    /// Gumroad slow, down or answering nonsense: the ping is answered 503 and Gumroad retries it.
    Unavailable(String),
}

/// Where the seller's token may be sent: Gumroad over HTTPS, or plain HTTP to this machine only (a test server, a
/// local proxy). Any other `http://` base would send the token in the clear.
pub fn check_api_base(base: &str) -> Result<(), String> {
    if base.starts_with("https://") {
        return Ok(());
    }
    let host = base
        .strip_prefix("http://")
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .map(|authority| authority.rsplit('@').next().unwrap_or_default());
    let loopback = host.is_some_and(|host| {
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host.split(':').next().unwrap_or_default(),
        };
        name == "localhost"
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "GUMROAD_API_URL must be an https:// URL (plain http only to this machine), not {base:?}"
        ))
    }
}

/// The fields that decide what a sale mints. With read-back on they come from Gumroad's sale, never the ping;
/// the ping still supplies what only it carries (buyer name, custom fields, the sale's timestamp).
const MINTING_FIELDS: [&str; 10] = [
    "seller_id",
    "product_id",
    "product_permalink",
    "permalink",
    "short_product_id",
    "quantity",
    "subscription_id",
    "is_recurring_charge",
    "is_gift_receiver_purchase",
    "license_key",
];

/// `GET /v2/sales/<sale_id>` with the seller's token: the sale must exist with the ping's email and price (and
/// its seller and product, when the ping names them), and what it mints is what Gumroad's sale says.
pub async fn confirm_sale(
    api_base: &str,
    access_token: &str,
    form: &Form,
    ping: &SalePing,
) -> ReadBack<SalePing> {
    let sale = match read(
        api_base,
        access_token,
        "sales",
        ping.sale_id.as_str(),
        "sale",
    )
    .await
    {
        ReadBack::Confirmed(sale) => sale,
        ReadBack::Refuted(_) => return ReadBack::Refuted("sale not found"),
        ReadBack::Unavailable(why) => return ReadBack::Unavailable(why),
    };
    if let Err(field) = compare(&sale, ping) {
        return ReadBack::Refuted(field);
    }
    match SalePing::from_form(&as_gumroad_says(&sale, form)) {
        Ok(sold) => ReadBack::Confirmed(sold),
        Err(e) => ReadBack::Unavailable(format!("Gumroad's sale could not be read: {e}")),
    }
}

/// One page of the seller's sales since `after` (`YYYY-MM-DD`, Gumroad's own filter), newest first:
/// `GET /v2/sales?after=…[&page_key=…]`. The sales and the next page's key, if any.
pub async fn recent_sales(
    api_base: &str,
    access_token: &str,
    after: &str,
    page_key: Option<&str>,
) -> Result<(Vec<Value>, Option<String>), String> {
    check_api_base(api_base)?;
    let mut url = format!(
        "{}/v2/sales?after={}",
        api_base.trim_end_matches('/'),
        encode(after)
    );
    if let Some(key) = page_key {
        url.push_str(&format!("&page_key={}", encode(key)));
    }
    let answer =
        match tokio::time::timeout(Duration::from_secs(10), fetch_answer(&url, access_token)).await
        {
            Ok(Ok(Some(answer))) => answer,
            Ok(Ok(None)) => return Err("Gumroad refused the sales listing".to_owned()),
            Ok(Err(why)) => return Err(why),
            Err(_) => return Err("Gumroad did not answer the sales listing within 10 s".to_owned()),
        };
    let sales = answer
        .get("sales")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let next = answer
        .get("next_page_key")
        .and_then(scalar)
        .filter(|key| !key.is_empty());
    Ok((sales, next))
}

/// A sale as Gumroad's sales API lists it, read as its ping would have carried it (with Gumroad's values for
/// everything that decides what it mints); `Err` names what it lacks.
pub fn sale_as_ping(sale: &Value) -> Result<SalePing, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (field, source) in [
        ("sale_id", "id"),
        ("email", "email"),
        ("price", "price"),
        ("currency", "currency"),
        ("product_name", "product_name"),
        ("full_name", "full_name"),
        ("sale_timestamp", "created_at"),
        ("order_number", "order_id"),
    ] {
        if let Some(value) = text(sale, source) {
            pairs.push((field.to_owned(), value));
        }
    }
    if flag(sale, "is_preorder_authorization") {
        pairs.push(("is_preorder_authorization".to_owned(), "true".to_owned()));
    }
    let form = as_gumroad_says(sale, &Form::from_pairs(pairs));
    SalePing::from_form(&form).map_err(|e| e.to_string())
}

/// The ping's form with every minting field replaced by Gumroad's own value (or dropped when Gumroad's sale has
/// none: a sale Gumroad knows without a subscription is not a subscription's, whatever the ping says).
fn as_gumroad_says(sale: &Value, form: &Form) -> Form {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for field in MINTING_FIELDS {
        let source = match field {
            "is_recurring_charge" => "recurring_charge",
            other => other,
        };
        if let Some(value) = text(sale, source) {
            pairs.push((field.to_owned(), value));
        }
    }
    if let Some(Value::Object(variants)) = sale.get("variants") {
        for (category, name) in variants {
            if let Some(name) = scalar(name) {
                pairs.push((format!("variants[{category}]"), name));
            }
        }
    }
    let minting = |key: &str| MINTING_FIELDS.contains(&key) || key.starts_with("variants[");
    pairs.extend(
        form.pairs()
            .filter(|(key, _)| !minting(key))
            .map(|(key, value)| (key.to_owned(), value.to_owned())),
    );
    Form::from_pairs(pairs)
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn text(object: &Value, field: &str) -> Option<String> {
    object.get(field).and_then(scalar).filter(|s| !s.is_empty())
}

fn flag(object: &Value, field: &str) -> bool {
    object.get(field).and_then(Value::as_bool) == Some(true)
}

/// The sale Gumroad knows must be the one the ping describes.
fn compare(sale: &Value, ping: &SalePing) -> Result<(), &'static str> {
    let purchase = &ping.purchase;
    if purchase.seller_id.is_some() && text(sale, "seller_id") != purchase.seller_id {
        return Err("seller_id");
    }
    if ping.gumroad_product_id.is_some() && text(sale, "product_id") != ping.gumroad_product_id {
        return Err("product_id");
    }
    let email = text(sale, "email").or_else(|| text(sale, "purchase_email"));
    if !email.is_some_and(|e| e.eq_ignore_ascii_case(ping.email.as_str())) {
        return Err("email");
    }
    if text(sale, "price") != Some(ping.price.0.to_string()) {
        return Err("price");
    }
    Ok(())
}

/// A lifecycle event must be one Gumroad's records show: a refund of a refunded sale, a dispute of a disputed
/// one, a won dispute of one whose dispute was won; a subscription in the state the event says it entered (read
/// with `GET /v2/subscribers/<id>`), and a plan change to the plan its latest charge was sold as.
pub async fn confirm_event(
    api_base: &str,
    access_token: &str,
    event: &GumroadEvent,
) -> ReadBack<()> {
    let subject = match &event.subject {
        EventSubject::Sale(sale) => ("sales", sale.as_str(), "sale"),
        EventSubject::Subscription { id, .. } => ("subscribers", id.as_str(), "subscriber"),
    };
    let record = match read(api_base, access_token, subject.0, subject.1, subject.2).await {
        ReadBack::Confirmed(record) => record,
        ReadBack::Refuted(_) => return ReadBack::Refuted("not found at Gumroad"),
        ReadBack::Unavailable(why) => return ReadBack::Unavailable(why),
    };
    let status = text(&record, "status").unwrap_or_default();
    let shows = match &event.kind {
        EventKind::Refund { full: true } => flag(&record, "refunded"),
        EventKind::Refund { full: false } => {
            flag(&record, "partially_refunded") || flag(&record, "refunded")
        }
        EventKind::Dispute => flag(&record, "disputed") || flag(&record, "chargedback"),
        EventKind::DisputeWon => flag(&record, "dispute_won"),
        EventKind::Cancellation { .. } => {
            text(&record, "cancelled_at").is_some()
                || text(&record, "user_requested_cancellation_at").is_some()
                || ["pending_cancellation", "cancelled"].contains(&status.as_str())
        }
        EventKind::SubscriptionEnded { .. } => {
            text(&record, "ended_at").is_some()
                || [
                    "cancelled",
                    "failed_payment",
                    "fixed_subscription_period_ended",
                ]
                .contains(&status.as_str())
        }
        EventKind::SubscriptionRestarted { .. } => {
            status == "alive" && text(&record, "ended_at").is_none()
        }
        EventKind::SubscriptionUpdated(plan) => {
            if status != "alive" {
                false
            } else if let Some(plan) = plan {
                return latest_charge_is(api_base, access_token, &record, plan).await;
            } else {
                true
            }
        }
    };
    if shows {
        ReadBack::Confirmed(())
    } else {
        ReadBack::Refuted(event.kind.name())
    }
}

/// Whether the subscription's latest charge (the last of Gumroad's own `purchase_ids`) was sold as the plan the
/// event moves to: an upgrade is charged when it happens, so its charge is there; a downgrade deferred to the end
/// of the paid period is not charged yet, and with read-back on it takes effect with that charge instead.
async fn latest_charge_is(
    api_base: &str,
    access_token: &str,
    subscriber: &Value,
    plan: &PlanUpdate,
) -> ReadBack<()> {
    let latest = subscriber
        .get("purchase_ids")
        .and_then(Value::as_array)
        .and_then(|ids| ids.last())
        .and_then(Value::as_str);
    let Some(latest) = latest else {
        return ReadBack::Refuted("subscription_updated");
    };
    let sale = match read(api_base, access_token, "sales", latest, "sale").await {
        ReadBack::Confirmed(sale) => sale,
        ReadBack::Refuted(_) => return ReadBack::Refuted("subscription_updated"),
        ReadBack::Unavailable(why) => return ReadBack::Unavailable(why),
    };
    let tier = sale
        .get("variants")
        .and_then(|v| v.as_object())
        .and_then(|variants| {
            variants
                .iter()
                .find(|(category, _)| category.eq_ignore_ascii_case("tier"))
        })
        .and_then(|(_, name)| scalar(name));
    let same_tier = plan
        .new_tier
        .as_ref()
        .is_none_or(|wanted| tier.is_some_and(|t| t.eq_ignore_ascii_case(wanted)));
    let same_seats = plan.new_quantity.is_none_or(|wanted| {
        text(&sale, "quantity").unwrap_or_else(|| "1".to_owned()) == wanted.to_string()
    });
    if same_tier && same_seats {
        ReadBack::Confirmed(())
    } else {
        ReadBack::Refuted("subscription_updated")
    }
}

/// `GET /v2/<collection>/<id>`: the record under `field` in Gumroad's answer; `Refuted` when Gumroad has none.
async fn read(
    api_base: &str,
    access_token: &str,
    collection: &str,
    id: &str,
    field: &str,
) -> ReadBack<Value> {
    if let Err(why) = check_api_base(api_base) {
        return ReadBack::Unavailable(why);
    }
    let url = format!(
        "{}/v2/{collection}/{}",
        api_base.trim_end_matches('/'),
        encode(id)
    );
    match tokio::time::timeout(TIMEOUT, fetch(&url, access_token, field)).await {
        Ok(Ok(Some(record))) => ReadBack::Confirmed(record),
        Ok(Ok(None)) => ReadBack::Refuted("not found"),
        Ok(Err(why)) => ReadBack::Unavailable(why),
        Err(_) => ReadBack::Unavailable(format!("Gumroad did not answer within {TIMEOUT:?}")),
    }
}

/// The largest answer read: a sale is a few kilobytes.
const MAX_ANSWER: usize = 1024 * 1024;

/// The record under `field` in Gumroad's answer; `None` when Gumroad says it has none (HTTP 200 with
/// `success: false`). The token travels in the `Authorization` header (never in the URL, which proxies and logs
/// keep). Sent through the AWS SDK's own HTTP stack (hyper and rustls, the same TLS the function's AWS calls
/// use), so the function links one HTTP client.
async fn fetch(url: &str, token: &str, field: &str) -> Result<Option<Value>, String> {
    Ok(fetch_answer(url, token)
        .await?
        .and_then(|answer| answer.get(field).cloned()))
}

/// Gumroad's whole answer; `None` when it says `success: false`.
async fn fetch_answer(url: &str, token: &str) -> Result<Option<Value>, String> {
    let connector = connector();
    // Errors can quote the request; the token never leaves this function.
    let redact = |e: &dyn std::fmt::Display| e.to_string().replace(token, "<redacted>");
    let mut request =
        HttpRequest::get(url).map_err(|e| format!("bad Gumroad URL: {}", redact(&e)))?;
    request.headers_mut().insert(
        "user-agent",
        concat!("keystead/", env!("CARGO_PKG_VERSION")),
    );
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}"));
    let response = connector
        .call(request)
        .await
        .map_err(|e| format!("Gumroad unreachable: {}", redact(&e)))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("Gumroad answered HTTP {status}"));
    }
    let mut body = ByteStream::new(response.into_body());
    let mut text = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| "Gumroad's answer could not be read".to_owned())?;
        if text.len() + chunk.len() > MAX_ANSWER {
            return Err("Gumroad's answer is too large".to_owned());
        }
        text.extend_from_slice(&chunk);
    }
    let body: Value =
        serde_json::from_slice(&text).map_err(|_| "Gumroad's answer is not JSON".to_owned())?;
    if body.get("success").and_then(Value::as_bool) != Some(true) {
        return Ok(None);
    }
    Ok(Some(body))
}

/// The process's connector to Gumroad, built once (its TLS set-up parses the system's root certificates). It
/// keeps no idle connection: a pooled one would outlive the runtime that opened it (each test has its own), and
/// a read-back is rare enough that a fresh connection costs nothing that matters.
fn connector() -> &'static Connector {
    static CONNECTOR: std::sync::OnceLock<Connector> = std::sync::OnceLock::new();
    CONNECTOR.get_or_init(|| {
        Connector::builder()
            .pool_max_idle_per_host(0)
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .build()
    })
}

fn encode(text: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PING: &str =
        "seller_id=S&product_id=P&email=jane%40example.com&price=2900&sale_id=X1&permalink=app";

    fn form(body: &str) -> Form {
        Form::from_urlencoded(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ping(body: &str) -> SalePing {
        SalePing::from_form(&form(body)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn sale() -> Value {
        serde_json::json!({"id": "X1", "seller_id": "S", "product_id": "P", "email": "Jane@Example.com",
                           "price": 2900, "product_permalink": "https://s.gumroad.com/l/app", "quantity": 1})
    }

    #[test]
    fn every_field_that_identifies_the_sale_must_match() {
        assert_eq!(compare(&sale(), &ping(PING)), Ok(()));
        for (field, value) in [
            ("seller_id", serde_json::json!("other")),
            ("product_id", serde_json::json!("other")),
            ("email", serde_json::json!("mallory@example.com")),
            ("price", serde_json::json!(100)),
        ] {
            let mut changed = sale();
            changed[field] = value;
            assert_eq!(compare(&changed, &ping(PING)), Err(field), "{field}");
        }
    }

    #[test]
    fn what_a_sale_mints_is_what_gumroads_sale_says() {
        let forged = "seller_id=S&product_id=P&email=jane%40example.com&price=2900&sale_id=X1\
            &permalink=studio&product_permalink=https%3A%2F%2Fs.gumroad.com%2Fl%2Fstudio&short_product_id=studio\
            &variants%5BTier%5D=Top&quantity=99999&license_key=FORGED&subscription_id=victim\
            &is_recurring_charge=true&is_gift_receiver_purchase=true&full_name=Jane&custom_fields%5BTeam%5D=Blue";
        let mut gumroad = sale();
        gumroad["variants"] = serde_json::json!({"Tier": "Basic"});
        gumroad["license_key"] = serde_json::json!("REAL-KEY");
        let sold = SalePing::from_form(&as_gumroad_says(&gumroad, &form(forged))).unwrap();
        assert_eq!(sold.product_refs.len(), 1);
        assert_eq!(sold.product_refs[0].as_str(), "app");
        assert_eq!(sold.variants.len(), 1);
        assert_eq!(sold.variants[0].name, "Basic");
        assert_eq!(sold.quantity, 1);
        assert_eq!(sold.license_key.as_deref(), Some("REAL-KEY"));
        assert_eq!(sold.subscription_id, None);
        assert!(!sold.is_recurring_charge);
        assert!(sold.gift.is_none());
        // What only the ping carries stays.
        assert_eq!(sold.buyer_name.as_deref(), Some("Jane"));
        assert_eq!(
            sold.purchase.custom_fields,
            vec![("Team".to_owned(), "Blue".to_owned())]
        );
    }

    #[test]
    fn the_token_goes_only_to_https_or_to_this_machine() {
        for ok in [
            "https://api.gumroad.com",
            "http://127.0.0.1:8123",
            "http://localhost:9",
            "http://[::1]:80/x",
        ] {
            assert_eq!(check_api_base(ok), Ok(()), "{ok}");
        }
        for refused in [
            "http://api.gumroad.com",
            "http://10.0.0.5",
            "http://localhost.evil.example",
            "http://127.0.0.1@evil.example",
            "ftp://api.gumroad.com",
            "api.gumroad.com",
        ] {
            assert!(check_api_base(refused).is_err(), "{refused}");
        }
    }
}
