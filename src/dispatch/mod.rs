//! The webhook dispatcher (issue 25), the code of `keystead-dispatch` and of `keystead dev dispatch`:
//!
//! 1. **Fan out**: the events table's stream names each new `AUDIT#` item; the event goes to SQS once per endpoint
//!    of its tenant that wants it.
//! 2. **Deliver**: each SQS message is one attempt at one (event, endpoint). The delivery's record
//!    (`DELIVERY#<endpoint>#<event>`) says how many attempts were made and when the next is due, so a message
//!    received again (SQS's at-least-once, a stream replayed after a crash, `webhook replay`) never sends what was
//!    delivered already, and a failed attempt hides its message until the retry schedule says.
//!
//! Every attempt is signed by the spec (Standard Webhooks v1: `webhook-id` is the event id on every attempt,
//! `webhook-timestamp` the attempt's time, `webhook-signature` one `v1,` HMAC-SHA256 per live secret).

#[cfg(feature = "cli")]
pub mod local;
pub mod post;
pub mod queue;
pub mod run;
pub mod target;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use time::OffsetDateTime;

use crate::domain::audit::AuditEvent;
use crate::domain::webhook::{
    Delivery, DeliveryStatus, Endpoint, EndpointStatus, MAX_ATTEMPTS, retry_delay, signature_header,
};
use crate::domain::{TenantId, rfc3339};
use crate::signing::KeyVault;
use crate::storage::{DynamoStore, StoreError};
use post::{Answer, Poster};
use queue::{Job, Queue, QueueError};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("opening a webhook secret: {0}")]
    Secret(String),
    #[error("the HTTP client: {0}")]
    Client(String),
}

/// What became of one delivery message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered, or nothing more to do (the endpoint is gone or disabled, or it was delivered before): delete it.
    Done,
    /// Try again in this many seconds: hide the message that long.
    RetryIn(i64),
    /// Every attempt failed: move it to the dead-letter queue.
    DeadLetter,
}

pub struct Dispatcher {
    pub store: DynamoStore,
    pub vault: Arc<dyn KeyVault>,
    pub queue: Queue,
    /// Built at the first attempt (loading the system's TLS roots is a cold start's cost, which a fan-out, that
    /// delivers nothing, does not pay).
    poster: std::sync::OnceLock<Result<Poster, String>>,
    allow_loopback: bool,
    /// Seconds to wait after a failed attempt (`retry_delay`, the spec's schedule, unless a test says otherwise).
    retry_delays: fn(u32) -> Option<i64>,
    /// Opened secrets, by their sealed form: one KMS call per secret and process.
    secrets: Mutex<HashMap<String, Vec<u8>>>,
}

impl Dispatcher {
    /// `allow_loopback`: local mode (`target::loopback_allowed_by_env`).
    pub fn new(
        store: DynamoStore,
        vault: Arc<dyn KeyVault>,
        queue: Queue,
        allow_loopback: bool,
    ) -> Self {
        Self {
            store,
            vault,
            queue,
            poster: std::sync::OnceLock::new(),
            allow_loopback,
            retry_delays: retry_delay,
            secrets: Mutex::new(HashMap::new()),
        }
    }

    /// The same dispatcher with another retry schedule (the tests' seconds instead of the spec's hours).
    pub fn with_retry_delays(mut self, delays: fn(u32) -> Option<i64>) -> Self {
        self.retry_delays = delays;
        self
    }

    /// Fans the events named by `keys` (tenant id, sort key) out to their endpoints. Keys that are not events
    /// are skipped. An error means: retry from the first key.
    pub async fn fan_out(&self, keys: &[(String, String)]) -> Result<usize, DispatchError> {
        let mut endpoints: HashMap<String, Vec<Endpoint>> = HashMap::new();
        let mut jobs = Vec::new();
        for (tenant, sk) in keys {
            let Some(event_id) = sk.strip_prefix("AUDIT#") else {
                continue;
            };
            let Ok(tenant_id) = TenantId::parse(tenant) else {
                continue;
            };
            let Some(event) = self.store.audit_event(&tenant_id, event_id).await? else {
                continue;
            };
            if !event.kind.delivered() {
                continue;
            }
            if !endpoints.contains_key(tenant) {
                let found = self.store.endpoints(&tenant_id).await?;
                endpoints.insert(tenant.clone(), found);
            }
            let wanted = endpoints
                .get(tenant)
                .into_iter()
                .flatten()
                .filter(|e| e.wants(event.kind, event.endpoint_id.as_deref()));
            jobs.extend(wanted.map(|endpoint| Job {
                t: tenant.clone(),
                e: endpoint.endpoint_id.clone(),
                id: event.id.clone(),
            }));
        }
        self.queue.send(&jobs).await?;
        Ok(jobs.len())
    }

    /// One attempt at one job, recorded.
    pub async fn deliver(&self, job: &Job) -> Result<Outcome, DispatchError> {
        let Ok(tenant_id) = TenantId::parse(&job.t) else {
            return Ok(Outcome::Done);
        };
        let now = OffsetDateTime::now_utc();
        let now_unix = now.unix_timestamp();
        let Some(event) = self.store.audit_event(&tenant_id, &job.id).await? else {
            return Ok(Outcome::Done);
        };
        let mut delivery = match self.store.delivery(&tenant_id, &job.e, &job.id).await? {
            Some(delivery) => delivery,
            None => Delivery::pending(&job.e, &job.id, event.kind.as_str(), rfc3339(now)),
        };
        match delivery.status {
            DeliveryStatus::Pending => {}
            // Delivered, given up on (its job is in the dead-letter queue already) or dropped: a duplicate.
            DeliveryStatus::Delivered | DeliveryStatus::Failed | DeliveryStatus::Dropped => {
                return Ok(Outcome::Done);
            }
        }
        if let Some(due) = delivery.next_attempt_at
            && due > now_unix
        {
            return Ok(Outcome::RetryIn(due - now_unix));
        }
        let endpoint = match self.store.endpoint(&tenant_id, &job.e).await? {
            Some(endpoint) if endpoint.status == EndpointStatus::Enabled => endpoint,
            _ => {
                delivery.status = DeliveryStatus::Dropped;
                delivery.last_error = Some("the endpoint was removed or disabled".to_owned());
                delivery.updated_at = rfc3339(now);
                self.store
                    .save_delivery(&tenant_id, &delivery, now_unix)
                    .await?;
                return Ok(Outcome::Done);
            }
        };
        let answer = self.attempt(&endpoint, &event, now_unix).await?;
        delivery.attempts += 1;
        delivery.updated_at = rfc3339(now);
        let (code, retry_after) = match &answer {
            Answer::Status { code, retry_after } => (Some(*code), *retry_after),
            Answer::Failed(_) => (None, None),
        };
        delivery.last_status = code;
        if code.is_some_and(|c| (200..300).contains(&c)) {
            delivery.status = DeliveryStatus::Delivered;
            delivery.delivered_at = Some(rfc3339(now));
            delivery.next_attempt_at = None;
            delivery.last_error = None;
            self.store
                .save_delivery(&tenant_id, &delivery, now_unix)
                .await?;
            self.store.endpoint_recovered(&endpoint).await?;
            return Ok(Outcome::Done);
        }
        let error = match &answer {
            Answer::Status { code, .. } => format!("answered {code}"),
            Answer::Failed(reason) => reason.clone(),
        };
        tracing::info!(
            tenant = %tenant_id,
            endpoint = %endpoint.endpoint_id,
            event = %event.id,
            attempt = delivery.attempts,
            error = %error,
            "webhook attempt failed"
        );
        delivery.last_error = Some(error.clone());
        // 410 Gone: the endpoint asked not to be called again (the spec): it is disabled.
        let gone = code == Some(410);
        let outcome = match (self.retry_delays)(delivery.attempts) {
            _ if gone => {
                delivery.status = DeliveryStatus::Dropped;
                delivery.next_attempt_at = None;
                Outcome::Done
            }
            Some(delay) if delivery.attempts < MAX_ATTEMPTS => {
                // A Retry-After longer than the schedule's step is honoured, up to a day.
                let delay = delay.max(retry_after.unwrap_or(0).min(24 * 3600));
                delivery.next_attempt_at = Some(now_unix + delay);
                Outcome::RetryIn(delay)
            }
            _ => {
                delivery.status = DeliveryStatus::Failed;
                delivery.next_attempt_at = None;
                Outcome::DeadLetter
            }
        };
        self.store
            .save_delivery(&tenant_id, &delivery, now_unix)
            .await?;
        self.store
            .endpoint_failed(&endpoint, &error, &rfc3339(now), gone)
            .await?;
        Ok(outcome)
    }

    /// Sends the event to the endpoint, signed with each of its live secrets.
    async fn attempt(
        &self,
        endpoint: &Endpoint,
        event: &AuditEvent,
        now_unix: i64,
    ) -> Result<Answer, DispatchError> {
        let mut keys = vec![self.secret(endpoint, &endpoint.secret_sealed).await?];
        if let (Some(previous), Some(until)) =
            (&endpoint.previous_secret_sealed, endpoint.previous_until)
            && until > now_unix
        {
            keys.push(self.secret(endpoint, previous).await?);
        }
        let signature = signature_header(&keys, &event.id, now_unix, event.payload.as_bytes());
        let headers = [
            ("webhook-id", event.id.clone()),
            ("webhook-timestamp", now_unix.to_string()),
            ("webhook-signature", signature),
        ];
        let poster = self
            .poster
            .get_or_init(|| Poster::new(self.allow_loopback))
            .as_ref()
            .map_err(|e| DispatchError::Client(e.clone()))?;
        Ok(poster
            .post(&endpoint.url, &headers, event.payload.clone())
            .await)
    }

    async fn secret(&self, endpoint: &Endpoint, sealed: &str) -> Result<Vec<u8>, DispatchError> {
        if let Some(key) = self
            .secrets
            .lock()
            .ok()
            .and_then(|cache| cache.get(sealed).cloned())
        {
            return Ok(key);
        }
        let blob = STANDARD
            .decode(sealed)
            .map_err(|e| DispatchError::Secret(e.to_string()))?;
        let context = endpoint.secret_context();
        let context: Vec<(&str, &str)> = context.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let key = self
            .vault
            .decrypt(&blob, &context)
            .await
            .map_err(|e| DispatchError::Secret(e.0))?;
        if let Ok(mut cache) = self.secrets.lock() {
            cache.insert(sealed.to_owned(), key.clone());
        }
        Ok(key)
    }
}
