//! The retry policy: what an attempt's outcome means (delivered, worth another try, or never
//! worth one), how long a worker keeps at one record, and the jittered backoff between
//! attempts.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::transport::{Answer, Failure};

/// What to do after one attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// A 2xx answer: the record is delivered.
    Delivered,
    /// Worth another try after a backoff (or the receiver's `Retry-After`): a connection
    /// error, a timeout, 408, 429 or a 5xx other than 501.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Worth one more try at once, on a new connection: an answer that is not HTTP we can use,
    /// the first time for this record.
    Resend { reason: String },
    /// Never worth another try of the same payload: the receiver refused it (any other
    /// status). A batch is split and its halves sent again.
    Refused { reason: String, status: u16 },
    /// Never worth another try: a refused TLS handshake, a request that cannot be made, or a
    /// second unusable answer.
    Reject { reason: String },
}

/// What `outcome` means for a record that already got `unusable` unusable answers.
pub(crate) fn decide(outcome: Result<Answer, Failure>, unusable: u32) -> Decision {
    let failure = match outcome {
        Ok(answer) => {
            let retry_after = answer.retry_after.as_deref().and_then(parse_retry_after);
            return classify_status(answer.status, retry_after);
        }
        Err(failure) => failure,
    };
    let reason = failure.to_string();
    match failure {
        Failure::Connect(_) | Failure::Timeout | Failure::Broken(_) => Decision::Retry {
            reason,
            retry_after: None,
        },
        Failure::Unusable(_) if unusable == 0 => Decision::Resend { reason },
        Failure::Unusable(_) | Failure::UnusableAgain(_) => Decision::Reject {
            reason: format!("{reason} (again on a new connection)"),
        },
        Failure::Tls(_) | Failure::Request(_) => Decision::Reject { reason },
    }
}

pub(crate) fn classify_status(status: u16, retry_after: Option<Duration>) -> Decision {
    match status {
        200..=299 => Decision::Delivered,
        408 | 429 | 500 | 502..=599 => Decision::Retry {
            reason: format!("receiver answered {status}"),
            retry_after,
        },
        _ => Decision::Refused {
            status,
            reason: format!("receiver answered {status}"),
        },
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

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
    fn statuses_are_delivered_retried_or_rejected() {
        for s in [200, 201, 204, 299] {
            assert_eq!(classify_status(s, None), Decision::Delivered, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(
                matches!(classify_status(s, None), Decision::Retry { .. }),
                "{s}"
            );
        }
        for s in [100, 301, 302, 304, 400, 401, 403, 404, 413, 414, 501] {
            assert!(
                matches!(classify_status(s, None), Decision::Refused { .. }),
                "{s}"
            );
        }
    }

    #[test]
    fn an_unusable_answer_is_resent_once_then_rejected() {
        let unusable = || Err(Failure::Unusable("not HTTP".into()));
        assert!(matches!(decide(unusable(), 0), Decision::Resend { .. }));
        let Decision::Reject { reason } = decide(unusable(), 1) else {
            panic!("a second unusable answer rejects")
        };
        assert!(
            reason.contains("not HTTP") && reason.contains("again"),
            "{reason}"
        );
        // The transport sent it again already (a kept-alive connection found closed): no more.
        let again = Err(Failure::UnusableAgain("closed before an answer".into()));
        assert!(matches!(decide(again, 0), Decision::Reject { .. }));
        for transient in [
            Failure::Connect("connection refused".into()),
            Failure::Timeout,
            Failure::Broken("reset".into()),
        ] {
            assert!(matches!(decide(Err(transient), 1), Decision::Retry { .. }));
        }
        assert!(matches!(
            decide(Err(Failure::Tls("unknown issuer".into())), 0),
            Decision::Reject { .. }
        ));
        let answer = Answer {
            status: 503,
            retry_after: Some("3".into()),
            keep_alive: true,
        };
        assert_eq!(
            decide(Ok(answer), 0),
            Decision::Retry {
                reason: "receiver answered 503".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let wait = parse_retry_after(&later).expect("a date parses");
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

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
