//! Reading a sale back from Gumroad's sales API before minting (`tenant set --verify-sales on`): Gumroad's pings
//! are unsigned, so a leaked ping URL could otherwise mint keys for sales that never happened.

use std::time::Duration;

use aws_smithy_http_client::{Connector, tls};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::byte_stream::ByteStream;

use super::SalePing;

/// Gumroad's own API, unless `GUMROAD_API_URL` says otherwise (a test server, a proxy).
pub const DEFAULT_API_URL: &str = "https://api.gumroad.com";
/// The read-back's whole budget: the ping still answers well inside Gumroad's 5 s.
const TIMEOUT: Duration = Duration::from_millis(2_000);

#[derive(Debug, PartialEq, Eq)]
pub enum ReadBack {
    Confirmed,
    /// Gumroad does not know the sale, or knows it differently (which field, for the log).
    Refuted(&'static str),
    /// Gumroad slow, down or answering nonsense: the ping is answered 503 and Gumroad retries it.
    Unavailable(String),
}

/// `GET /v2/sales/<sale_id>` with the seller's token, compared with the ping: the sale must exist and its
/// `seller_id`, `product_id`, email and price must match.
pub async fn confirm(api_base: &str, access_token: &str, ping: &SalePing) -> ReadBack {
    let url = format!(
        "{}/v2/sales/{}",
        api_base.trim_end_matches('/'),
        encode(ping.sale_id.as_str())
    );
    let sale = match tokio::time::timeout(TIMEOUT, fetch(&url, access_token)).await {
        Ok(Ok(Some(sale))) => sale,
        Ok(Ok(None)) => return ReadBack::Refuted("sale not found"),
        Ok(Err(why)) => return ReadBack::Unavailable(why),
        Err(_) => {
            return ReadBack::Unavailable(format!("Gumroad did not answer within {TIMEOUT:?}"));
        }
    };
    compare(&sale, ping)
}

/// The largest answer read: a sale is a few kilobytes.
const MAX_ANSWER: usize = 1024 * 1024;

/// The sale Gumroad answers with; `None` when Gumroad says it has none (HTTP 200 with `success: false`).
/// Sent through the AWS SDK's own HTTP stack (hyper and rustls, the same TLS the function's AWS calls use), so
/// the function links one HTTP client.
async fn fetch(url: &str, token: &str) -> Result<Option<serde_json::Value>, String> {
    let connector = connector();
    let encoded = encode(token).to_string();
    let address = format!("{url}?access_token={encoded}");
    // Errors can quote the request; the token, raw or encoded, never leaves this function.
    let redact = |e: &dyn std::fmt::Display| {
        e.to_string()
            .replace(&encoded, "<redacted>")
            .replace(token, "<redacted>")
    };
    let mut request =
        HttpRequest::get(&address).map_err(|e| format!("bad Gumroad URL: {}", redact(&e)))?;
    request.headers_mut().insert(
        "user-agent",
        concat!("keystead/", env!("CARGO_PKG_VERSION")),
    );
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
    let body: serde_json::Value =
        serde_json::from_slice(&text).map_err(|_| "Gumroad's answer is not JSON".to_owned())?;
    if body.get("success").and_then(serde_json::Value::as_bool) != Some(true) {
        return Ok(None);
    }
    Ok(body.get("sale").cloned())
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

fn compare(sale: &serde_json::Value, ping: &SalePing) -> ReadBack {
    let text = |field: &str| {
        sale.get(field).and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let purchase = &ping.purchase;
    if purchase.seller_id.is_some() && text("seller_id") != purchase.seller_id {
        return ReadBack::Refuted("seller_id");
    }
    if ping.gumroad_product_id.is_some() && text("product_id") != ping.gumroad_product_id {
        return ReadBack::Refuted("product_id");
    }
    let email = text("email").or_else(|| text("purchase_email"));
    if !email.is_some_and(|e| e.eq_ignore_ascii_case(ping.email.as_str())) {
        return ReadBack::Refuted("email");
    }
    if text("price") != Some(ping.price.0.to_string()) {
        return ReadBack::Refuted("price");
    }
    ReadBack::Confirmed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gumroad::Form;

    fn ping() -> SalePing {
        let body =
            "seller_id=S&product_id=P&email=jane%40example.com&price=2900&sale_id=X1&permalink=app";
        SalePing::from_form(
            &Form::from_urlencoded(body.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn every_field_that_matters_must_match() {
        let sale = serde_json::json!({"id": "X1", "seller_id": "S", "product_id": "P", "email": "Jane@Example.com", "price": 2900});
        assert_eq!(compare(&sale, &ping()), ReadBack::Confirmed);
        for (field, value) in [
            ("seller_id", serde_json::json!("other")),
            ("product_id", serde_json::json!("other")),
            ("email", serde_json::json!("mallory@example.com")),
            ("price", serde_json::json!(100)),
        ] {
            let mut changed = sale.clone();
            changed[field] = value;
            assert_eq!(
                compare(&changed, &ping()),
                ReadBack::Refuted(field),
                "{field}"
            );
        }
    }
}
