//! The cost of one `log::info!` call through a built `HttpLogger` while a receiver is up.
//!
//! The receiver is a sink in this process: a thread per connection, HTTP/1.1 keep-alive,
//! answering every request `200` with `Content-Length: 0` and counting it. The worker
//! delivers to it for real while the calls are timed.
//!
//! A `log!` call costs about a microsecond and a delivery some tens of microseconds, so a loop
//! of calls would fill any queue and then only measure the drop path. So the calls are timed
//! in batches of [`BATCH`], and between two batches the logger is flushed (untimed): every
//! record of a batch is delivered before the next batch starts. The queue holds
//! [`QUEUE`] records, more than a batch, so no record is ever dropped; the bench checks
//! `stats().dropped == 0` and that the sink received every record. The worker and the sink
//! run during the timed batches, as they would in an application: on a small machine they
//! compete with the caller for the CPU.
//!
//! Benches: `log_call/info_2_args` (the message of the issue, formatted), `info_static` (a
//! message without arguments, kept as a `&'static str`), `info_2_kvs` (two key-values),
//! `debug_filtered_out` (a record below the logger's level: the filter alone). With the
//! `tracing` feature: `tracing_info_2_fields` (an event with two fields through `HttpLayer`)
//! and `tracing_appender_fmt_2_fields` (the same event through `fmt::layer()` and
//! `tracing-appender`'s `non_blocking` writer, to a sink).
//!
//! Run with `cargo bench --bench log_call --features tracing`.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_logger::HttpLogger;

/// Records logged between two flushes.
const BATCH: u64 = 4096;
/// The logger's queue: more than a batch, so nothing is dropped.
const QUEUE: usize = 65_536;

/// A count-only HTTP/1.1 sink on 127.0.0.1; returns its address and its request count.
fn start_sink() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the sink");
    let address = listener.local_addr().expect("sink address");
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counter = counter.clone();
            thread::spawn(move || serve(stream, &counter));
        }
    });
    (address, count)
}

/// Answers every request on one connection with 200 until the client closes it.
fn serve(mut stream: TcpStream, count: &AtomicU64) {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0;
    loop {
        let head_end = loop {
            if let Some(end) = find(&buf[..have], b"\r\n\r\n") {
                break end + 4;
            }
            if !fill(&mut stream, &mut buf, &mut have) {
                return;
            }
        };
        let total = head_end + content_length(&buf[..head_end]);
        while have < total {
            if !fill(&mut stream, &mut buf, &mut have) {
                return;
            }
        }
        buf.copy_within(total..have, 0);
        have -= total;
        count.fetch_add(1, Ordering::Relaxed);
        if stream.write_all(OK).is_err() {
            return;
        }
    }
}

/// Reads more bytes, growing the buffer when it is full. False at the end of the stream.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, have: &mut usize) -> bool {
    if *have == buf.len() {
        buf.resize(buf.len() * 2, 0);
    }
    match stream.read(&mut buf[*have..]) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            *have += n;
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `Content-Length` of a request head, or 0.
fn content_length(head: &[u8]) -> usize {
    let head = String::from_utf8_lossy(head);
    head.split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Times `iters` calls of `call`, in batches with an untimed flush after each.
fn timed_batches(logger: &HttpLogger, iters: u64, call: impl FnMut(u64)) -> Duration {
    batches(
        || logger.flush_timeout(Duration::from_secs(60)),
        iters,
        call,
    )
}

/// Times `iters` calls of `call`, in batches with an untimed `flush` after each.
fn batches(flush: impl Fn() -> bool, iters: u64, mut call: impl FnMut(u64)) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = (iters - done).min(BATCH);
        let start = Instant::now();
        for i in done..done + n {
            call(i);
        }
        total += start.elapsed();
        assert!(flush(), "flushed");
        done += n;
    }
    total
}

fn bench(c: &mut Criterion) {
    let (address, received) = start_sink();
    let logger = HttpLogger::builder(address.to_string(), "/")
        .queue_capacity(QUEUE)
        .shutdown_timeout(Duration::from_secs(60))
        .build()
        .expect("build the logger");
    // The `log!` macros check the global max level before calling the logger.
    log::set_max_level(log::LevelFilter::Trace);
    let names = ["ann", "bob", "carmen", "dmitri"];

    let mut group = c.benchmark_group("log_call");
    group.throughput(Throughput::Elements(1));
    group.bench_function("info_2_args", |b| {
        b.iter_custom(|iters| {
            timed_batches(&logger, iters, |i| {
                let name = names[i as usize % names.len()];
                log::info!(logger: logger, "user {} logged in after {} tries", black_box(name), black_box(i));
            })
        })
    });
    group.bench_function("info_static", |b| {
        b.iter_custom(|iters| {
            timed_batches(&logger, iters, |_| {
                log::info!(logger: logger, "user logged in");
            })
        })
    });
    group.bench_function("info_2_kvs", |b| {
        b.iter_custom(|iters| {
            timed_batches(&logger, iters, |i| {
                let name = names[i as usize % names.len()];
                log::info!(logger: logger, user = black_box(name), tries = black_box(i); "user logged in");
            })
        })
    });
    group.bench_function("debug_filtered_out", |b| {
        b.iter_custom(|iters| {
            timed_batches(&logger, iters, |i| {
                let name = names[i as usize % names.len()];
                log::debug!(logger: logger, "user {} logged in after {} tries", black_box(name), black_box(i));
            })
        })
    });
    #[cfg(feature = "tracing")]
    tracing_benches(&mut group, address, &names);
    group.finish();

    let stats = logger.stats();
    eprintln!(
        "log_call: logged {}, sent {}, dropped {}, failed {}, sink received {}",
        stats.logged,
        stats.sent,
        stats.dropped,
        stats.failed,
        received.load(Ordering::Relaxed)
    );
    assert_eq!(stats.dropped, 0, "no record was dropped");
    assert_eq!(stats.failed, 0, "no record failed");
    assert_eq!(stats.sent, stats.logged, "every record was delivered");
    assert!(
        received.load(Ordering::Relaxed) >= stats.sent,
        "the sink received every record"
    );
}

/// The same call through `tracing`: an event with two fields through `HttpLayer` (the layer
/// alone in a registry, as `info_2_kvs` has the logger alone), and the same event through
/// `fmt::layer()` writing to `tracing-appender`'s `non_blocking` writer (blocking when full,
/// so no line is dropped; it writes to a sink), the usual way to log off the caller's thread.
#[cfg(feature = "tracing")]
fn tracing_benches(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    address: SocketAddr,
    names: &[&str],
) {
    use tracing_subscriber::prelude::*;
    let layer = HttpLogger::builder(address.to_string(), "/")
        .queue_capacity(QUEUE)
        .shutdown_timeout(Duration::from_secs(60))
        .build_layer()
        .expect("build the layer");
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let flush = || {
        dispatch
            .downcast_ref::<http_logger::HttpLayer>()
            .expect("the layer")
            .flush_timeout(Duration::from_secs(60))
    };
    tracing::dispatcher::with_default(&dispatch, || {
        group.bench_function("tracing_info_2_fields", |b| {
            b.iter_custom(|iters| {
                batches(flush, iters, |i| {
                    let name = names[i as usize % names.len()];
                    tracing::info!(
                        user = black_box(name),
                        tries = black_box(i),
                        "user logged in"
                    );
                })
            })
        });
    });
    let stats = dispatch
        .downcast_ref::<http_logger::HttpLayer>()
        .expect("the layer")
        .stats();
    assert_eq!(
        stats.dropped + stats.failed,
        0,
        "every event delivered: {stats:?}"
    );

    let (writer, _guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::sink());
    let fmt = tracing::Dispatch::new(
        tracing_subscriber::registry().with(tracing_subscriber::fmt::layer().with_writer(writer)),
    );
    tracing::dispatcher::with_default(&fmt, || {
        group.bench_function("tracing_appender_fmt_2_fields", |b| {
            b.iter_custom(|iters| {
                batches(
                    || true,
                    iters,
                    |i| {
                        let name = names[i as usize % names.len()];
                        tracing::info!(
                            user = black_box(name),
                            tries = black_box(i),
                            "user logged in"
                        );
                    },
                )
            })
        });
    });
}

criterion_group! {
    name = benches;
    // `iter_custom` sizes the samples from the wall time of a whole batch, flush included
    // (every call is also delivered, at some tens of microseconds): 3 s give each bench some
    // tens of thousands of calls, in samples of tens to thousands of calls.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
