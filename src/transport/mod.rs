//! The transport: how a request reaches the receiver. The endpoint, checked and taken apart
//! once ([`endpoint`]); name resolution ([`resolve`]); TLS settings ([`tls`]); the connection,
//! its deadlines and its check before reuse ([`conn`]); one HTTP/1.1 exchange framed and
//! parsed by ureq-proto ([`exchange`]). It says what happened to a request; what to do about
//! it is the [retry policy](crate::delivery::retry)'s to decide.

use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use ureq_proto::http::{HeaderName, HeaderValue};

use crate::deadline::deadline_after;
use crate::transport::conn::{Conn, OpenError, TlsTarget, io_reason, is_timeout};
use crate::transport::endpoint::Endpoint;
use crate::transport::exchange::{BodyHeaders, ReadError, Template, read_answer};
use crate::transport::resolve::Peer;
use crate::wire::Method;

pub(crate) mod conn;
pub(crate) mod endpoint;
pub(crate) mod exchange;
pub(crate) mod resolve;
pub(crate) mod tls;

pub(crate) use exchange::Answer;

/// The settings a transport is made from, checked at build time.
#[derive(Debug, Clone)]
pub(crate) struct TransportConfig {
    pub(crate) endpoint: Endpoint,
    /// The request's method, head and headers: all but its payload.
    pub(crate) template: Template,
    /// `Some` over HTTPS.
    pub(crate) tls: Option<TlsTarget>,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
}

impl TransportConfig {
    /// The settings for `endpoint`; `headers` are the builder's, checked.
    pub(crate) fn new(
        endpoint: Endpoint,
        method: Method,
        body: BodyHeaders,
        headers: &[(HeaderName, HeaderValue)],
        tls: Option<TlsTarget>,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<TransportConfig, String> {
        let template = Template::new(
            method,
            &endpoint.target,
            &endpoint.host_header,
            body,
            headers,
        )
        .map_err(|e| e.0)?;
        Ok(TransportConfig {
            endpoint,
            template,
            tls,
            connect_timeout,
            timeout,
        })
    }
}

/// Why a request got no answer we can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection: refused, unreachable, the name not found, a connect timeout.
    Connect(String),
    /// The whole-request timeout passed.
    Timeout,
    /// The connection broke in the middle of the exchange.
    Broken(String),
    /// The receiver refused the TLS handshake or our client certificate.
    Tls(String),
    /// The receiver answered with something that is not HTTP we can use, or read the request
    /// and closed a new connection without an answer.
    Unusable(String),
    /// As [`Unusable`](Failure::Unusable), on the new connection the transport had already
    /// sent the request again on: the request went twice.
    UnusableAgain(String),
    /// The request could not be made.
    Request(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timeout"),
            Failure::Unusable(what) | Failure::UnusableAgain(what) => {
                write!(f, "unusable answer from the receiver: {what}")
            }
            Failure::Connect(reason)
            | Failure::Broken(reason)
            | Failure::Tls(reason)
            | Failure::Request(reason) => f.write_str(reason),
        }
    }
}

/// Sends requests over one kept-alive connection; owns its buffers, reused from one record to
/// the next.
pub(crate) struct Transport {
    config: TransportConfig,
    peer: Peer,
    conn: Option<Conn>,
    /// The request being sent: head and body.
    out: Vec<u8>,
    /// The answer being read.
    input: Vec<u8>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `out` holds the headers, credentials included: never shown.
        f.debug_struct("Transport")
            .field("endpoint", &self.config.endpoint.base)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport for `config`; it connects at the first request.
    pub(crate) fn new(config: TransportConfig) -> Transport {
        let peer = Peer::new(&config.endpoint.host, config.endpoint.port);
        Transport {
            config,
            peer,
            conn: None,
            out: Vec::new(),
            input: Vec::new(),
        }
    }

    /// Sends one request and reads its answer: for a POST `payload` is the body, for a GET the
    /// target with its query. `while_waiting` runs once, when the request is written and the
    /// answer not yet read: work done there costs no time on the round trip. A panic in the
    /// HTTP stack (which would otherwise end the worker, and all delivery with it) is a failed
    /// request.
    pub(crate) fn send(
        &mut self,
        payload: &[u8],
        while_waiting: &mut dyn FnMut(),
    ) -> Result<Answer, Failure> {
        let mut while_waiting = Some(while_waiting);
        catch_unwind(AssertUnwindSafe(|| {
            self.exchange(payload, &mut while_waiting)
        }))
        .unwrap_or_else(|_| {
            // Whatever state the connection was left in, it is not to be trusted.
            self.disconnect();
            Err(Failure::Request("the HTTP client panicked".into()))
        })
    }

    /// Closes the connection, if one is open.
    pub(crate) fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close();
        }
    }

    fn exchange(
        &mut self,
        payload: &[u8],
        while_waiting: &mut Option<&mut dyn FnMut()>,
    ) -> Result<Answer, Failure> {
        let deadline = deadline_after(self.config.timeout);
        // A kept-alive connection that the receiver wrote to or closed since its last answer
        // is not used again: what waits there answers no request of ours.
        if self.conn.as_mut().is_some_and(|c| !c.is_reusable()) {
            self.disconnect();
        }
        let mut resent = false;
        loop {
            let reused = self.conn.is_some();
            let call = self
                .config
                .template
                .render(payload, &mut self.out)
                .map_err(|e| Failure::Request(e.0))?;
            let conn = match self.conn.take() {
                Some(conn) => conn,
                None => self.open(deadline)?,
            };
            let conn = self.conn.insert(conn);
            let result = match conn.write_all(&self.out, deadline) {
                Ok(()) => {
                    if let Some(work) = while_waiting.take() {
                        work();
                    }
                    read_answer(call, &mut self.input, |buf| conn.read(buf, deadline))
                }
                Err(e) if is_timeout(&e) => Err(ReadError::Io(e)),
                // The receiver may have answered before it stopped reading (a 413 for a body
                // too large): that answer, not the broken write, is the outcome.
                Err(_) => {
                    match read_answer(call, &mut self.input, |buf| conn.read(buf, deadline)) {
                        Ok(answer) => Ok(Answer {
                            keep_alive: false,
                            ..answer
                        }),
                        Err(_) => Err(ReadError::Closed),
                    }
                }
            };
            let failure = match result {
                Ok(answer) => {
                    if !answer.keep_alive {
                        self.disconnect();
                    }
                    // Keep a huge record's buffer for one record only.
                    if self.out.capacity() > 1 << 20 {
                        self.out = Vec::new();
                    }
                    return Ok(answer);
                }
                Err(e) => e,
            };
            self.disconnect();
            return Err(match failure {
                // The receiver closed the kept-alive connection (its keep-alive timeout, a
                // restart) as the request went out: it never read it.
                ReadError::Closed if reused && !resent => {
                    resent = true;
                    continue;
                }
                ReadError::Closed if resent => {
                    Failure::UnusableAgain("the connection closed before an answer".into())
                }
                ReadError::Closed => {
                    Failure::Unusable("the connection closed before an answer".into())
                }
                ReadError::Io(e) if is_timeout(&e) => Failure::Timeout,
                // Over TLS 1.3 a receiver refuses our client certificate only after the
                // handshake, with a fatal alert (rustls's InvalidData): no retry helps.
                ReadError::Io(e)
                    if self.config.tls.is_some() && e.kind() == io::ErrorKind::InvalidData =>
                {
                    Failure::Tls(format!("tls: {e}"))
                }
                ReadError::Io(e) => Failure::Broken(io_reason(&e)),
                ReadError::Unusable(what) if resent => Failure::UnusableAgain(what),
                ReadError::Unusable(what) => Failure::Unusable(what),
            });
        }
    }

    fn open(&mut self, deadline: Instant) -> Result<Conn, Failure> {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(self.config.connect_timeout);
        let addrs = self.peer.addrs(wait).map_err(Failure::Connect)?;
        Conn::open(
            addrs,
            self.config.tls.as_ref(),
            self.config.connect_timeout,
            deadline,
        )
        .map_err(|e| match e {
            OpenError::Connect(reason) => Failure::Connect(reason),
            OpenError::Tls(reason) => Failure::Tls(reason),
        })
    }
}
