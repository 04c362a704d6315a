//! [`HttpLayer`]: the logger as a `tracing_subscriber::Layer` (feature `tracing`). It keeps
//! the spans' fields, captures each event as a record, and hands it to the same queue, worker,
//! stats and delivery at exit as [`HttpLogger`].

use std::fmt;
use std::time::Duration;

use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::delivery::stats::Stats;
use crate::delivery::worker::in_worker;
use crate::logger::{HttpLogger, is_own_stack};
use crate::wire::event::{self, ScopeSpan, SpanFields};

/// A [`tracing_subscriber::Layer`] that sends each `tracing` event to an HTTP receiver, as the
/// same fields an [`HttpLogger`] sends for a `log` record, with the spans in scope: their
/// fields as extra fields, and `span`, their names from the root joined by `:`. Made by
/// [`Builder::build_layer`](crate::Builder::build_layer), with every setting of the builder:
/// the same queue, worker, [`Stats`], flush and delivery at exit.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> Result<(), http_logger::Error> {
/// let http = http_logger::HttpLogger::builder("localhost:8000", "/").build_layer()?;
/// tracing_subscriber::registry().with(http).init();
/// let _span = tracing::info_span!("request", user = "ann").entered();
/// tracing::warn!(tries = 3, "slow answer");
/// # Ok(()) }
/// ```
///
/// Span creation, entry and exit are not sent; events of the crate, of its HTTP stack and of
/// its worker threads are never sent. With `tracing-subscriber`'s `tracing-log` feature (on by
/// default, and what `.init()` uses to take the `log` crate's records), the records of
/// dependencies that log through `log` reach this layer too, once each: do not install an
/// `HttpLogger` for `log` beside it.
pub struct HttpLayer {
    logger: HttpLogger,
}

impl HttpLayer {
    pub(crate) fn new(logger: HttpLogger) -> HttpLayer {
        HttpLayer { logger }
    }

    /// A snapshot of this layer's counters, as [`HttpLogger::stats`].
    pub fn stats(&self) -> Stats {
        self.logger.stats()
    }

    /// The latest delivery problem, as [`HttpLogger::last_error`].
    pub fn last_error(&self) -> Option<String> {
        self.logger.last_error()
    }

    /// Waits until every event recorded before the call is delivered or given up, at most
    /// `timeout`, as [`HttpLogger::flush_timeout`]. Returns whether everything was.
    pub fn flush_timeout(&self, timeout: Duration) -> bool {
        self.logger.flush_timeout(timeout)
    }

    /// As [`flush_timeout`](HttpLayer::flush_timeout), with the shutdown timeout.
    pub fn flush(&self) -> bool {
        let deadline = crate::deadline::deadline_after(self.logger.shutdown_timeout);
        self.logger.shared.flush_as_long_as_shutdown(deadline)
    }
}

impl HttpLayer {
    /// Whether the level and target filters take a span or an event of this metadata.
    fn enabled(&self, metadata: &tracing_core::Metadata<'_>) -> bool {
        let log_metadata = log::Metadata::builder()
            .level(event::level(metadata.level()))
            .target(metadata.target())
            .build();
        self.logger.filter.enabled(&log_metadata)
    }
}

impl fmt::Debug for HttpLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpLayer")
            .field("logger", &self.logger)
            .finish()
    }
}

impl<S> Layer<S> for HttpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // A span the filters reject is not ours: its fields are not kept, and it is left out
        // of the scope of the events in it.
        if !self.enabled(attrs.metadata()) {
            return;
        }
        if let Some(span) = ctx.span(id) {
            let mut fields = SpanFields::default();
            attrs.record(&mut fields);
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(fields) = extensions.get_mut::<SpanFields>() {
                values.record(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if is_own_stack(metadata.target()) || in_worker() {
            return;
        }
        if !self.enabled(metadata) {
            return;
        }
        // The scope from the root, each span with the fields kept in its extensions.
        let spans: Vec<_> = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().collect())
            .unwrap_or_default();
        let extensions: Vec<_> = spans.iter().map(|span| span.extensions()).collect();
        // Only the spans this layer keeps (those its filters take).
        let scope: Vec<ScopeSpan<'_>> = spans
            .iter()
            .zip(&extensions)
            .filter_map(|(span, ext)| Some((span.name(), ext.get::<SpanFields>()?)))
            .collect();
        let rec = event::capture(
            event,
            metadata,
            normalized.is_some(),
            &scope,
            self.logger.max_record_bytes,
        );
        // A message filter (`filter("info/needle")`) applies to the captured message, as for
        // a `log` record.
        let matches = self.logger.filter.matches(
            &log::Record::builder()
                .args(format_args!("{}", rec.msg()))
                .level(rec.level)
                .target(metadata.target())
                .build(),
        );
        if !matches {
            return;
        }
        self.logger.enqueue(rec);
    }
}
