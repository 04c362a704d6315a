//! A built logger for fault tests: small backoffs and short timeouts, so that a fault costs
//! little time, and bounded waits on it.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use http_logger::{Builder, HttpLogger};

/// The most a flush, a receive or a drop may take before a test calls it a hang.
pub const WAIT: Duration = Duration::from_secs(20);

/// A builder with small backoffs and short timeouts.
pub fn fast(host: impl Into<String>) -> Builder {
    // The `log!(logger: ...)` macros check the global max level first.
    log::set_max_level(log::LevelFilter::Trace);
    HttpLogger::builder(host, "/")
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .retry_budget(5, Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .shutdown_timeout(Duration::from_secs(2))
}

/// Flushes, and fails if that does not finish within [`WAIT`].
pub fn flushed(logger: &HttpLogger) {
    assert!(
        logger.flush_timeout(WAIT),
        "flush did not finish: {:?}",
        logger.stats()
    );
}

/// Drops the logger on another thread and fails if that does not return within [`WAIT`].
pub fn drop_bounded(logger: HttpLogger) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        drop(logger);
        let _ = tx.send(());
    });
    rx.recv_timeout(WAIT).expect("dropping the logger hung");
}
