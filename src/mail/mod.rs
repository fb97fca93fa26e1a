//! Mail: the key email a buyer receives (composed here, names and product names escaped as data) and the
//! `Mailer` port with its SES adapter.

mod compose;
mod ses;

use async_trait::async_trait;

pub use compose::{KeyEmail, compose_key_email, compose_key_email_with};
pub use ses::SesMailer;

#[derive(Debug, thiserror::Error)]
#[error("email not sent: {0}")]
pub struct MailError(pub String);

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
