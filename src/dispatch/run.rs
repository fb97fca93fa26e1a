//! The dispatcher's two inputs, as Lambda hands them over (`handle`) and as `keystead dev dispatch` polls them
//! from DynamoDB Local's stream and moto's SQS (`received`): the same code either way.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::queue::Job;
use super::{Dispatcher, Outcome};

/// When an attempt could not even be made (DynamoDB or KMS failing): the message comes back this much later.
const UNAVAILABLE_RETRY_SECONDS: i64 = 30;

/// A received SQS message.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
}

/// A Lambda event from either source, answered with the partial batch response both understand.
pub async fn handle(dispatcher: &Arc<Dispatcher>, event: &Value) -> Value {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let source = records
        .first()
        .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let failures: Vec<String> = match source {
        "aws:dynamodb" => stream_records(dispatcher, &records).await,
        "aws:sqs" => {
            let messages = records
                .iter()
                .filter_map(|r| {
                    Some(Received {
                        message_id: r.get("messageId")?.as_str()?.to_owned(),
                        receipt: r.get("receiptHandle")?.as_str()?.to_owned(),
                        body: r.get("body")?.as_str()?.to_owned(),
                    })
                })
                .collect();
            // Lambda deletes the messages not reported as failures.
            received(dispatcher, messages, false).await
        }
        other => {
            tracing::warn!(source = other, "an event the dispatcher does not handle");
            Vec::new()
        }
    };
    json!({
        "batchItemFailures": failures
            .into_iter()
            .map(|id| json!({"itemIdentifier": id}))
            .collect::<Vec<_>>()
    })
}

/// The stream's records fanned out; on failure, the sequence number to retry from.
async fn stream_records(dispatcher: &Dispatcher, records: &[Value]) -> Vec<String> {
    let key = |record: &Value, name: &str| {
        record
            .pointer(&format!("/dynamodb/Keys/{name}/S"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let keys: Vec<(String, String)> = records
        .iter()
        .filter_map(|r| Some((key(r, "tenant_id")?, key(r, "sk")?)))
        .collect();
    match dispatcher.fan_out(&keys).await {
        Ok(_) => Vec::new(),
        Err(err) => {
            tracing::error!(error = %err, "fan-out failed: the stream batch is retried");
            records
                .first()
                .and_then(|r| r.pointer("/dynamodb/SequenceNumber"))
                .and_then(Value::as_str)
                .map(|seq| vec![seq.to_owned()])
                .unwrap_or_default()
        }
    }
}

/// Delivers received messages, all at once (a slow endpoint's 15 s hold no other message back), and settles each:
/// done ones deleted when `delete_done` (Lambda deletes them itself), failed ones hidden until their retry is due,
/// spent ones moved to the dead-letter queue. Answers the ids of the messages to leave in the queue.
pub async fn received(
    dispatcher: &Arc<Dispatcher>,
    messages: Vec<Received>,
    delete_done: bool,
) -> Vec<String> {
    let mut tasks = JoinSet::new();
    for message in messages {
        let dispatcher = Arc::clone(dispatcher);
        tasks.spawn(async move {
            let keep = settle(&dispatcher, &message, delete_done).await;
            keep.then_some(message.message_id)
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(id)) = done {
            failures.push(id);
        }
    }
    failures
}

/// One message: `true` when it stays in the queue.
async fn settle(dispatcher: &Dispatcher, message: &Received, delete_done: bool) -> bool {
    let queue = &dispatcher.queue;
    let Ok(job) = serde_json::from_str::<Job>(&message.body) else {
        tracing::error!(message = %message.message_id, "not a delivery job: dead-lettered");
        return queue.dead_letter(&message.body).await.is_err()
            || (delete_done && queue.delete(&message.receipt).await.is_err());
    };
    let outcome = match dispatcher.deliver(&job).await {
        Ok(outcome) => outcome,
        Err(err) => {
            tracing::error!(error = %err, event = %job.id, "delivery could not be attempted");
            let _ = queue
                .postpone(&message.receipt, UNAVAILABLE_RETRY_SECONDS)
                .await;
            return true;
        }
    };
    match outcome {
        Outcome::Done => delete_done && queue.delete(&message.receipt).await.is_err(),
        Outcome::RetryIn(seconds) => {
            if let Err(err) = queue.postpone(&message.receipt, seconds).await {
                tracing::error!(error = %err, "could not postpone a retry: it comes back at the queue's timeout");
            }
            true
        }
        Outcome::DeadLetter => {
            if let Err(err) = queue.dead_letter(&message.body).await {
                tracing::error!(error = %err, "could not dead-letter a job: it is retried");
                return true;
            }
            delete_done && queue.delete(&message.receipt).await.is_err()
        }
    }
}
