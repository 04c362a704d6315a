//! Tests of the test receiver in `tests/support`, with plain `TcpStream` clients.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use support::{Reply, Server};

const WAIT: Duration = Duration::from_secs(5);

struct Client {
    stream: TcpStream,
    /// Bytes read and not yet taken as part of a response.
    buf: Vec<u8>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        let mut hits = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name));
        hits.next().map(|(_, v)| v.as_str())
    }
}

impl Client {
    fn connect(server: &Server) -> Client {
        let stream = TcpStream::connect(server.addr()).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn stream(&self) -> &TcpStream {
        &self.stream
    }

    fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write request");
    }

    fn get(&mut self, target: &str) {
        self.send(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }

    fn post(&mut self, target: &str, body: &[u8]) {
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.send(&[head.as_bytes(), body].concat());
    }

    /// Reads more bytes into `buf`; fails at EOF.
    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).expect("read response");
        assert!(n > 0, "EOF in a response after {:?}", self.buf);
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// One response: its head parsed by httparse, then its `Content-Length` body (none for
    /// 1xx, 204 and 304, whose head has no length).
    fn response(&mut self) -> Response {
        let (len, status, headers) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut head = httparse::Response::new(&mut headers);
            match head.parse(&self.buf).expect("a response head") {
                httparse::Status::Complete(len) => {
                    assert_eq!(head.version, Some(1), "an HTTP/1.1 response");
                    let status = head.code.expect("status code");
                    let headers: Vec<(String, String)> = head
                        .headers
                        .iter()
                        .map(|h| {
                            let v = String::from_utf8_lossy(h.value).into_owned();
                            (h.name.to_string(), v)
                        })
                        .collect();
                    break (len, status, headers);
                }
                httparse::Status::Partial => self.fill(),
            }
        };
        self.buf.drain(..len);
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = match resp.header("content-length") {
            Some(len) => len.parse().expect("a content-length"),
            None if status < 200 || status == 204 || status == 304 => 0,
            None => panic!("no content-length in {:?}", resp.headers),
        };
        while self.buf.len() < len {
            self.fill();
        }
        resp.body = self.buf.drain(..len).collect();
        resp
    }

    /// Reads after the server stopped answering: Ok(bytes read before EOF) or the error kind.
    fn read_rest(&mut self) -> Result<Vec<u8>, ErrorKind> {
        let mut out = std::mem::take(&mut self.buf);
        self.stream
            .read_to_end(&mut out)
            .map(|_| out)
            .map_err(|e| e.kind())
    }
}

fn is_timeout(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Drops the server on another thread and fails if that does not return in time.
fn drop_bounded(server: Server) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(server);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("dropping the Server hung");
}

#[test]
fn keep_alive_two_requests_one_connection() {
    let server = Server::start();
    let mut c = Client::connect(&server);
    c.get("/a");
    assert_eq!(c.response().status, 200);
    c.post("/b", b"x=1");
    assert_eq!(c.response().status, 200);
    let reqs = server.recv_n(2, WAIT);
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].target.as_str()),
        ("GET", "/a")
    );
    assert_eq!(
        (reqs[1].method.as_str(), reqs[1].target.as_str()),
        ("POST", "/b")
    );
    assert_eq!((reqs[0].conn, reqs[1].conn), (0, 0));
    assert_eq!((reqs[0].index, reqs[1].index), (0, 1));
    assert_eq!(reqs[1].header("HOST"), Some("x"));
    assert_eq!(server.connections(), 1);
    assert_eq!(server.requests(), 2);

    // a second connection gets the next index; `Connection: close` is honoured
    let mut c2 = Client::connect(&server);
    c2.send(b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let resp = c2.response();
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(c2.read_rest(), Ok(Vec::new()));
    assert_eq!(server.recv(WAIT).expect("third request").conn, 1);
    assert_eq!(server.connections(), 2);
}

#[test]
fn get_query_fields_decoded() {
    let server = Server::start();
    let mut c = Client::connect(&server);
    c.get("/log?src=app&name=demo&msg=a+b%26c%3Dd%25&empty=&msg=second");
    assert_eq!(c.response().status, 200);
    let req = server.recv(WAIT).expect("request");
    assert_eq!(req.path(), "/log");
    assert_eq!(
        req.query(),
        Some("src=app&name=demo&msg=a+b%26c%3Dd%25&empty=&msg=second")
    );
    let fields = req.fields();
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["src", "name", "msg", "empty", "msg"]);
    assert_eq!(req.field("msg").as_deref(), Some("a b&c=d%"));
    assert_eq!(req.field("empty").as_deref(), Some(""));
    assert_eq!(req.field("missing"), None);
}

#[test]
fn post_body_fields_decoded() {
    let server = Server::start();
    let mut c = Client::connect(&server);
    let body = "msg=one+two%26three%2Bfour&uni=h%C3%A9llo+%F0%9F%98%80&nl=a%0D%0Ab";
    c.post("/log?src=app", body.as_bytes());
    assert_eq!(c.response().status, 200);
    // the same body, chunked
    c.send(b"POST /log HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nmsg=o\r\n3;ext=1\r\nne+\r\n3\r\ntwo\r\n0\r\n\r\n");
    assert_eq!(c.response().status, 200);

    let req = server.recv(WAIT).expect("request");
    assert_eq!(req.body, body.as_bytes());
    assert_eq!(req.field("msg").as_deref(), Some("one two&three+four"));
    assert_eq!(req.field("uni").as_deref(), Some("héllo 😀"));
    assert_eq!(req.field("nl").as_deref(), Some("a\r\nb"));
    assert_eq!(
        req.field("src"),
        None,
        "POST fields come from the body only"
    );
    let chunked = server.recv(WAIT).expect("chunked request");
    assert_eq!(chunked.field("msg").as_deref(), Some("one two"));
}

#[test]
fn script_by_index_500_then_200() {
    let server = Server::with_script(|i, _| {
        if i == 0 {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    });
    let mut c = Client::connect(&server);
    c.get("/x");
    assert_eq!(c.response().status, 500);
    c.get("/x");
    assert_eq!(c.response().status, 200, "the connection survives a 500");
    let mut c2 = Client::connect(&server);
    c2.get("/x");
    assert_eq!(c2.response().status, 200);
    assert_eq!(server.recv_n(3, WAIT).len(), 3);
}

#[test]
fn status_with_headers_carries_retry_after() {
    let server = Server::with_script(|_, req| match req.path() {
        "/busy" => Reply::StatusWithHeaders(429, vec![("Retry-After".into(), "2".into())]),
        _ => Reply::Delay(Duration::from_millis(50), 202),
    });
    let mut c = Client::connect(&server);
    c.get("/busy");
    let resp = c.response();
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("2"));
    c.get("/slow");
    assert_eq!(c.response().status, 202);
    assert_eq!(server.recv_n(2, WAIT).len(), 2);
}

#[test]
fn hang_times_out_client_until_server_dropped() {
    let server = Server::with_script(|_, _| Reply::Hang);
    let mut c = Client::connect(&server);
    c.get("/hang");
    assert_eq!(
        server.recv(WAIT).expect("hung request is delivered").path(),
        "/hang"
    );
    c.stream()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let err = c
        .stream
        .read(&mut buf)
        .expect_err("a hung request gets no answer");
    assert!(
        is_timeout(err.kind()),
        "expected a read timeout, got {err:?}"
    );

    c.stream().set_read_timeout(Some(WAIT)).unwrap();
    drop_bounded(server);
    match c.stream.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0, "EOF after the server is dropped"),
        Err(e) => assert!(!is_timeout(e.kind()), "still hung after drop: {e:?}"),
    }
}

#[test]
fn close_gives_eof_and_garbage_is_not_http() {
    let server = Server::with_script(|_, req| {
        if req.path() == "/close" {
            Reply::Close
        } else {
            Reply::Garbage
        }
    });
    let mut c = Client::connect(&server);
    c.get("/close");
    match c.read_rest() {
        Ok(bytes) => assert!(bytes.is_empty(), "no answer expected, got {bytes:?}"),
        Err(kind) => assert!(!is_timeout(kind), "expected EOF, got a timeout"),
    }
    let mut c = Client::connect(&server);
    c.get("/garbage");
    let bytes = c.read_rest().expect("garbage then EOF");
    assert!(
        !bytes.is_empty() && !bytes.starts_with(b"HTTP/"),
        "{bytes:?}"
    );
    assert_eq!(server.recv_n(2, WAIT).len(), 2);
}

#[test]
fn drop_with_open_idle_connection_returns() {
    let server = Server::start();
    let mut c = Client::connect(&server);
    c.get("/a");
    assert_eq!(c.response().status, 200);
    let mut idle = Client::connect(&server); // connected, never sends
    drop_bounded(server);
    assert_eq!(c.read_rest(), Ok(Vec::new()));
    assert!(!matches!(idle.read_rest(), Err(kind) if is_timeout(kind)));
}

#[test]
fn survives_clients_that_disconnect_mid_request() {
    let server = Server::start();
    for partial in [
        &b"GET /part"[..],
        b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        b"GARBAGE\r\n\r\n",
    ] {
        let mut c = Client::connect(&server);
        c.send(partial);
        drop(c);
    }
    let mut c = Client::connect(&server);
    c.get("/ok");
    assert_eq!(c.response().status, 200);
    let req = server.recv(WAIT).expect("the complete request");
    assert_eq!(req.path(), "/ok");
    assert_eq!(req.index, 0, "incomplete requests are not counted");
}

#[test]
fn restart_on_the_same_port() {
    let first = Server::start();
    let addr = first.addr();
    assert_eq!(first.host(), format!("127.0.0.1:{}", addr.port()));
    let mut c = Client::connect(&first);
    c.get("/before");
    assert_eq!(c.response().status, 200);
    drop_bounded(first);
    assert!(
        TcpStream::connect(addr).is_err(),
        "the port is closed once the server is dropped"
    );

    let second = Server::start_on(addr, |_, _| Reply::Status(204)).expect("rebind the same port");
    assert_eq!(second.addr(), addr);
    let mut c = Client::connect(&second);
    c.get("/after");
    assert_eq!(c.response().status, 204);
    assert_eq!(second.recv(WAIT).expect("request").path(), "/after");
    assert!(second.try_drain().is_empty());
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

impl Client {
    /// Exactly `n` bytes, from what is buffered, then the socket.
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.fill();
        }
        self.buf.drain(..n).collect()
    }
}

#[test]
fn raw_bytes_now_then_later_then_the_next_request() {
    let server = Server::with_script(|_, _| Reply::Raw {
        now: OK.to_vec(),
        later: Some((Duration::from_millis(50), b"LATE".to_vec())),
        close: false,
    });
    let mut c = Client::connect(&server);
    c.get("/a");
    assert_eq!(c.bytes(OK.len()), OK);
    assert_eq!(server.recv(WAIT).expect("first request").path(), "/a");
    assert_eq!(server.recv_late(WAIT), Some(0));
    assert_eq!(c.bytes(4), b"LATE");

    // Two requests at once: the second is answered after the first one's late bytes.
    c.send(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n");
    let expected = [OK, b"LATE", OK, b"LATE"].concat();
    assert_eq!(c.bytes(expected.len()), expected);
    let reqs = server.recv_n(2, WAIT);
    let paths: Vec<&str> = reqs.iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/b", "/c"]);
    assert_eq!((reqs[0].index, reqs[1].index), (1, 2));
    assert_eq!(
        (server.recv_late(WAIT), server.recv_late(WAIT)),
        (Some(1), Some(2))
    );
    assert_eq!(server.connections(), 1);
}

#[test]
fn raw_bytes_then_later_then_close() {
    let server = Server::with_script(|_, _| Reply::Raw {
        now: OK.to_vec(),
        later: Some((Duration::from_millis(20), b"BYE".to_vec())),
        close: true,
    });
    let mut c = Client::connect(&server);
    c.get("/a");
    assert_eq!(c.read_rest(), Ok([OK, b"BYE"].concat()));
    assert_eq!(server.recv_late(WAIT), Some(0));
    assert_eq!(server.requests(), 1);
}

#[test]
fn expect_100_continue_then_the_body() {
    let server = Server::start();
    let mut c = Client::connect(&server);
    c.send(b"POST /log HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(c.response().status, 100);
    c.send(b"x=1");
    assert_eq!(c.response().status, 200);
    let req = server.recv(WAIT).expect("request");
    assert_eq!(req.body, b"x=1");
    assert_eq!(req.header("expect"), Some("100-continue"));
}

#[test]
fn a_request_hyper_cannot_parse_gets_400_then_eof_and_is_not_counted() {
    let server = Server::start();
    let mut c = Client::connect(&server);
    c.send(b"NOT A REQUEST LINE\r\n\r\n");
    assert_eq!(c.response().status, 400);
    assert_eq!(c.read_rest(), Ok(Vec::new()));
    assert_eq!(server.requests(), 0);
    assert!(server.try_drain().is_empty());
}

#[test]
fn a_script_that_panics_answers_500_and_the_connection_goes_on() {
    let server = Server::with_script(|i, _| {
        assert!(i != 0, "a script panics (as this test wants)");
        Reply::Status(200)
    });
    let mut c = Client::connect(&server);
    c.get("/panics");
    assert_eq!(c.response().status, 500);
    c.get("/fine");
    assert_eq!(c.response().status, 200);
    assert_eq!(server.recv_n(2, WAIT).len(), 2);
}

#[test]
fn drop_while_a_script_blocks_returns_and_closes_the_connection() {
    let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
    let server = Server::with_script(move |_, _| {
        let _ = gate_rx.recv_timeout(WAIT); // returns at once when the test drops `gate_tx`
        Reply::Status(200)
    });
    let mut c = Client::connect(&server);
    c.get("/blocked");
    let deadline = std::time::Instant::now() + WAIT;
    while server.requests() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.requests(), 1, "the script is running");
    drop_bounded(server);
    assert!(!matches!(c.read_rest(), Err(kind) if is_timeout(kind)));
    drop(gate_tx);
}
