//! What the logger (the callers' side), the workers and the exit hook share: the counters, the
//! watermark of finished records that flush waits on, the losses not yet reported, and
//! shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::deadline::deadline_after;
use crate::delivery::spool::{Spool, Unspooled};
use crate::delivery::stats::{Counters, Stats};
use crate::wire::record::Captured;

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
pub(crate) struct LossReport {
    pub(crate) dropped: u64,
    pub(crate) failed: u64,
    pub(crate) spooled: u64,
    pub(crate) last_reason: Option<String>,
    pub(crate) last_sent: Option<Instant>,
}

/// A logger's spool, and what a shutdown moves to it: the memory queue, and the records the
/// callers handed over for the spool that are not written yet.
pub(crate) struct Spilling {
    pub(crate) spool: Arc<Spool>,
    pub(crate) queue: Receiver<Captured>,
    pub(crate) handed: Receiver<Captured>,
    /// About how many bytes the records handed over hold, bounded as the queue is.
    pub(crate) handed_bytes: AtomicU64,
}

impl std::fmt::Debug for Spilling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spilling")
            .field("dir", &self.spool.dir())
            .finish_non_exhaustive()
    }
}

/// How long a shutdown that gave up waiting waits more for the workers to hand what they
/// hold to the spool (a request in flight ends within the request timeout).
const SPILL_GRACE: Duration = Duration::from_secs(1);

/// The most records a shutdown writes to the spool at once.
const SPILL_CHUNK: usize = 4096;

/// The most often a loss report is sent.
pub(crate) const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// State shared by the logger (the callers' side), the workers and the exit hook.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) counters: Counters,
    /// The next record's sequence number, which is also how many were logged.
    next_seq: AtomicU64,
    /// Set when the logger shuts down and its timeout has passed: give up what is left.
    abandon: AtomicBool,
    /// The current delivery problem (a record being retried), or why the last record given
    /// up was given up.
    last_error: Mutex<Option<String>>,
    pub(crate) losses: Mutex<LossReport>,
    /// Whether a worker is sending a loss report.
    pub(crate) reporting: AtomicBool,
    /// Whether the spool's refusal (full, or the disk) was told on stderr since it last took
    /// a record.
    spool_refusal_told: AtomicBool,
    done: Mutex<Watermark>,
    progress: Condvar,
    /// Every record numbered below this was waited for by a flush that ran out of time: a
    /// shutdown does not wait for them a second time.
    waited_out: AtomicU64,
    /// Every record numbered below this is waited for by a flush (or was): a batch holding
    /// one goes at once instead of waiting for more records.
    urgent: AtomicU64,
    /// About how many bytes the records in the queue (or being delivered) hold.
    queued_bytes: AtomicU64,
    /// The most `queued_bytes` may reach: a record past it is dropped.
    pub(crate) max_queued_bytes: u64,
    /// Where records go, for the line a shutdown prints when it gives records up; `None`
    /// prints no line.
    pub(crate) loss_line: Option<String>,
    /// With [`Builder::spool`](crate::Builder::spool): the spool, and what goes to it.
    pub(crate) spilling: Option<Spilling>,
}

impl Shared {
    /// The state of a new logger; `loss_line` is where its records go, for the line a shutdown
    /// prints when it gives records up (`None`: no line).
    pub(crate) fn new(
        loss_line: Option<String>,
        max_queued_bytes: u64,
        spilling: Option<Spilling>,
    ) -> Shared {
        Shared {
            loss_line,
            max_queued_bytes,
            spilling,
            ..Shared::default()
        }
    }

    /// Counts `bytes` more in the queue, unless that would pass the bound. Returns whether it
    /// did.
    pub(crate) fn hold(&self, bytes: usize) -> bool {
        hold(&self.queued_bytes, bytes, self.max_queued_bytes)
    }

    /// Counts `bytes` fewer in the queue: a record that [`hold`](Shared::hold) counted is gone.
    pub(crate) fn release(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes as u64, Ordering::AcqRel);
    }

    /// Counts `bytes` more handed over for the spool, unless that would pass the queue's
    /// bound (or there is no spool). Returns whether it did.
    /// (A record larger than the bound by itself goes when nothing else waits: the spool
    /// takes what the queue cannot.)
    pub(crate) fn hold_handed(&self, bytes: usize) -> bool {
        let Some(spilling) = &self.spilling else {
            return false;
        };
        let bytes = bytes as u64;
        spilling
            .handed_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h == 0 || h + bytes <= self.max_queued_bytes).then_some(h + bytes)
            })
            .is_ok()
    }

    /// Names why records are dropped, from a caller's thread: only when no one else is
    /// naming a problem at that moment (the caller never waits for a lock held across I/O).
    pub(crate) fn note_drop(&self, reason: &str) {
        if let Ok(mut last) = self.last_error.try_lock() {
            // No allocation for each record of a burst: said once is enough.
            if last.as_deref() != Some(reason) {
                *last = Some(reason.to_owned());
            }
        }
    }

    /// Counts `bytes` fewer handed over: a record that [`hold_handed`](Shared::hold_handed)
    /// counted did not go.
    pub(crate) fn release_handed(&self, bytes: usize) {
        if let Some(s) = &self.spilling {
            s.handed_bytes.fetch_sub(bytes as u64, Ordering::AcqRel);
        }
    }

    /// Writes records to the spool, which takes them from here: each counted spooled, or,
    /// when the spool cannot take it, dropped (full, or the disk refused) or failed (its fields
    /// could not be made), with why. Without a spool, each fails with `reason`. `handed`: they
    /// held bytes among those handed over for the spool.
    pub(crate) fn spill(&self, recs: &[&Captured], reason: &str, handed: bool) {
        // The hand-over comes in about the order records were logged; anything else (a
        // worker's, a shutdown's) is older than what was handed over before it.
        let strict = !handed;
        let Some(spilling) = &self.spilling else {
            for rec in recs {
                self.record_failure(reason.to_owned());
                self.finish(rec.seq, &self.counters.failed);
            }
            return;
        };
        let results = spilling.spool.write_records(recs, strict);
        for (rec, result) in recs.iter().zip(results) {
            if handed {
                self.release_handed(rec.bytes());
            }
            match result {
                Ok(()) => {
                    self.spool_refusal_told.store(false, Ordering::Release);
                    Counters::add(&self.counters.spooled);
                }
                Err(Unspooled::NoRoom(why)) => {
                    // Once, until it takes records again: last_error may name a newer problem
                    // (the receiver) by the time someone looks.
                    if self.loss_line.is_some()
                        && !self.spool_refusal_told.swap(true, Ordering::AcqRel)
                    {
                        eprintln!(
                            "http-logger: {why}: records are dropped until it takes them again"
                        );
                    }
                    self.record_failure(why);
                    self.finish(rec.seq, &self.counters.dropped);
                }
                Err(Unspooled::Unencodable(why)) => {
                    self.record_failure(why);
                    self.finish(rec.seq, &self.counters.failed);
                }
            }
        }
    }

    /// After a shutdown's timeout, with a spool: the workers are told to spool what they hold
    /// ([`abandon`](Shared::abandon)), what the queue and the hand-over hold is written here,
    /// and the workers get a moment to finish theirs.
    fn spill_rest(&self) {
        let Some(spilling) = &self.spilling else {
            return;
        };
        self.abandon();
        let why = "the logger shut down before it was sent";
        let mut recs = Vec::new();
        while let Ok(rec) = spilling.handed.try_recv() {
            self.release_handed(rec.bytes());
            recs.push(rec);
        }
        while let Ok(rec) = spilling.queue.try_recv() {
            self.release(rec.bytes());
            recs.push(rec);
        }
        // In the order they were logged: the queue's records are older than those handed
        // over.
        recs.sort_by_key(|rec| rec.seq);
        for chunk in recs.chunks(SPILL_CHUNK) {
            let refs: Vec<&Captured> = chunk.iter().collect();
            self.spill(&refs, why, false);
        }
        let grace = deadline_after(SPILL_GRACE);
        while self.stats().queued > 0 && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(5));
        }
        // And a record replayed from the spool that is on its way: accepted (or put back)
        // before the process ends, not sent again by the next.
        spilling.spool.close(grace);
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot(&self.next_seq)
    }

    /// Numbers a record that passed the filters: its number counts it in `logged`.
    pub(crate) fn accept(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::AcqRel)
    }

    fn lock_done(&self) -> MutexGuard<'_, Watermark> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every record logged before the call is finished (sent, failed or dropped),
    /// or `deadline` passes. Returns whether everything was.
    pub(crate) fn flush(&self, deadline: Instant) -> bool {
        self.flush_until(deadline, false)
    }

    /// As [`flush`](Shared::flush), a wait as long as a shutdown's: when it runs out, a later
    /// shutdown does not wait again for the same records.
    pub(crate) fn flush_as_long_as_shutdown(&self, deadline: Instant) -> bool {
        self.flush_until(deadline, true)
    }

    fn flush_until(&self, deadline: Instant, waits_out: bool) -> bool {
        let target = self.next_seq.load(Ordering::SeqCst);
        self.urgent.fetch_max(target, Ordering::SeqCst);
        let mut done = self.lock_done();
        loop {
            if done.below >= target {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                if waits_out {
                    self.waited_out.fetch_max(target, Ordering::SeqCst);
                }
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

    /// The flush of a shutdown (a drop, the exit, a signal): waits for every record logged
    /// before it until `deadline` (`timeout` after the shutdown began), but not at all when a flush already waited its time out for
    /// all of them (so a program that flushes, then exits, waits once). Then tells on stderr
    /// how many records it gives up, where to and why, unless told not to (see
    /// [`loss_line`](Shared::loss_line)). `what` names the shutdown in that line. Returns how
    /// many records it gives up.
    pub(crate) fn shut_down(&self, deadline: Instant, timeout: Duration, what: &str) -> u64 {
        if self.abandoned() {
            // Shut down already (a dropped logger whose workers are still finishing): what is
            // left was given up and told then.
            return 0;
        }
        let logged = self.next_seq.load(Ordering::SeqCst);
        let flush_deadline = if logged <= self.waited_out.load(Ordering::SeqCst) {
            Instant::now()
        } else {
            deadline
        };
        if self.flush(flush_deadline) {
            if let Some(spilling) = &self.spilling {
                // Records replayed from the spool (an earlier process's) that are on their way
                // finish theirs (within the shutdown's time), and no more start: else the next
                // process sends them again.
                spilling.spool.close(deadline);
            }
            return 0;
        }
        self.spill_rest();
        let stats = self.stats();
        let left = stats.queued;
        let why = || {
            self.last_error()
                .unwrap_or_else(|| "the receiver is too slow".to_owned())
        };
        if let (Some(spilling), Some(destination), true) =
            (&self.spilling, &self.loss_line, stats.spooled > 0)
        {
            eprintln!(
                "http-logger: {} record{} not delivered to {destination} within the {} shutdown timeout ({what}) wait in the spool {} for the next start: {}",
                thousands(stats.spooled),
                if stats.spooled == 1 { "" } else { "s" },
                seconds(timeout),
                spilling.spool.dir().display(),
                why(),
            );
        }
        if let (true, Some(destination)) = (left > 0, &self.loss_line) {
            let why = why();
            eprintln!(
                "http-logger: {} record{} not delivered to {destination} within the {} shutdown timeout ({what}): {why}",
                thousands(left),
                if left == 1 { "" } else { "s" },
                seconds(timeout),
            );
        }
        left
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

    /// Whether a flush waits for record `seq`: a batch holding it should go now.
    pub(crate) fn is_urgent(&self, seq: u64) -> bool {
        seq < self.urgent.load(Ordering::SeqCst)
    }

    pub(crate) fn abandoned(&self) -> bool {
        self.abandon.load(Ordering::SeqCst)
    }

    /// Sleeps for `wait`, unless the logger is abandoned first. Returns false if it was.
    pub(crate) fn sleep(&self, wait: Duration) -> bool {
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

    /// Names the current delivery problem, while a record is retried.
    pub(crate) fn note_problem(&self, reason: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    pub(crate) fn record_failure(&self, reason: String) {
        // One lock at a time: `losses` is held across a loss report's request, and a caller
        // naming a drop must not wait behind it for `last_error`.
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
        self.losses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_reason = Some(reason);
    }
}

/// Adds `bytes` to `held`, unless that would pass `max`. Returns whether it did.
fn hold(held: &AtomicU64, bytes: usize, max: u64) -> bool {
    let bytes = bytes as u64;
    held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
        (h + bytes <= max).then_some(h + bytes)
    })
    .is_ok()
}

/// `n` with a comma between each group of three digits: `2,749`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A timeout as a person writes it: `5 s`, `1.5 s`, `250 ms`.
fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

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
    fn a_shutdown_after_a_flush_that_timed_out_does_not_wait_again() {
        let shared = Arc::new(Shared::default());
        let stuck = shared.accept(); // never finished: the receiver is down
        // A short check of its own does not count as a shutdown's wait.
        assert!(!shared.flush(Instant::now()));
        assert_eq!(shared.waited_out.load(Ordering::SeqCst), 0);
        assert!(!shared.flush_as_long_as_shutdown(Instant::now() + Duration::from_millis(20)));
        // The same records: no second wait (an hour, if it did wait).
        let s = shared.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tx.send(s.shut_down(
                deadline_after(Duration::from_secs(3600)),
                Duration::from_secs(3600),
                "drop",
            ))
        });
        let left = rx.recv_timeout(Duration::from_secs(20));
        assert_eq!(
            left,
            Ok(1),
            "it returned at once and gives up the one record"
        );
        // A record logged after that flush gets the whole wait again.
        let later = shared.accept();
        shared.finish(stuck, &shared.counters.failed);
        let s = shared.clone();
        let waiter = std::thread::spawn(move || {
            s.shut_down(
                deadline_after(Duration::from_secs(20)),
                Duration::from_secs(20),
                "exit",
            )
        });
        shared.finish(later, &shared.counters.sent);
        assert_eq!(waiter.join().unwrap(), 0, "it waited for the later record");
    }

    #[test]
    fn numbers_and_timeouts_are_written_for_people() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(2749), "2,749");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(seconds(Duration::from_secs(5)), "5 s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_millis(250)), "250 ms");
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
