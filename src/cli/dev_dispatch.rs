//! `keystead dev dispatch`: the webhook dispatcher's own code on a developer's machine, fed from DynamoDB Local's
//! stream and moto's SQS (`dispatch::local`), until stopped; and the portal's sign-in queue's worker.

use std::sync::Arc;
use std::time::Duration;

use super::CliError;
use crate::dispatch::Dispatcher;
use crate::dispatch::local::LocalFeed;

/// How long to wait when a turn found nothing to do.
const IDLE: Duration = Duration::from_millis(200);

pub async fn run(
    dispatcher: Arc<Dispatcher>,
    app: crate::app::App,
    sdk: &aws_config::SdkConfig,
    events_table: &str,
) -> Result<(), CliError> {
    let mut feed = LocalFeed::new(sdk, events_table)
        .await
        .map_err(CliError::Config)?;
    eprintln!(
        "keystead dev dispatch: reading {}, the webhook queue and the sign-in queue (Ctrl-C stops)",
        feed.stream_arn()
    );
    loop {
        let turn = match feed.turn(&dispatcher).await {
            Ok(turn) => turn,
            // DynamoDB Local or moto busy or restarting: the same work is picked up on a later turn.
            Err(err) => {
                eprintln!("keystead dev dispatch: {err} (retrying)");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if turn.queued > 0 {
            eprintln!("keystead dev dispatch: {} deliveries queued", turn.queued);
        }
        if turn.attempted > 0 {
            eprintln!(
                "keystead dev dispatch: {} messages handled, {} kept for a later attempt",
                turn.attempted, turn.kept
            );
        }
        let mailed = match super::signin_worker::mail_waiting(&app).await {
            Ok(mailed) => mailed,
            Err(err) => {
                eprintln!("keystead dev dispatch: sign-in queue: {err} (retrying)");
                0
            }
        };
        if turn.queued == 0 && turn.attempted == 0 && mailed == 0 {
            tokio::time::sleep(IDLE).await;
        }
    }
}
