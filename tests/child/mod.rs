//! Child processes for the integration tests, and talking to them: the Python receivers and
//! senders, and the `examples/receiver` binary.
//!
//! Every wait is bounded: a child's output lines come through channels read with
//! `recv_timeout` (at most [`WAIT`], or a deadline given), every socket read and write times
//! out after [`WAIT`], and every child is killed and reaped when its [`Guard`] drops, whatever
//! happened in the test.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The longest any single wait may take before the test fails: a line, a flush, a socket read
/// or write, a child's end.
pub const WAIT: Duration = Duration::from_secs(10);

/// The line a child server prints on stderr once bound, before its port.
pub const LISTENING: &str = "listening on http://127.0.0.1:";

// ---------------------------------------------------------------------------------------------
// Processes and their output
// ---------------------------------------------------------------------------------------------

/// Kills and reaps the child when dropped, whatever happened in the test.
pub struct Guard(pub Child);

impl Guard {
    /// Waits at most `within` for the child to exit by itself; `name` is for the message.
    ///
    /// # Panics
    ///
    /// If it is still running then (it is killed when the guard drops).
    pub fn wait_within(&mut self, within: Duration, name: &str) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) => panic!("{name} did not exit within {within:?}"),
                Err(err) => panic!("cannot wait for {name}: {err}"),
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of a child's stdout or stderr, read on a thread of their own (without their `\n`;
/// invalid UTF-8 replaced): they come through a channel, which disconnects at end of file, and
/// are also kept as one text, for messages.
pub struct Lines {
    /// Which stream of which child, for messages: `stdout of NAME`.
    label: String,
    /// The lines, as the reading thread sends them.
    lines: Receiver<String>,
    /// Every line read so far, each with its `\n`.
    text: Arc<Mutex<String>>,
}

impl Lines {
    /// Starts reading `pipe`; `label` names it in messages.
    pub fn of(pipe: impl Read + Send + 'static, label: String) -> Lines {
        let (tx, lines) = mpsc::channel();
        let text = Arc::new(Mutex::new(String::new()));
        let all = Arc::clone(&text);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line.ends_with(b"\n") {
                    line.pop();
                }
                let line = String::from_utf8_lossy(&line).into_owned();
                {
                    let mut all = all.lock().unwrap_or_else(PoisonError::into_inner);
                    all.push_str(&line);
                    all.push('\n');
                }
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines { label, lines, text }
    }

    /// Every line read so far, each with its `\n`, in order: also those not yet taken with
    /// [`Lines::next_line`] and the like, since the reading thread runs ahead.
    pub fn text(&self) -> String {
        self.text
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The next line, waiting until `deadline` at the latest.
    pub fn recv_until(&self, deadline: Instant) -> Result<String, RecvTimeoutError> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(left)
    }

    /// The next line, waiting at most [`WAIT`]; `None` when the stream ended.
    ///
    /// # Panics
    ///
    /// If none comes in time.
    pub fn next_line(&self) -> Option<String> {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => panic!("no line on {} within {WAIT:?}", self.label),
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Skips lines until one contains `needle`, waiting at most [`WAIT`] in all, and returns
    /// it.
    ///
    /// # Panics
    ///
    /// If none comes in time, or the stream ends first.
    pub fn containing(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.recv_until(deadline) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(err) => panic!(
                    "no line containing {needle:?} on {} ({err:?} after {WAIT:?} at most); it \
                     read:\n{}",
                    self.label,
                    self.text()
                ),
            }
        }
    }

    /// Every line until the stream ends (the child closed its end), waiting at most [`WAIT`]
    /// in all.
    ///
    /// # Panics
    ///
    /// If the stream has not ended in time.
    pub fn to_end(&self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut all = Vec::new();
        loop {
            match self.recv_until(deadline) {
                Ok(line) => all.push(line),
                Err(RecvTimeoutError::Disconnected) => return all,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{} did not end within {WAIT:?}; it read: {all:?}",
                        self.label
                    )
                }
            }
        }
    }
}

/// Spawns `command` with its stdout and stderr piped (its stdin as `command` sets it), and
/// starts reading both; `name` is for messages.
///
/// # Panics
///
/// If it cannot be started: the message names `name` and ends with `needs`, what the child
/// needs.
pub fn spawn(mut command: Command, name: &str, needs: &str) -> (Guard, Lines, Lines) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {name} ({err}): {needs}"));
    let stdout = Lines::of(
        child.stdout.take().expect("piped stdout"),
        format!("the stdout of {name}"),
    );
    let stderr = Lines::of(
        child.stderr.take().expect("piped stderr"),
        format!("the stderr of {name}"),
    );
    (Guard(child), stdout, stderr)
}

/// A child run to its end by [`run_to_end`].
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// Its stdout lines.
    pub stdout: Vec<String>,
    /// Its stderr lines.
    pub stderr: Vec<String>,
}

/// Runs `command` (stdin empty) until it exits by itself.
///
/// # Panics
///
/// If it cannot be started (the message ends with `needs`, what the child needs), or its
/// stdout, its stderr or the process itself goes on for more than [`WAIT`] (it is killed).
pub fn run_to_end(mut command: Command, needs: &str) -> Finished {
    let name = shown(&command);
    command.stdin(Stdio::null());
    let (mut child, stdout, stderr) = spawn(command, &name, needs);
    let stdout = stdout.to_end();
    let stderr = stderr.to_end();
    let status = child.wait_within(WAIT, &name);
    Finished {
        status,
        stdout,
        stderr,
    }
}

/// A child serving HTTP on 127.0.0.1: it says [`LISTENING`]`PORT` on stderr once bound. Its
/// stdout and stderr lines come through channels. Killed and reaped on drop; a piped stdin is
/// held until then, so a child that watches it (`py_receiver.py --exit-on-stdin-eof`) also
/// exits when the test process does.
pub struct Server {
    /// What runs, for messages.
    pub name: String,
    /// The port it listens on.
    pub port: u16,
    /// Its stdout lines.
    pub stdout: Lines,
    /// Its stderr lines, from the one after `listening on`.
    pub stderr: Lines,
    /// Its stdin, when piped: dropped first, for EOF.
    stdin: Option<ChildStdin>,
    /// The process, killed and reaped when the server drops.
    child: Guard,
}

impl Server {
    /// Spawns `command` (its stdin as `command` sets it) and waits at most `within` until it
    /// prints [`LISTENING`]`PORT` on stderr, skipping the lines before; `name` is for
    /// messages.
    ///
    /// # Panics
    ///
    /// If it cannot be started, exits before listening (both messages name `needs`, what the
    /// child needs), or prints no port in time.
    pub fn start(name: String, command: Command, within: Duration, needs: &str) -> Server {
        let (mut child, stdout, stderr) = spawn(command, &name, needs);
        let stdin = child.0.stdin.take();
        // From here on, a panic kills the child through Drop.
        let mut server = Server {
            name,
            port: 0,
            stdout,
            stderr,
            stdin,
            child,
        };
        let deadline = Instant::now() + within;
        while server.port == 0 {
            match server.stderr.recv_until(deadline) {
                Ok(line) => {
                    if let Some(port) = line
                        .strip_prefix(LISTENING)
                        .and_then(|port| port.trim().parse().ok())
                    {
                        server.port = port;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} printed no port within {within:?}; stderr:\n{}",
                    server.name,
                    server.stderr.text()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = match server.child.0.try_wait() {
                        Ok(Some(status)) => status.to_string(),
                        _ => "closed its stderr".to_owned(),
                    };
                    panic!(
                        "{} exited before listening ({status}); {needs}; stderr:\n{}",
                        server.name,
                        server.stderr.text()
                    )
                }
            }
        }
        server
    }

    /// `127.0.0.1:PORT`, the host to give a logger.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Kills the child at once (SIGKILL on Unix: it cannot answer, flush or close anything
    /// itself) and reaps it. Its stdout and stderr then end once read.
    ///
    /// # Panics
    ///
    /// If it cannot be killed or reaped (it had exited already is fine).
    pub fn kill(&mut self) -> ExitStatus {
        match self.child.0.kill() {
            Ok(()) => {}
            // It had exited already: reaped below.
            Err(err) if err.kind() == std::io::ErrorKind::InvalidInput => {}
            Err(err) => panic!("cannot kill {}: {err}", self.name),
        }
        self.child
            .0
            .wait()
            .unwrap_or_else(|err| panic!("cannot reap {}: {err}", self.name))
    }

    /// A new connection to it.
    pub fn connect(&self) -> Client {
        Client::connect(self.port)
    }

    /// The next line on stdout, waiting at most [`WAIT`].
    ///
    /// # Panics
    ///
    /// If none comes in time, or stdout ended (the message shows stderr).
    pub fn line(&self) -> String {
        self.stdout.next_line().unwrap_or_else(|| {
            panic!(
                "{} closed its stdout; stderr:\n{}",
                self.name,
                self.stderr.text()
            )
        })
    }

    /// The next line on stderr, waiting at most [`WAIT`].
    ///
    /// # Panics
    ///
    /// If none comes in time, or stderr ended (the message shows stdout).
    pub fn stderr_line(&self) -> String {
        self.stderr.next_line().unwrap_or_else(|| {
            panic!(
                "{} closed its stderr; stdout:\n{}",
                self.name,
                self.stdout.text()
            )
        })
    }

    /// Skips stderr lines until one contains `needle`, waiting at most [`WAIT`] in all, and
    /// returns it.
    pub fn stderr_containing(&self, needle: &str) -> String {
        self.stderr.containing(needle)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF, for a child that watches stdin
        // Then `child` drops: killed and reaped.
    }
}

/// The example binary `name` (`examples/NAME.rs`), built next to the test binary, which lives
/// in `target/<profile>/deps/`.
///
/// # Panics
///
/// If it is missing, or older than its source: the message says to run `cargo build --examples`
/// (a plain `cargo test` builds the examples, `cargo test --test NAME` alone does not).
pub fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&binary).and_then(|m| m.modified());
    let Ok(built) = built else {
        panic!(
            "{} is missing: run `cargo build --examples` (a plain `cargo test` builds it, \
             `cargo test --test <name>` alone does not)",
            binary.display()
        );
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.rs"));
    if let Ok(changed) = std::fs::metadata(&source).and_then(|m| m.modified()) {
        assert!(
            changed <= built,
            "{} is older than {}: run `cargo build --examples`",
            binary.display(),
            source.display()
        );
    }
    binary
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`, ...).
#[cfg(target_os = "linux")]
pub fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// `command`'s program and arguments, space-separated, for messages.
pub fn shown(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// A bare HTTP/1.1 client, to send a child server what a logger never would
// ---------------------------------------------------------------------------------------------

/// A connection to a server on 127.0.0.1. Every read and write is bounded by [`WAIT`]. It
/// writes requests as raw bytes (it is the client no logger would be), and reads responses
/// with `httparse`.
pub struct Client {
    /// The socket, to write to or shut down (responses are read through the client).
    pub stream: TcpStream,
    /// What was read from the socket and no response has taken yet.
    unread: Vec<u8>,
}

/// One response as read.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names and values (trimmed), in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty for an interim response).
    pub body: String,
}

impl Response {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

impl Client {
    /// Connects to `127.0.0.1:port`.
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the receiver");
        stream
            .set_read_timeout(Some(WAIT))
            .expect("set a read timeout");
        stream
            .set_write_timeout(Some(WAIT))
            .expect("set a write timeout");
        Client {
            stream,
            unread: Vec::new(),
        }
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to the receiver");
    }

    /// Sends one request ([`request_bytes`], no extra headers) and reads its response.
    pub fn request(&mut self, method: &str, target: &str, body: &[u8]) -> Response {
        self.request_with(method, target, &[], body)
    }

    /// Sends one request with the extra `headers` ([`request_bytes`]: a `Content-Type` among
    /// them replaces the form one) and reads its response.
    pub fn request_with(
        &mut self,
        method: &str,
        target: &str,
        headers: &[&str],
        body: &[u8],
    ) -> Response {
        self.send(&request_bytes(method, target, headers, body));
        self.response()
    }

    /// POSTs `gzipped` (a gzip body, sent as it is) to `/log` once as each kind of body a
    /// receiver takes: NDJSON, JSON, a form. Returns each answer with its `Content-Type` line.
    pub fn post_gzipped_as_each_type(&mut self, gzipped: &[u8]) -> Vec<(String, Response)> {
        [
            "application/x-ndjson",
            "application/json",
            "application/x-www-form-urlencoded",
        ]
        .into_iter()
        .map(|content_type| {
            let content_type = format!("Content-Type: {content_type}");
            let headers = [content_type.as_str(), "Content-Encoding: gzip"];
            let response = self.request_with("POST", "/log", &headers, gzipped);
            (content_type, response)
        })
        .collect()
    }

    /// Reads one response: its head parsed by `httparse`; an interim (1xx) one has no body;
    /// any other must have a `Content-Length` and a UTF-8 body.
    ///
    /// # Panics
    ///
    /// If it is not HTTP/1.x, its head is malformed (or has more than 64 headers), the
    /// connection ends before its end, or the above does not hold.
    pub fn response(&mut self) -> Response {
        let (status, headers, head_len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut head = httparse::Response::new(&mut headers);
            match head.parse(&self.unread) {
                // HTTP/1.1, or HTTP/1.0 in answer to an HTTP/1.0 request (as hyper does).
                Ok(httparse::Status::Complete(len)) => {
                    let status = head.code.expect("a complete head has a status code");
                    let headers = head
                        .headers
                        .iter()
                        .map(|header| {
                            let value = String::from_utf8_lossy(header.value);
                            (header.name.to_owned(), value.trim().to_owned())
                        })
                        .collect::<Vec<_>>();
                    break (status, headers, len);
                }
                Ok(httparse::Status::Partial) => self.read_more("a response head"),
                Err(err) => panic!(
                    "a malformed response head ({err}): {:?}",
                    String::from_utf8_lossy(&self.unread)
                ),
            }
        };
        self.unread.drain(..head_len);
        let mut response = Response {
            status,
            headers,
            body: String::new(),
        };
        if (100..200).contains(&status) {
            return response; // interim responses have no body
        }
        let length: usize = response
            .header("content-length")
            .unwrap_or_else(|| panic!("no Content-Length in the {status} answer: {response:?}"))
            .parse()
            .expect("a numeric Content-Length");
        while self.unread.len() < length {
            self.read_more("a response body");
        }
        let body = self.unread.drain(..length).collect();
        response.body = String::from_utf8(body).expect("a UTF-8 body");
        response
    }

    /// Reads what the socket has (at least a byte, waiting at most [`WAIT`]) into `unread`;
    /// `what` is what is being read, for messages.
    ///
    /// # Panics
    ///
    /// If the connection ends or fails, or nothing comes in time.
    fn read_more(&mut self, what: &str) {
        let mut chunk = [0; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => panic!(
                "the connection ended in {what}; read: {:?}",
                String::from_utf8_lossy(&self.unread)
            ),
            Ok(n) => self.unread.extend_from_slice(&chunk[..n]),
            Err(err) => panic!(
                "cannot read {what} ({err}); read: {:?}",
                String::from_utf8_lossy(&self.unread)
            ),
        }
    }

    /// Reads until the server closes the connection (bounded by the timeout), and checks that
    /// nothing came before the end (nor was left after the responses read before it).
    pub fn assert_closed_by_peer(&mut self) {
        let mut rest = std::mem::take(&mut self.unread);
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes {rest:?}"),
            // A reset also means closed.
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(err) => panic!("the receiver did not close the connection: {err}"),
        }
    }
}

/// The bytes of one HTTP/1.1 request with `Host: 127.0.0.1`, the extra `headers` (whole
/// lines without their CRLF), and, when `body` is not empty, a form `Content-Type` (unless
/// `headers` has a `Content-Type`) and the `Content-Length`; then `body`.
pub fn request_bytes(method: &str, target: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for header in headers {
        bytes.push_str(header);
        bytes.push_str("\r\n");
    }
    let typed = headers.iter().any(|header| {
        header
            .split_once(':')
            .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("content-type"))
    });
    if !body.is_empty() {
        if !typed {
            bytes.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        bytes.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    bytes.push_str("\r\n");
    let mut bytes = bytes.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

// ---------------------------------------------------------------------------------------------
// Bodies of batches, for the receivers
// ---------------------------------------------------------------------------------------------

/// One JSON object of string values, its entries in the order given (each key and value
/// written by serde_json).
pub fn json_object(fields: &[(&str, &str)]) -> String {
    let entries: Vec<String> = fields
        .iter()
        .map(|(key, value)| {
            let key = serde_json::to_string(key).expect("a string serializes");
            let value = serde_json::to_string(value).expect("a string serializes");
            format!("{key}:{value}")
        })
        .collect();
    format!("{{{}}}", entries.join(","))
}

/// `bytes` compressed as one gzip member.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("compress into memory");
    encoder.finish().expect("compress into memory")
}

/// A gzip bomb: one gzip member that inflates to `size` zero bytes (100 MB take about 100 KB).
pub fn gzip_bomb(size: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1024 * 1024];
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len());
        encoder
            .write_all(&zeros[..n])
            .expect("compress into memory");
        left -= n;
    }
    encoder.finish().expect("compress into memory")
}
