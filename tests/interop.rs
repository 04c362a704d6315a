//! Interop with Python itself.
//!
//! - `tests/interop/py_receiver.py`, a standard-library receiver, decodes what a built logger
//!   sends with `urllib.parse.parse_qsl`/`parse_qs`, rebuilds each record with
//!   `logging.makeLogRecord` and formats it with a `logging.Formatter`. The tests check every
//!   field of `WIRE.md` as Python decoded it, and the record Python rebuilt.
//! - `examples/receiver.py`, the receiver users copy, hands each record to Python's `logging`:
//!   the tests check the lines its `Formatter` prints for our records (over POST and GET) and
//!   for those of Python's own `HTTPHandler` (`tests/interop/py_sender.py`), for batches
//!   (NDJSON, JSON arrays, single JSON records, plain and gzip), and that it refuses what is not
//!   a record (a bad batch whole, a gzip bomb with 413) and keeps serving.
//! - The README's ten-line standard-library receiver runs as written (but for its port) and
//!   hands our records to Python's `logging`.
//! - Both receivers' checks of our records, and Python's own sender to `examples/receiver.py`,
//!   run under every CPython 3.8 to 3.13 that pyenv installed (`$PYENV_ROOT`, else
//!   `~/.pyenv`): the versions that ran and those absent are named on stderr; none fails.
//!
//! The other tests need Python 3.8 or newer: the interpreter named by `HTTP_LOGGER_PYTHON`,
//! else `python3` on `PATH`. When it cannot be started the tests fail; they never skip.
//! [`check_interop`] takes the interpreter as an argument, to run the same checks under any
//! Python.

mod child;
mod python;
mod support;

use support::{STANDARD, get as field, keys};

use std::error::Error as StdError;
use std::ffi::OsStr;
use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use child::{Response, Server, WAIT};
use chrono::TimeZone as _;
use http_logger::{HttpLogger, Method};
use python::{NEEDS, SENDER_LOGGER, for_every_pyenv_python, python, run_py_sender};
use serde_json::{Map, Value};

/// How long to wait for the interpreter to start and bind its port.
const START_WAIT: Duration = Duration::from_secs(30);

const RECEIVER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/py_receiver.py");

/// Text a form encoder must not lose: non-ASCII, the form's own syntax (`&`, `=`, `%`, `+`),
/// things that look percent-encoded, CR, LF, NUL, tab, an emoji outside the BMP, and spaces at
/// both ends.
const NASTY: &str = " h\u{e9}llo \u{4e16}\u{754c} & a=b&c= %41 %zz %% 100% +plus a+b %2B \
                     ~tilde/slash;semi \"q\" 'q' <>#?\r\nline2\n\t\0nul \u{1F980} \u{2028}end ";
/// The same kind of text as a key-value key.
const NASTY_KEY: &str = "k\u{e9}y &=%+ %41\r\n\t\0 \u{1F980}";
const NASTY_TARGET: &str = "app::\u{fc}n\u{ef} &=%+ \u{1F980}";
const NASTY_THREAD: &str = "w\u{f6}rker &=%+ \u{1F980}";

// ---------------------------------------------------------------------------------------------
// The Python processes
// ---------------------------------------------------------------------------------------------

/// Starts `script` under `python` with `--port 0` and `args`, and waits (bounded) until it
/// listens on 127.0.0.1. Its stdin is a pipe the [`Server`] holds until it drops, so a script
/// that watches it (`py_receiver.py --exit-on-stdin-eof`) also exits when this process does.
///
/// # Panics
///
/// If the interpreter cannot be started, or the script does not listen within
/// [`START_WAIT`].
fn start_script(python: &OsStr, script: &str, args: &[&str]) -> Server {
    let file = Path::new(script).file_name().unwrap_or_default();
    let name = format!("{} {}", python.to_string_lossy(), file.to_string_lossy());
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(["--port", "0"])
        .args(args)
        .stdin(Stdio::piped());
    Server::start(name, command, START_WAIT, NEEDS)
}

/// A running `py_receiver.py`: one JSON line per request it answered.
struct PyReceiver {
    server: Server,
}

impl PyReceiver {
    /// Starts the receiver under `python` and waits (bounded) until it listens.
    ///
    /// # Panics
    ///
    /// If the interpreter cannot be started, or the receiver does not listen within
    /// [`START_WAIT`].
    fn start(python: impl AsRef<OsStr>) -> PyReceiver {
        let server = start_script(python.as_ref(), RECEIVER_SCRIPT, &["--exit-on-stdin-eof"]);
        PyReceiver { server }
    }

    /// `127.0.0.1:PORT`, the host to give the logger.
    fn host(&self) -> String {
        self.server.host()
    }

    /// The next request line, waiting at most [`WAIT`].
    ///
    /// # Panics
    ///
    /// If none comes in time, or the receiver printed something that is not a JSON line.
    fn recv(&self) -> Request {
        let raw = self.server.line();
        match serde_json::from_str::<Value>(&raw) {
            Ok(json) => Request { raw, json },
            Err(err) => panic!(
                "{}: a stdout line is not JSON ({err}): {raw:?}; stderr:\n{}",
                self.server.name,
                self.server.stderr.text()
            ),
        }
    }
}

/// One line of the receiver's stdout.
struct Request {
    raw: String,
    json: Value,
}

impl Request {
    fn top(&self, key: &str) -> &Value {
        self.json
            .get(key)
            .unwrap_or_else(|| panic!("no {key:?} in the receiver's line {}", self.raw))
    }

    fn top_str(&self, key: &str) -> &str {
        self.top(key)
            .as_str()
            .unwrap_or_else(|| panic!("{key:?} is not a string in {}", self.raw))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.top("headers").get(name).and_then(Value::as_str)
    }

    /// Every field as `parse_qsl` decoded it, in order.
    fn fields(&self) -> Vec<(String, String)> {
        let pairs = self.top("fields").as_array().expect("fields is a list");
        pairs
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(k), Value::String(v)]) => (k.clone(), v.clone()),
                _ => panic!("a field is not a [key, value] pair of strings: {pair}"),
            })
            .collect()
    }

    /// The record `makeLogRecord` rebuilt.
    fn record(&self) -> &Map<String, Value> {
        self.top("record").as_object().unwrap_or_else(|| {
            panic!(
                "Python did not rebuild a record ({}): {}",
                self.top("error"),
                self.raw
            )
        })
    }

    /// A number of the rebuilt record exactly as Python's `json.dumps` wrote it: for a float
    /// that is `repr(float(s))` of the string `s` Python decoded.
    fn record_number_text(&self, key: &str) -> &str {
        // `"record": {` and `"<key>": ` can only be JSON syntax: inside a string every `"` is
        // escaped, and the fields are lists, not objects.
        let record = self
            .raw
            .find("\"record\": {")
            .unwrap_or_else(|| panic!("no record object in {}", self.raw));
        let pattern = format!("\"{key}\": ");
        let start = self.raw[record..]
            .find(&pattern)
            .map(|at| record + at + pattern.len())
            .unwrap_or_else(|| panic!("no record.{key} in {}", self.raw));
        let rest = &self.raw[start..];
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        &rest[..end]
    }
}

// ---------------------------------------------------------------------------------------------
// What was sent
// ---------------------------------------------------------------------------------------------

/// One record as logged, and what the wire contract says Python must decode from it.
struct Sent {
    what: &'static str,
    target: &'static str,
    msg: String,
    /// `levelname` and `levelno`.
    level: (&'static str, &'static str),
    line: u32,
    /// `None` when the thread had no name we can predict.
    thread_name: Option<String>,
    /// `exc_info` and `exc_text`.
    error: Option<(String, String)>,
    /// The key-values as they must arrive, after the standard fields.
    kvs: Vec<(String, String)>,
}

fn pairs(kvs: &[(&str, &str)]) -> Vec<(String, String)> {
    kvs.iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[derive(Debug)]
struct Layer {
    msg: &'static str,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.msg)
    }
}

impl StdError for Layer {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// An error with two causes.
fn chained_error() -> Layer {
    Layer {
        msg: "could not charge card",
        source: Some(Box::new(Layer {
            msg: "payment gateway unreachable",
            source: Some(Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ))),
        })),
    }
}

fn current_thread_name() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

/// Logs the checked records, in order, and returns what each must look like.
fn log_records(logger: &HttpLogger) -> Vec<Sent> {
    let mut sent = Vec::new();

    // A plain record from a named thread, with key-values.
    let line = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("interop-worker".into())
            .spawn_scoped(s, || {
                let line = line!() + 1;
                log::info!(
                    logger: logger, user = "ann", attempts = 3;
                    "user {} logged in after {} tries", "ann", 3
                );
                line
            })
            .expect("spawn a thread")
            .join()
            .expect("the logging thread")
    });
    sent.push(Sent {
        what: "a plain record",
        target: module_path!(),
        msg: "user ann logged in after 3 tries".into(),
        level: ("INFO", "20"),
        line,
        thread_name: Some("interop-worker".into()),
        error: None,
        kvs: pairs(&[("user", "ann"), ("attempts", "3")]),
    });

    // An error with two causes, captured with `:err`.
    let err = chained_error();
    let line = line!() + 1;
    log::error!(logger: logger, order = 1042, err:err = err; "checkout failed");
    sent.push(Sent {
        what: "a record with an error chain",
        target: module_path!(),
        msg: "checkout failed: could not charge card: payment gateway unreachable: \
              connection refused"
            .into(),
        level: ("ERROR", "40"),
        line,
        thread_name: current_thread_name(),
        error: Some((
            format!("{err:?}"),
            "could not charge card\n\nCaused by:\n    0: payment gateway unreachable\n    \
             1: connection refused"
                .into(),
        )),
        kvs: pairs(&[
            ("order", "1042"),
            (
                "err",
                "could not charge card: payment gateway unreachable: connection refused",
            ),
        ]),
    });

    // Text a form encoder must not lose, in the message, a key-value's key and value, the
    // target and the thread name.
    let line = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name(NASTY_THREAD.into())
            .spawn_scoped(s, || {
                // `(NASTY_KEY)`: a key given as an expression, not a literal.
                let line = line!() + 1;
                log::warn!(
                    logger: logger, target: NASTY_TARGET, (NASTY_KEY) = NASTY;
                    "{NASTY}|{NASTY_KEY}"
                );
                line
            })
            .expect("spawn a thread")
            .join()
            .expect("the logging thread")
    });
    sent.push(Sent {
        what: "a record with special characters",
        target: NASTY_TARGET,
        msg: format!("{NASTY}|{NASTY_KEY}"),
        level: ("WARNING", "30"),
        line,
        thread_name: Some(NASTY_THREAD.into()),
        error: None,
        kvs: pairs(&[(NASTY_KEY, NASTY)]),
    });

    // Key-values whose keys are standard fields.
    let line = line!() + 1;
    log::debug!(
        logger: logger, name = "spoof name", msg = "spoof msg", levelno = "not a number";
        "the real message"
    );
    sent.push(Sent {
        what: "a record with colliding key-values",
        target: module_path!(),
        msg: "the real message".into(),
        level: ("DEBUG", "10"),
        line,
        thread_name: current_thread_name(),
        error: None,
        kvs: pairs(&[
            ("kv_name", "spoof name"),
            ("kv_msg", "spoof msg"),
            ("kv_levelno", "not a number"),
        ]),
    });

    // The one level Python does not have.
    let line = line!() + 1;
    log::trace!(logger: logger, "at trace level");
    sent.push(Sent {
        what: "a TRACE record",
        target: module_path!(),
        msg: "at trace level".into(),
        level: ("TRACE", "5"),
        line,
        thread_name: current_thread_name(),
        error: None,
        kvs: Vec::new(),
    });

    sent
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

/// What every record of one run shares.
struct Run<'a> {
    python: String,
    url: &'a str,
    method: Method,
    host: String,
    /// Seconds since the epoch, read before the first record and after the last was delivered.
    before: f64,
    after: f64,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs_f64()
}

/// The fields already in the URL's query, which come first.
fn url_fields(url: &str) -> Vec<(String, String)> {
    url.split_once('?')
        .map(|(_, query)| {
            form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `s` looks like a Python float: a number with a `.` or an exponent.
fn is_py_float(s: &str) -> bool {
    s.parse::<f64>().is_ok_and(f64::is_finite) && s.contains(['.', 'e'])
}

/// Check 1: the request, and every field as `parse_qsl` decoded it, in order, with its value.
/// Returns the record's own fields (the URL's query fields left out).
fn check_wire_fields(run: &Run<'_>, req: &Request, sent: &Sent) -> Vec<(String, String)> {
    let ctx = format!(
        "[{} {:?} {}] {}",
        run.python, run.method, run.url, sent.what
    );
    assert_eq!(
        req.top("error"),
        &Value::Null,
        "{ctx}: the receiver's error: {}",
        req.raw
    );
    assert_eq!(req.top("status").as_u64(), Some(200), "{ctx}: {}", req.raw);
    assert_eq!(req.header("host"), Some(run.host.as_str()), "{ctx}: Host");
    match run.method {
        Method::Post => {
            assert_eq!(req.top_str("method"), "POST", "{ctx}");
            assert_eq!(req.top_str("path"), run.url, "{ctx}: the URL, untouched");
            assert_eq!(
                req.header("content-type"),
                Some("application/x-www-form-urlencoded"),
                "{ctx}"
            );
        }
        Method::Get => {
            assert_eq!(req.top_str("method"), "GET", "{ctx}");
            let join = if run.url.contains('?') { '&' } else { '?' };
            let prefix = format!("{}{join}name=", run.url);
            let path = req.top_str("path");
            assert!(
                path.starts_with(&prefix),
                "{ctx}: {path:?} does not start with {prefix:?}"
            );
        }
    }

    let all = req.fields();
    let url_fields = url_fields(run.url);
    assert!(all.len() >= url_fields.len(), "{ctx}: {all:?}");
    assert_eq!(
        all[..url_fields.len()],
        url_fields,
        "{ctx}: the URL's own query comes first"
    );
    let f = all[url_fields.len()..].to_vec();

    let want_keys: Vec<&str> = STANDARD
        .iter()
        .copied()
        .chain(sent.kvs.iter().map(|(k, _)| k.as_str()))
        .collect();
    assert_eq!(keys(&f), want_keys, "{ctx}: field names and order");

    // The fields that depend on the clock and the OS, checked on their own.
    let created_text = field(&f, "created");
    assert!(
        is_py_float(created_text),
        "{ctx}: created {created_text:?} is not a Python float"
    );
    let created: f64 = created_text.parse().expect("a float");
    assert!(
        run.before - 1.0 <= created && created <= run.after + 1.0,
        "{ctx}: created {created} is not between {} and {} (seconds since the epoch)",
        run.before,
        run.after
    );
    let msecs_text = field(&f, "msecs");
    let msecs: f64 = msecs_text
        .parse()
        .unwrap_or_else(|e| panic!("{ctx}: msecs {msecs_text:?}: {e}"));
    assert!(
        msecs_text.ends_with(".0") && msecs.fract() == 0.0 && (0.0..1000.0).contains(&msecs),
        "{ctx}: msecs {msecs_text:?} is not whole milliseconds written as a float"
    );
    // `created` holds about 0.24 µs of precision today: allow 1 µs either side of the
    // millisecond `msecs` names (which can wrap to the next second).
    let past = (created.fract() * 1000.0 - msecs).rem_euclid(1000.0);
    assert!(
        !(1.001..=999.999).contains(&past),
        "{ctx}: msecs {msecs_text} is not the milliseconds of created {created_text}"
    );
    let relative_text = field(&f, "relativeCreated");
    assert!(
        is_py_float(relative_text) && relative_text.parse::<f64>().is_ok_and(|r| r >= 0.0),
        "{ctx}: relativeCreated {relative_text:?} is not a float of milliseconds"
    );
    let thread = field(&f, "thread");
    assert!(
        thread.parse::<u64>().is_ok(),
        "{ctx}: thread {thread:?} is not an integer"
    );
    let thread_name = match &sent.thread_name {
        Some(name) => name.as_str(),
        None => {
            let name = field(&f, "threadName");
            assert!(name.starts_with("Thread-"), "{ctx}: threadName {name:?}");
            name
        }
    };

    let exe = std::env::current_exe().expect("our executable");
    let process_name = exe
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    let pid = std::process::id().to_string();
    let hostname = gethostname::gethostname().to_string_lossy().into_owned();
    let line = sent.line.to_string();
    let (exc_info, exc_text) = match &sent.error {
        Some((info, text)) => (info.as_str(), text.as_str()),
        None => ("None", "None"),
    };
    let mut want: Vec<(String, String)> = pairs(&[
        ("name", sent.target),
        ("msg", &sent.msg),
        ("args", "()"),
        ("levelname", sent.level.0),
        ("levelno", sent.level.1),
        ("pathname", file!()),
        ("filename", "interop.rs"),
        ("module", "interop"),
        ("exc_info", exc_info),
        ("exc_text", exc_text),
        ("stack_info", "None"),
        ("lineno", &line),
        ("funcName", "(unknown function)"),
        ("created", created_text),
        ("msecs", msecs_text),
        ("relativeCreated", relative_text),
        ("thread", thread),
        ("threadName", thread_name),
        ("processName", &process_name),
        ("process", &pid),
        ("taskName", "None"),
        ("hostname", &hostname),
    ]);
    want.extend(sent.kvs.iter().cloned());
    assert_eq!(
        f, want,
        "{ctx}: every field, in order, as Python decoded it"
    );
    f
}

/// Check 2: the record `logging.makeLogRecord` rebuilt from the fields, and what a
/// `logging.Formatter` made of it. `f` are the record's fields as decoded.
fn check_rebuilt(run: &Run<'_>, req: &Request, sent: &Sent, f: &[(String, String)]) {
    let ctx = format!(
        "[{} {:?} {}] {}",
        run.python, run.method, run.url, sent.what
    );
    let rec = req.record();
    let get = |key: &str| {
        rec.get(key)
            .unwrap_or_else(|| panic!("{ctx}: no record.{key} in {}", req.raw))
    };
    let int = |key: &str| -> u64 {
        field(f, key)
            .parse()
            .unwrap_or_else(|e| panic!("{ctx}: {key}: {e}"))
    };

    assert_eq!(
        get("message"),
        sent.msg.as_str(),
        "{ctx}: record.getMessage()"
    );
    assert_eq!(get("name"), sent.target, "{ctx}: record.name");
    assert_eq!(get("levelname"), sent.level.0, "{ctx}: record.levelname");
    assert_eq!(
        get("levelno").as_u64(),
        Some(int("levelno")),
        "{ctx}: record.levelno"
    );
    assert_eq!(
        get("lineno").as_u64(),
        Some(u64::from(sent.line)),
        "{ctx}: record.lineno"
    );
    assert_eq!(
        get("process").as_u64(),
        Some(u64::from(std::process::id())),
        "{ctx}: record.process"
    );
    assert_eq!(
        get("thread").as_u64(),
        Some(int("thread")),
        "{ctx}: record.thread"
    );
    assert_eq!(
        get("threadName"),
        field(f, "threadName"),
        "{ctx}: record.threadName"
    );
    assert_eq!(
        get("processName"),
        field(f, "processName"),
        "{ctx}: record.processName"
    );
    for key in ["created", "msecs", "relativeCreated"] {
        let ours = field(f, key);
        let python = req.record_number_text(key);
        assert_eq!(
            python.parse::<f64>().ok(),
            ours.parse::<f64>().ok(),
            "{ctx}: Python's float({key}) is not the float we sent ({ours})"
        );
        assert_eq!(
            python, ours,
            "{ctx}: {key} is not written as Python's repr(float) writes it"
        );
    }
    let exc_text = sent.error.as_ref().map(|(_, text)| text.as_str());
    assert_eq!(get("exc_text").as_str(), exc_text, "{ctx}: record.exc_text");
    assert_eq!(get("stack_info"), &Value::Null, "{ctx}: record.stack_info");

    // Formatter('%(asctime)s %(name)s %(levelname)s %(message)s %(lineno)d'), which appends
    // exc_text on a line of its own.
    assert_eq!(
        get("format_error"),
        &Value::Null,
        "{ctx}: the Formatter raised"
    );
    let formatted = get("formatted")
        .as_str()
        .unwrap_or_else(|| panic!("{ctx}: nothing formatted: {}", req.raw));
    let mut tail = format!(
        " {} {} {} {}",
        sent.target, sent.level.0, sent.msg, sent.line
    );
    if let Some(text) = exc_text {
        tail = format!("{tail}\n{text}");
    }
    assert!(formatted.contains(&sent.msg), "{ctx}: {formatted:?}");
    let (time, rest) = formatted.split_at_checked(23).unwrap_or(("", formatted));
    assert_eq!(
        rest, tail,
        "{ctx}: what Python's Formatter wrote after asctime"
    );
    let want = asctime(field(f, "created"), field(f, "msecs"));
    assert_eq!(time, want, "{ctx}: asctime, from created and msecs");
}

/// Logs the checked records ([`log_records`]) through a logger built for `host`, `url` and
/// `method`, and waits (bounded) until every one was delivered. Returns them, with the time
/// (seconds since the epoch) before the first was logged and after the last was delivered.
fn send_records(host: &str, url: &str, method: Method) -> (Vec<Sent>, f64, f64) {
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(host, url)
        .method(method)
        .level(log::LevelFilter::Trace)
        .build()
        .expect("valid config");
    let before = now();
    let sent = log_records(&logger);
    assert!(
        logger.flush_timeout(WAIT),
        "flush timed out: {:?}",
        logger.stats()
    );
    let after = now();
    let stats = logger.stats();
    let n = sent.len() as u64;
    assert_eq!(
        (
            stats.logged,
            stats.sent,
            stats.dropped,
            stats.failed,
            stats.queued
        ),
        (n, n, 0, 0, 0),
        "{stats:?}"
    );
    (sent, before, after)
}

/// Logs every checked record through a logger built for `url` and `method`, to one
/// `py_receiver.py` run by `python`, and checks what Python decoded (check 1) and rebuilt
/// (check 2) from each: a plain record, an error chain, special characters (check 3), key-values
/// named like standard fields (check 4), TRACE.
fn check_interop(python: impl AsRef<OsStr>, url: &str, method: Method) {
    let receiver = PyReceiver::start(python);
    let (sent, before, after) = send_records(&receiver.host(), url, method);
    let run = Run {
        python: receiver.server.name.clone(),
        url,
        method,
        host: receiver.host(),
        before,
        after,
    };
    // One connection, in order: the lines come in the order the records were logged.
    for sent in &sent {
        let req = receiver.recv();
        let fields = check_wire_fields(&run, &req, sent);
        check_rebuilt(&run, &req, sent, &fields);
    }
}

#[test]
fn python_decodes_and_rebuilds_post_records() {
    check_interop(python(), "/log", Method::Post);
}

#[test]
fn python_decodes_and_rebuilds_get_records() {
    check_interop(python(), "/log", Method::Get);
}

#[test]
fn python_decodes_and_rebuilds_get_records_after_a_query() {
    check_interop(python(), "/log?src=app", Method::Get);
}

// ---------------------------------------------------------------------------------------------
// examples/receiver.py: our records in Python's logging
// ---------------------------------------------------------------------------------------------

const EXAMPLE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/receiver.py");

/// `created` and `msecs` of the records sent by hand.
const RAW_CREATED: &str = "1795459757.5";
const RAW_MSECS: &str = "500.0";

fn start_example(python: &OsStr, args: &[&str]) -> Server {
    start_script(python, EXAMPLE_SCRIPT, args)
}

/// The fields of a record sent by hand: those `examples/receiver.py` requires, and `msecs`.
fn raw_fields(msg: &str) -> [(&str, &str); 6] {
    [
        ("name", "raw"),
        ("msg", msg),
        ("levelname", "INFO"),
        ("levelno", "20"),
        ("created", RAW_CREATED),
        ("msecs", RAW_MSECS),
    ]
}

/// A record sent by hand, as a form.
fn raw_record(msg: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(raw_fields(msg))
        .finish()
}

/// The line `examples/receiver.py` prints for [`raw_record`]`(msg)` (`lineno` defaults to 0).
fn raw_line(msg: &str) -> String {
    let asctime = asctime(RAW_CREATED, RAW_MSECS);
    format!("{asctime}{}", after_asctime("INFO", "raw", 0, msg))
}

/// What `examples/receiver.py`'s default format,
/// `%(asctime)s %(levelname)-8s %(name)s:%(lineno)d %(message)s`, writes after asctime.
fn after_asctime(level: &str, name: &str, lineno: impl fmt::Display, message: &str) -> String {
    format!(" {level:<8} {name}:{lineno} {message}")
}

/// `%(asctime)s` of a record whose `created` and `msecs` arrived as these texts: the local
/// time of `int(created)`, then `,` and `msecs` as `%03d`.
fn asctime(created: &str, msecs: &str) -> String {
    let created: f64 = created.parse().expect("created is a float");
    let msecs: f64 = msecs.parse().expect("msecs is a float");
    let local = chrono::Local
        .timestamp_opt(created.floor() as i64, 0)
        .single()
        .expect("a local time");
    format!("{},{:03}", local.format("%Y-%m-%d %H:%M:%S"), msecs as u32)
}

/// Checks that `text` is an asctime (`2026-11-23 19:24:24,666`, local time) between `before`
/// and `after` (seconds since the epoch), give or take a second.
fn check_asctime_between(ctx: &str, text: &str, before: f64, after: f64) {
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S,%3f")
        .unwrap_or_else(|err| panic!("{ctx}: {text:?} is not an asctime: {err}"));
    let when = chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .unwrap_or_else(|| panic!("{ctx}: {text:?} is not a local time"));
    let secs = when.timestamp_millis() as f64 / 1000.0;
    assert!(
        before - 1.0 <= secs && secs <= after + 1.0,
        "{ctx}: asctime {text} is not between {before} and {after} (seconds since the epoch)"
    );
}

/// Whether `examples/receiver.py` shows `c` escaped: the C0 controls (but the line feed where
/// a record has lines), DEL, the C1 controls, Unicode's bidi controls (`Bidi_Control`) and the
/// line and paragraph separators.
fn is_escaped_by_example(c: char) -> bool {
    matches!(
        u32::from(c),
        0..=0x09 | 0x0b..=0x1f | 0x7f..=0x9f | 0x61c | 0x200e | 0x200f | 0x202a..=0x202e
            | 0x2066..=0x2069 | 0x2028 | 0x2029
    )
}

/// `text` as `examples/receiver.py` prints it: each character [`is_escaped_by_example`] (and
/// the line feed, unless `lines`) written as a Python repr writes it (`\t`, `\n`, `\r`,
/// `\x1b`, `\u202e`). The tests that check the escapes themselves spell them out instead.
fn escaped(text: &str, lines: bool) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        let code = u32::from(c);
        match c {
            '\n' if lines => shown.push(c),
            '\t' => shown.push_str("\\t"),
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            _ if !is_escaped_by_example(c) => shown.push(c),
            _ if code < 0x100 => shown.push_str(&format!("\\x{code:02x}")),
            _ => shown.push_str(&format!("\\u{code:04x}")),
        }
    }
    shown
}

/// Checks that `text`, what `examples/receiver.py` wrote on one of its streams, holds none of
/// the characters it must show escaped (line feeds end its lines).
fn assert_nothing_raw(ctx: &str, text: &str) {
    if let Some((at, c)) = text.char_indices().find(|&(_, c)| is_escaped_by_example(c)) {
        panic!("{ctx}: a raw {c:?} at byte {at} in what it wrote:\n{text}");
    }
}

/// Sends the checked records ([`log_records`]) to a running `examples/receiver.py` through a
/// logger built for `url` and `method`, and checks what its `logging.Formatter` printed for
/// each: asctime, level name, name, line number and the formatted message (with the error
/// chain), then the lines of `exc_text` under an error.
fn check_example_with_our_records(receiver: &Server, url: &str, method: Method) {
    let (sent, before, after) = send_records(&receiver.host(), url, method);
    for sent in &sent {
        let ctx = format!("[{} {method:?} {url}] {}", receiver.name, sent.what);
        // Control characters and the like are shown escaped; line feeds pass in the message
        // and exc_text.
        let name = escaped(sent.target, false);
        let mut want = after_asctime(sent.level.0, &name, sent.line, &escaped(&sent.msg, true));
        if let Some((_, exc_text)) = &sent.error {
            want = format!("{want}\n{}", escaped(exc_text, true));
        }
        // A message with line ends spans several lines.
        let lines: Vec<String> = (0..=want.matches('\n').count())
            .map(|_| receiver.line())
            .collect();
        let got = lines.join("\n");
        let (asctime, rest) = got.split_at_checked(23).unwrap_or(("", &got));
        assert_eq!(rest, want, "{ctx}: what the Formatter wrote after asctime");
        check_asctime_between(&ctx, asctime, before, after);
    }
}

/// Runs `tests/interop/py_sender.py` under `python` (Python's own `HTTPHandler`: a POST, a GET
/// and an exception) against a running `examples/receiver.py`, and checks the line printed for
/// each record, and the `exc_info` repr printed under the exception.
fn check_example_with_python_sender(receiver: &Server, python: &OsStr) {
    let ctx = format!(
        "[{} from {} py_sender.py]",
        receiver.name,
        python.to_string_lossy()
    );
    for sent in run_py_sender(python, &receiver.host(), &ctx) {
        let asctime = asctime(&sent.created, &sent.msecs);
        let rest = after_asctime(sent.level, SENDER_LOGGER, &sent.lineno, sent.msg);
        assert_eq!(receiver.line(), format!("{asctime}{rest}"), "{ctx}");
    }
    // Python's exc_info is a repr, with exc_text None: shown where the traceback would be.
    let repr = receiver.line();
    assert!(
        repr.starts_with(
            "(<class 'ZeroDivisionError'>, ZeroDivisionError('division by zero'), \
             <traceback object at 0x"
        ) && repr.ends_with(">)"),
        "{ctx}: under the exception: {repr:?}"
    );
}

/// Checks that a running `examples/receiver.py` still serves: a record POSTed on a new
/// connection is answered 200 and printed.
fn check_example_serves(receiver: &Server, after: &str) {
    let msg = format!("still serving after {after}");
    let mut conn = receiver.connect();
    let Response { status, body, .. } = conn.request("POST", "/log", raw_record(&msg).as_bytes());
    assert_eq!((status, body.as_str()), (200, ""), "{}", receiver.name);
    assert_eq!(receiver.line(), raw_line(&msg), "{}", receiver.name);
}

#[test]
fn example_receiver_formats_our_records_with_python_logging() {
    let receiver = start_example(&python(), &[]);
    check_example_with_our_records(&receiver, "/log", Method::Post);
    check_example_with_our_records(&receiver, "/log?src=app", Method::Get);
}

#[test]
fn example_receiver_prints_python_httphandler_records_and_survives_their_exc_info() {
    let python = python();
    let receiver = start_example(&python, &[]);
    check_example_with_python_sender(&receiver, &python);
    check_example_serves(&receiver, "Python's exception record");
}

#[test]
fn example_receiver_puts_hostname_and_key_values_in_reach_of_a_format_string() {
    let format = "%(hostname)s|%(name)s|%(user)s|%(kv_name)s|%(exc_info)s|%(message)s";
    let receiver = start_example(&python(), &["--format", format]);
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(receiver.host(), "/log")
        .build()
        .expect("valid config");
    let err = std::io::Error::other("disk full");
    log::info!(logger: logger, user = "ann", name = "spoof", err:err = err; "hello {}", "there");
    assert!(logger.flush_timeout(WAIT), "{:?}", logger.stats());
    assert_eq!(logger.stats().sent, 1, "{:?}", logger.stats());
    let hostname = gethostname::gethostname().to_string_lossy().into_owned();
    let target = module_path!();
    // exc_info is None (a string there would break handlers that format it); exc_text follows.
    assert_eq!(
        receiver.line(),
        format!("{hostname}|{target}|ann|spoof|None|hello there: disk full")
    );
    assert_eq!(receiver.line(), "disk full");

    // A sender without a hostname field (Python's HTTPHandler): its address stands in; its
    // exc_info repr is shown as exc_text.
    let repr = "(<class 'ZeroDivisionError'>, ZeroDivisionError('division by zero'), \
                <traceback object at 0x7f9d3a7ffe00>)";
    let extra = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("user", "bob"), ("kv_name", "k"), ("exc_info", repr)])
        .finish();
    let body = format!("{}&{extra}", raw_record("from elsewhere"));
    let mut conn = receiver.connect();
    assert_eq!(conn.request("POST", "/log", body.as_bytes()).status, 200);
    assert_eq!(receiver.line(), "127.0.0.1|raw|bob|k|None|from elsewhere");
    assert_eq!(receiver.line(), repr);
}

#[test]
fn example_receiver_rejects_what_is_not_a_record_and_keeps_serving() {
    let receiver = start_example(&python(), &[]);
    let fields = "name=raw&msg=m&levelname=INFO";

    // One kept-alive connection: each refusal is a 400 that says why, and one stderr line.
    let mut conn = receiver.connect();
    let refused = [
        (
            "abc=def".to_owned(),
            "not a log record: no name, msg, levelname, levelno, created",
        ),
        (
            format!("{fields}&levelno=high&created=1"),
            "bad levelno 'high': ",
        ),
        (
            format!("{fields}&levelno=20&created=nan"),
            "bad created 'nan': ",
        ),
        (
            format!("{fields}&levelno=20&created=1e300"),
            "bad created '1e300': ",
        ),
        (
            format!("{fields}&levelno=20&created=1&getMessage=x"),
            "field 'getMessage' would replace LogRecord.getMessage",
        ),
    ];
    for (body, why) in &refused {
        let Response {
            status,
            body: answer,
            ..
        } = conn.request("POST", "/log", body.as_bytes());
        assert_eq!(status, 400, "{body}: {answer:?}");
        assert!(answer.starts_with(why), "{body}: {answer:?}");
        let line = receiver.stderr_line();
        assert!(
            line.starts_with(&format!("receiver.py: POST /log: {why}")),
            "{body}: {line:?}"
        );
    }
    let Response {
        status,
        body: answer,
        ..
    } = conn.request("GET", "/favicon.ico", b"");
    assert_eq!(status, 400, "{answer:?}");
    let line = receiver.stderr_line();
    assert_eq!(
        line,
        format!("receiver.py: GET /favicon.ico: {}", refused[0].1)
    );

    // The same connection goes on serving records, over POST and GET.
    let Response {
        status,
        body: answer,
        ..
    } = conn.request("POST", "/log", raw_record("kept alive").as_bytes());
    assert_eq!((status, answer.as_str()), (200, ""));
    assert_eq!(receiver.line(), raw_line("kept alive"));
    let target = format!("/log?{}", raw_record("over GET"));
    let Response {
        status,
        body: answer,
        ..
    } = conn.request("GET", &target, b"");
    assert_eq!((status, answer.as_str()), (200, ""));
    assert_eq!(receiver.line(), raw_line("over GET"));

    // A POST without Content-Length: 411, and the connection ends (its body cannot be skipped).
    let mut conn = receiver.connect();
    conn.send(b"POST /log HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(conn.response().status, 411);
    conn.assert_closed_by_peer();
    let line = receiver.stderr_line();
    assert!(
        line.starts_with("receiver.py: POST /log: a POST needs a Content-Length"),
        "{line:?}"
    );

    // A method it does not serve: http.server's own 501, and its own line on stderr.
    let mut conn = receiver.connect();
    assert_eq!(conn.request("PUT", "/log", b"").status, 501);
    let line = receiver.stderr_line();
    assert!(line.contains("Unsupported method ('PUT')"), "{line:?}");

    check_example_serves(&receiver, "bad requests");
}

// ---------------------------------------------------------------------------------------------
// examples/receiver.py: what reaches the terminal, clients that go away, --help
// ---------------------------------------------------------------------------------------------

/// Text that would drive a terminal printed raw: escape sequences (colour, erase the screen, a
/// window title ended by BEL, the C1 CSI), a carriage return that would let the rest overwrite
/// the line, bidi overrides and isolates that would reorder it (U+202E, U+2066), a line
/// separator (U+2028), a tab, NUL and DEL.
const EVIL: &str = "\x1b[31mred\x1b[0m\x1b[2J \x1b]0;title\x07 \rover \u{202e}desrever\u{202c} \
                    \u{2066}iso\u{2069} \u{2028}sep \u{9b}1m \t\0\x7f";
/// [`EVIL`] as `examples/receiver.py` must show it.
const EVIL_SHOWN: &str = r"\x1b[31mred\x1b[0m\x1b[2J \x1b]0;title\x07 \rover \u202edesrever\u202c \u2066iso\u2069 \u2028sep \x9b1m \t\x00\x7f";

/// Checks that `examples/receiver.py` (under `python`) shows escaped what could drive the
/// terminal, in every field of its format (a record's name, level name, hostname, key-value,
/// message and exc_text, from our logger and sent by hand), a line feed passing only between
/// the lines of a message or of exc_text; and in the lines it writes on stderr about a bad
/// request (its path).
fn check_example_escapes(python: &OsStr) {
    let format = "%(hostname)s|%(name)s|%(levelname)s|%(user)s|%(message)s";
    let receiver = start_example(python, &["--format", format]);
    let ctx = receiver.name.clone();

    // From our logger: the target (the record's name), a key-value, the message, an error.
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(receiver.host(), "/log")
        .build()
        .expect("valid config");
    let target = format!("app\n{EVIL}");
    let err = std::io::Error::other(format!("disk {EVIL}\nfull"));
    log::warn!(
        logger: logger, target: &target, user = EVIL, err:err = err;
        "first {EVIL}\nsecond {EVIL}"
    );
    assert!(logger.flush_timeout(WAIT), "{:?}", logger.stats());
    assert_eq!(logger.stats().sent, 1, "{:?}", logger.stats());
    let hostname = gethostname::gethostname().to_string_lossy().into_owned();
    // The line feed of the name and of the key-value is shown as \n; those of the message
    // (which ends with the error's chain) and of exc_text (the error) start lines.
    let want = [
        format!(r"{hostname}|app\n{EVIL_SHOWN}|WARNING|{EVIL_SHOWN}|first {EVIL_SHOWN}"),
        format!("second {EVIL_SHOWN}: disk {EVIL_SHOWN}"),
        "full".to_owned(),
        format!("disk {EVIL_SHOWN}"),
        "full".to_owned(),
    ];
    for want in &want {
        assert_eq!(&receiver.line(), want, "{ctx}: our record");
    }

    // A bad request on a path that holds them: its stderr line.
    let path = "/log\x1b[2J\u{202e}\u{2066}\u{2028}\x7f";
    let mut conn = receiver.connect();
    let Response { status, .. } = conn.request("POST", path, b"abc=def");
    assert_eq!(status, 400, "{ctx}");
    assert_eq!(
        receiver.stderr_line(),
        r"receiver.py: POST /log\x1b[2J\u202e\u2066\u2028\x7f: not a log record: no name, msg, levelname, levelno, created",
        "{ctx}: stderr"
    );

    // Sent by hand, on that connection (the receiver goes on serving): a hostname and a level
    // name too, and an exc_text of two lines.
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("name", EVIL),
            ("msg", EVIL),
            ("levelname", EVIL),
            ("levelno", "20"),
            ("created", RAW_CREATED),
            ("hostname", EVIL),
            ("user", EVIL),
            ("exc_text", &format!("{EVIL}\n{EVIL}")),
        ])
        .finish();
    let Response {
        status,
        body: answer,
        ..
    } = conn.request("POST", "/log", body.as_bytes());
    assert_eq!((status, answer.as_str()), (200, ""), "{ctx}");
    let line = receiver.line();
    assert_eq!(line, [EVIL_SHOWN; 5].join("|"), "{ctx}: a record by hand");
    assert_eq!(receiver.line(), EVIL_SHOWN, "{ctx}: exc_text's first line");
    assert_eq!(receiver.line(), EVIL_SHOWN, "{ctx}: exc_text's second line");
    assert_nothing_raw(&format!("{ctx}: stdout"), &receiver.stdout.text());
    assert_nothing_raw(&format!("{ctx}: stderr"), &receiver.stderr.text());
}

#[test]
fn example_receiver_shows_control_characters_bidi_controls_and_separators_escaped() {
    check_example_escapes(&python());
}

/// Checks that `examples/receiver.py` (under `python`) writes no traceback when a client goes
/// away: a reset in the middle of a request line or of a body, or a close in the middle of a
/// body, gives one line on stderr, a request left silent past `--timeout` one too, a
/// connection reset or left silent between two requests none; and it goes on serving.
fn check_example_survives_clients_going_away(python: &OsStr) {
    let receiver = start_example(python, &["--timeout", "1"]);
    let ctx = receiver.name.clone();
    // A reset: SO_LINGER 0, then the close (the Client dropped).
    let reset = |conn: child::Client| {
        socket2::SockRef::from(&conn.stream)
            .set_linger(Some(Duration::ZERO))
            .expect("set SO_LINGER 0");
        drop(conn);
    };
    let head = "POST /log HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n";

    // Between two requests: a reset, and a connection left silent until the receiver closes
    // it. Neither is worth a line: the next one on stderr is the next step's.
    let mut conn = receiver.connect();
    assert_eq!(
        conn.request("POST", "/log", raw_record("before a reset").as_bytes())
            .status,
        200
    );
    assert_eq!(receiver.line(), raw_line("before a reset"), "{ctx}");
    reset(conn);
    let mut conn = receiver.connect();
    conn.assert_closed_by_peer(); // after --timeout, within WAIT

    // A reset in the middle of the request line, then of the body.
    let mut conn = receiver.connect();
    conn.send(b"POST /lo");
    reset(conn);
    let line = receiver.stderr_line();
    assert!(
        line.starts_with("receiver.py: 127.0.0.1:") && line.contains(": connection lost: "),
        "{ctx}: a reset in the request line: {line:?}"
    );
    let mut conn = receiver.connect();
    conn.send(format!("{head}name=raw&msg=").as_bytes());
    reset(conn);
    let line = receiver.stderr_line();
    assert!(
        line.starts_with("receiver.py: 127.0.0.1:") && line.contains(": connection lost: "),
        "{ctx}: a reset in the body: {line:?}"
    );

    // A close in the middle of the body: no record from half a body.
    let mut conn = receiver.connect();
    conn.send(format!("{head}name=raw&msg=half").as_bytes());
    conn.stream
        .shutdown(std::net::Shutdown::Write)
        .expect("shut down");
    conn.assert_closed_by_peer();
    let line = receiver.stderr_line();
    assert!(
        line.starts_with("receiver.py: 127.0.0.1:")
            && line.ends_with(": connection lost: the body ended after 17 of 100 bytes"),
        "{ctx}: a close in the body: {line:?}"
    );

    // Silent in the middle of a request: closed after --timeout, with one line.
    let mut conn = receiver.connect();
    conn.send(head.as_bytes());
    conn.assert_closed_by_peer();
    let line = receiver.stderr_line();
    assert!(
        line.starts_with("receiver.py: 127.0.0.1:") && line.contains(": Request timed out: "),
        "{ctx}: silent in the body: {line:?}"
    );

    check_example_serves(&receiver, "clients that went away");
    let stderr = receiver.stderr.text();
    assert!(
        !stderr.contains("Traceback"),
        "{ctx}: a traceback on stderr:\n{stderr}"
    );
    assert_eq!(stderr.lines().count(), 5, "{ctx}: one line each:\n{stderr}");
}

#[test]
fn example_receiver_says_one_line_when_a_client_goes_away_and_keeps_serving() {
    check_example_survives_clients_going_away(&python());
}

/// The options of `examples/receiver.py` and what its `--help` must give as their default.
const EXAMPLE_OPTIONS: [(&str, &str); 5] = [
    ("--port PORT", "8000"),
    ("--bind ADDRESS", "127.0.0.1"),
    (
        "--format FORMAT",
        "%(asctime)s %(levelname)-8s %(name)s:%(lineno)d %(message)s",
    ),
    ("--timeout SECONDS", "60"),
    ("--max-body BYTES", "67108864"),
];

#[test]
fn example_receiver_help_describes_every_option_and_its_default() {
    let mut command = Command::new(python());
    command.arg(EXAMPLE_SCRIPT).arg("--help");
    let help = child::run_to_end(command, NEEDS);
    assert!(help.status.success(), "--help: {}", help.status);
    // argparse wraps the help to the terminal's width: compare it with its spaces collapsed.
    let text = help.stdout.join(" ");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");

    // The usage names every option: those checked below, and --help.
    let usage = text
        .split_once(" Receive ")
        .map_or(text.as_str(), |(usage, _)| usage);
    let mut named: Vec<&str> = usage
        .split(['[', ']', ' '])
        .filter(|word| word.starts_with('-'))
        .collect();
    named.sort_unstable();
    let mut want: Vec<&str> = EXAMPLE_OPTIONS
        .iter()
        .map(|(option, _)| option.split(' ').next().unwrap_or(option))
        .chain(["-h"])
        .collect();
    want.sort_unstable();
    assert_eq!(named, want, "the options in the usage line: {text}");

    // Each option's own entry (up to the next one) says what it does and its default.
    let entries = text
        .split_once("-h, --help show this help message and exit ")
        .unwrap_or_else(|| panic!("no -h, --help entry: {text}"))
        .1;
    for (i, (option, default)) in EXAMPLE_OPTIONS.iter().enumerate() {
        let start = entries
            .find(&format!("{option} "))
            .unwrap_or_else(|| panic!("no {option} entry in the help: {text}"));
        let entry = &entries[start + option.len()..];
        let entry = match EXAMPLE_OPTIONS.get(i + 1) {
            Some((next, _)) => entry.split_once(next).map_or(entry, |(entry, _)| entry),
            None => entry,
        };
        let (what, default_text) = entry
            .split_once("(default: ")
            .unwrap_or_else(|| panic!("{option}: no default in its help {entry:?}"));
        assert!(
            default_text.starts_with(&format!("{default})")),
            "{option}: its help does not give {default:?} as its default: {entry:?}"
        );
        assert!(
            what.trim().len() > 20,
            "{option}: its help says little but the default: {entry:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// examples/receiver.py: batches (NDJSON, JSON arrays, single JSON records), gzip or not
// ---------------------------------------------------------------------------------------------

/// [`raw_record`]'s fields as one JSON object of strings, as a batch sends a record.
fn raw_json_record(msg: &str) -> String {
    child::json_object(&raw_fields(msg))
}

/// POSTs `body` to `/log` with this `Content-Type`, compressed with gzip (and said so) when
/// `gzipped`, on `conn`, and reads the answer.
fn post_typed(
    conn: &mut child::Client,
    content_type: &str,
    body: &[u8],
    gzipped: bool,
) -> Response {
    let content_type = format!("Content-Type: {content_type}");
    if gzipped {
        let headers = [content_type.as_str(), "Content-Encoding: gzip"];
        conn.request_with("POST", "/log", &headers, &child::gzip(body))
    } else {
        conn.request_with("POST", "/log", &[content_type.as_str()], body)
    }
}

/// Checks that a running `examples/receiver.py` logs every record of an NDJSON batch, of a
/// JSON array and a single JSON object, each plain and gzip-compressed, and takes JSON numbers
/// and null for the fields Python has as numbers and None.
fn check_example_batches(receiver: &Server) {
    let ctx = &receiver.name;
    let mut conn = receiver.connect();
    for gzipped in [false, true] {
        let how = if gzipped { "gzip" } else { "plain" };
        let msgs: Vec<String> = (1..=3).map(|n| format!("{how} {n}")).collect();
        let records: Vec<String> = msgs.iter().map(|msg| raw_json_record(msg)).collect();

        // NDJSON: a blank line, a CRLF, no line feed at the end; then every line ended.
        let ragged = format!("{}\n\n{}\r\n{}", records[0], records[1], records[2]);
        let ended: String = records.iter().map(|record| format!("{record}\n")).collect();
        // A JSON array, its media type in capitals and with a parameter; one JSON object.
        let array = format!("[{}]", records.join(",\n "));
        for (content_type, body, count) in [
            ("application/x-ndjson", &ragged, 3),
            ("application/x-ndjson", &ended, 3),
            ("Application/JSON; charset=utf-8", &array, 3),
            ("application/json", &records[0], 1),
        ] {
            let Response {
                status,
                body: answer,
                ..
            } = post_typed(&mut conn, content_type, body.as_bytes(), gzipped);
            assert_eq!(
                (status, answer.as_str()),
                (200, ""),
                "{ctx}: {content_type} {how}"
            );
            for msg in &msgs[..count] {
                assert_eq!(
                    receiver.line(),
                    raw_line(msg),
                    "{ctx}: {content_type} {how}"
                );
            }
        }
    }

    // Numbers where Python has numbers, null where a record may have None.
    let typed = r#"{"name":"raw","msg":"typed","levelname":"INFO","levelno":20,"created":1795459757.5,"msecs":500.0,"lineno":7,"exc_info":null,"exc_text":null,"process":null}"#;
    let Response { status, .. } =
        post_typed(&mut conn, "application/json", typed.as_bytes(), false);
    assert_eq!(status, 200, "{ctx}: typed values");
    let want = after_asctime("INFO", "raw", 7, "typed");
    assert_eq!(
        receiver.line(),
        format!("{}{want}", asctime(RAW_CREATED, RAW_MSECS)),
        "{ctx}: typed values"
    );
}

/// Checks that a running `examples/receiver.py` refuses a body that is not JSON, an NDJSON
/// batch with a bad line (plain or gzip), an array with an element that is not a record, a
/// body that is not gzip and an unknown encoding: each with its status, one stderr line, and
/// none of its records logged (the record sent next on the same connection is the next line).
fn check_example_refuses_bad_batches(receiver: &Server) {
    let ctx = &receiver.name;
    let bad_batch = format!(
        "{}\n{{\"msg\": oops}}\n{}\n",
        raw_json_record("good 1"),
        raw_json_record("good 2")
    );
    let not_a_record = format!(
        "[{}, {}]",
        raw_json_record("good"),
        child::json_object(&[("name", "raw")])
    );
    /// A request refused, and how.
    struct Refusal<'a> {
        content_type: &'a str,
        encoding: Option<&'a str>,
        body: Vec<u8>,
        status: u16,
        why: &'a str,
    }
    let refused = [
        Refusal {
            content_type: "application/json",
            encoding: None,
            body: b"garbage".to_vec(),
            status: 400,
            why: "bad JSON body: Expecting value",
        },
        Refusal {
            content_type: "application/x-ndjson",
            encoding: None,
            body: bad_batch.clone().into_bytes(),
            status: 400,
            why: "bad NDJSON line 2: Expecting value: line 1 column 9 (char 8) (bad lines: 1 of 3); \
             the whole request is refused, none of it logged",
        },
        Refusal {
            content_type: "application/x-ndjson",
            encoding: Some("gzip"),
            body: child::gzip(bad_batch.as_bytes()),
            status: 400,
            why: "bad NDJSON line 2: ",
        },
        Refusal {
            content_type: "application/json",
            encoding: None,
            body: not_a_record.into_bytes(),
            status: 400,
            why: "bad JSON body: record 2: not a log record: no msg, levelname, levelno, created",
        },
        Refusal {
            content_type: "application/json",
            encoding: None,
            body: b"[1]".to_vec(),
            status: 400,
            why: "bad JSON body: record 1: a JSON int",
        },
        Refusal {
            content_type: "application/x-ndjson",
            encoding: Some("gzip"),
            body: b"not gzip".to_vec(),
            status: 400,
            why: "bad gzip body: ",
        },
        Refusal {
            content_type: "application/json",
            encoding: Some("br"),
            body: b"{}".to_vec(),
            status: 415,
            why: "Content-Encoding br is not supported (gzip and identity are)",
        },
    ];
    let mut conn = receiver.connect();
    for (n, refusal) in refused.iter().enumerate() {
        let Refusal {
            content_type,
            encoding,
            body,
            status: want_status,
            why,
        } = refusal;
        let content_type = format!("Content-Type: {content_type}");
        let encoding = encoding.map(|coding| format!("Content-Encoding: {coding}"));
        let mut headers = vec![content_type.as_str()];
        headers.extend(encoding.as_deref());
        let Response {
            status,
            body: answer,
            ..
        } = conn.request_with("POST", "/log", &headers, body);
        assert_eq!(status, *want_status, "{ctx}: case {n}: {answer:?}");
        assert!(answer.starts_with(why), "{ctx}: case {n}: {answer:?}");
        let line = receiver.stderr_line();
        assert!(
            line.starts_with(&format!("receiver.py: POST /log: {why}")),
            "{ctx}: case {n}: {line:?}"
        );
        let msg = format!("after refusal {n}");
        let Response { status, .. } = conn.request("POST", "/log", raw_record(&msg).as_bytes());
        assert_eq!(status, 200, "{ctx}: case {n}");
        assert_eq!(receiver.line(), raw_line(&msg), "{ctx}: case {n}");
    }
}

#[test]
fn example_receiver_logs_every_record_of_ndjson_and_json_batches_gzip_or_not() {
    let receiver = start_example(&python(), &[]);
    check_example_batches(&receiver);
    check_example_serves(&receiver, "batches");
}

#[test]
fn example_receiver_refuses_a_bad_batch_whole_and_logs_none_of_it() {
    let receiver = start_example(&python(), &[]);
    check_example_refuses_bad_batches(&receiver);
    check_example_serves(&receiver, "bad batches");
}

#[test]
fn example_receiver_answers_a_gzip_bomb_413_within_bounded_memory_and_keeps_serving() {
    const CAP: usize = 1024 * 1024;
    let receiver = start_example(&python(), &["--max-body", &CAP.to_string()]);
    check_example_serves(&receiver, "the start");
    #[cfg(target_os = "linux")]
    let before = child::proc_status_kib(receiver.pid(), "VmRSS") * 1024;
    // 100 MB of zeros in about 100 KB: under the cap, so only what it inflates to is over it.
    let bomb = child::gzip_bomb(100_000_000);
    assert!(bomb.len() < CAP / 4, "a bomb of {} bytes", bomb.len());
    let why = format!(
        "gzip body of {} bytes inflates past the limit of {CAP} bytes",
        bomb.len()
    );
    let mut conn = receiver.connect();
    for (content_type, Response { status, body, .. }) in conn.post_gzipped_as_each_type(&bomb) {
        assert_eq!(
            (status, body.as_str()),
            (413, format!("{why}\n").as_str()),
            "{content_type}"
        );
        assert_eq!(
            receiver.stderr_line(),
            format!("receiver.py: POST /log: {why}")
        );
    }
    // The peak of resident memory since the start: a few times the cap at most, never the
    // 100 MB the bomb inflates to.
    #[cfg(target_os = "linux")]
    {
        let peak = child::proc_status_kib(receiver.pid(), "VmHWM") * 1024;
        let grown = peak.saturating_sub(before);
        assert!(
            grown < 16 * CAP as u64,
            "resident memory peaked {grown} bytes above its start, over 16 x {CAP}"
        );
    }
    // A gzip body that inflates to the cap exactly is taken.
    let exact = format!("{}&pad={}", raw_record("at the cap"), "x".repeat(CAP));
    let exact = &exact[..CAP];
    let Response { status, .. } = conn.request_with(
        "POST",
        "/log",
        &["Content-Encoding: gzip"],
        &child::gzip(exact.as_bytes()),
    );
    assert_eq!(status, 200);
    assert_eq!(receiver.line(), raw_line("at the cap"));
    check_example_serves(&receiver, "a gzip bomb");
}

// ---------------------------------------------------------------------------------------------
// Every Python that pyenv installed
// ---------------------------------------------------------------------------------------------

#[test]
fn every_pyenv_python_rebuilds_our_records_and_runs_the_example_receiver() {
    // Each version runs one receiver per method, then one example receiver.
    for_every_pyenv_python(
        "py_receiver.py and examples/receiver.py rebuilt our records, and examples/receiver.py \
         Python's own and our batches,",
        |python| {
            check_interop(python, "/log", Method::Post);
            check_interop(python, "/log", Method::Get);
            check_interop(python, "/log?src=app", Method::Get);
            let receiver = start_example(python, &[]);
            check_example_with_our_records(&receiver, "/log", Method::Post);
            check_example_with_our_records(&receiver, "/log?src=app", Method::Get);
            check_example_with_python_sender(&receiver, python);
            check_example_serves(&receiver, "Python's exception record");
            check_example_batches(&receiver);
            check_example_refuses_bad_batches(&receiver);
            check_example_serves(&receiver, "batches");
            check_example_escapes(python);
            check_example_survives_clients_going_away(python);
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The README's ten-line standard-library receiver
// ---------------------------------------------------------------------------------------------

/// The line of the README's pattern that binds port 8000; the test binds a free port instead.
const README_SERVE: &str = "ThreadingHTTPServer(('127.0.0.1', 8000), Handler).serve_forever()";

/// The Python block that follows `heading` in README.md.
fn readme_python_after(heading: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let after = readme
        .split_once(heading)
        .unwrap_or_else(|| panic!("README.md has no {heading:?}"))
        .1;
    let code = after
        .split_once("```python\n")
        .and_then(|(_, block)| block.split_once("\n```"))
        .unwrap_or_else(|| panic!("README.md has no Python block after {heading:?}"))
        .0;
    code.to_owned()
}

#[test]
fn the_readme_stdlib_pattern_rebuilds_our_records_in_python_logging() {
    let code = readme_python_after("The pattern, in the standard library alone");
    assert!(
        code.contains(README_SERVE),
        "the README's pattern no longer ends with {README_SERVE:?}:\n{code}"
    );
    let code = code.replace(
        README_SERVE,
        "import sys\n\
         server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)\n\
         print('listening on http://127.0.0.1:%d' % server.server_address[1], file=sys.stderr, \
         flush=True)\n\
         server.serve_forever()",
    );
    let mut command = Command::new(python());
    command.arg("-c").arg(code);
    let receiver = Server::start("README's pattern".into(), command, START_WAIT, NEEDS);

    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(receiver.host(), "/")
        .build()
        .expect("valid config");
    let nasty = "100% & a=b +plus %41 \u{1F980}";
    log::warn!(logger: logger, target: "billing", order = 7; "user {} paid: {nasty}", "ann");
    log::error!(logger: logger, target: "billing", err:err = chained_error(); "checkout failed");
    assert!(logger.flush_timeout(WAIT), "{:?}", logger.stats());
    assert_eq!(logger.stats().sent, 2, "{:?}", logger.stats());

    // Its format: '%(asctime)s %(levelname)s %(name)s: %(message)s', on stderr (where the
    // server's request lines also go).
    let line = receiver.stderr_containing(" WARNING billing: ");
    let (asctime, rest) = line.split_at_checked(23).unwrap_or(("", &line));
    assert_eq!(rest, format!(" WARNING billing: user ann paid: {nasty}"));
    check_asctime_between("README's pattern", asctime, now() - 60.0, now());
    let line = receiver.stderr_containing(" ERROR billing: ");
    assert!(
        line.ends_with(
            " ERROR billing: checkout failed: could not charge card: \
             payment gateway unreachable: connection refused"
        ),
        "{line:?}"
    );
    // The Formatter appends exc_text, the chain, under the message.
    assert_eq!(receiver.stderr_line(), "could not charge card");
}
