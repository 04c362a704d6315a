//! End to end: a built (not installed) logger sends to a real receiver on 127.0.0.1.

mod support;

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use http_logger::{HttpLogger, Method};
use log::Log as _;
use support::{STANDARD, Server, get, keys};

const WAIT: Duration = Duration::from_secs(10);

fn logger(server: &Server, url: &str, method: Method) -> HttpLogger {
    log::set_max_level(log::LevelFilter::Trace);
    HttpLogger::builder(server.host(), url)
        .method(method)
        .level(log::LevelFilter::Debug)
        .build()
        .expect("valid config")
}

fn flushed(logger: &HttpLogger) {
    assert!(
        logger.flush_timeout(WAIT),
        "flush timed out: {:?}",
        logger.stats()
    );
}

#[test]
fn post_sends_every_wire_field_in_order_with_its_value() {
    let server = Server::start();
    let logger = logger(&server, "/log", Method::Post);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut logged_line = 0;
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("billing-worker".into())
            .spawn_scoped(s, || {
                logged_line = line!() + 1;
                log::info!(logger: logger, "user {} logged in after {} tries", "ann", 3);
            })
            .unwrap();
    });
    flushed(&logger);
    let req = server.recv(WAIT).expect("a request");
    assert_eq!(req.method, "POST");
    assert_eq!(req.path(), "/log");
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(req.header("host"), Some(server.host().as_str()));
    assert_eq!(
        req.header("content-length")
            .map(|v| v.parse::<usize>().unwrap()),
        Some(req.body.len())
    );
    let f = req.fields();
    assert_eq!(keys(&f), STANDARD);
    assert_eq!(get(&f, "name"), "logger");
    assert_eq!(get(&f, "msg"), "user ann logged in after 3 tries");
    assert_eq!(get(&f, "args"), "()");
    assert_eq!(get(&f, "levelname"), "INFO");
    assert_eq!(get(&f, "levelno"), "20");
    assert_eq!(get(&f, "pathname"), file!());
    assert_eq!(get(&f, "filename"), "logger.rs");
    assert_eq!(get(&f, "module"), "logger");
    assert_eq!(get(&f, "exc_info"), "None");
    assert_eq!(get(&f, "exc_text"), "None");
    assert_eq!(get(&f, "stack_info"), "None");
    assert_eq!(get(&f, "lineno"), logged_line.to_string());
    assert_eq!(get(&f, "funcName"), "(unknown function)");
    let created: f64 = get(&f, "created").parse().unwrap();
    assert!(created >= before.floor(), "{created} < {before}");
    let msecs: f64 = get(&f, "msecs").parse().unwrap();
    assert!(
        get(&f, "msecs").ends_with(".0"),
        "whole milliseconds as a float"
    );
    let frac_ms = (created.fract() * 1000.0).floor();
    assert!(
        (frac_ms - msecs).abs() <= 1.0,
        "msecs {msecs} vs created {created}"
    );
    let relative: f64 = get(&f, "relativeCreated").parse().unwrap();
    assert!(relative >= 0.0);
    assert!(get(&f, "thread").parse::<u64>().is_ok());
    assert_eq!(get(&f, "threadName"), "billing-worker");
    let exe = std::env::current_exe().unwrap();
    assert_eq!(
        get(&f, "processName"),
        exe.file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(get(&f, "process"), std::process::id().to_string());
    assert_eq!(get(&f, "taskName"), "None");
    assert_eq!(
        get(&f, "hostname"),
        gethostname::gethostname().to_string_lossy()
    );
}

#[test]
fn get_sends_the_fields_as_the_query_string() {
    let server = Server::start();
    let logger = logger(&server, "/log", Method::Get);
    log::warn!(logger: logger, "hello get");
    flushed(&logger);
    let req = server.recv(WAIT).expect("a request");
    assert_eq!(req.method, "GET");
    assert_eq!(req.path(), "/log");
    assert!(
        req.target
            .starts_with("/log?name=logger&msg=hello+get&args=%28%29&levelname=WARNING"),
        "{}",
        req.target
    );
    assert!(req.body.is_empty());
    let f = req.fields();
    assert_eq!(keys(&f), STANDARD);
    assert_eq!(get(&f, "msg"), "hello get");
}

#[test]
fn get_with_a_query_in_the_url_joins_with_ampersand() {
    let server = Server::start();
    let logger = logger(&server, "/log?src=app", Method::Get);
    log::debug!(logger: logger, "query already has ?");
    flushed(&logger);
    let req = server.recv(WAIT).expect("a request");
    assert!(
        req.target
            .starts_with("/log?src=app&name=logger&msg=query+already+has+%3F&"),
        "{}",
        req.target
    );
    let f = req.fields();
    assert_eq!(f[0], ("src".to_owned(), "app".to_owned()));
    assert_eq!(keys(&f[1..]), STANDARD);
    assert_eq!(get(&f, "levelname"), "DEBUG");
}

#[test]
fn unicode_and_form_special_characters_round_trip() {
    let nasty = "h\u{e9}llo \u{4e16}\u{754c} & a=b %41 +plus ~tilde/slash \"q\" \r\n\t\0 \u{1F980}";
    for method in [Method::Post, Method::Get] {
        let server = Server::start();
        let logger = logger(&server, "/", method);
        log::error!(logger: logger, target: "app::ünï", note = nasty; "{nasty}");
        flushed(&logger);
        let f = server.recv(WAIT).expect("a request").fields();
        assert_eq!(get(&f, "msg"), nasty, "{method:?}");
        assert_eq!(get(&f, "note"), nasty, "{method:?}");
        assert_eq!(get(&f, "name"), "app::ünï", "{method:?}");
    }
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

#[test]
fn an_error_arrives_with_its_whole_cause_chain() {
    let server = Server::start();
    let logger = logger(&server, "/", Method::Post);
    let err = Layer {
        msg: "could not charge card",
        source: Some(Box::new(Layer {
            msg: "payment gateway unreachable",
            source: Some(Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ))),
        })),
    };
    log::error!(logger: logger, order = 1042, err:err = err; "checkout failed");
    flushed(&logger);
    let f = server.recv(WAIT).expect("a request").fields();
    assert_eq!(
        get(&f, "msg"),
        "checkout failed: could not charge card: payment gateway unreachable: connection refused"
    );
    assert_eq!(
        get(&f, "exc_text"),
        "could not charge card\n\nCaused by:\n    0: payment gateway unreachable\n    1: connection refused"
    );
    assert_eq!(get(&f, "exc_info"), format!("{err:?}"));
    assert_eq!(&keys(&f)[22..], ["order", "err"]);
    assert_eq!(get(&f, "order"), "1042");
    assert_eq!(
        get(&f, "err"),
        "could not charge card: payment gateway unreachable: connection refused"
    );
}

#[test]
fn key_values_follow_the_standard_fields_and_never_overwrite_them() {
    let server = Server::start();
    let logger = logger(&server, "/", Method::Post);
    let items = vec![1, 2];
    log::info!(
        logger: logger,
        user = "ann", attempts = 3, ratio = 0.5, ok = true, items:? = items, name = "spoof", hostname = "spoof";
        "checked out"
    );
    flushed(&logger);
    let f = server.recv(WAIT).expect("a request").fields();
    assert_eq!(&keys(&f)[..22], STANDARD);
    let extra: Vec<(&str, &str)> = f[22..]
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        extra,
        [
            ("user", "ann"),
            ("attempts", "3"),
            ("ratio", "0.5"),
            ("ok", "true"),
            ("items", "[1, 2]"),
            ("kv_name", "spoof"),
            ("kv_hostname", "spoof"),
        ]
    );
    assert_eq!(get(&f, "name"), "logger");
    assert_ne!(get(&f, "hostname"), "spoof");
}

#[test]
fn records_reuse_one_kept_alive_connection_in_order() {
    let server = Server::start();
    let logger = logger(&server, "/", Method::Post);
    for i in 0..50 {
        log::info!(logger: logger, "record {i}");
    }
    flushed(&logger);
    let got = server.recv_n(50, WAIT);
    let msgs: Vec<String> = got.iter().map(|r| r.field("msg").unwrap()).collect();
    let want: Vec<String> = (0..50).map(|i| format!("record {i}")).collect();
    assert_eq!(msgs, want);
    assert_eq!(server.connections(), 1);
    let stats = logger.stats();
    assert_eq!(
        (stats.logged, stats.sent, stats.queued),
        (50, 50, 0),
        "{stats:?}"
    );
}

#[test]
fn flush_returns_once_every_earlier_record_was_delivered() {
    let server = Server::with_script(|_, _| support::Reply::Delay(Duration::from_millis(2), 200));
    let logger = logger(&server, "/", Method::Post);
    for i in 0..100 {
        log::info!(logger: logger, "record {i}");
    }
    flushed(&logger);
    // Every request was read by the receiver before flush returned.
    assert_eq!(server.requests(), 100);
    assert_eq!(logger.stats().sent, 100);
}

#[test]
fn dropping_a_built_logger_delivers_what_it_holds() {
    let server = Server::start();
    {
        let logger = logger(&server, "/", Method::Post);
        for i in 0..20 {
            log::info!(logger: logger, "record {i}");
        }
    }
    assert_eq!(server.recv_n(20, WAIT).len(), 20);
}

#[test]
fn the_level_filter_and_own_stack_targets_are_respected() {
    let server = Server::start();
    let logger = logger(&server, "/", Method::Post);
    log::trace!(logger: logger, "below the level");
    log::info!(logger: logger, target: "ureq_proto::client", "ureq-proto's own record");
    log::info!(logger: logger, target: "rustls::client", "rustls's own record");
    log::info!(logger: logger, target: "http_logger", "our own record");
    log::info!(logger: logger, "kept");
    assert!(
        !logger.enabled(
            &log::Metadata::builder()
                .level(log::Level::Trace)
                .target("app")
                .build()
        )
    );
    assert!(
        !logger.enabled(
            &log::Metadata::builder()
                .level(log::Level::Error)
                .target("ureq_proto")
                .build()
        )
    );
    flushed(&logger);
    let got = server.recv_n(5, Duration::from_millis(500));
    let msgs: Vec<String> = got.iter().map(|r| r.field("msg").unwrap()).collect();
    assert_eq!(msgs, ["kept"]);
    assert_eq!(logger.stats().logged, 1);
}

#[test]
fn credentials_and_headers_arrive_as_python_sends_them() {
    let server = Server::start();
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(server.host(), "/log")
        .credentials("user", "pässword:x")
        .credentials_over_http(true)
        .header("X-Service", "billing")
        .build()
        .unwrap();
    log::info!(logger: logger, "with creds");
    flushed(&logger);
    let req = server.recv(WAIT).expect("a request");
    // The value from ../shared/reference/python-httphandler/3.13.0/009_POST.raw.
    assert_eq!(
        req.header("authorization"),
        Some("Basic dXNlcjpww6Rzc3dvcmQ6eA==")
    );
    assert_eq!(req.header("x-service"), Some("billing"));
}

#[test]
fn a_record_past_the_size_limit_is_cut_and_counted() {
    let server = Server::start();
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(server.host(), "/")
        .max_record_bytes(1024)
        .build()
        .unwrap();
    let big = "x".repeat(10 << 20);
    log::info!(logger: logger, "{big}");
    flushed(&logger);
    let msg = server.recv(WAIT).expect("a request").field("msg").unwrap();
    assert!(msg.len() < 1100, "{}", msg.len());
    assert!(
        msg.ends_with(" [truncated by http-logger]"),
        "{}",
        &msg[msg.len() - 40..]
    );
    let stats = logger.stats();
    assert_eq!((stats.sent, stats.truncated), (1, 1), "{stats:?}");
}

#[test]
fn filter_directives_pick_records_by_module_like_rust_log() {
    let server = Server::start();
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(server.host(), "/")
        .filter("warn,app::db=debug,app::db::pool=off")
        .build()
        .unwrap();
    log::info!(logger: logger, target: "app", "app info: dropped");
    log::warn!(logger: logger, target: "app", "app warn: kept");
    log::debug!(logger: logger, target: "app::db", "db debug: kept");
    log::trace!(logger: logger, target: "app::db", "db trace: dropped");
    log::error!(logger: logger, target: "app::db::pool", "pool error: dropped");
    flushed(&logger);
    let got = server.recv_n(5, Duration::from_millis(500));
    let msgs: Vec<String> = got.iter().map(|r| r.field("msg").unwrap()).collect();
    assert_eq!(msgs, ["app warn: kept", "db debug: kept"]);

    let e = HttpLogger::builder(server.host(), "/")
        .filter("app=loud")
        .build()
        .expect_err("bad directives");
    assert_eq!(e.kind(), http_logger::ErrorKind::InvalidConfig);
    assert!(e.to_string().contains("app=loud"), "{e}");
}

#[test]
fn stack_info_carries_a_backtrace_at_or_above_the_chosen_level() {
    let server = Server::start();
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(server.host(), "/")
        .stack_info(log::LevelFilter::Error)
        .build()
        .unwrap();
    log::error!(logger: logger, "with a stack");
    log::warn!(logger: logger, "without");
    flushed(&logger);
    let got = server.recv_n(2, WAIT);
    let stack = got[0].field("stack_info").unwrap();
    assert!(
        stack.starts_with("Stack (most recent call first):\n"),
        "{stack}"
    );
    assert!(
        stack.contains("stack_info_carries_a_backtrace_at_or_above_the_chosen_level"),
        "the caller's frame is in it: {stack}"
    );
    assert_eq!(got[1].field("stack_info").as_deref(), Some("None"));
}

#[test]
fn several_connections_deliver_everything_and_flush_waits_for_all() {
    let server = Server::with_script(|i, _| {
        support::Reply::Delay(Duration::from_millis((i % 3) as u64), 200)
    });
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(server.host(), "/")
        .connections(4)
        .build()
        .unwrap();
    for i in 0..400 {
        log::info!(logger: logger, "record {i}");
    }
    flushed(&logger);
    // Every record was read before flush returned, whatever order they finished in.
    assert_eq!(server.requests(), 400);
    let mut msgs: Vec<String> = server
        .recv_n(400, WAIT)
        .iter()
        .map(|r| r.field("msg").unwrap())
        .collect();
    msgs.sort_by_key(|m| m["record ".len()..].parse::<u32>().unwrap());
    let want: Vec<String> = (0..400).map(|i| format!("record {i}")).collect();
    assert_eq!(msgs, want, "each once");
    assert!(
        server.connections() > 1,
        "{} connections",
        server.connections()
    );
    assert!(
        server.connections() <= 4,
        "{} connections",
        server.connections()
    );
    let stats = logger.stats();
    assert_eq!((stats.sent, stats.queued), (400, 0), "{stats:?}");

    let e = HttpLogger::builder(server.host(), "/")
        .connections(0)
        .build()
        .expect_err("0");
    assert_eq!(e.kind(), http_logger::ErrorKind::InvalidConfig);
}

#[test]
fn map_record_adds_changes_and_removes_fields_on_the_worker() {
    let server = Server::start();
    log::set_max_level(log::LevelFilter::Trace);
    let caller = std::thread::current().id();
    let logger = HttpLogger::builder(server.host(), "/")
        .map_record(move |fields| {
            assert_ne!(std::thread::current().id(), caller, "runs on the worker");
            fields.set("service", "billing");
            fields.set(
                "msg",
                format!("[billing] {}", fields.get("msg").unwrap_or("")),
            );
            fields.remove("exc_info");
            if fields.get("secret").is_some() {
                fields.set("secret", "<redacted>");
            }
        })
        .build()
        .unwrap();
    log::info!(logger: logger, secret = "hunter2"; "paid");
    flushed(&logger);
    let f = server.recv(WAIT).expect("a request").fields();
    assert_eq!(get(&f, "msg"), "[billing] paid");
    assert_eq!(get(&f, "service"), "billing");
    assert_eq!(get(&f, "secret"), "<redacted>");
    assert!(!keys(&f).contains(&"exc_info"));
    assert_eq!(keys(&f).last(), Some(&"service"), "added fields go last");
}

#[test]
fn a_panicking_map_record_fails_that_record_and_delivery_goes_on() {
    let server = Server::start();
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(server.host(), "/")
        .map_record(|fields| {
            if fields.get("msg") == Some("boom") {
                panic!("a bug in the user's hook");
            }
        })
        .build()
        .unwrap();
    log::info!(logger: logger, "boom");
    log::info!(logger: logger, "fine");
    flushed(&logger);
    let msgs: Vec<String> = server
        .recv_n(3, Duration::from_millis(500))
        .iter()
        .map(|r| r.field("msg").unwrap())
        .collect();
    assert_eq!(msgs[0], "fine");
    assert!(
        msgs[1].contains("1 failed") && msgs[1].contains("map_record"),
        "{msgs:?}"
    );
    let stats = logger.stats();
    assert_eq!((stats.sent, stats.failed), (1, 1), "{stats:?}");
    assert_eq!(
        logger.last_error().as_deref(),
        Some("the map_record hook panicked")
    );
}

#[test]
fn json_sends_the_same_fields_as_one_object() {
    let server = Server::start();
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(server.host(), "/ingest")
        .json(true)
        .build()
        .unwrap();
    let nasty = "quote \" backslash \\ newline \n emoji \u{1F980} & = %";
    log::warn!(logger: logger, user = nasty; "{nasty}");
    flushed(&logger);
    let req = server.recv(WAIT).expect("a request");
    assert_eq!(req.method, "POST");
    assert_eq!(req.header("content-type"), Some("application/json"));
    let body = String::from_utf8(req.body.clone()).unwrap();
    // In wire order: the object's keys appear in the order of the form fields.
    let positions: Vec<usize> = STANDARD
        .iter()
        .map(|k| {
            body.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} in {body}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{body}");
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(object["msg"], nasty);
    assert_eq!(object["user"], nasty);
    assert_eq!(object["levelname"], "WARNING");
    assert_eq!(object["levelno"], "30");
    assert_eq!(object.len(), 23);

    let e = HttpLogger::builder(server.host(), "/")
        .json(true)
        .method(Method::Get)
        .build()
        .expect_err("json with GET");
    assert_eq!(e.kind(), http_logger::ErrorKind::InvalidConfig);
}

#[test]
fn overflow_block_waits_for_room_instead_of_dropping() {
    use http_logger::Overflow;
    let server = Server::with_script(|_, _| support::Reply::Delay(Duration::from_millis(5), 200));
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(server.host(), "/")
        .queue_capacity(1)
        .overflow(Overflow::Block(Duration::from_secs(30)))
        .build()
        .unwrap();
    for i in 0..30 {
        log::info!(logger: logger, "record {i}");
    }
    flushed(&logger);
    let stats = logger.stats();
    assert_eq!((stats.sent, stats.dropped), (30, 0), "{stats:?}");
    assert_eq!(server.recv_n(30, WAIT).len(), 30);
}

#[test]
fn overflow_block_gives_up_after_its_bound_when_the_receiver_hangs() {
    use http_logger::Overflow;
    let server = Server::with_script(|_, _| support::Reply::Hang);
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(server.host(), "/")
        .queue_capacity(1)
        .overflow(Overflow::Block(Duration::from_millis(50)))
        .timeout(Duration::from_secs(30))
        .shutdown_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    // Once the worker holds record 0 in its hung request, record 1 fills the queue and
    // record 2 waits its bound, then is dropped.
    log::info!(logger: logger, "record 0");
    assert!(server.recv(WAIT).is_some(), "the worker sent record 0");
    log::info!(logger: logger, "record 1");
    log::info!(logger: logger, "record 2");
    let stats = logger.stats();
    assert_eq!((stats.logged, stats.dropped), (3, 1), "{stats:?}");
    assert_eq!(stats.queued, 2, "{stats:?}");
}

#[test]
fn a_display_that_panics_leaves_nothing_for_a_flush_to_wait_on() {
    struct Panics;
    impl fmt::Display for Panics {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            panic!("a Display that panics");
        }
    }
    let server = Server::start();
    let logger = logger(&server, "/", Method::Post);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        log::info!(logger: logger, "{}", Panics);
    }));
    assert!(
        caught.is_err(),
        "the panic reaches the caller, as with any logger"
    );
    log::info!(logger: logger, "after the panic");
    // A number taken by the panicked record would never finish: this flush would wait its
    // whole (long) timeout and say no.
    assert!(logger.flush_timeout(Duration::from_secs(60)));
    let stats = logger.stats();
    assert_eq!(
        (stats.logged, stats.sent, stats.queued),
        (1, 1, 0),
        "{stats:?}"
    );
    let got = server.recv(WAIT).expect("the record after the panic");
    assert_eq!(got.field("msg").as_deref(), Some("after the panic"));
}

#[test]
fn an_anyhow_error_arrives_with_its_contexts_and_cause() {
    let server = Server::start();
    let logger = logger(&server, "/", Method::Post);
    let cause = std::io::Error::other("database is read-only");
    let e = anyhow::Error::new(cause).context("could not save profile of ann");
    log::error!(logger: logger, err:err = *e; "request failed");
    flushed(&logger);
    let got = server.recv(WAIT).expect("the record");
    assert_eq!(
        got.field("msg").as_deref(),
        Some("request failed: could not save profile of ann: database is read-only")
    );
    let text = got.field("exc_text").unwrap();
    assert!(text.contains("could not save profile of ann"), "{text}");
    assert!(text.contains("database is read-only"), "{text}");
}

#[test]
fn a_ten_megabyte_message_keeps_every_other_field() {
    let server = Server::start();
    let logger = logger(&server, "/", Method::Post);
    let huge = "m".repeat(10 << 20);
    let err = std::io::Error::other("disk full");
    log::error!(logger: logger, user = "ann", err:err = err; "{huge}");
    flushed(&logger);
    let got = server.recv(WAIT).expect("the record");
    let fields = got.fields();
    assert_eq!(get(&fields, "name"), "logger");
    assert!(!get(&fields, "threadName").is_empty());
    assert_eq!(get(&fields, "levelname"), "ERROR");
    assert_eq!(get(&fields, "exc_text"), "disk full");
    assert!(get(&fields, "exc_info").contains("disk full"));
    assert_eq!(get(&fields, "user"), "ann");
    assert_eq!(get(&fields, "err"), "disk full");
    let msg = get(&fields, "msg");
    assert!(
        msg.ends_with(" [truncated by http-logger]"),
        "the message is cut and marked"
    );
    assert!(
        msg.len() > 4_000_000 && msg.len() <= 4 << 20,
        "{}",
        msg.len()
    );
    assert_eq!(logger.stats().truncated, 1);
}
