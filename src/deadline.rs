//! The time a request has left. A handler runs its work `within` a budget; code deep below it (the key email)
//! asks `remaining()` before starting something it must finish and record, instead of being cut off half-way.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The request ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

/// Runs `work` with `budget` to finish; `remaining()` inside it counts down to the same instant.
pub async fn within<F: Future>(budget: Duration, work: F) -> Result<F::Output, Elapsed> {
    let deadline = Instant::now() + budget;
    DEADLINE
        .scope(deadline, tokio::time::timeout_at(deadline, work))
        .await
        .map_err(|_| Elapsed)
}

/// The time left before the enclosing `within` gives up; `None` outside one (the CLI has no deadline).
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remaining_counts_down_inside_and_is_none_outside() {
        assert_eq!(remaining(), None);
        let left = within(Duration::from_secs(10), async { remaining() })
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(
            left.is_some_and(
                |left| left <= Duration::from_secs(10) && left > Duration::from_secs(9)
            )
        );
        let late = within(
            Duration::from_millis(10),
            tokio::time::sleep(Duration::from_secs(5)),
        )
        .await;
        assert_eq!(late, Err(Elapsed));
    }
}
