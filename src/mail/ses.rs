//! The SES adapter: `SendEmail` with a plain-text and an HTML body, from the tenant's sender identity. A refusal is
//! sorted into an `EmailFailure` from SES's code and message; the message itself goes no further (in the sandbox
//! it names the unverified recipient, and a buyer's address never goes to the log).

use async_trait::async_trait;
use std::time::Duration;

use aws_sdk_ses::Client;
use aws_sdk_ses::config::retry::RetryConfig;
use aws_sdk_ses::config::timeout::TimeoutConfig;
use aws_sdk_ses::error::DisplayErrorContext;
use aws_sdk_ses::types::{Body, Content, Destination, Message};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::{KeyEmail, MailError, Mailer};
use crate::domain::{Email, EmailFailure};

/// What went wrong: a service error is its code (`MessageRejected`, `Throttling`, …) and its category; anything
/// else (a timeout, a refused connection) carries no address and keeps its full description.
fn describe<E>(err: &aws_sdk_ses::error::SdkError<E, HttpResponse>, sender: &Email) -> MailError
where
    E: aws_sdk_ses::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_ses::error::SdkError;
    let server_side = err
        .raw_response()
        .is_some_and(|raw| raw.status().is_server_error());
    match err.as_service_error() {
        Some(service) if !server_side => {
            let code = service.code().unwrap_or("unknown error");
            MailError::new(
                categorize_refusal(code, service.message().unwrap_or_default(), sender),
                format!("SES refused the email: {code}"),
            )
        }
        // Never sent: nothing can have been delivered.
        _ if matches!(err, SdkError::ConstructionFailure(_)) => {
            MailError::new(EmailFailure::Other, DisplayErrorContext(err).to_string())
        }
        // A timeout, a dropped connection, an answer lost or unreadable, a 5xx: SES may have accepted it.
        _ => MailError::unknown_outcome(DisplayErrorContext(err).to_string()),
    }
}

/// The identities an SES error message names: addresses and `identity/<address or domain>` resources.
/// SES's sandbox says `… failed the check in region US-EAST-1: a@example.com, b@example.org`; an unverified sender
/// is named the same way (moto: `Email address not verified a@example.com`); a missing sandbox permission names
/// `arn:aws:ses:…:identity/b@example.org`.
fn named_identities(message: &str) -> Vec<String> {
    message
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '`' | '\'' | '"' | '<' | '>'))
        .filter_map(|token| {
            let token = token.trim_end_matches(['.', ';', ':', ')']);
            match token.rsplit_once("identity/") {
                Some((_, identity)) if !identity.is_empty() => Some(identity),
                Some(_) => None,
                None => token.contains('@').then_some(token),
            }
        })
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Whether `identity` is what verifies `sender`: the address itself, its domain, or a parent of the domain.
fn verifies_sender(identity: &str, sender: &Email) -> bool {
    let address = sender.as_str().to_ascii_lowercase();
    let domain = sender.domain().to_ascii_lowercase();
    identity == address || identity == domain || domain.ends_with(&format!(".{identity}"))
}

/// Sorts an SES refusal (its error code and message) into the category a seller acts on.
pub fn categorize_refusal(code: &str, message: &str, sender: &Email) -> EmailFailure {
    let named = named_identities(message);
    let names_sender = named
        .iter()
        .any(|identity| verifies_sender(identity, sender));
    let names_other = named
        .iter()
        .any(|identity| !verifies_sender(identity, sender));
    match code {
        "MailFromDomainNotVerified" | "MailFromDomainNotVerifiedException" => {
            EmailFailure::SenderNotVerified
        }
        "MessageRejected" if message.to_ascii_lowercase().contains("not verified") => {
            if names_sender {
                EmailFailure::SenderNotVerified
            } else if names_other {
                EmailFailure::RecipientNotVerified
            } else {
                EmailFailure::Other
            }
        }
        // In the sandbox SES also checks the caller's permission against the recipient's identity.
        "AccessDenied" | "AccessDeniedException" if names_other => {
            EmailFailure::RecipientNotVerified
        }
        _ => EmailFailure::Other,
    }
}

#[derive(Clone)]
pub struct SesMailer {
    client: Client,
    /// The stack's SES configuration set (`KEYSTEAD_SES_CONFIGURATION_SET`): bounces and complaints put the
    /// address on its suppression list, so no later mail goes to it.
    configuration_set: Option<String>,
}

/// The environment variable naming the configuration set every mail is sent with (the template sets it).
pub const CONFIGURATION_SET_ENV: &str = "KEYSTEAD_SES_CONFIGURATION_SET";

/// One `SendEmail` attempt may take this long (more, when the shared configuration allows more).
pub const SEND_TIMEOUT: Duration = Duration::from_millis(1_500);

impl SesMailer {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            configuration_set: std::env::var(CONFIGURATION_SET_ENV)
                .ok()
                .filter(|name| !name.trim().is_empty()),
        }
    }

    /// The same mailer sending with the configuration set `name` (the environment's otherwise).
    pub fn with_configuration_set(mut self, name: &str) -> Self {
        self.configuration_set = Some(name.to_owned());
        self
    }

    /// The mailer over a client built from `config`, with one attempt per send: the SDK never retries
    /// `SendEmail`, whose retry after a lost answer is a second email (`SendEmail` has no idempotency token).
    pub fn from_config(config: aws_sdk_ses::config::Builder) -> Self {
        Self::with_timeout(config, SEND_TIMEOUT)
    }

    /// `from_config`, with at least `least` for the one attempt (the CLI has no deadline: a seller at a terminal
    /// waits rather than have a send's outcome unknown).
    pub fn with_timeout(config: aws_sdk_ses::config::Builder, least: Duration) -> Self {
        let config = config.build();
        let attempt = config
            .timeout_config()
            .and_then(|t| t.operation_attempt_timeout())
            .map_or(least, |given| given.max(least));
        let timeouts = config
            .timeout_config()
            .cloned()
            .unwrap_or_else(|| TimeoutConfig::builder().build())
            .to_builder()
            .operation_attempt_timeout(attempt)
            .operation_timeout(attempt)
            .build();
        let config = config
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts)
            .build();
        Self::new(Client::from_conf(config))
    }
}

fn content(data: &str) -> Result<Content, MailError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| MailError::new(EmailFailure::Other, e.to_string()))
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
            .set_configuration_set_name(self.configuration_set.clone())
            .send()
            .await
            .map_err(|e| describe(&e, &email.from))?;
        Ok(sent.message_id().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(raw: &str) -> Email {
        Email::parse(raw).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn refusals_are_sorted_by_what_the_seller_must_fix() {
        let from = sender("licenses@mail.acme.dev");
        let cases = [
            // SES itself, sandbox: only the recipient failed the check.
            (
                "MessageRejected",
                "Email address is not verified. The following identities failed the check in region US-EAST-1: jane@example.com",
                EmailFailure::RecipientNotVerified,
            ),
            // SES itself: the sender (and, in the sandbox, the recipient too) failed the check.
            (
                "MessageRejected",
                "Email address is not verified. The following identities failed the check in region US-EAST-1: licenses@mail.acme.dev, jane@example.com",
                EmailFailure::SenderNotVerified,
            ),
            (
                "MessageRejected",
                "Email address is not verified. The following identities failed the check in region EU-WEST-1: LICENSES@mail.acme.dev",
                EmailFailure::SenderNotVerified,
            ),
            // moto's wording.
            (
                "MessageRejected",
                "Email address not verified licenses@mail.acme.dev",
                EmailFailure::SenderNotVerified,
            ),
            (
                "MailFromDomainNotVerified",
                "The MAIL FROM domain is not verified",
                EmailFailure::SenderNotVerified,
            ),
            // The sandbox's permission check against the recipient's identity.
            (
                "AccessDenied",
                "User `arn:aws:sts::123456789012:assumed-role/keystead-fn/keystead' is not authorized to perform `ses:SendEmail' on resource `arn:aws:ses:us-east-1:123456789012:identity/jane@example.com'",
                EmailFailure::RecipientNotVerified,
            ),
            // The role lacks the sender's identity: an IAM problem, not a verification one.
            (
                "AccessDenied",
                "User `arn:aws:sts::123456789012:assumed-role/keystead-fn/keystead' is not authorized to perform `ses:SendEmail' on resource `arn:aws:ses:us-east-1:123456789012:identity/acme.dev'",
                EmailFailure::Other,
            ),
            (
                "Throttling",
                "Maximum sending rate exceeded.",
                EmailFailure::Other,
            ),
            (
                "MessageRejected",
                "Email address is not verified.",
                EmailFailure::Other,
            ),
            ("MessageRejected", "Illegal address", EmailFailure::Other),
        ];
        for (code, message, expected) in cases {
            assert_eq!(
                categorize_refusal(code, message, &from),
                expected,
                "{code}: {message}"
            );
        }
    }

    #[test]
    fn the_sender_is_verified_by_its_address_its_domain_or_a_parent_domain() {
        let from = sender("Licenses@Mail.Acme.dev");
        for identity in ["licenses@mail.acme.dev", "mail.acme.dev", "acme.dev"] {
            assert!(verifies_sender(identity, &from), "{identity}");
        }
        for identity in [
            "other@mail.acme.dev",
            "cme.dev",
            "evil-acme.dev",
            "jane@example.com",
        ] {
            assert!(!verifies_sender(identity, &from), "{identity}");
        }
    }
}
