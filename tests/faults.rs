//! Fault tests: a built (not installed) logger against receivers that are down, restart,
//! answer errors, throttle, hang, never read, answer garbage or are slow, all on real sockets
//! on 127.0.0.1.
//!
//! Every wait is bounded; the long bounds (`HANG_LIMIT`, `WAIT`) only say "it did not hang".
//! No test asserts how long something took, except lower bounds on a sleep the logger must
//! make (a `Retry-After`), which hold on any machine however loaded.

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use http_logger::{DEFAULT_QUEUE_CAPACITY, HttpLogger, Stats};
use log::Log as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::logging::{WAIT, drop_bounded, fast, flushed};
use support::{Reply, Request, STANDARD, Server};

/// The most a `Server` script waits for the test to release it.
const HANG_LIMIT: Duration = Duration::from_secs(30);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Logs "record 0" to "record {n-1}" at INFO from another thread and fails if that does not
/// return within `WAIT` (a "did not hang" bound: the calls are not timed).
fn log_numbered_on_a_thread(logger: &Arc<HttpLogger>, n: usize) {
    let (tx, rx) = mpsc::channel();
    let logger = logger.clone();
    thread::spawn(move || {
        for i in 0..n {
            log::info!(logger: logger, "record {i}");
        }
        drop(logger); // before telling, so that the caller holds the only handle again
        let _ = tx.send(());
    });
    rx.recv_timeout(WAIT).expect("the log calls blocked");
}

/// Polls `cond` until it holds or `WAIT` passes.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(ms(2));
    }
}

fn assert_adds_up(s: &Stats) {
    // `queued` is derived, so also check that the outcomes never outnumber the records.
    assert!(s.sent + s.dropped + s.failed <= s.logged, "{s:?}");
    assert_eq!(s.logged, s.sent + s.dropped + s.failed + s.queued, "{s:?}");
}

/// Whether a request is the logger's own loss report.
fn is_report(r: &Request) -> bool {
    r.field("name").as_deref() == Some("http_logger")
}

fn msgs<'a>(reqs: impl IntoIterator<Item = &'a Request>) -> Vec<String> {
    reqs.into_iter()
        .map(|r| r.field("msg").expect("a msg field"))
        .collect()
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("record {i}")).collect()
}

/// A 127.0.0.1 address on which nothing listens: connections to it are refused.
fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap()
}

/// Starts a server on `addr`, retrying while the port is briefly unavailable.
fn restart_on(
    addr: SocketAddr,
    script: impl Fn(usize, &Request) -> Reply + Send + Sync + Clone + 'static,
) -> Server {
    let deadline = Instant::now() + WAIT;
    loop {
        match Server::start_on(addr, script.clone()) {
            Ok(server) => return server,
            Err(e) if Instant::now() < deadline => {
                eprintln!("restart on {addr}: {e}; retrying");
                thread::sleep(ms(50));
            }
            Err(e) => panic!("could not restart the receiver on {addr}: {e}"),
        }
    }
}

/// A script gate: requests that pass through `wait` block until `open` is called (or
/// `HANG_LIMIT` passes, so that a failed test never leaves a thread behind for long).
#[derive(Clone)]
struct Gate {
    rx: crossbeam_channel::Receiver<()>,
    tx: Arc<Mutex<Option<crossbeam_channel::Sender<()>>>>,
}

impl Gate {
    fn new() -> Gate {
        let (tx, rx) = crossbeam_channel::bounded(0);
        Gate {
            rx,
            tx: Arc::new(Mutex::new(Some(tx))),
        }
    }

    fn wait(&self) {
        let _ = self.rx.recv_timeout(HANG_LIMIT); // returns at once when the sender is gone
    }

    fn open(&self) {
        self.tx.lock().unwrap().take();
    }
}

/// A receiver that answers 200, but holds its answer to the first request until the gate opens:
/// the worker is held on the first record while the test fills the queue.
fn held_on_the_first_request() -> (Gate, Server) {
    let gate = Gate::new();
    let held = gate.clone();
    let server = Server::with_script(move |i, _| {
        if i == 0 {
            held.wait();
        }
        Reply::Status(200)
    });
    (gate, server)
}

// 1. The receiver is down the whole time.

#[test]
fn a_receiver_down_the_whole_time_never_blocks_a_caller_and_every_record_is_counted() {
    let addr = refused_addr();
    // Each record is retried twice, after at least 5 ms and 10 ms (backoff jitter keeps at
    // least half of each step), so the worker gets through at most one record per 15 ms: the
    // queue overflows, and the 16,384 records it holds take minutes, far longer than anything
    // below waits. (Those waits are not timed: nothing is sent anyway.)
    let logger = fast(addr.to_string())
        .backoff(ms(10), ms(20))
        .retry_budget(2, Duration::from_secs(5))
        .shutdown_timeout(ms(200))
        .build()
        .unwrap();
    let logger = Arc::new(logger);
    log_numbered_on_a_thread(&logger, 100_000);
    // All 100,000 calls returned while no record could be delivered: none waited on the network.
    let s = logger.stats();
    assert_eq!(s.logged, 100_000, "{s:?}");
    assert_eq!(s.sent, 0, "{s:?}");
    assert!(
        s.dropped > 0,
        "the queue overflowed and dropped records: {s:?}"
    );
    // What is not dropped or failed is in the queue or in the worker's hands.
    assert!(s.queued <= DEFAULT_QUEUE_CAPACITY as u64 + 1, "{s:?}");
    assert_adds_up(&s);

    // A flush cannot finish while the receiver is down; it returns at its timeout.
    assert!(!logger.flush_timeout(ms(100)));
    let s = logger.stats();
    assert_eq!(s.sent, 0, "{s:?}");
    assert!(
        s.queued > 0,
        "records are still waiting when the flush gives up: {s:?}"
    );
    assert_adds_up(&s);

    // Dropping waits the shutdown timeout (200 ms), then gives up the rest: it must return.
    // (What the worker then does, counting every record left as failed, cannot be observed:
    // the stats go with the logger.)
    let logger = Arc::try_unwrap(logger).expect("the logging thread is done");
    drop_bounded(logger);
}

// 2. The receiver restarts after an outage.

#[test]
fn a_receiver_restarting_after_a_two_second_outage_gets_every_record_once_in_order() {
    let first = Server::start();
    let addr = first.addr();
    drop(first); // the port now refuses connections
    let logger = fast(addr.to_string())
        .backoff(ms(20), ms(200))
        .retry_budget(1_000, Duration::from_secs(20))
        .build()
        .unwrap();
    for i in 0..50 {
        log::info!(logger: logger, "record {i}");
    }
    thread::sleep(Duration::from_secs(2)); // the outage
    let server = restart_on(addr, |_, _| Reply::Status(200));
    flushed(&logger);
    // flush returned after the last delivery, so every request is already handed over.
    let got = server.recv_n(50, WAIT);
    assert_eq!(msgs(&got), numbered(50));
    assert!(server.try_drain().is_empty(), "a record arrived twice");
    let s = logger.stats();
    assert_eq!(
        (s.logged, s.sent, s.failed, s.dropped, s.queued),
        (50, 50, 0, 0, 0),
        "{s:?}"
    );
    assert!(
        s.retried > 0,
        "the first record was retried during the outage: {s:?}"
    );
}

#[test]
fn a_restart_that_breaks_the_kept_alive_connection_loses_and_repeats_nothing() {
    let first = Server::start();
    let addr = first.addr();
    let logger = fast(addr.to_string())
        .backoff(ms(20), ms(100))
        .retry_budget(1_000, Duration::from_secs(20))
        .build()
        .unwrap();
    log::info!(logger: logger, "before");
    flushed(&logger);
    assert_eq!(msgs(&first.recv_n(1, WAIT)), ["before"]);
    drop(first); // closes the logger's pooled connection and the port
    for i in 0..20 {
        log::info!(logger: logger, "record {i}");
    }
    thread::sleep(ms(300));
    let server = restart_on(addr, |_, _| Reply::Status(200));
    flushed(&logger);
    assert_eq!(msgs(&server.recv_n(20, WAIT)), numbered(20));
    assert!(server.try_drain().is_empty(), "a record arrived twice");
    let s = logger.stats();
    assert_eq!(
        (s.logged, s.sent, s.failed, s.dropped),
        (21, 21, 0, 0),
        "{s:?}"
    );
}

// 3. and 4. Statuses that are retried and statuses that are not.

#[test]
fn two_500s_then_200_deliver_each_record_once() {
    let server = Server::with_script(|i, _| Reply::Status(if i < 2 { 500 } else { 200 }));
    let logger = fast(server.host()).build().unwrap();
    for i in 0..5 {
        log::info!(logger: logger, "record {i}");
    }
    flushed(&logger);
    let got = server.recv_n(7, WAIT);
    let mut want = vec!["record 0".to_owned(); 2];
    want.extend(numbered(5));
    assert_eq!(
        msgs(&got),
        want,
        "the first record is tried 3 times, the others once"
    );
    assert!(server.try_drain().is_empty());
    let s = logger.stats();
    assert_eq!(
        (s.logged, s.sent, s.failed, s.retried, s.queued),
        (5, 5, 0, 2, 0),
        "{s:?}"
    );
}

#[test]
fn a_400_fails_the_record_at_once_and_later_records_are_delivered() {
    let server = Server::with_script(|i, _| Reply::Status(if i == 0 { 400 } else { 200 }));
    let logger = fast(server.host()).build().unwrap();
    for i in 0..5 {
        log::info!(logger: logger, "record {i}");
    }
    flushed(&logger);
    // Five records and, after the first delivery, one loss report.
    let got = server.recv_n(6, WAIT);
    assert!(server.try_drain().is_empty());
    let (reports, records): (Vec<&Request>, Vec<&Request>) = got.iter().partition(|r| is_report(r));
    assert_eq!(
        msgs(records),
        numbered(5),
        "the rejected record was not retried"
    );
    assert_eq!(reports.len(), 1);
    let s = logger.stats();
    assert_eq!(
        (s.logged, s.sent, s.failed, s.retried, s.queued),
        (5, 4, 1, 0, 0),
        "{s:?}"
    );
}

// 5. Retry-After.

/// Answers the first request with `status` and `Retry-After: 1`, then 200, and checks from the
/// receiver's arrival instants that the retry waited.
fn retry_after_is_honoured(status: u16) {
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = arrivals.clone();
    let server = Server::with_script(move |i, _| {
        seen.lock().unwrap().push(Instant::now());
        if i == 0 {
            Reply::StatusWithHeaders(status, vec![("Retry-After".into(), "1".into())])
        } else {
            Reply::Status(200)
        }
    });
    // Without Retry-After, the retry would come after 2.5 to 5 ms.
    let logger = fast(server.host()).build().unwrap();
    log::info!(logger: logger, "throttled");
    flushed(&logger);
    let got = server.recv_n(2, WAIT);
    assert_eq!(msgs(&got), ["throttled", "throttled"]);
    let arrivals = arrivals.lock().unwrap();
    // The worker starts its wait after reading the answer, which the script chose after
    // recording the first arrival; the retry is read after the wait ends. So the gap between
    // the two arrivals (one monotonic clock) is a lower bound on the wait.
    let gap = arrivals[1] - arrivals[0];
    assert!(
        gap >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured: {gap:?}"
    );
    let s = logger.stats();
    assert_eq!((s.sent, s.failed, s.retried), (1, 0, 1), "{s:?}");
}

#[test]
fn a_429_with_retry_after_is_retried_after_the_wait_it_asks_for() {
    retry_after_is_honoured(429);
}

#[test]
fn a_503_with_retry_after_is_retried_after_the_wait_it_asks_for() {
    retry_after_is_honoured(503);
}

#[test]
fn a_retry_after_beyond_the_retry_budget_fails_the_record_without_waiting_for_it() {
    let server = Server::with_script(|i, _| {
        if i == 0 {
            Reply::StatusWithHeaders(503, vec![("Retry-After".into(), "3600".into())])
        } else {
            Reply::Status(200)
        }
    });
    let logger = fast(server.host()).build().unwrap();
    log::info!(logger: logger, "record 0");
    log::info!(logger: logger, "record 1");
    // Waiting the hour would make this flush time out.
    flushed(&logger);
    let got = server.recv_n(3, WAIT);
    let records: Vec<&Request> = got.iter().filter(|r| !is_report(r)).collect();
    assert_eq!(msgs(records), numbered(2));
    let s = logger.stats();
    assert_eq!((s.sent, s.failed, s.retried), (1, 1, 0), "{s:?}");
}

#[test]
fn an_absurd_retry_after_late_in_a_retry_fails_the_record_and_delivery_goes_on() {
    // u64::MAX seconds, after a first retry that took a second: the worker must neither wait
    // for it nor stop working (adding it to the time spent overflows a Duration).
    let server = Server::with_script(|i, _| {
        let wait = match i {
            0 => "1",
            1 => "18446744073709551615",
            _ => return Reply::Status(200),
        };
        Reply::StatusWithHeaders(503, vec![("Retry-After".into(), wait.into())])
    });
    let logger = fast(server.host()).build().unwrap();
    log::info!(logger: logger, "record 0");
    log::info!(logger: logger, "record 1");
    flushed(&logger);
    let got = server.recv_n(4, WAIT);
    let records: Vec<&Request> = got.iter().filter(|r| !is_report(r)).collect();
    assert_eq!(msgs(records), ["record 0", "record 0", "record 1"]);
    let s = logger.stats();
    assert_eq!((s.sent, s.failed, s.retried), (1, 1, 1), "{s:?}");
}

// 6. Receivers that never answer, never read, or answer garbage.

#[test]
fn a_receiver_that_never_answers_costs_a_timeout_per_attempt_then_the_record_fails() {
    let server = Server::with_script(|_, _| Reply::Hang);
    let logger = fast(server.host())
        .timeout(ms(500))
        .retry_budget(1, Duration::from_secs(10))
        .shutdown_timeout(ms(300))
        .build()
        .unwrap();
    log::info!(logger: logger, "record 0");
    // Two attempts of at most 500 ms each: the flush finishes, with the record failed.
    flushed(&logger);
    let s = logger.stats();
    assert_eq!(
        (s.logged, s.sent, s.failed, s.retried, s.queued),
        (1, 0, 1, 1, 0),
        "{s:?}"
    );
    assert_eq!(msgs(&server.recv_n(2, WAIT)), ["record 0", "record 0"]);
    // A record in the hands of a hung request when the logger is dropped: the drop returns.
    log::info!(logger: logger, "record 1");
    wait_until("the second record to reach the receiver", || {
        server.requests() >= 3
    });
    drop_bounded(logger);
}

#[test]
fn a_receiver_that_accepts_but_never_reads_cannot_hang_the_logger() {
    // A listener with a tiny receive buffer (accepted sockets inherit it), so that a large
    // request fills both socket buffers and the worker's write blocks.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    socket.listen(16).unwrap();
    let listener: TcpListener = socket.into();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new(); // never read
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => thread::sleep(ms(5)),
                }
            }
            // Connections still waiting in the backlog were established too.
            while let Ok((stream, _)) = listener.accept() {
                held.push(stream);
            }
            held.len()
        })
    };

    let logger = fast(addr.to_string())
        .timeout(ms(500))
        .retry_budget(1, Duration::from_secs(10))
        .shutdown_timeout(ms(300))
        .build()
        .unwrap();
    // 3 MiB of '&' is a 9 MiB form body: more than the socket buffers hold.
    let big = "&".repeat(3 << 20);
    log::info!(logger: logger, "{big}");
    log::info!(logger: logger, "small");
    flushed(&logger);
    let s = logger.stats();
    assert_eq!(
        (s.logged, s.sent, s.failed, s.retried, s.queued),
        (2, 0, 2, 2, 0),
        "{s:?}"
    );
    log::info!(logger: logger, "{big}");
    drop_bounded(logger);

    stop.store(true, Ordering::SeqCst);
    let accepted = acceptor.join().unwrap();
    assert!(accepted >= 4, "every attempt connected: {accepted}");
}

#[test]
fn a_receiver_that_answers_garbage_gets_one_resend_then_the_record_fails() {
    let server = Server::with_script(|_, _| Reply::Garbage);
    let logger = fast(server.host())
        .retry_budget(2, Duration::from_secs(10))
        .build()
        .unwrap();
    log::info!(logger: logger, "record 0");
    log::info!(logger: logger, "record 1");
    flushed(&logger);
    let s = logger.stats();
    assert_eq!(
        (s.logged, s.sent, s.failed, s.queued),
        (2, 0, 2, 0),
        "{s:?}"
    );
    // An answer that is not HTTP is sent once more on a new connection, then rejected,
    // whatever the retry budget: each record was tried twice.
    assert_eq!(s.retried, 2, "{s:?}");
    let got = server.recv_n(4, WAIT);
    assert_eq!(msgs(&got), ["record 0", "record 0", "record 1", "record 1"]);
    assert!(server.recv(ms(200)).is_none(), "no third attempt");
    assert!(
        logger.last_error().is_some_and(|e| e.contains("not HTTP")),
        "{:?}",
        logger.last_error()
    );
    drop_bounded(logger);
}

// 7. A slow receiver does not slow the callers.

#[test]
fn a_slow_receiver_does_not_slow_the_callers() {
    let gate = Gate::new();
    let held = gate.clone();
    let server = Server::with_script(move |i, _| {
        if i == 0 {
            held.wait(); // the first answer waits until the test has made all its calls
        }
        if i < 20 {
            Reply::Delay(ms(50), 200)
        } else {
            Reply::Status(200)
        }
    });
    let logger = fast(server.host())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let logger = Arc::new(logger);
    log_numbered_on_a_thread(&logger, 1_000);
    // Every call returned while the receiver had not answered a single request.
    let s = logger.stats();
    assert_eq!(
        (s.logged, s.sent, s.dropped, s.failed, s.queued),
        (1_000, 0, 0, 0, 1_000),
        "{s:?}"
    );
    assert!(server.requests() <= 1, "{}", server.requests());
    gate.open();
    flushed(&logger);
    assert_eq!(msgs(&server.recv_n(1_000, WAIT)), numbered(1_000));
    let s = logger.stats();
    assert_eq!(
        (s.sent, s.failed, s.retried, s.queued),
        (1_000, 0, 0, 0),
        "{s:?}"
    );
}

// 8. The loss report.

#[test]
fn after_failures_the_next_delivery_is_followed_by_one_loss_report() {
    let server = Server::with_script(|i, _| Reply::Status(if i < 3 { 400 } else { 200 }));
    let logger = fast(server.host()).build().unwrap();
    for i in 0..6 {
        log::info!(logger: logger, "record {i}");
    }
    flushed(&logger);
    let got = server.recv_n(7, WAIT);
    assert!(server.try_drain().is_empty(), "one report only");
    let order: Vec<String> = got
        .iter()
        .map(|r| {
            if is_report(r) {
                "REPORT".to_owned()
            } else {
                r.field("msg").unwrap()
            }
        })
        .collect();
    assert_eq!(
        order,
        [
            "record 0", "record 1", "record 2", "record 3", "REPORT", "record 4", "record 5"
        ]
    );
    let report = &got[4];
    assert_eq!(report.field("levelname").as_deref(), Some("WARNING"));
    assert_eq!(report.field("levelno").as_deref(), Some("30"));
    let msg = report.field("msg").unwrap();
    assert!(msg.contains("lost 3 records"), "{msg}");
    assert!(msg.contains("3 failed"), "{msg}");
    assert!(msg.contains("receiver answered 400"), "why: {msg}");
    let s = logger.stats();
    assert_eq!(
        (s.logged, s.sent, s.failed, s.dropped, s.queued),
        (6, 3, 3, 0, 0),
        "the report is not counted: {s:?}"
    );
}

#[test]
fn after_drops_on_a_full_queue_the_next_delivery_is_followed_by_one_loss_report() {
    let (gate, server) = held_on_the_first_request();
    let logger = fast(server.host())
        .queue_capacity(1)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    log::info!(logger: logger, "A");
    // The worker took A off the queue and the receiver holds its answer.
    wait_until("the first request", || server.requests() == 1);
    log::info!(logger: logger, "B"); // fills the queue
    for c in ["C", "D", "E"] {
        log::info!(logger: logger, "{c}"); // dropped
    }
    let s = logger.stats();
    assert_eq!((s.logged, s.dropped, s.queued), (5, 3, 2), "{s:?}");
    gate.open();
    flushed(&logger);
    let got = server.recv_n(3, WAIT);
    assert!(server.try_drain().is_empty(), "one report only");
    assert_eq!(msgs(&got[..1]), ["A"]);
    assert!(is_report(&got[1]), "{:?}", got[1].field("msg"));
    assert_eq!(msgs(&got[2..]), ["B"]);
    let msg = got[1].field("msg").unwrap();
    assert!(msg.contains("lost 3 records"), "{msg}");
    assert!(msg.contains("3 dropped"), "{msg}");
    assert!(msg.contains("queue full"), "why: {msg}");
    let s = logger.stats();
    assert_eq!(
        (s.logged, s.sent, s.dropped, s.failed, s.queued),
        (5, 2, 3, 0, 0),
        "{s:?}"
    );
}

// 9. Any text arrives exactly.

fn nasty_char() -> impl Strategy<Value = char> {
    prop_oneof![
        2 => any::<char>(),
        1 => prop::sample::select(vec![
            '\r', '\n', '\0', '&', '=', '%', '+', ' ', '?', '#', ';', '\t', '\u{7f}', 'é', '世',
            '\u{feff}', '\u{10ffff}', '\u{1F980}', '\u{1F600}',
        ]),
    ]
}

fn nasty_string(max_chars: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(nasty_char(), 0..max_chars).prop_map(String::from_iter)
}

/// The key a key-value is sent under.
fn wire_key(key: &str) -> String {
    if STANDARD.contains(&key) {
        format!("kv_{key}")
    } else {
        key.to_owned()
    }
}

#[test]
fn random_unicode_messages_and_key_values_decode_exactly_at_the_receiver() {
    let server = Server::start();
    let logger = fast(server.host()).build().unwrap();
    let strategy = (
        nasty_string(80),
        prop::collection::vec((nasty_string(12), nasty_string(40)), 0..5),
    );
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |(msg, kvs)| {
            logger.log(
                &log::Record::builder()
                    .level(log::Level::Info)
                    .target("app")
                    .args(format_args!("{msg}"))
                    .key_values(&kvs)
                    .build(),
            );
            prop_assert!(logger.flush_timeout(WAIT), "flush timed out");
            let req = server.recv(WAIT).expect("a request");
            prop_assert_eq!(&req.method, "POST");
            let fields = req.fields();
            let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            prop_assert_eq!(&keys[..STANDARD.len()], &STANDARD[..]);
            let got = req.field("msg");
            prop_assert_eq!(got.as_deref(), Some(msg.as_str()));
            let want: Vec<(String, String)> =
                kvs.iter().map(|(k, v)| (wire_key(k), v.clone())).collect();
            prop_assert_eq!(&fields[STANDARD.len()..], &want[..]);
            Ok(())
        })
        .unwrap();
    let s = logger.stats();
    assert_eq!(
        (s.sent, s.failed, s.dropped, s.truncated),
        (s.logged, 0, 0, 0),
        "{s:?}"
    );
}

#[test]
fn a_one_mebibyte_message_of_special_characters_arrives_exactly() {
    let piece =
        "h\u{e9}llo \u{4e16}\u{754c} & a=b %41 %%2 +plus ~/\"q\" \r\n\t\0 \u{1F980}\u{feff}?#;";
    let mut big = String::with_capacity((1 << 20) + piece.len());
    while big.len() < 1 << 20 {
        big.push_str(piece);
    }
    let server = Server::start();
    let logger = fast(server.host()).build().unwrap();
    log::info!(logger: logger, note = big.as_str(); "{big}");
    flushed(&logger);
    let req = server.recv(WAIT).expect("a request");
    assert_eq!(req.method, "POST");
    assert!(req.field("msg").unwrap() == big, "the message differs");
    assert!(req.field("note").unwrap() == big, "the key-value differs");
    let s = logger.stats();
    assert_eq!((s.sent, s.truncated), (1, 0), "{s:?}");
}

// 10. Loop protection under faults.

#[test]
fn own_stack_records_are_never_sent_or_counted_while_the_logger_retries() {
    let healthy = Arc::new(AtomicBool::new(false));
    let ok = healthy.clone();
    let server = Server::with_script(move |_, _| {
        Reply::Status(if ok.load(Ordering::SeqCst) { 200 } else { 500 })
    });
    let logger = fast(server.host())
        .level(log::LevelFilter::Trace)
        .retry_budget(100_000, Duration::from_secs(20))
        .build()
        .unwrap();
    log::info!(logger: logger, "app record");
    wait_until("the logger to retry", || server.requests() >= 2);
    let targets = [
        "ureq_proto",
        "ureq_proto::x",
        "rustls",
        "rustls::conn",
        "http_logger",
    ];
    thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for target in targets {
                    log::error!(logger: logger, target: target, "own {target}");
                    log::warn!(logger: logger, target: target, user = "x"; "own {target}");
                    log::info!(logger: logger, target: target, "own {target}");
                    log::trace!(logger: logger, target: target, "own {target}");
                    let meta = log::Metadata::builder()
                        .level(log::Level::Error)
                        .target(target)
                        .build();
                    assert!(!logger.enabled(&meta), "{target}");
                }
            });
        }
    });
    let s = logger.stats();
    assert_eq!(
        (s.logged, s.sent, s.dropped, s.failed),
        (1, 0, 0, 0),
        "{s:?}"
    );
    assert!(s.retried >= 1, "{s:?}");
    healthy.store(true, Ordering::SeqCst);
    flushed(&logger);
    let got = server.try_drain();
    assert!(got.len() >= 3, "{}", got.len());
    for r in &got {
        assert_eq!(r.field("msg").as_deref(), Some("app record"));
        assert_eq!(r.field("name").as_deref(), Some("faults"));
    }
    let s = logger.stats();
    assert_eq!(
        (s.logged, s.sent, s.dropped, s.failed, s.queued),
        (1, 1, 0, 0, 0),
        "{s:?}"
    );
}

#[test]
fn last_error_names_the_problem_while_a_record_is_retried() {
    let addr = refused_addr(); // the listener is dropped: nothing listens there
    let logger = fast(addr.to_string())
        .retry_budget(100_000, Duration::from_secs(60))
        .shutdown_timeout(ms(100))
        .print_losses(false)
        .build()
        .unwrap();
    assert_eq!(logger.last_error(), None);
    log::info!(logger: logger, "to a receiver that is down");
    wait_until("last_error while retrying", || {
        logger
            .last_error()
            .is_some_and(|e| e.contains("connection refused") && e.ends_with("(retrying)"))
    });
    assert_eq!(logger.stats().queued, 1, "still being retried");
    drop_bounded(logger);
}

#[test]
fn an_error_finds_room_in_a_queue_full_of_debug_records() {
    let (gate, server) = held_on_the_first_request();
    let logger = fast(server.host())
        .level(log::LevelFilter::Debug)
        .queue_capacity(8)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    log::info!(logger: logger, "first");
    wait_until("the first record to reach the receiver", || {
        server.requests() >= 1
    });
    for i in 0..100 {
        log::debug!(logger: logger, "chatter {i}");
    }
    let chatter_dropped = logger.stats().dropped;
    log::error!(logger: logger, "the error");
    assert_eq!(
        logger.stats().dropped,
        chatter_dropped,
        "the error was not dropped"
    );
    gate.open();
    flushed(&logger);
    let s = logger.stats();
    assert_adds_up(&s);
    // The worker holds one record and may have taken one more; the queue holds 6 of chatter.
    assert!(s.dropped >= 100 - 8, "{s:?}");
    // The records, and the one loss report the first delivery is followed by.
    let got = server.recv_n(s.sent as usize + 1, WAIT);
    let got = msgs(got.iter().filter(|r| !is_report(r)));
    assert_eq!(got.first().map(String::as_str), Some("first"));
    assert_eq!(got.last().map(String::as_str), Some("the error"), "{got:?}");
    assert!(got.len() <= 1 + 1 + 6 + 1, "{got:?}");
    drop_bounded(logger);
}

#[test]
fn the_queue_holds_at_most_queue_max_bytes_of_records() {
    let (gate, server) = held_on_the_first_request();
    let logger = fast(server.host())
        .queue_max_bytes(8 << 20)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mebibyte = "x".repeat(1 << 20);
    for _ in 0..40 {
        log::info!(logger: logger, "{mebibyte}");
    }
    let s = logger.stats();
    // 8 MiB hold 7 records of 1 MiB and their bookkeeping: the other 33 are dropped.
    assert!(s.dropped >= 40 - 8, "{s:?}");
    assert!(s.dropped < 40, "{s:?}");
    gate.open();
    flushed(&logger);
    let s = logger.stats();
    assert_adds_up(&s);
    assert_eq!(s.sent + s.dropped, 40, "{s:?}");
    // Room again once delivered: the bytes were given back.
    log::info!(logger: logger, "{mebibyte}");
    flushed(&logger);
    assert_eq!(logger.stats().sent, s.sent + 1);
    drop_bounded(logger);
}
