//! How one Gumroad product sells several key types: a variant (`Tier=Team`, `Version=Studio`) picks the product,
//! `quantity` multiplies the seats, and entitlements name what a product unlocks in the seller's app.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{InvalidValue, Permalink, ProductId, one_line};

/// The most seats a license can hold, whatever a product's limit times a sale's quantity comes to. A sale above it
/// is capped, never refused: a `400` on a real sale is final and would lose the license.
pub const MAX_SEATS: u32 = 100_000;

/// A product's activation limit times the quantity bought, without overflow and at most `MAX_SEATS`.
pub fn seats(activation_limit: u32, quantity: u32) -> u32 {
    activation_limit.saturating_mul(quantity).min(MAX_SEATS)
}

/// A variant a buyer chose: Gumroad's `variants[<Category>]=<Name>` (memberships use the category `Tier`,
/// versions `Version`). Compared case-insensitively with surrounding whitespace trimmed, as the seller typed it
/// in one place and Gumroad sends it from another.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variant {
    pub category: String,
    pub name: String,
}

impl Variant {
    pub fn new(category: &str, name: &str) -> Result<Self, InvalidValue> {
        let category = one_line(category);
        let name = one_line(name);
        if category.is_empty() || name.is_empty() {
            return Err(InvalidValue(
                "invalid variant: expected <CATEGORY>=<NAME>, e.g. Tier=Team".to_owned(),
            ));
        }
        Ok(Self { category, name })
    }

    /// `Tier=Team`, as the CLI takes it.
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let (category, name) = raw.split_once('=').ok_or_else(|| {
            InvalidValue(format!(
                "invalid variant '{}': expected <CATEGORY>=<NAME>, e.g. Tier=Team",
                one_line(raw)
            ))
        })?;
        Self::new(category, name)
    }

    pub fn is(&self, other: &Variant) -> bool {
        self.key() == other.key()
    }

    /// The normalised form, stable across letter case and stray whitespace.
    pub fn key(&self) -> String {
        // Control characters never survive `clean`, so the separator cannot occur inside either part.
        format!(
            "{}\u{1f}{}",
            self.category.to_lowercase(),
            self.name.to_lowercase()
        )
    }
}

impl PartialEq for Variant {
    fn eq(&self, other: &Self) -> bool {
        self.is(other)
    }
}

impl Eq for Variant {}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.category, self.name)
    }
}

/// A permalink and one of its variants, sold as a keystead product of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantMapping {
    pub permalink: Permalink,
    pub variant: Variant,
    pub product_id: ProductId,
}

impl VariantMapping {
    /// The record's identity: one mapping per permalink and normalised variant.
    pub fn key(permalink: &Permalink, variant: &Variant) -> String {
        format!("{permalink}\u{1f}{}", variant.key())
    }
}

/// Feature names an app unlocks per tier: 1–64 characters of `a-z 0-9 - _ . :`, at most 64 of them.
pub fn parse_entitlements(raw: &str) -> Result<Vec<String>, InvalidValue> {
    let mut entitlements: Vec<String> = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let ok = name.len() <= 64
            && name.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'-' | b'_' | b'.' | b':')
            });
        if !ok {
            return Err(InvalidValue(format!(
                "invalid entitlement '{}': use 1 to 64 characters of a-z, 0-9, '-', '_', '.' and ':'",
                one_line(name)
            )));
        }
        if !entitlements.iter().any(|e| e == name) {
            entitlements.push(name.to_owned());
        }
    }
    if entitlements.len() > 64 {
        return Err(InvalidValue(
            "too many entitlements: at most 64 per product".to_owned(),
        ));
    }
    Ok(entitlements)
}

/// The longest seat lease or lease lifetime a product may have.
pub const MAX_LEASE_SECONDS: u64 = 365 * 24 * 3600;

/// A duration as sellers write it: `90s`, `45m`, `12h`, `7d`; from one second to a year.
pub fn parse_duration(raw: &str) -> Result<u64, InvalidValue> {
    let raw = raw.trim();
    let invalid = || {
        InvalidValue(format!(
            "invalid duration '{}': a whole number and a unit, e.g. 90s, 45m, 12h or 7d (at most 365d)",
            one_line(raw)
        ))
    };
    let split = raw.len().checked_sub(1).ok_or_else(invalid)?;
    let (number, unit) = raw.split_at(split);
    let unit_seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 24 * 3600,
        _ => return Err(invalid()),
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let seconds = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_seconds))
        .filter(|s| (1..=MAX_LEASE_SECONDS).contains(s))
        .ok_or_else(invalid)?;
    Ok(seconds)
}

/// A duration in the largest unit that divides it: `90s`, `12h`, `7d`.
pub fn format_duration(seconds: u64) -> String {
    match seconds {
        s if s % (24 * 3600) == 0 => format!("{}d", s / (24 * 3600)),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A tier or seat change that takes effect later (a downgrade at the end of the paid period). Stored on the
/// license and applied by the first read after `effective_at`, so no scheduler is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChange {
    pub product_id: ProductId,
    pub product_name: String,
    pub activation_limit: u32,
    pub quantity: u32,
    /// RFC 3339, UTC.
    pub effective_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_multiply_without_overflow_and_are_capped() {
        assert_eq!(seats(3, 4), 12);
        assert_eq!(seats(3, 1), 3);
        assert_eq!(seats(u32::MAX, u32::MAX), MAX_SEATS);
        assert_eq!(seats(10, 20_000), MAX_SEATS);
    }

    #[test]
    fn variants_compare_without_case_or_stray_spaces() {
        let cli = Variant::parse("Tier=Team").unwrap_or_else(|e| panic!("{e}"));
        let ping = Variant::new(" tier ", "TEAM\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli, ping);
        assert_ne!(
            cli,
            Variant::parse("Tier=Teams").unwrap_or_else(|e| panic!("{e}"))
        );
        assert_eq!(cli.to_string(), "Tier=Team");
        for bad in ["Tier", "=Team", "Tier=", " = "] {
            assert!(Variant::parse(bad).is_err(), "{bad}");
        }
        // A name may itself contain '='; only the first one separates.
        let odd = Variant::parse("Plan=a=b").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(odd.name, "a=b");
    }

    #[test]
    fn durations_read_as_sellers_write_them() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration(" 7d "), Ok(7 * 24 * 3600));
        assert_eq!(parse_duration("365d"), Ok(MAX_LEASE_SECONDS));
        for bad in [
            "",
            "d",
            "0s",
            "7",
            "7w",
            "-1d",
            "1.5h",
            "366d",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(90), "90s");
        assert_eq!(format_duration(7 * 24 * 3600), "7d");
        assert_eq!(format_duration(2 * 3600), "2h");
    }

    #[test]
    fn entitlements_are_checked_and_deduplicated() {
        assert_eq!(
            parse_entitlements("export, sync,export ,team:admin"),
            Ok(vec![
                "export".to_owned(),
                "sync".to_owned(),
                "team:admin".to_owned()
            ])
        );
        assert_eq!(parse_entitlements(""), Ok(vec![]));
        assert!(parse_entitlements("Export").is_err());
        assert!(parse_entitlements("a b").is_err());
        assert!(parse_entitlements(&"x".repeat(65)).is_err());
    }
}
