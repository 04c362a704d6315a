//! `HttpLayer` against a real receiver on 127.0.0.1: the fields and their order, span fields and
//! `span`, nested spans, an error chain, a clash with a standard key, the filters, the crate's
//! own events, and events from many tokio tasks. Each test runs its subscriber with
//! `with_default` (nothing global); dropping it delivers what the layer holds.

mod support;

use std::time::Duration;

use http_logger::HttpLogger;
use support::{STANDARD, Server, get, keys};
use tracing_subscriber::prelude::*;

const WAIT: Duration = Duration::from_secs(10);

/// Runs `f` under a subscriber with an `HttpLayer` sending to `server`, then drops it (which
/// delivers what is queued) and returns the decoded fields of the `n` records received.
fn sent(server: &Server, n: usize, f: impl FnOnce()) -> Vec<Vec<(String, String)>> {
    let layer = HttpLogger::builder(server.host(), "/")
        .level(log::LevelFilter::Debug)
        .build_layer()
        .expect("a layer");
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, f);
    let got = server.recv_n(n, WAIT);
    assert_eq!(got.len(), n, "records received");
    assert!(
        server.recv(Duration::from_millis(200)).is_none(),
        "nothing more"
    );
    got.iter().map(|r| r.fields()).collect()
}

#[test]
fn an_event_sends_the_wire_fields_in_order_then_its_own_then_its_spans() {
    let server = Server::start();
    let got = sent(&server, 1, || {
        let outer = tracing::info_span!("request", user = "ann", id = 7);
        let _outer = outer.enter();
        let inner = tracing::debug_span!("db", table = "orders", id = 8);
        let _inner = inner.enter();
        tracing::warn!(
            tries = 3,
            query = "select 1",
            "slow answer after {} ms",
            250
        );
    });
    let fields = &got[0];
    let names = keys(fields);
    assert_eq!(&names[..STANDARD.len()], STANDARD);
    // Its own fields, then the spans' from the root (the innermost `id` wins), then `span`.
    assert_eq!(
        &names[STANDARD.len()..],
        ["tries", "query", "user", "table", "id", "span"]
    );
    assert_eq!(get(fields, "name"), "tracing");
    assert_eq!(get(fields, "msg"), "slow answer after 250 ms");
    assert_eq!(get(fields, "levelname"), "WARNING");
    assert_eq!(get(fields, "levelno"), "30");
    assert_eq!(get(fields, "filename"), "tracing.rs");
    assert_eq!(get(fields, "module"), "tracing");
    assert_ne!(get(fields, "lineno"), "0");
    assert_eq!(get(fields, "tries"), "3");
    assert_eq!(get(fields, "query"), "select 1", "strings unquoted");
    assert_eq!(get(fields, "user"), "ann");
    assert_eq!(get(fields, "id"), "8", "the innermost span wins");
    assert_eq!(get(fields, "span"), "request:db");
    assert_eq!(get(fields, "exc_info"), "None");
}

#[test]
fn an_error_field_fills_the_chain_exc_info_and_exc_text() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("could not save profile of ann")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let server = Server::start();
    let got = sent(&server, 1, || {
        let e = Outer(std::io::Error::other("database is read-only"));
        tracing::error!(error = &e as &dyn std::error::Error, "request failed");
    });
    let fields = &got[0];
    assert_eq!(
        get(fields, "msg"),
        "request failed: could not save profile of ann: database is read-only"
    );
    assert_eq!(
        get(fields, "exc_text"),
        "could not save profile of ann\n\nCaused by:\n    0: database is read-only"
    );
    assert!(get(fields, "exc_info").starts_with("Outer("), "{fields:?}");
    assert_eq!(
        get(fields, "error"),
        "could not save profile of ann: database is read-only"
    );
}

#[test]
fn a_field_named_as_a_standard_key_never_overwrites_it() {
    let server = Server::start();
    let got = sent(&server, 1, || {
        let _span = tracing::info_span!("job", levelname = "span's").entered();
        tracing::info!(name = "event's", "hi");
    });
    let fields = &got[0];
    assert_eq!(get(fields, "name"), "tracing");
    assert_eq!(get(fields, "kv_name"), "event's");
    assert_eq!(get(fields, "levelname"), "INFO");
    assert_eq!(get(fields, "kv_levelname"), "span's");
}

#[test]
fn the_level_filters_and_the_crates_own_events_are_respected() {
    let server = Server::start();
    let layer = HttpLogger::builder(server.host(), "/")
        .filter("info,noisy=error")
        .build_layer()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::debug!("below the level");
        tracing::warn!(target: "noisy", "filtered by its directive");
        tracing::info!(target: "ureq_proto::client", "the HTTP stack's own");
        tracing::info!(target: "http_logger", "ours");
        let _span = tracing::info_span!("not sent as a record").entered();
        tracing::info!("kept");
    });
    let got = server.recv_n(5, Duration::from_millis(500));
    let msgs: Vec<String> = got.iter().map(|r| r.field("msg").unwrap()).collect();
    assert_eq!(msgs, ["kept"]);
}

#[test]
fn events_from_many_tokio_tasks_each_arrive_once_with_their_span() {
    let server = Server::start();
    let got = sent(&server, 200, || {
        // On this thread: `with_default` sets the subscriber for this thread only.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let tasks: Vec<_> = (0..20)
                .map(|task| {
                    tokio::spawn(tracing::Instrument::instrument(
                        async move {
                            for i in 0..10 {
                                tracing::info!(i, "step");
                                tokio::task::yield_now().await;
                            }
                        },
                        tracing::info_span!("task", task),
                    ))
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        });
    });
    let mut seen: Vec<(String, String)> = got
        .iter()
        .map(|f| (get(f, "task").to_owned(), get(f, "i").to_owned()))
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 200, "every (task, step) once");
    assert!(got.iter().all(|f| get(f, "span") == "task"));
}

#[test]
fn a_span_the_filters_reject_leaves_no_field_and_no_name_on_the_events_in_it() {
    let server = Server::start();
    let layer = HttpLogger::builder(server.host(), "/")
        .build_layer()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let _outer = tracing::info_span!("request", user = "ann").entered();
        let _hidden = tracing::trace_span!("hidden", secret = "s3cr3t").entered();
        tracing::info!("inside");
    });
    let got = server.recv(WAIT).expect("the record").fields();
    assert_eq!(get(&got, "span"), "request");
    assert_eq!(get(&got, "user"), "ann");
    assert!(got.iter().all(|(k, _)| k != "secret"), "{got:?}");
}

#[test]
fn a_message_filter_and_an_event_without_a_message_are_handled_as_for_log() {
    let server = Server::start();
    let layer = HttpLogger::builder(server.host(), "/")
        .filter("info/needle")
        .build_layer()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("hay");
        tracing::info!("a needle in hay");
    });
    let got = server.recv_n(2, Duration::from_millis(500));
    let msgs: Vec<String> = got.iter().map(|r| r.field("msg").unwrap()).collect();
    assert_eq!(msgs, ["a needle in hay"]);

    let server = Server::start();
    let got = sent(&server, 1, || {
        let e = std::io::Error::other("boom");
        tracing::error!(error = &e as &dyn std::error::Error);
    });
    assert_eq!(get(&got[0], "msg"), "boom", "no leading separator");
}
