//! The background worker: takes records off the queue in order, encodes and delivers them,
//! retries what is transient, and reports losses. Also the state the logger and the worker
//! share: counters, flush and shutdown.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::fields::Statics;
use crate::record::Captured;
use crate::stats::{Counters, Stats};
use crate::transport::{Outcome, Transport};

thread_local! {
    /// Set on the worker thread: anything it logs (ureq, rustls, ourselves) is ignored.
    static IN_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is a worker of this crate.
pub(crate) fn in_worker() -> bool {
    IN_WORKER.try_with(Cell::get).unwrap_or(false)
}

/// How long the worker keeps at one record.
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
    fn backoff(&self, retry: u32, jitter: &mut Jitter) -> Duration {
        let step = self
            .min_backoff
            .saturating_mul(1u32 << (retry - 1).min(20))
            .min(self.max_backoff);
        step.mul_f64(0.5 + 0.5 * jitter.next_unit())
    }
}

/// State shared by the logger (the callers' side), the worker and the exit hook.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    /// Records put on the queue.
    pub(crate) enqueued: AtomicU64,
    /// Records taken off the queue and finished (sent or failed).
    finished: AtomicU64,
    /// Set when the logger shuts down and its timeout has passed: give up what is left.
    abandon: AtomicBool,
    waiters: AtomicUsize,
    /// Why the last record given up was given up.
    last_error: Mutex<Option<String>>,
    lock: Mutex<()>,
    progress: Condvar,
}

impl Shared {
    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Waits until every record enqueued before the call is finished, or `deadline` passes.
    /// Returns whether everything was finished.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        let target = self.enqueued.load(Ordering::Acquire);
        let done = || self.finished.load(Ordering::Acquire) >= target;
        if done() {
            return true;
        }
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let finished = loop {
            if done() {
                break true;
            }
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            guard = self
                .progress
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        finished
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_last_error(&self, reason: &str) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() != Some(reason) {
            *last = Some(reason.to_owned());
        }
    }

    /// Tells the worker to give up what is left, now.
    pub(crate) fn abandon(&self) {
        self.abandon.store(true, Ordering::SeqCst);
        self.notify();
    }

    fn abandoned(&self) -> bool {
        self.abandon.load(Ordering::SeqCst)
    }

    fn finish(&self, outcome: &std::sync::atomic::AtomicU64) {
        Counters::add(outcome);
        self.finished.fetch_add(1, Ordering::AcqRel);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify();
        }
    }

    fn notify(&self) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.progress.notify_all();
    }

    /// Sleeps for `wait`, unless the logger is abandoned first. Returns false if it was.
    fn sleep(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.abandoned() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            guard = self
                .progress
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Losses not yet told to the receiver.
#[derive(Debug, Default)]
struct LossReport {
    dropped: u64,
    failed: u64,
    last_reason: Option<String>,
    last_sent: Option<Instant>,
}

/// The most often a loss report is sent.
const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) struct Worker {
    pub(crate) rx: Receiver<Captured>,
    pub(crate) transport: Transport,
    pub(crate) statics: Statics,
    pub(crate) shared: Arc<Shared>,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_record_bytes: usize,
}

impl Worker {
    pub(crate) fn run(mut self) {
        IN_WORKER.with(|w| w.set(true));
        let mut jitter = Jitter::new();
        let mut losses = LossReport::default();
        while let Ok(rec) = self.rx.recv() {
            if self.shared.abandoned() {
                self.shared.finish(&self.shared.counters.failed);
                continue;
            }
            match self.deliver(&rec, &mut jitter) {
                Ok(()) => {
                    self.shared.finish(&self.shared.counters.sent);
                    self.report_losses(&mut losses);
                }
                Err(reason) => {
                    self.shared.set_last_error(&reason);
                    losses.last_reason = Some(reason);
                    self.shared.finish(&self.shared.counters.failed);
                }
            }
        }
    }

    /// Delivers one record, retrying what is transient within the retry policy.
    fn deliver(&mut self, rec: &Captured, jitter: &mut Jitter) -> Result<(), String> {
        self.transport.prepare(rec, &self.statics);
        let started = Instant::now();
        let mut retries = 0;
        loop {
            match self.transport.send() {
                Outcome::Delivered => return Ok(()),
                Outcome::Rejected { reason } => return Err(reason),
                Outcome::Transient {
                    reason,
                    retry_after,
                } => {
                    retries += 1;
                    if retries > self.retry.attempts {
                        return Err(format!("{reason} (out of retries)"));
                    }
                    let wait = retry_after.unwrap_or_else(|| self.retry.backoff(retries, jitter));
                    // Saturating: `wait` may be a receiver's absurd `Retry-After`, and an
                    // overflow here would panic the worker and stop all delivery.
                    if started.elapsed().saturating_add(wait) > self.retry.budget {
                        return Err(format!("{reason} (retry time budget spent)"));
                    }
                    Counters::add(&self.shared.counters.retried);
                    if !self.shared.sleep(wait) {
                        return Err(format!("{reason} (shut down before it could be retried)"));
                    }
                }
            }
        }
    }

    /// After a delivery: when records were lost since the last report, tell the receiver with
    /// one WARNING record. It is not counted in [`Stats`]; if it cannot be sent, the next
    /// delivery tries again.
    fn report_losses(&mut self, losses: &mut LossReport) {
        let c = &self.shared.counters;
        let dropped = c.dropped.load(Ordering::Relaxed);
        let failed = c.failed.load(Ordering::Relaxed);
        let (new_dropped, new_failed) = (dropped - losses.dropped, failed - losses.failed);
        if new_dropped + new_failed == 0
            || losses
                .last_sent
                .is_some_and(|t| t.elapsed() < LOSS_REPORT_INTERVAL)
        {
            return;
        }
        let reason = losses.last_reason.as_deref().unwrap_or("none");
        let args = format_args!(
            "http-logger lost {} records: {new_dropped} dropped (queue full), {new_failed} failed (last error: {reason})",
            new_dropped + new_failed
        );
        let notice = Captured::capture(
            &log::Record::builder()
                .args(args)
                .level(log::Level::Warn)
                .target("http_logger")
                .module_path_static(Some(module_path!()))
                .file_static(Some(file!()))
                .line(Some(line!()))
                .build(),
            self.max_record_bytes,
        );
        self.transport.prepare(&notice, &self.statics);
        if self.transport.send() == Outcome::Delivered {
            *losses = LossReport {
                dropped,
                failed,
                last_reason: None,
                last_sent: Some(Instant::now()),
            };
        }
    }
}

/// Random numbers for backoff jitter, seeded from std's per-process random hasher keys.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
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

    #[test]
    fn flush_returns_at_deadline_when_nothing_progresses() {
        let shared = Shared::default();
        shared.enqueued.store(1, Ordering::SeqCst);
        assert!(!shared.flush(Instant::now() + Duration::from_millis(20)));
        shared.finish(&shared.counters.sent);
        assert!(shared.flush(Instant::now()));
    }

    #[test]
    fn abandon_wakes_a_sleeping_worker() {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let sleeper = std::thread::spawn(move || s.sleep(Duration::from_secs(600)));
        shared.abandon();
        assert!(!sleeper.join().unwrap());
    }
}
