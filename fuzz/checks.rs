//! The checks behind the fuzz targets in `fuzz/` and their replay in `tests/hostile.rs`: each takes arbitrary
//! bytes, runs them through the same parsing code a request goes through, and panics only when that code panics
//! or breaks one of its promises. It reaches keystead through its public API only; the fuzz targets include it
//! (`#[path = "../checks.rs"]`) and so does the corpus replay (`tests/it/hostile.rs`), so nothing of it is
//! compiled into the function.

use keystead::app::licenses::{self as licensing, LicenseRequest};
use keystead::domain::{Email, Permalink};
use keystead::gumroad::{Form, GumroadEvent, Ping, SalePing};

/// Every `resource_name` the event reader knows, so each input is tried as every kind of event.
const RESOURCES: [&str; 8] = [
    "sale",
    "refund",
    "dispute",
    "dispute_won",
    "cancellation",
    "subscription_ended",
    "subscription_restarted",
    "subscription_updated",
];

/// Splits a `ping_body` input into its `Content-Type` header and body: a first line of at most 200 bytes is the
/// header (an empty one means no header); an input without a line break is a body sent without a header.
pub fn split_ping_input(data: &[u8]) -> (Option<String>, &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(end) if end <= 200 => {
            let header = String::from_utf8_lossy(&data[..end]).into_owned();
            ((!header.is_empty()).then_some(header), &data[end + 1..])
        }
        _ => (None, data),
    }
}

/// The ping body parser and every typed reader after it: `Form::parse`, `Ping::classify`, `SalePing::from_form`
/// and `GumroadEvent::from_form` must not panic, and what they accept must keep the promises the rest of the
/// code relies on.
pub fn ping_body(data: &[u8]) {
    let (content_type, body) = split_ping_input(data);
    let Ok(form) = Form::parse(content_type.as_deref(), body) else {
        return;
    };
    if let Ping::Event(name) = Ping::classify(&form) {
        assert!(
            !name.trim().is_empty() && name != "sale",
            "classified as event {name:?}"
        );
    }
    if let Ok(sale) = SalePing::from_form(&form) {
        assert!(!sale.product_refs.is_empty(), "a sale without a product");
        for slug in &sale.product_refs {
            assert_eq!(
                Permalink::parse(slug.as_str()).as_ref(),
                Ok(slug),
                "slug does not round-trip"
            );
        }
        assert_eq!(
            Email::parse(sale.email.as_str()).as_ref(),
            Ok(&sale.email),
            "email does not round-trip"
        );
        for text in [
            &sale.buyer_name,
            &sale.product_name,
            &sale.sale_timestamp,
            &sale.subscription_id,
        ]
        .into_iter()
        .flatten()
        {
            assert_one_line(text);
        }
        assert!(
            sale.currency.len() <= 8 && sale.currency.bytes().all(|b| b.is_ascii_lowercase()),
            "currency {:?}",
            sale.currency
        );
        assert!(
            sale.sale_id.as_str().bytes().all(|b| b.is_ascii_graphic()),
            "sale id {:?}",
            sale.sale_id
        );
    }
    for resource in RESOURCES {
        if let Ok(Some(event)) = GumroadEvent::from_form(resource, &form) {
            assert_eq!(event.kind.name(), resource, "event kind");
            assert!(
                event.idempotency_key.starts_with(&format!("{resource}#")),
                "idempotency key {:?}",
                event.idempotency_key
            );
            // Sale-shaped events must name exactly one sale, subscription events a subscription id.
            match &event.subject {
                keystead::gumroad::EventSubject::Sale(sale) => {
                    assert!(!sale.as_str().is_empty());
                }
                keystead::gumroad::EventSubject::Subscription { id, .. } => {
                    assert!(
                        !id.is_empty() && id.bytes().all(|b| b.is_ascii_graphic()),
                        "subscription id {id:?}"
                    );
                }
            }
        }
    }
}

/// A name, timestamp or id that will reach an email header or a log line: no control characters, at most 200.
fn assert_one_line(text: &str) {
    assert!(
        text.chars().count() <= 200 && !text.chars().any(char::is_control),
        "not one line: {text:?}"
    );
}

/// The permalink normaliser: any string either is refused or normalises to a slug that normalises to itself.
pub fn permalink(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let Ok(slug) = Permalink::parse(&raw) else {
        return;
    };
    let text = slug.as_str();
    assert!(
        (1..=128).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
        "not a slug: {text:?}"
    );
    assert_eq!(
        Permalink::parse(text).as_ref(),
        Ok(&slug),
        "normalising {raw:?} twice"
    );
    // A slug is what a seller maps; the product URL Gumroad sends for it must name the same slug.
    let url = format!("https://seller.gumroad.com/l/{text}?wanted=true");
    assert_eq!(
        Permalink::parse(&url).as_ref(),
        Ok(&slug),
        "the product URL of {text:?}"
    );
}

/// The license API's JSON body parser: whatever it accepts is a JSON object a JSON reader accepts too, and it
/// read exactly the fields that reader sees there.
pub fn license_json(data: &[u8]) {
    let Ok(request) = licensing::parse_request(data) else {
        return;
    };
    let LicenseRequest {
        key,
        product_id,
        machine_id,
        label,
        ..
    } = &request;
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice::<serde_json::Value>(data)
    else {
        panic!("the license API accepted a body that is not a JSON object");
    };
    for (name, parsed) in [
        ("key", key),
        ("product_id", product_id),
        ("machine_id", machine_id),
        ("label", label),
    ] {
        let seen = object.get(name).and_then(serde_json::Value::as_str);
        assert_eq!(parsed.as_deref(), seen, "field {name}");
    }
    if let Some(label) = label {
        assert_one_line(&keystead::gumroad::one_line(label));
    }
}

/// One target's check: returns when the input was handled as promised, panics otherwise.
pub type Check = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/fuzz_targets/*.rs` and the corpus folders call them.
pub const TARGETS: [(&str, Check); 3] = [
    ("ping_body", ping_body),
    ("permalink", permalink),
    ("license_json", license_json),
];
