//! The key email: a subject naming the product, and plain-text and HTML bodies with the key, the product,
//! the activation limit and the expiry.

use super::DownloadLink;
use crate::domain::{Email, License};

#[derive(Clone)]
pub struct KeyEmail {
    pub from: Email,
    pub to: Email,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for KeyEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEmail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

pub fn compose_key_email(from: &Email, license: &License) -> KeyEmail {
    compose_key_email_with(from, license, None)
}

/// The key email, with the product's download link and checksum when there is one.
pub fn compose_key_email_with(
    from: &Email,
    license: &License,
    download: Option<&DownloadLink>,
) -> KeyEmail {
    let product = strip_line_breaks(&license.product_name);
    let greeting_name = license.buyer_name.as_deref().and_then(greeting_name);
    let expiry = license
        .expires_at
        .as_deref()
        .map_or_else(|| "never".to_owned(), |at| at.chars().take(10).collect());
    let key = license.key.expose();
    let limit = license.activation_limit;

    let greeting = match &greeting_name {
        Some(name) => format!("Hi {name},"),
        None => "Hi,".to_owned(),
    };
    let mut text = format!(
        "{greeting}\n\nThank you for buying {product}. Your license key is:\n\n    {key}\n\n\
         Product: {product}\nActivations allowed: {limit}\nExpires: {expiry}\n\n\
         Keep this email: you will need the key to activate the software.\n"
    );
    if let Some(download) = download {
        text.push_str(&format!(
            "\nDownload {name} ({size}): {url}\nSHA-256: {sha}\n\
             The link works for 30 days; afterwards, sign in to the license portal for a fresh one.\n",
            name = download.name,
            size = download.size,
            url = download.url,
            sha = download.sha256,
        ));
    }
    // maud escapes every value: names and product names are data, never markup.
    let html = maud::html! {
        (maud::DOCTYPE)
        html {
            body style="font-family:sans-serif" {
                p { (greeting) }
                p { "Thank you for buying " strong { (product) } ". Your license key is:" }
                p style="font-family:monospace;font-size:18px" { (key) }
                table {
                    tr { td { "Product" } td { (product) } }
                    tr { td { "Activations allowed" } td { (limit) } }
                    tr { td { "Expires" } td { (expiry) } }
                }
                p { "Keep this email: you will need the key to activate the software." }
                @if let Some(download) = download {
                    p {
                        a href=(download.url) { "Download " (download.name) } " (" (download.size) ")"
                        br;
                        "SHA-256: " code { (download.sha256) }
                    }
                    p { "The link works for 30 days; afterwards, sign in to the license portal for a fresh one." }
                }
            }
        }
    }
    .into_string();
    KeyEmail {
        from: from.clone(),
        to: license.buyer_email.clone(),
        subject: format!("Your license key for {product}"),
        text,
        html,
    }
}

/// The buyer's name as the greeting uses it, or none. The buyer typed it at checkout and the email goes out from
/// the seller's domain: a "name" that carries a link or an address (`Claim your refund at evil.example`) would be
/// the seller's mail phishing for someone else, so such a name is dropped (the email says "Hi,"), as is one too
/// long to be a name.
fn greeting_name(raw: &str) -> Option<String> {
    let name = strip_line_breaks(raw).trim().to_owned();
    let looks_like_a_domain = |word: &str| {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric());
        word.split('.').filter(|part| !part.is_empty()).count() >= 2
            && word
                .rsplit('.')
                .next()
                .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(char::is_alphabetic))
    };
    let lower = name.to_lowercase();
    let linky = ["://", "www.", "@", "http"]
        .iter()
        .any(|sign| lower.contains(sign))
        || name.split_whitespace().any(looks_like_a_domain);
    (!name.is_empty() && name.chars().count() <= 80 && !linky).then_some(name)
}

fn strip_line_breaks(raw: &str) -> String {
    raw.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;

    fn license(product_name: &str, buyer_name: Option<&str>) -> License {
        License {
            license_id: crate::domain::LicenseId::from_stored("lic_1"),
            tenant_id: TenantId::parse("acme").unwrap(),
            product_id: ProductId::parse("app").unwrap(),
            product_name: product_name.into(),
            key: LicenseKey::from_string("ACME-AAAAA-BBBBB-CCCCC-DDDDD-EEEEE-FFFFF".into()),
            key_hash: crate::domain::KeyHash::from_stored(""),
            key_display: None,
            status: LicenseStatus::Active,
            activation_limit: 3,
            activations: 0,
            expires_at: Some("2027-05-04T19:38:56Z".into()),
            buyer_email: Email::parse("jane@example.com").unwrap(),
            buyer_name: buyer_name.map(Into::into),
            sale_id: SaleId::parse("s1").unwrap(),
            subscription_id: None,
            source: "gumroad".into(),
            created_at: String::new(),
            email_status: EmailStatus::Pending,
            email_message_id: None,
            email_failure: None,
            email_maybe_sent: false,
            facts: Vec::new(),
            v: 1,
            email_claim_until: None,
            quantity: 1,
            gumroad_permalink: None,
            gumroad_product_id: None,
            pending_change: None,
            gumroad: None,
            uses: 0,
            refunded: false,
            chargebacked: false,
            disabled: false,
            subscription_cancelled_at: None,
            subscription_ended_at: None,
            subscription_failed_at: None,
        }
    }

    #[test]
    fn both_bodies_carry_the_key_limit_and_expiry() {
        let from = Email::parse("sales@acme.dev").unwrap_or_else(|e| panic!("{e}"));
        let email = compose_key_email(&from, &license("MyApp Pro", Some("Jane")));
        assert_eq!(email.subject, "Your license key for MyApp Pro");
        for body in [&email.text, &email.html] {
            assert!(body.contains("ACME-AAAAA-BBBBB-CCCCC-DDDDD-EEEEE-FFFFF"));
            assert!(body.contains("MyApp Pro"));
            assert!(body.contains("2027-05-04"));
            assert!(body.contains('3'));
        }
    }

    #[test]
    fn names_are_data_not_markup_or_headers() {
        let from = Email::parse("sales@acme.dev").unwrap_or_else(|e| panic!("{e}"));
        let email = compose_key_email(
            &from,
            &license("Evil\r\nBcc: all@example.com <script>", Some("<b>Jane</b>")),
        );
        assert!(!email.subject.contains('\n') && !email.subject.contains('\r'));
        assert!(!email.html.contains("<script>") && !email.html.contains("<b>Jane"));
        assert!(email.html.contains("&lt;script&gt;"));
    }

    #[test]
    fn a_name_that_carries_a_link_or_an_address_is_not_greeted() {
        let from = Email::parse("sales@acme.dev").unwrap_or_else(|e| panic!("{e}"));
        for linky in [
            "Claim your refund at evil.example",
            "https://evil.example/x",
            "Jane (write to jane@evil.example)",
            "www dot evil www.evil.com",
            "Visit EVIL.COM now",
            &"A".repeat(81),
        ] {
            let email = compose_key_email(&from, &license("MyApp", Some(linky)));
            assert!(email.text.starts_with("Hi,\n"), "{linky}: {}", email.text);
            assert!(!email.html.contains("evil"), "{linky}");
        }
        for name in [
            "Jane Doe",
            "J. R. R. Tolkien",
            "Zoë O'Brien-Smith",
            "李小龙",
        ] {
            let email = compose_key_email(&from, &license("MyApp", Some(name)));
            assert!(email.text.starts_with(&format!("Hi {name},")), "{name}");
        }
    }

    #[test]
    fn a_download_link_and_its_checksum_are_in_both_bodies() {
        let from = Email::parse("sales@acme.dev").unwrap_or_else(|e| panic!("{e}"));
        let link = DownloadLink {
            url: "https://api.example/portal/acme/download/abc.def".into(),
            name: "App.dmg".into(),
            size: "12.0 MB".into(),
            sha256: "ab".repeat(32),
        };
        let email = compose_key_email_with(&from, &license("MyApp", None), Some(&link));
        for body in [&email.text, &email.html] {
            assert!(
                body.contains(&link.url) && body.contains(&link.sha256),
                "{body}"
            );
        }
    }
}
