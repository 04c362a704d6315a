//! A scriptable HTTP/1.1 receiver on 127.0.0.1 for integration tests.
//!
//! `Server::start()` answers every request with 200; `Server::with_script` decides per request
//! (by its index, counted across all connections from 0) how to answer, including faults: a
//! status with headers, a delay, a hang, a closed connection, garbage bytes. Every request read
//! is handed to the test through `recv`/`recv_n`/`try_drain`, just before its reply is written
//! (after a `Delay`, before a `Hang`/`Close`/`Garbage`), so once a client has seen the outcome
//! of a request, the request is already waiting there. Dropping the `Server` closes the port,
//! shuts down every connection (peers see EOF) and never hangs.
//!
//! `Server::start_tls(config)` / `Server::with_script_tls(config, f)` serve the same over TLS
//! (rustls, with the given `ServerConfig`: its certificate, and its client-certificate policy
//! for mutual TLS): each connection's handshake is completed first, then requests are read and
//! answered exactly as over plain TCP. A failed handshake never panics or hangs the server: the
//! TLS alert is sent, the connection is closed gracefully (its unread input drained, so the peer
//! reads the alert instead of a reset), and the reason is kept for `tls_errors()`.
//!
//! HTTP is hyper's (its HTTP/1.1 server, on a tokio runtime that each `Server` owns; TLS is
//! tokio-rustls): hyper reads every request (`Content-Length` or chunked bodies, `Expect:
//! 100-continue`), answers what it cannot parse itself (a 400, then a close), and writes the
//! normal replies (`Status`, `StatusWithHeaders`, `Delay`). Header names come as hyper gives
//! them, lowercase. Scripts run on the runtime's blocking pool, so one may block (on a gate);
//! one that panics answers 500. The fault replies (`Raw`, `Garbage`, `Close`, `Hang`) are bytes
//! no server would send: a tap between hyper and the stream writes them in place of hyper's
//! answer, without parsing anything, and shuts the socket down (both ways, with no TLS
//! `close_notify`) where the reply says to close. A request that a client sent before a `Raw`
//! reply's `later` bytes came is read and scripted at once, but answered (and handed over) only
//! after those bytes, right after them.
#![allow(dead_code)]

pub mod certs;
pub mod logging;

/// The standard fields of the wire contract (`WIRE.md`), in the order they are sent: the 21
/// keys of a Python 3.12+ `LogRecord`, then `hostname`. Written out here, apart from the
/// library's own list, so the tests check the library against the contract.
pub const STANDARD: [&str; 22] = [
    "name",
    "msg",
    "args",
    "levelname",
    "levelno",
    "pathname",
    "filename",
    "module",
    "exc_info",
    "exc_text",
    "stack_info",
    "lineno",
    "funcName",
    "created",
    "msecs",
    "relativeCreated",
    "thread",
    "threadName",
    "processName",
    "process",
    "taskName",
    "hostname",
];

/// The keys of decoded fields, in order.
pub fn keys(fields: &[(String, String)]) -> Vec<&str> {
    fields.iter().map(|(k, _)| k.as_str()).collect()
}

/// The first value of `key` among decoded fields.
///
/// # Panics
///
/// When there is no such field.
pub fn get<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field {key:?} in {fields:?}"))
}

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream as StdStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query exactly as sent on the request line.
    pub target: String,
    /// Header names (as hyper gives them: lowercase) and values, in the order hyper keeps them
    /// (the order sent, but for repeats of a name, which follow its first one).
    pub headers: Vec<(String, String)>,
    /// The body: `Content-Length` bytes, or the decoded chunks of a chunked body.
    pub body: Vec<u8>,
    /// Index of the TCP connection it came on, from 0 in the order accepted.
    pub conn: usize,
    /// Index of the request across all connections, from 0 in the order read (the script's `usize`).
    pub index: usize,
}

impl Request {
    /// First header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut hits = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name));
        hits.next().map(|(_, v)| v.as_str())
    }

    /// The target before the first `?`.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The target after the first `?`, if it has one.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Decoded form fields, in order: the body for POST, else the query.
    pub fn fields(&self) -> Vec<(String, String)> {
        let raw = if self.method.eq_ignore_ascii_case("POST") {
            &self.body[..]
        } else {
            self.query().unwrap_or("").as_bytes()
        };
        form_urlencoded::parse(raw).into_owned().collect()
    }

    /// First decoded value of a field.
    pub fn field(&self, key: &str) -> Option<String> {
        self.fields()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer with this status and a short text body; keep the connection alive.
    Status(u16),
    /// Same, plus these headers (e.g. `Retry-After`); `Connection: close` closes after answering.
    StatusWithHeaders(u16, Vec<(String, String)>),
    /// Sleep (cut short if the server is dropped), then answer with this status.
    Delay(Duration, u16),
    /// Never answer; keep the socket open until the server is dropped.
    Hang,
    /// Close the connection without answering.
    Close,
    /// Answer with bytes that are not HTTP, then close.
    Garbage,
    /// Write these bytes as they are (an answer of a hostile receiver); then, if `later` says
    /// so, wait (cut short if the server is dropped) and write more, unasked. Then close, or
    /// read the next request. Each `later` write is told through `recv_late`.
    Raw {
        now: Vec<u8>,
        later: Option<(Duration, Vec<u8>)>,
        close: bool,
    },
}

/// What [`Reply::Garbage`] writes.
const GARBAGE: &[u8] = b"\x00\xffNOT HTTP AT ALL\xfe\r\n\r\n";

type Script = dyn Fn(usize, &Request) -> Reply + Send + Sync;

struct Shared {
    script: Box<Script>,
    stop: AtomicBool,
    /// Set to `true` when the server drops, which wakes every `Delay`, `Hang` and connection.
    stop_tx: watch::Sender<bool>,
    delivered: Sender<Request>,
    /// Told the index of each request after whose answer a `Raw` reply wrote more, unasked.
    late: Sender<usize>,
    connections: AtomicUsize,
    requests: AtomicUsize,
    /// A clone of every open connection's socket, by index, so that drop can shut them down.
    open: Mutex<HashMap<usize, Arc<StdStream>>>,
    /// `Some` for a TLS server.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Why each failed TLS handshake failed, in order.
    tls_errors: Mutex<Vec<String>>,
    /// The DER of the first certificate each completed handshake's client presented.
    client_certificates: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    /// Returns once the server is dropped.
    async fn stopped(&self) {
        let mut rx = self.stop_tx.subscribe();
        let _ = rx.wait_for(|&stop| stop).await;
    }

    /// Sleeps for `d`, cut short when the server drops: whether the whole `d` passed.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.stopped() => false,
        }
    }
}

/// Held by every task of the server: the receiver in [`Server`] sees it disconnect once they
/// have all ended.
type Alive = Sender<()>;

pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    rx: Receiver<Request>,
    late_rx: Receiver<usize>,
    /// Disconnected once every task (the accept loop, each connection) has ended.
    done: Receiver<()>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    /// A server on a free port that answers every request with 200.
    pub fn start() -> Server {
        Self::with_script(|_, _| Reply::Status(200))
    }

    /// A server on a free port that answers request number `i` (from 0) with `f(i, &request)`.
    pub fn with_script(f: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> Server {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self::start_on(any, f).expect("support::Server: bind 127.0.0.1:0")
    }

    /// A TLS server on a free port that answers every request with 200.
    pub fn start_tls(config: Arc<rustls::ServerConfig>) -> Server {
        Self::with_script_tls(config, |_, _| Reply::Status(200))
    }

    /// A TLS server on a free port, scripted as [`Server::with_script`].
    pub fn with_script_tls(
        config: Arc<rustls::ServerConfig>,
        f: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static,
    ) -> Server {
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Self::start_inner(any, Some(config), Box::new(f))
            .expect("support::Server: bind 127.0.0.1:0")
    }

    /// A server on a given 127.0.0.1 address (e.g. the port of a dropped server, to restart it).
    pub fn start_on(
        addr: SocketAddr,
        f: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static,
    ) -> io::Result<Server> {
        Self::start_inner(addr, None, Box::new(f))
    }

    fn start_inner(
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        script: Box<Script>,
    ) -> io::Result<Server> {
        if addr.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                "support::Server binds 127.0.0.1 only",
            ));
        }
        let listener = std::net::TcpListener::bind(addr)?; // std sets SO_REUSEADDR on Unix
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // Its own runtime: two workers for the connections; scripts, which may block, run on
        // its blocking pool.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("support-server")
            .enable_all()
            .build()?;
        let listener = {
            let _entered = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let (delivered, rx) = crossbeam_channel::unbounded();
        let (late, late_rx) = crossbeam_channel::unbounded();
        let (alive, done) = crossbeam_channel::bounded(0);
        let shared = Arc::new(Shared {
            script,
            stop: AtomicBool::new(false),
            stop_tx: watch::Sender::new(false),
            delivered,
            late,
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            open: Mutex::new(HashMap::new()),
            tls,
            tls_errors: Mutex::new(Vec::new()),
            client_certificates: Mutex::new(Vec::new()),
        });
        runtime.spawn(accept_loop(listener, shared.clone(), alive));
        Ok(Server {
            addr,
            shared,
            rx,
            late_rx,
            done,
            runtime: Some(runtime),
        })
    }

    /// Always 127.0.0.1:PORT.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"127.0.0.1:PORT"`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `"http://127.0.0.1:PORT<path>"` (`https` for a TLS server).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}{}", self.addr, path)
    }

    /// Whether this server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// Why each failed TLS handshake failed (rustls's error), in order; empty for plain HTTP.
    pub fn tls_errors(&self) -> Vec<String> {
        lock(&self.shared.tls_errors).clone()
    }

    /// The DER of the first certificate each client presented in a completed TLS handshake.
    pub fn client_certificates(&self) -> Vec<Vec<u8>> {
        lock(&self.shared.client_certificates).clone()
    }

    /// The next request handed over (see the module docs), or `None` after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Request> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Up to `n` requests, waiting at most `timeout` in all.
    pub fn recv_n(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            match self.rx.recv_deadline(deadline) {
                Ok(r) => out.push(r),
                Err(_) => break,
            }
        }
        out
    }

    /// The index of the next request after whose answer a [`Reply::Raw`] wrote its `later`
    /// bytes, or `None` after `timeout`.
    pub fn recv_late(&self, timeout: Duration) -> Option<usize> {
        self.late_rx.recv_timeout(timeout).ok()
    }

    /// Every request already handed over, without waiting.
    pub fn try_drain(&self) -> Vec<Request> {
        self.rx.try_iter().collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(SeqCst)
    }

    /// Requests read so far (including ones not handed over yet, e.g. during a `Delay`).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        self.shared.stop_tx.send_replace(true); // wakes every Delay, Hang and connection
        for s in lock(&self.shared.open).values() {
            let _ = s.shutdown(Shutdown::Both); // the peers see EOF now
        }
        // Every task ends on the stop signal (the listener closes with the accept loop); a
        // script still blocked on the blocking pool is left behind, detached.
        let _ = self.done.recv_timeout(Duration::from_secs(3));
        lock(&self.shared.open).clear();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn accept_loop(listener: TcpListener, sh: Arc<Shared>, alive: Alive) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = sh.stopped() => return, // drops the listener: the port closes
        };
        let Ok((tcp, _)) = accepted else {
            // a transient error such as ECONNABORTED, or out of file descriptors
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let conn = sh.connections.fetch_add(1, SeqCst);
        let _ = tcp.set_nodelay(true);
        // A second handle on the socket, for shutting it down from outside hyper and TLS.
        let Ok((tcp, sock)) = split_off_handle(tcp) else {
            continue;
        };
        lock(&sh.open).insert(conn, sock.clone());
        if sh.stop.load(SeqCst) {
            let _ = sock.shutdown(Shutdown::Both); // drop already swept `open`
        }
        tokio::spawn(serve(tcp, sock, conn, sh.clone(), alive.clone()));
    }
}

/// The socket back, and a duplicate handle on it.
fn split_off_handle(tcp: TcpStream) -> io::Result<(TcpStream, Arc<StdStream>)> {
    let std = tcp.into_std()?;
    let dup = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, Arc::new(dup)))
}

async fn serve(tcp: TcpStream, sock: Arc<StdStream>, conn: usize, sh: Arc<Shared>, alive: Alive) {
    let work = async {
        match sh.tls.clone() {
            None => serve_http(tcp, sock.clone(), conn, sh.clone(), alive.clone()).await,
            Some(config) => serve_tls(tcp, config, sock.clone(), conn, sh.clone(), &alive).await,
        }
    };
    tokio::select! {
        _ = work => {}
        _ = sh.stopped() => {}
    }
    let _ = sock.shutdown(Shutdown::Both);
    lock(&sh.open).remove(&conn);
}

/// Completes the TLS handshake, then serves requests over it as over plain TCP.
async fn serve_tls(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    sock: Arc<StdStream>,
    conn: usize,
    sh: Arc<Shared>,
    alive: &Alive,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match acceptor.accept(tcp).into_fallible().await {
        Ok(tls) => {
            let (_, session) = tls.get_ref();
            if let Some(cert) = session.peer_certificates().and_then(|certs| certs.first()) {
                lock(&sh.client_certificates).push(cert.as_ref().to_vec());
            }
            serve_http(tls, sock, conn, sh, alive.clone()).await;
        }
        Err((e, tcp)) => {
            // tokio-rustls has already sent the alert describing a TLS error, if there is one.
            lock(&sh.tls_errors).push(e.to_string());
            linger(tcp).await;
        }
    }
}

/// Closes gracefully after a failed handshake: sends FIN, then reads and drops what the peer
/// still sends until it closes too (at most 2 s; the caller cuts it short when the server
/// drops), so that closing with unread input does not reset the connection before the peer has
/// read the alert.
async fn linger(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

/// Serves requests on one connection with hyper: `io` is the socket or a TLS stream.
async fn serve_http<S>(io: S, sock: Arc<StdStream>, conn: usize, sh: Arc<Shared>, alive: Alive)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tap = Tap {
        io,
        sock,
        state: Arc::new(Mutex::new(TapState::default())),
        late: sh.late.clone(),
    };
    let control = TapControl {
        state: tap.state.clone(),
        held: Arc::new(watch::Sender::new(false)),
    };
    let service =
        service_fn(move |req| answer(req, sh.clone(), conn, control.clone(), alive.clone()));
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None) // a client may take its time, as with any socket
        // A client that shuts down its sending side after a request still gets the answer;
        // and hyper reads nothing while a request is being answered.
        .half_close(true)
        .serve_connection(TokioIo::new(tap), service)
        .await;
}

type Answer = Response<Full<Bytes>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads one request's body, asks the script, and answers (or arranges the fault).
async fn answer(
    req: hyper::Request<Incoming>,
    sh: Arc<Shared>,
    conn: usize,
    tap: TapControl,
    alive: Alive,
) -> Result<Answer, BoxError> {
    // After a close (or one due once `later` bytes are written), requests are not read.
    tap.open()?;
    let (head, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let index = sh.requests.fetch_add(1, SeqCst);
    let req = Request {
        method: head.method.as_str().to_string(),
        target: head.uri.to_string(),
        headers: head
            .headers
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_string(), v)
            })
            .collect(),
        body: body.to_vec(),
        conn,
        index,
    };
    // The script may block (on a gate, say): never on the runtime's workers.
    let sh2 = sh.clone();
    let (reply, req) = tokio::task::spawn_blocking(move || {
        let script = AssertUnwindSafe(|| (sh2.script)(index, &req));
        let reply = catch_unwind(script).unwrap_or(Reply::Status(500)); // the panic is printed
        (reply, req)
    })
    .await?;
    // A request sent before the last answer's `later` bytes came (by a client that did not
    // wait for them) is answered after them, and right after them.
    tap.unheld(&sh).await?;
    if let Reply::Delay(d, _) = reply {
        sh.sleep(d).await;
    }
    let _ = sh.delivered.send(req);
    match reply {
        Reply::Status(code) | Reply::Delay(_, code) => Ok(response(code, &[])),
        Reply::StatusWithHeaders(code, headers) => Ok(response(code, &headers)),
        Reply::Hang => {
            sh.stopped().await;
            Err("the server was dropped".into())
        }
        Reply::Close => {
            tap.replace(b"", false, true);
            Ok(Response::new(Full::default()))
        }
        Reply::Garbage => {
            tap.replace(GARBAGE, false, true);
            Ok(Response::new(Full::default()))
        }
        Reply::Raw { now, later, close } => {
            match later {
                None => tap.replace(&now, false, close),
                Some((wait, bytes)) => {
                    tap.replace(&now, true, close);
                    tokio::spawn(async move {
                        if sh.sleep(wait).await {
                            tap.inject(bytes, index);
                        }
                        drop(alive);
                    });
                }
            }
            // hyper writes this one into the void: the tap writes `now` in its place
            Ok(Response::new(Full::default()))
        }
    }
}

/// A real answer: `code`, the given headers, and `"{reason}\n"` (no body for 1xx, 204, 304).
fn response(code: u16, headers: &[(String, String)]) -> Answer {
    let status = StatusCode::from_u16(code).expect("support::Reply: a status from 100 to 999");
    let body = if status.is_informational() || code == 204 || code == 304 {
        String::new()
    } else {
        format!("{}\n", status.canonical_reason().unwrap_or("Status"))
    };
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    for (k, v) in headers {
        let k = HeaderName::from_bytes(k.as_bytes()).expect("support::Reply: a header name");
        let v = HeaderValue::from_str(v).expect("support::Reply: a header value");
        answer.headers_mut().append(k, v);
    }
    answer
}

/// The IO under hyper: the socket or TLS stream, and the fault replies' bytes. When told to
/// (by [`TapControl`]), it writes bytes of ours to the stream in place of hyper's next answer
/// (which it swallows), writes more of ours later, unasked, and shuts the connection down. It
/// never looks at the bytes it passes.
struct Tap<S> {
    io: S,
    /// The socket under `io`, to shut down both ways without a TLS close_notify.
    sock: Arc<StdStream>,
    state: Arc<Mutex<TapState>>,
    late: Sender<usize>,
}

#[derive(Default)]
struct TapState {
    /// Bytes of ours to write to the stream before anything else; `sent` of them are written.
    out: Vec<u8>,
    sent: usize,
    /// Bytes of ours were written: the stream is owed a flush.
    flush: bool,
    /// Told on `late` once `out` is written and flushed.
    late: Vec<usize>,
    /// hyper's writes go nowhere until its next flush (all of its answer has come by then).
    swallow: bool,
    /// `later` bytes are still to come: the next answer waits for them.
    hold: bool,
    /// Shut the socket down both ways once `out` is written (and nothing is held).
    close: bool,
    /// Shut down: hyper reads EOF, its writes go nowhere.
    closed: bool,
    /// The task waiting in a read (or a shutdown) that `swallow` or `hold` holds.
    waker: Option<Waker>,
}

/// The service's side of a connection's [`Tap`].
#[derive(Clone)]
struct TapControl {
    state: Arc<Mutex<TapState>>,
    /// `TapState::hold`, for the service to wait on.
    held: Arc<watch::Sender<bool>>,
}

impl TapControl {
    /// An error if the connection is closed, or is to close once `later` bytes are written.
    fn open(&self) -> Result<(), BoxError> {
        let st = lock(&self.state);
        if st.close || st.closed {
            return Err("the connection is closing".into());
        }
        Ok(())
    }

    /// Waits until no `later` bytes are still to come (an error if the server drops).
    async fn unheld(&self, sh: &Shared) -> Result<(), BoxError> {
        let mut held = self.held.subscribe();
        // (The watch's guard is dropped at once: `open` takes the state's lock, under which
        // `replace` and `inject` may be waiting to send on the watch.)
        let unheld = async {
            let _ = held.wait_for(|&hold| !hold).await;
        };
        tokio::select! {
            _ = unheld => {}
            _ = sh.stopped() => return Err("the server was dropped".into()),
        }
        self.open()
    }

    /// hyper's next answer is not written: `now` is, in its place. Then, if `hold`, the next
    /// answer waits for [`TapControl::inject`]; then, if `close`, the connection is shut down.
    fn replace(&self, now: &[u8], hold: bool, close: bool) {
        let mut st = lock(&self.state);
        st.out.extend_from_slice(now);
        st.swallow = true;
        st.hold = hold;
        st.close = close;
        drop(st);
        self.held.send_replace(hold);
    }

    /// Writes `bytes`, unasked, and tells `late` the `index` once they are written.
    fn inject(&self, bytes: Vec<u8>, index: usize) {
        let mut st = lock(&self.state);
        st.out.extend_from_slice(&bytes);
        st.flush = true;
        st.late.push(index);
        st.hold = false;
        let waker = st.waker.take();
        drop(st);
        self.held.send_replace(false);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Tap<S> {
    /// Writes and flushes our pending bytes, then shuts down if that is what comes next.
    fn drive(&mut self, st: &mut TapState, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while st.sent < st.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &st.out[st.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(ErrorKind::WriteZero.into()));
            }
            st.sent += n;
            st.flush = true;
        }
        st.out.clear();
        st.sent = 0;
        if st.flush {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            st.flush = false;
            for index in st.late.drain(..) {
                let _ = self.late.send(index);
            }
        }
        if st.close && !st.hold && !st.closed {
            let _ = self.sock.shutdown(Shutdown::Both);
            st.closed = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let state = this.state.clone();
        let mut st = lock(&state);
        ready!(this.drive(&mut st, cx))?;
        if st.closed || (st.close && st.hold) {
            return Poll::Ready(Ok(())); // EOF: nothing more is read on this connection
        }
        if st.swallow {
            st.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        // Woken when `later` bytes come, to write them while hyper waits for a request.
        st.waker = Some(cx.waker().clone());
        drop(st);
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let state = this.state.clone();
        let mut st = lock(&state);
        ready!(this.drive(&mut st, cx))?;
        if st.swallow || st.closed {
            return Poll::Ready(Ok(buf.len()));
        }
        drop(st);
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let state = this.state.clone();
        let mut st = lock(&state);
        if st.swallow {
            // hyper flushes only once its whole answer has been handed over
            st.swallow = false;
            if let Some(w) = st.waker.take() {
                w.wake();
            }
        }
        ready!(this.drive(&mut st, cx))?;
        if st.closed {
            return Poll::Ready(Ok(()));
        }
        drop(st);
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let state = this.state.clone();
        let mut st = lock(&state);
        ready!(this.drive(&mut st, cx))?;
        if st.closed {
            return Poll::Ready(Ok(())); // already shut down, with no TLS close_notify
        }
        if st.hold {
            st.waker = Some(cx.waker().clone()); // `later` bytes first
            return Poll::Pending;
        }
        drop(st);
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
