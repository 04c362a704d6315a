//! A small HTTP receiver that prints the log records sent by `http-logger` or by
//! Python's `logging.handlers.HTTPHandler`: the Rust version of the classic
//! `BaseHTTPRequestHandler` receiver with its pretty printer, on hyper's HTTP/1.1 server.
//!
//! Run it with `cargo run --example receiver -- --port 8000` and point a sender at
//! `http://127.0.0.1:8000/`. Each record whose fields include `created`, `name`,
//! `levelname` and `msg` is printed as one line,
//! `'%s  %40s  %9s  %s' % (time, name[:40], levelname, msg)` in Python terms,
//! followed by the lines of `exc_text` (if any) indented by four spaces. Anything
//! else (say `curl -X POST -d abc=def http://localhost:8000`) is printed as
//! `METHOD PATH: key=value ...`. POST (a form body, or a batch) is handled by [`do_post`], GET
//! (query string) by [`do_get`], every other method gets a 501. Connections are kept alive.
//! Problems with a request are reported on stderr and never stop the receiver. What reaches
//! the terminal is escaped: control characters, bidi overrides and isolates, and line
//! separators are shown as `\u{..}` (in a quoted value), never raw.
//!
//! A POST body holds one record or a batch of them, by its `Content-Type` (the media type,
//! compared case-insensitively; parameters such as `; charset=utf-8` ignored):
//!
//! - `application/x-www-form-urlencoded`, any other type, or none: one record, its form fields;
//! - `application/x-ndjson`: one JSON object per line (blank lines are skipped, the last line
//!   feed may be missing);
//! - `application/json`: one JSON object (what `Builder::json(true)` sends), or an array of
//!   them.
//!
//! A JSON record's fields are its entries, in order. A string value is taken as its text; any
//! other value (a number, `true`, `null`, an array, an object) as its compact JSON text, as
//! serde_json writes it (`20`, `null`, `[1,{"k":"v"}]`; a float in its shortest form, so `1e3`
//! is `1000.0`). Each record of a batch is printed as a form record is: its pretty line (or
//! `METHOD PATH: key=value ...`), its `--raw` block (request line, headers, fields), or counted
//! by `--quiet`.
//!
//! With `Content-Encoding: gzip` (or `x-gzip`; `identity` means none) the body is inflated
//! first, every gzip member of it, to at most `--max-body` bytes: a body that inflates past
//! them (a gzip bomb) gets a 413 when it gets there, and no more of it is inflated. Any other
//! encoding gets a 415.
//!
//! All or nothing: every record of a body is read and checked before any is printed. A body
//! that is not JSON, or a line (NDJSON) or element (array) that is not a JSON object, gets a
//! 400 for the whole request, and nothing of the request is printed; the stderr line and the
//! answer name the first bad NDJSON line by its number (and how many lines were bad), or say
//! where the JSON went wrong. So a sender told 400 knows that none of its batch was taken,
//! and can split it to find the bad record. A refusal of a body read whole keeps the
//! connection.
//!
//! hyper reads and writes HTTP; this file holds no HTTP parsing of its own. Why hyper: it is
//! the HTTP implementation under most of Rust's servers (axum, warp, tonic), it is
//! maintained by the people who maintain `http` and `h2`, and its low-level `server::conn`
//! API lets this receiver own the accept loop, which is where the connection limit lives.
//!
//! Limits, each with a flag (run with `--help` for the list): at most `--max-connections`
//! connections at once (a new one past the limit closes the connection idle the longest,
//! or is refused when none is idle), a head deadline, a whole-request deadline, an idle
//! keep-alive timeout, and a body cap (413 beyond). The memory a receiver can hold for
//! requests is so bounded by `max-connections × (max-body + 64 KiB of head)`, twice `max-body`
//! for a gzip body (the body and what it inflates to, each capped): the records of a batch are
//! read one at a time, and their text goes out in pieces of about 64 KiB.
//!
//! Options: see [`HELP`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use chrono::{Local, TimeZone};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, TRANSFER_ENCODING};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Most bytes accepted for the request line plus headers (else hyper answers 431).
const MAX_HEAD: usize = 64 * 1024;
/// How long to wait for the client's end when we close a connection first.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

const USAGE: &str = "usage: receiver [--port N] [--bind ADDR] [--raw | --quiet] [--linger-zero] \
[--pid-file PATH] [--max-connections N] [--head-timeout S] [--request-timeout S] \
[--idle-timeout S] [--max-body BYTES] [--help]";

/// `--help`: every option and its default.
const HELP: &str = "\
Prints the log records that http-logger or Python's logging.handlers.HTTPHandler send
(POST form bodies, GET query strings); other methods get 501.

A POST body may also be a batch, by its Content-Type: application/x-ndjson (one JSON object
per line) or application/json (one object, or an array of them); each record prints as a
form record does, a value that is not a string as its JSON text. Content-Encoding: gzip is
inflated, to at most --max-body bytes (past them, 413); another encoding gets 415.
All or nothing: a body that is not JSON, or with a line or element that is not a JSON
object, gets 400 for the whole request (the first bad line named on stderr), and nothing
of it is printed.

Options:
  --port N              port to listen on; 0 picks a free one (default 8000)
  --bind ADDR           address to listen on (default 127.0.0.1)
  --raw                 print each record with its request as received: request line,
                        headers (names as hyper gives them: lowercase), then every field
                        as `  key = value`
  --quiet               print only `received N records`, once a second when it changed
  --linger-zero         close connections with SO_LINGER 0 (a reset, no TIME_WAIT) instead
                        of setting SO_REUSEADDR on the listener (default: SO_REUSEADDR)
  --pid-file PATH       refuse to start while another live receiver holds PATH (an
                        exclusive flock), then write our pid there (default: none)
  --max-connections N   connections served at once; past it a new connection closes the
                        one idle the longest, or is refused when none is idle (default 1024)
  --head-timeout S      seconds from the first byte of a request to the end of its head
                        (default 10)
  --request-timeout S   seconds from the first byte of a request to the end of its body;
                        past it the answer is 408 (default 30)
  --idle-timeout S      seconds a connection may wait for a request, new or kept alive
                        (default 60)
  --max-body BYTES      largest body accepted, and largest a gzip body may inflate to; a
                        larger one gets 413 (default 16777216)
  --help, -h            print this help
";

/// Writes one line to stderr, ignoring failures (a closed stderr must not stop us).
macro_rules! report {
    ($($arg:tt)*) => {{
        let _ = writeln!(io::stderr().lock(), $($arg)*);
    }};
}

/// What to print for each record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pretty,
    Raw,
    Quiet,
}

/// How much a client may take, and for how long.
#[derive(Clone, Copy)]
struct Limits {
    max_connections: usize,
    head_timeout: Duration,
    request_timeout: Duration,
    idle_timeout: Duration,
    max_body: u64,
}

struct Options {
    port: u16,
    bind: IpAddr,
    mode: Mode,
    linger_zero: bool,
    pid_file: Option<PathBuf>,
    limits: Limits,
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            let _ = write!(io::stdout(), "{USAGE}\n\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            report!("receiver: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    // Held (and so locked) until the process ends.
    let _pid_lock = match &options.pid_file {
        Some(path) => match pid_file::lock(path) {
            Ok(file) => Some(file),
            Err(message) => {
                report!("receiver: {message}");
                return ExitCode::from(1);
            }
        },
        None => None,
    };

    serve(options)
}

/// Parses the command line by hand. `Ok(None)` means `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        port: 8000,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        mode: Mode::Pretty,
        linger_zero: false,
        pid_file: None,
        limits: Limits {
            max_connections: 1024,
            head_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_body: 16 * 1024 * 1024,
        },
    };
    while let Some(arg) = args.next() {
        // Both `--port 8000` and `--port=8000`.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name.to_string(), Some(value)),
            _ => (arg.clone(), None),
        };
        let mut value = || match inline {
            Some(value) => Ok(value.to_string()),
            None => args.next().ok_or(format!("{name} needs a value")),
        };
        let limits = &mut options.limits;
        match name.as_str() {
            "--port" => {
                let text = value()?;
                options.port = text.parse().map_err(|_| format!("bad port {text:?}"))?;
            }
            "--bind" => {
                let text = value()?;
                options.bind = text.parse().map_err(|_| format!("bad address {text:?}"))?;
            }
            "--pid-file" => options.pid_file = Some(PathBuf::from(value()?)),
            "--max-connections" => limits.max_connections = positive(&name, &value()?)?,
            "--max-body" => limits.max_body = positive(&name, &value()?)?,
            "--head-timeout" => limits.head_timeout = seconds(&name, &value()?)?,
            "--request-timeout" => limits.request_timeout = seconds(&name, &value()?)?,
            "--idle-timeout" => limits.idle_timeout = seconds(&name, &value()?)?,
            "--raw" | "--quiet" | "--linger-zero" | "--help" | "-h" if inline.is_some() => {
                return Err(format!("{name} takes no value"));
            }
            "--raw" => options.mode = Mode::Raw,
            "--quiet" => options.mode = Mode::Quiet,
            "--linger-zero" => options.linger_zero = true,
            "--help" | "-h" => return Ok(None),
            _ => return Err(format!("unknown option {}", shown(&arg))),
        }
    }
    Ok(Some(options))
}

/// A whole number above zero.
fn positive<T: std::str::FromStr + PartialOrd + Default>(
    name: &str,
    text: &str,
) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(format!(
            "{name} needs a whole number above 0, not {}",
            shown(text)
        )),
    }
}

/// Seconds above zero, fractions allowed.
fn seconds(name: &str, text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 1e9 => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{name} needs seconds above 0, not {}", shown(text))),
    }
}

/// Builds the listening socket. By default it sets `SO_REUSEADDR`, so that a
/// restart is not refused while connections of the previous run sit in
/// `TIME_WAIT`. With `linger_zero` it sets `SO_LINGER` on/0 instead: accepted
/// sockets inherit it, closes send a reset and leave no `TIME_WAIT` behind (but
/// may drop data the peer has not read yet).
fn listen(address: SocketAddr, linger_zero: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if linger_zero {
        socket.set_linger(Some(Duration::ZERO))?;
    } else if cfg!(unix) {
        // On Windows SO_REUSEADDR would let another process steal the port.
        socket.set_reuse_address(true)?;
    }
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// What every connection shares.
struct Shared {
    mode: Mode,
    linger_zero: bool,
    limits: Limits,
    records: AtomicU64,
    /// Connections closed to make room for a new one, and new ones refused.
    evicted: AtomicU64,
    refused: AtomicU64,
    /// The open connections, by number.
    open: Mutex<HashMap<u64, Arc<Watch>>>,
}

/// Accepts connections on this thread (blocking) and hands each to one of the workers, in
/// turn. A worker is a thread running a single-threaded tokio runtime: a connection lives on
/// one thread from accept to close, so its socket's wake-ups go to the thread that serves
/// it (a work-stealing runtime spends more on moving tasks between threads than these
/// requests cost).
fn serve(options: Options) -> ExitCode {
    let address = SocketAddr::new(options.bind, options.port);
    let listener = match listen(address, options.linger_zero) {
        Ok(listener) => listener,
        Err(err) => {
            report!("receiver: cannot listen on {address}: {err}");
            return ExitCode::from(1);
        }
    };
    let mut options = options;
    let fitted = fit_descriptor_limit(&mut options.limits);
    let workers = match start_workers() {
        Ok(workers) => workers,
        Err(err) => {
            report!("receiver: cannot start the worker threads: {err}");
            return ExitCode::from(1);
        }
    };
    let local = listener.local_addr().unwrap_or(address);
    let host = match local.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    report!("listening on http://{host}:{}", local.port());
    if let Some(message) = fitted {
        report!("receiver: {message}");
    }

    let shared = Arc::new(Shared {
        mode: options.mode,
        linger_zero: options.linger_zero,
        limits: options.limits,
        records: AtomicU64::new(0),
        evicted: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
    });
    workers[0].spawn(print_counts(Arc::clone(&shared)));

    let mut next_id = 0u64;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: wait a little, go on.
                report!("receiver: accept failed: {err}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let Some(watch) = admit(&shared, next_id) else {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let worker = &workers[next_id as usize % workers.len()];
        worker.spawn(Arc::clone(&shared).connection(next_id, stream, peer, watch));
        next_id += 1;
    }
}

/// Raises the soft limit of open files to the hard one, so that `--max-connections` is what
/// limits connections, not `accept` failing with "too many open files" (where nothing is
/// evicted and new clients wait). If the limit is still too low for the connections, they are
/// cut to fit, and the returned line says so.
fn fit_descriptor_limit(limits: &mut Limits) -> Option<String> {
    // Descriptors for the rest: stdio, the listener, the runtimes' epoll and wake-up fds.
    const SPARE: u64 = 64;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    let room = limit.rlim_cur.saturating_sub(SPARE).max(1);
    if limits.max_connections as u64 <= room {
        return None;
    }
    let asked = limits.max_connections;
    limits.max_connections = room as usize;
    Some(format!(
        "--max-connections {asked} is more than the {} open files this process may have: \
         serving at most {room} connections at once",
        limit.rlim_cur
    ))
}

/// One worker thread per core (at most 8), each driving a single-threaded runtime.
fn start_workers() -> io::Result<Vec<Handle>> {
    let count = thread::available_parallelism().map_or(1, |n| n.get().min(8));
    (0..count)
        .map(|n| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = runtime.handle().clone();
            thread::Builder::new()
                .name(format!("worker-{n}"))
                .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
            Ok(handle)
        })
        .collect()
}

/// Takes a place for a new connection: a free one, or the one of the connection idle the
/// longest, which is told to close. `None` when every place is busy with a request.
fn admit(shared: &Shared, id: u64) -> Option<Arc<Watch>> {
    let mut open = lock(&shared.open);
    if open.len() >= shared.limits.max_connections {
        let oldest = open
            .iter()
            .filter_map(|(id, watch)| match *lock(&watch.phase) {
                Phase::Idle(since) => Some((since, *id)),
                _ => None,
            })
            .min();
        let (_, victim) = oldest?;
        if let Some(watch) = open.remove(&victim) {
            watch.evict.notify_one();
            shared.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }
    let watch = Arc::new(Watch {
        phase: Mutex::new(Phase::Idle(Instant::now())),
        evict: Notify::new(),
    });
    open.insert(id, Arc::clone(&watch));
    Some(watch)
}

/// Once a second: `--quiet`'s record count when it changed, and in every mode how many
/// connections the limit closed or refused in that second.
async fn print_counts(shared: Arc<Shared>) {
    let mut printed = 0;
    let (mut evicted, mut refused) = (0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if shared.mode == Mode::Quiet {
            let count = shared.records.load(Ordering::Relaxed);
            if count != printed {
                printed = count;
                emit(&format!("received {count} records\n"));
            }
        }
        let now = (
            shared.evicted.load(Ordering::Relaxed),
            shared.refused.load(Ordering::Relaxed),
        );
        if now != (evicted, refused) {
            report!(
                "receiver: at the limit of {} connections: closed {} idle ones, refused {} new ones",
                shared.limits.max_connections,
                now.0 - evicted,
                now.1 - refused
            );
            (evicted, refused) = now;
        }
    }
}

/// Writes a whole record's text under one lock of stdout, then flushes, so that
/// concurrent connections never interleave and a pipe reader sees it at once.
fn emit(text: &str) {
    let mut out = io::stdout().lock();
    // A closed stdout (say `| head`) must not kill the receiver.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where a connection is, for its deadlines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request (new, or after an answer) since then.
    Idle(Instant),
    /// Reading a request head whose first byte came then.
    Head(Instant),
    /// The head is read; reading the body of the request that started then.
    Body(Instant),
}

/// One connection's phase, and the call to close it when a new one needs its place.
struct Watch {
    phase: Mutex<Phase>,
    evict: Notify,
}

impl Watch {
    fn set(&self, phase: Phase) {
        *lock(&self.phase) = phase;
    }

    /// The first bytes of a request came: its head starts now.
    fn bytes_came(&self) {
        let mut phase = lock(&self.phase);
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
        }
    }

    /// When the request in progress started (now, if hyper had it buffered).
    fn request_started(&self) -> Instant {
        let mut phase = lock(&self.phase);
        let started = match *phase {
            Phase::Head(started) | Phase::Body(started) => started,
            Phase::Idle(_) => Instant::now(),
        };
        *phase = Phase::Body(started);
        started
    }

    /// The deadline of the current phase, and what passing it means.
    fn deadline(&self, limits: &Limits) -> (Instant, &'static str) {
        match *lock(&self.phase) {
            Phase::Idle(since) => (since + limits.idle_timeout, "idle"),
            Phase::Head(since) => (since + limits.head_timeout, "head"),
            // The request handler answers 408 itself; this only catches a stuck answer.
            Phase::Body(since) => (since + limits.request_timeout * 2, "request"),
        }
    }
}

impl Shared {
    /// Serves one connection until it ends, a deadline passes, or a new connection takes its
    /// place; then closes it without losing our last answer.
    async fn connection(
        self: Arc<Self>,
        id: u64,
        stream: std::net::TcpStream,
        peer: SocketAddr,
        watch: Arc<Watch>,
    ) {
        // Registered with the runtime of the worker this runs on.
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream))
        {
            Ok(stream) => stream,
            Err(err) => {
                report!("receiver: {peer}: cannot serve the connection: {err}");
                lock(&self.open).remove(&id);
                return;
            }
        };
        if self.linger_zero {
            // Accepted sockets inherit SO_LINGER on Linux; saying it again keeps
            // this true on every platform.
            if let Err(err) = SockRef::from(&stream).set_linger(Some(Duration::ZERO)) {
                report!("receiver: {peer}: cannot set SO_LINGER: {err}");
            }
        }
        let _ = stream.set_nodelay(true);
        let stream = Arc::new(Mutex::new(stream));
        let io = Tap {
            stream: Arc::clone(&stream),
            watch: Arc::clone(&watch),
        };

        let shared = Arc::clone(&self);
        let handler = Arc::clone(&watch);
        let service = hyper::service::service_fn(move |request| {
            let shared = Arc::clone(&shared);
            let watch = Arc::clone(&handler);
            async move { Ok::<_, Infallible>(shared.answer(request, peer, &watch).await) }
        });
        let mut http = hyper::server::conn::http1::Builder::new();
        // Our own deadlines (the Watch) cover the head; hyper's would also end idle
        // connections at the head's deadline.
        // One plain write of the whole answer: on loopback a small `writev` of head and body
        // costs more than copying them together (measured: 2 connections, 0.8 to 1.0 of the
        // thread-per-connection receiver with writev, parity without).
        http.header_read_timeout(None)
            .max_buf_size(MAX_HEAD)
            .writev(false);
        let mut connection = Box::pin(http.serve_connection(TokioIo::new(io), service));

        // Why the connection ends: hyper ended it (after its last answer, which must not be
        // lost), or we do (nothing is owed to the client).
        // The deadlines are checked on a tick, not at every change of phase (that would cost
        // each request a timer): a deadline passes at most a quarter of the shortest limit
        // late.
        let tick = self
            .limits
            .head_timeout
            .min(self.limits.idle_timeout)
            .min(self.limits.request_timeout)
            / 4;
        let tick = tick.max(Duration::from_millis(10));
        let (by_hyper, message) = loop {
            let (deadline, what) = watch.deadline(&self.limits);
            let now = Instant::now();
            if deadline <= now {
                break (
                    false,
                    match what {
                        "idle" => None,
                        "head" => Some(format!(
                            "closed: no whole request head within {:?}",
                            self.limits.head_timeout
                        )),
                        _ => Some("closed: the answer took too long".to_string()),
                    },
                );
            }
            tokio::select! {
                result = connection.as_mut() => break (true, result.err().and_then(|err| describe(&err))),
                () = watch.evict.notified() => break (false, None),
                () = tokio::time::sleep_until(deadline.min(now + tick)) => {}
            }
        };
        if let Some(message) = message {
            report!("receiver: {peer}: {message}");
        }
        if by_hyper {
            // hyper is done with the socket: it is ours alone again. Still counted among the
            // open connections while it closes (and a new connection may cut that short).
            watch.set(Phase::Idle(Instant::now()));
            drop(connection);
            if let Ok(stream) = Arc::try_unwrap(stream) {
                let stream = stream
                    .into_inner()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                tokio::select! {
                    () = self.close(&stream) => {}
                    () = watch.evict.notified() => {}
                }
            }
        }
        lock(&self.open).remove(&id);
    }

    /// Closes a connection we end, without losing our last answer: a close while unread
    /// request bytes are pending would send a reset, and the client could lose the answer.
    /// So: send FIN, then read and drop what the client still sends, for a short while.
    ///
    /// Not with `--linger-zero`: closing first that way would leave our side in
    /// `TIME_WAIT`, which is what the option is there to avoid. Dropping the socket
    /// sends a reset at once; the answer already sent stays readable by the
    /// client on Linux, but may be lost elsewhere.
    async fn close(&self, stream: &TcpStream) {
        if self.linger_zero
            || SockRef::from(stream)
                .shutdown(std::net::Shutdown::Write)
                .is_err()
        {
            return;
        }
        let drain = async {
            let mut buf = [0u8; 4096];
            let mut left = 1024 * 1024;
            while left > 0 {
                if stream.readable().await.is_err() {
                    return;
                }
                match stream.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => left -= n.min(left),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
    }

    /// Answers one request whose head hyper read.
    async fn answer(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        watch: &Watch,
    ) -> Response<Full<Bytes>> {
        let started = watch.request_started();
        let (parts, body) = request.into_parts();
        let what = format!("{} {}", parts.method, shown(parts.uri.path()));
        let answer = match self.read_body(&parts, body, started).await {
            // The body was read whole: the connection can serve the next request, whatever
            // the answer to this one.
            Ok(body) => match self.dispatch(&parts, body) {
                Ok(()) => reply(
                    StatusCode::OK,
                    format!("Test from {}!\n", parts.method),
                    keep_alive(&parts),
                ),
                Err((StatusCode::NOT_IMPLEMENTED, _)) => {
                    report!("receiver: {peer}: {what}: unsupported method, answered 501");
                    let text = format!("Unsupported method ({:?})\n", parts.method.as_str());
                    reply(StatusCode::NOT_IMPLEMENTED, text, keep_alive(&parts))
                }
                Err((status, message)) => {
                    report!("receiver: {peer}: {what}: {message}");
                    reply(status, format!("{message}\n"), keep_alive(&parts))
                }
            },
            Err((status, message)) => {
                report!("receiver: {peer}: {what}: {message}");
                reply(status, format!("{message}\n"), false)
            }
        };
        watch.set(Phase::Idle(Instant::now()));
        answer
    }

    /// The whole body, within the body cap and the request's deadline; or the status to
    /// answer with and why (the connection then closes).
    async fn read_body(
        &self,
        parts: &Parts,
        mut body: Incoming,
        started: Instant,
    ) -> Result<Vec<u8>, (StatusCode, String)> {
        let max = self.limits.max_body;
        let length = match parts.headers.get(CONTENT_LENGTH) {
            // hyper has checked it is a number, and the same in every Content-Length.
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok()),
            None => None,
        };
        let chunked = parts.headers.contains_key(TRANSFER_ENCODING);
        if parts.method == Method::POST && length.is_none() && !chunked {
            return Err((StatusCode::LENGTH_REQUIRED, "no Content-Length".into()));
        }
        if let Some(length) = length.filter(|&length| length > max) {
            let message = format!("body of {length} bytes is over the limit of {max}");
            return Err((StatusCode::PAYLOAD_TOO_LARGE, message));
        }
        let deadline = started + self.limits.request_timeout;
        // The length is at most the cap here: room for it at once, so that the body is never
        // copied while it grows (pages the client never fills are not resident).
        let mut bytes = Vec::with_capacity(length.unwrap_or(0) as usize);
        let read = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|err| {
                    let of = length.map_or(String::new(), |length| format!(" of {length}"));
                    let message = format!("body ended after {}{of} bytes: {err}", bytes.len());
                    (StatusCode::BAD_REQUEST, message)
                })?;
                if let Ok(data) = frame.into_data() {
                    if bytes.len() as u64 + data.len() as u64 > max {
                        let message = format!("body over the limit of {max} bytes");
                        return Err((StatusCode::PAYLOAD_TOO_LARGE, message));
                    }
                    bytes.extend_from_slice(&data);
                }
            }
            Ok(())
        };
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(())) => Ok(bytes),
            Ok(Err(failed)) => Err(failed),
            Err(_) => Err((
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "no whole request within {:?} ({} bytes of body came)",
                    self.limits.request_timeout,
                    bytes.len()
                ),
            )),
        }
    }

    /// One handler per verb, as `BaseHTTPRequestHandler` has: 501 for the others. A refused
    /// request gets the status and the line that says why.
    fn dispatch(&self, parts: &Parts, body: Vec<u8>) -> Result<(), (StatusCode, String)> {
        match parts.method {
            Method::POST => do_post(self, parts, body),
            Method::GET => do_get(self, parts),
            _ => Err((StatusCode::NOT_IMPLEMENTED, String::new())),
        }
    }

    /// Prints (or counts) the records of a body of `format`, read by [`payload::for_each`] and
    /// checked whole before: none is printed from a body that has a bad one. The text goes
    /// out in pieces of about 64 KiB, each of whole records.
    fn print_records(&self, parts: &Parts, format: payload::Format, body: &[u8]) {
        let mut out = String::new();
        // Checked already: the records come out the same.
        let _ = payload::for_each(format, body, &mut |record| {
            self.text_of(parts, &record, &mut out);
            if out.len() >= 64 * 1024 {
                emit(&out);
                out.clear();
            }
        });
        if !out.is_empty() {
            emit(&out);
        }
    }

    /// Appends the text of one record (its fields, in order) to `out`: its pretty line, or
    /// the `METHOD PATH: key=value ...` line of what is not a record; with `--raw`, the
    /// request line, the headers and every field.
    fn text_of(&self, parts: &Parts, fields: &[(String, String)], out: &mut String) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Raw => out.push_str(&format_raw(parts, fields)),
            Mode::Pretty => {
                out.push_str(&format_pretty(fields).unwrap_or_else(|| {
                    format_fields(parts.method.as_str(), parts.uri.path(), fields)
                }))
            }
        }
    }
}

/// POST: the records are the body, undone of its `Content-Encoding` (gzip, within the body
/// cap), by its `Content-Type`: NDJSON, JSON (one object or an array of them), else one form
/// record. Every record of the body is checked before any is printed: a body with one bad
/// record gets a 400 and prints nothing, so that a sender can split it to find the bad one.
fn do_post(shared: &Shared, parts: &Parts, body: Vec<u8>) -> Result<(), (StatusCode, String)> {
    let body = payload::decode(&parts.headers, body, shared.limits.max_body)?;
    let format = payload::Format::of(&parts.headers);
    let count = match format {
        payload::Format::Form => 1,
        _ => payload::for_each(format, &body, &mut |_| {}).map_err(|why| {
            let message = format!("{why}; the whole request is refused, nothing of it printed");
            (StatusCode::BAD_REQUEST, message)
        })?,
    };
    if shared.mode == Mode::Quiet {
        shared.records.fetch_add(count, Ordering::Relaxed);
    } else {
        shared.print_records(parts, format, &body);
    }
    Ok(())
}

/// GET: the record is the query string.
fn do_get(shared: &Shared, parts: &Parts) -> Result<(), (StatusCode, String)> {
    let query = parts.uri.query().unwrap_or("").as_bytes();
    if shared.mode == Mode::Quiet {
        shared.records.fetch_add(1, Ordering::Relaxed);
    } else {
        shared.print_records(parts, payload::Format::Form, query);
    }
    Ok(())
}

/// Whether the client asked to keep the connection: HTTP/1.1 unless told `close`, HTTP/1.0
/// only when told `keep-alive`.
fn keep_alive(parts: &Parts) -> bool {
    let has = |token: &str| {
        parts.headers.get_all(CONNECTION).iter().any(|value| {
            value
                .to_str()
                .unwrap_or("")
                .split(',')
                .any(|item| item.trim().eq_ignore_ascii_case(token))
        })
    };
    match parts.version {
        Version::HTTP_10 => has("keep-alive") && !has("close"),
        _ => !has("close"),
    }
}

/// A plain-text answer that says whether the connection stays (hyper closes it after a
/// `Connection: close`).
fn reply(status: StatusCode, text: String, keep_alive: bool) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    let connection = if keep_alive { "keep-alive" } else { "close" };
    headers.insert(CONNECTION, HeaderValue::from_static(connection));
    response
}

/// What went wrong on a connection, in a line; `None` for what needs no line (a client that
/// closed between requests).
fn describe(err: &hyper::Error) -> Option<String> {
    if err.is_incomplete_message() {
        Some("connection closed in the middle of a request head".into())
    } else if err.is_parse_too_large() {
        Some(format!(
            "request head longer than {MAX_HEAD} bytes, answered 431"
        ))
    } else if err.is_parse() {
        Some(format!("bad request ({err}), answered 400"))
    } else if err.is_canceled() || err.is_closed() || is_gone(err) {
        None
    } else {
        let mut message = err.to_string();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            let _ = write!(message, ": {cause}");
            source = cause.source();
        }
        Some(message)
    }
}

/// Whether the client reset the connection or went away: no line for that (a problem in
/// the middle of a body is reported where the body is read).
fn is_gone(err: &hyper::Error) -> bool {
    let io = std::error::Error::source(err).and_then(|cause| cause.downcast_ref::<io::Error>());
    io.is_some_and(|io| {
        matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        )
    })
}

/// The socket as hyper reads and writes it, telling the connection's [`Watch`] when a
/// request's first bytes come. The stream is shared so that the connection can close it
/// gracefully after hyper is done with it.
struct Tap {
    stream: Arc<Mutex<TcpStream>>,
    watch: Arc<Watch>,
}

impl Tap {
    fn stream(&self) -> MutexGuard<'_, TcpStream> {
        lock(&self.stream)
    }
}

impl AsyncRead for Tap {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut *self.stream()).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.watch.bytes_came();
        }
        read
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Nothing: the connection closes the socket itself, once hyper is done ([`Shared::close`]).
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Whether a character must not reach a terminal raw: control characters (C0, DEL, C1), the
/// bidi overrides and isolates that reorder what follows them, and the line and paragraph
/// separators.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
        || c == '\u{2028}'
        || c == '\u{2029}'
}

/// A value as printed: as is, or quoted with its unsafe characters (see [`is_unsafe`]),
/// backslashes and quotes escaped, so that it cannot break lines, drive the terminal or
/// reorder the text around it.
fn shown(value: &str) -> Cow<'_, str> {
    if !value.chars().any(is_unsafe) {
        return Cow::Borrowed(value);
    }
    let mut text = String::with_capacity(value.len() + 8);
    text.push('"');
    for c in value.chars() {
        match c {
            '\n' => text.push_str("\\n"),
            '\r' => text.push_str("\\r"),
            '\t' => text.push_str("\\t"),
            '\\' => text.push_str("\\\\"),
            '"' => text.push_str("\\\""),
            c if is_unsafe(c) => {
                let _ = write!(text, "\\u{{{:x}}}", u32::from(c));
            }
            c => text.push(c),
        }
    }
    text.push('"');
    Cow::Owned(text)
}

/// The first value of a field.
fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The seed article's pretty line: `'%s  %40s  %9s  %s' % (time, name[:40],
/// levelname, msg)`, then the lines of `exc_text` indented by four spaces.
/// `None` when a field is missing or `created` is not a usable time.
fn format_pretty(fields: &[(String, String)]) -> Option<String> {
    let created: f64 = field(fields, "created")?.trim().parse().ok()?;
    let name = field(fields, "name")?;
    let levelname = field(fields, "levelname")?;
    let msg = field(fields, "msg")?;
    let time = local_time(created)?;

    let name: String = name.chars().take(40).collect();
    let mut text = String::new();
    // A message of several lines: the first on the record line, the others
    // indented below it, like a traceback.
    let mut msg_lines = msg.lines();
    let first = msg_lines.next().unwrap_or("");
    let _ = writeln!(
        text,
        "{time}  {:>40}  {:>9}  {}",
        shown(&name),
        shown(levelname),
        shown(first)
    );
    let exc_text = field(fields, "exc_text").filter(|t| !t.is_empty() && *t != "None");
    for line in msg_lines.chain(exc_text.iter().flat_map(|t| t.lines())) {
        if line.is_empty() {
            text.push('\n'); // an empty line, without trailing spaces
        } else {
            let _ = writeln!(text, "    {}", shown(line));
        }
    }
    Some(text)
}

/// `created` (seconds since the epoch) as local time, `%Y-%m-%d %H:%M:%S`, like
/// Python's `datetime.fromtimestamp(created).strftime(...)` (which also rounds
/// to the microsecond first).
fn local_time(created: f64) -> Option<String> {
    let micros = (created * 1e6).round();
    // Also rejects NaN and the infinities.
    if !(-1e17..=1e17).contains(&micros) {
        return None;
    }
    let when = Local.timestamp_micros(micros as i64).single()?;
    let mut text = String::new();
    write!(text, "{}", when.format("%Y-%m-%d %H:%M:%S")).ok()?;
    Some(text)
}

/// `METHOD PATH: key=value key=value ...` for anything that is not a record.
fn format_fields(method: &str, path: &str, fields: &[(String, String)]) -> String {
    let mut text = format!("{} {}:", shown(method), shown(path));
    if fields.is_empty() {
        text.push_str(" (no fields)");
    }
    for (key, value) in fields {
        let _ = write!(text, " {}={}", shown(key), shown(value));
    }
    text.push('\n');
    text
}

/// `--raw`: request line, headers as hyper read them, decoded fields, blank line.
fn format_raw(parts: &Parts, fields: &[(String, String)]) -> String {
    let mut text = String::new();
    let target = parts.uri.to_string();
    let request_line = format!("{} {} {:?}", parts.method, target, parts.version);
    let _ = writeln!(text, "{}", shown(&request_line));
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        let _ = writeln!(text, "{}", shown(&format!("{name}: {value}")));
    }
    for (key, value) in fields {
        let _ = writeln!(text, "  {} = {}", shown(key), shown(value));
    }
    text.push('\n');
    text
}

/// POST bodies: their `Content-Encoding` undone, then their records read by `Content-Type`.
mod payload {
    use std::fmt::{self, Write as _};
    use std::io::{self, Read};

    use hyper::StatusCode;
    use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap};
    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

    use super::shown;

    /// One record's fields, in the order they came.
    pub type Fields = Vec<(String, String)>;

    /// How a body holds its records: by the media type of its `Content-Type`, compared
    /// case-insensitively, its parameters (`; charset=utf-8`) ignored.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Format {
        /// `application/x-www-form-urlencoded`, or any other type, or none: one record.
        Form,
        /// `application/x-ndjson`: one JSON object per line.
        Ndjson,
        /// `application/json`: one JSON object, or an array of them.
        Json,
    }

    impl Format {
        pub fn of(headers: &HeaderMap) -> Format {
            let value = headers
                .get(CONTENT_TYPE)
                .map(|v| v.as_bytes())
                .unwrap_or(b"");
            let value = String::from_utf8_lossy(value);
            let media = value.split(';').next().unwrap_or("").trim();
            if media.eq_ignore_ascii_case("application/x-ndjson") {
                Format::Ndjson
            } else if media.eq_ignore_ascii_case("application/json") {
                Format::Json
            } else {
                Format::Form
            }
        }
    }

    /// The body undone of its `Content-Encoding`: none or `identity` leaves it as it is,
    /// `gzip` (or `x-gzip`) inflates it to at most `max` bytes (past them, 413), anything else
    /// is refused with 415.
    pub fn decode(
        headers: &HeaderMap,
        body: Vec<u8>,
        max: u64,
    ) -> Result<Vec<u8>, (StatusCode, String)> {
        let values: Vec<String> = headers
            .get_all(CONTENT_ENCODING)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        let codings: Vec<String> = values
            .iter()
            .flat_map(|value| value.split(','))
            .map(|coding| coding.trim().to_ascii_lowercase())
            .filter(|coding| !coding.is_empty() && coding != "identity")
            .collect();
        match codings.as_slice() {
            [] => Ok(body),
            [gzip] if gzip == "gzip" || gzip == "x-gzip" => gunzip(&body, max),
            _ => Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "Content-Encoding {} is not supported (gzip and identity are)",
                    brief(&values.join(", "))
                ),
            )),
        }
    }

    /// `body` inflated: every gzip member, one after the other (as `gzip -d` does). What it
    /// holds never passes `max` bytes: a body that inflates past them (a gzip bomb) is refused
    /// with 413 when it gets there, the rest unread.
    fn gunzip(body: &[u8], max: u64) -> Result<Vec<u8>, (StatusCode, String)> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        if body.is_empty() {
            return Err((StatusCode::BAD_REQUEST, "bad gzip body: it is empty".into()));
        }
        let mut decoder = flate2::read::MultiGzDecoder::new(body);
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match decoder.read(&mut chunk) {
                Ok(0) => return Ok(out),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    let message = format!("bad gzip body: {}", brief(&err.to_string()));
                    return Err((StatusCode::BAD_REQUEST, message));
                }
            };
            if n > max - out.len() {
                let message = format!(
                    "gzip body of {} bytes inflates past the limit of {max} bytes",
                    body.len()
                );
                return Err((StatusCode::PAYLOAD_TOO_LARGE, message));
            }
            if out.capacity() - out.len() < n {
                // Doubling, as a Vec grows, but never past the cap.
                let room = (out.capacity() * 2).max(out.len() + n).min(max);
                out.reserve_exact(room - out.len());
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }

    /// Hands each record of `body`, a body of `format`, to `each`, in order, one at a time
    /// (what a record takes is freed before the next is read), and returns how many there
    /// were; or says what is wrong with the body. NDJSON: every line that is not blank is a
    /// JSON object (a body may end without a line feed); a bad line is named by its number,
    /// and the good lines are handed over all the same. JSON: one object, or an array of
    /// objects. In a record, a string value is its text; any other value (a number, `true`,
    /// `null`, an array, an object) its compact JSON text; a key sent twice is kept twice, as
    /// in a form.
    pub fn for_each(
        format: Format,
        body: &[u8],
        each: &mut dyn FnMut(Fields),
    ) -> Result<u64, String> {
        match format {
            Format::Form => {
                // Lossy: bad percent-encoding is kept as is, bad UTF-8 becomes U+FFFD.
                each(form_urlencoded::parse(body).into_owned().collect());
                Ok(1)
            }
            Format::Ndjson => {
                let (mut good, mut bad) = (0, 0);
                let mut first_bad = None;
                for (n, line) in body.split(|&byte| byte == b'\n').enumerate() {
                    // Blank: nothing but JSON's white space (a CR of a CRLF among it).
                    if line.iter().all(|byte| matches!(byte, b' ' | b'\t' | b'\r')) {
                        continue;
                    }
                    match serde_json::from_slice::<Record>(line) {
                        Ok(Record(fields)) => {
                            good += 1;
                            each(fields);
                        }
                        Err(err) => {
                            bad += 1;
                            first_bad.get_or_insert((n + 1, err));
                        }
                    }
                }
                match first_bad {
                    None => Ok(good),
                    Some((line, err)) => Err(format!(
                        "bad NDJSON line {line}: {} (bad lines: {bad} of {})",
                        brief(&err.to_string()),
                        good + bad
                    )),
                }
            }
            Format::Json => {
                let mut good = 0;
                let mut de = serde_json::Deserializer::from_slice(body);
                let read = {
                    let mut counted = |fields| {
                        good += 1;
                        each(fields);
                    };
                    Records(&mut counted)
                        .deserialize(&mut de)
                        .and_then(|()| de.end())
                };
                match read {
                    Ok(()) => Ok(good),
                    Err(err) => Err(format!(
                        "bad JSON body: {} (good records before it: {good})",
                        brief(&err.to_string())
                    )),
                }
            }
        }
    }

    /// An error's text for a stderr line and an answer: at most 200 characters (a serde error
    /// may quote what was sent), shown escaped.
    fn brief(text: &str) -> String {
        let cut: String = text.chars().take(200).collect();
        let more = if cut.len() < text.len() { "..." } else { "" };
        format!("{}{more}", shown(&cut))
    }

    /// A record of a JSON body: an object.
    struct Record(Fields);

    impl<'de> de::Deserialize<'de> for Record {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Record, D::Error> {
            deserializer.deserialize_map(RecordVisitor)
        }
    }

    struct RecordVisitor;

    impl<'de> Visitor<'de> for RecordVisitor {
        type Value = Record;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object (a record)")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
            let mut fields = Vec::new();
            while let Some(key) = map.next_key::<String>()? {
                let mut value = String::new();
                map.next_value_seed(Text {
                    out: &mut value,
                    top: true,
                })?;
                fields.push((key, value));
            }
            Ok(Record(fields))
        }
    }

    /// The records of a JSON body, each handed over as it is read: one object, or an array of
    /// objects.
    struct Records<'a>(&'a mut dyn FnMut(Fields));

    impl<'de> DeserializeSeed<'de> for Records<'_> {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Records<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object (a record) or an array of them")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
            let Record(fields) = RecordVisitor.visit_map(map)?;
            (self.0)(fields);
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(Record(fields)) = seq.next_element()? {
                (self.0)(fields);
            }
            Ok(())
        }
    }

    /// Writes a JSON value into `out` as it is read (no tree of it is built, so a nested value
    /// takes no more memory than its text): a string as its text when `top` (a field's
    /// value), else everything as compact JSON text, numbers as serde_json writes them.
    struct Text<'a> {
        out: &'a mut String,
        top: bool,
    }

    impl<'de> DeserializeSeed<'de> for Text<'_> {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Text<'_> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_bool<E>(self, v: bool) -> Result<(), E> {
            self.out.push_str(if v { "true" } else { "false" });
            Ok(())
        }

        fn visit_i64<E>(self, v: i64) -> Result<(), E> {
            let _ = write!(self.out, "{v}");
            Ok(())
        }

        fn visit_u64<E>(self, v: u64) -> Result<(), E> {
            let _ = write!(self.out, "{v}");
            Ok(())
        }

        fn visit_f64<E>(self, v: f64) -> Result<(), E> {
            // JSON has no NaN nor infinities: `None` cannot come from a parse.
            match serde_json::Number::from_f64(v) {
                Some(number) => {
                    let _ = write!(self.out, "{number}");
                }
                None => self.out.push_str("null"),
            }
            Ok(())
        }

        fn visit_str<E>(self, v: &str) -> Result<(), E> {
            if self.top {
                self.out.push_str(v);
            } else {
                self.out
                    .push_str(&serde_json::to_string(v).unwrap_or_default());
            }
            Ok(())
        }

        fn visit_unit<E>(self) -> Result<(), E> {
            self.out.push_str("null");
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let out = self.out;
            out.push('[');
            let mut first = true;
            loop {
                let mark = out.len();
                if !first {
                    out.push(',');
                }
                let element = Text {
                    out: &mut *out,
                    top: false,
                };
                if seq.next_element_seed(element)?.is_none() {
                    out.truncate(mark);
                    break;
                }
                first = false;
            }
            out.push(']');
            Ok(())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let out = self.out;
            out.push('{');
            let mut first = true;
            while let Some(key) = map.next_key::<String>()? {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&serde_json::to_string(&key).unwrap_or_default());
                out.push(':');
                map.next_value_seed(Text {
                    out: &mut *out,
                    top: false,
                })?;
            }
            out.push('}');
            Ok(())
        }
    }
}

/// `--pid-file`: one live receiver per file.
mod pid_file {
    use std::fs::File;
    use std::path::Path;

    /// Locks `path` (creating it) for the life of the returned file, then writes
    /// our pid into it. Fails, naming the holder's pid, while another process
    /// holds the lock. The lock goes with the process, so a stale file left by
    /// a killed receiver does not block the next one.
    #[cfg(unix)]
    pub fn lock(path: &Path) -> Result<File, String> {
        use std::fs::OpenOptions;
        use std::io::{self, Read, Seek, Write};
        use std::os::fd::AsRawFd;

        let shown = path.display();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false) // the holder's pid stays readable until we hold the lock
            .open(path)
            .map_err(|err| format!("cannot open pid file {shown}: {err}"))?;
        // SAFETY: flock only takes a file descriptor and flags; the descriptor
        // belongs to `file`, which stays open for the whole call.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(format!("cannot lock pid file {shown}: {err}"));
            }
            let mut contents = String::new();
            let _ = file.read_to_string(&mut contents);
            let pid = match contents.trim() {
                "" => "unknown".to_string(),
                pid => pid.to_string(),
            };
            return Err(format!(
                "another receiver (pid {pid}) is running: it holds the pid file {shown}"
            ));
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush())
            .map_err(|err| format!("cannot write pid file {shown}: {err}"))?;
        Ok(file)
    }

    #[cfg(not(unix))]
    pub fn lock(_path: &Path) -> Result<File, String> {
        Err("--pid-file is only supported on Unix".to_string())
    }
}
