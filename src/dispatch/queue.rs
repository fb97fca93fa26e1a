//! The delivery queue (SQS): one message per (event, endpoint), so that a slow or failing endpoint holds up only
//! its own messages. A failed attempt's message is hidden until its next attempt is due (visibility, at most
//! 12 h a time); one whose attempts are spent is moved to the dead-letter queue.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde::{Deserialize, Serialize};

/// SQS's longest visibility timeout: a longer wait is taken in steps.
pub const MAX_VISIBILITY_SECONDS: i64 = 43_200;

/// A message: deliver event `id` of tenant `t` to endpoint `e`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub t: String,
    pub e: String,
    pub id: String,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("SQS: {0}")]
pub struct QueueError(pub String);

fn failure<E: std::error::Error + 'static>(err: E) -> QueueError {
    QueueError(aws_sdk_sqs::error::DisplayErrorContext(&err).to_string())
}

#[derive(Clone)]
pub struct Queue {
    client: Client,
    url: String,
    dead_letters: String,
}

impl Queue {
    pub const URL_ENV: &'static str = "KEYSTEAD_WEBHOOK_QUEUE_URL";
    pub const DLQ_URL_ENV: &'static str = "KEYSTEAD_WEBHOOK_DLQ_URL";

    pub fn new(client: Client, url: String, dead_letters: String) -> Self {
        Self {
            client,
            url,
            dead_letters,
        }
    }

    /// From `KEYSTEAD_WEBHOOK_QUEUE_URL` and `KEYSTEAD_WEBHOOK_DLQ_URL`.
    pub fn from_env(client: Client) -> Result<Self, String> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("missing environment variable {name} (the stack's webhook queue; locally `eval \"$(infra/local/up)\"`)"))
        };
        Ok(Self::new(
            client,
            var(Self::URL_ENV)?,
            var(Self::DLQ_URL_ENV)?,
        ))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends jobs, ten to a request; every one or an error.
    pub async fn send(&self, jobs: &[Job]) -> Result<(), QueueError> {
        for chunk in jobs.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, job) in chunk.iter().enumerate() {
                let body = serde_json::to_string(job).map_err(|e| QueueError(e.to_string()))?;
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| QueueError(e.to_string()))?;
                entries.push(entry);
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(failure)?;
            if let Some(failed) = out.failed().first() {
                return Err(QueueError(format!(
                    "a message was refused: {}",
                    failed.message().unwrap_or(failed.code())
                )));
            }
        }
        Ok(())
    }

    /// Hides a received message for `seconds` (capped at SQS's 12 h): when it comes back, its next attempt is
    /// due, or it waits again.
    pub async fn postpone(&self, receipt: &str, seconds: i64) -> Result<(), QueueError> {
        let seconds = i32::try_from(seconds.clamp(0, MAX_VISIBILITY_SECONDS)).unwrap_or(0);
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(failure)?;
        Ok(())
    }

    /// Moves a job whose attempts are spent to the dead-letter queue.
    pub async fn dead_letter(&self, body: &str) -> Result<(), QueueError> {
        self.client
            .send_message()
            .queue_url(&self.dead_letters)
            .message_body(body)
            .send()
            .await
            .map_err(failure)?;
        Ok(())
    }

    pub async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(failure)?;
        Ok(())
    }
}
