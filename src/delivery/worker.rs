//! The background workers: they take records off the queue, encode and deliver them, retry what
//! is transient (by the [retry policy](super::retry)), and report losses.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::delivery::progress::{LOSS_REPORT_INTERVAL, LossReport, Shared};
use crate::delivery::retry::{Decision, Jitter, RetryPolicy, decide};
use crate::delivery::stats::Counters;
use crate::transport::Transport;
use crate::wire::encode::Encoding;
use crate::wire::fields::{FieldSource, Fields, RecordView, Statics};
use crate::wire::record::Captured;

thread_local! {
    /// Set on the worker threads: anything they log (ureq-proto, rustls, ourselves) is ignored.
    static IN_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is a worker of this crate.
pub(crate) fn in_worker() -> bool {
    IN_WORKER.try_with(Cell::get).unwrap_or(false)
}

/// The user's `map_record` hook.
pub(crate) type MapRecord = Arc<dyn Fn(&mut Fields) + Send + Sync>;

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
    /// Whether to take the next record while the receiver answers: only for a worker alone on
    /// its queue, where a record held back behind a retried one would wait anyway. (With
    /// several, another worker takes it.)
    pub(crate) look_ahead: bool,
    /// The next record, taken off the queue and encoded into `ahead_payload` while the
    /// receiver was answering the one before: the encoding costs no time on the round trip.
    pub(crate) ahead: Option<(Captured, Result<(), String>)>,
    pub(crate) ahead_payload: Vec<u8>,
}

/// Releases a record's bytes from the queue's count when dropped.
struct Held<'a>(&'a Shared, usize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.release(self.1);
    }
}

/// Encodes `rec` into `out` as `encoding` says, through the `map_record` hook if there is one.
fn prepare(
    encoding: &Encoding,
    statics: &Statics,
    map_record: Option<&MapRecord>,
    rec: &Captured,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let view = RecordView { rec, statics };
    let Some(map) = map_record else {
        encoding.encode(&view, out);
        return Ok(());
    };
    let mut fields = Fields::collect(&view);
    catch_unwind(AssertUnwindSafe(|| map(&mut fields)))
        .map_err(|_| "the map_record hook panicked".to_owned())?;
    encoding.encode(&fields, out);
    Ok(())
}

impl Worker {
    pub(crate) fn run(mut self) {
        IN_WORKER.with(|w| w.set(true));
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
                        (rec, prepared)
                    }
                    Err(_) => return,
                },
            };
            // The record's memory is the queue's until it is finished (sent, failed).
            let _held = Held(&shared, rec.bytes());
            let counters = &self.shared.counters;
            if self.shared.abandoned() {
                self.shared
                    .record_failure("the logger shut down before it was sent".into());
                self.shared.finish(rec.seq, &counters.failed);
                continue;
            }
            match prepared.and_then(|()| self.deliver(&mut jitter)) {
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
            ..
        } = self;
        let mut look_ahead = || {
            if *look_ahead && ahead.is_none() {
                if let Ok(next) = rx.try_recv() {
                    // Whatever happens here is the next record's, never the one in flight's.
                    let prepared = catch_unwind(AssertUnwindSafe(|| {
                        prepare(encoding, statics, map_record.as_ref(), &next, ahead_payload)
                    }))
                    .unwrap_or_else(|_| Err("encoding the record panicked".to_owned()));
                    *ahead = Some((next, prepared));
                }
            }
        };
        decide(transport.send(payload, &mut look_ahead), unusable)
    }

    /// Delivers one record, retrying what is transient within the retry policy.
    fn deliver(&mut self, jitter: &mut Jitter) -> Result<(), String> {
        let started = Instant::now();
        let (mut retries, mut unusable) = (0, 0);
        loop {
            match self.send(unusable) {
                Decision::Delivered => return Ok(()),
                Decision::Reject { reason } => return Err(reason),
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
                        return Err(format!("{reason} (out of retries)"));
                    }
                    let wait = retry_after.unwrap_or_else(|| self.retry.backoff(retries, jitter));
                    // Saturating: `wait` may be a receiver's absurd `Retry-After`, and an
                    // overflow here would panic the worker and stop all delivery.
                    if started.elapsed().saturating_add(wait) > self.retry.budget {
                        return Err(format!("{reason} (retry time budget spent)"));
                    }
                    Counters::add(&self.shared.counters.retried);
                    self.shared.note_problem(format!("{reason} (retrying)"));
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
        let view: &dyn FieldSource = &RecordView {
            rec: &notice,
            statics: &self.statics,
        };
        self.encoding.encode(view, &mut self.payload);
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
