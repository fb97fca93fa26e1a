//! The kinds of ping Gumroad sends and the typed sale read from a sale ping.

pub use crate::domain::one_line;
use crate::domain::{Email, GumroadPurchase, Permalink, SaleId, UsdCents, Variant};

use super::Form;

/// What a ping asks keystead to do, decided from `test` and `resource_name` alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ping {
    /// `test=true`: a seller's own purchase or the "Send test ping" button. Acknowledged, nothing written.
    Test,
    /// `resource_name=sale`, or no `resource_name` at all.
    Sale,
    /// Any other resource (refund, dispute, cancellation, subscription_*).
    Event(String),
}

impl Ping {
    pub fn classify(form: &Form) -> Self {
        if form.flag("test") {
            return Self::Test;
        }
        match form.get_nonempty("resource_name") {
            None | Some("sale") => Self::Sale,
            Some(other) => Self::Event(other.to_owned()),
        }
    }

    /// Whether a ping of this form's kind always names its seller: sale, refund and dispute pings do (their first
    /// field, test pings included); subscription events never do.
    pub fn names_seller(form: &Form) -> bool {
        matches!(
            form.get_nonempty("resource_name"),
            None | Some("sale" | "refund" | "dispute" | "dispute_won")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PingError {
    #[error("Missing required fields")]
    MissingFields,
    #[error("{0}")]
    Invalid(String),
}

/// A sale, read from Gumroad's own fields. Custom fields never shadow these: `Form::get` returns the first
/// occurrence, which is Gumroad's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalePing {
    pub sale_id: SaleId,
    pub email: Email,
    /// `product_permalink`'s slug, then `permalink`, then `short_product_id`, in that order of preference.
    pub product_refs: Vec<Permalink>,
    pub buyer_name: Option<String>,
    pub product_name: Option<String>,
    pub price: UsdCents,
    pub currency: String,
    pub quantity: u32,
    pub sale_timestamp: Option<String>,
    pub subscription_id: Option<String>,
    pub is_recurring_charge: bool,
    /// `variants[<Category>]=<Name>`, in Gumroad's order, one per category.
    pub variants: Vec<Variant>,
    /// `is_preorder_authorization=true`: a card authorized for a preorder, nothing charged yet.
    pub is_preorder_authorization: bool,
    /// `is_gift_receiver_purchase=true`: `email` is the giftee's; this is the gifter's side.
    pub gift: Option<Gift>,
    /// Gumroad's own product id (`product_id`), kept on the license for later look-ups.
    pub gumroad_product_id: Option<String>,
    /// Gumroad's own key for the purchase (`license_key`), when the product has Gumroad licensing on.
    pub license_key: Option<String>,
    /// The sale as Gumroad described it, kept for Gumroad-shaped answers.
    pub purchase: GumroadPurchase,
}

/// Gumroad's keys are `XXXXXXXX-XXXXXXXX-XXXXXXXX-XXXXXXXX`; anything printable up to 100 characters is taken, so
/// a key Gumroad formats differently one day still works.
fn parse_license_key(raw: Option<&str>) -> Result<Option<String>, PingError> {
    match raw {
        None => Ok(None),
        Some(key) if key.len() > 100 || !key.chars().all(|c| c.is_ascii_graphic()) => {
            Err(PingError::Invalid("Invalid license_key".to_owned()))
        }
        Some(key) => Ok(Some(key.to_owned())),
    }
}

/// `custom_fields[<name>]=<value>` pairs, in Gumroad's order, each name once.
fn custom_fields(form: &Form) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (key, value) in form.pairs() {
        if let Some(name) = key
            .strip_prefix("custom_fields[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            let name = one_line(name);
            if !name.is_empty() && !fields.iter().any(|(n, _)| *n == name) {
                fields.push((name, one_line(value)));
            }
        }
    }
    fields
}

/// What the gifter paid, and who they are; the giftee's own `price` is 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gift {
    pub gifter_email: Option<Email>,
    pub price: UsdCents,
}

/// A positive whole number of seats. Gumroad never sends 0; anything but digits is not a quantity.
fn parse_quantity(raw: Option<&str>) -> Result<u32, PingError> {
    let Some(raw) = raw else {
        return Ok(1);
    };
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    if !digits || raw.bytes().all(|b| b == b'0') {
        return Err(PingError::Invalid("Invalid quantity".to_owned()));
    }
    // More than a u32 holds is still a real sale: seats are capped later (far lower), never refused.
    Ok(raw.parse::<u32>().unwrap_or(u32::MAX))
}

/// Every `variants[<Category>]=<Name>` pair; the first of a category is Gumroad's.
fn variants(form: &Form) -> Vec<Variant> {
    let mut found: Vec<Variant> = Vec::new();
    for (key, value) in form.pairs() {
        let Some(category) = key
            .strip_prefix("variants[")
            .and_then(|rest| rest.strip_suffix(']'))
        else {
            continue;
        };
        let Ok(variant) = Variant::new(category, value) else {
            continue;
        };
        if !found
            .iter()
            .any(|v| v.category.eq_ignore_ascii_case(&variant.category))
        {
            found.push(variant);
        }
    }
    found
}

impl SalePing {
    pub fn from_form(form: &Form) -> Result<Self, PingError> {
        let (Some(sale_id), Some(email)) =
            (form.get_nonempty("sale_id"), form.get_nonempty("email"))
        else {
            return Err(PingError::MissingFields);
        };
        let mut product_refs = Vec::new();
        for field in ["product_permalink", "permalink", "short_product_id"] {
            if let Some(raw) = form.get_nonempty(field) {
                let slug = Permalink::parse(raw)
                    .map_err(|_| PingError::Invalid(format!("Invalid {field}")))?;
                if !product_refs.contains(&slug) {
                    product_refs.push(slug);
                }
            }
        }
        if product_refs.is_empty() {
            return Err(PingError::MissingFields);
        }
        let invalid = |e: crate::domain::InvalidValue| PingError::Invalid(e.0);
        let quantity = parse_quantity(form.get_nonempty("quantity"))?;
        let gift = if form.flag("is_gift_receiver_purchase") {
            Some(Gift {
                gifter_email: form
                    .get_nonempty("gifter_email")
                    .map(Email::parse)
                    .transpose()
                    .map_err(|_| PingError::Invalid("Invalid gifter_email".to_owned()))?,
                price: form
                    .get_nonempty("gift_price")
                    .map(UsdCents::parse)
                    .transpose()
                    .map_err(|_| PingError::Invalid("Invalid gift_price".to_owned()))?
                    .unwrap_or_default(),
            })
        } else {
            None
        };
        let gumroad_product_id = match form.get_nonempty("product_id") {
            Some(id) if id.len() > 256 || id.chars().any(|c| !c.is_ascii_graphic()) => {
                return Err(PingError::Invalid("Invalid product_id".to_owned()));
            }
            other => other.map(str::to_owned),
        };
        let sale_id = SaleId::parse(sale_id).map_err(invalid)?;
        let email = Email::parse(email).map_err(invalid)?;
        let price = form
            .get_nonempty("price")
            .map(UsdCents::parse)
            .transpose()
            .map_err(invalid)?
            .unwrap_or_default();
        let variants = variants(form);
        let text = |field: &str| form.get_nonempty(field).map(one_line);
        let purchase = GumroadPurchase {
            seller_id: text("seller_id"),
            product_id: gumroad_product_id.clone(),
            product_name: text("product_name"),
            permalink: text("permalink"),
            product_permalink: text("product_permalink"),
            email: email.to_string(),
            price: price.0,
            currency: text("currency").map(|c| c.to_ascii_lowercase()),
            quantity,
            order_number: text("order_number"),
            sale_id: sale_id.to_string(),
            sale_timestamp: text("sale_timestamp"),
            full_name: text("full_name"),
            variants: variants.clone(),
            custom_fields: custom_fields(form),
            subscription_id: text("subscription_id"),
            test: false,
            is_gift_receiver_purchase: gift.is_some(),
        };
        Ok(Self {
            license_key: parse_license_key(form.get_nonempty("license_key"))?,
            purchase,
            sale_id,
            email,
            product_refs,
            buyer_name: form.get_nonempty("full_name").map(one_line),
            product_name: form.get_nonempty("product_name").map(one_line),
            price,
            currency: form
                .get_nonempty("currency")
                .map(|c| c.to_ascii_lowercase())
                .filter(|c| c.len() <= 8 && c.bytes().all(|b| b.is_ascii_alphabetic()))
                .unwrap_or_else(|| "usd".to_owned()),
            quantity,
            sale_timestamp: form.get_nonempty("sale_timestamp").map(one_line),
            subscription_id: form.get_nonempty("subscription_id").map(one_line),
            is_recurring_charge: form.flag("is_recurring_charge"),
            variants,
            is_preorder_authorization: form.flag("is_preorder_authorization"),
            gift,
            gumroad_product_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REALISTIC: &str = "seller_id=kL0psVL2admJSYRNs-OCMg%3D%3D&product_id=32-nPAicqbLj8B_WswVlMw%3D%3D&product_name=MyApp%20Pro&permalink=myapp-pro&product_permalink=https%3A%2F%2Facme.gumroad.com%2Fl%2Fmyapp-pro&short_product_id=qwxyz&email=jane.doe%2Bgr%40example.com&price=2900&gumroad_fee=370&currency=usd&quantity=1&card%5Bvisual%5D=%2A%2A%2A%2A%204242&card%5Btype%5D=visa&order_number=524459935&sale_id=FO8TXN-dbxYaBdahG97Y-Q%3D%3D&sale_timestamp=2026-05-04T19%3A38%3A56Z&full_name=Jane%20Doe&variants%5BTier%5D=Pro&ip_country=United%20States&refunded=false&resource_name=sale&disputed=false&dispute_won=false";

    fn form(body: &str) -> Form {
        Form::from_urlencoded(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn reads_a_realistic_sale() {
        let f = form(REALISTIC);
        assert_eq!(Ping::classify(&f), Ping::Sale);
        let sale = SalePing::from_form(&f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sale.sale_id.as_str(), "FO8TXN-dbxYaBdahG97Y-Q==");
        assert_eq!(sale.email.as_str(), "jane.doe+gr@example.com");
        let refs: Vec<&str> = sale.product_refs.iter().map(Permalink::as_str).collect();
        assert_eq!(refs, ["myapp-pro", "qwxyz"]);
        assert_eq!(sale.price, UsdCents(2900));
        assert_eq!(sale.currency, "usd");
        assert_eq!(sale.buyer_name.as_deref(), Some("Jane Doe"));
    }

    #[test]
    fn a_custom_field_named_email_does_not_shadow_the_buyer() {
        let f = form(&format!(
            "{REALISTIC}&email=attacker%40evil.example&custom_fields%5Bemail%5D=attacker%40evil.example"
        ));
        let sale = SalePing::from_form(&f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sale.email.as_str(), "jane.doe+gr@example.com");
    }

    #[test]
    fn classifies_test_and_other_pings() {
        assert_eq!(Ping::classify(&form("test=true&sale_id=x")), Ping::Test);
        assert_eq!(
            Ping::classify(&form("test=true&resource_name=refund")),
            Ping::Test
        );
        assert_eq!(Ping::classify(&form("sale_id=x")), Ping::Sale);
        assert_eq!(
            Ping::classify(&form("resource_name=refund")),
            Ping::Event("refund".into())
        );
        assert_eq!(Ping::classify(&form("test=false")), Ping::Sale);
    }

    #[test]
    fn reports_missing_and_invalid_fields() {
        assert_eq!(
            SalePing::from_form(&form("email=a%40b.co&permalink=x")),
            Err(PingError::MissingFields)
        );
        assert_eq!(
            SalePing::from_form(&form("sale_id=1&permalink=x")),
            Err(PingError::MissingFields)
        );
        assert_eq!(
            SalePing::from_form(&form("sale_id=1&email=a%40b.co")),
            Err(PingError::MissingFields)
        );
        assert_eq!(
            SalePing::from_form(&form("sale_id=1&email=nope&permalink=x")),
            Err(PingError::Invalid("Invalid email".into()))
        );
        assert_eq!(
            SalePing::from_form(&form("sale_id=1&email=a%40b.co&permalink=x&price=12.5")),
            Err(PingError::Invalid("Invalid price".into()))
        );
    }

    #[test]
    fn reads_variants_gifts_preorders_and_quantity() {
        let body = REALISTIC
            .replace("quantity=1", "quantity=4")
            .replace(
                "variants%5BTier%5D=Pro",
                "variants%5BTier%5D=%20Team%20&variants%5BVersion%5D=Studio&variants%5Btier%5D=Shadow",
            )
            .replace(
                "&ip_country",
                "&is_preorder_authorization=true&is_gift_receiver_purchase=true&gift_price=4900&gifter_email=gifter%40example.com&ip_country",
            );
        let sale = SalePing::from_form(&form(&body)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sale.quantity, 4);
        let variants: Vec<String> = sale.variants.iter().map(ToString::to_string).collect();
        assert_eq!(
            variants,
            ["Tier=Team", "Version=Studio"],
            "the first of a category is Gumroad's"
        );
        assert!(sale.is_preorder_authorization);
        let gift = sale.gift.unwrap_or_else(|| panic!("a gift"));
        assert_eq!(gift.price, UsdCents(4900));
        assert_eq!(
            gift.gifter_email.map(|e| e.to_string()).as_deref(),
            Some("gifter@example.com")
        );
        assert_eq!(
            sale.gumroad_product_id.as_deref(),
            Some("32-nPAicqbLj8B_WswVlMw==")
        );
        let plain = SalePing::from_form(&form(REALISTIC)).unwrap_or_else(|e| panic!("{e}"));
        assert!(plain.gift.is_none() && !plain.is_preorder_authorization);
    }

    #[test]
    fn quantity_is_a_positive_whole_number() {
        let with = |q: &str| {
            SalePing::from_form(&form(
                &REALISTIC.replace("quantity=1", &format!("quantity={q}")),
            ))
        };
        assert_eq!(with("12").map(|s| s.quantity), Ok(12));
        assert_eq!(with("99999999999").map(|s| s.quantity), Ok(u32::MAX));
        for bad in ["0", "00", "-3", "1.5", "x", "%2B1"] {
            assert_eq!(
                with(bad),
                Err(PingError::Invalid("Invalid quantity".into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_lose_their_line_breaks() {
        assert_eq!(one_line("Jane\r\nBcc: x@y.z"), "Jane  Bcc: x@y.z");
    }
}
