//! Outbound webhooks (issue 25): the seller's endpoints, each delivery's record, the retry schedule and the
//! Standard Webhooks signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::audit::EventType;
use super::ids::TenantId;

/// Where a seller's system hears about changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `ep_` and 20 random characters.
    pub endpoint_id: String,
    pub tenant_id: TenantId,
    pub url: String,
    /// The event types it receives; empty: every type of the catalogue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The signing secret as KMS's ciphertext of a data key (base64): the secret is `whsec_` + base64 of the key.
    pub secret_sealed: String,
    /// The secret before the last rotation, still signing until `previous_until` (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret_sealed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_until: Option<i64>,
    pub status: EndpointStatus,
    /// Why it was disabled (a 410 answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Since when deliveries to it have been failing (RFC 3339); cleared by a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    Enabled,
    Disabled,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
        }
    }
}

impl Endpoint {
    /// Whether it receives events of `kind`: `ping.test` only when addressed to it.
    pub fn wants(&self, kind: EventType, addressed_to: Option<&str>) -> bool {
        if self.status != EndpointStatus::Enabled {
            return false;
        }
        match addressed_to {
            Some(endpoint) => endpoint == self.endpoint_id,
            None => {
                kind.delivered()
                    && kind != EventType::PingTest
                    && (self.events.is_empty() || self.events.iter().any(|e| e == kind.as_str()))
            }
        }
    }

    /// The KMS encryption context of its secret: the tenant and the endpoint (as the signing keys' `kid`).
    pub fn secret_context(&self) -> [(&'static str, String); 2] {
        secret_context(&self.tenant_id, &self.endpoint_id)
    }
}

pub fn secret_context(tenant_id: &TenantId, endpoint_id: &str) -> [(&'static str, String); 2] {
    [
        ("tenant_id", tenant_id.as_str().to_owned()),
        ("kid", format!("webhook/{endpoint_id}")),
    ]
}

/// Parses `--events`: names of the catalogue, comma-separated; a clear error names the first unknown one.
pub fn parse_event_types(list: &str) -> Result<Vec<String>, String> {
    let mut types = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match EventType::parse(name) {
            Some(kind) if EventType::catalogue().any(|k| k == kind) => {
                if !types.iter().any(|t| t == name) {
                    types.push(name.to_owned());
                }
            }
            _ => {
                let known: Vec<&str> = EventType::catalogue().map(EventType::as_str).collect();
                return Err(format!(
                    "unknown event type '{name}'; the catalogue is: {}",
                    known.join(", ")
                ));
            }
        }
    }
    Ok(types)
}

/// One event's delivery to one endpoint, in the events table (`DELIVERY#<endpoint>#<event>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix seconds before which the next attempt is not made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    /// The last answer's status code; `None` when none came (a timeout, a refused connection or target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

impl Delivery {
    /// A delivery not attempted yet, recorded at `now` (RFC 3339).
    pub fn pending(endpoint_id: &str, event_id: &str, event_type: &str, now: String) -> Self {
        Self {
            endpoint_id: endpoint_id.to_owned(),
            event_id: event_id.to_owned(),
            event_type: event_type.to_owned(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: None,
            last_status: None,
            last_error: None,
            updated_at: now,
            delivered_at: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; more attempts will be made.
    Pending,
    Delivered,
    /// Every attempt failed: the job is in the dead-letter queue (`webhook replay` sends it again).
    Failed,
    /// The endpoint was disabled or removed before it could be delivered.
    Dropped,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
        }
    }
}

/// Seconds to wait after attempt `n` (1-based) failed: the spec's example schedule (5 s, 5 min, 30 min, 2 h, 5 h,
/// 10 h, 14 h, 20 h, 24 h: ten attempts over three days and a bit). `None`: that was the last attempt.
pub fn retry_delay(attempts: u32) -> Option<i64> {
    const SCHEDULE: [i64; 9] = [
        5,
        5 * 60,
        30 * 60,
        2 * 3600,
        5 * 3600,
        10 * 3600,
        14 * 3600,
        20 * 3600,
        24 * 3600,
    ];
    let index = usize::try_from(attempts).ok()?.checked_sub(1)?;
    SCHEDULE.get(index).copied()
}

/// Attempts in all: the first and one per step of the schedule.
pub const MAX_ATTEMPTS: u32 = 10;

/// A webhook secret as the seller sees it.
pub fn secret_text(key: &[u8]) -> String {
    format!("whsec_{}", STANDARD.encode(key))
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, the Standard Webhooks signature.
/// (HMAC takes keys of every length: `None` never happens in practice.)
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: one signature per key, space-separated (the spec's rotation).
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .filter_map(|key| sign(key, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_specs_example() {
        // standard-webhooks spec and libraries' test vector.
        let key = STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_or_default();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
    }

    #[test]
    fn the_schedule_spans_three_days_in_ten_attempts() {
        let total: i64 = (1..MAX_ATTEMPTS).filter_map(retry_delay).sum();
        assert_eq!(total, 75 * 3600 + 35 * 60 + 5);
        assert_eq!(retry_delay(MAX_ATTEMPTS), None);
        assert_eq!(retry_delay(0), None);
    }

    #[test]
    fn event_lists_name_only_the_catalogue() {
        assert_eq!(
            parse_event_types("license.created, sale.refunded,license.created"),
            Ok(vec![
                "license.created".to_owned(),
                "sale.refunded".to_owned()
            ])
        );
        let err = parse_event_types("license.exploded").unwrap_err();
        assert!(
            err.contains("license.exploded") && err.contains("sale.recorded"),
            "{err}"
        );
        assert!(parse_event_types("seller.command").is_err());
        assert!(parse_event_types("ping.test").is_err());
    }
}
