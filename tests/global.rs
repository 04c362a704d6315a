//! Tests of the installed (global) logger. Each runs in a child process of its own, because a
//! process installs one logger once: this binary re-runs itself with `HTTP_LOGGER_CHILD` set
//! to the scenario, and the parent checks what the receiver got and what the child printed.
//! (`harness = false` in Cargo.toml: this file's `main` is the test runner.)

mod harness;
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::Outcome;
use http_logger::{ErrorKind, HttpLogger, Method};
use support::{Reply, Server};

const WAIT: Duration = Duration::from_secs(30);

// ---- the children ----

fn child(scenario: &str, host: &str) {
    match scenario {
        // Records logged right before `main` returns are delivered with no call.
        "return-from-main" => {
            HttpLogger::init(host, "/", Method::Post).expect("init");
            for i in 0..2000 {
                log::info!("record {i}");
            }
        }
        // A batching logger: the partial batch (its first record would wait a minute) goes at
        // exit, gzip-compressed.
        "batch-at-exit" => {
            HttpLogger::builder(host, "/")
                .batch(http_logger::Batch::ndjson().max_delay(Duration::from_secs(60)))
                .gzip(true)
                .init()
                .expect("init");
            for i in 0..7 {
                log::info!("record {i}");
            }
        }
        // ... and before std::process::exit.
        "process-exit" => {
            HttpLogger::init(host, "/", Method::Post).expect("init");
            for i in 0..500 {
                log::warn!("record {i}");
            }
            std::process::exit(3);
        }
        // With the receiver gone, the exit waits at most the shutdown timeout.
        "receiver-gone" => {
            HttpLogger::builder(host, "/")
                .shutdown_timeout(Duration::from_millis(500))
                .connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_millis(500))
                .init()
                .expect("init");
            for i in 0..100 {
                log::error!("record {i}");
            }
        }
        // 2,000 records queued for a slow receiver, then the process waits to be stopped.
        "sigterm" => {
            HttpLogger::builder(host, "/")
                .flush_on_signals(true)
                .queue_capacity(4096)
                .shutdown_timeout(Duration::from_secs(20))
                .init()
                .expect("init");
            for i in 0..2000 {
                log::info!("record {i}");
            }
            println!("queued: {}", http_logger::stats().expect("stats").queued);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // A built logger dropped with records left, then the program returns.
        "drop-then-exit" => {
            let logger = HttpLogger::builder(host, "/")
                .shutdown_timeout(Duration::from_millis(500))
                .build()
                .expect("build");
            log::set_max_level(log::LevelFilter::Info);
            for i in 0..100 {
                log::error!(logger: logger, "record {i}");
            }
            drop(logger);
        }
        // tracing's usual setup with HttpLayer; the program logs through both `log` and
        // `tracing`, and returns: every record once, delivered at exit.
        #[cfg(feature = "tracing")]
        "tracing-and-log" => {
            use tracing_subscriber::prelude::*;
            let layer = HttpLogger::builder(host, "/").build_layer().expect("layer");
            tracing_subscriber::registry()
                .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
                .with(layer)
                .init();
            for i in 0..50 {
                log::info!(target: "dependency", "from log {i}");
                let _span = tracing::info_span!("job", i).entered();
                tracing::info!("from tracing {i}");
            }
        }
        // Flushed, then the program returns: one wait, one line on stderr.
        "flush-then-exit" => {
            HttpLogger::builder(host, "/")
                .shutdown_timeout(Duration::from_millis(500))
                .init()
                .expect("init");
            for i in 0..100 {
                log::error!("record {i}");
            }
            log::logger().flush();
            println!("flushed: {:?}", http_logger::stats());
        }
        // init twice, stats before and after, and a record at TRACE with ureq-proto logging at
        // TRACE on the worker: only our records reach the receiver.
        "init-twice" => {
            assert!(http_logger::stats().is_none(), "no stats before init");
            HttpLogger::builder(host, "/")
                .level(log::LevelFilter::Trace)
                .init()
                .expect("first init");
            let second = HttpLogger::init(host, "/", Method::Get).expect_err("second init");
            assert_eq!(second.kind(), ErrorKind::AlreadyInitialized);
            println!("second init: {second}");
            assert!(std::error::Error::source(&second).is_some());
            for i in 0..10 {
                log::trace!("trace record {i}");
            }
            log::logger().flush();
            let stats = http_logger::stats().expect("stats after init");
            println!("stats: logged={} sent={}", stats.logged, stats.sent);
        }
        // A built logger behind fern's chain, beside the console: delivered at exit too.
        "fern" => {
            let http = HttpLogger::builder(host, "/").build().expect("build");
            fern::Dispatch::new()
                .level(log::LevelFilter::Info)
                .chain(Box::new(std::io::sink()) as Box<dyn std::io::Write + Send>)
                .chain(Box::new(http) as Box<dyn log::Log>)
                .apply()
                .expect("fern");
            for i in 0..300 {
                log::info!("via fern {i}");
            }
        }
        // The logger as a log4rs appender.
        #[cfg(feature = "log4rs")]
        "log4rs" => {
            use log4rs::config::{Appender, Config, Root};
            let http = HttpLogger::builder(host, "/").build().expect("build");
            let config = Config::builder()
                .appender(Appender::builder().build("http", http.into_appender()))
                .build(
                    Root::builder()
                        .appender("http")
                        .build(log::LevelFilter::Info),
                )
                .expect("config");
            log4rs::init_config(config).expect("log4rs");
            for i in 0..300 {
                log::info!("via log4rs {i}");
            }
        }
        // Directives from the environment, as RUST_LOG.
        "filter-env" => {
            HttpLogger::builder(host, "/")
                .filter("error")
                .filter_env("HTTP_LOGGER_TEST_FILTER")
                .init()
                .expect("init");
            log::info!(target: "app", "app info: dropped");
            log::warn!(target: "app", "app warn: kept");
            log::debug!(target: "app::db", "db debug: kept");
            log::trace!(target: "app::db", "db trace: dropped");
        }
        // Console (stdout, every record with its thread) beside two HTTPS loggers with secrets,
        // all at TRACE through fern: what the console gets is checked by the parent.
        "secrets" => {
            use std::io::Write as _;
            let ca = std::env::var("HTTP_LOGGER_CA_PEM").expect("HTTP_LOGGER_CA_PEM");
            let https = |b: http_logger::Builder| {
                b.secure(true)
                    .add_root_certificate(&ca)
                    .level(log::LevelFilter::Trace)
                    .build()
                    .expect("build")
            };
            let basic = https(
                HttpLogger::builder(host, "/basic")
                    .credentials("user", SECRETS[0])
                    .header("X-Api-Key", SECRETS[1]),
            );
            let bearer = https(
                HttpLogger::builder(host, "/bearer")
                    .bearer_token(SECRETS[2])
                    .header("X-Custom", SECRETS[3]),
            );
            fern::Dispatch::new()
                .level(log::LevelFilter::Trace)
                .chain(fern::Output::call(|record| {
                    let thread = format!("{:?}", std::thread::current().id());
                    let line = format!("{thread} {} {}\n", record.target(), record.args());
                    let _ = std::io::stdout().lock().write_all(line.as_bytes());
                }))
                .chain(Box::new(basic) as Box<dyn log::Log>)
                .chain(Box::new(bearer) as Box<dyn log::Log>)
                .apply()
                .expect("fern");
            for i in 0..5 {
                log::info!(target: "app", "record {i}");
            }
            log::logger().flush();
        }
        other => panic!("unknown scenario {other}"),
    }
}

// ---- the parent ----

/// Runs a child scenario against `host`, killing it if it outlives `WAIT`.
fn run_child(scenario: &str, host: &str) -> Outcome {
    run_child_with(scenario, host, &[])
}

fn run_child_with(scenario: &str, host: &str, env: &[(&str, &str)]) -> Outcome {
    let child = Command::new(std::env::current_exe().expect("test binary"))
        .envs(env.iter().copied())
        .env("HTTP_LOGGER_CHILD", scenario)
        .env("HTTP_LOGGER_HOST", host)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    harness::finish(child, scenario, WAIT)
}

/// The secrets of the "secrets" scenario: a password, two header values, a bearer token.
const SECRETS: [&str; 4] = [
    "p\u{e4}ssword-SECRET-1",
    "key-SECRET-2",
    "token-SECRET-3",
    "custom-SECRET-4",
];

/// The bytes of the hex dumps in `lines` (`<thread> <target> <message>`), one byte string per
/// thread in the order printed: a dump row is 16 bytes as 8 groups of 4 hex digits (`--` past
/// the end), then the same bytes as text.
fn hex_dumped(lines: &str) -> Vec<Vec<u8>> {
    let mut by_thread: std::collections::BTreeMap<&str, Vec<u8>> = Default::default();
    for line in lines.lines() {
        let mut parts = line.splitn(3, ' ');
        let (Some(thread), Some(_target), Some(msg)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let groups: Vec<&str> = msg.split(' ').take(8).collect();
        let is_row = groups.len() == 8
            && groups
                .iter()
                .all(|g| g.len() == 4 && g.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        if !is_row {
            continue;
        }
        let bytes = by_thread.entry(thread).or_default();
        for group in groups {
            for pair in [&group[..2], &group[2..]] {
                if let Ok(b) = u8::from_str_radix(pair, 16) {
                    bytes.push(b);
                }
            }
        }
    }
    by_thread.into_values().collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn no_secret_reaches_any_logger_at_trace_over_https() {
    use base64::Engine as _;
    let ca = support::certs::Ca::new("secrets CA");
    let leaf = ca.server(&["127.0.0.1"]);
    let server = Server::start_tls(support::certs::server_config(&leaf));
    let out = run_child_with(
        "secrets",
        &server.host(),
        &[("HTTP_LOGGER_CA_PEM", &ca.pem())],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // The records went, with the real values: the receiver saw them.
    let got = server.recv_n(10, Duration::from_secs(5));
    assert_eq!(got.len(), 10, "5 records to each logger");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("user:{}", SECRETS[0]))
    );
    for r in &got {
        let (auth, key) = match r.path() {
            "/basic" => (basic.clone(), ("x-api-key", SECRETS[1])),
            _ => (format!("Bearer {}", SECRETS[2]), ("x-custom", SECRETS[3])),
        };
        assert_eq!(r.header("authorization"), Some(auth.as_str()), "{r:?}");
        assert_eq!(r.header(key.0), Some(key.1), "{r:?}");
    }
    // The console got the HTTP stack's TRACE dumps of those requests...
    let dumps = hex_dumped(&out.stdout);
    let dumped: Vec<u8> = dumps.concat();
    assert!(contains(&dumped, b"POST /basic HTTP/1.1"), "{}", out.stdout);
    assert!(contains(&dumped, b"authorization: "), "{}", out.stdout);
    // ...and no secret, no Basic token, raw or hex-dumped.
    let token = basic.trim_start_matches("Basic ").to_owned();
    for secret in SECRETS.iter().copied().chain([token.as_str()]) {
        assert!(!out.stdout.contains(secret), "{secret:?} on the console");
        assert!(!out.stderr.contains(secret), "{secret:?} on stderr");
        for dump in &dumps {
            assert!(
                !contains(dump, secret.as_bytes()),
                "{secret:?} in a hex dump"
            );
        }
    }
}

fn sigterm_delivers_what_is_queued_then_ends_the_process_as_sigterm_does() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    // Slow: 2,000 records take seconds, so most are still queued when the signal comes.
    let server = Server::with_script(|_, _| Reply::Delay(Duration::from_millis(1), 200));
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .env("HTTP_LOGGER_CHILD", "sigterm")
        .env("HTTP_LOGGER_HOST", server.host())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the child's first line");
    assert!(line.starts_with("queued: "), "{line}");
    let queued: u64 = line["queued: ".len()..].trim().parse().expect("a count");
    assert!(queued > 1000, "most records still queued: {queued}");
    // SAFETY: kill(2) on our own child's pid, with a valid signal number.
    #[allow(unsafe_code)]
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0, "SIGTERM sent");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not end after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "killed by SIGTERM: {status:?}"
    );
    let want: Vec<String> = (0..2000).map(|i| format!("record {i}")).collect();
    assert_eq!(messages(&server, 2000), want);
}

fn tracing_and_log_together_send_every_record_once() {
    if !cfg!(feature = "tracing") {
        return;
    }
    let server = Server::start();
    let out = run_child("tracing-and-log", &server.host());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let got = server.recv_n(100, Duration::from_secs(5));
    assert!(
        server.recv_n(1, Duration::from_millis(300)).is_empty(),
        "nothing twice"
    );
    let mut want = Vec::new();
    for i in 0..50 {
        want.push(format!("from log {i}"));
        want.push(format!("from tracing {i}"));
    }
    let msgs: Vec<String> = got
        .iter()
        .map(|r| r.field("msg").unwrap_or_default())
        .collect();
    assert_eq!(msgs, want);
    let bridged = &got[0];
    assert_eq!(bridged.field("name").as_deref(), Some("dependency"));
    assert_eq!(bridged.field("filename").as_deref(), Some("global.rs"));
    assert!(bridged.fields().iter().all(|(k, _)| !k.starts_with("log.")));
    assert_eq!(got[1].field("span").as_deref(), Some("job"));
}

fn messages(server: &Server, n: usize) -> Vec<String> {
    server
        .recv_n(n, Duration::from_secs(5))
        .iter()
        .map(|r| r.field("msg").unwrap_or_default())
        .collect()
}

fn delivers_every_record_logged_before_main_returns() {
    let server = Server::start();
    let out = run_child("return-from-main", &server.host());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let want: Vec<String> = (0..2000).map(|i| format!("record {i}")).collect();
    assert_eq!(messages(&server, 2000), want);
    assert!(server.try_drain().is_empty(), "nothing more");
}

fn delivers_a_partial_batch_at_exit() {
    let server = Server::start();
    let out = run_child("batch-at-exit", &server.host());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let batch = server.recv(WAIT).expect("the batch");
    assert_eq!(batch.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(batch.header("content-encoding"), Some("gzip"));
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&batch.body[..]),
        &mut text,
    )
    .expect("a gzip body");
    let msgs: Vec<String> = text
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            record["msg"].as_str().expect("msg").to_owned()
        })
        .collect();
    let want: Vec<String> = (0..7).map(|i| format!("record {i}")).collect();
    assert_eq!(msgs, want, "one batch of every record, in order");
    assert!(server.try_drain().is_empty(), "nothing more");
}

fn delivers_every_record_logged_before_process_exit() {
    let server = Server::start();
    let out = run_child("process-exit", &server.host());
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert_eq!(messages(&server, 500).len(), 500);
}

fn exits_within_the_shutdown_timeout_when_the_receiver_is_gone() {
    // A port nothing listens on: bind, learn it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run_child("receiver-gone", &format!("127.0.0.1:{port}"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // What was given up is said, once, on stderr.
    let line = format!(
        "http-logger: 100 records not delivered to http://127.0.0.1:{port}/ within the 500 ms shutdown timeout (at exit): "
    );
    assert_eq!(out.stderr.matches(&line).count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("connection refused"), "{}", out.stderr);
    // A flush that waited its time out, then the exit: no second wait (the shutdown says so
    // by giving up the same records at once), one line.
    let out = run_child("flush-then-exit", &format!("127.0.0.1:{port}"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("queued: 100"), "{}", out.stdout);
    assert_eq!(out.stderr.matches(&line).count(), 1, "{}", out.stderr);
    // Dropped, then the exit: told once, by the drop.
    let out = run_child("drop-then-exit", &format!("127.0.0.1:{port}"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("http-logger: ").count(),
        1,
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("100 records not delivered")
            && out.stderr.contains("(the logger was dropped)"),
        "{}",
        out.stderr
    );
    // And a receiver that accepts and never answers.
    let server = Server::with_script(|_, _| Reply::Hang);
    let out = run_child("receiver-gone", &server.host());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        server.requests() >= 1,
        "the child did reach the hung receiver"
    );
}

fn a_second_init_fails_and_the_http_stack_never_logs_to_itself() {
    let server = Server::start();
    let out = run_child("init-twice", &server.host());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("second init: a logger is already installed for the log crate"),
        "{}",
        out.stdout
    );
    let got = server.recv_n(20, Duration::from_secs(2));
    let names: Vec<String> = got
        .iter()
        .map(|r| r.field("name").unwrap_or_default())
        .collect();
    assert_eq!(names.len(), 10, "only our 10 records: {names:?}");
    assert!(names.iter().all(|n| n == "global"), "{names:?}");
    assert!(
        out.stdout.contains("stats: logged=10 sent=10"),
        "{}",
        out.stdout
    );
}

fn delivers_at_exit_behind_fern_and_log4rs() {
    let mut scenarios = vec![("fern", "via fern")];
    if cfg!(feature = "log4rs") {
        scenarios.push(("log4rs", "via log4rs"));
    }
    for (scenario, prefix) in scenarios {
        let server = Server::start();
        let out = run_child(scenario, &server.host());
        assert_eq!(out.code, Some(0), "{scenario}: {}", out.stderr);
        let want: Vec<String> = (0..300).map(|i| format!("{prefix} {i}")).collect();
        assert_eq!(messages(&server, 300), want, "{scenario}");
    }
}

fn filter_directives_come_from_the_environment() {
    let server = Server::start();
    let filter = [("HTTP_LOGGER_TEST_FILTER", "warn,app::db=debug")];
    let out = run_child_with("filter-env", &server.host(), &filter);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(messages(&server, 2), ["app warn: kept", "db debug: kept"]);
    assert!(
        server.recv_n(1, Duration::from_millis(300)).is_empty(),
        "nothing more"
    );
    // Unset, the builder's directives apply: errors only.
    let server = Server::start();
    let out = run_child("filter-env", &server.host());
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        server.recv_n(1, Duration::from_millis(300)).is_empty(),
        "nothing at error"
    );
}

fn main() {
    if let Ok(scenario) = std::env::var("HTTP_LOGGER_CHILD") {
        let host = std::env::var("HTTP_LOGGER_HOST").expect("HTTP_LOGGER_HOST");
        child(&scenario, &host);
        return;
    }
    let tests: [(&str, fn()); 10] = [
        (
            "tracing_and_log_together_send_every_record_once",
            tracing_and_log_together_send_every_record_once,
        ),
        (
            "sigterm_delivers_what_is_queued_then_ends_the_process_as_sigterm_does",
            sigterm_delivers_what_is_queued_then_ends_the_process_as_sigterm_does,
        ),
        (
            "no_secret_reaches_any_logger_at_trace_over_https",
            no_secret_reaches_any_logger_at_trace_over_https,
        ),
        (
            "delivers_at_exit_behind_fern_and_log4rs",
            delivers_at_exit_behind_fern_and_log4rs,
        ),
        (
            "filter_directives_come_from_the_environment",
            filter_directives_come_from_the_environment,
        ),
        (
            "delivers_every_record_logged_before_main_returns",
            delivers_every_record_logged_before_main_returns,
        ),
        (
            "delivers_a_partial_batch_at_exit",
            delivers_a_partial_batch_at_exit,
        ),
        (
            "delivers_every_record_logged_before_process_exit",
            delivers_every_record_logged_before_process_exit,
        ),
        (
            "exits_within_the_shutdown_timeout_when_the_receiver_is_gone",
            exits_within_the_shutdown_timeout_when_the_receiver_is_gone,
        ),
        (
            "a_second_init_fails_and_the_http_stack_never_logs_to_itself",
            a_second_init_fails_and_the_http_stack_never_logs_to_itself,
        ),
    ];
    harness::run(&tests);
}
