//! The `log::Log` implementation: filter, capture, enqueue. Never any I/O.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};

use crate::deadline::deadline_after;
use crate::delivery::progress::Shared;
use crate::delivery::stats::{Counters, Stats};
use crate::delivery::worker::in_worker;
use crate::error::{Error, ErrorKind};
use crate::wire::Method;
use crate::wire::record::Captured;

/// What a `log!` call does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the new record and count it in [`Stats::dropped`](crate::Stats::dropped): the
    /// caller never waits. The default.
    #[default]
    Drop,
    /// Wait for room up to this long, then drop the record as above.
    Block(Duration),
}

/// A [`log::Log`] that sends each record to an HTTP receiver as the form fields of Python's
/// `logging.handlers.HTTPHandler`.
///
/// A `log!` call formats the record, hands it to a bounded queue and returns: it never waits
/// for the network. A background worker thread delivers the records in order over a
/// kept-alive connection.
///
/// Install one with [`HttpLogger::init`] or [`Builder::init`](crate::Builder::init), or [`build`](crate::Builder::build)
/// one to use without installing it (behind `fern`, `log4rs` or a logger of your own, or in
/// tests). Either way, records logged before `main` returns (or before
/// [`std::process::exit`]) are delivered at exit, waiting at most the
/// [shutdown timeout](crate::Builder::shutdown_timeout); dropping a built logger does the same.
///
/// ```no_run
/// use http_logger::{HttpLogger, Method};
///
/// # fn main() -> Result<(), http_logger::Error> {
/// HttpLogger::init("localhost:8000", "/", Method::Post)?;
/// log::info!("user {} logged in", "ann");
/// # Ok(()) }
/// ```
pub struct HttpLogger {
    pub(crate) filter: env_filter::Filter,
    /// Records at or above it carry a backtrace.
    pub(crate) stack_info: log::LevelFilter,
    pub(crate) tx: Sender<Captured>,
    /// With a spool: where a record the queue cannot take is handed over, to be written to
    /// disk on a thread of its own.
    pub(crate) spill: Option<Sender<Captured>>,
    /// How many queued records a record less severe than `WARN` still finds room behind: the
    /// rest of the queue is kept for warnings and errors.
    pub(crate) chatter_room: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) overflow: Overflow,
    pub(crate) max_record_bytes: usize,
    pub(crate) shutdown_timeout: Duration,
    /// For `Debug`: where records go, without any credential.
    pub(crate) destination: String,
    pub(crate) method: Method,
}

/// The installed logger's state, for [`stats()`](crate::stats()) and [`last_error`].
static INSTALLED: OnceLock<Arc<Shared>> = OnceLock::new();

/// Targets whose records are never sent: our own, and our HTTP stack's (ureq-proto dumps the
/// bytes it writes and reads at TRACE, rustls tells of its handshakes).
const OWN_STACK: [&str; 3] = ["http_logger", "ureq_proto", "rustls"];

pub(crate) fn is_own_stack(target: &str) -> bool {
    OWN_STACK.iter().any(|own| {
        target
            .strip_prefix(own)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

impl HttpLogger {
    /// A snapshot of this logger's counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The latest delivery problem: while a record is being retried, why (ending in
    /// `(retrying)`, as `connection refused (retrying)`); else why the last record this logger
    /// gave up (counted in [`Stats::failed`]) was given up: the receiver's status, a connection
    /// or TLS error, a timeout. `None` while there was none. It is not cleared when delivery
    /// recovers: [`stats`](HttpLogger::stats) tells whether records go.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error()
    }

    /// Waits until every record logged before the call is delivered or given up, at most
    /// `timeout`. Returns whether everything was. [`log::Log::flush`] does the same with the
    /// shutdown timeout.
    pub fn flush_timeout(&self, timeout: Duration) -> bool {
        self.shared.flush(deadline_after(timeout))
    }

    /// Numbers a captured record and puts it on the queue; or, past the room chatter may
    /// take, past the queue's bytes, or on a full queue, hands it over for the spool (if there
    /// is one and it has room), else drops and counts it.
    pub(crate) fn enqueue(&self, mut rec: Captured) {
        let counters = &self.shared.counters;
        let seq = self.shared.accept();
        rec.seq = seq;
        if rec.level <= self.stack_info {
            rec.stack = Some(Box::new(std::backtrace::Backtrace::force_capture()));
        }
        if rec.truncated {
            Counters::add(&counters.truncated);
        }
        // Room kept for warnings and errors, when the caller does not wait for room anyway.
        let chatter = rec.level > log::Level::Warn && self.overflow == Overflow::Drop;
        let bytes = rec.bytes();
        let rec = if chatter && self.tx.len() >= self.chatter_room || !self.shared.hold(bytes) {
            rec
        } else {
            let refused = match self.overflow {
                Overflow::Drop => self.tx.try_send(rec).map_err(|e| match e {
                    TrySendError::Full(rec) | TrySendError::Disconnected(rec) => rec,
                }),
                Overflow::Block(wait) => self.tx.send_timeout(rec, wait).map_err(|e| match e {
                    SendTimeoutError::Timeout(rec) | SendTimeoutError::Disconnected(rec) => rec,
                }),
            };
            match refused {
                Ok(()) => return,
                Err(rec) => {
                    self.shared.release(bytes);
                    rec
                }
            }
        };
        if let Some(spill) = &self.spill {
            if self.shared.hold_handed(bytes) {
                match spill.try_send(rec) {
                    Ok(()) => return,
                    Err(_) => self.shared.release_handed(bytes),
                }
            }
            self.shared.note_drop(
                "records wait to be written to the spool past queue_max_bytes: the disk is slower than the records come",
            );
        }
        self.shared.finish(seq, &counters.dropped);
    }

    pub(crate) fn install(self) -> Result<(), Error> {
        let shared = self.shared.clone();
        let level = self.filter.filter();
        log::set_boxed_logger(Box::new(self)).map_err(|e| {
            Error::new(
                ErrorKind::AlreadyInitialized,
                "a logger is already installed for the log crate",
            )
            .with_source(e)
        })?;
        log::set_max_level(level);
        // set_boxed_logger succeeds once per process, so this is the first and only set.
        let _ = INSTALLED.set(shared);
        Ok(())
    }
}

/// A snapshot of the installed logger's counters, or `None` when no `HttpLogger` was installed
/// with [`HttpLogger::init`] or [`Builder::init`](crate::Builder::init).
///
/// ```no_run
/// # fn main() -> Result<(), http_logger::Error> {
/// http_logger::HttpLogger::init("localhost:8000", "/", http_logger::Method::Post)?;
/// log::info!("hello");
/// if let Some(stats) = http_logger::stats() {
///     eprintln!("{} sent, {} dropped, {} failed", stats.sent, stats.dropped, stats.failed);
/// }
/// # Ok(()) }
/// ```
pub fn stats() -> Option<Stats> {
    INSTALLED.get().map(|shared| shared.stats())
}

/// The installed logger's [`HttpLogger::last_error`]: its latest delivery problem. `None` when
/// there was none, or when no `HttpLogger` is installed.
pub fn last_error() -> Option<String> {
    INSTALLED.get().and_then(|shared| shared.last_error())
}

impl log::Log for HttpLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.filter.enabled(metadata) && !is_own_stack(metadata.target()) && !in_worker()
    }

    fn log(&self, record: &log::Record<'_>) {
        if is_own_stack(record.target()) || in_worker() || !self.filter.matches(record) {
            return;
        }
        // Numbered only once captured: a `Display` that panics in the capture must not leave a
        // number that never finishes, for every later flush to wait on.
        self.enqueue(Captured::capture(record, self.max_record_bytes));
    }

    /// Waits until every record logged before the call is delivered or given up, at most the
    /// [shutdown timeout](crate::Builder::shutdown_timeout).
    fn flush(&self) {
        self.shared
            .flush_as_long_as_shutdown(deadline_after(self.shutdown_timeout));
    }
}

impl Drop for HttpLogger {
    /// Delivers what is queued, waiting at most the shutdown timeout, then gives up the rest.
    /// (An installed logger is never dropped: the exit hook does this instead.)
    fn drop(&mut self) {
        let timeout = self.shutdown_timeout;
        self.shared
            .shut_down(deadline_after(timeout), timeout, "the logger was dropped");
        self.shared.abandon();
    }
}

impl fmt::Debug for HttpLogger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpLogger")
            .field("destination", &self.destination)
            .field("method", &self.method)
            .field("filter", &self.filter)
            .field("stack_info", &self.stack_info)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_stack_targets_are_recognised_by_whole_segment() {
        for t in [
            "ureq_proto",
            "ureq_proto::client",
            "rustls::conn",
            "http_logger",
        ] {
            assert!(is_own_stack(t), "{t}");
        }
        for t in [
            "ureq",
            "ureq_protox",
            "my_app::ureq_proto",
            "rustlsish",
            "http_logger_ext",
            "app",
        ] {
            assert!(!is_own_stack(t), "{t}");
        }
    }
}
