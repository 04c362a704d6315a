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
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query exactly as sent on the request line.
    pub target: String,
    /// Header names and values as sent (values trimmed), in order.
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

type Script = dyn Fn(usize, &Request) -> Reply + Send + Sync;

struct Shared {
    script: Box<Script>,
    stop: AtomicBool,
    /// Never sent on; disconnected when the server drops, which wakes `Delay` and `Hang`.
    stop_rx: Receiver<()>,
    delivered: Sender<Request>,
    /// Told the index of each request after whose answer a `Raw` reply wrote more, unasked.
    late: Sender<usize>,
    connections: AtomicUsize,
    requests: AtomicUsize,
    /// A clone of every open connection, by index, so that drop can shut them down.
    open: Mutex<HashMap<usize, TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// `Some` for a TLS server.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Why each failed TLS handshake failed, in order.
    tls_errors: Mutex<Vec<String>>,
    /// The DER of the first certificate each completed handshake's client presented.
    client_certificates: Mutex<Vec<Vec<u8>>>,
}

pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop_tx: Option<Sender<()>>,
    rx: Receiver<Request>,
    late_rx: Receiver<usize>,
    accept: Option<JoinHandle<()>>,
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
        let listener = TcpListener::bind(addr)?; // std sets SO_REUSEADDR on Unix
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let (delivered, rx) = crossbeam_channel::unbounded();
        let (late, late_rx) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared {
            script,
            stop: AtomicBool::new(false),
            stop_rx,
            delivered,
            late,
            connections: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            open: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            tls,
            tls_errors: Mutex::new(Vec::new()),
            client_certificates: Mutex::new(Vec::new()),
        });
        let sh = shared.clone();
        let accept = thread::Builder::new()
            .name("support-accept".into())
            .spawn(move || accept_loop(listener, sh))?;
        Ok(Server {
            addr,
            shared,
            stop_tx: Some(stop_tx),
            rx,
            late_rx,
            accept: Some(accept),
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
        self.stop_tx.take(); // wakes every Delay and Hang
        for s in lock(&self.shared.open).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        if let Some(h) = self.accept.take() {
            join_by(h, deadline); // the listener closes when the accept loop returns
        }
        let handles = std::mem::take(&mut *lock(&self.shared.threads));
        for h in handles {
            join_by(h, deadline);
        }
    }
}

/// Joins a thread if it ends before `deadline`; otherwise leaves it detached.
fn join_by(h: JoinHandle<()>, deadline: Instant) {
    while !h.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
    }
    if h.is_finished() {
        let _ = h.join();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: TcpListener, sh: Arc<Shared>) {
    while !sh.stop.load(SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                // WouldBlock (nothing pending) or a transient error such as ECONNABORTED
                thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let conn = sh.connections.fetch_add(1, SeqCst);
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_nodelay(true);
        if let Ok(clone) = stream.try_clone() {
            let mut open = lock(&sh.open);
            open.insert(conn, clone);
            if sh.stop.load(SeqCst) {
                let _ = stream.shutdown(Shutdown::Both); // drop already swept `open`
            }
        }
        let sh2 = sh.clone();
        let spawned = thread::Builder::new()
            .name(format!("support-conn-{conn}"))
            .spawn(move || serve(stream, conn, &sh2));
        if let Ok(h) = spawned {
            lock(&sh.threads).push(h);
        }
    }
}

fn serve(stream: TcpStream, conn: usize, sh: &Shared) {
    // An I/O error just ends the connection.
    let _ = match &sh.tls {
        None => serve_conn(&stream, conn, sh),
        Some(config) => serve_tls(&stream, config.clone(), conn, sh),
    };
    let _ = stream.shutdown(Shutdown::Both);
    lock(&sh.open).remove(&conn);
}

/// Completes the TLS handshake, then serves requests over it as over plain TCP.
fn serve_tls(
    stream: &TcpStream,
    config: Arc<rustls::ServerConfig>,
    conn: usize,
    sh: &Shared,
) -> io::Result<()> {
    let mut tls = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
    let mut sock = stream;
    while tls.is_handshaking() {
        if let Err(e) = tls.complete_io(&mut sock) {
            // complete_io has already sent the alert describing a TLS error, if there is one.
            lock(&sh.tls_errors).push(e.to_string());
            linger(stream, sh);
            return Ok(());
        }
    }
    if let Some(cert) = tls.peer_certificates().and_then(|certs| certs.first()) {
        lock(&sh.client_certificates).push(cert.as_ref().to_vec());
    }
    serve_conn(rustls::StreamOwned::new(tls, sock), conn, sh)
}

/// Closes gracefully after a failed handshake: sends FIN, then reads and drops what the peer
/// still sends until it closes too (at most 2 s, or until the server drops), so that closing
/// with unread input does not reset the connection before the peer has read the alert.
fn linger(stream: &TcpStream, sh: &Shared) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 4096];
    while !sh.stop.load(SeqCst) && Instant::now() < deadline {
        match (&*stream).read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Serves requests on one connection: `stream` is the socket (`&TcpStream`) or a TLS stream.
fn serve_conn<S: Read + Write>(stream: S, conn: usize, sh: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(stream);
    while !sh.stop.load(SeqCst) {
        let (mut req, keep_alive) = match read_request(&mut reader, conn) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()), // clean EOF between requests
            Err(e) if e.kind() == ErrorKind::InvalidData => {
                return respond(reader.get_mut(), 400, &[], false);
            }
            Err(e) => return Err(e),
        };
        req.index = sh.requests.fetch_add(1, SeqCst);
        let index = req.index;
        let script = AssertUnwindSafe(|| (sh.script)(req.index, &req));
        let reply = catch_unwind(script).unwrap_or(Reply::Status(500)); // the panic is printed
        if let Reply::Delay(d, _) = reply {
            let _ = sh.stop_rx.recv_timeout(d); // cut short when the server drops
        }
        let _ = sh.delivered.send(req);
        let (code, headers) = match reply {
            Reply::Status(code) | Reply::Delay(_, code) => (code, Vec::new()),
            Reply::StatusWithHeaders(code, headers) => (code, headers),
            Reply::Hang => {
                let _ = sh.stop_rx.recv(); // returns when the server drops
                return Ok(());
            }
            Reply::Close => return Ok(()),
            Reply::Garbage => {
                let w = reader.get_mut();
                w.write_all(b"\x00\xffNOT HTTP AT ALL\xfe\r\n\r\n")?;
                return w.flush();
            }
            Reply::Raw { now, later, close } => {
                let w = reader.get_mut();
                w.write_all(&now)?;
                w.flush()?;
                if let Some((wait, bytes)) = later {
                    if sh.stop_rx.recv_timeout(wait).is_ok() || sh.stop.load(SeqCst) {
                        return Ok(());
                    }
                    w.write_all(&bytes)?;
                    w.flush()?;
                    let _ = sh.late.send(index);
                }
                if close {
                    return Ok(());
                }
                continue;
            }
        };
        let keep_alive = keep_alive && !has_token(&headers, "connection", "close");
        respond(reader.get_mut(), code, &headers, keep_alive)?;
        if !keep_alive {
            return Ok(());
        }
    }
    Ok(())
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case(name) && v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

fn bad(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what.to_string())
}

fn eof() -> io::Error {
    io::Error::from(ErrorKind::UnexpectedEof)
}

/// A line without its CRLF (or LF); `None` at EOF before any byte.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    if r.read_until(b'\n', &mut buf)? == 0 {
        return Ok(None);
    }
    if buf.pop() != Some(b'\n') {
        return Err(eof()); // cut off mid-line
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Reads `n` bytes (without trusting `n` for an allocation).
fn read_exact_n(r: &mut impl BufRead, n: usize, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    r.take(n as u64).read_to_end(out)?;
    if out.len() - start != n {
        Err(eof())
    } else {
        Ok(())
    }
}

/// One request and whether the connection stays open after it; `None` on EOF before a request.
fn read_request<S: Read + Write>(
    r: &mut BufReader<S>,
    conn: usize,
) -> io::Result<Option<(Request, bool)>> {
    let line = loop {
        match read_line(r)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue, // stray CRLF between requests
            Some(l) => break l,
        }
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(bad("bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad("not HTTP/1.x"));
    }
    let mut headers = Vec::new();
    loop {
        let l = read_line(r)?.ok_or_else(eof)?;
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').ok_or_else(|| bad("bad header line"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Vec::new(),
        conn,
        index: 0,
    };
    let has = |name, token| has_token(&req.headers, name, token);
    let keep_alive = if version == "HTTP/1.0" {
        has("connection", "keep-alive")
    } else {
        !has("connection", "close")
    };
    if has("expect", "100-continue") {
        let w = r.get_mut();
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()?;
    }
    if let Some(te) = req.header("transfer-encoding") {
        if !te.eq_ignore_ascii_case("chunked") {
            return Err(bad("unsupported transfer-encoding"));
        }
        loop {
            let size_line = read_line(r)?.ok_or_else(eof)?;
            let size = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                while !read_line(r)?.ok_or_else(eof)?.is_empty() {} // trailers
                break;
            }
            read_exact_n(r, size, &mut req.body)?;
            if !read_line(r)?.ok_or_else(eof)?.is_empty() {
                return Err(bad("chunk not followed by CRLF"));
            }
        }
    } else if let Some(len) = req.header("content-length") {
        let len = len.parse().map_err(|_| bad("bad content-length"))?;
        let mut body = Vec::new();
        read_exact_n(r, len, &mut body)?;
        req.body = body;
    }
    Ok(Some((req, keep_alive)))
}

fn respond(
    w: &mut impl Write,
    code: u16,
    headers: &[(String, String)],
    keep_alive: bool,
) -> io::Result<()> {
    let reason = reason(code);
    let body = if code < 200 || code == 204 || code == 304 {
        String::new()
    } else {
        format!("{reason}\n")
    };
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        if !k.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(if keep_alive {
        "\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    head.push_str(&body);
    w.write_all(head.as_bytes())?;
    w.flush()
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
