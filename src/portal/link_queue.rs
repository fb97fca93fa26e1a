//! Sign-in requests waiting for their mail (issue 24). The portal answers a request for a sign-in link at once and
//! the same way for every address: it queues the request and nothing else. Whether the address bought anything,
//! the limits, and the mail come after the answer, in a worker (the API function's own SQS event in a deployment,
//! `keystead dev dispatch` locally), so no answer's time says who bought.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::PortalError;

/// One queued request: mail a link to `email` for tenant `t`, pointing at `base` (the API's URL when the request
/// came, which a worker that never served a request could not know).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRequest {
    pub t: String,
    pub email: String,
    pub base: String,
}

/// Where requests wait for the worker. (`Any`: local mode's worker finds the SQS queue behind the application's.)
#[async_trait]
pub trait LinkQueue: std::any::Any + Send + Sync {
    async fn push(&self, request: &LinkRequest) -> Result<(), PortalError>;
}

/// The stack's sign-in queue (`KEYSTEAD_SIGNIN_QUEUE_URL`).
#[derive(Clone)]
pub struct SqsLinkQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsLinkQueue {
    pub const URL_ENV: &'static str = "KEYSTEAD_SIGNIN_QUEUE_URL";

    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        Self { client, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }
}

/// An SQS failure as the portal's error, with the SDK's whole context.
pub(crate) fn failure<E: std::error::Error + 'static>(err: E) -> PortalError {
    PortalError::Queue(aws_sdk_sqs::error::DisplayErrorContext(&err).to_string())
}

#[async_trait]
impl LinkQueue for SqsLinkQueue {
    async fn push(&self, request: &LinkRequest) -> Result<(), PortalError> {
        let body = serde_json::to_string(request).map_err(|e| PortalError::Queue(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(failure)?;
        Ok(())
    }
}
