//! Token-bucket rate limits: per credential and global (events per second with a burst), and
//! the per-client-address throttle on failed authentication.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed authentications one client address may make at once, then one per second: enough
/// for a misconfigured client to see its 401s, too few to guess a token.
pub const AUTH_FAILURE_BURST: f64 = 10.0;
pub const AUTH_FAILURE_RATE: f64 = 1.0;
/// Client addresses tracked for failed authentication; past it, addresses whose buckets are
/// full again are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

/// Why a request may not pass now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateError {
    /// Retry after this long, when the bucket holds enough again.
    RetryAfter(Duration),
    /// The request alone is larger than the burst: it can never pass.
    LargerThanBurst { burst: f64 },
}

/// The bucket arithmetic, a pure function of its state and the clock.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Events that may pass now.
    available: f64,
    /// When `available` was computed.
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.available = (self.available + elapsed * rate).min(burst);
        self.at = now;
    }
}

/// One limit: `rate` events per second, at most `burst` at once.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        TokenBucket {
            rate,
            burst,
            state: Mutex::new(Bucket {
                available: burst,
                at: now,
            }),
        }
    }

    /// Takes `events` from the bucket, or says when they will be there.
    pub fn try_take(&self, events: f64, now: Instant) -> Result<(), RateError> {
        if events > self.burst {
            return Err(RateError::LargerThanBurst { burst: self.burst });
        }
        let mut bucket = self.state.lock().unwrap_or_else(|p| p.into_inner());
        bucket.refill(self.rate, self.burst, now);
        if bucket.available >= events {
            bucket.available -= events;
            Ok(())
        } else {
            let missing = events - bucket.available;
            Err(RateError::RetryAfter(Duration::from_secs_f64(
                missing / self.rate,
            )))
        }
    }

    /// Gives back what [`Self::try_take`] took for a request that was refused later on.
    pub fn give_back(&self, events: f64) {
        let mut bucket = self.state.lock().unwrap_or_else(|p| p.into_inner());
        bucket.available = (bucket.available + events).min(self.burst);
    }
}

/// Failed-authentication buckets per client address.
#[derive(Debug, Default)]
pub struct AuthFailureThrottle {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl AuthFailureThrottle {
    /// `Err(retry after)` when `client` has used up its failures.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Some(bucket) = buckets.get_mut(&client) else {
            return Ok(());
        };
        bucket.refill(AUTH_FAILURE_RATE, AUTH_FAILURE_BURST, now);
        if bucket.available >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.available) / AUTH_FAILURE_RATE,
            ))
        }
    }

    /// Counts one failed authentication from `client`.
    pub fn record_failure(&self, client: IpAddr, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&client) {
            buckets.retain(|_, b| {
                b.refill(AUTH_FAILURE_RATE, AUTH_FAILURE_BURST, now);
                b.available < AUTH_FAILURE_BURST
            });
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            available: AUTH_FAILURE_BURST,
            at: now,
        });
        bucket.refill(AUTH_FAILURE_RATE, AUTH_FAILURE_BURST, now);
        bucket.available = (bucket.available - 1.0).max(0.0);
    }
}

/// Whole seconds for `Retry-After`, rounded up so a client that waits them succeeds.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs_f64().ceil() as u64;
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_over_burst_and_says_when_it_refills() {
        let start = Instant::now();
        let bucket = TokenBucket::new(2.0, 4.0, start);
        assert_eq!(bucket.try_take(4.0, start), Ok(()));
        let Err(RateError::RetryAfter(wait)) = bucket.try_take(3.0, start) else {
            panic!("expected a wait");
        };
        assert_eq!(wait, Duration::from_millis(1500));
        assert_eq!(retry_after_seconds(wait), 2);
        assert!(bucket.try_take(3.0, start + wait).is_ok());
        assert_eq!(
            bucket.try_take(5.0, start),
            Err(RateError::LargerThanBurst { burst: 4.0 })
        );
    }

    #[test]
    fn failed_authentications_are_throttled_per_address() {
        let start = Instant::now();
        let throttle = AuthFailureThrottle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..10 {
            assert!(throttle.check(a, start).is_ok());
            throttle.record_failure(a, start);
        }
        assert_eq!(throttle.check(a, start), Err(Duration::from_secs(1)));
        assert!(throttle.check(b, start).is_ok());
        assert!(throttle.check(a, start + Duration::from_secs(1)).is_ok());
    }
}
