//! Integration tests for the companion receiver, `examples/receiver.rs`.
//!
//! They run the real example binary (`target/<profile>/examples/receiver`, built
//! by a plain `cargo test`; with `cargo test --test receiver` alone, run
//! `cargo build --examples` first), start it on port 0, read the port from its
//! `listening on` line and talk to it over real sockets on 127.0.0.1. Every wait
//! is bounded: output lines come through channels read with `recv_timeout`.
//!
//! Python's own `HTTPHandler` (`tests/interop/py_sender.py`) sends to it from the
//! `HTTP_LOGGER_PYTHON` interpreter (else `python3`), and from every CPython 3.8 to 3.13
//! that pyenv installed (`$PYENV_ROOT`, else `~/.pyenv`): the versions that ran and those
//! absent are named on stderr; finding none fails.

mod child;
mod python;

use std::ffi::OsStr;
use std::net::Shutdown;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

#[cfg(target_os = "linux")]
use child::proc_status_kib;
use child::{
    Client, Finished, LISTENING, Server, WAIT, example_binary, gzip, gzip_bomb, json_object,
    request_bytes, run_to_end, shown,
};
use chrono::{Local, TimeZone};
use python::{SENDER_LOGGER, for_every_pyenv_python, python, run_py_sender};

/// The body of a real request from Python 3.13's HTTPHandler
/// (shared/reference/python-httphandler/3.13.0/001_POST.raw).
const PY_POST_BODY: &str = "name=demo&msg=hello+post&args=%28%29&levelname=INFO&levelno=20&pathname=%2Fapp%2Fsender.py&filename=sender.py&module=sender&exc_info=None&exc_text=None&stack_info=None&lineno=20&funcName=f_post&created=1795459757.6564763&msecs=656.0&relativeCreated=16.842636&thread=140313281182592&threadName=MainThread&processName=MainProcess&process=18736&taskName=None";

/// The query of 002_GET.raw.
const PY_GET_QUERY: &str = "name=demo&msg=hello+get&args=%28%29&levelname=WARNING&levelno=30&pathname=%2Fapp%2Fsender.py&filename=sender.py&module=sender&exc_info=None&exc_text=None&stack_info=None&lineno=21&funcName=f_get&created=1795459757.693179&msecs=693.0&relativeCreated=53.545387&thread=140313281182592&threadName=MainThread&processName=MainProcess&process=18736&taskName=None";

/// The query of 003_GET.raw: the handler's url already had `?src=app`.
const PY_GETQ_QUERY: &str = "src=app&name=demo&msg=query+already+has+%3F&args=%28%29&levelname=DEBUG&levelno=10&pathname=%2Fapp%2Fsender.py&filename=sender.py&module=sender&exc_info=None&exc_text=None&stack_info=None&lineno=22&funcName=f_getq&created=1795459757.6939912&msecs=693.0&relativeCreated=54.357553&thread=140313281182592&threadName=MainThread&processName=MainProcess&process=18736&taskName=None";

/// The body of 007_POST.raw: non-ASCII, `&`, `=`, `%`, `+` in `msg`.
const PY_UNICODE_BODY: &str = "name=demo&msg=h%C3%A9llo+%E4%B8%96%E7%95%8C+%26+a%3Db+%2541+%2Bplus+~tilde%2Fslash+%22q%22&args=%28%29&levelname=CRITICAL&levelno=50&pathname=%2Fapp%2Fsender.py&filename=sender.py&module=sender&exc_info=None&exc_text=None&stack_info=None&lineno=29&funcName=f_uni&created=1795459757.6972644&msecs=697.0&relativeCreated=57.630993&thread=140313281182592&threadName=MainThread&processName=MainProcess&process=18736&taskName=None";

const CREATED: &str = "1795459757.5";

// ---------------------------------------------------------------------------
// Running the receiver

/// The example binary, `target/<profile>/examples/receiver`.
fn receiver_binary() -> PathBuf {
    example_binary("receiver")
}

/// What the example binary needs, for the messages when it cannot start or listen.
const NEEDS: &str = "`cargo build --examples` builds it, and it needs its port on 127.0.0.1";

/// A running receiver: a [`Server`], with what these tests do with it.
struct Receiver {
    server: Server,
}

impl Deref for Receiver {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

impl Receiver {
    /// Starts the receiver with `args`, adding `--port 0` unless a port is given, and waits
    /// (at most [`WAIT`]) for its `listening on` line, which must be its first on stderr.
    fn start(args: &[&str]) -> Receiver {
        let mut command = Command::new(receiver_binary());
        if !args.contains(&"--port") {
            command.args(["--port", "0"]);
        }
        command.args(args).stdin(Stdio::null());
        let server = Server::start(shown(&command), command, WAIT, NEEDS);
        let stderr = server.stderr.text();
        let line = stderr.lines().next().unwrap_or_default();
        assert!(
            line.starts_with(LISTENING),
            "unexpected first line on stderr: {line:?}"
        );
        Receiver { server }
    }

    /// POSTs `body` to `path` on a new connection and checks the 200.
    fn post(&self, path: &str, body: &[u8]) {
        let mut client = self.connect();
        let response = client.request("POST", path, body);
        assert_eq!(response.status, 200, "{response:?}");
    }

    /// Checks the receiver still serves: a normal record prints its line.
    fn assert_alive(&self, tag: &str) {
        let msg = format!("still alive after {tag}");
        self.post("/log", record("demo", "INFO", &msg).as_bytes());
        assert_eq!(self.line(), pretty(CREATED, "demo", "INFO", &msg));
    }
}

/// Runs the receiver until it exits by itself (or fails the test after `WAIT`): its status
/// and its stderr lines.
fn run_to_exit(args: &[&str]) -> (ExitStatus, Vec<String>) {
    let mut command = Command::new(receiver_binary());
    command.args(args);
    let Finished { status, stderr, .. } = run_to_end(command, NEEDS);
    (status, stderr)
}

// ---------------------------------------------------------------------------
// Expected output

/// A form body with the fields the pretty printer needs.
fn record(name: &str, levelname: &str, msg: &str) -> String {
    form(&[
        ("name", name),
        ("msg", msg),
        ("levelname", levelname),
        ("created", CREATED),
    ])
}

fn form(fields: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in fields {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

/// A record as a batch sends it: one JSON object of strings, the fields of a form record in
/// their order (the 21 of Python's `HTTPHandler`, `hostname`, then a key-value).
fn batch_record(msg: &str) -> String {
    json_object(&[
        ("name", "demo"),
        ("msg", msg),
        ("args", "()"),
        ("levelname", "INFO"),
        ("levelno", "20"),
        ("pathname", "/app/src/main.rs"),
        ("filename", "main.rs"),
        ("module", "app"),
        ("exc_info", "None"),
        ("exc_text", "None"),
        ("stack_info", "None"),
        ("lineno", "7"),
        ("funcName", "main"),
        ("created", CREATED),
        ("msecs", "500.0"),
        ("relativeCreated", "1.5"),
        ("thread", "1"),
        ("threadName", "main"),
        ("processName", "app"),
        ("process", "42"),
        ("taskName", "None"),
        ("hostname", "host"),
        ("user", "ann"),
    ])
}

/// POSTs `body` with this `Content-Type`, compressed with gzip (and said so) when `gzipped`, on
/// `client`'s connection, and checks the 200.
fn post_batch(client: &mut Client, content_type: &str, body: &str, gzipped: bool) {
    let content_type = format!("Content-Type: {content_type}");
    let (body, headers) = if gzipped {
        let headers = vec![content_type.as_str(), "Content-Encoding: gzip"];
        (gzip(body.as_bytes()), headers)
    } else {
        (body.as_bytes().to_vec(), vec![content_type.as_str()])
    };
    let response = client.request_with("POST", "/log", &headers, &body);
    assert_eq!(response.status, 200, "{response:?}");
}

/// The pretty line for a record: `'%s  %40s  %9s  %s'` with the local time of
/// `created`, computed like the receiver (and Python) do.
fn pretty(created: &str, name: &str, levelname: &str, msg: &str) -> String {
    let created: f64 = created.parse().expect("a float");
    let when = Local
        .timestamp_micros((created * 1e6).round() as i64)
        .single()
        .expect("a valid time");
    let time = when.format("%Y-%m-%d %H:%M:%S");
    format!("{time}  {name:>40}  {levelname:>9}  {msg}")
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn post_of_a_python_record_prints_the_pretty_line() {
    let receiver = Receiver::start(&[]);
    receiver.post("/log", PY_POST_BODY.as_bytes());
    let expected = pretty("1795459757.6564763", "demo", "INFO", "hello post");
    assert_eq!(receiver.line(), expected);
}

#[test]
fn get_with_fields_in_the_query_prints_the_pretty_line() {
    let receiver = Receiver::start(&[]);
    let mut client = receiver.connect();

    let response = client.request("GET", &format!("/log?{PY_GET_QUERY}"), b"");
    assert_eq!(response.status, 200, "{response:?}");
    let expected = pretty("1795459757.693179", "demo", "WARNING", "hello get");
    assert_eq!(receiver.line(), expected);

    // The handler's url already had a query: Python appends with `&`.
    let response = client.request("GET", &format!("/log?{PY_GETQ_QUERY}"), b"");
    assert_eq!(response.status, 200, "{response:?}");
    let expected = pretty("1795459757.6939912", "demo", "DEBUG", "query already has ?");
    assert_eq!(receiver.line(), expected);
}

#[test]
fn exc_text_lines_are_printed_indented_under_the_record() {
    let receiver = Receiver::start(&[]);
    let exc_text = "Traceback (most recent call last):\nZeroDivisionError: division by zero";
    let body = form(&[
        ("name", "demo"),
        ("msg", "boom"),
        ("levelname", "ERROR"),
        ("exc_text", exc_text),
        ("created", CREATED),
    ]);
    receiver.post("/log", body.as_bytes());
    assert_eq!(receiver.line(), pretty(CREATED, "demo", "ERROR", "boom"));
    assert_eq!(receiver.line(), "    Traceback (most recent call last):");
    assert_eq!(receiver.line(), "    ZeroDivisionError: division by zero");

    // A message of several lines: the others go indented under the record.
    receiver.post(
        "/log",
        record("demo", "INFO", "line one\nline two").as_bytes(),
    );
    assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", "line one"));
    assert_eq!(receiver.line(), "    line two");

    // An empty line (as in an error chain's "\n\nCaused by:") prints empty, not as spaces.
    let exc_text = "could not save\n\nCaused by:\n    0: disk full";
    let body = form(&[
        ("name", "demo"),
        ("msg", "failed"),
        ("levelname", "ERROR"),
        ("exc_text", exc_text),
        ("created", CREATED),
    ]);
    receiver.post("/log", body.as_bytes());
    assert_eq!(receiver.line(), pretty(CREATED, "demo", "ERROR", "failed"));
    assert_eq!(receiver.line(), "    could not save");
    assert_eq!(receiver.line(), "");
    assert_eq!(receiver.line(), "    Caused by:");
    assert_eq!(receiver.line(), "        0: disk full");

    // `exc_text=None` (what Python sends) prints nothing more.
    receiver.post("/log", PY_POST_BODY.as_bytes());
    assert_eq!(
        receiver.line(),
        pretty("1795459757.6564763", "demo", "INFO", "hello post")
    );
    receiver.assert_alive("exc_text");
}

#[test]
fn long_names_are_cut_and_unicode_and_specials_print_decoded() {
    let receiver = Receiver::start(&[]);
    // 45 characters, many of them two bytes long: the cut is by characters.
    let name = "ü".repeat(10) + "app.module.submodule.component.x";
    assert!(name.chars().count() > 40);
    let cut: String = name.chars().take(40).collect();
    receiver.post("/log", record(&name, "INFO", "short").as_bytes());
    assert_eq!(receiver.line(), pretty(CREATED, &cut, "INFO", "short"));

    receiver.post("/log", PY_UNICODE_BODY.as_bytes());
    let msg = "h\u{e9}llo \u{4e16}\u{754c} & a=b %41 +plus ~tilde/slash \"q\"";
    let expected = pretty("1795459757.6972644", "demo", "CRITICAL", msg);
    assert_eq!(receiver.line(), expected);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let receiver = Receiver::start(&[]);
    let mut client = receiver.connect();

    let first = client.request("POST", "/log", record("demo", "INFO", "first").as_bytes());
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.header("connection"), Some("keep-alive"));
    assert_eq!(first.header("content-type"), Some("text/plain"));
    assert!(!first.body.is_empty());
    assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", "first"));

    let query = record("demo", "WARNING", "second");
    let second = client.request("GET", &format!("/log?{query}"), b"");
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(
        receiver.line(),
        pretty(CREATED, "demo", "WARNING", "second")
    );

    // Two requests in one write (pipelined) are both answered, in order.
    let mut both = request_bytes(
        "POST",
        "/log",
        &[],
        record("demo", "INFO", "third").as_bytes(),
    );
    both.extend(request_bytes(
        "POST",
        "/log",
        &[],
        record("demo", "INFO", "fourth").as_bytes(),
    ));
    client.send(&both);
    assert_eq!(client.response().status, 200);
    assert_eq!(client.response().status, 200);
    assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", "third"));
    assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", "fourth"));

    // `Connection: close` is honoured.
    let body = record("demo", "INFO", "last");
    client.send(&request_bytes(
        "POST",
        "/log",
        &["Connection: close"],
        body.as_bytes(),
    ));
    let last = client.response();
    assert_eq!(last.status, 200, "{last:?}");
    assert_eq!(last.header("connection"), Some("close"));
    assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", "last"));
    client.assert_closed_by_peer();
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let receiver = Receiver::start(&[]);
    let body = record("demo", "INFO", "after 100");
    let mut client = receiver.connect();
    let head = request_bytes("POST", "/log", &["Expect: 100-continue"], b"");
    // `request_bytes` leaves Content-Length out without a body: add it.
    let head = String::from_utf8(head).expect("ASCII").replace(
        "\r\n\r\n",
        &format!("\r\nContent-Length: {}\r\n\r\n", body.len()),
    );
    client.send(head.as_bytes());
    assert_eq!(client.response().status, 100);
    client.send(body.as_bytes());
    assert_eq!(client.response().status, 200);
    assert_eq!(
        receiver.line(),
        pretty(CREATED, "demo", "INFO", "after 100")
    );
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let receiver = Receiver::start(&[]);
    let body = record("demo", "INFO", "one-oh");
    let head = format!(
        "POST /log HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut client = receiver.connect();
    client.send(head.as_bytes());
    let response = client.response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.header("connection"), Some("close"));
    client.assert_closed_by_peer();
    assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", "one-oh"));

    let head = format!(
        "POST /log HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut client = receiver.connect();
    client.send(head.as_bytes());
    assert_eq!(client.response().header("connection"), Some("keep-alive"));
    client.send(head.as_bytes());
    assert_eq!(client.response().status, 200);
    assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", "one-oh"));
    assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", "one-oh"));
}

#[test]
fn other_methods_get_501_and_the_connection_keeps_serving() {
    let receiver = Receiver::start(&[]);
    let mut client = receiver.connect();

    let put = client.request("PUT", "/log", b"a=b");
    assert_eq!(put.status, 501, "{put:?}");
    assert!(put.body.contains("Unsupported method"), "{put:?}");
    receiver.stderr_containing("PUT /log");

    let delete = client.request("DELETE", "/log", b"");
    assert_eq!(delete.status, 501, "{delete:?}");
    assert!(delete.body.contains("Unsupported method"), "{delete:?}");

    let post = client.request(
        "POST",
        "/log",
        record("demo", "INFO", "after 501").as_bytes(),
    );
    assert_eq!(post.status, 200, "{post:?}");
    assert_eq!(
        receiver.line(),
        pretty(CREATED, "demo", "INFO", "after 501")
    );
}

#[test]
fn bad_input_is_reported_and_the_receiver_keeps_serving() {
    let receiver = Receiver::start(&[]);

    // The seed article's `curl -X POST -d abc=def http://localhost:8000`.
    receiver.post("/", b"abc=def");
    assert_eq!(receiver.line(), "POST /: abc=def");
    receiver.assert_alive("abc=def");

    // No `msg`: printed as raw fields.
    let body = form(&[
        ("name", "demo"),
        ("levelname", "INFO"),
        ("created", CREATED),
    ]);
    receiver.post("/log", body.as_bytes());
    assert_eq!(
        receiver.line(),
        format!("POST /log: name=demo levelname=INFO created={CREATED}")
    );
    receiver.assert_alive("a missing msg");

    // Bad percent-encoding is kept as is.
    let body = format!("name=demo&levelname=INFO&created={CREATED}&msg=%zz");
    receiver.post("/log", body.as_bytes());
    assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", "%zz"));
    receiver.assert_alive("bad percent-encoding");

    // Bytes that are not UTF-8, raw and percent-encoded, become U+FFFD.
    let mut body = format!("name=demo&levelname=INFO&created={CREATED}&msg=caf").into_bytes();
    body.extend_from_slice(b"\xe9+%FF!");
    receiver.post("/log", &body);
    assert_eq!(
        receiver.line(),
        pretty(CREATED, "demo", "INFO", "caf\u{fffd} \u{fffd}!")
    );
    receiver.assert_alive("non-UTF-8 bytes");

    // A `created` that is not a float: raw fields.
    let body = "name=demo&msg=hi&levelname=INFO&created=notafloat";
    receiver.post("/log", body.as_bytes());
    assert_eq!(
        receiver.line(),
        "POST /log: name=demo msg=hi levelname=INFO created=notafloat"
    );
    receiver.assert_alive("created=notafloat");

    // Control characters keep a record on one line.
    receiver.post("/", b"a=x%0Ay&b=%1B%5B31m");
    assert_eq!(receiver.line(), r#"POST /: a="x\ny" b="\u{1b}[31m""#);
    receiver.assert_alive("control characters");

    // A body shorter than its Content-Length: the client gives up half way.
    let mut client = receiver.connect();
    client.send(b"POST /log HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc");
    client.stream.shutdown(Shutdown::Write).expect("shut down");
    drop(client);
    receiver.stderr_containing("body ended after 3 of 10 bytes");
    receiver.assert_alive("a short body");

    // Garbage instead of a request line.
    let mut client = receiver.connect();
    client.send(b"\x16\x03\x01\x02\x00\x01\x00\xff\xfe garbage\r\n\r\n");
    assert_eq!(client.response().status, 400);
    client.assert_closed_by_peer();
    receiver.stderr_containing("bad request (");
    receiver.assert_alive("a garbage request line");

    // Garbage without any line end, then the client closes: 400 all the same.
    let mut client = receiver.connect();
    client.send(b"\x16\x03\x01\x02\x00\x01\x00\xff\xfe");
    client.stream.shutdown(Shutdown::Write).expect("shut down");
    assert_eq!(client.response().status, 400);
    client.assert_closed_by_peer();
    receiver.assert_alive("garbage without a line end");

    // Half a request head, then the client closes.
    let mut client = receiver.connect();
    client.send(b"POST /log HTTP/1.1\r\nHost: 127.0");
    client.stream.shutdown(Shutdown::Write).expect("shut down");
    client.assert_closed_by_peer();
    receiver.stderr_containing("connection closed in the middle of a request head");
    receiver.assert_alive("a cut request head");

    // A POST without Content-Length: 411 and close.
    let mut client = receiver.connect();
    client.send(b"POST /log HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nabc=def");
    let response = client.response();
    assert_eq!(response.status, 411, "{response:?}");
    assert_eq!(response.header("connection"), Some("close"));
    client.assert_closed_by_peer();
    receiver.stderr_containing("no Content-Length");
    receiver.assert_alive("a POST without Content-Length");

    // A chunked body is decoded (by hyper) and printed.
    let mut client = receiver.connect();
    client
        .send(b"POST /log HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nabc=def\r\n0\r\n\r\n");
    assert_eq!(client.response().status, 200);
    assert_eq!(receiver.line(), "POST /log: abc=def");
    receiver.assert_alive("a chunked body");

    // A body over the limit (16 MiB by default): 413 without reading it.
    let mut client = receiver.connect();
    client.send(b"POST /log HTTP/1.1\r\nContent-Length: 16777217\r\n\r\n");
    assert_eq!(client.response().status, 413);
    client.assert_closed_by_peer();
    receiver.stderr_containing("body of 16777217 bytes is over the limit of 16777216");
    receiver.assert_alive("a Content-Length over the limit");

    // A Content-Length no number can hold: 400.
    let mut client = receiver.connect();
    client.send(b"POST /log HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n");
    assert_eq!(client.response().status, 400);
    client.assert_closed_by_peer();
    receiver.assert_alive("a huge Content-Length");

    // A head over 64 KiB: 431.
    let mut client = receiver.connect();
    let mut huge = b"GET /log?".to_vec();
    huge.resize(70 * 1024, b'a');
    client.send(&huge);
    assert_eq!(client.response().status, 431);
    client.assert_closed_by_peer();
    receiver.assert_alive("a huge request head");

    // Bad Content-Length: 400.
    let mut client = receiver.connect();
    client.send(b"POST /log HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
    assert_eq!(client.response().status, 400);
    client.assert_closed_by_peer();
    receiver.assert_alive("a bad Content-Length");
}

#[test]
fn raw_mode_prints_request_line_headers_and_fields() {
    let receiver = Receiver::start(&["--raw"]);
    let body = "name=demo&msg=hello+raw%0Aline+2&levelname=INFO";
    let mut client = receiver.connect();
    let response = client.request("POST", "/log", body.as_bytes());
    assert_eq!(response.status, 200, "{response:?}");
    let expected = [
        "POST /log HTTP/1.1".to_string(),
        "host: 127.0.0.1".to_string(),
        "content-type: application/x-www-form-urlencoded".to_string(),
        format!("content-length: {}", body.len()),
        "  name = demo".to_string(),
        r#"  msg = "hello raw\nline 2""#.to_string(),
        "  levelname = INFO".to_string(),
        String::new(),
    ];
    for line in expected {
        assert_eq!(receiver.line(), line);
    }

    let response = client.request("GET", "/x?a=1&b=two+words", b"");
    assert_eq!(response.status, 200, "{response:?}");
    for line in [
        "GET /x?a=1&b=two+words HTTP/1.1",
        "host: 127.0.0.1",
        "  a = 1",
        "  b = two words",
        "",
    ] {
        assert_eq!(receiver.line(), line);
    }
}

#[cfg(unix)]
#[test]
fn pid_file_keeps_a_second_instance_out() {
    /// Removes the pid file at the end.
    struct TempFile(PathBuf);
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path = std::env::temp_dir().join(format!(
        "http-logger-receiver-test-{}-{nanos}.pid",
        std::process::id()
    ));
    let file = TempFile(path);
    let path = file.0.to_str().expect("a UTF-8 temp path");

    let first = Receiver::start(&["--pid-file", path]);
    let written = std::fs::read_to_string(path).expect("read the pid file");
    assert_eq!(written.trim(), first.pid().to_string());

    let (status, stderr) = run_to_exit(&["--port", "0", "--pid-file", path]);
    assert!(!status.success(), "the second instance started: {stderr:?}");
    let pid = format!("pid {}", first.pid());
    assert!(
        stderr.iter().any(|line| line.contains(&pid)),
        "the refusal does not name {pid}: {stderr:?}"
    );
    // The first one keeps running and serving, and still owns the file.
    first.assert_alive("a refused second instance");
    let written = std::fs::read_to_string(path).expect("read the pid file");
    assert_eq!(written.trim(), first.pid().to_string());

    drop(first); // kills and reaps it: the lock goes with the process
    let third = Receiver::start(&["--pid-file", path]);
    let written = std::fs::read_to_string(path).expect("read the pid file");
    assert_eq!(written.trim(), third.pid().to_string());
    third.assert_alive("a restart on the same pid file");
}

/// Serves a few connections the receiver closes first (so that, without
/// `--linger-zero`, its side of them ends in `TIME_WAIT`) and one the client
/// closes first.
fn serve_some_connections(receiver: &Receiver) {
    for n in 0..3 {
        let msg = format!("closing {n}");
        let mut client = receiver.connect();
        let body = record("demo", "INFO", &msg);
        client.send(&request_bytes(
            "POST",
            "/log",
            &["Connection: close"],
            body.as_bytes(),
        ));
        assert_eq!(client.response().status, 200);
        client.assert_closed_by_peer();
        assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", &msg));
    }
    receiver.assert_alive("closed connections");
}

#[test]
fn linger_zero_serves_and_restarts_on_the_same_port() {
    let receiver = Receiver::start(&["--linger-zero"]);
    let port = receiver.port.to_string();
    serve_some_connections(&receiver);
    drop(receiver);

    let receiver = Receiver::start(&["--linger-zero", "--port", &port]);
    receiver.assert_alive("a restart with --linger-zero");
}

#[test]
fn restart_on_the_same_port_after_serving_works() {
    let receiver = Receiver::start(&[]);
    let port = receiver.port.to_string();
    serve_some_connections(&receiver);
    drop(receiver);

    let receiver = Receiver::start(&["--port", &port]);
    assert_eq!(receiver.port.to_string(), port);
    receiver.assert_alive("a restart on the same port");
}

#[test]
fn quiet_mode_only_counts_records() {
    let receiver = Receiver::start(&["--quiet"]);
    let mut client = receiver.connect();
    for n in 0..3 {
        let body = record("demo", "INFO", &format!("quiet {n}"));
        assert_eq!(client.request("POST", "/log", body.as_bytes()).status, 200);
    }
    loop {
        let line = receiver.line();
        if line == "received 3 records" {
            break;
        }
        assert!(
            line == "received 1 records" || line == "received 2 records",
            "unexpected output in --quiet mode: {line:?}"
        );
    }
}

#[test]
fn bad_options_exit_with_code_2() {
    for args in [
        &["--bogus"][..],
        &["--port"],
        &["--port", "http"],
        &["--raw=yes"],
    ] {
        let (status, stderr) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr:?}");
        assert!(
            stderr
                .iter()
                .any(|line| line.starts_with("usage: receiver")),
            "{args:?}: no usage line in {stderr:?}"
        );
    }
}

/// Runs `tests/interop/py_sender.py` under `python` (Python's own `HTTPHandler`: a POST, a
/// GET, and an exception) against a receiver of its own, and checks the line printed for
/// each record.
fn check_python_sender(python: &OsStr) {
    let shown = python.to_string_lossy();
    let receiver = Receiver::start(&[]);
    for sent in run_py_sender(python, &receiver.host(), &shown) {
        assert_eq!(
            receiver.line(),
            pretty(&sent.created, SENDER_LOGGER, sent.level, sent.msg),
            "{shown}"
        );
    }
}

#[test]
fn python_httphandler_interoperates() {
    check_python_sender(&python());
}

#[test]
fn python_httphandler_of_every_pyenv_python_interoperates() {
    // Each version runs its own receiver and sender.
    for_every_pyenv_python(
        "examples/receiver.rs read the records of Python's HTTPHandler",
        check_python_sender,
    );
}

// ---------------------------------------------------------------------------
// Batches: NDJSON, JSON arrays, single JSON records, gzip or not

#[test]
fn batches_print_every_record_ndjson_json_arrays_and_single_objects_gzip_or_not() {
    let receiver = Receiver::start(&[]);
    let mut client = receiver.connect();
    for gzipped in [false, true] {
        let how = if gzipped { "gzip" } else { "plain" };
        let msgs = |shape: &str| -> Vec<String> {
            (1..=3).map(|n| format!("{shape} {how} {n}")).collect()
        };

        // NDJSON, with a blank line, a CRLF, and no line feed at the end.
        let m = msgs("ndjson");
        let body = format!(
            "{}\n\n{}\r\n{}",
            batch_record(&m[0]),
            batch_record(&m[1]),
            batch_record(&m[2])
        );
        post_batch(&mut client, "application/x-ndjson", &body, gzipped);
        for msg in &m {
            assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", msg));
        }
        // The same, each line ending with its line feed.
        let m = msgs("ndjson lf");
        let body: String = m.iter().map(|msg| batch_record(msg) + "\n").collect();
        post_batch(&mut client, "application/x-ndjson", &body, gzipped);
        for msg in &m {
            assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", msg));
        }

        // A JSON array; the media type is compared case-insensitively, its parameters ignored.
        let m = msgs("array");
        let records: Vec<String> = m.iter().map(|msg| batch_record(msg)).collect();
        let body = format!("[{}]", records.join(",\n "));
        post_batch(
            &mut client,
            "Application/JSON; charset=utf-8",
            &body,
            gzipped,
        );
        for msg in &m {
            assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", msg));
        }

        // One JSON object, as `Builder::json(true)` sends it.
        let msg = format!("single {how}");
        post_batch(
            &mut client,
            "application/json",
            &batch_record(&msg),
            gzipped,
        );
        assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", &msg));
    }

    // A form record may come gzip-compressed too.
    let body = gzip(record("demo", "INFO", "form gzip").as_bytes());
    let response = client.request_with("POST", "/log", &["Content-Encoding: gzip"], &body);
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        receiver.line(),
        pretty(CREATED, "demo", "INFO", "form gzip")
    );
    receiver.assert_alive("batches");
}

#[test]
fn json_values_that_are_not_strings_print_as_their_json_text() {
    let receiver = Receiver::start(&[]);
    // `created` a number: still a time. A record without `msg`: its fields, as a form's.
    let body = concat!(
        r#"{"name":"demo","msg":"typed","levelname":"INFO","created":1795459757.5,"levelno":20}"#,
        "\n",
        r#"{"name":"demo","levelno":20,"ok":true,"none":null,"list":[1,"a\n",{"k":-2.5e3}],"#,
        r#""empty":{},"esc":"\u001b[31m"}"#,
        "\n",
    );
    let mut client = receiver.connect();
    post_batch(&mut client, "application/x-ndjson", body, false);
    assert_eq!(receiver.line(), pretty(CREATED, "demo", "INFO", "typed"));
    assert_eq!(
        receiver.line(),
        r#"POST /log: name=demo levelno=20 ok=true none=null list=[1,"a\n",{"k":-2500.0}] empty={} esc="\u{1b}[31m""#
    );
}

#[test]
fn raw_mode_prints_each_record_of_a_batch_with_its_request() {
    let receiver = Receiver::start(&["--raw"]);
    let body = format!(
        "{}\n{}\n",
        json_object(&[("name", "demo"), ("msg", "first")]),
        json_object(&[("msg", "second\nline"), ("x", "1")])
    );
    let mut client = receiver.connect();
    post_batch(&mut client, "application/x-ndjson", &body, false);
    let head = [
        "POST /log HTTP/1.1".to_string(),
        "host: 127.0.0.1".to_string(),
        "content-type: application/x-ndjson".to_string(),
        format!("content-length: {}", body.len()),
    ];
    for fields in [
        &["  name = demo", "  msg = first"][..],
        &[r#"  msg = "second\nline""#, "  x = 1"],
    ] {
        for line in &head {
            assert_eq!(&receiver.line(), line);
        }
        for line in fields {
            assert_eq!(receiver.line(), *line);
        }
        assert_eq!(receiver.line(), "");
    }
}

#[test]
fn quiet_mode_counts_each_record_of_a_batch_and_none_of_a_refused_one() {
    let receiver = Receiver::start(&["--quiet"]);
    let mut client = receiver.connect();
    // Refused (its second line is not JSON): counts nothing.
    let body = format!("{}\n{{\n{}\n", batch_record("a"), batch_record("b"));
    let content_type = "Content-Type: application/x-ndjson";
    let response = client.request_with("POST", "/log", &[content_type], body.as_bytes());
    assert_eq!(response.status, 400, "{response:?}");
    let body: String = (0..3)
        .map(|n| batch_record(&n.to_string()) + "\n")
        .collect();
    post_batch(&mut client, "application/x-ndjson", &body, true);
    let body = format!("[{},{}]", batch_record("x"), batch_record("y"));
    post_batch(&mut client, "application/json", &body, false);
    loop {
        let line = receiver.line();
        if line == "received 5 records" {
            break;
        }
        assert_eq!(
            line, "received 3 records",
            "unexpected output in --quiet mode"
        );
    }
}

#[test]
fn bad_json_and_batches_with_a_bad_line_get_400_and_print_nothing_of_the_request() {
    let receiver = Receiver::start(&[]);
    // Two good lines around two bad ones: the whole request is refused.
    let bad_batch = format!(
        "{}\n{{\"msg\": oops}}\n\n{}\n\"a string\"\n",
        batch_record("good 1"),
        batch_record("good 2")
    );
    let refused: [(&str, bool, &[u8], u16, &str); 8] = [
        (
            "application/json",
            false,
            b"{\"msg\": ",
            400,
            "bad JSON body: EOF while parsing",
        ),
        (
            "application/json",
            false,
            b"garbage",
            400,
            "bad JSON body: expected value",
        ),
        (
            "application/json",
            false,
            b"[{\"msg\":\"a\"}, 3]",
            400,
            "bad JSON body: invalid type: integer `3`, expected a JSON object",
        ),
        (
            "application/json",
            false,
            b"{} {}",
            400,
            "bad JSON body: trailing characters",
        ),
        (
            "application/x-ndjson",
            false,
            bad_batch.as_bytes(),
            400,
            "bad NDJSON line 2: expected value at line 1 column 9 (bad lines: 2 of 4)",
        ),
        (
            "application/x-ndjson",
            true,
            bad_batch.as_bytes(),
            400,
            "bad NDJSON line 2: ",
        ),
        ("application/x-ndjson", true, b"", 400, "bad gzip body"),
        (
            "application/json",
            false,
            b"{}",
            415,
            "Content-Encoding br is not supported",
        ),
    ];
    // One kept-alive connection: after each refusal it serves the next record, and that
    // record's line is the next one printed (nothing of the refused request came before).
    let mut client = receiver.connect();
    for (n, (content_type, gzipped, body, status, why)) in refused.iter().enumerate() {
        let content_type = format!("Content-Type: {content_type}");
        let mut headers = vec![content_type.as_str()];
        let body = match (*gzipped, *status) {
            (true, _) if body.is_empty() => {
                headers.push("Content-Encoding: gzip");
                b"not gzip".to_vec()
            }
            (true, _) => {
                headers.push("Content-Encoding: gzip");
                gzip(body)
            }
            (false, 415) => {
                headers.push("Content-Encoding: br");
                body.to_vec()
            }
            (false, _) => body.to_vec(),
        };
        let response = client.request_with("POST", "/log", &headers, &body);
        assert_eq!(response.status, *status, "case {n}: {response:?}");
        assert!(response.body.contains(why), "case {n}: {response:?}");
        let line = receiver.stderr_containing(why);
        assert!(line.contains(": POST /log: "), "case {n}: {line}");
        if *status == 400 {
            assert!(
                line.ends_with("the whole request is refused, nothing of it printed")
                    || line.contains("bad gzip body"),
                "case {n}: {line}"
            );
        }
        let msg = format!("after refusal {n}");
        let response = client.request("POST", "/log", record("demo", "INFO", &msg).as_bytes());
        assert_eq!(response.status, 200, "case {n}: {response:?}");
        assert_eq!(
            receiver.line(),
            pretty(CREATED, "demo", "INFO", &msg),
            "case {n}"
        );
    }
    receiver.assert_alive("bad batches");
}

#[cfg(target_os = "linux")]
#[test]
fn a_gzip_bomb_gets_413_and_the_receiver_keeps_serving_within_bounded_memory() {
    const CAP: u64 = 1024 * 1024;
    let receiver = Receiver::start(&["--max-body", &CAP.to_string()]);
    receiver.assert_alive("the start");
    let before = proc_status_kib(receiver.pid(), "VmRSS") * 1024;
    // 100 MB of zeros in about 100 KB: under the cap, so only what it inflates to is over it.
    let bomb = gzip_bomb(100_000_000);
    assert!(
        (bomb.len() as u64) < CAP / 4,
        "a bomb of {} bytes",
        bomb.len()
    );
    let mut client = receiver.connect();
    let why = format!(
        "gzip body of {} bytes inflates past the limit of {CAP} bytes",
        bomb.len()
    );
    for (content_type, response) in client.post_gzipped_as_each_type(&bomb) {
        assert_eq!(response.status, 413, "{content_type}: {response:?}");
        assert!(response.body.contains(&why), "{response:?}");
        receiver.stderr_containing(&why);
    }
    // The peak of resident memory since the start: a few times the cap at most, never the
    // 100 MB the bomb inflates to.
    let peak = proc_status_kib(receiver.pid(), "VmHWM") * 1024;
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 16 * CAP,
        "resident memory peaked {grown} bytes above its start, over 16 x {CAP}"
    );
    // A gzip body that inflates to the cap exactly is taken.
    let exact = format!("msg={}", "x".repeat(CAP as usize - 4));
    let response = client.request_with(
        "POST",
        "/log",
        &["Content-Encoding: gzip"],
        &gzip(exact.as_bytes()),
    );
    assert_eq!(response.status, 200, "{response:?}");
    let line = receiver.line();
    assert!(
        line == format!("POST /log: {exact}"),
        "printed {} bytes: {:?}...",
        line.len(),
        &line[..line.len().min(100)]
    );
    receiver.assert_alive("a gzip bomb");
}

// ---------------------------------------------------------------------------
// Hostile clients: the limits hold and the receiver lives

/// `tests/attack/idle_flood.py`: opens connections and never speaks on them.
const IDLE_FLOOD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/attack/idle_flood.py");

/// How many file descriptors a process has open.
#[cfg(target_os = "linux")]
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list /proc/PID/fd")
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn twenty_thousand_idle_connections_leave_the_receiver_serving() {
    use std::process::ChildStdin;
    let receiver = Receiver::start(&[]);
    // Two processes of 10,000 each: one process may hold fewer than 20,000 descriptors here.
    let mut floods: Vec<(child::Guard, child::Lines, ChildStdin)> = Vec::new();
    for n in 0..2 {
        let mut child = Command::new(python())
            .args([IDLE_FLOOD, &receiver.port.to_string(), "10000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {IDLE_FLOOD} ({err}): {}", python::NEEDS));
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take().expect("piped stdin");
        let lines = child::Lines::of(stdout, format!("the stdout of idle flood {n}"));
        floods.push((child::Guard(child), lines, stdin));
    }
    let mut connected = 0;
    for (_, lines, _) in &floods {
        // The flood waits at most 60 s for its connects: wait a little longer for its line.
        let line = lines
            .recv_until(std::time::Instant::now() + std::time::Duration::from_secs(90))
            .expect("the flood's count line");
        let count: Vec<u64> = line
            .split(' ')
            .filter_map(|word| word.parse().ok())
            .collect();
        assert_eq!(count.len(), 3, "{line}");
        connected += count[0];
    }
    // Every connect was taken (the receiver kept accepting), though at most 1,024 stay open.
    assert_eq!(connected, 20_000, "connections that completed");
    // The connections it closed to make room close a moment after the new ones come.
    let bound = std::time::Instant::now() + WAIT;
    let mut fds = open_fds(receiver.pid());
    while fds > 1024 + 32 && std::time::Instant::now() < bound {
        std::thread::sleep(std::time::Duration::from_millis(50));
        fds = open_fds(receiver.pid());
    }
    assert!(fds <= 1024 + 32, "the receiver holds {fds} descriptors");
    receiver.stderr_containing("at the limit of 1024 connections: closed");

    // With every idle socket still held by the floods, a real request is served.
    receiver.assert_alive("20,000 idle connections");
    drop(floods);
    receiver.assert_alive("the end of the floods");
}

#[test]
fn slowloris_connections_are_closed_at_the_head_deadline() {
    use std::io::{ErrorKind, Read, Write};
    let receiver = Receiver::start(&["--head-timeout", "1"]);
    let mut open: Vec<std::net::TcpStream> = (0..50)
        .map(|_| {
            let stream = std::net::TcpStream::connect(receiver.host()).expect("connect");
            stream.set_nonblocking(true).expect("non-blocking");
            stream
        })
        .collect();
    for stream in &mut open {
        stream
            .write_all(b"POST /log HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .expect("start a head");
    }
    // One more header byte every 100 ms on each: the head never ends. Every connection must
    // be closed by the receiver (EOF or a reset) before the test's own bound.
    let bound = std::time::Instant::now() + WAIT;
    let mut closed = 0;
    while !open.is_empty() && std::time::Instant::now() < bound {
        std::thread::sleep(std::time::Duration::from_millis(100));
        open.retain_mut(|stream| {
            let mut buf = [0u8; 1024];
            let ended = match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false, // an answer (there should be none): keep trickling
                Err(err) if err.kind() == ErrorKind::WouldBlock => false,
                Err(_) => true,
            } || stream.write_all(b"X").is_err();
            closed += usize::from(ended);
            !ended
        });
    }
    assert_eq!(
        closed,
        50,
        "{} slowloris connections still open",
        open.len()
    );
    receiver.stderr_containing("no whole request head within 1s");
    receiver.assert_alive("50 slowloris connections");
}

#[cfg(target_os = "linux")]
#[test]
fn stalled_uploads_hold_no_more_memory_than_the_body_cap_times_the_connection_limit() {
    use std::io::Write;
    const CAP: u64 = 4 * 1024 * 1024;
    const CONNECTIONS: u64 = 16;
    let receiver = Receiver::start(&[
        "--max-body",
        &CAP.to_string(),
        "--max-connections",
        &CONNECTIONS.to_string(),
        "--request-timeout",
        "60",
    ]);
    receiver.assert_alive("the start");
    let before = proc_status_kib(receiver.pid(), "VmRSS");
    // 10 uploads, each stopping one byte short of its Content-Length.
    let chunk = vec![b'a'; 64 * 1024];
    let mut uploads = Vec::new();
    for _ in 0..10 {
        let mut client = receiver.connect();
        let head =
            format!("POST /log HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {CAP}\r\n\r\nmsg=");
        client.send(head.as_bytes());
        let mut left = CAP as usize - 4 - 1;
        while left > 0 {
            let n = left.min(chunk.len());
            client.stream.write_all(&chunk[..n]).expect("upload");
            left -= n;
        }
        uploads.push(client);
    }
    // The receiver has read them all once a request after them is served on its own
    // connection (it reads every connection as its bytes come).
    receiver.assert_alive("10 stalled uploads");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let during = proc_status_kib(receiver.pid(), "VmRSS");
    let grown = during.saturating_sub(before) * 1024;
    assert!(
        grown < CAP * CONNECTIONS,
        "resident memory grew by {grown} bytes, over {CAP} x {CONNECTIONS}"
    );
    // Uploads that never end get their 408 at the request deadline; these are just
    // dropped, and the receiver goes on.
    drop(uploads);
    receiver.assert_alive("the stalled uploads' end");
}

#[test]
fn an_upload_that_stalls_gets_408_at_the_request_deadline() {
    let receiver = Receiver::start(&["--request-timeout", "1"]);
    let mut client = receiver.connect();
    client.send(b"POST /log HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nmsg=");
    let response = client.response();
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(response.header("connection"), Some("close"));
    client.assert_closed_by_peer();
    receiver.stderr_containing("no whole request within 1s (4 bytes of body came)");
    receiver.assert_alive("a stalled upload");
}

#[test]
fn an_idle_kept_alive_connection_is_closed_at_the_idle_timeout() {
    let receiver = Receiver::start(&["--idle-timeout", "1"]);
    let mut client = receiver.connect();
    let body = record("demo", "INFO", "then idle");
    assert_eq!(client.request("POST", "/log", body.as_bytes()).status, 200);
    assert_eq!(
        receiver.line(),
        pretty(CREATED, "demo", "INFO", "then idle")
    );
    // Nothing more is sent: the receiver closes the connection (within the client's bound).
    client.assert_closed_by_peer();
    receiver.assert_alive("an idle connection");
}

#[test]
fn a_body_over_the_cap_without_a_length_gets_413() {
    let receiver = Receiver::start(&["--max-body", "200"]);
    let mut client = receiver.connect();
    let mut chunked =
        b"POST /log HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"64\r\n");
        chunked.extend_from_slice(&[b'a'; 100]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    client.send(&chunked);
    let response = client.response();
    assert_eq!(response.status, 413, "{response:?}");
    receiver.stderr_containing("body over the limit of 200 bytes");
    receiver.assert_alive("a chunked body over the cap");
}

#[test]
fn help_names_every_option_with_its_default() {
    let (status, _) = run_to_exit(&["--help"]);
    assert!(status.success());
    let mut command = Command::new(receiver_binary());
    command.arg("--help");
    let Finished { stdout, .. } = run_to_end(command, NEEDS);
    let help = stdout.join("\n");
    // What it takes, and the rule for a bad batch.
    for said in [
        "application/x-ndjson",
        "application/json",
        "Content-Encoding: gzip",
        "All or nothing",
    ] {
        assert!(help.contains(said), "--help does not say {said:?}:\n{help}");
    }
    for (option, default) in [
        ("--port N", "(default 8000)"),
        ("--bind ADDR", "(default 127.0.0.1)"),
        ("--raw", "lowercase"),
        ("--quiet", "once a second"),
        ("--linger-zero", "(default: SO_REUSEADDR)"),
        ("--pid-file PATH", "(default: none)"),
        ("--max-connections N", "(default 1024)"),
        ("--head-timeout S", "(default 10)"),
        ("--request-timeout S", "(default 30)"),
        ("--idle-timeout S", "(default 60)"),
        ("--max-body BYTES", "(default 16777216)"),
        ("--help", "print this help"),
    ] {
        let at = help
            .find(&format!("  {option}"))
            .unwrap_or_else(|| panic!("--help does not describe {option}:\n{help}"));
        let next = help[at + 2..]
            .find("\n  --")
            .map_or(help.len(), |n| at + 2 + n);
        assert!(
            help[at..next].contains(default),
            "{option} does not say {default:?}:\n{}",
            &help[at..next]
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_low_soft_limit_of_open_files_is_raised_and_a_low_hard_one_cuts_the_connections() {
    use std::net::TcpStream;
    // The soft limit at 256 (the hard one as it is): the receiver raises it, and holds more
    // idle connections than 256 descriptors would allow.
    let binary = receiver_binary();
    let mut command = Command::new("sh");
    command
        .args(["-c", "ulimit -Sn 256 && exec \"$0\" --port 0"])
        .arg(&binary)
        .stdin(Stdio::null());
    let receiver = Receiver {
        server: Server::start(shown(&command), command, WAIT, NEEDS),
    };
    let held: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(receiver.host()).expect("connect"))
        .collect();
    let bound = std::time::Instant::now() + WAIT;
    while open_fds(receiver.pid()) < 400 && std::time::Instant::now() < bound {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(open_fds(receiver.pid()) >= 400, "it holds every connection");
    receiver.assert_alive("400 idle connections under a soft limit of 256");
    drop(held);
    drop(receiver);

    // Both limits at 256: --max-connections is cut to fit, and said so.
    let mut command = Command::new("sh");
    command
        .args(["-c", "ulimit -n 256 && exec \"$0\" --port 0"])
        .arg(&binary)
        .stdin(Stdio::null());
    let receiver = Receiver {
        server: Server::start(shown(&command), command, WAIT, NEEDS),
    };
    receiver.stderr_containing(
        "--max-connections 1024 is more than the 256 open files this process may have: \
         serving at most 192 connections at once",
    );
    receiver.assert_alive("a hard limit of 256");
}
