//! The Lambda function behind API Gateway: load configuration, build the clients once, serve.

use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    keymint::telemetry::init();
    let app = keymint::config::app_from_env().await?;
    let app = &app;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(app.handle(request).await)
    }))
    .await
}
