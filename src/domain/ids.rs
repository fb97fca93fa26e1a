//! Newtypes for the identifiers and values that arrive as strings from Gumroad, the CLI or the license API.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that failed to parse; the message says which value and why, fit to show a seller or a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A tenant id: 3–64 characters of `a-z 0-9 -`. It appears in the ping URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);
string_newtype!(TenantId);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = (3..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue(format!(
                "invalid tenant id '{raw}': use 3 to 64 characters of a-z, 0-9 and '-'"
            )))
        }
    }
}

/// A product id chosen by the seller: 1–64 characters of `A-Z a-z 0-9 - _ .`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductId(String);
string_newtype!(ProductId);

impl ProductId {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if is_slug(raw, 64) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue(format!(
                "invalid product id '{raw}': use 1 to 64 characters of A-Z, a-z, 0-9, '-', '_' and '.'"
            )))
        }
    }
}

fn is_slug(raw: &str, max: usize) -> bool {
    (1..=max).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A Gumroad product permalink slug (`myapp-pro`), the key of a tenant's permalink → product map.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Permalink(String);
string_newtype!(Permalink);

impl Permalink {
    /// Accepts a slug or a full product URL (`https://seller.gumroad.com/l/myapp-pro?x=1`) and keeps the slug:
    /// the path segment after `/l/`, or else the last non-empty path segment. Normalising a slug returns it unchanged.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let trimmed = raw.trim();
        let slug = match trimmed.split_once("://") {
            Some((_, rest)) => {
                let without_extras = rest.split(['?', '#']).next().unwrap_or_default();
                let mut segments = without_extras.split('/').skip(1).filter(|s| !s.is_empty());
                let all: Vec<&str> = segments.by_ref().collect();
                match all.iter().position(|s| *s == "l") {
                    Some(i) if i + 1 < all.len() => all[i + 1],
                    _ => all.last().copied().unwrap_or_default(),
                }
            }
            None => trimmed,
        };
        if is_slug(slug, 128) {
            Ok(Self(slug.to_owned()))
        } else {
            Err(InvalidValue(format!(
                "invalid permalink '{}': expected a Gumroad product slug or its https://…/l/<slug> URL",
                raw.chars().take(200).collect::<String>()
            )))
        }
    }
}

/// A Gumroad sale id (opaque, e.g. `FO8TXN-dbxYaBdahG97Y-Q==`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SaleId(String);
string_newtype!(SaleId);

impl SaleId {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = (1..=256).contains(&raw.len()) && raw.chars().all(|c| c.is_ascii_graphic());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue("Invalid sale_id".to_owned()))
        }
    }
}

/// A newtype of a value keystead made itself (a hash, an id): read back as stored, never parsed from input.
macro_rules! stored_newtype {
    ($name:ident) => {
        string_newtype!($name);
        impl $name {
            /// The value as stored (in an item, a sort key, a signed link) or as made.
            pub fn from_stored(value: impl Into<String>) -> Self {
                Self(value.into())
            }
        }
        impl From<&$name> for String {
            fn from(value: &$name) -> Self {
                value.0.clone()
            }
        }
    };
}

/// The SHA-256 of a license key, in hex: how a license is found (the key itself is never a lookup).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyHash(String);
stored_newtype!(KeyHash);

/// A license's own id (`lic_…`), shown to sellers and buyers; unlike the key, not a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LicenseId(String);
stored_newtype!(LicenseId);

impl PartialEq<str> for LicenseId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// A buyer's email address: one `@`, no whitespace or control characters, at most 254 characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);
string_newtype!(Email);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let raw = raw.trim();
        let valid = raw.len() <= 254
            && !raw.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(raw.split_once('@'), Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@') && domain.contains('.')
                    && !domain.starts_with('.') && !domain.ends_with('.'));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue("Invalid email".to_owned()))
        }
    }

    /// The part after the `@`, as written.
    pub fn domain(&self) -> &str {
        self.0.split_once('@').map_or("", |(_, domain)| domain)
    }

    /// `j***@example.com`: enough to tell buyers apart in a log, never the full address.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or((&self.0, ""));
        let first: String = local.chars().take(1).collect();
        format!("{first}***@{domain}")
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.masked())
    }
}

/// A license key prefix: 1–12 characters of `A-Z 0-9`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyPrefix(String);
string_newtype!(KeyPrefix);

impl KeyPrefix {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = (1..=12).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidValue(format!(
                "invalid key prefix '{raw}': use 1 to 12 characters of A-Z and 0-9"
            )))
        }
    }
}

/// An amount in US cents, as Gumroad's `price` always is (whatever `currency` says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsdCents(pub u64);

impl UsdCents {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        raw.trim()
            .parse::<u64>()
            .map(Self)
            .map_err(|_| InvalidValue("Invalid price".to_owned()))
    }
}

/// Buyer names and product names are data: at most 200 characters, no line breaks or other control characters,
/// so they can never become an email header or split a log line.
pub fn one_line(raw: &str) -> String {
    raw.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect::<String>()
        .trim()
        .to_owned()
}

macro_rules! string_conversions {
    ($($name:ident),*) => {$(
        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    )*};
}
string_conversions!(TenantId, ProductId, Permalink, SaleId, Email, KeyPrefix);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_follow_the_documented_alphabet() {
        assert!(TenantId::parse("acme").is_ok());
        assert!(TenantId::parse("a-1").is_ok());
        assert!(TenantId::parse("ab").is_err());
        assert!(TenantId::parse("Acme").is_err());
        assert!(TenantId::parse(&"a".repeat(65)).is_err());
        assert!(TenantId::parse("acme_co").is_err());
    }

    #[test]
    fn permalinks_accept_slugs_and_product_urls() {
        let cases = [
            ("myapp-pro", "myapp-pro"),
            ("https://acme.gumroad.com/l/myapp-pro", "myapp-pro"),
            ("https://acme.gumroad.com/l/myapp-pro/", "myapp-pro"),
            (
                "https://acme.gumroad.com/l/myapp-pro?wanted=true#x",
                "myapp-pro",
            ),
            ("http://gumroad.com/l/qwxyz", "qwxyz"),
            ("https://example.com/products/thing", "thing"),
        ];
        for (raw, slug) in cases {
            assert_eq!(
                Permalink::parse(raw).map(String::from),
                Ok(slug.to_owned()),
                "{raw}"
            );
        }
        for bad in ["", "https://acme.gumroad.com/", "my app", "../etc", "a/b"] {
            assert!(Permalink::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn permalink_normalisation_is_idempotent() {
        let once = Permalink::parse("https://acme.gumroad.com/l/myapp-pro").map(String::from);
        let twice = once
            .clone()
            .and_then(|s| Permalink::parse(&s))
            .map(String::from);
        assert_eq!(once, twice);
    }

    #[test]
    fn emails_are_checked_and_masked() {
        let email = Email::parse("jane.doe+gr@example.com");
        assert_eq!(
            email.as_ref().map(Email::masked),
            Ok("j***@example.com".to_owned())
        );
        for bad in [
            "",
            "jane",
            "jane@",
            "@example.com",
            "a b@example.com",
            "a@b@example.com",
            "jane@example.com\r\nBcc: x@y.z",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn key_prefixes_are_upper_alphanumeric() {
        assert!(KeyPrefix::parse("ACME").is_ok());
        assert!(KeyPrefix::parse("ABCDEFGHIJKL").is_ok());
        assert!(KeyPrefix::parse("ABCDEFGHIJKLM").is_err());
        assert!(KeyPrefix::parse("acme").is_err());
        assert!(KeyPrefix::parse("").is_err());
    }
}
