//! Local mode's sign-in worker (`keystead dev dispatch`, the tests): what the deployed function's
//! `SigninRequests` event does, reading moto's SQS itself. Lambda receives and deletes the messages in a
//! deployment, so none of this is in the function.

use crate::app::App;
use crate::app::sign_in::mail_queued;
use crate::portal::{PortalError, SqsLinkQueue, queue_failure as failure};

/// Mails what waits in the application's sign-in queue now; how many requests it handled. A request whose mail
/// failed stays, to come back after the queue's visibility timeout.
pub async fn mail_waiting(app: &App) -> Result<usize, PortalError> {
    let queue = app
        .link_queue
        .as_deref()
        .and_then(|queue| (queue as &dyn std::any::Any).downcast_ref::<SqsLinkQueue>());
    let Some(queue) = queue else {
        return Ok(0);
    };
    let mut handled = 0;
    loop {
        let waiting = receive(queue).await?;
        if waiting.is_empty() {
            return Ok(handled);
        }
        for (receipt, body) in waiting {
            mail_queued(app, &body).await?;
            queue
                .client()
                .delete_message()
                .queue_url(queue.url())
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(failure)?;
            handled += 1;
        }
    }
}

/// Up to ten waiting requests, each with its receipt.
async fn receive(queue: &SqsLinkQueue) -> Result<Vec<(String, String)>, PortalError> {
    let out = queue
        .client()
        .receive_message()
        .queue_url(queue.url())
        .max_number_of_messages(10)
        .wait_time_seconds(0)
        .send()
        .await
        .map_err(failure)?;
    Ok(out
        .messages()
        .iter()
        .filter_map(|m| Some((m.receipt_handle()?.to_owned(), m.body()?.to_owned())))
        .collect())
}
