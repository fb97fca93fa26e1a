//! Gumroad's API v2 resource subscriptions (`/v2/resource_subscriptions`): create, list and delete, with the
//! seller's access token from `GUMROAD_ACCESS_TOKEN`. The token is sent only to the configured API base and is
//! never printed.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Gumroad's own API, unless `GUMROAD_API_URL` says otherwise (a test server, a proxy).
pub const DEFAULT_API_URL: &str = "https://api.gumroad.com";
pub const TOKEN_ENV: &str = "GUMROAD_ACCESS_TOKEN";
pub const API_URL_ENV: &str = "GUMROAD_API_URL";

/// Every resource Gumroad can ping about, in Gumroad's order.
pub const RESOURCES: [&str; 8] = [
    "sale",
    "refund",
    "dispute",
    "dispute_won",
    "cancellation",
    "subscription_ended",
    "subscription_restarted",
    "subscription_updated",
];

/// A Gumroad access token; `Debug` does not print it.
pub struct AccessToken(String);

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub resource_name: String,
    pub post_url: String,
}

/// How a call failed, in Gumroad's terms; the CLI turns each into advice.
#[derive(Debug)]
pub enum ApiError {
    /// An HTTP error status (or `success: false`) with Gumroad's message.
    Refused { status: u16, message: String },
    /// No answer: DNS, connection, TLS or timeout.
    Unreachable(String),
    /// An answer that is not Gumroad's JSON.
    BadResponse(String),
}

#[derive(Debug)]
pub struct GumroadApi {
    agent: ureq::Agent,
    base: String,
    token: AccessToken,
}

/// Gumroad's answer. OAuth failures (401, 403) may come in the OAuth shape, `error` and `error_description`.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    resource_subscription: Option<Subscription>,
    #[serde(default)]
    resource_subscriptions: Option<Vec<Subscription>>,
    #[serde(default)]
    sales: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    next_page_key: Option<String>,
}

/// One page of `GET /v2/sales`, newest first, and the key of the next page (`None` on the last).
pub struct SalesPage {
    pub sales: Vec<serde_json::Value>,
    pub next_page_key: Option<String>,
}

/// Unreserved characters stay, everything else in a path segment is escaped.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl GumroadApi {
    /// The client from the environment; `Err` names the missing variable.
    pub fn from_env() -> Result<Self, String> {
        let token = std::env::var(TOKEN_ENV)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                format!(
                    "missing environment variable {TOKEN_ENV}: export your Gumroad access token (Gumroad → Settings → Advanced → Applications; it needs the view_sales scope)"
                )
            })?;
        let base = std::env::var(API_URL_ENV)
            .ok()
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        let valid_base = base.parse::<ureq::http::Uri>().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
        });
        if !valid_base {
            return Err(format!(
                "invalid {API_URL_ENV} '{base}': expected an http(s) URL such as {DEFAULT_API_URL}"
            ));
        }
        crate::gumroad::readback::check_api_base(&base)?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // The token travels in the request: never let a redirect carry it to another host.
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .user_agent(concat!("keystead/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            agent: ureq::Agent::new_with_config(config),
            base,
            token: AccessToken(token),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The access token itself, for sealing it (read-back); never for printing.
    pub fn token(&self) -> &str {
        &self.token.0
    }

    /// The token as a bearer header: never in a URL, which proxies and logs keep.
    fn bearer(&self) -> String {
        format!("Bearer {}", self.token.0)
    }

    fn endpoint(&self) -> String {
        format!("{}/v2/resource_subscriptions", self.base)
    }

    /// `PUT /v2/resource_subscriptions`: Gumroad will POST `resource_name` events to `post_url`.
    pub fn subscribe(&self, resource_name: &str, post_url: &str) -> Result<Subscription, ApiError> {
        let result = self
            .agent
            .put(&self.endpoint())
            .header("Authorization", &self.bearer())
            .send_form([("resource_name", resource_name), ("post_url", post_url)]);
        let envelope = self.read(result)?;
        envelope.resource_subscription.ok_or_else(|| {
            ApiError::BadResponse("the answer has no resource_subscription".to_owned())
        })
    }

    /// `GET /v2/resource_subscriptions?resource_name=…`.
    pub fn list(&self, resource_name: &str) -> Result<Vec<Subscription>, ApiError> {
        let result = self
            .agent
            .get(&self.endpoint())
            .header("Authorization", &self.bearer())
            .query("resource_name", resource_name)
            .call();
        let envelope = self.read(result)?;
        envelope.resource_subscriptions.ok_or_else(|| {
            ApiError::BadResponse("the answer has no resource_subscriptions".to_owned())
        })
    }

    /// `DELETE /v2/resource_subscriptions/:id`; Gumroad's message on success.
    pub fn unsubscribe(&self, id: &str) -> Result<String, ApiError> {
        let url = format!(
            "{}/{}",
            self.endpoint(),
            percent_encoding::utf8_percent_encode(id, SEGMENT)
        );
        let result = self
            .agent
            .delete(&url)
            .header("Authorization", &self.bearer())
            .call();
        let envelope = self.read(result)?;
        Ok(envelope.message.unwrap_or_default())
    }

    /// `GET /v2/sales?after=…&before=…&page_key=…`: one page of the seller's sales.
    pub fn sales(
        &self,
        after: Option<&str>,
        before: Option<&str>,
        page_key: Option<&str>,
    ) -> Result<SalesPage, ApiError> {
        let mut request = self
            .agent
            .get(format!("{}/v2/sales", self.base))
            .header("Authorization", &self.bearer());
        for (name, value) in [("after", after), ("before", before), ("page_key", page_key)] {
            if let Some(value) = value {
                request = request.query(name, value);
            }
        }
        let envelope = self.read(request.call())?;
        Ok(SalesPage {
            sales: envelope
                .sales
                .ok_or_else(|| ApiError::BadResponse("the answer has no sales".to_owned()))?,
            next_page_key: envelope.next_page_key.filter(|k| !k.is_empty()),
        })
    }

    /// Error text with the token blotted out, in case a transport error quotes the request.
    fn redact(&self, text: &str) -> String {
        text.replace(&self.token.0, "<redacted>")
    }

    fn read(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Envelope, ApiError> {
        let mut response = match result {
            Ok(response) => response,
            Err(err) => return Err(ApiError::Unreachable(self.redact(&err.to_string()))),
        };
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(4 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| ApiError::Unreachable(self.redact(&e.to_string())))?;
        let envelope: Option<Envelope> = serde_json::from_str(&body).ok();
        let message = envelope
            .as_ref()
            .and_then(|e| {
                e.message
                    .clone()
                    .or_else(|| e.error_description.clone())
                    .or_else(|| e.error.clone())
            })
            .map(|m| self.redact(&crate::gumroad::one_line(&m)))
            .unwrap_or_default();
        match envelope {
            _ if !(200..300).contains(&status) => Err(ApiError::Refused { status, message }),
            Some(envelope) if envelope.success => Ok(envelope),
            // Gumroad's API answers some refusals with 200 and `success: false` (an invalid post URL or
            // resource name, an unknown subscription): read them as the status its documentation gives.
            Some(_) => {
                let status = if message.to_ascii_lowercase().contains("not found") {
                    404
                } else {
                    400
                };
                Err(ApiError::Refused { status, message })
            }
            None => Err(ApiError::BadResponse(format!(
                "HTTP {status} with a body that is not Gumroad's JSON"
            ))),
        }
    }
}

impl ApiError {
    /// The same error with `secret` (a webhook token Gumroad quoted back) blotted out.
    pub fn without(self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let clean = |text: String| text.replace(secret, "***");
        match self {
            Self::Refused { status, message } => Self::Refused {
                status,
                message: clean(message),
            },
            Self::Unreachable(detail) => Self::Unreachable(clean(detail)),
            Self::BadResponse(detail) => Self::BadResponse(clean(detail)),
        }
    }
}
