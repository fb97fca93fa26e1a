//! Mail: the key email a buyer receives (composed here, names and product names escaped as data) and the
//! `Mailer` port with its SES adapter.

mod compose;
mod ses;

use async_trait::async_trait;

pub use compose::{KeyEmail, compose_key_email};
pub use ses::SesMailer;

#[derive(Debug, thiserror::Error)]
#[error("email not sent: {0}")]
pub struct MailError(pub String);

/// Sends one composed email and returns the provider's message id.
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &KeyEmail) -> Result<String, MailError>;
}
