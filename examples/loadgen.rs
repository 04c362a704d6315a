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
//!   queue defaults to N records so that nothing is dropped: the run measures the caller and
//!   the delivery, not the drop path (`--queue` smaller shows the drops).
//! * `--plain`: the loopback limit. Captures the encoded body of one real record (through a
//!   `map_record` hook) and sends it N times back to back over C kept-alive connections with
//!   a minimal HTTP/1.1 client, one thread per connection (write the request, read the head
//!   and the `Content-Length` body of the answer, repeat), the same request head ureq sends.
//!   With `--split`, the head and the body go in two writes, as ureq writes them.
//! * `--down`: logs 1,000,000 records (or `--records N`) at default settings to a port where
//!   nothing listens, and prints the peak memory above the baseline and the stats. The run
//!   then waits the default shutdown timeout (5 s) as the logger is dropped.
//! * `--sink`: a count-only HTTP/1.1 receiver, for comparison with the receiver example:
//!   thread per connection, answers 200 with `Content-Length: 0`, prints
//!   `listening on http://127.0.0.1:PORT` on stderr (`--port P`, default 0) and
//!   `received N records` once a second when the count changed.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use http_logger::{Fields, HttpLogger, Method};

const USAGE: &str = "usage: loadgen --host HOST:PORT [--records N] [--threads T] [--connections C] [--queue Q] [--method post|get] [--plain [--split] | --down] | loadgen --sink [--port P]";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Logger,
    Plain,
    Down,
    Sink,
}

struct Options {
    mode: Mode,
    host: Option<String>,
    records: Option<usize>,
    threads: usize,
    connections: usize,
    queue: Option<usize>,
    method: Method,
    port: u16,
    split: bool,
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
        port: 0,
        split: false,
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
            "--port" => {
                options.port = u16::try_from(number(value()?)?).map_err(|_| "bad port")?;
            }
            "--method" => {
                options.method = match value()?.to_ascii_lowercase().as_str() {
                    "post" => Method::Post,
                    "get" => Method::Get,
                    other => return Err(format!("bad method {other:?}: post or get")),
                }
            }
            "--plain" => options.mode = Mode::Plain,
            "--down" => options.mode = Mode::Down,
            "--sink" => options.mode = Mode::Sink,
            "--split" => options.split = true,
            "--help" | "-h" => return Err(String::new()),
            _ => return Err(format!("unknown option {arg:?}")),
        }
    }
    if options.host.is_none() && matches!(options.mode, Mode::Logger | Mode::Plain) {
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
        Mode::Plain => run_plain(&options),
        Mode::Down => run_down(&options),
        Mode::Sink => run_sink(options.port),
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
fn log_records(logger: &HttpLogger, mut slots: Vec<Vec<u64>>) -> (Vec<Vec<u64>>, Instant) {
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
                            log::info!(logger: logger, "user {} logged in after {} tries", name, i);
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
    let queue = options.queue.unwrap_or(records.max(1));
    let pair = instant_pair_ns();
    let slots = time_slots(records, options.threads);
    let baseline = status_kib("VmHWM");
    let logger = HttpLogger::builder(host, "/")
        .method(options.method)
        .connections(options.connections)
        .queue_capacity(queue)
        .shutdown_timeout(Duration::from_secs(300))
        .build()
        .map_err(|e| format!("cannot build the logger: {e}"))?;

    let (calls, first) = log_records(&logger, slots);
    let logged_at = first.elapsed();
    let flushed = logger.flush_timeout(Duration::from_secs(300));
    let total = first.elapsed();
    let peak = status_kib("VmHWM");
    let stats = logger.stats();

    out("mode", "logger");
    out("records", records);
    out("threads", options.threads);
    out("connections", options.connections);
    out("queue", queue);
    out("method", method_name(options.method));
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
    let baseline = status_kib("VmHWM");
    let logger = HttpLogger::builder(format!("127.0.0.1:{port}"), "/")
        .method(options.method)
        .build()
        .map_err(|e| format!("cannot build the logger: {e}"))?;
    let (calls, first) = log_records(&logger, slots);
    let logged_at = first.elapsed();
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

/// The form body of one real record with the request head ureq sends with it, and where the
/// head ends.
fn captured_request(host: &str, method: Method) -> Result<(Vec<u8>, usize), String> {
    let seen: Arc<Mutex<Option<Fields>>> = Arc::default();
    let hook = seen.clone();
    let logger = HttpLogger::builder(host, "/")
        .method(method)
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
    let mut body = String::new();
    {
        let mut form = form_urlencoded::Serializer::new(&mut body);
        for (key, value) in fields.iter() {
            form.append_pair(key, value);
        }
    }
    let agent = concat!("http-logger/", env!("CARGO_PKG_VERSION"));
    let request = match method {
        Method::Post => format!(
            "POST / HTTP/1.1\r\ncontent-length: {}\r\nuser-agent: {agent}\r\naccept: */*\r\nhost: {host}\r\ncontent-type: application/x-www-form-urlencoded\r\n\r\n{body}",
            body.len()
        ),
        Method::Get => format!(
            "GET /?{body} HTTP/1.1\r\nuser-agent: {agent}\r\naccept: */*\r\nhost: {host}\r\n\r\n"
        ),
    };
    out("body_bytes", body.len());
    out("request_bytes", request.len());
    let head = request
        .find("\r\n\r\n")
        .map_or(request.len(), |end| end + 4);
    Ok((request.into_bytes(), head))
}

fn run_plain(options: &Options) -> Result<(), String> {
    let host = options.host.as_deref().unwrap_or_default();
    let records = options.records.unwrap_or(200_000);
    let connections = options.connections.max(1);
    out("mode", "plain");
    let (request, head) = captured_request(host, options.method)?;
    // `--split`: the head and the body in two writes, as ureq sends them.
    let split = options.split.then_some(head);
    let barrier = Barrier::new(connections + 1);
    let mut first = None;
    let results: Vec<Result<Vec<u64>, String>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..connections)
            .map(|c| {
                let count = records / connections + usize::from(c < records % connections);
                let (barrier, request) = (&barrier, &request[..]);
                scope.spawn(move || {
                    let stream = TcpStream::connect(host);
                    barrier.wait();
                    send_all(stream.map_err(|e| e.to_string())?, request, split, count)
                })
            })
            .collect();
        barrier.wait();
        first = Some(Instant::now());
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a client panicked".into())))
            .collect()
    });
    let total = first.map_or(Duration::ZERO, |t| t.elapsed());
    let mut latencies = Vec::with_capacity(records);
    for result in results {
        latencies.extend(result.map_err(|e| format!("a plain client failed: {e}"))?);
    }
    latencies.sort_unstable();
    out("records", records);
    out("connections", connections);
    out("method", method_name(options.method));
    out("split_writes", options.split);
    out("total_s", format!("{:.3}", total.as_secs_f64()));
    out(
        "delivered_per_s",
        format!("{:.0}", latencies.len() as f64 / total.as_secs_f64()),
    );
    out(
        "request_median_us",
        format!("{:.1}", quantile(&latencies, 0.5) as f64 / 1e3),
    );
    out(
        "request_p99_us",
        format!("{:.1}", quantile(&latencies, 0.99) as f64 / 1e3),
    );
    Ok(())
}

/// Sends `request` `count` times on one connection, each after the answer to the previous
/// one, in one write (or two, split at `split`); returns the round trip times in nanoseconds.
fn send_all(
    mut stream: TcpStream,
    request: &[u8],
    split: Option<usize>,
    count: usize,
) -> Result<Vec<u64>, String> {
    // What ureq does; without it a request written in two parts waits for an ACK.
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(count);
    let mut buf = vec![0u8; 16 * 1024];
    let mut have = 0;
    for _ in 0..count {
        let start = Instant::now();
        let (first, second) = request.split_at(split.unwrap_or(request.len()));
        stream.write_all(first).map_err(|e| e.to_string())?;
        if !second.is_empty() {
            stream.write_all(second).map_err(|e| e.to_string())?;
        }
        let head_end = loop {
            if let Some(end) = find(&buf[..have], b"\r\n\r\n") {
                break end + 4;
            }
            fill(&mut stream, &mut buf, &mut have)?;
        };
        let head = &buf[..head_end];
        if !head.starts_with(b"HTTP/1.1 2") && !head.starts_with(b"HTTP/1.0 2") {
            let line = String::from_utf8_lossy(head);
            return Err(format!(
                "the receiver answered {:?}",
                line.lines().next().unwrap_or("")
            ));
        }
        let total = head_end + content_length(head);
        while have < total {
            fill(&mut stream, &mut buf, &mut have)?;
        }
        buf.copy_within(total..have, 0);
        have -= total;
        times.push(start.elapsed().as_nanos() as u64);
    }
    Ok(times)
}

/// Reads more bytes, growing the buffer when it is full.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, have: &mut usize) -> Result<(), String> {
    if *have == buf.len() {
        buf.resize(buf.len() * 2, 0);
    }
    match stream.read(&mut buf[*have..]) {
        Ok(0) => Err("the connection was closed".into()),
        Ok(n) => {
            *have += n;
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `Content-Length` of a head, or 0.
fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

/// `--sink`: counts requests, answers each 200 with an empty body.
fn run_sink(port: u16) -> Result<(), String> {
    let listener =
        TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("cannot listen: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("listening on http://{address}");
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    thread::spawn(move || {
        let mut printed = 0;
        loop {
            thread::sleep(Duration::from_secs(1));
            let now = counter.load(Ordering::Relaxed);
            if now != printed {
                printed = now;
                println!("received {now} records");
            }
        }
    });
    for stream in listener.incoming().flatten() {
        let count = count.clone();
        thread::spawn(move || serve(stream, &count));
    }
    Ok(())
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
            if fill(&mut stream, &mut buf, &mut have).is_err() {
                return;
            }
        };
        let total = head_end + content_length(&buf[..head_end]);
        while have < total {
            if fill(&mut stream, &mut buf, &mut have).is_err() {
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
