//! Mail: the key email a buyer receives (composed here, names and product names escaped as data) and the
//! `Mailer` port with its SES adapter. A refused email carries why, in one of a few categories a seller can act on.

mod compose;
mod ses;

use async_trait::async_trait;

use crate::domain::EmailFailure;

pub use compose::{KeyEmail, compose_key_email, compose_key_email_with};
pub use ses::{SesMailer, categorize_refusal};

/// A key email that was not sent. `detail` never carries SES's own message, which can name the recipient.
#[derive(Debug, Clone, thiserror::Error)]
#[error("email not sent ({}): {detail}", reason.as_str())]
pub struct MailError {
    pub reason: EmailFailure,
    pub detail: String,
    /// The send may have been delivered: the request left, and no refusal came back (a timeout, a lost or
    /// garbled answer, a 5xx). A later send of the same key is then possibly a second email, and is logged so.
    pub maybe_delivered: bool,
}

impl MailError {
    pub fn new(reason: EmailFailure, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            maybe_delivered: false,
        }
    }

    /// A failure whose send may still have been delivered.
    pub fn unknown_outcome(detail: impl Into<String>) -> Self {
        Self {
            maybe_delivered: true,
            ..Self::new(EmailFailure::Other, detail)
        }
    }
}

/// Sends one composed email and returns the provider's message id.
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, email: &KeyEmail) -> Result<String, MailError>;

    /// Where key emails get their download links; `None` (the default) sends them without.
    fn download_links(&self) -> Option<&dyn DownloadLinks> {
        None
    }
}

/// A product download as a key email shows it: a signed, expiring link and what to check the file against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadLink {
    pub url: String,
    pub name: String,
    pub size: String,
    pub sha256: String,
}

/// Makes the download link for a license's key email (the portal, when the process knows where it is).
#[async_trait]
pub trait DownloadLinks: Send + Sync {
    async fn for_license(
        &self,
        tenant: &crate::domain::Tenant,
        license: &crate::domain::License,
    ) -> Option<DownloadLink>;
}
