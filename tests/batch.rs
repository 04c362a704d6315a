//! Batches (`Builder::batch`) and gzip (`Builder::gzip`), against the test receiver on
//! 127.0.0.1: each limit that sends a batch, flush, the formats, gzip round trips, the
//! bisecting of a refused batch, and a receiver down then up. Every wait is bounded.

mod support;

use std::io::Read as _;
use std::time::{Duration, Instant};

use http_logger::{Batch, ErrorKind, HttpLogger, Method, Stats};
use support::logging::{WAIT, drop_bounded, fast, flushed};
use support::{Reply, Request, Server};

fn assert_adds_up(s: &Stats) {
    assert_eq!(s.logged, s.sent + s.dropped + s.failed + s.queued, "{s:?}");
}

/// The body, gunzipped when the request says it is.
fn body(r: &Request) -> Vec<u8> {
    match r.header("content-encoding") {
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&r.body[..])
                .read_to_end(&mut out)
                .expect("a gzip body");
            out
        }
        None => r.body.clone(),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    }
}

/// The records of a batch request, each as its JSON object, checking the Content-Type.
fn records(r: &Request) -> Vec<serde_json::Map<String, serde_json::Value>> {
    let body = body(r);
    match r.header("content-type") {
        Some("application/x-ndjson") => {
            assert!(body.ends_with(b"\n"), "each line ends with a newline");
            body.split(|&b| b == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| serde_json::from_slice(line).expect("one JSON object per line"))
                .collect()
        }
        Some("application/json") => serde_json::from_slice(&body).expect("a JSON array"),
        other => panic!("unexpected Content-Type {other:?}"),
    }
}

/// The `msg` of each record of a batch request, in order.
fn msgs(r: &Request) -> Vec<String> {
    records(r)
        .iter()
        .map(|rec| rec["msg"].as_str().expect("msg is a string").to_owned())
        .collect()
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("record {i}")).collect()
}

/// Requests until `n` records arrived (or `WAIT` passed).
fn collect(server: &Server, n: usize) -> Vec<Request> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut count = 0;
    while count < n && Instant::now() < deadline {
        if let Some(r) = server.recv(Duration::from_millis(100)) {
            count += msgs(&r).len();
            got.push(r);
        }
    }
    got
}

#[test]
fn a_batch_goes_when_it_holds_max_records_and_the_rest_at_flush() {
    let server = Server::start();
    let logger = fast(server.host())
        .batch(
            Batch::ndjson()
                .max_records(4)
                .max_delay(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    for i in 0..9 {
        log::info!(logger: logger, "record {i}");
    }
    // Two full batches go without a flush (their first record would wait a minute).
    let full = server.recv_n(2, WAIT);
    assert_eq!(full.len(), 2, "two full batches");
    assert_eq!(msgs(&full[0]), numbered(4));
    assert_eq!(msgs(&full[1]), numbered(8)[4..]);
    // The ninth waits for more, until the flush.
    assert!(server.recv(Duration::from_millis(300)).is_none());
    flushed(&logger);
    let last = server.recv(WAIT).expect("the partial batch at flush");
    assert_eq!(msgs(&last), ["record 8"]);
    let stats = logger.stats();
    assert_adds_up(&stats);
    assert_eq!((stats.logged, stats.sent), (9, 9), "records, not requests");
    assert_eq!(server.requests(), 3);
    drop_bounded(logger);
}

#[test]
fn a_batch_goes_before_a_record_would_take_it_past_max_bytes() {
    let server = Server::start();
    let logger = fast(server.host())
        .batch(
            Batch::json_array()
                .max_bytes(2_500)
                .max_delay(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    let pad = "x".repeat(600);
    for i in 0..7 {
        log::info!(logger: logger, "record {i} {pad}");
    }
    flushed(&logger);
    let got = collect(&server, 7);
    let sizes: Vec<usize> = got.iter().map(|r| msgs(r).len()).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 7, "{sizes:?}");
    for r in &got {
        // Each object is about 1 KB: a batch of them stays under the limit.
        assert!(
            r.body.len() <= 2_500 || msgs(r).len() == 1,
            "{} bytes",
            r.body.len()
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert!(sizes.iter().all(|&n| n == 2 || n == 1), "{sizes:?}");
    let all: Vec<String> = got.iter().flat_map(msgs).collect();
    let want: Vec<String> = (0..7).map(|i| format!("record {i} {pad}")).collect();
    assert_eq!(all, want, "in order");
    drop_bounded(logger);
}

#[test]
fn a_batch_goes_when_its_first_record_waited_max_delay() {
    let server = Server::start();
    let logger = fast(server.host())
        .batch(Batch::ndjson().max_delay(Duration::from_millis(100)))
        .build()
        .unwrap();
    for i in 0..3 {
        log::info!(logger: logger, "record {i}");
    }
    // No flush: the delay sends them.
    let got = collect(&server, 3);
    let all: Vec<String> = got.iter().flat_map(msgs).collect();
    assert_eq!(all, numbered(3));
    drop_bounded(logger);
}

#[test]
fn batch_objects_hold_the_fields_of_json_in_order() {
    let server = Server::start();
    let batched = fast(server.host()).batch(Batch::ndjson()).build().unwrap();
    log::warn!(logger: batched, user = "ann"; "disk {}% full", 97);
    flushed(&batched);
    let single = fast(server.host()).json(true).build().unwrap();
    log::warn!(logger: single, user = "ann"; "disk {}% full", 97);
    flushed(&single);
    let batch = server.recv(WAIT).expect("the batch");
    let one = server.recv(WAIT).expect("the single record");
    let from_batch = &records(&batch)[0];
    let alone: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&one.body).unwrap();
    let keys = |m: &serde_json::Map<String, serde_json::Value>| -> Vec<String> {
        m.keys().cloned().collect()
    };
    assert_eq!(keys(from_batch), keys(&alone));
    for key in ["msg", "levelname", "user", "name", "hostname"] {
        assert_eq!(from_batch[key], alone[key], "{key}");
    }
    assert_eq!(from_batch["msg"], "disk 97% full");
    assert!(from_batch.values().all(serde_json::Value::is_string));
    drop_bounded(batched);
    drop_bounded(single);
}

#[test]
fn gzip_round_trips_for_batches_and_for_single_records() {
    let server = Server::start();
    let batched = fast(server.host())
        .batch(Batch::ndjson())
        .gzip(true)
        .build()
        .unwrap();
    for i in 0..50 {
        log::info!(logger: batched, "record {i} h\u{e9}llo \u{4e16}\u{754c} & a=b");
    }
    flushed(&batched);
    let got = collect(&server, 50);
    let want: Vec<String> = (0..50)
        .map(|i| format!("record {i} h\u{e9}llo \u{4e16}\u{754c} & a=b"))
        .collect();
    assert_eq!(got.iter().flat_map(msgs).collect::<Vec<_>>(), want);
    for r in &got {
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r.body.len() < body(r).len(), "compressed");
    }
    drop_bounded(batched);

    let single = fast(server.host()).gzip(true).build().unwrap();
    log::info!(logger: single, "alone & gzipped");
    flushed(&single);
    let r = server.recv(WAIT).expect("the record");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        r.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body(&r)).into_owned().collect();
    assert_eq!(support::get(&fields, "msg"), "alone & gzipped");
    assert_eq!(support::keys(&fields)[..22], support::STANDARD);
    drop_bounded(single);
}

#[test]
fn a_refused_batch_is_split_until_only_the_bad_records_fail() {
    // The receiver refuses (400) any request holding a record whose message says "bad".
    let server = Server::with_script(|_, r| {
        if msgs(r).iter().any(|m| m.contains("bad")) {
            Reply::Status(400)
        } else {
            Reply::Status(200)
        }
    });
    let logger = fast(server.host())
        .batch(Batch::ndjson().max_delay(Duration::from_secs(60)))
        .build()
        .unwrap();
    let sent: Vec<String> = (0..20)
        .map(|i| match i {
            6 | 13 => format!("record {i} bad"),
            _ => format!("record {i}"),
        })
        .collect();
    for msg in &sent {
        log::info!(logger: logger, "{msg}");
    }
    flushed(&logger);
    let stats = logger.stats();
    assert_adds_up(&stats);
    assert_eq!((stats.sent, stats.failed), (18, 2), "{stats:?}");
    assert!(
        logger
            .last_error()
            .unwrap_or_default()
            .contains("receiver answered 400")
    );
    drop_bounded(logger);
    // What the receiver accepted: every good record once, in order.
    let mut accepted = Vec::new();
    let mut requests = 0;
    while let Some(r) = server.recv(Duration::from_millis(300)) {
        requests += 1;
        let m = msgs(&r);
        if !m.iter().any(|m| m.contains("bad")) {
            accepted.extend(m);
        }
    }
    let good: Vec<String> = sent
        .iter()
        .filter(|m| !m.contains("bad"))
        .cloned()
        .collect();
    // The loss report (a batch of one, WARNING) may follow the records.
    accepted.retain(|m| !m.starts_with("http-logger lost"));
    assert_eq!(accepted, good);
    // 20 records, 2 bad: the halving takes a few requests, far fewer than one per record.
    assert!(requests < 20, "{requests} requests");
}

#[test]
fn a_receiver_down_then_up_loses_nothing_the_queue_holds() {
    let server = Server::start();
    let addr = server.addr();
    drop(server);
    let logger = fast(addr.to_string())
        .batch(Batch::ndjson().max_records(10))
        .retry_budget(1000, Duration::from_secs(30))
        .build()
        .unwrap();
    for i in 0..100 {
        log::info!(logger: logger, "record {i}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(logger.stats().sent, 0);
    let server = {
        let deadline = Instant::now() + WAIT;
        loop {
            match Server::start_on(addr, |_, _| Reply::Status(200)) {
                Ok(server) => break server,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restart on {addr}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("could not restart the receiver on {addr}: {e}"),
            }
        }
    };
    flushed(&logger);
    let stats = logger.stats();
    assert_adds_up(&stats);
    assert_eq!((stats.sent, stats.failed, stats.dropped), (100, 0, 0));
    let got = collect(&server, 100);
    let all: Vec<String> = got.iter().flat_map(msgs).collect();
    assert_eq!(all, numbered(100), "every record once, in order");
    drop_bounded(logger);
}

#[test]
fn batches_and_gzip_need_post() {
    for builder in [
        HttpLogger::builder("127.0.0.1:9", "/")
            .method(Method::Get)
            .batch(Batch::ndjson()),
        HttpLogger::builder("127.0.0.1:9", "/")
            .method(Method::Get)
            .gzip(true),
        HttpLogger::builder("127.0.0.1:9", "/").batch(Batch::ndjson().max_records(0)),
        HttpLogger::builder("127.0.0.1:9", "/").batch(Batch::json_array().max_bytes(0)),
    ] {
        let err = builder.build().expect_err("refused at build");
        assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    }
}

#[test]
fn a_max_delay_without_end_sends_by_count_and_at_flush() {
    let server = Server::start();
    let logger = fast(server.host())
        .batch(Batch::ndjson().max_records(3).max_delay(Duration::MAX))
        .build()
        .unwrap();
    for i in 0..4 {
        log::info!(logger: logger, "record {i}");
    }
    let full = server.recv(WAIT).expect("the full batch");
    assert_eq!(msgs(&full), numbered(3));
    flushed(&logger);
    let last = server.recv(WAIT).expect("the rest at flush");
    assert_eq!(msgs(&last), ["record 3"]);
    assert_eq!(logger.stats().sent, 4);
    drop_bounded(logger);
}

#[test]
fn a_refusal_of_every_batch_alike_is_not_split() {
    // A 401 refuses any request: splitting would only multiply them.
    let server = Server::with_script(|_, _| Reply::Status(401));
    let logger = fast(server.host())
        .batch(Batch::ndjson().max_delay(Duration::from_secs(60)))
        .build()
        .unwrap();
    for i in 0..16 {
        log::info!(logger: logger, "record {i}");
    }
    flushed(&logger);
    let stats = logger.stats();
    assert_adds_up(&stats);
    assert_eq!((stats.sent, stats.failed), (0, 16), "{stats:?}");
    drop_bounded(logger);
    let requests = server.try_drain();
    assert_eq!(requests.len(), 1, "one request, not split");
    assert_eq!(msgs(&requests[0]), numbered(16));
}

#[test]
fn batches_of_large_records_stay_within_max_bytes_and_in_order() {
    // Records of about 1.3 KB with 4 KB batches: each batch holds two or three, none
    // carried over and over (the stash counts what the last batch left).
    let server = Server::start();
    let logger = fast(server.host())
        .batch(
            Batch::ndjson()
                .max_bytes(4_000)
                .max_delay(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    let pad = "y".repeat(700);
    for i in 0..60 {
        log::info!(logger: logger, "record {i} {pad}");
    }
    flushed(&logger);
    let got = collect(&server, 60);
    let all: Vec<String> = got.iter().flat_map(msgs).collect();
    let want: Vec<String> = (0..60).map(|i| format!("record {i} {pad}")).collect();
    assert_eq!(all, want);
    for r in &got {
        assert!(
            r.body.len() <= 4_000 || msgs(r).len() == 1,
            "{} bytes in one batch of {}",
            r.body.len(),
            msgs(r).len()
        );
    }
    drop_bounded(logger);
}

#[test]
fn several_connections_deliver_every_batched_record_once() {
    let server = Server::start();
    let logger = fast(server.host())
        .connections(3)
        .batch(Batch::json_array().max_records(25))
        .build()
        .unwrap();
    for i in 0..500 {
        log::info!(logger: logger, "record {i}");
    }
    flushed(&logger);
    let stats = logger.stats();
    assert_eq!((stats.sent, stats.failed), (500, 0), "{stats:?}");
    let got = collect(&server, 500);
    let mut all: Vec<String> = got.iter().flat_map(msgs).collect();
    all.sort_by_key(|m| m[7..].parse::<usize>().unwrap());
    assert_eq!(all, numbered(500));
    drop_bounded(logger);
}
