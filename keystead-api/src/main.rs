//! The Lambda function behind API Gateway: load configuration, build the clients once, serve the router.
//!
//! A single-threaded runtime: Lambda hands an execution environment one request at a time, so worker threads
//! would only add start-up work and cross-thread wake-ups (BENCHMARKS.md, "Start-up").

use lambda_http::Error;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    keystead::telemetry::init();
    let app = keystead::config::app_from_env().await?;
    lambda_http::run(keystead::http::router(app)).await
}
