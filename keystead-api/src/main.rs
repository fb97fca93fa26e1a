//! The Lambda function behind API Gateway: load configuration, build the clients once, serve the router. The same
//! binary runs the scheduled reconciliation (`template.yaml`'s `KeysteadReconcileFunction`): an event that is not
//! an API Gateway request but `{"keystead": "reconcile"}` reads recent sales from Gumroad and mints what no ping
//! brought; and an SQS event of the sign-in queue (`SigninRequests`) mails the sign-in links the portal queued
//! (issue 24: the answer to a link request does the same work for every address; the lookup and the mail come
//! after it).
//!
//! A single-threaded runtime: Lambda hands an execution environment one request at a time, so worker threads
//! would only add start-up work and cross-thread wake-ups (BENCHMARKS.md, "Start-up").

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What the function answers: an HTTP response for API Gateway, or a scheduled task's summary.
#[derive(Serialize)]
#[serde(untagged)]
enum Answer<H> {
    Http(H),
    Task(serde_json::Value),
}

/// A scheduled task's input.
#[derive(Deserialize)]
struct Task {
    keystead: String,
}

/// An SQS event: the queued sign-in requests.
#[derive(Deserialize)]
struct Messages {
    #[serde(rename = "Records")]
    records: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "messageId")]
    message_id: String,
    body: String,
}

/// Mails each queued request's link; the answer names the messages to be given again (a storage or mail failure),
/// SQS's partial batch response.
async fn mail_links(app: &keystead::app::App, messages: Messages) -> serde_json::Value {
    let mut failures = Vec::new();
    for message in messages.records {
        if let Err(err) = keystead::app::sign_in::mail_queued(app, &message.body).await {
            tracing::error!(error = %err, "queued sign-in link failed (SQS gives it again)");
            failures.push(serde_json::json!({ "itemIdentifier": message.message_id }));
        }
    }
    serde_json::json!({ "batchItemFailures": failures })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    keystead::telemetry::init();
    let app = keystead::config::app_from_env().await?;
    let api = keystead::http::router(app.clone());
    let handler = service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let (api, app) = (api.clone(), app.clone());
        async move {
            let payload = event.payload;
            // API Gateway's events carry a requestContext; a scheduled task's input does not (a scan of a few
            // kilobytes, then one parse).
            if payload.get().contains("\"requestContext\"") {
                let answer = api.answer(payload.get()).await?;
                return Ok::<_, Error>(Answer::Http(answer));
            }
            if payload.get().contains("\"Records\"") {
                let messages: Messages = serde_json::from_str(payload.get())?;
                return Ok(Answer::Task(mail_links(&app, messages).await));
            }
            let task: Task = serde_json::from_str(payload.get())?;
            match task.keystead.as_str() {
                "reconcile" => {
                    let done = keystead::app::reconcile::reconcile(&app).await?;
                    Ok(Answer::Task(serde_json::to_value(done)?))
                }
                other => Err(format!("unknown task {other:?}").into()),
            }
        }
    });
    lambda_runtime::run(handler).await
}
