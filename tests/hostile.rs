//! Receivers that answer what no request asked for: twice, late, with junk, with a 101, with a
//! head that never ends, or not at all. Real sockets on 127.0.0.1; every wait is bounded.
//!
//! The rule under test: a record counted `sent` reached the receiver, and no record reaches it
//! more than twice. A kept-alive connection that the receiver wrote to since its last answer is
//! not used again; an answer that is not HTTP we can use gets one resend on a new connection,
//! then the record is rejected.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use http_logger::Stats;
use support::logging::{WAIT, drop_bounded, fast, flushed};
use support::{Reply, Request, Server};

/// How late the unasked bytes come.
const LATE: Duration = Duration::from_millis(50);

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/// An answer, then `later` bytes `LATE` afterwards, unasked; the connection stays open.
fn then_later(now: &[u8], later: &[u8]) -> Reply {
    Reply::Raw {
        now: now.to_vec(),
        later: Some((LATE, later.to_vec())),
        close: false,
    }
}

/// How many times each record arrived, by message.
fn arrivals(requests: &[Request]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in requests {
        *seen.entry(r.field("msg").unwrap_or_default()).or_default() += 1;
    }
    seen
}

/// Collects what arrives until `n` distinct records have (or `WAIT` passed), then what else
/// arrives within a short while.
fn collect(server: &Server, n: usize) -> Vec<Request> {
    let deadline = std::time::Instant::now() + WAIT;
    let mut got = Vec::new();
    while arrivals(&got).len() < n && std::time::Instant::now() < deadline {
        if let Some(r) = server.recv(Duration::from_millis(100)) {
            got.push(r);
        }
    }
    while let Some(r) = server.recv(Duration::from_millis(300)) {
        got.push(r);
    }
    got
}

fn assert_adds_up(s: &Stats) {
    assert_eq!(s.logged, s.sent + s.dropped + s.failed + s.queued, "{s:?}");
}

/// Logs `n` records at once to a receiver answering each with `reply()`, flushes, drops the
/// logger, and returns its stats, its last error, and how many times each record arrived.
fn all_at_once(
    reply: impl Fn() -> Reply + Send + Sync + 'static,
    n: usize,
) -> (Stats, Option<String>, HashMap<String, usize>) {
    let server = Server::with_script(move |_, _| reply());
    let logger = fast(server.host()).build().unwrap();
    for i in 0..n {
        log::info!(logger: logger, "record {i}");
    }
    flushed(&logger);
    let stats = logger.stats();
    assert_adds_up(&stats);
    let last_error = logger.last_error();
    drop_bounded(logger);
    (stats, last_error, arrivals(&collect(&server, n)))
}

/// Logs `n` records at once: each is sent while the unasked bytes of the one before may still
/// be on their way. Every record must be sent, and reach the receiver once or twice.
fn flowing(reply: impl Fn() -> Reply + Send + Sync + 'static, n: usize) {
    let (stats, last_error, seen) = all_at_once(reply, n);
    assert_eq!(stats.sent, n as u64, "{stats:?} {last_error:?}");
    for i in 0..n {
        let times = seen.get(&format!("record {i}")).copied().unwrap_or(0);
        assert!(
            (1..=2).contains(&times),
            "record {i} arrived {times} times: {seen:?}"
        );
    }
}

/// Logs `n` records one by one, each after the receiver wrote its unasked bytes on the idle
/// connection: every record must be sent, and reach the receiver exactly once.
fn idle(reply: impl Fn() -> Reply + Send + Sync + 'static, n: usize) {
    let server = Server::with_script(move |_, _| reply());
    let logger = fast(server.host()).build().unwrap();
    for i in 0..n {
        log::info!(logger: logger, "record {i}");
        flushed(&logger);
        assert!(
            server.recv_late(WAIT).is_some(),
            "the receiver wrote its late bytes"
        );
    }
    let stats = logger.stats();
    assert_adds_up(&stats);
    assert_eq!(stats.sent, n as u64, "{stats:?} {:?}", logger.last_error());
    assert_eq!(stats.retried, 0, "{stats:?}");
    drop_bounded(logger);
    let seen = arrivals(&collect(&server, n));
    for i in 0..n {
        assert_eq!(
            seen.get(&format!("record {i}")),
            Some(&1),
            "record {i}: {seen:?}"
        );
    }
    assert_eq!(seen.len(), n, "{seen:?}");
}

/// Logs `n` records to a receiver whose every answer is unusable: each is tried on a new
/// connection once more, then counted failed; none arrives more than twice.
fn unusable(reply: impl Fn() -> Reply + Send + Sync + 'static, n: usize, why: &str) {
    let (stats, last_error, seen) = all_at_once(reply, n);
    assert_eq!((stats.sent, stats.failed), (0, n as u64), "{stats:?}");
    assert_eq!(stats.retried, n as u64, "one resend each: {stats:?}");
    let reason = last_error.unwrap_or_default();
    assert!(reason.contains(why), "{reason}");
    for i in 0..n {
        assert_eq!(
            seen.get(&format!("record {i}")),
            Some(&2),
            "record {i}: {seen:?}"
        );
    }
}

#[test]
fn a_second_answer_to_each_request_is_never_taken_for_the_next_records() {
    flowing(|| then_later(OK, OK), 20);
}

#[test]
fn a_second_answer_on_the_idle_connection_is_not_read_as_the_next_answer() {
    idle(|| then_later(OK, OK), 3);
}

#[test]
fn junk_after_an_answer_costs_at_most_one_resend() {
    flowing(|| then_later(OK, b"\x00\xffjunk\r\n\r\n"), 20);
    idle(|| then_later(OK, b"\x00\xffjunk\r\n\r\n"), 3);
}

#[test]
fn a_204_whose_body_comes_late_delivers_each_record_once_or_twice() {
    let no_content = b"HTTP/1.1 204 No Content\r\n\r\n";
    flowing(|| then_later(no_content, b"a late body"), 20);
    idle(|| then_later(no_content, b"a late body"), 3);
}

#[test]
fn an_unsolicited_400_and_close_on_the_idle_connection_fails_no_record() {
    let server = Server::with_script(|_, _| Reply::Raw {
        now: OK.to_vec(),
        later: Some((
            LATE,
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec(),
        )),
        close: true,
    });
    let logger = fast(server.host()).build().unwrap();
    for i in 0..3 {
        log::info!(logger: logger, "record {i}");
        flushed(&logger);
        assert!(server.recv_late(WAIT).is_some());
    }
    let stats = logger.stats();
    assert_eq!(
        (stats.sent, stats.failed, stats.retried),
        (3, 0, 0),
        "{stats:?}"
    );
    drop_bounded(logger);
    let seen = arrivals(&collect(&server, 3));
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
}

#[test]
fn a_101_answer_is_resent_once_then_the_record_fails() {
    let switching =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    unusable(
        || Reply::Raw {
            now: switching.to_vec(),
            later: None,
            close: false,
        },
        3,
        "101",
    );
}

#[test]
fn a_response_head_over_64_kib_is_resent_once_then_the_record_fails() {
    let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
    // Fewer headers than any parser's cap, each long: the head's size is what is refused.
    let padding = format!("X-Padding: {}\r\n", "a".repeat(2000));
    while head.len() < 70 * 1024 {
        head.extend_from_slice(padding.as_bytes());
    }
    unusable(
        move || Reply::Raw {
            now: head.clone(),
            later: None,
            close: false,
        },
        3,
        "64 KiB",
    );
}

#[test]
fn a_receiver_that_reads_the_request_and_closes_gets_each_record_twice_at_most() {
    unusable(|| Reply::Close, 3, "closed before an answer");
}

#[test]
fn a_kept_alive_connection_then_read_and_close_gets_a_record_twice_at_most() {
    // The first answer keeps the connection; from then on every request is read, then the
    // connection closed: the transport's resend of a stale connection and the resend of an
    // unusable answer must not add up.
    let server = Server::with_script(|i, _| {
        if i == 0 {
            Reply::Status(200)
        } else {
            Reply::Close
        }
    });
    let logger = fast(server.host()).build().unwrap();
    log::info!(logger: logger, "record 0");
    flushed(&logger);
    log::info!(logger: logger, "record 1");
    flushed(&logger);
    let stats = logger.stats();
    assert_eq!((stats.sent, stats.failed), (1, 1), "{stats:?}");
    drop_bounded(logger);
    let seen = arrivals(&collect(&server, 2));
    assert_eq!(seen.get("record 1"), Some(&2), "{seen:?}");
}

#[test]
fn over_tls_a_receiver_that_reads_and_closes_gets_each_record_twice_at_most() {
    let ca = support::certs::Ca::new("hostile CA");
    let leaf = ca.server(&["127.0.0.1"]);
    let server = Server::with_script_tls(support::certs::server_config(&leaf), |_, _| Reply::Close);
    let logger = fast(server.host())
        .secure(true)
        .add_root_certificate(ca.pem())
        .build()
        .unwrap();
    for i in 0..3 {
        log::info!(logger: logger, "record {i}");
    }
    flushed(&logger);
    let stats = logger.stats();
    assert_eq!(
        (stats.sent, stats.failed, stats.retried),
        (0, 3, 3),
        "{stats:?}"
    );
    drop_bounded(logger);
    let seen = arrivals(&collect(&server, 3));
    for i in 0..3 {
        assert_eq!(
            seen.get(&format!("record {i}")),
            Some(&2),
            "record {i}: {seen:?}"
        );
    }
}

#[test]
fn over_tls_an_answer_trickled_a_byte_at_a_time_cannot_outlast_the_timeout() {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    let ca = support::certs::Ca::new("trickle CA");
    let config = support::certs::server_config(&ca.server(&["127.0.0.1"]));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let mut tls = rustls::ServerConnection::new(config).unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).unwrap();
        }
        // The request, then the answer's TLS bytes one every 100 ms: a whole TLS record takes
        // seconds, far past the logger's 1 s timeout.
        let mut buf = [0u8; 4096];
        while tls.reader().read(&mut buf).is_err() {
            tls.complete_io(&mut tcp).unwrap();
        }
        tls.writer()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        let mut wire = Vec::new();
        while tls.wants_write() {
            tls.write_tls(&mut wire).unwrap();
        }
        for byte in wire {
            if stop_rx.recv_timeout(Duration::from_millis(100)).is_ok()
                || tcp.write_all(&[byte]).is_err()
            {
                return;
            }
        }
    });
    let logger = fast(host)
        .secure(true)
        .add_root_certificate(ca.pem())
        .timeout(Duration::from_secs(1))
        .retry_budget(0, Duration::ZERO)
        .build()
        .unwrap();
    log::info!(logger: logger, "trickled");
    flushed(&logger);
    let stats = logger.stats();
    assert_eq!((stats.sent, stats.failed), (0, 1), "{stats:?}");
    let reason = logger.last_error().unwrap_or_default();
    assert!(reason.contains("timeout"), "{reason}");
    drop_bounded(logger);
    let _ = stop_tx.send(());
    server.join().unwrap();
}
