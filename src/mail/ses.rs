//! The SES adapter: `SendEmail` with a plain-text and an HTML body, from the tenant's sender identity.

use async_trait::async_trait;
use aws_sdk_ses::Client;
use aws_sdk_ses::error::DisplayErrorContext;
use aws_sdk_ses::types::{Body, Content, Destination, Message};

use super::{KeyEmail, MailError, Mailer};

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
            .map_err(|e| MailError(DisplayErrorContext(&e).to_string()))?;
        Ok(sent.message_id().to_owned())
    }
}
