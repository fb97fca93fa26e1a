//! Properties of the code that meets hostile input, over generated input: the ping and license API parsers never
//! panic on any bytes, license keys always have their format and do not repeat, and permalink normalisation is
//! idempotent. No local stack needed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may fail loudly

use crate::checks;

use std::collections::HashSet;

use keystead::domain::{KeyPrefix, LicenseKey, Permalink};
use keystead::gumroad::Form;
use proptest::prelude::*;

/// The `Content-Type` headers a ping can arrive with, the odd ones included.
const CONTENT_TYPES: [Option<&str>; 7] = [
    None,
    Some("application/x-www-form-urlencoded"),
    Some("application/x-www-form-urlencoded; charset=UTF-8"),
    Some("application/json"),
    Some("APPLICATION/JSON ; charset=utf-8"),
    Some("text/plain"),
    Some(""),
];

/// Field names Gumroad sends, so generated forms reach the typed readers and not only the decoder.
const FIELDS: [&str; 24] = [
    "sale_id",
    "email",
    "permalink",
    "product_permalink",
    "short_product_id",
    "price",
    "currency",
    "quantity",
    "full_name",
    "product_name",
    "test",
    "resource_name",
    "refunded",
    "subscription_id",
    "purchase_ids[]",
    "is_recurring_charge",
    "sale_timestamp",
    "cancelled_at",
    "ended_at",
    "restarted_at",
    "effective_as_of",
    "type",
    "seller_id",
    "card[visual]",
];

/// One `key=value` pair and whether it is well-formed: a real field name, percent-encoded as Gumroad does, or
/// noise sent raw so that stray `%`, `+` and `[` reach the decoder; values drawn from what those fields hold.
fn pair() -> impl Strategy<Value = (String, bool)> {
    let key = prop_oneof![
        3 => proptest::sample::select(FIELDS.to_vec()).prop_map(str::to_owned),
        1 => "[a-zA-Z_\\[\\]%0-9+]{0,12}",
    ];
    let value = prop_oneof![
        "[a-zA-Z0-9=+/_.-]{0,30}",
        "(true|false|sale|refund|dispute|dispute_won|cancellation|subscription_ended|subscription_updated)",
        "[a-z0-9.+]{1,10}@[a-z]{1,8}\\.(com|co)",
        "https?://[a-z.]{1,12}(/[a-zA-Z0-9_.~%-]{0,10}){0,4}([?#].{0,8})?",
        "[0-9]{1,22}",
        any::<String>(),
    ];
    (key, value).prop_map(|(key, value)| {
        let encode = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let real = FIELDS.contains(&key.as_str());
        // The parser refuses NUL anywhere; everything else Gumroad can encode it must accept.
        let well_formed = real && !value.contains('\0');
        let key = if real { encode(&key) } else { key };
        (format!("{key}={}", encode(&value)), well_formed)
    })
}

/// A form body and whether every pair in it is well-formed.
fn form_body() -> impl Strategy<Value = (Vec<u8>, bool)> {
    proptest::collection::vec(pair(), 0..24).prop_map(|pairs| {
        let well_formed = pairs.iter().all(|(_, ok)| *ok);
        let body: Vec<String> = pairs.into_iter().map(|(pair, _)| pair).collect();
        (body.join("&").into_bytes(), well_formed)
    })
}

fn ping_input(content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut input = content_type
        .map(|ct| format!("{ct}\n"))
        .unwrap_or_default()
        .into_bytes();
    if content_type.is_none() && body.contains(&b'\n') {
        input.push(b'\n');
    }
    input.extend_from_slice(body);
    input
}

proptest! {
    // No failure files: a failing case is printed, and belongs in a named regression test.
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn ping_parsing_never_panics_on_any_bytes(
        content_type in proptest::sample::select(CONTENT_TYPES.to_vec()),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let _ = Form::parse(content_type, &body);
        checks::ping_body(&ping_input(content_type, &body));
    }

    #[test]
    fn ping_parsing_never_panics_on_form_shaped_bodies((body, well_formed) in form_body()) {
        let form = Form::parse(Some("application/x-www-form-urlencoded"), &body);
        checks::ping_body(&ping_input(None, &body));
        prop_assert!(!well_formed || form.is_ok(), "refused {:?}: {:?}", String::from_utf8_lossy(&body), form);
    }

    #[test]
    fn ping_parsing_never_panics_on_json_bodies(value in json_value(4)) {
        let body = serde_json::to_vec(&value).unwrap();
        let _ = Form::parse(Some("application/json"), &body);
        checks::ping_body(&ping_input(Some("application/json"), &body));
    }

    #[test]
    fn license_json_parsing_never_panics(body in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        json_value(3).prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]) {
        checks::license_json(&body);
    }

    #[test]
    fn license_keys_always_match_their_format(prefix in "[A-Z0-9]{1,12}") {
        let key = LicenseKey::generate(&KeyPrefix::parse(&prefix).unwrap()).unwrap();
        let text = key.expose();
        prop_assert!(LicenseKey::is_well_formed(text), "{}", text);
        prop_assert_eq!(text.len(), prefix.len() + 36);
        let dashed = format!("{prefix}-");
        prop_assert!(text.starts_with(&dashed), "{}", text);
        let groups: Vec<&str> = text[prefix.len() + 1..].split('-').collect();
        prop_assert_eq!(groups.len(), 6);
        for group in groups {
            prop_assert!(group.len() == 5 && group.bytes().all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b)), "{}", text);
        }
    }

    #[test]
    fn a_malformed_key_is_never_well_formed(key in "[A-Z0-9]{1,12}(-[0-9A-Z]{5}){6}", at in 0usize..48, with in "[a-z!ILOU _]") {
        // One character after the prefix swapped for one outside the format: lower case, I, L, O, U, space or `_`.
        let mut chars: Vec<char> = key.chars().collect();
        let prefix_len = key.find('-').unwrap();
        let at = prefix_len + at % (chars.len() - prefix_len);
        chars[at] = with.chars().next().unwrap();
        let bad: String = chars.into_iter().collect();
        prop_assert!(!LicenseKey::is_well_formed(&bad), "{}", bad);
    }

    #[test]
    fn permalink_normalisation_is_idempotent(raw in prop_oneof![
        any::<String>(),
        "[ \t]{0,2}[a-zA-Z0-9_.~-]{1,20}[ \t]{0,2}",
        "[a-zA-Z]{1,6}://[a-zA-Z0-9.:@-]{0,20}(/[a-zA-Z0-9_.~%@:-]{0,12}){0,5}/?([?#].{0,10})?",
        "https://[a-z]{1,8}\\.gumroad\\.com/l/.{0,20}",
    ]) {
        if let Ok(once) = Permalink::parse(&raw) {
            let twice = Permalink::parse(once.as_str());
            prop_assert_eq!(twice.as_ref(), Ok(&once), "{:?}", raw);
        }
        checks::permalink(raw.as_bytes());
    }

    #[test]
    fn a_product_url_normalises_to_its_slug(
        slug in "[a-zA-Z0-9_-][a-zA-Z0-9_.-]{0,40}",
        host in "(app\\.)?[a-z]{1,10}\\.gumroad\\.com",
        suffix in "(/)?([?#][a-z=&]{0,12})?",
    ) {
        let parsed = Permalink::parse(&format!("https://{host}/l/{slug}{suffix}"));
        prop_assert_eq!(parsed.map(String::from), Ok(slug));
    }
}

/// Any JSON value, nested up to `depth`, with keys that are often Gumroad's own.
fn json_value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[a-z0-9@.+-]{0,20}".prop_map(Value::String),
    ];
    let key = prop_oneof![
        proptest::sample::select(
            FIELDS
                .iter()
                .map(|f| f.trim_end_matches("[]"))
                .chain(["key", "product_id", "machine_id", "label", "card"])
                .collect::<Vec<_>>()
        )
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    leaf.prop_recursive(depth, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Keys are 150 random bits: a repeat in a million draws means the generator is broken, not unlucky.
#[test]
fn a_million_license_keys_never_repeat() {
    const DRAWS: usize = 1_000_000;
    let prefix = KeyPrefix::parse("K").unwrap();
    let mut seen: HashSet<[u8; 30]> = HashSet::with_capacity(DRAWS);
    for draw in 0..DRAWS {
        let key = LicenseKey::generate(&prefix).unwrap();
        // The 30 random characters without the prefix and dashes, as a fixed-size array: cheap to hash and store.
        let mut random = [0u8; 30];
        let mut chars = key.expose().bytes().skip(2).filter(|&b| b != b'-');
        for slot in &mut random {
            *slot = chars.next().unwrap();
        }
        assert!(chars.next().is_none(), "{}", key.expose());
        assert!(
            seen.insert(random),
            "key number {draw} repeats an earlier one: {}",
            key.expose()
        );
    }
    assert_eq!(seen.len(), DRAWS);
}
