//! The background workers: they take records off the queue, encode and deliver them, retry what
//! is transient, and report losses. Also the state the logger and the workers share: counters,
//! flush and shutdown.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::fields::{Fields, RecordView, Statics};
use crate::record::Captured;
use crate::stats::{Counters, Stats};
use crate::transport::{Outcome, Transport};

thread_local! {
    /// Set on the worker threads: anything they log (ureq, rustls, ourselves) is ignored.
    static IN_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is a worker of this crate.
pub(crate) fn in_worker() -> bool {
    IN_WORKER.try_with(Cell::get).unwrap_or(false)
}

/// `now + wait`, saturating far in the future instead of overflowing on `Duration::MAX`.
pub(crate) fn deadline_after(wait: Duration) -> Instant {
    const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    Instant::now() + wait.min(FOREVER)
}

/// The user's `map_record` hook.
pub(crate) type MapRecord = Arc<dyn Fn(&mut Fields) + Send + Sync>;

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
    fn backoff(&self, retry: u32, jitter: &mut Jitter) -> Duration {
        let step = self
            .min_backoff
            .saturating_mul(1u32 << (retry - 1).min(20))
            .min(self.max_backoff);
        step.mul_f64(0.5 + 0.5 * jitter.next_unit())
    }
}

/// Which records are finished. Every record gets a sequence number when it is logged; flush
/// waits for all numbers below the one it saw. Records finish out of order when several
/// connections deliver at once, or when the queue was full.
#[derive(Debug)]
struct Watermark {
    /// Every record numbered below this is finished.
    below: u64,
    /// Finished records numbered above `below`, as merged ranges `start..end`: while the
    /// oldest record is held up, the records dropped meanwhile make one range, not a set that
    /// grows with each.
    above: BTreeMap<u64, u64>,
    /// The lowest target a flush waits for (`u64::MAX` when none does): `finish` wakes the
    /// flushes only when `below` reaches it.
    wake_at: u64,
}

impl Default for Watermark {
    fn default() -> Watermark {
        Watermark {
            below: 0,
            above: BTreeMap::new(),
            wake_at: u64::MAX,
        }
    }
}

impl Watermark {
    /// Marks record `seq` finished. Returns whether a flush should wake.
    fn finish(&mut self, seq: u64) -> bool {
        if seq == self.below {
            self.below += 1;
            if let Some(end) = self.above.remove(&self.below) {
                self.below = end;
            }
        } else if seq > self.below {
            let (mut start, mut end) = (seq, seq + 1);
            if let Some((&s, &e)) = self.above.range(..seq).next_back() {
                if e == seq {
                    start = s;
                }
            }
            if let Some(e) = self.above.remove(&end) {
                end = e;
            }
            self.above.insert(start, end);
        }
        if self.below >= self.wake_at {
            self.wake_at = u64::MAX;
            return true;
        }
        false
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

/// State shared by the logger (the callers' side), the workers and the exit hook.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    /// The next record's sequence number.
    next_seq: AtomicU64,
    /// Set when the logger shuts down and its timeout has passed: give up what is left.
    abandon: AtomicBool,
    /// Why the last record given up was given up.
    last_error: Mutex<Option<String>>,
    losses: Mutex<LossReport>,
    done: Mutex<Watermark>,
    progress: Condvar,
}

impl Shared {
    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Counts a record that passed the filters and numbers it.
    pub(crate) fn accept(&self) -> u64 {
        Counters::add(&self.counters.logged);
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    fn lock_done(&self) -> MutexGuard<'_, Watermark> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every record logged before the call is finished (sent, failed or dropped),
    /// or `deadline` passes. Returns whether everything was.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        let target = self.next_seq.load(Ordering::SeqCst);
        let mut done = self.lock_done();
        loop {
            if done.below >= target {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            done.wake_at = done.wake_at.min(target);
            done = self
                .progress
                .wait_timeout(done, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Counts record `seq` in `outcome` and marks it finished.
    pub(crate) fn finish(&self, seq: u64, outcome: &AtomicU64) {
        Counters::add(outcome);
        if self.lock_done().finish(seq) {
            self.progress.notify_all();
        }
    }

    /// Tells the workers to give up what is left, now.
    pub(crate) fn abandon(&self) {
        self.abandon.store(true, Ordering::SeqCst);
        let _done = self.lock_done();
        self.progress.notify_all();
    }

    fn abandoned(&self) -> bool {
        self.abandon.load(Ordering::SeqCst)
    }

    /// Sleeps for `wait`, unless the logger is abandoned first. Returns false if it was.
    fn sleep(&self, wait: Duration) -> bool {
        let deadline = deadline_after(wait);
        let mut done = self.lock_done();
        loop {
            if self.abandoned() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            done = self
                .progress
                .wait_timeout(done, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn record_failure(&self, reason: String) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        self.losses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_reason = Some(reason.clone());
        *last = Some(reason);
    }
}

/// One worker: a thread with a connection of its own, taking records off the shared queue.
pub(crate) struct Worker {
    pub(crate) rx: Receiver<Captured>,
    pub(crate) transport: Transport,
    pub(crate) statics: Arc<Statics>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) retry: RetryPolicy,
    pub(crate) map_record: Option<MapRecord>,
    pub(crate) max_record_bytes: usize,
}

impl Worker {
    pub(crate) fn run(mut self) {
        IN_WORKER.with(|w| w.set(true));
        let mut jitter = Jitter::new();
        while let Ok(rec) = self.rx.recv() {
            let counters = &self.shared.counters;
            if self.shared.abandoned() {
                self.shared
                    .record_failure("the logger shut down before it was sent".into());
                self.shared.finish(rec.seq, &counters.failed);
                continue;
            }
            match self.deliver(&rec, &mut jitter) {
                Ok(()) => {
                    // Before the record is marked finished, so a flush waits for the report.
                    self.report_losses();
                    self.shared.finish(rec.seq, &self.shared.counters.sent);
                }
                Err(reason) => {
                    self.shared.record_failure(reason);
                    self.shared.finish(rec.seq, &self.shared.counters.failed);
                }
            }
        }
    }

    /// Encodes `rec` for the transport, through the `map_record` hook if there is one.
    fn prepare(&mut self, rec: &Captured) -> Result<(), String> {
        let view = RecordView {
            rec,
            statics: &self.statics,
        };
        let Some(map) = &self.map_record else {
            self.transport.prepare(&view);
            return Ok(());
        };
        let mut fields = Fields::collect(&view);
        catch_unwind(AssertUnwindSafe(|| map(&mut fields)))
            .map_err(|_| "the map_record hook panicked".to_owned())?;
        self.transport.prepare(&fields);
        Ok(())
    }

    /// Delivers one record, retrying what is transient within the retry policy.
    fn deliver(&mut self, rec: &Captured, jitter: &mut Jitter) -> Result<(), String> {
        self.prepare(rec)?;
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
    /// one WARNING record. It is not counted in [`Stats`]; if it cannot be sent, a later
    /// delivery tries again. One worker reports at a time.
    fn report_losses(&mut self) {
        let Ok(mut losses) = self.shared.losses.try_lock() else {
            return;
        };
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
        let mut msg = format!(
            "http-logger lost {} records: {new_dropped} dropped (queue full), {new_failed} failed",
            new_dropped + new_failed
        );
        if let (true, Some(reason)) = (new_failed > 0, &losses.last_reason) {
            msg.push_str(&format!(" (last error: {reason})"));
        }
        let notice = Captured::capture(
            &log::Record::builder()
                .args(format_args!("{msg}"))
                .level(log::Level::Warn)
                .target("http_logger")
                .module_path_static(Some(module_path!()))
                .file_static(Some(file!()))
                .line(Some(line!()))
                .build(),
            self.max_record_bytes,
        );
        self.transport.prepare(&RecordView {
            rec: &notice,
            statics: &self.statics,
        });
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
    fn the_watermark_waits_for_the_lowest_unfinished_record() {
        let mut w = Watermark::default();
        w.finish(1);
        w.finish(3);
        assert_eq!(w.below, 0, "record 0 is not finished");
        w.finish(0);
        assert_eq!(w.below, 2);
        w.finish(2);
        assert_eq!(w.below, 4);
        assert!(w.above.is_empty());
    }

    #[test]
    fn records_finished_while_the_oldest_is_held_up_take_constant_memory() {
        let mut w = Watermark::default();
        for seq in 1..100_000 {
            w.finish(seq);
        }
        assert_eq!(w.above.len(), 1, "one merged range");
        // Out of order around a gap, still merged.
        for seq in [100_002, 100_004, 100_003, 100_001] {
            w.finish(seq);
        }
        assert_eq!(w.above.len(), 2, "{:?}", w.above);
        w.finish(100_000);
        assert_eq!(w.above.len(), 1, "{:?}", w.above);
        w.finish(0);
        assert_eq!(w.below, 100_005);
        assert!(w.above.is_empty());
    }

    #[test]
    fn finish_wakes_a_flush_only_when_its_target_is_reached() {
        let mut w = Watermark {
            wake_at: 2,
            ..Watermark::default()
        };
        assert!(!w.finish(0));
        assert!(!w.finish(5));
        assert!(w.finish(1), "below reached 2");
        assert_eq!(w.wake_at, u64::MAX);
        assert!(!w.finish(2), "no flush waits any more");
    }

    #[test]
    fn flush_waits_for_every_earlier_record_not_just_a_count() {
        let shared = Shared::default();
        let (a, b) = (shared.accept(), shared.accept());
        shared.finish(b, &shared.counters.sent);
        assert!(
            !shared.flush(Instant::now() + Duration::from_millis(20)),
            "record a is still out"
        );
        shared.finish(a, &shared.counters.failed);
        assert!(shared.flush(Instant::now()));
        let stats = shared.stats();
        assert_eq!(
            (stats.logged, stats.sent, stats.failed, stats.queued),
            (2, 1, 1, 0)
        );
    }

    #[test]
    fn deadlines_never_overflow() {
        assert!(deadline_after(Duration::MAX) > Instant::now());
    }

    #[test]
    fn abandon_wakes_a_sleeping_worker() {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let sleeper = std::thread::spawn(move || s.sleep(Duration::MAX));
        shared.abandon();
        assert!(!sleeper.join().unwrap());
    }
}
