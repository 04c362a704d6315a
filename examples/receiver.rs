//! A small HTTP receiver that prints the log records sent by `http-logger` or by
//! Python's `logging.handlers.HTTPHandler`: the Rust version of the classic
//! `BaseHTTPRequestHandler` receiver with its pretty printer.
//!
//! Run it with `cargo run --example receiver -- --port 8000` and point a sender at
//! `http://127.0.0.1:8000/`. Each record whose fields include `created`, `name`,
//! `levelname` and `msg` is printed as one line,
//! `'%s  %40s  %9s  %s' % (time, name[:40], levelname, msg)` in Python terms,
//! followed by the lines of `exc_text` (if any) indented by four spaces. Anything
//! else (say `curl -X POST -d abc=def http://localhost:8000`) is printed as
//! `METHOD PATH: key=value ...`. Both POST (form body) and GET (query string) are
//! accepted; connections are kept alive, one thread each. Problems with a request
//! are reported on stderr and never stop the receiver.
//!
//! Options:
//!
//! * `--port N` (default 8000; `0` picks a free port) and `--bind ADDR` (default
//!   `127.0.0.1`). The real address is printed on stderr as
//!   `listening on http://ADDR:PORT`.
//! * `--raw` prints each request as received: request line, headers, then every
//!   decoded field as `  key = value`, then a blank line.
//! * `--quiet` prints no per-record output, only `received N records` once a
//!   second when the count changed (for benchmarks).
//! * `--linger-zero` closes connections with `SO_LINGER` on/0 (a reset, no
//!   `TIME_WAIT`) instead of setting `SO_REUSEADDR`; either way a restart right
//!   after a stop does not meet "Address already in use".
//! * `--pid-file PATH` refuses to start while another live receiver holds `PATH`
//!   (an exclusive `flock`, released when the process ends), then writes our pid.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use chrono::{Local, TimeZone};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Most bytes accepted for the request line plus headers (else 431).
const MAX_HEAD: usize = 64 * 1024;
/// Most bytes accepted for a body (else 413).
const MAX_BODY: u64 = 64 * 1024 * 1024;
/// How long an idle or stalled connection is kept before it is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the client's end when we close a connection first.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);

const USAGE: &str = "usage: receiver [--port N] [--bind ADDR] [--raw] [--quiet] [--linger-zero] [--pid-file PATH] [--help]";

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

struct Options {
    port: u16,
    bind: IpAddr,
    mode: Mode,
    linger_zero: bool,
    pid_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            let _ = writeln!(io::stdout(), "{USAGE}");
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

    let address = SocketAddr::new(options.bind, options.port);
    let listener = match listen(address, options.linger_zero) {
        Ok(listener) => listener,
        Err(err) => {
            report!("receiver: cannot listen on {address}: {err}");
            return ExitCode::from(1);
        }
    };
    let local = listener.local_addr().unwrap_or(address);
    let host = match local.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    report!("listening on http://{host}:{}", local.port());
    let _ = io::stderr().flush();

    let records = Arc::new(AtomicU64::new(0));
    if options.mode == Mode::Quiet {
        let records = Arc::clone(&records);
        let spawned = thread::Builder::new()
            .name("counter".into())
            .spawn(move || print_counts(&records));
        if let Err(err) = spawned {
            report!("receiver: cannot start the counter thread: {err}");
            return ExitCode::from(1);
        }
    }

    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(err) => {
                // Out of file descriptors and the like: wait a little, go on.
                report!("receiver: accept failed: {err}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let connection = Connection {
            mode: options.mode,
            linger_zero: options.linger_zero,
            records: Arc::clone(&records),
        };
        let spawned = thread::Builder::new()
            .name("connection".into())
            .spawn(move || connection.serve(stream));
        if let Err(err) = spawned {
            report!("receiver: cannot start a connection thread: {err}");
        }
    }
    ExitCode::SUCCESS
}

/// Parses the command line by hand. `Ok(None)` means `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        port: 8000,
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        mode: Mode::Pretty,
        linger_zero: false,
        pid_file: None,
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
            "--raw" | "--quiet" | "--linger-zero" | "--help" | "-h" if inline.is_some() => {
                return Err(format!("{name} takes no value"));
            }
            "--raw" => options.mode = Mode::Raw,
            "--quiet" => options.mode = Mode::Quiet,
            "--linger-zero" => options.linger_zero = true,
            "--help" | "-h" => return Ok(None),
            _ => return Err(format!("unknown option {arg:?}")),
        }
    }
    Ok(Some(options))
}

/// Builds the listening socket. By default it sets `SO_REUSEADDR`, so that a
/// restart is not refused while connections of the previous run sit in
/// `TIME_WAIT`. With `linger_zero` it sets `SO_LINGER` on/0 instead: accepted
/// sockets inherit it, closes send a reset and leave no `TIME_WAIT` behind (but
/// may drop data the peer has not read yet).
fn listen(address: SocketAddr, linger_zero: bool) -> io::Result<TcpListener> {
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

/// `--quiet`: prints the number of records once a second when it changed.
fn print_counts(records: &AtomicU64) {
    let mut printed = 0;
    loop {
        thread::sleep(Duration::from_secs(1));
        let count = records.load(Ordering::Relaxed);
        if count != printed {
            printed = count;
            emit(&format!("received {count} records\n"));
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

/// Everything a connection thread needs.
struct Connection {
    mode: Mode,
    linger_zero: bool,
    records: Arc<AtomicU64>,
}

/// An HTTP version we speak.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    Http10,
    Http11,
}

/// A parsed request head.
struct Request {
    method: String,
    target: String,
    version: Version,
    /// The request line and header lines as received (lossy UTF-8), for `--raw`.
    request_line: String,
    header_lines: Vec<String>,
    headers: Vec<(String, String)>,
}

impl Request {
    /// All values of a header, case-insensitively.
    fn header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether any `Connection` header lists `token`.
    fn connection_has(&self, token: &str) -> bool {
        self.header("connection")
            .flat_map(|value| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }

    /// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes it
    /// unless told `keep-alive`.
    fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.connection_has("close"),
            Version::Http10 => self.connection_has("keep-alive") && !self.connection_has("close"),
        }
    }

    /// The target without its query string.
    fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(&self.target, |(path, _)| path)
    }
}

/// Why reading a request head stopped.
enum HeadError {
    /// More than `MAX_HEAD` bytes without the blank line ending the head.
    TooLarge,
    /// The client closed the connection in the middle of the head.
    Truncated(usize),
    /// A read failed (timeout, reset), after this many bytes of the head.
    Io(io::Error, usize),
}

/// A response to send: status, reason, body.
struct Response {
    status: u16,
    reason: &'static str,
    body: String,
}

impl Response {
    fn new(status: u16, reason: &'static str, body: impl Into<String>) -> Self {
        Response {
            status,
            reason,
            body: body.into(),
        }
    }
}

impl Connection {
    /// Serves requests on one connection until the client closes it, asks to
    /// close it, or sends something we cannot follow.
    fn serve(self, stream: TcpStream) {
        let peer = match stream.peer_addr() {
            Ok(peer) => peer.to_string(),
            Err(_) => "unknown peer".to_string(),
        };
        if self.linger_zero {
            // Accepted sockets inherit SO_LINGER on Linux; saying it again keeps
            // this true on every platform.
            if let Err(err) = SockRef::from(&stream).set_linger(Some(Duration::ZERO)) {
                report!("receiver: {peer}: cannot set SO_LINGER: {err}");
            }
        }
        if let Err(err) = stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        {
            report!("receiver: {peer}: cannot set timeouts: {err}");
            return;
        }
        let mut reader = BufReader::new(&stream);
        loop {
            let lines = match read_head(&mut reader) {
                Ok(Some(lines)) => lines,
                // The client closed the connection between requests.
                Ok(None) => return,
                Err(HeadError::TooLarge) => {
                    report!("receiver: {peer}: request head longer than {MAX_HEAD} bytes");
                    let response = Response::new(
                        431,
                        "Request Header Fields Too Large",
                        "request head too large\n",
                    );
                    return self.close_with(&stream, &mut reader, &peer, &response);
                }
                Err(HeadError::Truncated(bytes)) => {
                    report!(
                        "receiver: {peer}: connection closed after {bytes} bytes of a request head"
                    );
                    return;
                }
                // Idle too long, or the client reset the connection between requests.
                Err(HeadError::Io(err, 0)) if is_quiet_end(&err) => return,
                Err(HeadError::Io(err, bytes)) => {
                    report!(
                        "receiver: {peer}: reading a request head failed after {bytes} bytes: {err}"
                    );
                    return;
                }
            };
            let request = match parse_head(&lines) {
                Ok(request) => request,
                Err((status, reason, message)) => {
                    report!("receiver: {peer}: {message}");
                    let response = Response::new(status, reason, format!("{message}\n"));
                    return self.close_with(&stream, &mut reader, &peer, &response);
                }
            };
            match self.handle(&request, &mut reader, &peer) {
                Ok(response) => {
                    let keep_alive = request.keep_alive();
                    let head_only = request.method == "HEAD";
                    if let Err(err) = write_response(&stream, &response, keep_alive, head_only) {
                        report!("receiver: {peer}: writing the response failed: {err}");
                        return;
                    }
                    if !keep_alive {
                        return self.close_gracefully(&stream, &mut reader);
                    }
                }
                Err(Some(response)) => {
                    return self.close_with(&stream, &mut reader, &peer, &response);
                }
                Err(None) => return,
            }
        }
    }

    /// Answers one request whose head was read. `Err(Some(_))`: answer with this
    /// and close; `Err(None)`: just close (the problem was already reported).
    fn handle(
        &self,
        request: &Request,
        reader: &mut BufReader<&TcpStream>,
        peer: &str,
    ) -> Result<Response, Option<Response>> {
        let what = format!("{} {}", request.method, request.path());
        if request.header("transfer-encoding").next().is_some() {
            report!("receiver: {peer}: {what}: Transfer-Encoding (chunked body) is not supported");
            return Err(Some(Response::new(
                411,
                "Length Required",
                "chunked bodies are not supported: send Content-Length\n",
            )));
        }
        let length = match content_length(request) {
            Ok(Some(length)) => length,
            Ok(None) if request.method == "POST" => {
                report!("receiver: {peer}: {what}: no Content-Length");
                return Err(Some(Response::new(
                    411,
                    "Length Required",
                    "Content-Length required\n",
                )));
            }
            Ok(None) => 0,
            Err(message) => {
                report!("receiver: {peer}: {what}: {message}");
                return Err(Some(Response::new(
                    400,
                    "Bad Request",
                    format!("{message}\n"),
                )));
            }
        };
        if length > MAX_BODY {
            report!(
                "receiver: {peer}: {what}: body of {length} bytes is over the limit of {MAX_BODY}"
            );
            return Err(Some(Response::new(
                413,
                "Content Too Large",
                "body too large\n",
            )));
        }

        // curl sends `Expect: 100-continue` for larger bodies and waits for this.
        let expects_continue = request
            .header("expect")
            .any(|value| value.trim().eq_ignore_ascii_case("100-continue"));
        if expects_continue && request.version == Version::Http11 && length > 0 {
            let mut stream = *reader.get_ref();
            if let Err(err) = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n") {
                report!("receiver: {peer}: {what}: writing 100 Continue failed: {err}");
                return Err(None);
            }
        }

        let body = match read_body(reader, length) {
            Ok(body) => body,
            Err(message) => {
                report!("receiver: {peer}: {what}: {message}");
                return Err(None);
            }
        };

        match request.method.as_str() {
            "POST" => {
                self.record(request, &body);
                Ok(Response::new(200, "OK", "Test from POST!\n"))
            }
            "GET" => {
                let query = request
                    .target
                    .split_once('?')
                    .map_or("", |(_, query)| query);
                self.record(request, query.as_bytes());
                Ok(Response::new(200, "OK", "Test from GET!\n"))
            }
            method => {
                report!("receiver: {peer}: {what}: unsupported method, answered 501");
                Ok(Response::new(
                    501,
                    "Not Implemented",
                    format!("Unsupported method ({method:?})\n"),
                ))
            }
        }
    }

    /// Prints (or counts) one record from its form-encoded fields.
    fn record(&self, request: &Request, form: &[u8]) {
        // Lossy: bad percent-encoding is kept as is, bad UTF-8 becomes U+FFFD.
        let fields: Vec<(String, String)> = form_urlencoded::parse(form).into_owned().collect();
        match self.mode {
            Mode::Quiet => {
                self.records.fetch_add(1, Ordering::Relaxed);
            }
            Mode::Raw => emit(&format_raw(request, &fields)),
            Mode::Pretty => {
                let text = format_pretty(&fields)
                    .unwrap_or_else(|| format_fields(&request.method, request.path(), &fields));
                emit(&text);
            }
        }
    }

    /// Sends an error response and closes the connection.
    fn close_with(
        &self,
        stream: &TcpStream,
        reader: &mut BufReader<&TcpStream>,
        peer: &str,
        response: &Response,
    ) {
        if let Err(err) = write_response(stream, response, false, false) {
            report!("receiver: {peer}: writing the response failed: {err}");
            return;
        }
        self.close_gracefully(stream, reader);
    }

    /// Closes a connection we decided to end, without losing our last response: a
    /// close while unread request bytes are pending would send a reset, and the
    /// client could lose the response. So: send FIN, then read and drop what the
    /// client still sends, for a short while, before the socket is dropped.
    ///
    /// Not with `--linger-zero`: closing first that way would leave our side in
    /// `TIME_WAIT`, which is what the option is there to avoid. Dropping the socket
    /// sends a reset at once; the response already sent stays readable by the
    /// client on Linux, but may be lost elsewhere.
    fn close_gracefully(&self, stream: &TcpStream, reader: &mut BufReader<&TcpStream>) {
        if self.linger_zero {
            return;
        }
        if stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        if stream.set_read_timeout(Some(LINGER_TIMEOUT)).is_err() {
            return;
        }
        let _ = io::copy(&mut reader.by_ref().take(1024 * 1024), &mut io::sink());
    }
}

/// Reads the request line and headers, up to the blank line. `Ok(None)` when
/// the client closed the connection cleanly before a new request.
fn read_head(reader: &mut BufReader<&TcpStream>) -> Result<Option<Vec<Vec<u8>>>, HeadError> {
    let mut total = 0;
    let mut lines: Vec<Vec<u8>> = Vec::new();
    loop {
        if total >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let mut line = Vec::new();
        let limit = (MAX_HEAD - total) as u64;
        let read = reader.by_ref().take(limit).read_until(b'\n', &mut line);
        total += line.len();
        match read {
            Ok(_) => {}
            Err(err) => return Err(HeadError::Io(err, total)),
        }
        if !line.ends_with(b"\n") {
            // End of input (or of the size limit) before the end of a line.
            if lines.is_empty() && line.is_empty() {
                return Ok(None);
            }
            if total >= MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            return Err(HeadError::Truncated(total));
        }
        line.pop();
        if line.ends_with(b"\r") {
            line.pop();
        }
        if line.is_empty() {
            if lines.is_empty() {
                // Blank lines before a request line are allowed (RFC 9112 2.2).
                continue;
            }
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

/// Parses the request line and headers. The error is the status to answer
/// with, its reason, and a message.
fn parse_head(lines: &[Vec<u8>]) -> Result<Request, (u16, &'static str, String)> {
    let bad = |message: String| (400, "Bad Request", message);
    let (first, rest) = lines
        .split_first()
        .ok_or_else(|| bad("empty request".into()))?;
    let request_line = String::from_utf8_lossy(first).into_owned();
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(bad(format!("bad request line {}", shown(&request_line))));
    };
    if !is_token(method) || target.is_empty() || target.chars().any(char::is_control) {
        return Err(bad(format!("bad request line {}", shown(&request_line))));
    }
    let version = match version {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        other if other.starts_with("HTTP/") && other.len() <= 10 => {
            let message = format!("unsupported version {}", shown(other));
            return Err((505, "HTTP Version Not Supported", message));
        }
        _ => return Err(bad(format!("bad request line {}", shown(&request_line)))),
    };

    let mut header_lines = Vec::with_capacity(rest.len());
    let mut headers = Vec::with_capacity(rest.len());
    for raw in rest {
        let line = String::from_utf8_lossy(raw).into_owned();
        if line.starts_with([' ', '\t']) {
            return Err(bad("folded header lines are not supported".into()));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!("bad header line {}", shown(&line))));
        };
        if !is_token(name) {
            return Err(bad(format!("bad header name {}", shown(name))));
        }
        headers.push((
            name.to_string(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
        header_lines.push(line);
    }
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        version,
        request_line,
        header_lines,
        headers,
    })
}

/// A method or header name: one or more RFC 9110 `tchar`s.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The body length announced by `Content-Length`, if any.
fn content_length(request: &Request) -> Result<Option<u64>, String> {
    let mut length = None;
    for value in request.header("content-length") {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("bad Content-Length {}", shown(value)));
        }
        // All digits: a failure can only be an overflow, which is "too large".
        let parsed = value.parse::<u64>().unwrap_or(u64::MAX);
        if length.is_some_and(|seen| seen != parsed) {
            return Err("conflicting Content-Length headers".into());
        }
        length = Some(parsed);
    }
    Ok(length)
}

/// Reads exactly `length` bytes of body.
fn read_body(reader: &mut BufReader<&TcpStream>, length: u64) -> Result<Vec<u8>, String> {
    // Grow as the bytes come rather than trusting the header with an allocation.
    let mut body = Vec::with_capacity(length.min(64 * 1024) as usize);
    match reader.by_ref().take(length).read_to_end(&mut body) {
        Ok(_) if body.len() as u64 == length => Ok(body),
        Ok(_) => Err(format!("body ended after {} of {length} bytes", body.len())),
        Err(err) => Err(format!(
            "reading the body failed after {} of {length} bytes: {err}",
            body.len()
        )),
    }
}

fn write_response(
    mut stream: &TcpStream,
    response: &Response,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let mut bytes = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        response.status,
        response.reason,
        response.body.len(),
    )
    .into_bytes();
    if !head_only {
        bytes.extend_from_slice(response.body.as_bytes());
    }
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Read errors that end an idle connection without being worth a message.
fn is_quiet_end(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::ConnectionReset
    )
}

/// A value as printed: as is, or with `{:?}` when it holds control characters
/// (newlines, escapes) so that it cannot break lines or drive the terminal.
fn shown(value: &str) -> Cow<'_, str> {
    if value.chars().any(char::is_control) {
        Cow::Owned(format!("{value:?}"))
    } else {
        Cow::Borrowed(value)
    }
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

/// `--raw`: request line, headers as received, decoded fields, blank line.
fn format_raw(request: &Request, fields: &[(String, String)]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{}", shown(&request.request_line));
    for line in &request.header_lines {
        let _ = writeln!(text, "{}", shown(line));
    }
    for (key, value) in fields {
        let _ = writeln!(text, "  {} = {}", shown(key), shown(value));
    }
    text.push('\n');
    text
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
