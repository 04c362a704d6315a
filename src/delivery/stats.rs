//! Delivery accounting.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of what a logger did with the records it accepted.
///
/// Every record that passes the level filter is counted in [`logged`](Stats::logged) and ends
/// in exactly one of [`sent`](Stats::sent), [`dropped`](Stats::dropped) or
/// [`failed`](Stats::failed), or is still [`queued`](Stats::queued) in memory or
/// [`spooled`](Stats::spooled) on disk:
/// `logged == sent + dropped + failed + queued + spooled`.
///
/// ```
/// # fn main() -> Result<(), http_logger::Error> {
/// let logger = http_logger::HttpLogger::builder("127.0.0.1:9", "/").build()?;
/// let stats = logger.stats();
/// assert_eq!(
///     stats.logged,
///     stats.sent + stats.dropped + stats.failed + stats.queued + stats.spooled
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Stats {
    /// Records accepted by the logger (they passed its level filter).
    pub logged: u64,
    /// Records the receiver answered with a 2xx status.
    pub sent: u64,
    /// Records dropped because the queue was full (or, with
    /// [`Overflow::Block`](crate::Overflow::Block), stayed full for the whole wait), and, with
    /// a [spool](crate::Builder::spool), the spool could not take them either (full, or the
    /// disk refused: [`last_error`](crate::HttpLogger::last_error) says why).
    pub dropped: u64,
    /// Records given up: rejected by the receiver (a status that is not retried), out of
    /// retries, or still undelivered when the logger shut down. (With a spool, a record out of
    /// retries or undelivered at shutdown waits on disk instead.)
    pub failed: u64,
    /// Records in the queue or being delivered.
    pub queued: u64,
    /// Records of this logger waiting on disk in the [spool](crate::Builder::spool): written
    /// there and not yet delivered from it.
    pub spooled: u64,
    /// Records delivered from the spool: this logger's own, and those an earlier process left
    /// in the same directory (which are not counted in the other fields).
    pub replayed: u64,
    /// Retries: attempts beyond the first, over all records.
    pub retried: u64,
    /// Records whose text was cut at [`Builder::max_record_bytes`](crate::Builder::max_record_bytes)
    /// (they are counted in the other fields as usual).
    pub truncated: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sent: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) truncated: AtomicU64,
    /// This logger's records written to the spool.
    pub(crate) spooled: AtomicU64,
    /// This logger's records finished (sent or failed) from the spool: counted here before
    /// in their outcome.
    pub(crate) unspooled: AtomicU64,
    pub(crate) replayed: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        // Release: the counts a record passes through are seen in the order they were made.
        counter.fetch_add(1, Ordering::AcqRel);
    }

    /// The counters, with `logged` read from `logged` (the next record's sequence number: as
    /// many records were logged as were numbered).
    pub(crate) fn snapshot(&self, logged: &AtomicU64) -> Stats {
        // Read the outcomes before `logged`: a record is counted in `logged` before any outcome,
        // so `queued` never goes below zero.
        let sent = self.sent.load(Ordering::Acquire);
        let dropped = self.dropped.load(Ordering::Acquire);
        let failed = self.failed.load(Ordering::Acquire);
        // After the outcomes: a record leaves the spool's count before it is counted in its
        // outcome, so it is never counted in both.
        let unspooled = self.unspooled.load(Ordering::Acquire);
        let spooled = self
            .spooled
            .load(Ordering::Acquire)
            .saturating_sub(unspooled);
        let logged = logged.load(Ordering::Acquire);
        Stats {
            logged,
            sent,
            dropped,
            failed,
            queued: logged.saturating_sub(sent + dropped + failed + spooled),
            retried: self.retried.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
            spooled,
            replayed: self.replayed.load(Ordering::Relaxed),
        }
    }
}
