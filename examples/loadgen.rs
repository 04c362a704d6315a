//! A load generator for `http-logger`: what a `log!` call costs the application, how fast the
//! records reach a receiver, what the loopback allows, and how much memory a dead receiver
//! costs. Start a receiver first (`cargo run --release --example receiver -- --quiet --port 0`
//! prints `listening on http://127.0.0.1:PORT`), then run, in release mode,
//! `cargo run --release --example loadgen -- --host 127.0.0.1:PORT` (or let
//! `bash scripts/bench.sh` do all of it). Every result is printed on stdout as one
//! `key: value` line.
//!
//! Modes:
//!
//! * default: builds a logger (`--connections C`, `--queue Q`, `--method post|get`), logs
//!   `--records N` records (default 200,000) from `--threads T` threads (default 1) as fast as
//!   they can, `log::info!(logger: logger, "user {} logged in after {} tries", name, n)`,
//!   timing every call with an `Instant` pair, then flushes. Prints the per-call cost (median,
//!   p99, max, with the cost of an empty `Instant` pair subtracted, and that cost), the
//!   records delivered per second from the first call to the flush returning, the logger's
//!   stats, and the peak memory (`VmHWM`) with its baseline before the logger was built. The
//!   queue defaults to 4/3 of N records (INFO records may fill three quarters of it) with no
//!   byte bound, so that nothing is dropped: the run measures the caller and the delivery, not
//!   the drop path (`--queue` smaller shows the drops).
//!   With `--secure` the logger sends over HTTPS, trusting the CA in `--ca FILE` (PEM). With
//!   `--record-bytes N` (here and with `--down`) each message carries N bytes more. With
//!   `--batch ndjson|array` records go in batches (the default limits), with `--gzip` bodies
//!   go compressed. Also prints the CPU time the logger's worker threads took per record
//!   (`worker_cpu_ns_per_record`, from `/proc/self/task`).
//! * `--payload FILE`: writes what one real record is on the wire (the form body of a POST,
//!   the `/?fields` target of a GET) to FILE, for a plain HTTP client (`wrk`, in
//!   `scripts/bench.sh`) to send the same bytes: the loopback limit to compare with.
//! * `--down`: logs 1,000,000 records (or `--records N`) at default settings to a port where
//!   nothing listens, and prints the peak memory above the baseline and the stats. The run
//!   then waits the default shutdown timeout (5 s) as the logger is dropped.
//!
//! With `--spool DIR` (either mode) the logger spools to DIR what its queue cannot hold; with
//! `--down` the run then also waits for the records handed to the spool to be on disk, and
//! prints how long that took and the records spooled per second.

use std::io::{self, Write};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use http_logger::{Batch, Fields, HttpLogger, Method};

const USAGE: &str = "usage: loadgen --host HOST:PORT [--records N] [--threads T] [--connections C] [--queue Q] [--method post|get] [--secure --ca FILE] [--record-bytes N] [--batch ndjson|array] [--gzip] [--spool DIR] | loadgen --down [--records N] [--record-bytes N] [--spool DIR] | loadgen --payload FILE [--method post|get]";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Logger,
    Down,
    Payload,
}

struct Options {
    mode: Mode,
    host: Option<String>,
    records: Option<usize>,
    threads: usize,
    connections: usize,
    queue: Option<usize>,
    method: Method,
    /// `--secure`: HTTPS, trusting the CA in `ca`.
    secure: bool,
    ca: Option<String>,
    payload: Option<String>,
    /// `--record-bytes N`: each message carries N more bytes.
    record_bytes: usize,
    /// `--batch ndjson|array`: records go in batches (the default limits).
    batch: Option<Batch>,
    /// `--gzip`: bodies go gzip-compressed.
    gzip: bool,
    /// `--spool DIR`: what the queue cannot hold goes to DIR.
    spool: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        mode: Mode::Logger,
        host: None,
        records: None,
        threads: 1,
        connections: http_logger::DEFAULT_CONNECTIONS,
        queue: None,
        method: Method::Post,
        secure: false,
        ca: None,
        payload: None,
        record_bytes: 0,
        batch: None,
        gzip: false,
        spool: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let number = |text: String| {
            text.replace('_', "")
                .parse::<usize>()
                .map_err(|_| format!("bad number {text:?}"))
        };
        match arg.as_str() {
            "--host" => options.host = Some(value()?),
            "--records" => options.records = Some(number(value()?)?),
            "--threads" => options.threads = number(value()?)?.max(1),
            "--connections" => options.connections = number(value()?)?,
            "--queue" => options.queue = Some(number(value()?)?),
            "--method" => {
                options.method = match value()?.to_ascii_lowercase().as_str() {
                    "post" => Method::Post,
                    "get" => Method::Get,
                    other => return Err(format!("bad method {other:?}: post or get")),
                }
            }
            "--down" => options.mode = Mode::Down,
            "--payload" => {
                options.mode = Mode::Payload;
                options.payload = Some(value()?);
            }
            "--secure" => options.secure = true,
            "--record-bytes" => options.record_bytes = number(value()?)?,
            "--ca" => options.ca = Some(value()?),
            "--batch" => {
                options.batch = Some(match value()?.as_str() {
                    "ndjson" => Batch::ndjson(),
                    "array" => Batch::json_array(),
                    other => return Err(format!("--batch ndjson or array, not {other:?}")),
                });
            }
            "--gzip" => options.gzip = true,
            "--spool" => options.spool = Some(value()?),
            "--help" | "-h" => return Err(String::new()),
            _ => return Err(format!("unknown option {arg:?}")),
        }
    }
    if options.host.is_none() && options.mode == Mode::Logger {
        return Err("--host HOST:PORT is needed".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("loadgen: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The `log!` macros check the global max level before they call a logger.
    log::set_max_level(log::LevelFilter::Info);
    let result = match options.mode {
        Mode::Logger => run_logger(&options),
        Mode::Down => run_down(&options),
        Mode::Payload => write_payload(&options, options.payload.as_deref().unwrap_or_default()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Prints one result line.
fn out(key: &str, value: impl std::fmt::Display) {
    println!("{key}: {value}");
}

const NAMES: [&str; 4] = ["ann", "bob", "carmen", "dmitri"];

/// A kibibyte count from `/proc/self/status` (`VmHWM`, `VmRSS`), 0 where there is none.
fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(key)?.strip_prefix(':')?;
                rest.trim().trim_end_matches("kB").trim().parse().ok()
            })
        })
        .unwrap_or(0)
}

/// The CPU time (user and system) the logger's worker threads (named `http-logger`) took so
/// far, in nanoseconds, from `/proc/self/task/*/stat`; 0 where there is none.
fn worker_cpu_ns() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ...`: the comm may hold spaces; fields after it by position.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != "http-logger" {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the comm.
        let time = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        total += time(11) + time(12);
    }
    total * 1_000_000_000 / ticks
}

/// The median cost of an empty `Instant` pair, in nanoseconds.
fn instant_pair_ns() -> u64 {
    let mut samples: Vec<u64> = (0..100_001)
        .map(|_| {
            let start = Instant::now();
            start.elapsed().as_nanos() as u64
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// The value at `q` (0 to 1) of sorted samples.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

/// Prints the per-call costs: raw, and net of the empty `Instant` pair.
fn print_calls(per_thread: Vec<Vec<u64>>, pair: u64) {
    let mut calls = per_thread.concat();
    calls.sort_unstable();
    out("instant_pair_ns", pair);
    out("call_raw_median_ns", quantile(&calls, 0.5));
    out("call_median_ns", quantile(&calls, 0.5).saturating_sub(pair));
    out("call_p90_ns", quantile(&calls, 0.9).saturating_sub(pair));
    out("call_p99_ns", quantile(&calls, 0.99).saturating_sub(pair));
    out("call_p999_ns", quantile(&calls, 0.999).saturating_sub(pair));
    out(
        "call_max_ns",
        calls.last().copied().unwrap_or(0).saturating_sub(pair),
    );
    let mean = calls.iter().sum::<u64>() as f64 / calls.len().max(1) as f64;
    out(
        "call_mean_ns",
        format!("{:.0}", (mean - pair as f64).max(0.0)),
    );
}

/// Logs `records` records from `threads` threads as fast as they can, timing every call.
/// Returns the call times in nanoseconds, per thread, and when the first call started. The
/// time vectors are given (allocated and touched) by the caller, before its memory baseline,
/// and given back as they are: merging them would allocate.
fn log_records(
    logger: &HttpLogger,
    mut slots: Vec<Vec<u64>>,
    padding: &str,
) -> (Vec<Vec<u64>>, Instant) {
    let threads = slots.len();
    let barrier = Barrier::new(threads + 1);
    let first = Mutex::new(None::<Instant>);
    let all = thread::scope(|scope| {
        let handles: Vec<_> = slots
            .drain(..)
            .enumerate()
            .map(|(t, mut times)| {
                let (barrier, first) = (&barrier, &first);
                thread::Builder::new()
                    .name(format!("app-{t}"))
                    .spawn_scoped(scope, move || {
                        barrier.wait();
                        let start = Instant::now();
                        first.lock().unwrap().get_or_insert(start);
                        for (i, slot) in times.iter_mut().enumerate() {
                            let name = NAMES[i % NAMES.len()];
                            let before = Instant::now();
                            if padding.is_empty() {
                                log::info!(logger: logger, "user {} logged in after {} tries", name, i);
                            } else {
                                log::info!(logger: logger, "user {} logged in after {} tries {}", name, i, padding);
                            }
                            *slot = before.elapsed().as_nanos() as u64;
                        }
                        times
                    })
                    .expect("spawn a logging thread")
            })
            .collect();
        barrier.wait();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a logging thread panicked"))
            .collect()
    });
    let first = first.into_inner().unwrap().unwrap_or_else(Instant::now);
    (all, first)
}

/// Time vectors for `records` calls over `threads` threads, every page touched.
fn time_slots(records: usize, threads: usize) -> Vec<Vec<u64>> {
    (0..threads)
        .map(|t| vec![u64::MAX; records / threads + usize::from(t < records % threads)])
        .collect()
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Post => "post",
        Method::Get => "get",
    }
}

fn run_logger(options: &Options) -> Result<(), String> {
    let host = options.host.as_deref().unwrap_or_default();
    let records = options.records.unwrap_or(200_000);
    // INFO records fill at most three quarters of the queue (the rest is kept for warnings and
    // errors): a queue of 4/3 of the records holds them all.
    let queue = options.queue.unwrap_or(records.max(1) / 3 * 4 + 4);
    let pair = instant_pair_ns();
    let slots = time_slots(records, options.threads);
    let padding = "x".repeat(options.record_bytes);
    let baseline = status_kib("VmHWM");
    let mut builder = HttpLogger::builder(host, "/")
        .method(options.method)
        .connections(options.connections)
        .queue_capacity(queue)
        // The run measures the caller and the delivery, not the byte bound's drops.
        .queue_max_bytes(usize::MAX / 2)
        .shutdown_timeout(Duration::from_secs(300));
    if options.secure {
        builder = builder.secure(true);
        if let Some(ca) = &options.ca {
            let pem = std::fs::read(ca).map_err(|e| format!("cannot read {ca}: {e}"))?;
            builder = builder.add_root_certificate(pem);
        }
    }
    if let Some(batch) = &options.batch {
        builder = builder.batch(batch.clone());
    }
    if let Some(dir) = &options.spool {
        builder = builder.spool(dir);
    }
    let logger = builder
        .gzip(options.gzip)
        .build()
        .map_err(|e| format!("cannot build the logger: {e}"))?;

    let (calls, first) = log_records(&logger, slots, &padding);
    let logged_at = first.elapsed();
    let flushed = logger.flush_timeout(Duration::from_secs(300));
    let total = first.elapsed();
    let peak = status_kib("VmHWM");
    let stats = logger.stats();
    let worker_ns = worker_cpu_ns();

    out("mode", "logger");
    out("records", records);
    out("threads", options.threads);
    out("connections", options.connections);
    out("queue", queue);
    out("method", method_name(options.method));
    out("secure", options.secure);
    out("batch", options.batch.is_some());
    out("gzip", options.gzip);
    out("spool", options.spool.is_some());
    print_calls(calls, pair);
    out("log_phase_s", format!("{:.3}", logged_at.as_secs_f64()));
    out("total_s", format!("{:.3}", total.as_secs_f64()));
    out(
        "delivered_per_s",
        format!("{:.0}", stats.sent as f64 / total.as_secs_f64()),
    );
    out("flushed", flushed);
    out("logged", stats.logged);
    out("sent", stats.sent);
    out("dropped", stats.dropped);
    out("failed", stats.failed);
    out("retried", stats.retried);
    out("all_sent", stats.sent == records as u64);
    out("worker_cpu_ns_per_record", worker_ns / stats.sent.max(1));
    out("baseline_kib", baseline);
    out("peak_kib", peak);
    out("peak_above_baseline_kib", peak.saturating_sub(baseline));
    if let Some(error) = logger.last_error() {
        out("last_error", error);
    }
    Ok(())
}

fn run_down(options: &Options) -> Result<(), String> {
    let records = options.records.unwrap_or(1_000_000);
    // A port where nothing listens: bind one, then let it go.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("cannot find a free port: {e}"))?
        .port();
    let pair = instant_pair_ns();
    let slots = time_slots(records, 1);
    let padding = "x".repeat(options.record_bytes);
    let baseline = status_kib("VmHWM");
    let mut builder = HttpLogger::builder(format!("127.0.0.1:{port}"), "/").method(options.method);
    if let Some(dir) = &options.spool {
        builder = builder.spool(dir);
    }
    let logger = builder
        .build()
        .map_err(|e| format!("cannot build the logger: {e}"))?;
    let (calls, first) = log_records(&logger, slots, &padding);
    let logged_at = first.elapsed();
    if options.spool.is_some() {
        // Until what was handed to the spool is on disk: all but the queue (and the record
        // the worker holds) is spooled or dropped.
        let queue = http_logger::DEFAULT_QUEUE_CAPACITY as u64 + 1;
        let deadline = Instant::now() + Duration::from_secs(600);
        while logger.stats().queued > queue && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let took = first.elapsed();
        let spooled = logger.stats().spooled;
        out("spool_done_s", format!("{:.3}", took.as_secs_f64()));
        out(
            "spooled_per_s",
            format!("{:.0}", spooled as f64 / took.as_secs_f64()),
        );
    }
    let peak = status_kib("VmHWM");
    let stats = logger.stats();

    out("mode", "down");
    out("records", records);
    out("queue", http_logger::DEFAULT_QUEUE_CAPACITY);
    out("method", method_name(options.method));
    print_calls(calls, pair);
    out("log_phase_s", format!("{:.3}", logged_at.as_secs_f64()));
    out("logged", stats.logged);
    out("sent", stats.sent);
    out("dropped", stats.dropped);
    out("failed", stats.failed);
    out("queued", stats.queued);
    out("spooled", stats.spooled);
    out("retried", stats.retried);
    out("baseline_kib", baseline);
    out("peak_kib", peak);
    let above = peak.saturating_sub(baseline);
    out("peak_above_baseline_kib", above);
    out(
        "peak_above_baseline_mib",
        format!("{:.1}", above as f64 / 1024.0),
    );
    let _ = io::stdout().flush();
    let start = Instant::now();
    drop(logger);
    out(
        "shutdown_s",
        format!("{:.3}", start.elapsed().as_secs_f64()),
    );
    Ok(())
}

/// Writes to `path` what one real record is on the wire, for `wrk` to send the same: the form
/// body of a POST, or the target (`/?fields`) of a GET. Captured through a `map_record` hook,
/// the fields encoded with `form_urlencoded`, as the logger encodes them.
fn write_payload(options: &Options, path: &str) -> Result<(), String> {
    let seen: Arc<Mutex<Option<Fields>>> = Arc::default();
    let hook = seen.clone();
    // A closed port: the hook runs before the first attempt, which fails at once.
    let logger = HttpLogger::builder("127.0.0.1:9", "/")
        .method(options.method)
        .retry_budget(0, Duration::ZERO)
        .map_record(move |fields| {
            *hook.lock().unwrap() = Some(fields.clone());
        })
        .build()
        .map_err(|e| format!("cannot build the logger: {e}"))?;
    let (name, tries) = (NAMES[0], 3);
    log::info!(logger: logger, "user {} logged in after {} tries", name, tries);
    logger.flush_timeout(Duration::from_secs(10));
    drop(logger);
    let fields = seen
        .lock()
        .unwrap()
        .take()
        .ok_or("the map_record hook saw no record")?;
    let mut payload = match options.method {
        Method::Post => String::new(),
        Method::Get => "/?".to_owned(),
    };
    {
        let start = payload.len();
        let mut form = form_urlencoded::Serializer::for_suffix(&mut payload, start);
        for (key, value) in fields.iter() {
            form.append_pair(key, value);
        }
    }
    std::fs::write(path, &payload).map_err(|e| format!("cannot write {path}: {e}"))?;
    out("mode", "payload");
    out("payload_bytes", payload.len());
    Ok(())
}
