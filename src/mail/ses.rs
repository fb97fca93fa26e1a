//! The SES adapter: `SendEmail` with a plain-text and an HTML body, from the tenant's sender identity.

use async_trait::async_trait;
use aws_sdk_ses::Client;
use aws_sdk_ses::error::DisplayErrorContext;
use aws_sdk_ses::types::{Body, Content, Destination, Message};

use super::{KeyEmail, MailError, Mailer};

/// What went wrong, without SES's own message: in the sandbox that message names the unverified recipient, and a
/// buyer's address never goes to the log. A service error is its code (`MessageRejected`, `Throttling`, …);
/// anything else (a timeout, a refused connection) carries no address and keeps its full description.
fn describe<E, R>(err: &aws_sdk_ses::error::SdkError<E, R>) -> String
where
    E: aws_sdk_ses::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.as_service_error() {
        Some(service) => format!(
            "SES refused the email: {}",
            service.code().unwrap_or("unknown error")
        ),
        None => DisplayErrorContext(err).to_string(),
    }
}

#[derive(Clone)]
pub struct SesMailer {
    client: Client,
}

impl SesMailer {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn content(data: &str) -> Result<Content, MailError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| MailError(e.to_string()))
}

#[async_trait]
impl Mailer for SesMailer {
    #[tracing::instrument(skip_all, fields(to = %email.to.masked()))]
    async fn send(&self, email: &KeyEmail) -> Result<String, MailError> {
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .text(content(&email.text)?)
                    .html(content(&email.html)?)
                    .build(),
            )
            .build();
        let sent = self
            .client
            .send_email()
            .source(email.from.as_str())
            .destination(
                Destination::builder()
                    .to_addresses(email.to.as_str())
                    .build(),
            )
            .message(message)
            .send()
            .await
            .map_err(|e| MailError(describe(&e)))?;
        Ok(sent.message_id().to_owned())
    }
}
