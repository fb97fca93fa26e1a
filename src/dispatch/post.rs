//! The HTTP client deliveries go out through: HTTP/1.1 over rustls, connections only to checked addresses
//! (`target::CheckedResolver`), 15 s for the whole attempt, redirects never followed (a 3xx is a failure).

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, Request};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::target::{CheckedResolver, check_url};

/// An attempt's time limit: the spec recommends 15 to 30 s.
pub const TIMEOUT: Duration = Duration::from_secs(15);

type Https = hyper_rustls::HttpsConnector<HttpConnector<CheckedResolver>>;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The endpoint answered this status; `retry_after` in seconds when it said (429, 503).
    Status { code: u16, retry_after: Option<i64> },
    /// No answer: refused target, no connection, TLS failure, timeout. The reason, without the URL's secrets.
    Failed(String),
}

#[derive(Clone)]
pub struct Poster {
    client: Client<Https, Full<Bytes>>,
    allow_loopback: bool,
}

impl Poster {
    pub fn new(allow_loopback: bool) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut http = HttpConnector::new_with_resolver(CheckedResolver { allow_loopback });
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("TLS roots: {e}"))?;
        let https = if allow_loopback {
            builder.https_or_http()
        } else {
            builder.https_only()
        };
        let connector = https.enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            client,
            allow_loopback,
        })
    }

    /// POSTs `body` with `headers` to `url`, within `TIMEOUT`.
    pub async fn post(&self, url: &str, headers: &[(&str, String)], body: String) -> Answer {
        if let Err(refused) = check_url(url, self.allow_loopback) {
            return Answer::Failed(refused.to_string());
        }
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url)
            .header("content-type", "application/json")
            .header("user-agent", "keystead-webhooks/1");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = match request.body(Full::new(Bytes::from(body))) {
            Ok(request) => request,
            Err(e) => return Answer::Failed(format!("bad request: {e}")),
        };
        let attempt = async {
            let response = self.client.request(request).await?;
            let code = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|s| *s >= 0);
            // Read (and drop) a little of the body so the connection can be reused; never more than 64 KiB.
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                http_body_util::Limited::new(response.into_body(), 64 * 1024).collect(),
            )
            .await;
            Ok::<_, hyper_util::client::legacy::Error>(Answer::Status { code, retry_after })
        };
        match tokio::time::timeout(TIMEOUT, attempt).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => Answer::Failed(describe(&err)),
            Err(_) => Answer::Failed(format!("no answer within {} s", TIMEOUT.as_secs())),
        }
    }
}

/// The error's chain of causes, which name the refused address or the TLS problem (never the URL's query).
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
