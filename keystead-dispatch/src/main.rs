//! The webhook dispatcher (issue 25): one function with two event sources (template.yaml's
//! `KeysteadDispatchFunction`). The events table's stream brings new audit events, which are fanned out to the
//! delivery queue, one message per endpoint; the queue brings delivery jobs, each one signed attempt. Both answer
//! with a partial batch response, so one failure retries only what failed. All the logic is in
//! `keystead::dispatch`; `keystead dev dispatch` runs the same code locally.

#![recursion_limit = "256"]

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    keystead::telemetry::init();
    let dispatcher = Arc::new(keystead::config::dispatcher_from_env().await?);
    let handler = service_fn(move |event: LambdaEvent<Value>| {
        let dispatcher = Arc::clone(&dispatcher);
        async move { Ok::<_, Error>(keystead::dispatch::run::handle(&dispatcher, &event.payload).await) }
    });
    lambda_runtime::run(handler).await
}
