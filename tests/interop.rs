//! Interop with Python itself: `tests/interop/py_receiver.py`, a standard-library receiver,
//! decodes what a built logger sends with `urllib.parse.parse_qsl`/`parse_qs`, rebuilds each
//! record with `logging.makeLogRecord` and formats it with a `logging.Formatter`. The tests
//! check every field of `WIRE.md` as Python decoded it, and the record Python rebuilt.
//!
//! Needs Python 3.8 or newer: the interpreter named by `HTTP_LOGGER_PYTHON`, else `python3` on
//! `PATH`. When it cannot be started the tests fail; they never skip.
//! [`check_interop`] takes the interpreter as an argument, to run the same checks under any
//! Python.

use std::error::Error as StdError;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::TimeZone as _;
use http_logger::{HttpLogger, Method};
use serde_json::{Map, Value};

/// How long to wait for one request line, or for a flush.
const WAIT: Duration = Duration::from_secs(10);
/// How long to wait for the interpreter to start and bind its port.
const START_WAIT: Duration = Duration::from_secs(30);

const RECEIVER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/py_receiver.py");

/// The standard keys, in wire order.
const STANDARD: [&str; 22] = [
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

/// Text a form encoder must not lose: non-ASCII, the form's own syntax (`&`, `=`, `%`, `+`),
/// things that look percent-encoded, CR, LF, NUL, tab, an emoji outside the BMP, and spaces at
/// both ends.
const NASTY: &str = " h\u{e9}llo \u{4e16}\u{754c} & a=b&c= %41 %zz %% 100% +plus a+b %2B \
                     ~tilde/slash;semi \"q\" 'q' <>#?\r\nline2\n\t\0nul \u{1F980} \u{2028}end ";
/// The same kind of text as a key-value key.
const NASTY_KEY: &str = "k\u{e9}y &=%+ %41\r\n\t\0 \u{1F980}";
const NASTY_TARGET: &str = "app::\u{fc}n\u{ef} &=%+ \u{1F980}";
const NASTY_THREAD: &str = "w\u{f6}rker &=%+ \u{1F980}";

/// The interpreter to use: `HTTP_LOGGER_PYTHON`, else `python3` on `PATH`.
fn python() -> OsString {
    std::env::var_os("HTTP_LOGGER_PYTHON")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

// ---------------------------------------------------------------------------------------------
// The receiver process
// ---------------------------------------------------------------------------------------------

/// A running `py_receiver.py`: one JSON line per request it answered. Killed on drop; its
/// stdin is a pipe held here, so it also exits when this process does.
struct PyReceiver {
    python: String,
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    lines: Receiver<Result<Request, String>>,
    stderr: Arc<Mutex<String>>,
}

impl PyReceiver {
    /// Starts the receiver under `python` and waits (bounded) until it listens.
    ///
    /// # Panics
    ///
    /// If the interpreter cannot be started, or the receiver does not listen within
    /// [`START_WAIT`].
    fn start(python: impl AsRef<OsStr>) -> PyReceiver {
        let python = python.as_ref();
        let shown = python.to_string_lossy().into_owned();
        let mut child = Command::new(python)
            .arg(RECEIVER_SCRIPT)
            .args(["--port", "0", "--exit-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start the Python receiver with {shown:?} ({err}): these tests need \
                     Python 3.8 or newer; install Python 3 so that `python3` is on PATH, or set \
                     HTTP_LOGGER_PYTHON to the interpreter's path"
                )
            });
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");

        // stderr: the "listening on" line gives the port; everything is kept for messages.
        let stderr = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = mpsc::channel();
        std::thread::spawn({
            let stderr = Arc::clone(&stderr);
            move || {
                let mut port_tx = Some(port_tx);
                for line in BufReader::new(stderr_pipe).lines() {
                    let Ok(line) = line else { break };
                    let port = line
                        .strip_prefix("listening on http://127.0.0.1:")
                        .and_then(|p| p.trim().parse::<u16>().ok());
                    {
                        let mut text = stderr.lock().unwrap_or_else(PoisonError::into_inner);
                        text.push_str(&line);
                        text.push('\n');
                    }
                    if let (Some(port), Some(tx)) = (port, port_tx.take()) {
                        let _ = tx.send(port);
                    }
                }
            }
        });

        // stdout: one JSON line per request.
        let (line_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let item = match line {
                    Ok(raw) => match serde_json::from_str::<Value>(&raw) {
                        Ok(json) => Ok(Request { raw, json }),
                        Err(err) => Err(format!("a stdout line is not JSON ({err}): {raw:?}")),
                    },
                    Err(err) => Err(format!("cannot read stdout: {err}")),
                };
                let stop = item.is_err();
                if line_tx.send(item).is_err() || stop {
                    break;
                }
            }
        });

        // From here on, a panic kills the child through Drop.
        let mut receiver = PyReceiver {
            python: shown,
            child,
            stdin,
            port: 0,
            lines,
            stderr,
        };
        receiver.port = match port_rx.recv_timeout(START_WAIT) {
            Ok(port) => port,
            Err(RecvTimeoutError::Timeout) => panic!(
                "the Python receiver ({}) printed no port within {START_WAIT:?}; stderr:\n{}",
                receiver.python,
                receiver.stderr_text()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = match receiver.child.try_wait() {
                    Ok(Some(status)) => status.to_string(),
                    _ => "closed its stderr".to_owned(),
                };
                panic!(
                    "the Python receiver ({}) exited before listening ({status}); it needs \
                     Python 3.8 or newer; stderr:\n{}",
                    receiver.python,
                    receiver.stderr_text()
                )
            }
        };
        receiver
    }

    /// `127.0.0.1:PORT`, the host to give the logger.
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The next request line, waiting at most [`WAIT`].
    ///
    /// # Panics
    ///
    /// If none comes in time, or the receiver printed something that is not a JSON line.
    fn recv(&self) -> Request {
        match self.lines.recv_timeout(WAIT) {
            Ok(Ok(req)) => req,
            Ok(Err(err)) => panic!("{}: {err}; stderr:\n{}", self.python, self.stderr_text()),
            Err(RecvTimeoutError::Timeout) => panic!(
                "no request line from the Python receiver ({}) within {WAIT:?}; stderr:\n{}",
                self.python,
                self.stderr_text()
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "the Python receiver ({}) closed its stdout; stderr:\n{}",
                self.python,
                self.stderr_text()
            ),
        }
    }
}

impl Drop for PyReceiver {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: `--exit-on-stdin-eof` ends it on its own
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn keys(fields: &[(String, String)]) -> Vec<&str> {
    fields.iter().map(|(k, _)| k.as_str()).collect()
}

fn value<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field {key:?} in {fields:?}"))
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
    let created_text = value(&f, "created");
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
    let msecs_text = value(&f, "msecs");
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
    let relative_text = value(&f, "relativeCreated");
    assert!(
        is_py_float(relative_text) && relative_text.parse::<f64>().is_ok_and(|r| r >= 0.0),
        "{ctx}: relativeCreated {relative_text:?} is not a float of milliseconds"
    );
    let thread = value(&f, "thread");
    assert!(
        thread.parse::<u64>().is_ok(),
        "{ctx}: thread {thread:?} is not an integer"
    );
    let thread_name = match &sent.thread_name {
        Some(name) => name.as_str(),
        None => {
            let name = value(&f, "threadName");
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
        value(f, key)
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
        value(f, "threadName"),
        "{ctx}: record.threadName"
    );
    assert_eq!(
        get("processName"),
        value(f, "processName"),
        "{ctx}: record.processName"
    );
    for key in ["created", "msecs", "relativeCreated"] {
        let ours = value(f, key);
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
    let (asctime, rest) = formatted.split_at_checked(23).unwrap_or(("", formatted));
    assert_eq!(
        rest, tail,
        "{ctx}: what Python's Formatter wrote after asctime"
    );
    // asctime: the local time of int(created), then `,` and msecs as %03d.
    let created: f64 = value(f, "created").parse().expect("a float");
    let local = chrono::Local
        .timestamp_opt(created.floor() as i64, 0)
        .single()
        .expect("a local time");
    let msecs: f64 = value(f, "msecs").parse().expect("a float");
    let want = format!("{},{:03}", local.format("%Y-%m-%d %H:%M:%S"), msecs as u32);
    assert_eq!(asctime, want, "{ctx}: asctime, from created and msecs");
}

/// Logs every checked record through a logger built for `url` and `method`, to one
/// `py_receiver.py` run by `python`, and checks what Python decoded (check 1) and rebuilt
/// (check 2) from each: a plain record, an error chain, special characters (check 3), key-values
/// named like standard fields (check 4), TRACE.
fn check_interop(python: impl AsRef<OsStr>, url: &str, method: Method) {
    let receiver = PyReceiver::start(python);
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(receiver.host(), url)
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
    let run = Run {
        python: receiver.python.clone(),
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
