//! The cost of one `log::info!` call through a built `HttpLogger` while a receiver is up.
//!
//! The receiver is a sink in this process: hyper's HTTP/1.1 server on a tokio runtime of two
//! worker threads, keep-alive, reading each request whole, counting it and answering `200`
//! with `Content-Length: 0`. The worker delivers to it for real while the calls are timed.
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
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt as _, Empty};
use http_logger::HttpLogger;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Records logged between two flushes.
const BATCH: u64 = 4096;
/// The logger's queue: more than a batch, so nothing is dropped.
const QUEUE: usize = 65_536;

/// A count-only HTTP/1.1 sink on 127.0.0.1 (hyper on tokio, on threads of its own); returns
/// its address and its request count.
fn start_sink() -> (SocketAddr, Arc<AtomicU64>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sink")
        .enable_all()
        .build()
        .expect("the sink's runtime");
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind the sink");
    let address = listener.local_addr().expect("sink address");
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    thread::spawn(move || runtime.block_on(accept(listener, counter)));
    (address, count)
}

/// Serves every connection `listener` accepts, each on a task of its own.
async fn accept(listener: TcpListener, count: Arc<AtomicU64>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let count = count.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| receive(request, count.clone()));
            // Keep-alive is hyper's default; an error only ends this connection.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Reads one request whole, counts it, and answers `200` with `Content-Length: 0`.
async fn receive(
    request: Request<Incoming>,
    count: Arc<AtomicU64>,
) -> Result<Response<Empty<Bytes>>, hyper::Error> {
    request.into_body().collect().await?;
    count.fetch_add(1, Ordering::Relaxed);
    Ok(Response::new(Empty::new()))
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
