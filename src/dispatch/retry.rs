//! When to try a failed delivery again, and when to give up.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with jitter, bounded by a total retry time (`docs/dispatch.md`,
/// "Retries, dead events, parked tenants").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failed attempt; each later failure doubles it.
    pub initial_backoff: Duration,
    /// Ceiling of the doubling, so a long outage is still probed every few minutes.
    pub max_backoff: Duration,
    /// How long after its first attempt an emission may still be retried; past it, the next
    /// retryable failure makes the emission dead and parks its tenant (default 24 h).
    pub retry_limit: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            retry_limit: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The wait after `failed_attempts` failures (1 for the first): `initial * 2^(n-1)`, capped
    /// at `max_backoff`, then scaled by a random factor in [0.5, 1] so tenants that failed
    /// together do not retry in lockstep.
    pub fn backoff(&self, failed_attempts: u32) -> Duration {
        let full = self.ceiling(failed_attempts);
        full.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }

    /// The backoff before jitter.
    fn ceiling(&self, failed_attempts: u32) -> Duration {
        let doublings = failed_attempts.saturating_sub(1).min(31);
        self.initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }

    /// Whether an emission first attempted `elapsed` ago has used up its retry time.
    pub fn exhausted(&self, elapsed: Duration) -> bool {
        elapsed >= self.retry_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling_with_jitter() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            retry_limit: Duration::from_secs(60),
        };
        for (attempt, ceiling_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (60, 1000),
        ] {
            let ceiling = Duration::from_millis(ceiling_ms);
            for _ in 0..50 {
                let wait = policy.backoff(attempt);
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "attempt {attempt}: {wait:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
        let waits: std::collections::HashSet<Duration> =
            (0..20).map(|_| policy.backoff(3)).collect();
        assert!(waits.len() > 1, "jitter varies the wait");
    }

    #[test]
    fn retry_limit_counts_from_the_first_attempt() {
        let policy = RetryPolicy::default();
        assert!(!policy.exhausted(Duration::from_secs(24 * 3600 - 1)));
        assert!(policy.exhausted(Duration::from_secs(24 * 3600)));
    }
}
