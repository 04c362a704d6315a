//! The background workers: they take records off the queue, encode and deliver them, retry what
//! is transient (by the [retry policy](super::retry)), and report losses.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::deadline::deadline_after;
use crate::delivery::progress::{LOSS_REPORT_INTERVAL, LossReport, Shared};
use crate::delivery::retry::{Decision, Jitter, RetryPolicy, decide};
use crate::delivery::stats::Counters;
use crate::transport::Transport;
use crate::wire::batch::{Batch, gzip};
use crate::wire::encode::{Encoding, prepare};
use crate::wire::fields::{FieldSource, MapRecord, RecordView, Statics};
use crate::wire::record::Captured;

thread_local! {
    /// Set on the worker threads: anything they log (ureq-proto, rustls, ourselves) is ignored.
    static IN_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is a worker of this crate.
pub(crate) fn in_worker() -> bool {
    IN_WORKER.try_with(Cell::get).unwrap_or(false)
}

/// One worker: a thread with a connection of its own, taking records off the shared queue.
pub(crate) struct Worker {
    pub(crate) rx: Receiver<Captured>,
    pub(crate) transport: Transport,
    pub(crate) encoding: Encoding,
    pub(crate) statics: Arc<Statics>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) retry: RetryPolicy,
    pub(crate) map_record: Option<MapRecord>,
    pub(crate) max_record_bytes: usize,
    /// The payload being sent, reused from one record to the next.
    pub(crate) payload: Vec<u8>,
    /// Whether to take the next record (batching: the next batch's records) while the receiver
    /// answers: only for a worker alone on
    /// its queue, where a record held back behind a retried one would wait anyway. (With
    /// several, another worker takes it.)
    pub(crate) look_ahead: bool,
    /// The next record, taken off the queue and encoded into `ahead_payload` while the
    /// receiver was answering the one before: the encoding costs no time on the round trip.
    pub(crate) ahead: Option<(Captured, Result<(), String>)>,
    pub(crate) ahead_payload: Vec<u8>,
    /// `Some`: records go many to a request (their `encoding` is JSON).
    pub(crate) batch: Option<Batch>,
    /// Whether bodies go gzip-compressed.
    pub(crate) gzip: bool,
    /// Records of the next batch, taken off the queue and encoded while the receiver was
    /// answering the batch before.
    pub(crate) stash: Vec<Item>,
    /// When the stash is a full batch: its body, joined and sealed (gzip) during that wait too,
    /// with the sequence numbers of its first and last record.
    pub(crate) stash_body: Option<(u64, u64, Vec<u8>)>,
}

/// How long a worker filling a batch waits at a time for the next record before it checks
/// whether a flush waits for the batch.
const BATCH_POLL: Duration = Duration::from_millis(10);

/// Why a payload was not delivered.
struct Undelivered {
    reason: String,
    /// The receiver refused what it holds (400, 413, 422): a batch is worth splitting. (A 401,
    /// 403 or 404 refuses any batch: splitting would only multiply the requests.)
    refused: bool,
}

/// A record of a batch: its JSON, or why it has none.
pub(crate) struct Item {
    rec: Captured,
    json: Result<Vec<u8>, String>,
    /// Its bytes leave the queue's count when the item is dropped.
    _held: Held,
}

/// Releases a record's bytes from the queue's count when dropped.
struct Held(Arc<Shared>, usize);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// A record taken for a batch: encoded (through the `map_record` hook) to its JSON.
fn item(
    encoding: &Encoding,
    statics: &Statics,
    map_record: Option<&MapRecord>,
    rec: Captured,
    shared: &Arc<Shared>,
) -> Item {
    let held = Held(shared.clone(), rec.bytes());
    // About what the JSON takes: no growing from nothing.
    let mut json = Vec::with_capacity(rec.bytes() + 512);
    let prepared = catch_unwind(AssertUnwindSafe(|| {
        prepare(encoding, statics, map_record, &rec, &mut json)
    }))
    .unwrap_or_else(|_| Err("encoding the record panicked".to_owned()));
    Item {
        rec,
        json: prepared.map(|()| json),
        _held: held,
    }
}

impl Item {
    /// Its bytes in a batch body: its JSON and the separator after it.
    fn size(&self) -> usize {
        self.json.as_ref().map_or(0, |json| json.len() + 1)
    }
}

/// Compresses the body in `out` in place, when bodies go gzip-compressed.
fn seal(gzip_on: bool, out: &mut Vec<u8>) {
    if gzip_on {
        let body = std::mem::take(out);
        gzip(&body, out);
    }
}

impl Worker {
    pub(crate) fn run(mut self) {
        IN_WORKER.with(|w| w.set(true));
        if let Some(batch) = self.batch.clone() {
            return self.run_batches(&batch);
        }
        let mut jitter = Jitter::new();
        let shared = self.shared.clone();
        loop {
            let (rec, prepared) = match self.ahead.take() {
                Some(ahead) => {
                    std::mem::swap(&mut self.payload, &mut self.ahead_payload);
                    ahead
                }
                None => match self.rx.recv() {
                    // After a shutdown's timeout, given up without being encoded (below).
                    Ok(rec) if self.shared.abandoned() => (rec, Ok(())),
                    Ok(rec) => {
                        let prepared = prepare(
                            &self.encoding,
                            &self.statics,
                            self.map_record.as_ref(),
                            &rec,
                            &mut self.payload,
                        );
                        seal(self.gzip, &mut self.payload);
                        (rec, prepared)
                    }
                    Err(_) => return,
                },
            };
            // The record's memory is the queue's until it is finished (sent, failed).
            let _held = Held(shared.clone(), rec.bytes());
            let counters = &self.shared.counters;
            if self.shared.abandoned() {
                self.shared
                    .record_failure("the logger shut down before it was sent".into());
                self.shared.finish(rec.seq, &counters.failed);
                continue;
            }
            match prepared.and_then(|()| self.deliver(&mut jitter).map_err(|u| u.reason)) {
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

    /// Sends the prepared payload once and says what its outcome means for a record that got
    /// `unusable` unusable answers before. While the receiver answers, takes the next record off
    /// the queue (if one is there and none was taken yet) and encodes it.
    fn send(&mut self, unusable: u32) -> Decision {
        let Worker {
            rx,
            transport,
            encoding,
            statics,
            map_record,
            payload,
            look_ahead,
            ahead,
            ahead_payload,
            gzip,
            batch,
            stash,
            stash_body,
            shared,
            ..
        } = self;
        let mut look_ahead = || {
            if let (Some(batch), true) = (batch.as_ref(), *look_ahead) {
                // The next batch's records, encoded while this one's answer comes.
                let mut bytes: usize = stash.iter().map(Item::size).sum();
                while stash.len() < batch.max_records && bytes <= batch.max_bytes {
                    let Ok(next) = rx.try_recv() else {
                        break;
                    };
                    let next = item(encoding, statics, map_record.as_ref(), next, shared);
                    bytes += next.size();
                    stash.push(next);
                }
                // Full by records (and within max_bytes): it goes as it is, so its body can be
                // made now as well.
                if stash_body.is_none()
                    && stash.len() == batch.max_records
                    && bytes <= batch.max_bytes
                    && stash.iter().all(|item| item.json.is_ok())
                {
                    let mut body = Vec::with_capacity(bytes + stash.len() + 2);
                    let bodies = stash.iter().map(|i| i.json.as_deref().unwrap_or_default());
                    batch.format.join(bodies, &mut body);
                    seal(*gzip, &mut body);
                    let (first, last) = (stash[0].rec.seq, stash[stash.len() - 1].rec.seq);
                    *stash_body = Some((first, last, body));
                }
            } else if batch.is_none() && *look_ahead && ahead.is_none() {
                if let Ok(next) = rx.try_recv() {
                    // Whatever happens here is the next record's, never the one in flight's.
                    let prepared = catch_unwind(AssertUnwindSafe(|| {
                        let prepared =
                            prepare(encoding, statics, map_record.as_ref(), &next, ahead_payload);
                        seal(*gzip, ahead_payload);
                        prepared
                    }))
                    .unwrap_or_else(|_| Err("encoding the record panicked".to_owned()));
                    *ahead = Some((next, prepared));
                }
            }
        };
        decide(transport.send(payload, &mut look_ahead), unusable)
    }

    /// Delivers the prepared payload (one record, or a batch), retrying what is transient
    /// within the retry policy.
    fn deliver(&mut self, jitter: &mut Jitter) -> Result<(), Undelivered> {
        let started = Instant::now();
        let (mut retries, mut unusable) = (0, 0);
        let given_up = |reason| Undelivered {
            reason,
            refused: false,
        };
        loop {
            match self.send(unusable) {
                Decision::Delivered => return Ok(()),
                Decision::Refused { reason, status } => {
                    return Err(Undelivered {
                        reason,
                        refused: matches!(status, 400 | 413 | 422),
                    });
                }
                Decision::Reject { reason } => return Err(given_up(reason)),
                Decision::Resend { .. } => {
                    // At once, on a new connection (the transport closed the old one).
                    unusable += 1;
                    Counters::add(&self.shared.counters.retried);
                }
                Decision::Retry {
                    reason,
                    retry_after,
                } => {
                    retries += 1;
                    if retries > self.retry.attempts {
                        return Err(given_up(format!("{reason} (out of retries)")));
                    }
                    let wait = retry_after.unwrap_or_else(|| self.retry.backoff(retries, jitter));
                    // Saturating: `wait` may be a receiver's absurd `Retry-After`, and an
                    // overflow here would panic the worker and stop all delivery.
                    if started.elapsed().saturating_add(wait) > self.retry.budget {
                        return Err(given_up(format!("{reason} (retry time budget spent)")));
                    }
                    Counters::add(&self.shared.counters.retried);
                    self.shared.note_problem(format!("{reason} (retrying)"));
                    if !self.shared.sleep(wait) {
                        return Err(given_up(format!(
                            "{reason} (shut down before it could be retried)"
                        )));
                    }
                }
            }
        }
    }

    /// The worker of a batching logger: takes a record (waiting as long as it takes), then
    /// more until the batch is full by records or bytes, its first record has waited
    /// `max_delay`, a flush (or a shutdown) waits for it, or the queue is closed; sends it.
    fn run_batches(mut self, batch: &Batch) {
        let mut jitter = Jitter::new();
        let shared = self.shared.clone();
        loop {
            // The stash holds what was past the last batch's limits, then what the worker took
            // while that batch was answered: this batch starts with it.
            let mut items = std::mem::take(&mut self.stash);
            if items.is_empty() {
                match self.rx.recv() {
                    Ok(rec) => items.push(self.item(rec)),
                    Err(_) => return,
                }
            }
            // Saturating: `max_delay` may be `Duration::MAX` (send only by count or size).
            let waited_out = deadline_after(batch.max_delay);
            let mut bytes: usize = items.iter().map(Item::size).sum();
            // The lowest number in the batch: records reach the queue not quite in the order
            // they were numbered, and a flush waits for any of them.
            let mut lowest = items.iter().map(|item| item.rec.seq).min().unwrap_or(0);
            while items.len() < batch.max_records && bytes <= batch.max_bytes {
                // Past the delay, or with a flush waiting: what the queue holds, no more.
                let now = Instant::now();
                let wait = if now >= waited_out || shared.is_urgent(lowest) {
                    Duration::ZERO
                } else {
                    (waited_out - now).min(BATCH_POLL)
                };
                if shared.abandoned() {
                    break;
                }
                let next = if wait.is_zero() {
                    match self.rx.try_recv() {
                        Ok(rec) => Ok(rec),
                        Err(_) => break,
                    }
                } else {
                    self.rx.recv_timeout(wait)
                };
                match next {
                    Ok(rec) => {
                        let item = self.item(rec);
                        bytes += item.size();
                        lowest = lowest.min(item.rec.seq);
                        items.push(item);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            // What is past the limits goes first in the next batch: the records past
            // max_records, and from the first record that takes the batch past max_bytes
            // (unless it is the first).
            let mut keep = items.len().min(batch.max_records);
            let mut total = 0;
            for (n, item) in items[..keep].iter().enumerate() {
                total += item.size();
                if n > 0 && total > batch.max_bytes {
                    keep = n;
                    break;
                }
            }
            // The look-ahead (while this batch is answered) adds to it, within the limits.
            self.stash = items.split_off(keep);
            self.send_batch(batch, items, &mut jitter);
        }
    }

    /// A record taken for a batch.
    fn item(&self, rec: Captured) -> Item {
        item(
            &self.encoding,
            &self.statics,
            self.map_record.as_ref(),
            rec,
            &self.shared,
        )
    }

    /// Sends the records of a batch, in order, and finishes each: a batch the receiver
    /// refuses with a 4xx is split in halves, each sent again, so that only the records it
    /// refuses alone fail.
    fn send_batch(&mut self, batch: &Batch, items: Vec<Item>, jitter: &mut Jitter) {
        let shared = self.shared.clone();
        // Records that could not be encoded fail alone, now. (After a shutdown's abandon, the
        // others fail in the loop below, part by part.)
        let mut ready = Vec::with_capacity(items.len());
        for item in items {
            match &item.json {
                Ok(_) => ready.push(item),
                Err(reason) => {
                    shared.record_failure(reason.clone());
                    shared.finish(item.rec.seq, &shared.counters.failed);
                }
            }
        }
        // Depth first, the first half before the second: the order is kept.
        let mut parts = Vec::with_capacity(8);
        parts.push(0..ready.len());
        while let Some(part) = parts.pop() {
            if part.is_empty() {
                continue;
            }
            if shared.abandoned() {
                for item in &ready[part] {
                    shared.record_failure("the logger shut down before it was sent".into());
                    shared.finish(item.rec.seq, &shared.counters.failed);
                }
                continue;
            }
            let (first, last) = (ready[part.start].rec.seq, ready[part.end - 1].rec.seq);
            // The body made while the batch before was answered is for this batch whole: taken
            // (and dropped if it is for other records) by the first part only, so that while a
            // refused batch is split, the next batch's body made meanwhile is kept.
            let made = if part.len() == ready.len() {
                self.stash_body.take()
            } else {
                None
            };
            match made {
                Some((f, l, body)) if (f, l) == (first, last) => {
                    self.payload = body;
                }
                _ => {
                    let bodies = ready[part.clone()]
                        .iter()
                        .map(|item| item.json.as_deref().unwrap_or_default());
                    batch.format.join(bodies, &mut self.payload);
                    seal(self.gzip, &mut self.payload);
                }
            }
            match self.deliver(jitter) {
                Ok(()) => {
                    self.report_losses();
                    for item in &ready[part] {
                        shared.finish(item.rec.seq, &shared.counters.sent);
                    }
                }
                Err(Undelivered { refused: true, .. }) if part.len() > 1 => {
                    let middle = part.start + part.len() / 2;
                    parts.push(middle..part.end);
                    parts.push(part.start..middle);
                }
                Err(Undelivered { reason, .. }) => {
                    for item in &ready[part] {
                        shared.record_failure(reason.clone());
                        shared.finish(item.rec.seq, &shared.counters.failed);
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
        let view: &dyn FieldSource = &RecordView {
            rec: &notice,
            statics: &self.statics,
        };
        self.encoding.encode(view, &mut self.payload);
        if let Some(batch) = &self.batch {
            // A batch of one, as the receiver takes them.
            let json = std::mem::take(&mut self.payload);
            batch.format.join([&json[..]], &mut self.payload);
        }
        seal(self.gzip, &mut self.payload);
        if decide(self.transport.send(&self.payload, &mut || ()), 0) == Decision::Delivered {
            *losses = LossReport {
                dropped,
                failed,
                last_reason: None,
                last_sent: Some(Instant::now()),
            };
        }
    }
}
