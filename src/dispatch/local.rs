//! The dispatcher fed on a developer's machine the way Lambda feeds it in production: the events table's stream
//! read from DynamoDB Local, the delivery queue received from moto's SQS (`keystead dev dispatch` turns it until
//! stopped; the tests turn it themselves). A new feed reads the stream from its start: what was delivered already is
//! not sent again (each delivery's record says so).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aws_sdk_dynamodbstreams::types::ShardIteratorType;

use super::Dispatcher;
use super::run::{Received, received};

/// What one turn did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Turn {
    /// Delivery jobs the stream's new events became.
    pub queued: usize,
    /// Messages received from the queue and settled.
    pub attempted: usize,
    /// Of those, the ones left in the queue for a later attempt.
    pub kept: usize,
}

pub struct LocalFeed {
    streams: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    iterators: HashMap<String, String>,
    finished: HashSet<String>,
}

fn failure<E: std::error::Error + 'static>(what: &str, err: E) -> String {
    format!(
        "{what}: {}",
        aws_sdk_dynamodbstreams::error::DisplayErrorContext(&err)
    )
}

impl LocalFeed {
    /// The feed of `events_table`'s stream; an error when the table has none.
    pub async fn new(sdk: &aws_config::SdkConfig, events_table: &str) -> Result<Self, String> {
        let described = aws_sdk_dynamodb::Client::new(sdk)
            .describe_table()
            .table_name(events_table)
            .send()
            .await
            .map_err(|e| failure("DynamoDB DescribeTable", e))?;
        let stream_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| {
                format!(
                    "the table {events_table} has no stream: run infra/local/up again (it adds the template's stream)"
                )
            })?
            .to_owned();
        Ok(Self {
            streams: aws_sdk_dynamodbstreams::Client::new(sdk),
            stream_arn,
            iterators: HashMap::new(),
            finished: HashSet::new(),
        })
    }

    pub fn stream_arn(&self) -> &str {
        &self.stream_arn
    }

    /// Reads what the stream has, fans it out, then receives one batch from the queue and settles it.
    pub async fn turn(&mut self, dispatcher: &Arc<Dispatcher>) -> Result<Turn, String> {
        let mut turn = Turn::default();
        let described = self
            .streams
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .map_err(|e| failure("DynamoDB Streams DescribeStream", e))?;
        let shard_ids: Vec<String> = described
            .stream_description()
            .map(|d| {
                d.shards()
                    .iter()
                    .filter_map(|s| s.shard_id().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for shard_id in shard_ids {
            if self.finished.contains(&shard_id) || self.iterators.contains_key(&shard_id) {
                continue;
            }
            let iterator = self
                .streams
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(&shard_id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .map_err(|e| failure("DynamoDB Streams GetShardIterator", e))?;
            match iterator.shard_iterator() {
                Some(it) => {
                    self.iterators.insert(shard_id, it.to_owned());
                }
                None => {
                    self.finished.insert(shard_id);
                }
            }
        }
        let shard_ids: Vec<String> = self.iterators.keys().cloned().collect();
        for shard_id in shard_ids {
            let Some(iterator) = self.iterators.get(&shard_id).cloned() else {
                continue;
            };
            let page = match self
                .streams
                .get_records()
                .shard_iterator(&iterator)
                .limit(1000)
                .send()
                .await
            {
                Ok(page) => page,
                // An expired iterator: the shard is read again from its start next turn.
                Err(_) => {
                    self.iterators.remove(&shard_id);
                    continue;
                }
            };
            let keys: Vec<(String, String)> = page
                .records()
                .iter()
                .filter(|r| r.event_name().is_some_and(|n| n.as_str() == "INSERT"))
                .filter_map(|r| {
                    let keys = r.dynamodb()?.keys()?;
                    let text = |name: &str| keys.get(name)?.as_s().ok().cloned();
                    Some((text("tenant_id")?, text("sk")?))
                })
                .collect();
            if !keys.is_empty() {
                // On failure the iterator is not advanced: the same records come back next turn.
                turn.queued += dispatcher.fan_out(&keys).await.map_err(|e| e.to_string())?;
            }
            match page.next_shard_iterator() {
                Some(next) => {
                    self.iterators.insert(shard_id, next.to_owned());
                }
                None => {
                    self.iterators.remove(&shard_id);
                    self.finished.insert(shard_id);
                }
            }
        }
        let queue = &dispatcher.queue;
        let batch = queue
            .client()
            .receive_message()
            .queue_url(queue.url())
            .max_number_of_messages(10)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "SQS ReceiveMessage: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                )
            })?;
        let messages: Vec<Received> = batch
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Received {
                    message_id: m.message_id()?.to_owned(),
                    receipt: m.receipt_handle()?.to_owned(),
                    body: m.body()?.to_owned(),
                })
            })
            .collect();
        turn.attempted = messages.len();
        if !messages.is_empty() {
            turn.kept = received(dispatcher, messages, true).await.len();
        }
        Ok(turn)
    }
}
