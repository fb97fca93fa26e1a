//! The key email: a subject naming the product, and plain-text and HTML bodies with the key, the product,
//! the activation limit and the expiry.

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
    let product = strip_line_breaks(&license.product_name);
    let greeting_name = license.buyer_name.as_deref().map(strip_line_breaks);
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
    let text = format!(
        "{greeting}\n\nThank you for buying {product}. Your license key is:\n\n    {key}\n\n\
         Product: {product}\nActivations allowed: {limit}\nExpires: {expiry}\n\n\
         Keep this email: you will need the key to activate the software.\n"
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\">\
         <p>{greeting}</p><p>Thank you for buying <strong>{product_h}</strong>. Your license key is:</p>\
         <p style=\"font-family:monospace;font-size:18px\">{key_h}</p>\
         <table><tr><td>Product</td><td>{product_h}</td></tr>\
         <tr><td>Activations allowed</td><td>{limit}</td></tr>\
         <tr><td>Expires</td><td>{expiry_h}</td></tr></table>\
         <p>Keep this email: you will need the key to activate the software.</p></body></html>",
        greeting = escape_html(&greeting),
        product_h = escape_html(&product),
        key_h = escape_html(key),
        expiry_h = escape_html(&expiry),
    );
    KeyEmail {
        from: from.clone(),
        to: license.buyer_email.clone(),
        subject: format!("Your license key for {product}"),
        text,
        html,
    }
}

fn strip_line_breaks(raw: &str) -> String {
    raw.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

pub fn escape_html(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;

    fn license(product_name: &str, buyer_name: Option<&str>) -> License {
        License {
            license_id: "lic_1".into(),
            tenant_id: TenantId::parse("acme").unwrap(),
            product_id: ProductId::parse("app").unwrap(),
            product_name: product_name.into(),
            key: LicenseKey::from_string("ACME-AAAAA-BBBBB-CCCCC-DDDDD-EEEEE-FFFFF".into()),
            key_hash: String::new(),
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
            email_claim_until: None,
            ttl: None,
            quantity: 1,
            gumroad_permalink: None,
            gumroad_product_id: None,
            pending_change: None,
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
}
