//! A [`log::Log`] that sends every record to an HTTP receiver as form fields: a drop-in for
//! Python's [`logging.handlers.HTTPHandler`](https://docs.python.org/3/library/logging.handlers.html#httphandler)
//! that never blocks the caller.
//!
//! Receivers built for Python's handler work unchanged, and get better fields: the message
//! formatted, an error with its whole cause chain, the record's key-values as extra fields.
//!
//! # Quick start
//!
//! ```no_run
//! use http_logger::{HttpLogger, Method};
//!
//! # fn main() -> Result<(), http_logger::Error> {
//! HttpLogger::init("localhost:8000", "/", Method::Post)?;
//! log::info!("user {} logged in", "ann");
//! # Ok(()) }
//! ```
//!
//! Everything else is set on the [`Builder`]:
//!
//! ```no_run
//! use std::time::Duration;
//! use http_logger::{HttpLogger, Method};
//!
//! # fn main() -> Result<(), http_logger::Error> {
//! HttpLogger::builder("logs.internal:8080", "/log?app=billing")
//!     .method(Method::Get)
//!     .level(log::LevelFilter::Debug)
//!     .timeout(Duration::from_secs(3))
//!     .init()?;
//! # Ok(()) }
//! ```
//!
//! # The wire format
//!
//! One request per record. [`Method::Post`] sends an `application/x-www-form-urlencoded`
//! body; [`Method::Get`] sends the same fields as the query string. The fields, in order, are
//! the 21 of a Python 3.12+ `LogRecord` (`name`, `msg`, `args`, `levelname`, `levelno`,
//! `pathname`, `filename`, `module`, `exc_info`, `exc_text`, `stack_info`, `lineno`,
//! `funcName`, `created`, `msecs`, `relativeCreated`, `thread`, `threadName`, `processName`,
//! `process`, `taskName`), then `hostname`, then the record's key-values:
//!
//! - `msg` is the formatted message. An error captured with `:err`
//!   (`log::error!(err:err; "save failed")`) is appended with its causes,
//!   `save failed: could not save: disk full`, and fills `exc_info` (its `Debug`) and
//!   `exc_text` (one cause per line, as `anyhow` prints it). Its own key-value carries the
//!   one-line chain. An `anyhow::Error` is captured through the error it holds:
//!   `log::error!(err:err = *e; "save failed")`.
//! - `args` is `()`; `funcName` is `(unknown function)`; `taskName` and `stack_info` are `None`;
//!   levels are `ERROR`/40, `WARNING`/30, `INFO`/20, `DEBUG`/10, `TRACE`/5.
//! - `created`, `msecs`, `relativeCreated` come from one clock reading and are written as
//!   Python writes floats.
//! - A key-value whose key is a standard field (`name`, `msg`, ..., `hostname`) is sent as
//!   `kv_<key>`: it never overwrites a standard field.
//!
//! # Delivery and shutdown
//!
//! A `log!` call formats the record, puts it on a bounded queue and returns. One worker
//! thread, named `http-logger`, delivers records in order over a kept-alive connection, with
//! a [connect](Builder::connect_timeout) and a [whole-request](Builder::timeout) timeout.
//! A 2xx answer is delivered; a connection error, a timeout, 408, 429 or a 5xx other than 501
//! is retried with capped, jittered exponential backoff (honouring `Retry-After`) within a
//! [retry budget](Builder::retry_budget); any other answer rejects the record at once. An
//! answer that is not HTTP the crate can use (junk, a 101, a head over 64 KiB, a new
//! connection closed with no answer) gets one resend on a new connection, then the record
//! fails. A kept-alive connection is checked before each reuse: bytes the receiver sent unasked
//! since its last answer, or its close, mean a new connection, so no record takes another
//! request's answer. Every request is framed and every answer parsed by ureq's sans-IO core,
//! `ureq-proto`, over plain TCP or rustls. When the
//! queue is full the new record is dropped (or, with [`Overflow::Block`], the caller waits up to
//! a bound). [`Stats`] counts every record: sent, dropped, failed, or still queued. After a
//! loss, the next delivery is followed by one `WARNING` record saying how many were lost and
//! why.
//!
//! [`log::Log::flush`] waits until every record logged before it was delivered or given up,
//! at most the [shutdown timeout](Builder::shutdown_timeout). An installed logger delivers
//! what it holds when `main` returns or [`std::process::exit`] is called, with no call from
//! the program and waiting at most the shutdown timeout. A process killed by a signal loses
//! its queue.
//!
//! The worker's own records, and those of its HTTP stack (targets `ureq_proto`, `rustls`,
//! `http_logger`), are never sent: ureq-proto dumps every byte it writes at TRACE. Nor does
//! any header value given to the builder (credentials included) reach ureq-proto's dump, for
//! this logger or any other: see [`Builder::header`].
//!
//! # Feature flags
//!
//! - `tracing`: [`HttpLayer`] ([`Builder::build_layer`]), a `tracing_subscriber::Layer` that
//!   sends `tracing` events, with their spans' fields, as the same records.
//! - `log4rs`: [`HttpLogger::into_appender`], to use the logger as a
//!   [log4rs](https://docs.rs/log4rs) appender.
//!
//! Without a feature, the logger composes with any other `log` setup: [`Builder::build`] gives
//! an `HttpLogger` that is a plain [`log::Log`], to put in `fern`'s `chain` or behind a logger of
//! your own.
//!
//! # Minimum supported Rust version
//!
//! Rust 1.85 (edition 2024), as ureq-proto requires.

#![deny(missing_docs)]
#![deny(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

// The assembling modules: they only put the others together.
mod builder;
#[cfg(feature = "tracing")]
mod layer;
mod logger;
// The concerns, each in a folder of its own; imports run from the ones above down to these.
mod delivery;
mod transport;
mod wire;
// Leaves.
mod deadline;
mod error;
#[cfg(feature = "log4rs")]
mod log4rs;
mod shutdown;
mod sys;

pub use builder::{
    Builder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_CONNECTIONS, DEFAULT_LEVEL, DEFAULT_MAX_BACKOFF,
    DEFAULT_MAX_RECORD_BYTES, DEFAULT_MIN_BACKOFF, DEFAULT_QUEUE_CAPACITY, DEFAULT_QUEUE_MAX_BYTES,
    DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_TIME, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_SPOOL_MAX_BYTES,
    DEFAULT_TIMEOUT,
};
pub use delivery::stats::Stats;
pub use error::{Error, ErrorKind};
#[cfg(feature = "tracing")]
pub use layer::HttpLayer;
pub use logger::{HttpLogger, Overflow, last_error, stats};
pub use wire::Method;
pub use wire::batch::{Batch, DEFAULT_BATCH_BYTES, DEFAULT_BATCH_DELAY, DEFAULT_BATCH_RECORDS};
pub use wire::fields::Fields;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
