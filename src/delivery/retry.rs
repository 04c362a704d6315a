//! The retry policy: how long a worker keeps at one record, and the jittered backoff between
//! attempts.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How long a worker keeps at one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt.
    pub(crate) attempts: u32,
    /// Time from the first attempt after which no retry starts.
    pub(crate) budget: Duration,
    /// The first backoff, doubled at each retry up to `max_backoff`.
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (from 1): capped exponential, with jitter that
    /// keeps it between half and all of the step.
    pub(crate) fn backoff(&self, retry: u32, jitter: &mut Jitter) -> Duration {
        let step = self
            .min_backoff
            .saturating_mul(1u32 << (retry - 1).min(20))
            .min(self.max_backoff);
        step.mul_f64(0.5 + 0.5 * jitter.next_unit())
    }
}

/// Random numbers for backoff jitter, seeded from std's per-process random hasher keys.
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Jitter {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Jitter(seed | 1)
    }

    /// A number in [0, 1) (xorshift64*).
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let policy = RetryPolicy {
            attempts: 10,
            budget: Duration::from_secs(30),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        let mut jitter = Jitter::new();
        for retry in 1..=40 {
            let step = Duration::from_millis(100 * (1u64 << (retry - 1).min(20)))
                .min(Duration::from_secs(1));
            let wait = policy.backoff(retry, &mut jitter);
            assert!(
                wait >= step / 2 && wait <= step,
                "retry {retry}: {wait:?} vs {step:?}"
            );
        }
        let waits: std::collections::HashSet<_> =
            (0..20).map(|_| policy.backoff(3, &mut jitter)).collect();
        assert!(waits.len() > 1, "jitter varies the wait");
    }

    #[test]
    fn jitter_stays_in_unit_interval() {
        let mut j = Jitter::new();
        for _ in 0..10_000 {
            let x = j.next_unit();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }
}
