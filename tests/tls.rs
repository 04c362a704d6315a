//! HTTPS end to end: a built (not installed) logger sends to TLS receivers on 127.0.0.1 whose
//! CA and certificates are made here, at test time, with rcgen (nothing is committed, nothing
//! expires). The Rust receiver is `support::Server` in TLS mode (rustls, ring); the interop test
//! runs Python's `http.server` wrapped in `ssl` (`tests/interop/py_receiver.py --certfile`).
//!
//! Every wait is bounded and every logger that is expected to fail gets short timeouts and a
//! small retry budget, so that a misclassified failure costs a retry or two, never a hang.

mod support;

use std::error::Error as StdError;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;
use http_logger::{Builder, ErrorKind, HttpLogger, Method};
use support::certs::{Ca, Leaf, provider, server_config};
use support::{STANDARD, Server, get, keys};

/// The longest any one wait may take (a request to arrive, a flush, Python to start).
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// A throwaway PKI.

/// A server config presenting `leaf` and requiring a client certificate signed by `client_ca`.
fn mtls_server_config(leaf: &Leaf, client_ca: &Ca) -> Arc<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.der()).expect("client CA");
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .expect("client verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![leaf.cert_der.clone()], leaf.key())
        .expect("server certificate and key");
    Arc::new(config)
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A builder for `host` at `/log` over HTTPS with short timeouts, so that a record that cannot
/// be delivered is given up within a second or two even if it were (wrongly) retried.
fn https(host: &str) -> Builder {
    log::set_max_level(log::LevelFilter::Trace);
    HttpLogger::builder(host, "/log")
        .secure(true)
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .retry_budget(2, Duration::from_secs(2))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .shutdown_timeout(Duration::from_secs(5))
}

fn localhost(server: &Server) -> String {
    format!("localhost:{}", server.addr().port())
}

fn flushed(logger: &HttpLogger) {
    assert!(
        logger.flush_timeout(WAIT),
        "flush timed out: {:?}, last error {:?}",
        logger.stats(),
        logger.last_error()
    );
}

/// The receiver's handshake errors once it has recorded at least `n` (it records one just
/// after the client has seen the handshake end), or what it has after [`WAIT`].
fn tls_errors(server: &Server, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let errors = server.tls_errors();
        if errors.len() >= n || std::time::Instant::now() >= deadline {
            return errors;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Logs `n` records, flushes (bounded), and checks that every one failed at once: rejected,
/// not retried, nothing delivered. Returns the logger's last error.
fn all_fail_without_retry(logger: &HttpLogger, n: u64) -> String {
    for i in 0..n {
        log::info!(logger: logger, "record {i} must not be delivered");
    }
    flushed(logger);
    let stats = logger.stats();
    assert_eq!(
        (stats.logged, stats.sent, stats.failed, stats.retried),
        (n, 0, n, 0),
        "every record fails without a retry: {stats:?}, last error {:?}",
        logger.last_error()
    );
    logger.last_error().expect("a failed record has a reason")
}

/// Every line of `error`'s `Display`, `Debug` (plain and alternate) and source chain.
fn everything_shown(error: &http_logger::Error) -> String {
    let mut shown = format!("{error}\n{error:?}\n{error:#?}\n");
    let mut source = error.source();
    while let Some(s) = source {
        shown.push_str(&format!("{s}\n{s:?}\n"));
        source = s.source();
    }
    shown
}

/// The base64 lines of a PEM block (its secret body), without the BEGIN/END lines.
fn pem_body_lines(pem: &str) -> Vec<&str> {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect()
}

fn assert_hides(shown: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret:?} is shown in:\n{shown}");
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Delivery with the CA added.

#[test]
fn delivers_over_tls_to_localhost_with_the_ca_added() {
    let ca = Ca::new("test CA");
    let server = Server::start_tls(server_config(&ca.server(&["localhost"])));
    let host = localhost(&server);
    let logger = https(&host)
        .add_root_certificate(ca.pem())
        .build()
        .expect("valid config");
    log::info!(logger: logger, "user {} logged in over {}", "ann", "TLS");
    log::warn!(logger: logger, request_id = 7; "second & last: 100% é");
    flushed(&logger);
    let stats = logger.stats();
    assert_eq!(
        (stats.sent, stats.failed, stats.retried),
        (2, 0, 0),
        "{stats:?}"
    );
    assert_eq!(logger.last_error(), None);

    let got = server.recv_n(2, WAIT);
    assert_eq!(got.len(), 2, "{got:?}");
    let (first, second) = (&got[0], &got[1]);
    assert_eq!(first.method, "POST");
    assert_eq!(first.path(), "/log");
    assert_eq!(first.header("host"), Some(host.as_str()));
    assert_eq!(
        first.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let f = first.fields();
    assert_eq!(keys(&f), STANDARD);
    assert_eq!(get(&f, "msg"), "user ann logged in over TLS");
    assert_eq!(get(&f, "levelname"), "INFO");
    assert_eq!(get(&f, "levelno"), "20");
    assert_eq!(get(&f, "filename"), "tls.rs");
    assert_eq!(get(&f, "module"), "tls");
    assert_eq!(get(&f, "args"), "()");
    let f = second.fields();
    assert_eq!(keys(&f)[..22], STANDARD);
    assert_eq!(get(&f, "msg"), "second & last: 100% é");
    assert_eq!(get(&f, "levelname"), "WARNING");
    assert_eq!(get(&f, "request_id"), "7");
    // Both on one kept-alive TLS connection, with no failed handshake.
    assert_eq!(server.connections(), 1);
    assert_eq!(server.tls_errors(), Vec::<String>::new());
}

#[test]
fn delivers_over_tls_to_an_ip_address_in_the_certificate() {
    let ca = Ca::new("test CA");
    let server = Server::start_tls(server_config(&ca.server(&["127.0.0.1"])));
    assert!(server.is_tls() && server.url("/").starts_with("https://127.0.0.1:"));
    let logger = https(&server.host())
        .method(Method::Get)
        .add_root_certificate(ca.pem())
        .build()
        .expect("valid config");
    log::error!(logger: logger, "over GET to {}", "an IP");
    flushed(&logger);
    assert_eq!(logger.stats().sent, 1, "{:?}", logger.last_error());
    let req = server.recv(WAIT).expect("a request");
    assert_eq!(req.method, "GET");
    assert_eq!(req.path(), "/log");
    assert_eq!(req.header("host"), Some(server.host().as_str()));
    let f = req.fields();
    assert_eq!(keys(&f), STANDARD);
    assert_eq!(get(&f, "msg"), "over GET to an IP");
    assert_eq!(get(&f, "levelno"), "40");
}

// ---------------------------------------------------------------------------------------------
// 2, 3. Verification failures: rejected at once, with a reason, never hanging.

#[test]
fn without_the_ca_every_record_fails_with_a_certificate_reason() {
    let ca = Ca::new("test CA");
    let server = Server::start_tls(server_config(&ca.server(&["localhost"])));
    // No add_root_certificate: only the Mozilla roots, which never signed this CA.
    let logger = https(&localhost(&server)).build().expect("valid config");
    let reason = all_fail_without_retry(&logger, 3);
    eprintln!("unknown CA: last_error() = {reason:?}");
    assert!(reason.contains("certificate"), "{reason}");
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    // The handshake failed: the receiver never read a request, and did not hang or panic.
    assert_eq!(server.requests(), 0);
    let errors = tls_errors(&server, 3);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(server.recv(Duration::from_millis(100)).is_none());
}

#[test]
fn a_wrong_host_name_fails_with_a_reason() {
    let ca = Ca::new("test CA");
    // A certificate for `localhost` only, reached as 127.0.0.1.
    let server = Server::start_tls(server_config(&ca.server(&["localhost"])));
    let logger = https(&server.host())
        .add_root_certificate(ca.pem())
        .build()
        .expect("valid config");
    let reason = all_fail_without_retry(&logger, 2);
    eprintln!("wrong host: last_error() = {reason:?}");
    assert!(reason.contains("certificate"), "{reason}");
    assert!(
        reason.contains("127.0.0.1"),
        "names the host it was not valid for: {reason}"
    );
    assert_eq!(server.requests(), 0);

    // And a certificate for another DNS name, reached as localhost.
    let other = Server::start_tls(server_config(&ca.server(&["logs.example.com"])));
    let logger = https(&localhost(&other))
        .add_root_certificate(ca.pem())
        .build()
        .expect("valid config");
    let reason = all_fail_without_retry(&logger, 1);
    eprintln!("wrong DNS name: last_error() = {reason:?}");
    assert!(reason.contains("certificate"), "{reason}");
    assert_eq!(other.requests(), 0);
}

#[test]
fn a_different_ca_is_not_trusted_once_one_is_added() {
    // Added roots replace the Mozilla roots; a CA that was not added is not trusted either.
    let ca = Ca::new("test CA");
    let other_ca = Ca::new("other CA");
    let server = Server::start_tls(server_config(&ca.server(&["localhost"])));
    let logger = https(&localhost(&server))
        .add_root_certificate(other_ca.pem())
        .build()
        .expect("valid config");
    let reason = all_fail_without_retry(&logger, 1);
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    // Both CAs in one PEM, or added one by one: the right one is found.
    for builder in [
        https(&localhost(&server)).add_root_certificate(other_ca.pem() + &ca.pem()),
        https(&localhost(&server))
            .add_root_certificate(other_ca.pem())
            .add_root_certificate(ca.pem()),
    ] {
        let logger = builder.build().expect("valid config");
        log::info!(logger: logger, "found");
        flushed(&logger);
        assert_eq!(logger.stats().sent, 1, "{:?}", logger.last_error());
    }
    assert_eq!(server.recv_n(2, WAIT).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 4. Credentials over TLS.

#[test]
fn basic_credentials_arrive_over_tls_as_python_sends_them() {
    let ca = Ca::new("test CA");
    let server = Server::start_tls(server_config(&ca.server(&["localhost"])));
    // No credentials_over_http: HTTPS needs no opt-in.
    let logger = https(&localhost(&server))
        .add_root_certificate(ca.pem())
        .credentials("user", "pässword:x")
        .header("X-Service", "billing")
        .build()
        .expect("credentials over HTTPS are allowed");
    log::info!(logger: logger, "with creds");
    flushed(&logger);
    let req = server.recv(WAIT).expect("a request");
    // From shared/reference/python-httphandler/3.13.0/009_POST.raw: CPython's HTTPHandler with
    // credentials=('user', 'pässword:x').
    assert_eq!(
        req.header("authorization"),
        Some("Basic dXNlcjpww6Rzc3dvcmQ6eA==")
    );
    let auths = req
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .count();
    assert_eq!(auths, 1, "{:?}", req.headers);
    assert_eq!(req.header("x-service"), Some("billing"));
    assert_eq!(req.field("msg").as_deref(), Some("with creds"));
}

#[test]
fn a_bearer_token_arrives_over_tls() {
    let ca = Ca::new("test CA");
    let server = Server::start_tls(server_config(&ca.server(&["localhost"])));
    let token = "eyJhbGciOi.J-token_123~";
    let logger = https(&localhost(&server))
        .add_root_certificate(ca.pem())
        .bearer_token(token)
        .build()
        .expect("a bearer token over HTTPS is allowed");
    log::info!(logger: logger, "with a token");
    flushed(&logger);
    let req = server.recv(WAIT).expect("a request");
    let expected = format!("Bearer {token}");
    assert_eq!(req.header("authorization"), Some(expected.as_str()));
    assert_eq!(req.field("msg").as_deref(), Some("with a token"));
}

// ---------------------------------------------------------------------------------------------
// 5. What build() refuses.

#[test]
fn credentials_over_plain_http_are_refused_unless_allowed() {
    let plain = || HttpLogger::builder("127.0.0.1:9", "/log");
    for (what, builder) in [
        ("credentials", plain().credentials("user", "pw-secret-1")),
        ("bearer token", plain().bearer_token("tok-secret-2")),
        (
            "Authorization header",
            plain().header("Authorization", "Basic c2VjcmV0LTM="),
        ),
    ] {
        let err = builder.build().expect_err(what);
        assert_eq!(err.kind(), ErrorKind::InsecureCredentials, "{what}: {err}");
        let message = err.to_string();
        for why in ["plain HTTP", "secure(true)", "credentials_over_http(true)"] {
            assert!(message.contains(why), "{what}: {message:?} lacks {why:?}");
        }
        assert_hides(
            &everything_shown(&err),
            &["pw-secret-1", "tok-secret-2", "c2VjcmV0LTM="],
        );
    }
    // Allowed with the opt-in, and delivered over plain HTTP as Python would send them.
    let server = Server::start();
    log::set_max_level(log::LevelFilter::Trace);
    let logger = HttpLogger::builder(server.host(), "/log")
        .credentials("user", "pässword:x")
        .credentials_over_http(true)
        .build()
        .expect("credentials_over_http(true) allows them");
    log::info!(logger: logger, "plain with creds");
    flushed(&logger);
    let req = server.recv(WAIT).expect("a request");
    assert_eq!(
        req.header("authorization"),
        Some("Basic dXNlcjpww6Rzc3dvcmQ6eA==")
    );
    assert!(
        HttpLogger::builder("127.0.0.1:9", "/")
            .bearer_token("t")
            .credentials_over_http(true)
            .build()
            .is_ok()
    );
}

#[test]
fn tls_settings_without_secure_are_refused() {
    let ca = Ca::new("test CA");
    let client = ca.client("client");
    let plain = || HttpLogger::builder("localhost:9", "/log");
    for (what, builder) in [
        ("a root certificate", plain().add_root_certificate(ca.pem())),
        (
            "a client certificate",
            plain().client_certificate(&client.cert_pem, &client.key_pem),
        ),
        (
            "secure(false) after a root certificate",
            plain()
                .secure(true)
                .add_root_certificate(ca.pem())
                .secure(false),
        ),
    ] {
        let err = builder.build().expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Tls, "{what}: {err}");
        assert!(err.to_string().contains("secure(true)"), "{what}: {err}");
        assert_hides(&everything_shown(&err), &pem_body_lines(&client.key_pem));
    }
    // The same settings with secure(true) build.
    assert!(
        plain()
            .secure(true)
            .add_root_certificate(ca.pem())
            .client_certificate(&client.cert_pem, &client.key_pem)
            .build()
            .is_ok()
    );
}

#[test]
fn a_pem_without_a_certificate_is_refused() {
    let ca = Ca::new("test CA");
    let client = ca.client("client");
    let secure = || HttpLogger::builder("localhost:9", "/log").secure(true);
    for (what, builder) in [
        ("an empty root PEM", secure().add_root_certificate("")),
        (
            "a root PEM of text",
            secure().add_root_certificate("not a certificate at all"),
        ),
        (
            "a key as the root certificate",
            secure().add_root_certificate(&client.key_pem),
        ),
        (
            "a good root, then a bad one",
            secure()
                .add_root_certificate(ca.pem())
                .add_root_certificate("nothing here"),
        ),
        (
            "a key as the client chain",
            secure().client_certificate(&client.key_pem, &client.key_pem),
        ),
    ] {
        let err = builder.build().expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Tls, "{what}: {err}");
        let message = err.to_string();
        assert!(message.contains("certificate"), "{what}: {message}");
        assert_hides(&everything_shown(&err), &pem_body_lines(&client.key_pem));
    }
}

#[test]
fn a_bad_key_is_refused_without_showing_it() {
    let ca = Ca::new("test CA");
    let client = ca.client("client");
    let body = pem_body_lines(&client.key_pem).concat();
    // Text that is not base64, in a key block: a parser might quote it back.
    let garbled =
        "-----BEGIN PRIVATE KEY-----\nSECRET!KEY*MATERIAL#not(base64)\n-----END PRIVATE KEY-----\n";
    let cut_short = format!("-----BEGIN PRIVATE KEY-----\n{}\n", &body[..body.len() / 2]);
    for (what, key) in [
        ("no key at all", String::new()),
        ("a certificate instead of a key", client.cert_pem.clone()),
        ("a key block that is not base64", garbled.to_string()),
        ("a key block without its END line", cut_short),
    ] {
        let err = HttpLogger::builder("localhost:9", "/log")
            .secure(true)
            .client_certificate(&client.cert_pem, &key)
            .build()
            .expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Tls, "{what}: {err}");
        assert!(err.to_string().contains("key"), "{what}: {err}");
        let shown = everything_shown(&err);
        let mut secrets = pem_body_lines(&key);
        secrets.extend(pem_body_lines(&client.key_pem));
        secrets.extend(["SECRET", "MATERIAL"]);
        assert_hides(&shown, &secrets);
    }
}

/// A PEM key block that is valid base64 but not a key.
const NOT_A_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nAAAAc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n";

/// Refused at build: ureq would only see these at the first send, on the worker thread.
#[test]
fn a_key_rustls_cannot_use_is_refused_at_build() {
    let ca = Ca::new("test CA");
    let client = ca.client("client");
    let other = ca.client("other");
    let not_a_cert = NOT_A_KEY.replace("PRIVATE KEY", "CERTIFICATE");
    for (what, chain, key) in [
        (
            "a PKCS#8 block that is not a key",
            &client.cert_pem,
            NOT_A_KEY.to_string(),
        ),
        (
            "a SEC1 block that is not a key",
            &client.cert_pem,
            NOT_A_KEY.replace("PRIVATE KEY", "EC PRIVATE KEY"),
        ),
        (
            "another certificate's key",
            &client.cert_pem,
            other.key_pem.clone(),
        ),
        (
            "a certificate block that is not a certificate",
            &not_a_cert,
            client.key_pem.clone(),
        ),
    ] {
        let err = HttpLogger::builder("localhost:9", "/log")
            .secure(true)
            .client_certificate(chain, &key)
            .build()
            .expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Tls, "{what}: {err}");
        let mut secrets = pem_body_lines(&key);
        secrets.extend(pem_body_lines(&client.key_pem));
        assert_hides(&everything_shown(&err), &secrets);
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Debug hides every secret.

#[test]
fn debug_of_builder_and_logger_hides_every_secret() {
    let ca = Ca::new("test CA");
    let client = ca.client("client");
    let builder = HttpLogger::builder("localhost:9", "/log")
        .secure(true)
        .credentials("ann", "pw-secret-1")
        .bearer_token("tok-secret-2")
        .header("X-Api-Key", "hdr-secret-3")
        .add_root_certificate(ca.pem())
        .client_certificate(&client.cert_pem, &client.key_pem);
    let mut secrets = vec!["pw-secret-1", "tok-secret-2", "hdr-secret-3", "PRIVATE KEY"];
    secrets.extend(pem_body_lines(&client.key_pem));
    let shown = format!("{builder:?}\n{builder:#?}");
    assert_hides(&shown, &secrets);
    // What is not secret is still there to debug with.
    for visible in [
        "localhost:9",
        "\"ann\"",
        "X-Api-Key",
        "Authorization",
        "secure: true",
    ] {
        assert!(
            shown.contains(visible),
            "{visible:?} is not shown in:\n{shown}"
        );
    }
    let logger = builder.build().expect("valid config");
    let shown = format!("{logger:?}\n{logger:#?}");
    assert_hides(&shown, &secrets);
    assert!(shown.contains("https://localhost:9/log"), "{shown}");
}

// ---------------------------------------------------------------------------------------------
// 7. Mutual TLS.

#[test]
fn mutual_tls_accepts_a_client_certificate_from_the_ca_and_fails_without_one() {
    let ca = Ca::new("test CA");
    let server = Server::start_tls(mtls_server_config(&ca.server(&["localhost"]), &ca));
    let host = localhost(&server);
    let client = ca.client("logger-client");

    let logger = https(&host)
        .add_root_certificate(ca.pem())
        .client_certificate(&client.cert_pem, &client.key_pem)
        .build()
        .expect("valid config");
    log::info!(logger: logger, "from a known client");
    flushed(&logger);
    assert_eq!(logger.stats().sent, 1, "{:?}", logger.last_error());
    let req = server.recv(WAIT).expect("a request");
    assert_eq!(req.field("msg").as_deref(), Some("from a known client"));
    assert_eq!(server.client_certificates(), [client.cert_der.to_vec()]);
    drop(logger);

    // No client certificate: the receiver ends the handshake; the record fails, bounded.
    let logger = https(&host)
        .add_root_certificate(ca.pem())
        .build()
        .expect("valid config");
    for i in 0..2 {
        log::info!(logger: logger, "anonymous {i}");
    }
    flushed(&logger);
    let stats = logger.stats();
    let reason = logger.last_error().expect("a reason");
    eprintln!("no client certificate: last_error() = {reason:?}, {stats:?}");
    assert_eq!((stats.sent, stats.failed), (0, 2), "{stats:?}: {reason}");
    assert!(reason.contains("Certificate"), "{reason}");
    drop(logger);

    // A client certificate from a CA the receiver does not trust fails the same way.
    let rogue = Ca::new("rogue CA").client("logger-client");
    let logger = https(&host)
        .add_root_certificate(ca.pem())
        .client_certificate(&rogue.cert_pem, &rogue.key_pem)
        .build()
        .expect("valid config");
    log::info!(logger: logger, "from a rogue client");
    flushed(&logger);
    let stats = logger.stats();
    let reason = logger.last_error().expect("a reason");
    eprintln!("untrusted client certificate: last_error() = {reason:?}, {stats:?}");
    assert_eq!((stats.sent, stats.failed), (0, 1), "{stats:?}: {reason}");
    drop(logger);

    // Only the first logger's request was ever read; the server kept every failed handshake's
    // reason and is still serving.
    assert!(server.try_drain().is_empty());
    assert_eq!(server.requests(), 1);
    let errors = tls_errors(&server, 3);
    eprintln!("receiver's handshake errors: {errors:?}");
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[..2].iter().all(|e| e.contains("no certificates")),
        "{errors:?}"
    );
    assert!(errors[2].contains("UnknownIssuer"), "{errors:?}");
    let logger = https(&host)
        .add_root_certificate(ca.pem())
        .client_certificate(&client.cert_pem, &client.key_pem)
        .build()
        .expect("valid config");
    log::info!(logger: logger, "still serving");
    flushed(&logger);
    assert_eq!(logger.stats().sent, 1, "{:?}", logger.last_error());
}

// ---------------------------------------------------------------------------------------------
// 8. Interop: Python's http.server wrapped in ssl.

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "http-logger-tls-{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir(path)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Python receiver: killed (by its own pid) and reaped on drop.
struct PyReceiver {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl Drop for PyReceiver {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: --exit-on-stdin-eof ends it on its own
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each line of `r`, sent on a channel by a thread that ends at EOF.
fn lines_of(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn start_py_receiver(certfile: &Path, keyfile: &Path) -> (PyReceiver, u16) {
    let python = std::env::var("HTTP_LOGGER_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/py_receiver.py");
    let spawned = Command::new(&python)
        .arg(&script)
        .args(["--port", "0", "--exit-on-stdin-eof", "--certfile"])
        .arg(certfile)
        .arg("--keyfile")
        .arg(keyfile)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => panic!(
            "cannot run {python:?} ({err}): this test needs Python 3.8 or newer; install it or \
             set HTTP_LOGGER_PYTHON to its path"
        ),
    };
    let stdin = child.stdin.take();
    let stdout = lines_of(child.stdout.take().expect("stdout is piped"));
    let stderr = lines_of(child.stderr.take().expect("stderr is piped"));
    let receiver = PyReceiver {
        child,
        stdin,
        stdout,
        stderr,
    };
    let deadline = std::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        match receiver.stderr.recv_deadline(deadline) {
            Ok(line) => {
                if let Some(port) = line.strip_prefix("listening on https://127.0.0.1:") {
                    let port = port.trim().parse().expect("a port number");
                    return (receiver, port);
                }
                seen.push(line);
            }
            Err(_) => panic!(
                "{python} {} did not say \"listening on https://127.0.0.1:PORT\" within {WAIT:?}; \
                 its stderr: {seen:#?}",
                script.display()
            ),
        }
    }
}

#[test]
fn python_https_receiver_decodes_our_records() {
    let ca = Ca::new("test CA");
    let leaf = ca.server(&["localhost", "127.0.0.1"]);
    let dir = TempDir::new();
    let certfile = dir.write("server.pem", &leaf.cert_pem);
    let keyfile = dir.write("server.key", &leaf.key_pem);
    let (py, port) = start_py_receiver(&certfile, &keyfile);

    let host = format!("localhost:{port}");
    let logger = https(&host)
        .add_root_certificate(ca.pem())
        .credentials("user", "pässword:x")
        .build()
        .expect("valid config");
    log::warn!(logger: logger, user = "ann"; "über TLS: {} & {}%", "a=b", 100);
    log::info!(logger: logger, "second");
    flushed(&logger);
    assert_eq!(logger.stats().sent, 2, "{:?}", logger.last_error());
    drop(logger);

    let mut lines = Vec::new();
    for _ in 0..2 {
        match py.stdout.recv_timeout(WAIT) {
            Ok(line) => lines.push(line),
            Err(_) => panic!(
                "the Python receiver printed {lines:?}; its stderr: {:?}",
                py.stderr.try_iter().collect::<Vec<_>>()
            ),
        }
    }
    let json: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    for (line, msg) in json.iter().zip(["über TLS: a=b & 100%", "second"]) {
        assert_eq!(line["method"], "POST", "{line}");
        assert_eq!(line["path"], "/log", "{line}");
        assert_eq!(line["error"], serde_json::Value::Null, "{line}");
        assert_eq!(line["headers"]["host"], host.as_str(), "{line}");
        assert_eq!(
            line["headers"]["authorization"], "Basic dXNlcjpww6Rzc3dvcmQ6eA==",
            "{line}"
        );
        let fields: Vec<(String, String)> = line["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|kv| {
                (
                    kv[0].as_str().expect("a key").to_string(),
                    kv[1].as_str().expect("a value").to_string(),
                )
            })
            .collect();
        assert_eq!(keys(&fields)[..22], STANDARD, "{line}");
        assert_eq!(get(&fields, "msg"), msg);
        assert_eq!(line["record"]["message"], msg, "{line}");
        assert_eq!(line["record"]["name"], "tls", "{line}");
        assert_eq!(line["record"]["process"], std::process::id(), "{line}");
    }
    assert_eq!(json[0]["record"]["levelname"], "WARNING");
    assert_eq!(json[0]["record"]["levelno"], 30);
    assert_eq!(json[1]["record"]["levelname"], "INFO");
    let fields = json[0]["fields"].as_array().expect("fields");
    assert_eq!(fields[22], serde_json::json!(["user", "ann"]));
    drop(py);
    let path = dir.0.clone();
    drop(dir);
    assert!(!path.exists(), "{} was not removed", path.display());
}

#[test]
fn a_two_mebibyte_record_goes_over_tls_whole() {
    let ca = Ca::new("test CA");
    let server = Server::start_tls(server_config(&ca.server(&["127.0.0.1"])));
    let logger = https(&server.host())
        .add_root_certificate(ca.pem())
        .build()
        .expect("valid config");
    // More than rustls buffers at once: written out in parts, all by the deadline.
    let big = "é".repeat(1 << 20);
    log::info!(logger: logger, "{big}");
    flushed(&logger);
    assert_eq!(
        logger.stats().sent,
        1,
        "{:?} {:?}",
        logger.stats(),
        logger.last_error()
    );
    let got = server.recv(WAIT).expect("the record");
    assert_eq!(got.field("msg").as_deref(), Some(big.as_str()));
}
