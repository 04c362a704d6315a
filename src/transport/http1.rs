//! A minimal blocking HTTP/1.1 client for plain `http://` receivers: one kept-alive connection
//! per worker, every constant part of the request rendered once, and per record one write (the
//! head and the body together) and, for a small answer, one read.
//!
//! HTTPS goes through ureq (see [`crate::transport`]).

use std::fmt;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::deadline::deadline_after;
use crate::transport::{Outcome, RESOLVE_TTL, TransportConfig, classify_status, parse_retry_after};
use crate::wire::Method;

/// The `User-Agent` of every request, through either client.
pub(crate) const USER_AGENT: &str = concat!("http-logger/", env!("CARGO_PKG_VERSION"));
/// The largest response head read; a longer one is not HTTP we want to talk to.
const MAX_HEAD: usize = 64 * 1024;
/// The most headers a response head may have.
const MAX_HEADERS: usize = 64;
/// The most of a response body read (and thrown away) to keep the connection; past it the
/// connection is closed instead.
const MAX_BODY: u64 = 64 * 1024;
/// The response buffer's first size; it grows up to [`MAX_HEAD`] for a long head.
const READ_BUF: usize = 8 * 1024;
/// A body up to this size is copied after the head and sent in the same write; a larger one is
/// written on its own, not copied.
const INLINE_BODY: usize = 64 * 1024;
/// How far a socket timeout may exceed the time left before it is lowered: a request may
/// overrun its deadline by this much, and a fast request never pays a `setsockopt`.
const SLACK: Duration = Duration::from_millis(5);
/// Less time left than this is no time left.
const MIN_WAIT: Duration = Duration::from_millis(1);
/// The longest socket timeout set; a longer wait is made of several.
const MAX_SOCKET_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The client of one worker.
pub(crate) struct Http1 {
    method: Method,
    /// POST: `POST <url> HTTP/1.1\r\n`, the headers, then `Content-Length: ` (the length, the
    /// blank line and the body follow). GET: ` HTTP/1.1\r\n`, the headers and the blank line
    /// (after `GET ` and the target). Holds the `Authorization` value: never shown.
    head: Vec<u8>,
    /// How many bytes of a GET url (`http://host[:port]`) come before its target.
    origin_len: usize,
    peer: Peer,
    connect_timeout: Duration,
    timeout: Duration,
    /// The request being sent, reused from one record to the next.
    out: Vec<u8>,
    /// The response being read, reused from one record to the next.
    input: Vec<u8>,
    /// The kept-alive connection, if any. It is only kept after a complete exchange.
    conn: Option<Conn>,
}

impl fmt::Debug for Http1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The head holds the headers, credentials included: never shown.
        f.debug_struct("Http1")
            .field("method", &self.method)
            .field("peer", &self.peer)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

/// Where the receiver is.
#[derive(Debug)]
enum Peer {
    /// An IP address: never looked up.
    Addr(SocketAddr),
    /// A name, looked up again at most once per [`RESOLVE_TTL`].
    Name {
        name: String,
        port: u16,
        cached: Option<(Instant, Vec<SocketAddr>)>,
    },
}

/// A kept-alive connection and the socket timeouts it has now.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    read_timeout: Duration,
    write_timeout: Duration,
}

/// What was read of one answer.
#[derive(Debug, PartialEq, Eq)]
struct Response {
    status: u16,
    retry_after: Option<Duration>,
    /// Whether the connection can carry the next request.
    keep_alive: bool,
}

/// Why no answer could be read.
#[derive(Debug)]
enum ReadError {
    /// EOF or a reset before any byte of the answer: the receiver had closed the connection.
    Closed(io::ErrorKind),
    /// Any other I/O error, a timeout, or EOF in the middle of the head.
    Io(io::Error),
    /// Bytes that are not an HTTP/1.x response head.
    Invalid(String),
}

/// Why an exchange failed.
struct Failure {
    /// The connection was found closed before the receiver could have answered: the request
    /// can be sent again on a new connection.
    closed: bool,
    reason: String,
}

impl Http1 {
    /// A client for `config.endpoint` (an `http://` one); connects at the first record.
    pub(crate) fn new(config: &TransportConfig) -> Http1 {
        let base = &config.endpoint.base;
        let uri: ureq::http::Uri = base.parse().expect("checked by Endpoint::parse");
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(80);
        // As ureq writes it: the host as given, with the port unless it is the default one.
        let host_header = match uri.port() {
            Some(p) if p.as_u16() != 80 => format!("{host}:{p}"),
            _ => host.to_owned(),
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let peer = match bare.parse::<IpAddr>() {
            Ok(ip) => Peer::Addr(SocketAddr::new(ip, port)),
            Err(_) => Peer::Name {
                name: bare.to_owned(),
                port,
                cached: None,
            },
        };
        // The base ends with the url, which starts with `/`: what comes before it is the origin.
        let url = uri.path_and_query().map_or("/", |p| p.as_str());
        debug_assert!(base.ends_with(url), "{base} ends with {url}");
        let origin_len = base.len() - url.len();
        let mut head = Vec::with_capacity(256);
        if config.method == Method::Post {
            head.extend_from_slice(b"POST ");
            head.extend_from_slice(url.as_bytes());
        }
        head.extend_from_slice(b" HTTP/1.1\r\n");
        let given = |name: &str| config.headers.iter().any(|(n, _)| n.as_str() == name);
        let mut header = |name: &str, value: &[u8]| {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        };
        // A header given to the builder replaces ours, as with ureq.
        if !given("host") {
            header("Host", host_header.as_bytes());
        }
        if !given("user-agent") {
            header("User-Agent", USER_AGENT.as_bytes());
        }
        if !given("accept") {
            header("Accept", b"*/*");
        }
        if config.method == Method::Post && !given("content-type") {
            let content_type = if config.json {
                "application/json"
            } else {
                "application/x-www-form-urlencoded"
            };
            header("Content-Type", content_type.as_bytes());
        }
        for (name, value) in &config.headers {
            // The body's length is ours to say.
            if name != ureq::http::header::CONTENT_LENGTH
                && name != ureq::http::header::TRANSFER_ENCODING
            {
                header(name.as_str(), value.as_bytes());
            }
        }
        match config.method {
            Method::Post => head.extend_from_slice(b"Content-Length: "),
            Method::Get => head.extend_from_slice(b"\r\n"),
        }
        Http1 {
            method: config.method,
            head,
            origin_len,
            peer,
            connect_timeout: config.connect_timeout,
            timeout: config.timeout,
            out: Vec::new(),
            input: Vec::new(),
            conn: None,
        }
    }

    /// Sends one POST with this body.
    pub(crate) fn post(&mut self, body: &[u8]) -> Outcome {
        debug_assert_eq!(self.method, Method::Post);
        let deadline = deadline_after(self.timeout);
        self.out.clear();
        self.out.extend_from_slice(&self.head);
        push_decimal(&mut self.out, body.len());
        self.out.extend_from_slice(b"\r\n\r\n");
        let rest = if body.len() <= INLINE_BODY {
            self.out.extend_from_slice(body);
            &[][..]
        } else {
            body
        };
        self.exchange(deadline, rest)
    }

    /// Sends one GET of `url` (`http://host[:port]/path?fields`).
    pub(crate) fn get(&mut self, url: &str) -> Outcome {
        debug_assert_eq!(self.method, Method::Get);
        let deadline = deadline_after(self.timeout);
        let target = url.get(self.origin_len..).unwrap_or("/");
        self.out.clear();
        self.out.extend_from_slice(b"GET ");
        self.out.extend_from_slice(target.as_bytes());
        self.out.extend_from_slice(&self.head);
        self.exchange(deadline, &[])
    }

    /// Closes the connection, if one is open.
    pub(crate) fn disconnect(&mut self) {
        self.conn = None;
    }

    /// Sends `self.out` then `rest` and reads the answer. A kept-alive connection found closed
    /// is replaced and the request sent again, once.
    fn exchange(&mut self, deadline: Instant, rest: &[u8]) -> Outcome {
        let mut resent = false;
        loop {
            let reused = self.conn.is_some();
            if !reused {
                match self.connect(deadline) {
                    Ok(conn) => self.conn = Some(conn),
                    Err(reason) => return transient(reason),
                }
            }
            match self.attempt(deadline, rest) {
                Ok(response) => {
                    if !response.keep_alive {
                        self.conn = None;
                    }
                    // Keep a huge GET's buffer for one record only.
                    if self.out.capacity() > 4 * INLINE_BODY {
                        self.out = Vec::new();
                    }
                    return classify_status(response.status, response.retry_after);
                }
                Err(failure) => {
                    self.conn = None;
                    if failure.closed && reused && !resent {
                        // The receiver closed the idle connection (a restart, its keep-alive
                        // timeout): it cannot have answered this request.
                        resent = true;
                        continue;
                    }
                    return transient(failure.reason);
                }
            }
        }
    }

    /// One request and its answer on the open connection.
    fn attempt(&mut self, deadline: Instant, rest: &[u8]) -> Result<Response, Failure> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failure {
                closed: false,
                reason: "no connection".into(),
            });
        };
        let stream = &conn.stream;
        let written = write_all(stream, &self.out, deadline, &mut conn.write_timeout)
            .and_then(|()| write_all(stream, rest, deadline, &mut conn.write_timeout));
        if let Err(e) = written {
            if !is_timeout(&e) {
                // The receiver may have answered before it stopped reading (a 413 for a body
                // too large): that answer, not the broken write, is the outcome.
                let mut reader = Timed {
                    stream,
                    deadline,
                    timeout: &mut conn.read_timeout,
                };
                if let Ok(response) = read_response(&mut reader, &mut self.input) {
                    return Ok(Response {
                        keep_alive: false,
                        ..response
                    });
                }
            }
            return Err(Failure {
                closed: !is_timeout(&e),
                reason: io_reason(&e),
            });
        }
        let mut reader = Timed {
            stream,
            deadline,
            timeout: &mut conn.read_timeout,
        };
        read_response(&mut reader, &mut self.input).map_err(|e| match e {
            ReadError::Closed(kind) => Failure {
                closed: true,
                reason: match kind {
                    io::ErrorKind::UnexpectedEof => {
                        "connection closed by the receiver before it answered".into()
                    }
                    _ => io_reason(&kind.into()),
                },
            },
            ReadError::Io(e) => Failure {
                closed: false,
                reason: io_reason(&e),
            },
            ReadError::Invalid(what) => Failure {
                closed: false,
                reason: format!("invalid response from the receiver: {what}"),
            },
        })
    }

    /// Opens a connection to the first address that takes one.
    fn connect(&mut self, deadline: Instant) -> Result<Conn, String> {
        let (connect_timeout, timeout) = (self.connect_timeout, self.timeout);
        let addrs = self.peer.addrs(deadline)?;
        let mut last = None;
        for addr in addrs {
            let wait = time_left(deadline).ok_or("timeout")?.min(connect_timeout);
            if wait.is_zero() {
                return Err("timeout".into());
            }
            match TcpStream::connect_timeout(addr, wait) {
                Ok(stream) => {
                    let socket_timeout = timeout.clamp(MIN_WAIT, MAX_SOCKET_TIMEOUT);
                    let setup = stream
                        .set_nodelay(true)
                        .and_then(|()| stream.set_read_timeout(Some(socket_timeout)))
                        .and_then(|()| stream.set_write_timeout(Some(socket_timeout)));
                    if let Err(e) = setup {
                        return Err(format!("connection failed: {e}"));
                    }
                    return Ok(Conn {
                        stream,
                        read_timeout: socket_timeout,
                        write_timeout: socket_timeout,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) if is_timeout(&e) => "timeout".into(),
            Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => "connection refused".into(),
            Some(e) => format!("connection failed: {e}"),
            None => "host not found".into(),
        })
    }
}

impl Peer {
    /// The addresses to try, looked up if needed.
    fn addrs(&mut self, deadline: Instant) -> Result<&[SocketAddr], String> {
        match self {
            Peer::Addr(addr) => Ok(std::slice::from_ref(addr)),
            Peer::Name { name, port, cached } => {
                let fresh = cached
                    .as_ref()
                    .is_some_and(|(at, _)| at.elapsed() < RESOLVE_TTL);
                if !fresh {
                    let wait = time_left(deadline).ok_or("timeout")?;
                    *cached = Some((Instant::now(), lookup(name, *port, wait)?));
                }
                Ok(cached.as_ref().map_or(&[][..], |(_, addrs)| &addrs[..]))
            }
        }
    }
}

/// Looks `name` up on a thread of its own, waiting at most `wait` for it (the system's
/// resolver has no timeout of its own). Runs at most once per [`RESOLVE_TTL`].
fn lookup(name: &str, port: u16, wait: Duration) -> Result<Vec<SocketAddr>, String> {
    let resolve = move |name: &str| {
        (name, port)
            .to_socket_addrs()
            .map(|addrs| addrs.collect::<Vec<_>>())
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let owned = name.to_owned();
    let spawned = std::thread::Builder::new()
        .name("http-logger-lookup".into())
        .spawn(move || {
            let _ = tx.send(resolve(&owned));
        });
    let result = match spawned {
        Ok(_) => rx.recv_timeout(wait).map_err(|_| "timeout")?,
        Err(_) => resolve(name),
    };
    match result {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err("host not found".into()),
        Err(e) => Err(format!("host not found: {e}")),
    }
}

fn transient(reason: String) -> Outcome {
    Outcome::Transient {
        reason,
        retry_after: None,
    }
}

/// A short reason for an I/O error.
fn io_reason(e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => "timeout".into(),
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset by the receiver".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::BrokenPipe => "connection closed by the receiver".into(),
        K::UnexpectedEof => "connection closed by the receiver mid-answer".into(),
        _ => format!("io: {e}"),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

fn timed_out() -> io::Error {
    io::ErrorKind::TimedOut.into()
}

/// The time left until `deadline`, if any.
fn time_left(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (left >= MIN_WAIT).then_some(left)
}

/// Runs `op` (a blocking read or write on a socket whose timeout is `*current`) so that it
/// ends by `deadline`: the socket timeout is lowered when it exceeds the time left by more
/// than [`SLACK`], and raised only when it ran out before the deadline. A fast operation costs
/// no `setsockopt`.
fn by_deadline<T>(
    deadline: Instant,
    current: &mut Duration,
    set: impl Fn(Duration) -> io::Result<()>,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    loop {
        // Again at every pass: an interrupted call must not restart a full socket timeout.
        let left = time_left(deadline).ok_or_else(timed_out)?;
        if *current > left + SLACK {
            let wait = left.min(MAX_SOCKET_TIMEOUT);
            set(wait)?;
            *current = wait;
        }
        match op() {
            Err(e) if is_timeout(&e) => {
                // The socket's timeout was set for an earlier, shorter wait: wait the rest.
                let left = time_left(deadline).ok_or_else(timed_out)?;
                let wait = left.min(MAX_SOCKET_TIMEOUT);
                set(wait)?;
                *current = wait;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// Writes all of `data` by `deadline`.
fn write_all(
    stream: &TcpStream,
    mut data: &[u8],
    deadline: Instant,
    timeout: &mut Duration,
) -> io::Result<()> {
    while !data.is_empty() {
        let n = by_deadline(
            deadline,
            timeout,
            |t| stream.set_write_timeout(Some(t)),
            || (&*stream).write(data),
        )?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        data = &data[n..];
    }
    Ok(())
}

/// Reads from a socket, each read ending by the deadline (a timeout is `TimedOut`).
struct Timed<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
    timeout: &'a mut Duration,
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let stream = self.stream;
        by_deadline(
            self.deadline,
            self.timeout,
            |t| stream.set_read_timeout(Some(t)),
            || (&*stream).read(buf),
        )
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A read, retried when interrupted.
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// Reads one answer into `buf` (reused; its length is the room read into): skips 1xx
/// answers, takes the status and `Retry-After` from the head, then reads and throws away the
/// body. Once the head is read, the status stands: a body cut short, malformed or too long
/// only costs the connection (`keep_alive: false`), as do bytes past the end of the answer.
fn read_response(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<Response, ReadError> {
    if buf.len() < READ_BUF {
        buf.resize(READ_BUF, 0);
    }
    let mut filled = 0;
    let mut received = false;
    // The head is parsed again only when the bytes just read may have ended it (or ended its
    // first line, where garbage shows): a head trickling in byte by byte costs linear time.
    let mut checked: usize = 0;
    let mut line_seen = false;
    loop {
        let new = &buf[checked.saturating_sub(2)..filled];
        let worth = (checked == 0 && filled > 0)
            || (!line_seen && new.contains(&b'\n'))
            || new.windows(2).any(|w| w == b"\n\n")
            || new.windows(3).any(|w| w == b"\n\r\n");
        line_seen |= new.contains(&b'\n');
        checked = filled;
        let parsed = if worth {
            parse_head(&buf[..filled])?
        } else {
            None
        };
        let Some(head) = parsed else {
            if filled >= MAX_HEAD {
                return Err(ReadError::Invalid(format!(
                    "a response head longer than {} KiB",
                    MAX_HEAD / 1024
                )));
            }
            if filled == buf.len() {
                buf.resize((buf.len() * 2).min(MAX_HEAD), 0);
            }
            match read_some(r, &mut buf[filled..]) {
                Ok(0) if !received => {
                    return Err(ReadError::Closed(io::ErrorKind::UnexpectedEof));
                }
                Ok(0) => return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => {
                    filled += n;
                    received = true;
                }
                Err(e)
                    if !received
                        && matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                        ) =>
                {
                    return Err(ReadError::Closed(e.kind()));
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
            continue;
        };
        buf.copy_within(head.len..filled, 0);
        filled -= head.len;
        if (100..200).contains(&head.status) {
            if head.status == 101 {
                // We never ask to switch protocols.
                return Err(ReadError::Invalid("101 Switching Protocols".into()));
            }
            // An interim answer: the real one follows, maybe already in the buffer.
            (checked, line_seen) = (0, false);
            continue;
        }
        let reusable = discard_body(r, buf, filled, head.framing);
        return Ok(Response {
            status: head.status,
            retry_after: head.retry_after,
            keep_alive: head.keep_alive && reusable,
        });
    }
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// At EOF, and the receiver said it closes the connection (HTTP/1.0, `Connection:
    /// close`): read until it does.
    Close,
    /// At EOF, but the receiver did not say it closes: waiting for the end could take the whole
    /// timeout for each record, so nothing is read and the connection is dropped at once.
    Unframed,
}

/// What a complete response head says.
#[derive(Debug)]
struct Head {
    /// Its length in bytes.
    len: usize,
    status: u16,
    retry_after: Option<Duration>,
    keep_alive: bool,
    framing: Framing,
}

/// Parses a response head at the start of `bytes`: `None` while it is incomplete.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, ReadError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    // Left uninitialized: httparse fills what it uses (no 2 KiB to zero per answer).
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        bytes,
        &mut headers,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ReadError::Invalid(e.to_string())),
    };
    let invalid = |what: &str| Err(ReadError::Invalid(what.to_owned()));
    let Some(status) = response.code else {
        return invalid("no status");
    };
    let (mut close, mut keep_alive) = (false, false);
    let (mut length, mut chunked, mut retry_after) = (None, None, None);
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = parse_length(header.value) else {
                return invalid("a malformed Content-Length");
            };
            if length.is_some_and(|l| l != n) {
                return invalid("conflicting Content-Length headers");
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding applied decides.
            let last = header.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("retry-after") {
            retry_after = std::str::from_utf8(header.value)
                .ok()
                .and_then(parse_retry_after);
        }
    }
    let persistent = match response.version {
        Some(1) => !close,
        _ => keep_alive && !close,
    };
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (None, Some(n)) => Framing::Length(n),
            // A coding other than chunked last, or no length: the body ends at EOF (RFC 9112,
            // 6.3).
            (Some(false), _) | (None, None) if persistent => Framing::Unframed,
            (Some(false), _) | (None, None) => Framing::Close,
        }
    };
    let keep_alive = persistent && matches!(framing, Framing::Length(_) | Framing::Chunked);
    Ok(Some(Head {
        len,
        status,
        retry_after,
        keep_alive,
        framing,
    }))
}

/// A `Content-Length` value: digits, or a list of the same digits (`1, 1`, which RFC 9110,
/// 8.6, allows a recipient to take as one).
fn parse_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for value in value.split(|&b| b == b',') {
        let value = value.trim_ascii();
        if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = std::str::from_utf8(value).ok()?.parse().ok()?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// Reads and throws away the body whose first `filled` bytes are at the start of `buf`.
/// Returns whether the connection can carry another request: the body ended where its
/// framing said, nothing followed it, and it was no longer than [`MAX_BODY`].
fn discard_body(r: &mut impl Read, buf: &mut [u8], mut filled: usize, framing: Framing) -> bool {
    match framing {
        Framing::Length(n) => {
            if n > MAX_BODY {
                return false;
            }
            let mut left = n as usize;
            loop {
                if filled > left {
                    return false; // more than it said
                }
                left -= filled;
                if left == 0 {
                    return true;
                }
                filled = match read_some(r, buf) {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => n,
                };
            }
        }
        Framing::Chunked => {
            let mut chunks = Chunks::default();
            loop {
                match chunks.feed(&buf[..filled]) {
                    Err(_) => return false,
                    Ok(used) if chunks.done() => return used == filled,
                    Ok(_) => {}
                }
                filled = match read_some(r, buf) {
                    Ok(0) | Err(_) => return false,
                    Ok(n) => n,
                };
            }
        }
        Framing::Close => {
            let mut total = filled as u64;
            while total <= MAX_BODY {
                match read_some(r, buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
            }
            false
        }
        Framing::Unframed => false,
    }
}

/// Where a chunked body decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    /// In the hex digits of a chunk size.
    #[default]
    Size,
    /// After the size: whitespace or an extension, up to the line's end.
    Extension,
    /// After the CR of the size line.
    SizeLf,
    /// In the data of a chunk: this many bytes left.
    Data(u64),
    /// After a chunk's data: its CR.
    DataCr,
    /// After a chunk's data: its LF.
    DataLf,
    /// In the trailer section: this many bytes on the current line.
    Trailer(usize),
    /// After the CR of a trailer line; `true` if the line was empty.
    TrailerLf(bool),
    Done,
}

/// A chunked body decoder that throws the data away, fed the body as it arrives.
#[derive(Debug, Default)]
struct Chunks {
    state: ChunkState,
    /// The size being read.
    size: u64,
    /// Its hex digits so far.
    digits: u32,
    /// Bytes of size lines and trailers since the last data: bounded by [`MAX_HEAD`].
    meta: usize,
    /// Data bytes announced so far: bounded by [`MAX_BODY`].
    total: u64,
}

impl Chunks {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes `input` up to the end of the body; returns how many bytes it used.
    fn feed(&mut self, input: &[u8]) -> Result<usize, &'static str> {
        use ChunkState as S;
        let mut i = 0;
        while i < input.len() {
            if let S::Data(left) = self.state {
                let n = left.min((input.len() - i) as u64);
                i += n as usize;
                self.state = if n == left {
                    S::DataCr
                } else {
                    S::Data(left - n)
                };
                continue;
            }
            let b = input[i];
            i += 1;
            self.meta += 1;
            if self.meta > MAX_HEAD {
                return Err("chunk metadata too long");
            }
            self.state = match (self.state, b) {
                (S::Done, _) => return Ok(i - 1),
                (S::Data(_), _) => return Err("unreachable"),
                (S::Size, b) if b.is_ascii_hexdigit() => {
                    if self.digits >= 15 {
                        return Err("chunk size too large");
                    }
                    let digit = (b as char).to_digit(16).unwrap_or(0);
                    self.size = self.size * 16 + u64::from(digit);
                    self.digits += 1;
                    S::Size
                }
                (S::Size, _) if self.digits == 0 => return Err("invalid chunk size"),
                (S::Size | S::Extension, b'\r') => S::SizeLf,
                (S::Size | S::Extension | S::SizeLf, b'\n') => self.end_size_line()?,
                (S::Size, b';' | b' ' | b'\t') => S::Extension,
                (S::Size | S::SizeLf, _) => return Err("invalid chunk size line"),
                (S::Extension, _) => S::Extension,
                (S::DataCr, b'\r') => S::DataLf,
                (S::DataCr | S::DataLf, b'\n') => {
                    self.meta = 0;
                    S::Size
                }
                (S::DataCr | S::DataLf, _) => return Err("chunk data not followed by CRLF"),
                (S::Trailer(len), b'\r') => S::TrailerLf(len == 0),
                (S::Trailer(0), b'\n') => S::Done,
                (S::Trailer(_), b'\n') => S::Trailer(0),
                (S::Trailer(len), _) => S::Trailer(len + 1),
                (S::TrailerLf(true), b'\n') => S::Done,
                (S::TrailerLf(false), b'\n') => S::Trailer(0),
                (S::TrailerLf(_), _) => return Err("invalid trailer line"),
            };
            if self.state == S::Done {
                return Ok(i);
            }
        }
        Ok(i)
    }

    fn end_size_line(&mut self) -> Result<ChunkState, &'static str> {
        let size = std::mem::take(&mut self.size);
        self.digits = 0;
        if size == 0 {
            return Ok(ChunkState::Trailer(0));
        }
        self.total += size;
        if self.total > MAX_BODY {
            return Err("chunked body too long");
        }
        self.meta = 0;
        Ok(ChunkState::Data(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    use ureq::http::{HeaderName, HeaderValue};

    use crate::transport::endpoint::Endpoint;

    /// An in-memory connection: each read returns (part of) the next piece, then EOF or an
    /// error.
    struct Pieces {
        pieces: VecDeque<Vec<u8>>,
        end: Option<io::ErrorKind>,
        /// Bytes handed out so far.
        read: usize,
    }

    impl Pieces {
        fn new<const N: usize>(pieces: [&[u8]; N]) -> Pieces {
            Pieces {
                pieces: pieces.iter().map(|p| p.to_vec()).collect(),
                end: None,
                read: 0,
            }
        }

        /// `bytes` in pieces of `size` bytes.
        fn split(bytes: &[u8], size: usize) -> Pieces {
            Pieces {
                pieces: bytes.chunks(size).map(<[u8]>::to_vec).collect(),
                end: None,
                read: 0,
            }
        }

        fn then_fail(mut self, kind: io::ErrorKind) -> Pieces {
            self.end = Some(kind);
            self
        }
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(piece) = self.pieces.front_mut() else {
                return match self.end {
                    None => Ok(0),
                    Some(kind) => Err(kind.into()),
                };
            };
            let n = piece.len().min(buf.len());
            buf[..n].copy_from_slice(&piece[..n]);
            piece.drain(..n);
            if piece.is_empty() {
                self.pieces.pop_front();
            }
            self.read += n;
            Ok(n)
        }
    }

    fn read(r: &mut Pieces) -> Result<Response, ReadError> {
        read_response(r, &mut Vec::new())
    }

    fn ok(status: u16, keep_alive: bool) -> Response {
        Response {
            status,
            retry_after: None,
            keep_alive,
        }
    }

    /// Every way of cutting `bytes` into pieces gives the same answer.
    fn in_any_pieces(bytes: &[u8], want: &Response) {
        for size in [1, 2, 3, 7, 16, bytes.len().max(1)] {
            let got = read(&mut Pieces::split(bytes, size));
            assert_eq!(got.as_ref().ok(), Some(want), "pieces of {size}: {got:?}");
        }
    }

    #[test]
    fn a_content_length_body_is_read_and_the_connection_kept() {
        let answer =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n";
        in_any_pieces(answer, &ok(200, true));
        in_any_pieces(b"HTTP/1.1 204 No Content\r\n\r\n", &ok(204, true));
        in_any_pieces(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            &ok(400, true),
        );
        // Nothing is read past the answer.
        let mut r = Pieces::new([answer, b"HTTP/1.1 200 OK\r\n"]);
        assert_eq!(read(&mut r).unwrap(), ok(200, true));
        assert_eq!(r.read, answer.len());
    }

    #[test]
    fn what_the_head_says_about_the_connection_is_followed() {
        let cases: [(&[u8], bool); 6] = [
            (
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nconnection: Keep-Alive, CLOSE\r\nContent-Length: 0\r\n\r\n",
                false,
            ),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            (
                b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                true,
            ),
            (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false),
            (
                b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                true,
            ),
        ];
        for (answer, keep) in cases {
            let got = read(&mut Pieces::new([answer])).unwrap();
            assert_eq!(got, ok(200, keep), "{}", String::from_utf8_lossy(answer));
        }
    }

    #[test]
    fn status_and_retry_after_are_taken() {
        let answer =
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 4\r\n\r\nbusy";
        let want = Response {
            status: 503,
            retry_after: Some(Duration::from_secs(7)),
            keep_alive: true,
        };
        in_any_pieces(answer, &want);
    }

    #[test]
    fn a_body_past_its_length_a_cut_body_or_a_long_body_cost_the_connection_only() {
        // Bytes after the answer: the status stands, the connection goes.
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOKextra";
        assert_eq!(read(&mut Pieces::new([answer])).unwrap(), ok(200, false));
        let mut r = Pieces::new([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", b"OKx"]);
        assert_eq!(read(&mut r).unwrap(), ok(200, false));
        // EOF or an error in the middle of the body.
        let mut r = Pieces::new([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]);
        assert_eq!(read(&mut r).unwrap(), ok(200, false));
        let mut r = Pieces::new([b"HTTP/1.1 500 Oops\r\nContent-Length: 10\r\n\r\nabc"])
            .then_fail(io::ErrorKind::TimedOut);
        assert_eq!(read(&mut r).unwrap(), ok(500, false));
        // A body over 64 KiB is not read at all.
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n";
        let mut r = Pieces::new([head, &[b'x'; 100_000]]);
        assert_eq!(read(&mut r).unwrap(), ok(200, false));
        assert_eq!(r.read, head.len());
        // One of 64 KiB is.
        let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n".to_vec();
        answer.resize(answer.len() + 65536, b'x');
        in_any_pieces(&answer, &ok(200, true));
    }

    #[test]
    fn a_chunked_body_is_decoded_and_thrown_away() {
        let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            4;name=value\r\nWiki\r\n5 \r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
        in_any_pieces(answer, &ok(200, true));
        // Trailers, bare LFs, upper-case hex, a coding before chunked.
        let answer = b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            A\nabcdefghij\n0\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\n";
        in_any_pieces(answer, &ok(202, true));
        // Chunked wins over Content-Length.
        let answer =
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        in_any_pieces(answer, &ok(200, true));
        // Nothing is read past the last chunk; bytes after it cost the connection.
        let body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        let mut r = Pieces::new([body, b"HTTP/1.1 200 OK\r\n"]);
        assert_eq!(read(&mut r).unwrap(), ok(200, true));
        assert_eq!(r.read, body.len());
        let mut r = Pieces::new([&[&body[..], b"HTTP"].concat()]);
        assert_eq!(read(&mut r).unwrap(), ok(200, false));
    }

    #[test]
    fn a_malformed_cut_or_huge_chunked_body_costs_the_connection_only() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let bodies: [&[u8]; 7] = [
            b"zz\r\n",
            b"\r\n",
            b"2\r\nokX\r\n0\r\n\r\n",
            b"2\r\nok\r\n",                  // EOF before the last chunk
            b"2\r\nok\r\n0\r\nX-Trailer: 1", // EOF in the trailers
            b"ffffffffffffffff\r\n",
            b"10001\r\n", // a chunk over 64 KiB
        ];
        for body in bodies {
            let got = read(&mut Pieces::new([head, body])).unwrap();
            assert_eq!(got, ok(200, false), "{}", String::from_utf8_lossy(body));
        }
        // More than 64 KiB in small chunks.
        let mut body = Vec::new();
        for _ in 0..70 {
            body.extend_from_slice(b"400\r\n");
            body.extend_from_slice(&[b'x'; 0x400]);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let got = read(&mut Pieces::new([head, &body])).unwrap();
        assert_eq!(got, ok(200, false));
    }

    #[test]
    fn a_body_without_length_is_read_to_eof_when_the_receiver_closes() {
        in_any_pieces(b"HTTP/1.0 200 OK\r\n\r\nfine", &ok(200, false));
        let answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of this until EOF";
        in_any_pieces(answer, &ok(200, false));
        // An unknown transfer coding: until EOF too.
        in_any_pieces(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nabcd",
            &ok(200, false),
        );
        let mut r = Pieces::new([b"HTTP/1.0 200 OK\r\n\r\n", b"ab", b"cd"]);
        assert_eq!(read(&mut r).unwrap(), ok(200, false));
        assert_eq!(r.read, 23, "read to EOF");
        // At most 64 KiB of it is read.
        let mut r = Pieces::new([b"HTTP/1.0 200 OK\r\n\r\n", &vec![b'x'; 1 << 20]]);
        assert_eq!(read(&mut r).unwrap(), ok(200, false));
        assert!(r.read < 100 * 1024, "{}", r.read);
    }

    #[test]
    fn a_body_without_length_on_a_connection_kept_open_is_not_waited_for() {
        // Waiting for its EOF would take the whole timeout, for each record.
        for head in [
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
        ] {
            let mut r = Pieces::new([head, b"a body that never ends"]);
            assert_eq!(read(&mut r).unwrap(), ok(200, false));
            assert_eq!(r.read, head.len(), "nothing read past the head");
        }
    }

    #[test]
    fn an_interrupted_call_cannot_stretch_the_deadline() {
        // A signal handler on the worker thread interrupts every call: each retry must count
        // against the same deadline.
        let deadline = Instant::now() + Duration::from_millis(100);
        let mut current = Duration::from_secs(10);
        let mut calls = 0;
        let result = by_deadline(
            deadline,
            &mut current,
            |_| Ok(()),
            || {
                calls += 1;
                if calls > 1000 {
                    return Ok(()); // ten seconds of interruptions: long past the deadline
                }
                thread::sleep(Duration::from_millis(10));
                Err(io::ErrorKind::Interrupted.into())
            },
        );
        assert_eq!(result.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        assert!(
            current < Duration::from_millis(100),
            "socket timeout {current:?}"
        );
    }

    #[test]
    fn interim_answers_are_skipped() {
        let answer = b"HTTP/1.1 100 Continue\r\n\r\n\
            HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
            HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        in_any_pieces(answer, &ok(201, true));
        // A 1xx, then EOF: closed mid-answer, not before it.
        let got = read(&mut Pieces::new([b"HTTP/1.1 100 Continue\r\n\r\n"]));
        assert!(
            matches!(got, Err(ReadError::Io(ref e)) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{got:?}"
        );
        let got = read(&mut Pieces::new([
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ]));
        assert!(matches!(got, Err(ReadError::Invalid(_))), "{got:?}");
    }

    #[test]
    fn garbage_is_an_invalid_answer() {
        let garbage: [&[u8]; 8] = [
            b"\x00\xffNOT HTTP AT ALL\xfe\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1,\r\n\r\n",
        ];
        for bytes in garbage {
            let got = read(&mut Pieces::split(bytes, 3));
            assert!(
                matches!(got, Err(ReadError::Invalid(_))),
                "{}: {got:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // Same Content-Length twice is fine, in two headers or in one.
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx";
        in_any_pieces(answer, &ok(200, true));
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 1 , 1\r\n\r\nx";
        in_any_pieces(answer, &ok(200, true));
    }

    #[test]
    fn a_head_over_64_kib_is_refused_after_reading_at_most_that() {
        let mut r = Pieces::new([b"HTTP/1.1 200 OK\r\nX-Pad: ", &[b'a'; 100_000]]);
        let got = read(&mut r);
        assert!(
            matches!(got, Err(ReadError::Invalid(ref what)) if what.contains("64 KiB")),
            "{got:?}"
        );
        assert!(r.read <= MAX_HEAD, "{}", r.read);
        // One just under the limit is fine.
        let mut answer = b"HTTP/1.1 200 OK\r\nX-Pad: ".to_vec();
        answer.resize(MAX_HEAD - 40, b'a');
        answer.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        in_any_pieces(&answer, &ok(200, true));
        // Too many headers.
        let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
        answer.extend_from_slice(&b"X: y\r\n".repeat(MAX_HEADERS + 1));
        answer.extend_from_slice(b"\r\n");
        assert!(matches!(
            read(&mut Pieces::new([&answer])),
            Err(ReadError::Invalid(_))
        ));
    }

    #[test]
    fn eof_or_reset_before_any_byte_means_closed_and_later_means_cut() {
        let got = read(&mut Pieces::new([]));
        assert!(
            matches!(got, Err(ReadError::Closed(io::ErrorKind::UnexpectedEof))),
            "{got:?}"
        );
        let got = read(&mut Pieces::new([]).then_fail(io::ErrorKind::ConnectionReset));
        assert!(
            matches!(got, Err(ReadError::Closed(io::ErrorKind::ConnectionReset))),
            "{got:?}"
        );
        let got = read(&mut Pieces::new([b"HTTP/1.1 200"]));
        assert!(
            matches!(got, Err(ReadError::Io(ref e)) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{got:?}"
        );
        let got =
            read(&mut Pieces::new([b"HTTP/1.1 200"]).then_fail(io::ErrorKind::ConnectionReset));
        assert!(matches!(got, Err(ReadError::Io(_))), "{got:?}");
        let got = read(&mut Pieces::new([]).then_fail(io::ErrorKind::TimedOut));
        assert!(matches!(got, Err(ReadError::Io(_))), "{got:?}");
    }

    #[test]
    fn the_reused_buffer_gives_the_same_answers() {
        let mut buf = Vec::new();
        let long = format!(
            "HTTP/1.1 200 OK\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(20_000)
        );
        for answer in [
            long.as_bytes(),
            b"HTTP/1.1 429 Too Many\r\nContent-Length: 0\r\n\r\n",
            long.as_bytes(),
        ] {
            let got = read_response(&mut Pieces::split(answer, 1000), &mut buf).unwrap();
            assert!(got.keep_alive);
        }
        assert!(buf.len() <= MAX_HEAD);
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 99, 1234567, usize::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
    }

    fn config(host: &str, url: &str, method: Method) -> TransportConfig {
        TransportConfig {
            endpoint: Endpoint::parse(host, url, false).unwrap(),
            method,
            headers: Vec::new(),
            tls: None,
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            json: false,
        }
    }

    #[test]
    fn the_head_is_rendered_once_as_ureq_sends_it() {
        let mut c = config("127.0.0.1:8000", "/log?src=app", Method::Post);
        let mut auth = HeaderValue::from_static("Basic c2VjcmV0");
        auth.set_sensitive(true);
        c.headers = vec![
            (
                HeaderName::from_static("x-service"),
                HeaderValue::from_static("billing"),
            ),
            (ureq::http::header::AUTHORIZATION, auth),
        ];
        let http = Http1::new(&c);
        let want = format!(
            "POST /log?src=app HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: {USER_AGENT}\r\n\
             Accept: */*\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             x-service: billing\r\nauthorization: Basic c2VjcmV0\r\nContent-Length: "
        );
        assert_eq!(String::from_utf8_lossy(&http.head), want);
        assert!(matches!(http.peer, Peer::Addr(a) if a.to_string() == "127.0.0.1:8000"));
        let shown = format!("{http:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");

        // Port 80 is left out, as ureq does; IPv6 keeps its brackets; JSON.
        let mut c = config("[::1]:80", "/", Method::Post);
        c.json = true;
        let http = Http1::new(&c);
        let head = String::from_utf8_lossy(&http.head).into_owned();
        assert!(
            head.starts_with("POST / HTTP/1.1\r\nHost: [::1]\r\n"),
            "{head}"
        );
        assert!(
            head.contains("\r\nContent-Type: application/json\r\n"),
            "{head}"
        );
        assert!(matches!(http.peer, Peer::Addr(a) if a.to_string() == "[::1]:80"));

        // GET: the target comes from the url the transport built; no body headers.
        let c = config("logs.internal:8080", "/log", Method::Get);
        let mut http = Http1::new(&c);
        assert_eq!(
            String::from_utf8_lossy(&http.head),
            format!(
                " HTTP/1.1\r\nHost: logs.internal:8080\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n\r\n"
            )
        );
        assert!(
            matches!(&http.peer, Peer::Name { name, port: 8080, .. } if name == "logs.internal")
        );
        assert_eq!(
            &"http://logs.internal:8080/log?msg=hi"[http.origin_len..],
            "/log?msg=hi"
        );
        http.timeout = Duration::ZERO; // nothing is sent
        assert!(matches!(
            http.get("http://logs.internal:8080/log?msg=hi"),
            Outcome::Transient { .. }
        ));
        assert!(
            http.out
                .starts_with(b"GET /log?msg=hi HTTP/1.1\r\nHost: logs.internal:8080\r\n")
        );

        // Headers given to the builder replace ours; the body's length stays ours.
        let mut c = config("h", "/", Method::Post);
        c.headers = vec![
            (
                ureq::http::header::HOST,
                HeaderValue::from_static("front.example"),
            ),
            (
                ureq::http::header::USER_AGENT,
                HeaderValue::from_static("app/1"),
            ),
            (
                ureq::http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            ),
            (
                ureq::http::header::CONTENT_LENGTH,
                HeaderValue::from_static("5"),
            ),
        ];
        let head = String::from_utf8_lossy(&Http1::new(&c).head).into_owned();
        assert_eq!(
            head,
            "POST / HTTP/1.1\r\nAccept: */*\r\nhost: front.example\r\nuser-agent: app/1\r\n\
             content-type: text/plain\r\nContent-Length: "
        );
    }

    /// A receiver on 127.0.0.1 that runs `serve` on each connection it accepts, and counts
    /// the connections.
    fn receiver(
        serve: impl Fn(usize, TcpStream) + Send + Sync + 'static,
    ) -> (SocketAddr, mpsc::Receiver<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let serve = std::sync::Arc::new(serve);
        thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let _ = tx.send(i);
                let serve = serve.clone();
                thread::spawn(move || serve(i, stream));
            }
        });
        (addr, rx)
    }

    /// Reads one request (head and Content-Length body) and returns its body.
    fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).ok()? == 0 {
                return None;
            }
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        let len: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0; len];
        stream.read_exact(&mut body).ok()?;
        Some(body)
    }

    fn client(addr: SocketAddr, timeout: Duration) -> Http1 {
        let mut c = config(&addr.to_string(), "/", Method::Post);
        c.timeout = timeout;
        Http1::new(&c)
    }

    #[test]
    fn a_kept_alive_connection_closed_by_the_receiver_is_replaced_without_a_retry() {
        // Each connection answers one request, then closes without saying so.
        let (tx, bodies) = mpsc::channel();
        let (addr, conns) = receiver(move |_, mut stream| {
            if let Some(body) = read_request(&mut stream) {
                let _ = tx.send(body);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let mut http = client(addr, Duration::from_secs(5));
        for i in 0..5 {
            let body = format!("record {i}");
            assert_eq!(http.post(body.as_bytes()), Outcome::Delivered, "record {i}");
            // Give the receiver time to close, so the next request finds the connection dead.
            thread::sleep(Duration::from_millis(20));
        }
        let got: Vec<Vec<u8>> = bodies.try_iter().collect();
        let want: Vec<Vec<u8>> = (0..5).map(|i| format!("record {i}").into_bytes()).collect();
        assert_eq!(got, want, "each record arrived once");
        assert_eq!(conns.try_iter().count(), 5);
    }

    #[test]
    fn a_connection_closed_before_the_answer_is_resent_once_only() {
        // Every connection after the first reads the request and closes without an answer.
        let (tx, requests) = mpsc::channel();
        let (addr, _) = receiver(move |i, mut stream| {
            while let Some(body) = read_request(&mut stream) {
                let _ = tx.send(body);
                if i > 0 {
                    return;
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let mut http = client(addr, Duration::from_secs(5));
        assert_eq!(http.post(b"a"), Outcome::Delivered);
        drop(http.conn.take()); // as if the receiver had closed it
        let outcome = http.post(b"b");
        assert!(matches!(outcome, Outcome::Transient { .. }), "{outcome:?}");
        // A fresh connection that closes before answering is not resent.
        assert_eq!(requests.recv_timeout(Duration::from_secs(5)).unwrap(), b"a");
        assert_eq!(requests.recv_timeout(Duration::from_secs(5)).unwrap(), b"b");
        assert!(requests.recv_timeout(Duration::from_millis(200)).is_err());
        // On a kept-alive connection: one resend, then a transient failure.
        let (tx, requests) = mpsc::channel();
        let (addr, _) = receiver(move |i, mut stream| {
            let Some(body) = read_request(&mut stream) else {
                return;
            };
            let _ = tx.send(body);
            if i == 0 {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                // The second request on the first connection: closed unanswered.
                if read_request(&mut stream).is_some() {
                    let _ = tx.send(b"dropped".to_vec());
                }
            }
            // Any later connection: the request read, then closed unanswered.
        });
        let mut http = client(addr, Duration::from_secs(5));
        assert_eq!(http.post(b"a"), Outcome::Delivered);
        let outcome = http.post(b"b");
        match outcome {
            Outcome::Transient { reason, .. } => assert!(reason.contains("closed"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let got: Vec<Vec<u8>> = requests.try_iter().collect();
        assert_eq!(got, [&b"a"[..], b"dropped", b"b"]);
    }

    #[test]
    fn a_receiver_trickling_its_answer_cannot_stretch_the_timeout() {
        // One byte every 50 ms, forever: every read returns before the socket timeout.
        let (addr, _) = receiver(|_, mut stream| {
            let _ = read_request(&mut stream);
            for b in b"HTTP/1.1 200 OK\r\nX-Slow: "
                .iter()
                .chain(b"a".repeat(10_000).iter())
            {
                if stream.write_all(&[*b]).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        let mut http = client(addr, Duration::from_millis(400));
        let started = Instant::now();
        let outcome = http.post(b"x");
        let took = started.elapsed();
        match outcome {
            Outcome::Transient { reason, .. } => assert_eq!(reason, "timeout"),
            other => panic!("{other:?}"),
        }
        assert!(took >= Duration::from_millis(400), "{took:?}");
        // Not a timing test: without the deadline this would take 10,000 × 50 ms.
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(http.conn.is_none(), "the connection was closed");
    }

    #[test]
    fn refused_and_garbage_are_transient_with_a_short_reason() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let outcome = client(addr, Duration::from_secs(2)).post(b"x");
        assert_eq!(
            outcome,
            Outcome::Transient {
                reason: "connection refused".into(),
                retry_after: None
            }
        );
        let (addr, _) = receiver(|_, mut stream| {
            let _ = read_request(&mut stream);
            let _ = stream.write_all(b"\x00\xffNOT HTTP AT ALL\xfe\r\n\r\n");
        });
        let mut http = client(addr, Duration::from_secs(2));
        match http.post(b"x") {
            Outcome::Transient { reason, .. } => assert!(
                reason.starts_with("invalid response from the receiver: "),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(http.conn.is_none());
    }

    #[test]
    fn an_answer_sent_before_the_receiver_stopped_reading_is_the_outcome() {
        // A receiver that refuses a large body after its first KiB: it answers 413 and closes
        // with the rest unread, which breaks our write. The 413 rejects the record (no
        // retries), where the broken write alone would have been retried.
        let (addr, _) = receiver(|_, mut stream| {
            let mut first = [0u8; 1024];
            let _ = stream.read(&mut first);
            let _ = stream.write_all(
                b"HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            );
            thread::sleep(Duration::from_millis(10));
        });
        let mut http = client(addr, Duration::from_secs(5));
        let body = vec![b'a'; 4 << 20];
        for _ in 0..3 {
            let outcome = http.post(&body);
            assert!(
                matches!(&outcome, Outcome::Rejected { reason } if reason.contains("413")),
                "{outcome:?}"
            );
            assert!(http.conn.is_none(), "the connection was closed");
        }
    }
}
