//! A per-tenant budget of failed authentications, per process (issue 24). A flood of pings with a wrong token at
//! one tenant's URL costs a DynamoDB read each (authentication reads the tenant afresh, so a rotated token takes
//! effect at once). Past `FAILURES_PER_MINUTE` failures in a minute, a ping whose token does not match the tenant
//! as this process last read it (at most a minute ago) is answered `503` without any read: Gumroad retries a 503,
//! so a real ping that met a token rotated in that minute is delivered later, while the junk costs nothing.
//! A ping with the right token is always authenticated as usual, flood or not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed authentications per tenant per minute in one process before the budget applies.
pub const FAILURES_PER_MINUTE: u32 = 20;
const WINDOW: Duration = Duration::from_secs(60);
/// Tenants remembered at most (a flood over many made-up tenant ids must not grow the map without bound).
const MAX_TENANTS: usize = 10_000;

#[derive(Default)]
pub struct PingBudget {
    failures: Mutex<HashMap<String, (Instant, u32)>>,
}

impl PingBudget {
    /// Whether this tenant's failures this minute used up its budget.
    pub fn exhausted(&self, tenant: &str) -> bool {
        let Ok(failures) = self.failures.lock() else {
            return false;
        };
        failures
            .get(tenant)
            .is_some_and(|(since, count)| since.elapsed() < WINDOW && *count >= FAILURES_PER_MINUTE)
    }

    /// Counts one failed authentication for `tenant`.
    pub fn failed(&self, tenant: &str) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= MAX_TENANTS && !failures.contains_key(tenant) {
            failures.retain(|_, (since, _)| since.elapsed() < WINDOW);
            if failures.len() >= MAX_TENANTS {
                return;
            }
        }
        let entry = failures
            .entry(tenant.to_owned())
            .or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_applies_after_its_failures_and_per_tenant() {
        let budget = PingBudget::default();
        for _ in 0..FAILURES_PER_MINUTE - 1 {
            budget.failed("acme");
        }
        assert!(!budget.exhausted("acme"));
        budget.failed("acme");
        assert!(budget.exhausted("acme"));
        assert!(!budget.exhausted("other"));
    }
}
