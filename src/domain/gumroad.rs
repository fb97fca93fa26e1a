//! What keystead keeps of Gumroad's side of a sale, so that apps calling Gumroad's own license API can be answered
//! in Gumroad's shapes, and what a product does with Gumroad's own keys.

use serde::{Deserialize, Serialize};

use super::Variant;

/// Where a product's license keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// keystead mints its own key (`PREFIX-XXXXX-…`).
    #[default]
    Keystead,
    /// The sale ping's `license_key`, the key Gumroad already gave the buyer, becomes the license's key.
    Gumroad,
}

impl KeySource {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "keystead" => Some(Self::Keystead),
            "gumroad" => Some(Self::Gumroad),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keystead => "keystead",
            Self::Gumroad => "gumroad",
        }
    }
}

/// Whether a sale's key email is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailKey {
    Always,
    Never,
}

impl EmailKey {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "always" => Some(Self::Always),
            "never" => Some(Self::Never),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Never => "never",
        }
    }

    /// The default: keystead's keys are emailed; Gumroad's are already on the buyer's Gumroad receipt.
    pub fn default_for(source: KeySource) -> Self {
        match source {
            KeySource::Keystead => Self::Always,
            KeySource::Gumroad => Self::Never,
        }
    }
}

/// The sale as Gumroad described it in its ping (or its sales API), for Gumroad-shaped answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GumroadPurchase {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permalink: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_permalink: Option<String>,
    pub email: String,
    pub price: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_number: Option<String>,
    pub sale_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<Variant>,
    /// `custom_fields[<name>]=<value>`, in Gumroad's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_fields: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_gift_receiver_purchase: bool,
}
