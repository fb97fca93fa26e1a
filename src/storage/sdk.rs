//! The DynamoDB idioms every store method composes, one helper each: attribute values, records to and from items,
//! the request token of a conditional write, a conditional write's answer, a cancelled transaction's reasons, and
//! the backoff before a retry. Nothing here knows a table.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::StoreError;

pub(crate) type Item = HashMap<String, AttributeValue>;

/// The attribute a conditional single-item write leaves its request token in (see `request_token`).
pub(crate) const TOKEN_ATTR: &str = "rq";

/// A fresh token for one logical write. The SDK resends a write's request unchanged when it retries it, token
/// included, so a condition that fails on an item carrying this token failed on the write's own earlier
/// attempt: the write succeeded.
pub(crate) fn request_token() -> Result<String, StoreError> {
    crate::domain::random_id("rq").map_err(|e| StoreError::Unavailable(e.to_string()))
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A record's version (`v`) as a number attribute.
pub(crate) fn version(v: u64) -> AttributeValue {
    n(i64::try_from(v).unwrap_or(i64::MAX))
}

pub(crate) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn to_item<T: Serialize>(
    record: &T,
    sort_key: Option<String>,
) -> Result<Item, StoreError> {
    let mut item: Item =
        serde_dynamo::to_item(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if let Some(sk) = sort_key {
        item.insert("sk".to_owned(), s(sk));
    }
    Ok(item)
}

pub(crate) fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Every SDK failure that is not an expected condition failure means "try again later".
pub(crate) fn unavailable<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Unavailable(DisplayErrorContext(&err).to_string())
}

/// The answer of a single conditional write: `Some` when it was written, `None` when its condition did not hold.
pub(crate) fn conditional<T, E, R>(
    result: Result<T, SdkError<E, R>>,
) -> Result<Option<T>, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(err) if is_condition_failure(&err) => Ok(None),
        Err(err) => Err(unavailable(err)),
    }
}

pub(crate) fn is_condition_failure<E, R>(err: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

/// Waits before retrying a write that lost a race: longer with each attempt, with jitter from the clock (enough
/// to pull concurrent retries apart, no randomness needed).
pub async fn backoff(attempt: u32) {
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
            % 16,
    );
    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt) + jitter)).await;
}

/// Why a transaction was cancelled: one `(code, old item)` per item, in order.
pub(crate) struct Reasons(pub(crate) Vec<(String, Option<Item>)>);

impl Reasons {
    pub(crate) fn failed(&self, index: usize) -> bool {
        self.0
            .get(index)
            .is_some_and(|(code, _)| code == "ConditionalCheckFailed")
    }

    /// The old item of the first of these items whose condition failed.
    pub(crate) fn old(&self, indexes: &[usize]) -> Option<&Item> {
        indexes
            .iter()
            .filter(|&&i| self.failed(i))
            .find_map(|&i| self.0.get(i).and_then(|(_, item)| item.as_ref()))
    }

    pub(crate) fn summary(&self) -> String {
        self.0
            .iter()
            .map(|(code, _)| code.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A cancellation none of the caller's conditions explains: retry later.
    pub(crate) fn unexpected(&self) -> StoreError {
        StoreError::Unavailable(format!("transaction cancelled: {}", self.summary()))
    }
}
