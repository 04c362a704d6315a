//! The background workers: they take records off the queue, encode and deliver them, retry what
//! is transient (by the [retry policy](super::retry)), and report losses.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use crate::deadline::deadline_after;
use crate::delivery::progress::{LOSS_REPORT_INTERVAL, LossReport, Shared};
use crate::delivery::retry::{Decision, Jitter, RetryPolicy, decide};
use crate::delivery::spool::{Replayed, Spool, Taken};
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
    /// With a spool: what it holds is replayed while the queue is empty.
    pub(crate) spool: Option<Arc<Spool>>,
    /// Whether spooled records are being delivered (no look-ahead meanwhile: what it would
    /// take goes after them).
    pub(crate) replaying: bool,
    /// No replay before this: the receiver did not take the last replayed records.
    pub(crate) replay_after: Instant,
    /// Whether the next turn of the delivery loop is a replay's, while the spool holds
    /// records: every other one is, so steady traffic never holds a backlog back.
    pub(crate) replay_next: bool,
}

/// How long a worker filling a batch waits at a time for the next record before it checks
/// whether a flush waits for the batch.
const BATCH_POLL: Duration = Duration::from_millis(10);

/// Why a record was not sent, when the logger shut down before it was.
const SHUT_DOWN: &str = "the logger shut down before it was sent";

/// How often a worker whose queue is empty checks whether the spool holds records to replay.
const SPOOL_POLL: Duration = Duration::from_millis(100);

/// How long replay pauses after the receiver did not take a replayed record.
const REPLAY_PAUSE: Duration = Duration::from_secs(1);

/// Why a payload was not delivered.
struct Undelivered {
    reason: String,
    /// Whether the receiver refused it for good, or it could not be sent in time (the
    /// receiver down, out of retries, a shutdown).
    why: Why,
}

#[derive(Clone, Copy)]
enum Why {
    /// Refused by the receiver with a status that is not retried. `splittable`: it refused
    /// what the payload holds (400, 413, 422), so a batch is worth splitting, and a record
    /// refused alone is refused for what it is. (A 401, 403 or 404 refuses any record alike:
    /// splitting would only multiply the requests.)
    Refused { splittable: bool },
    /// An answer that is not HTTP we can use, or no answer, twice; or a TLS failure.
    Rejected,
    /// The record itself cannot be sent: its fields could not be made.
    Bad,
    /// Not sent in time (the receiver down, out of retries, a shutdown).
    Unsent,
}

/// What became of a record.
#[derive(Clone, Copy)]
enum Outcome<'a> {
    Sent,
    /// Not delivered, and not to be sent again as it is: it fails. With a spool, only a
    /// refusal of the record itself is final (`of_record`); a refusal of any record (a 401, a
    /// 404, a TLS failure) keeps it on disk.
    Refused {
        reason: &'a str,
        of_record: bool,
    },
    Unsent(&'a str),
}

impl Undelivered {
    fn outcome(&self) -> Outcome<'_> {
        let reason = &self.reason;
        match self.why {
            Why::Refused { splittable } => Outcome::Refused {
                reason,
                of_record: splittable,
            },
            Why::Bad => Outcome::Refused {
                reason,
                of_record: true,
            },
            Why::Rejected => Outcome::Refused {
                reason,
                of_record: false,
            },
            Why::Unsent => Outcome::Unsent(reason),
        }
    }
}

/// A record being delivered: one the logger took, or one the spool gave back.
pub(crate) enum Origin {
    Live(Captured),
    Replayed(Replayed),
}

/// A record of a batch: its JSON, or why it has none.
pub(crate) struct Item {
    origin: Origin,
    json: Result<Vec<u8>, String>,
    /// A live record's bytes leave the queue's count when the item is dropped.
    _held: Option<Held>,
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
        origin: Origin::Live(rec),
        json: prepared.map(|()| json),
        _held: Some(held),
    }
}

impl Item {
    /// Its place in the order records were logged; a replayed record comes after every
    /// other.
    fn seq(&self) -> u64 {
        match &self.origin {
            Origin::Live(rec) => rec.seq,
            Origin::Replayed(_) => u64::MAX,
        }
    }

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

/// The thread that writes to the spool the records the callers handed over (the queue could
/// not take them), until the logger is dropped.
pub(crate) fn run_spill(shared: Arc<Shared>, handed: Receiver<Captured>) {
    IN_WORKER.with(|w| w.set(true));
    let mut recs = Vec::with_capacity(SPILL_RECORDS);
    while let Ok(rec) = handed.recv() {
        // What else waits, up to a write's worth: one write for all of it.
        let mut bytes = rec.bytes();
        recs.push(rec);
        while recs.len() < SPILL_RECORDS && bytes < SPILL_BYTES {
            let Ok(rec) = handed.try_recv() else {
                break;
            };
            bytes += rec.bytes();
            recs.push(rec);
        }
        let refs: Vec<&Captured> = recs.iter().collect();
        shared.spill(&refs, "", true);
        drop(refs);
        recs.clear();
    }
}

/// The most records, and about the most bytes, the spool thread writes at once.
const SPILL_RECORDS: usize = 1024;
const SPILL_BYTES: usize = 1 << 20;

impl Worker {
    pub(crate) fn run(mut self) {
        IN_WORKER.with(|w| w.set(true));
        if let Some(batch) = self.batch.clone() {
            return self.run_batches(&batch);
        }
        let mut jitter = Jitter::new();
        let shared = self.shared.clone();
        loop {
            self.take_turns(&mut jitter);
            let (rec, prepared) = match self.ahead.take() {
                Some(ahead) => {
                    std::mem::swap(&mut self.payload, &mut self.ahead_payload);
                    ahead
                }
                None => match self.next_record(&mut jitter) {
                    // After a shutdown's timeout, given up (or spooled) without being encoded
                    // (below).
                    Some(rec) if self.shared.abandoned() => (rec, Ok(())),
                    Some(rec) => {
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
                    None => return,
                },
            };
            // The record's memory is the queue's until it is finished (sent, failed, spooled).
            let _held = Held(shared.clone(), rec.bytes());
            if self.shared.abandoned() {
                self.settle_live(&rec, Outcome::Unsent(SHUT_DOWN));
                continue;
            }
            match self.deliver_made(prepared, &mut jitter) {
                Ok(()) => {
                    // Before the record is marked finished, so a flush waits for the report.
                    self.report_losses();
                    self.settle_live(&rec, Outcome::Sent);
                }
                Err(u) => self.settle_live(&rec, u.outcome()),
            }
        }
    }

    /// The next record off the queue, waiting as long as it takes; with a spool, what it holds
    /// is replayed while the queue is empty. `None`: the queue is closed (or, with a spool,
    /// the logger shut down).
    fn next_record(&mut self, jitter: &mut Jitter) -> Option<Captured> {
        let Some(spool) = self.spool.clone() else {
            return self.rx.recv().ok();
        };
        loop {
            if self.shared.abandoned() {
                // Shut down: the shutdown spools what the queue holds, in order, itself.
                return None;
            }
            match self.rx.try_recv() {
                Ok(rec) => return Some(rec),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            if self.replay_due(&spool) {
                self.replay(&spool, jitter);
                continue;
            }
            match self.rx.recv_timeout(SPOOL_POLL) {
                Ok(rec) => return Some(rec),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Whether to replay now: the spool holds records, and the receiver took the last ones
    /// (or a pause has passed since it did not).
    fn replay_due(&self, spool: &Spool) -> bool {
        !self.shared.abandoned() && Instant::now() >= self.replay_after && spool.has_backlog()
    }

    /// Every other turn of the delivery loop, while the spool holds records: a replay, so that
    /// records that keep coming never hold a backlog back.
    fn take_turns(&mut self, jitter: &mut Jitter) {
        let Some(spool) = &self.spool else {
            return;
        };
        self.replay_next = !self.replay_next;
        if self.replay_next && self.replay_due(spool) {
            let spool = spool.clone();
            self.replay(&spool, jitter);
        }
    }

    /// Delivers what the spool gives back (a batch's worth, or one record), oldest first.
    fn replay(&mut self, spool: &Spool, jitter: &mut Jitter) {
        let (records, bytes) = match &self.batch {
            Some(batch) => (batch.max_records, batch.max_bytes),
            None => (1, usize::MAX),
        };
        let Taken {
            records: taken,
            lost,
        } = spool.take(records, bytes);
        for seq in lost {
            // Corrupt on disk: what it held is gone.
            let counters = &self.shared.counters;
            self.shared
                .record_failure("a spooled record was corrupt on disk".into());
            Counters::add(&counters.unspooled);
            self.shared.finish(seq, &counters.dropped);
        }
        if taken.is_empty() {
            // A backlog that cannot be read now (a read error): later.
            self.replay_after = deadline_after(REPLAY_PAUSE);
            return;
        }
        self.replaying = true;
        if let Some(batch) = self.batch.clone() {
            let items = taken
                .into_iter()
                .map(|r| {
                    let mut json = Vec::with_capacity(r.fields.len() + 64);
                    let made = Encoding::Json.encode_stored(r.stored, &r.fields, &mut json);
                    Item {
                        origin: Origin::Replayed(r),
                        json: made.map(|()| json),
                        _held: None,
                    }
                })
                .collect();
            self.send_batch(&batch, items, jitter);
        } else {
            for r in taken {
                let made = self
                    .encoding
                    .encode_stored(r.stored, &r.fields, &mut self.payload);
                let made = made.map(|()| seal(self.gzip, &mut self.payload));
                match self.deliver_made(made, jitter) {
                    Ok(()) => {
                        // Accepted before the report's request: a shutdown waiting for the
                        // replay need not wait for the report too.
                        self.settle_replayed(&r, Outcome::Sent);
                        self.report_losses();
                    }
                    Err(u) => self.settle_replayed(&r, u.outcome()),
                }
            }
        }
        self.replaying = false;
    }

    /// Counts a record the logger took in its outcome and marks it finished; one not sent in
    /// time goes to the spool, if there is one.
    fn settle_live(&self, rec: &Captured, outcome: Outcome<'_>) {
        let shared = &self.shared;
        match outcome {
            Outcome::Sent => shared.finish(rec.seq, &shared.counters.sent),
            Outcome::Refused { reason, of_record } if of_record || self.spool.is_none() => {
                shared.record_failure(reason.to_owned());
                shared.finish(rec.seq, &shared.counters.failed);
            }
            Outcome::Refused { reason, .. } | Outcome::Unsent(reason) => {
                shared.spill(&[rec], reason, false);
            }
        }
    }

    /// A record the spool gave back: delivered or refused, it leaves the spool (and, if it is
    /// this logger's, is counted in its outcome); not sent in time, it goes back, and replay
    /// pauses.
    fn settle_replayed(&mut self, r: &Replayed, outcome: Outcome<'_>) {
        let (Some(spool), shared) = (&self.spool, &self.shared) else {
            return;
        };
        let counters = &shared.counters;
        let finished = match outcome {
            Outcome::Sent => {
                Counters::add(&counters.replayed);
                &counters.sent
            }
            Outcome::Refused {
                reason,
                of_record: true,
            } => {
                shared.record_failure(reason.to_owned());
                &counters.failed
            }
            Outcome::Refused { reason, .. } | Outcome::Unsent(reason) => {
                shared.note_problem(format!("{reason} (kept in the spool)"));
                spool.put_back(r.clone());
                self.replay_after = deadline_after(REPLAY_PAUSE);
                return;
            }
        };
        spool.accept(r);
        if let Some(seq) = r.seq {
            // Out of the spool's count before in its outcome's: never counted in both.
            Counters::add(&counters.unspooled);
            shared.finish(seq, finished);
        }
    }

    /// A record of a batch, settled as its origin says.
    fn settle(&mut self, item: &Item, outcome: Outcome<'_>) {
        match &item.origin {
            Origin::Live(rec) => self.settle_live(rec, outcome),
            Origin::Replayed(r) => self.settle_replayed(r, outcome),
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
            replaying,
            ..
        } = self;
        // While replaying, what the queue holds waits: it goes after the spooled records.
        let look_ahead = &(*look_ahead && !*replaying);
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
                    let (first, last) = (stash[0].seq(), stash[stash.len() - 1].seq());
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

    /// Delivers the payload made for a record, or says why none could be made.
    fn deliver_made(
        &mut self,
        made: Result<(), String>,
        jitter: &mut Jitter,
    ) -> Result<(), Undelivered> {
        match made {
            Ok(()) => self.deliver(jitter),
            Err(reason) => Err(Undelivered {
                reason,
                why: Why::Bad,
            }),
        }
    }

    /// Delivers the prepared payload (one record, or a batch), retrying what is transient
    /// within the retry policy.
    fn deliver(&mut self, jitter: &mut Jitter) -> Result<(), Undelivered> {
        let started = Instant::now();
        let (mut retries, mut unusable) = (0, 0);
        let given_up = |reason| Undelivered {
            reason,
            why: Why::Unsent,
        };
        loop {
            match self.send(unusable) {
                Decision::Delivered => return Ok(()),
                Decision::Refused { reason, status } => {
                    return Err(Undelivered {
                        reason,
                        why: Why::Refused {
                            splittable: matches!(status, 400 | 413 | 422),
                        },
                    });
                }
                Decision::Reject { reason } => {
                    return Err(Undelivered {
                        reason,
                        why: Why::Rejected,
                    });
                }
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
            self.take_turns(&mut jitter);
            // The stash holds what was past the last batch's limits, then what the worker took
            // while that batch was answered: this batch starts with it.
            let mut items = std::mem::take(&mut self.stash);
            if items.is_empty() {
                match self.next_record(&mut jitter) {
                    Some(rec) => items.push(self.item(rec)),
                    None => return,
                }
            }
            // Saturating: `max_delay` may be `Duration::MAX` (send only by count or size).
            let waited_out = deadline_after(batch.max_delay);
            let mut bytes: usize = items.iter().map(Item::size).sum();
            // The lowest number in the batch: records reach the queue not quite in the order
            // they were numbered, and a flush waits for any of them.
            let mut lowest = items.iter().map(Item::seq).min().unwrap_or(0);
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
                        lowest = lowest.min(item.seq());
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

    /// Sends the records of a batch, in order, and settles each: a batch the receiver
    /// refuses with a 400, 413 or 422 is split in halves, each sent again, so that only the
    /// records it refuses alone fail.
    fn send_batch(&mut self, batch: &Batch, items: Vec<Item>, jitter: &mut Jitter) {
        let shared = self.shared.clone();
        // Records that could not be encoded fail alone, now. (After a shutdown's abandon, the
        // others are settled in the loop below, part by part.)
        let mut ready = Vec::with_capacity(items.len());
        for item in items {
            match &item.json {
                Ok(_) => ready.push(item),
                Err(reason) => {
                    let reason = reason.clone();
                    self.settle(
                        &item,
                        Outcome::Refused {
                            reason: &reason,
                            of_record: true,
                        },
                    );
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
                    self.settle(item, Outcome::Unsent(SHUT_DOWN));
                }
                continue;
            }
            let (first, last) = (ready[part.start].seq(), ready[part.end - 1].seq());
            // The body made while the batch before was answered is for this batch whole: taken
            // (and dropped if it is for other records) by the first part only, so that while a
            // refused batch is split, the next batch's body made meanwhile is kept. (Replayed
            // records never have one.)
            let made = if part.len() == ready.len() && !self.replaying {
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
                Ok(()) if self.replaying => {
                    // Accepted before the report's request (see `replay`).
                    for item in &ready[part] {
                        self.settle(item, Outcome::Sent);
                    }
                    self.report_losses();
                }
                Ok(()) => {
                    self.report_losses();
                    for item in &ready[part] {
                        self.settle(item, Outcome::Sent);
                    }
                }
                Err(Undelivered {
                    why: Why::Refused { splittable: true },
                    ..
                }) if part.len() > 1 => {
                    let middle = part.start + part.len() / 2;
                    parts.push(middle..part.end);
                    parts.push(part.start..middle);
                }
                Err(u) => {
                    for item in &ready[part] {
                        self.settle(item, u.outcome());
                    }
                }
            }
        }
    }

    /// After a delivery: when records were lost since the last report, tell the receiver with
    /// one WARNING record. It is not counted in [`Stats`]; if it cannot be sent, a later
    /// delivery tries again. One worker reports at a time.
    fn report_losses(&mut self) {
        // One report at a time, and `losses` not held across the request: whoever records a
        // failure meanwhile (the spool's thread, a shutdown) never waits for the network.
        if self.shared.reporting.swap(true, Ordering::AcqRel) {
            return;
        }
        struct Done<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let shared = self.shared.clone();
        let _done = Done(&shared.reporting);
        let losses = shared.losses.lock().unwrap_or_else(|e| e.into_inner());
        let c = &self.shared.counters;
        let dropped = c.dropped.load(Ordering::Relaxed);
        let failed = c.failed.load(Ordering::Relaxed);
        let spooled = c.spooled.load(Ordering::Relaxed);
        let (new_dropped, new_failed) = (dropped - losses.dropped, failed - losses.failed);
        let new_spooled = spooled - losses.spooled;
        if new_dropped + new_failed + new_spooled == 0
            || losses
                .last_sent
                .is_some_and(|t| t.elapsed() < LOSS_REPORT_INTERVAL)
        {
            return;
        }
        let mut msg = if new_dropped + new_failed > 0 {
            let full = if self.spool.is_some() {
                "queue and spool full"
            } else {
                "queue full"
            };
            format!(
                "http-logger lost {} records: {new_dropped} dropped ({full}), {new_failed} failed",
                new_dropped + new_failed
            )
        } else {
            "http-logger lost no records".to_owned()
        };
        if let (true, Some(reason)) = (new_failed > 0, &losses.last_reason) {
            msg.push_str(&format!(" (last error: {reason})"));
        }
        if new_spooled > 0 {
            msg.push_str(&format!(
                "; {new_spooled} records went to the spool on disk (the queue was full or the receiver did not take them in time)"
            ));
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
        drop(losses);
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
            let mut losses = shared.losses.lock().unwrap_or_else(|e| e.into_inner());
            // A failure recorded during the request keeps its reason for the next report.
            let reason = if c.failed.load(Ordering::Relaxed) == failed {
                None
            } else {
                losses.last_reason.take()
            };
            *losses = LossReport {
                dropped,
                failed,
                spooled,
                last_reason: reason,
                last_sent: Some(Instant::now()),
            };
        }
    }
}
