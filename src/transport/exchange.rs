//! One HTTP/1.1 exchange, framed and parsed by ureq-proto: the request rendered into one
//! buffer (head and body, one write), the answer read from what arrives (one read for a small
//! one). Our code only moves bytes between ureq-proto and the socket.
//!
//! ureq-proto hex-dumps at `TRACE` every byte it writes, and that dump goes to whatever logger
//! the program installed, on our worker thread. So it never sees a header value given to the
//! builder (credentials among them): it writes a placeholder, and the value is put in its place
//! in our buffer only.

use std::io;

use ureq_proto::BodyMode;
use ureq_proto::client::state::RecvResponse;
use ureq_proto::client::{Call, RecvBodyResult, RecvResponseResult, SendRequestResult};
use ureq_proto::http::{self, HeaderName, HeaderValue, Method as HttpMethod, Request, Uri};

use crate::wire::Method;

/// The `User-Agent` of every request.
pub(crate) const USER_AGENT: &str = concat!("http-logger/", env!("CARGO_PKG_VERSION"));
/// The largest response head read; a longer one is not HTTP we want to talk to.
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// The most of a response body read (and thrown away) to keep the connection; past it the
/// connection is closed instead.
const MAX_BODY: u64 = 64 * 1024;
/// The response buffer's first size; it grows up to [`MAX_HEAD`] for a long head.
const READ_BUF: usize = 8 * 1024;

/// Everything a request holds but its payload, built once.
#[derive(Clone)]
pub(crate) struct Template {
    request: Request<()>,
    method: Method,
    /// Each header value given to the builder: the placeholder ureq-proto writes, and the value.
    secrets: Vec<(String, HeaderValue)>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The request holds only placeholders, but the secrets are the values: never shown.
        f.debug_struct("Template")
            .field("method", &self.method)
            .field("uri", self.request.uri())
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// Why a request could not be written.
#[derive(Debug)]
pub(crate) struct RenderError(pub(crate) String);

/// What the headers say of every body: its type and its encoding (gzip). A GET has neither.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BodyHeaders {
    pub(crate) content_type: Option<&'static str>,
    pub(crate) content_encoding: Option<&'static str>,
}

impl Template {
    /// `target` is the url's path and query; `headers` are the builder's, already checked (a
    /// header given there replaces ours of the same name, and `Content-Length` and
    /// `Transfer-Encoding` are ours to say).
    pub(crate) fn new(
        method: Method,
        target: &str,
        host_header: &str,
        body: BodyHeaders,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<Template, RenderError> {
        let mut request = Request::new(());
        *request.method_mut() = match method {
            Method::Post => HttpMethod::POST,
            Method::Get => HttpMethod::GET,
        };
        *request.uri_mut() = target
            .parse::<Uri>()
            .map_err(|e| RenderError(format!("invalid url: {e}")))?;
        let map = request.headers_mut();
        let given = |name: &HeaderName| headers.iter().any(|(n, _)| n == name);
        let mut ours = vec![
            (http::header::HOST, host_header.to_owned()),
            (http::header::USER_AGENT, USER_AGENT.to_owned()),
            (http::header::ACCEPT, "*/*".to_owned()),
        ];
        if let Some(content_type) = body.content_type {
            ours.push((http::header::CONTENT_TYPE, content_type.to_owned()));
        }
        if let Some(content_encoding) = body.content_encoding {
            ours.push((http::header::CONTENT_ENCODING, content_encoding.to_owned()));
        }
        for (name, value) in ours {
            if !given(&name) {
                let value = HeaderValue::try_from(value)
                    .map_err(|e| RenderError(format!("invalid header: {e}")))?;
                map.append(name, value);
            }
        }
        // A placeholder that cannot occur anywhere else in a head: random per logger.
        let nonce = std::collections::hash_map::RandomState::new();
        let nonce = std::hash::BuildHasher::hash_one(&nonce, 0u8);
        let mut secrets = Vec::new();
        for (name, value) in headers {
            if *name == http::header::CONTENT_LENGTH || *name == http::header::TRANSFER_ENCODING {
                continue;
            }
            // All of one length: none is the start of another.
            let placeholder = format!("http-logger-secret-{nonce:016x}-{:06}", secrets.len());
            let masked = HeaderValue::try_from(placeholder.as_str())
                .map_err(|e| RenderError(format!("invalid header: {e}")))?;
            map.append(name.clone(), masked);
            secrets.push((placeholder, value.clone()));
        }
        let template = Template {
            request,
            method,
            secrets,
        };
        // Headers that no request can carry (two `Host`, say) are refused now, at build time,
        // not at every record.
        let probe = match method {
            Method::Post => &b""[..],
            Method::Get => target.as_bytes(),
        };
        template.render(probe, &mut Vec::new())?;
        Ok(template)
    }

    /// Writes one request into `out` (cleared first): for a POST `payload` is the body, for a
    /// GET the target with its query. Returns the call, ready to read the answer.
    pub(crate) fn render(
        &self,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Call<RecvResponse>, RenderError> {
        let proto = |e: ureq_proto::Error| RenderError(format!("could not write the request: {e}"));
        let mut request = self.request.clone();
        match self.method {
            Method::Post => {
                request.headers_mut().insert(
                    http::header::CONTENT_LENGTH,
                    HeaderValue::from(payload.len()),
                );
            }
            Method::Get => {
                *request.uri_mut() =
                    Uri::try_from(payload).map_err(|e| RenderError(format!("invalid url: {e}")))?;
            }
        }
        let mut call = Call::new(request).map_err(proto)?.proceed();
        out.clear();
        out.resize(4096, 0);
        let mut used = 0;
        loop {
            match call.write(&mut out[used..]) {
                Ok(n) => used += n,
                Err(ureq_proto::Error::OutputOverflow) if out.len() < MAX_HEAD => {
                    let grown = out.len() * 2;
                    out.resize(grown, 0);
                }
                Err(e) => return Err(proto(e)),
            }
            if call.can_proceed() {
                break;
            }
            if used == out.len() {
                let grown = out.len() * 2;
                out.resize(grown, 0);
            }
        }
        out.truncate(used);
        self.unmask(out);
        let call = match call.proceed().map_err(proto)? {
            Some(SendRequestResult::RecvResponse(call)) => call,
            Some(SendRequestResult::SendBody(mut call)) => {
                // The body goes straight into our buffer, after the head, not through
                // ureq-proto's writer (and its dump): it only counts it.
                out.extend_from_slice(payload);
                call.consume_direct_write(payload.len()).map_err(proto)?;
                call.proceed()
                    .ok_or_else(|| RenderError("the request body was not all written".into()))?
            }
            Some(SendRequestResult::Await100(_)) | None => {
                return Err(RenderError("unexpected request state".into()));
            }
        };
        Ok(call)
    }

    /// Puts each secret value in the place of its placeholder in the head.
    fn unmask(&self, head: &mut Vec<u8>) {
        for (placeholder, value) in &self.secrets {
            let needle = placeholder.as_bytes();
            if let Some(at) = head.windows(needle.len()).position(|w| w == needle) {
                head.splice(at..at + needle.len(), value.as_bytes().iter().copied());
            }
        }
    }
}

/// What was read of one answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// The `Retry-After` value, if the answer has one.
    pub(crate) retry_after: Option<String>,
    /// Whether the connection can carry the next request.
    pub(crate) keep_alive: bool,
}

/// Why no answer could be taken.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The connection ended before any byte of an answer.
    Closed,
    /// A timeout, or another I/O error.
    Io(io::Error),
    /// Bytes that are not an answer we can use: not HTTP, a head over [`MAX_HEAD`], a 101, an
    /// answer cut short in its head.
    Unusable(String),
}

/// Reads the answer to `call` through `read` (one call reads what has arrived; `Ok(0)` is the
/// end of the connection) into `input`, reused from one answer to the next. Once the head is
/// read the status stands: a body that is cut short, malformed, too long or delimited by the
/// close only costs the connection, and so do bytes past the end of the answer.
pub(crate) fn read_answer(
    mut call: Call<RecvResponse>,
    input: &mut Vec<u8>,
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
) -> Result<Answer, ReadError> {
    if input.len() < READ_BUF {
        input.resize(READ_BUF, 0);
    }
    let (mut start, mut filled, mut received) = (0, 0, 0);
    let response = loop {
        if filled > start {
            match call.try_response(&input[start..filled], false) {
                Ok((used, Some(response))) => {
                    start += used;
                    break response;
                }
                // An interim answer (100, 103) was taken: read on.
                Ok((used, None)) if used > 0 => {
                    start += used;
                    continue;
                }
                Ok(_) => {}
                Err(e) => return Err(ReadError::Unusable(format!("not HTTP: {e}"))),
            }
        }
        if filled == input.len() {
            if start > 0 {
                input.copy_within(start..filled, 0);
                filled -= start;
                start = 0;
            } else if input.len() >= MAX_HEAD {
                return Err(ReadError::Unusable(format!(
                    "a response head over {} KiB",
                    MAX_HEAD / 1024
                )));
            } else {
                let grown = (input.len() * 2).min(MAX_HEAD);
                input.resize(grown, 0);
            }
        }
        let n = read(&mut input[filled..]).map_err(|e| closed_or(e, received))?;
        if n == 0 {
            return Err(if received == 0 {
                ReadError::Closed
            } else {
                ReadError::Unusable("the answer ended in its head".into())
            });
        }
        filled += n;
        received += n;
    };
    let status = response.status().as_u16();
    if status == 101 {
        return Err(ReadError::Unusable(
            "101 Switching Protocols, which no log record asks for".into(),
        ));
    }
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let answer = |keep_alive| Answer {
        status,
        retry_after: retry_after.clone(),
        keep_alive,
    };
    let mut body = match call.proceed() {
        Some(RecvResponseResult::RecvBody(body)) => body,
        Some(RecvResponseResult::Cleanup(done)) => {
            return Ok(answer(!done.must_close_connection() && start == filled));
        }
        Some(RecvResponseResult::Redirect(done)) => {
            return Ok(answer(!done.must_close_connection() && start == filled));
        }
        None => return Err(ReadError::Unusable("no answer".into())),
    };
    // A body that ends only when the receiver closes is not waited for.
    if matches!(body.body_mode(), BodyMode::CloseDelimited) {
        return Ok(answer(false));
    }
    let mut scratch = [0u8; 4096];
    let mut read_body = 0u64;
    loop {
        if filled > start {
            match body.read(&input[start..filled], &mut scratch) {
                Ok((used, _)) => {
                    start += used;
                    read_body += used as u64;
                }
                Err(_) => return Ok(answer(false)),
            }
        }
        if body.can_proceed() {
            let keep = match body.proceed() {
                Some(RecvBodyResult::Cleanup(done)) => !done.must_close_connection(),
                Some(RecvBodyResult::Redirect(done)) => !done.must_close_connection(),
                None => false,
            };
            return Ok(answer(keep && start == filled));
        }
        if read_body > MAX_BODY {
            return Ok(answer(false));
        }
        if start == filled {
            start = 0;
            filled = 0;
        } else if filled == input.len() {
            input.copy_within(start..filled, 0);
            filled -= start;
            start = 0;
        }
        match read(&mut input[filled..]) {
            Ok(0) | Err(_) => return Ok(answer(false)),
            Ok(n) => filled += n,
        }
    }
}

/// A reset before any byte of the answer is the receiver closing, as an end of stream is (and
/// over TLS, an end without `close_notify`).
fn closed_or(e: io::Error, received: usize) -> ReadError {
    let closing = matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    );
    if closing && received == 0 {
        ReadError::Closed
    } else {
        ReadError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    fn template(method: Method, headers: &[(&str, &str)]) -> Template {
        let headers: Vec<_> = headers
            .iter()
            .map(|(n, v)| {
                (
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect();
        let content_type = (method == Method::Post).then_some("application/x-www-form-urlencoded");
        let body = BodyHeaders {
            content_type,
            content_encoding: None,
        };
        Template::new(method, "/log?app=1", "h:8000", body, &headers).unwrap()
    }

    /// A call that has sent a POST, ready to read its answer.
    fn call() -> Call<RecvResponse> {
        template(Method::Post, &[])
            .render(b"a=1", &mut Vec::new())
            .unwrap()
    }

    /// Reads `answer` handed out in pieces of `size` bytes, then `end`.
    fn read_in(answer: &[u8], size: usize, end: io::Result<usize>) -> Result<Answer, ReadError> {
        let mut pieces: VecDeque<Vec<u8>> = answer.chunks(size).map(<[u8]>::to_vec).collect();
        let mut end = Some(end);
        read_answer(call(), &mut Vec::new(), |buf| match pieces.pop_front() {
            Some(piece) => {
                let n = piece.len().min(buf.len());
                buf[..n].copy_from_slice(&piece[..n]);
                if n < piece.len() {
                    pieces.push_front(piece[n..].to_vec());
                }
                Ok(n)
            }
            None => end.take().unwrap_or(Ok(0)),
        })
    }

    fn ok(status: u16, keep_alive: bool) -> Answer {
        Answer {
            status,
            retry_after: None,
            keep_alive,
        }
    }

    fn in_any_pieces(answer: &[u8], want: &Answer) {
        for size in [1, 2, 7, 64, answer.len()] {
            let got = read_in(answer, size, Ok(0));
            assert_eq!(got.as_ref().ok(), Some(want), "pieces of {size}: {got:?}");
        }
    }

    #[test]
    fn a_post_is_one_buffer_head_then_body() {
        let mut out = Vec::new();
        template(Method::Post, &[])
            .render(b"a=1&b=2", &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /log?app=1 HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("\r\nhost: h:8000\r\n"), "{text}");
        assert!(text.contains("\r\ncontent-length: 7\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\na=1&b=2"), "{text}");
    }

    #[test]
    fn a_get_sends_its_target_and_no_body() {
        let mut out = Vec::new();
        template(Method::Get, &[])
            .render(b"/log?app=1&name=x", &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("GET /log?app=1&name=x HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"), "{text}");
        assert!(!text.contains("content-length"), "{text}");
    }

    #[test]
    fn header_values_reach_the_buffer_and_replace_ours() {
        let t = template(
            Method::Post,
            &[
                ("authorization", "Basic dXNlcjpwdw=="),
                ("user-agent", "mine"),
                ("x-key", "k1"),
            ],
        );
        let mut out = Vec::new();
        t.render(b"", &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\r\nauthorization: Basic dXNlcjpwdw==\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nx-key: k1\r\n"), "{text}");
        assert!(text.contains("\r\nuser-agent: mine\r\n"), "{text}");
        assert!(
            !text.contains("http-logger/"),
            "the builder's user-agent replaces ours"
        );
        assert!(
            !text.contains("http-logger-secret"),
            "no placeholder left: {text}"
        );
        assert!(!format!("{t:?}").contains("dXNlcjpwdw"), "{t:?}");
    }

    #[test]
    fn many_headers_of_one_name_each_get_their_own_value() {
        let names = [
            "x-a", "x-b", "x-c", "x-d", "x-e", "x-f", "x-g", "x-h", "x-i", "x-j", "x-a",
        ];
        let headers: Vec<(String, String)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), format!("value-{i}")))
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let mut out = Vec::new();
        template(Method::Post, &headers)
            .render(b"", &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        for (i, name) in names.iter().enumerate() {
            assert!(
                text.contains(&format!("\r\n{name}: value-{i}\r\n")),
                "{name} {i}: {text}"
            );
        }
        assert!(!text.contains("http-logger-secret"), "{text}");
    }

    #[test]
    fn headers_no_request_can_carry_are_refused_when_built() {
        let headers = [
            (
                HeaderName::from_static("host"),
                HeaderValue::from_static("a"),
            ),
            (
                HeaderName::from_static("host"),
                HeaderValue::from_static("b"),
            ),
        ];
        let made = Template::new(Method::Post, "/", "h", BodyHeaders::default(), &headers);
        assert!(made.is_err(), "two Host headers");
    }

    #[test]
    fn a_content_length_body_is_read_and_the_connection_kept() {
        in_any_pieces(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n",
            &ok(200, true),
        );
        in_any_pieces(b"HTTP/1.1 204 No Content\r\n\r\n", &ok(204, true));
        in_any_pieces(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            &ok(200, true),
        );
    }

    #[test]
    fn what_the_head_says_about_the_connection_is_followed() {
        in_any_pieces(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            &ok(200, false),
        );
        // Python's BaseHTTPRequestHandler: HTTP/1.0, a body that ends at the close.
        in_any_pieces(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\n", &ok(200, false));
    }

    #[test]
    fn status_and_retry_after_are_taken() {
        let got = read_in(
            b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
            9,
            Ok(0),
        );
        let got = got.unwrap();
        assert_eq!((got.status, got.retry_after.as_deref()), (503, Some("7")));
    }

    #[test]
    fn interim_answers_are_skipped() {
        let answer = b"HTTP/1.1 100 Continue\r\n\r\n\
            HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
            HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        in_any_pieces(answer, &ok(201, true));
    }

    #[test]
    fn bytes_past_the_answer_a_cut_body_or_a_long_body_cost_the_connection_only() {
        let stray = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(read_in(stray, stray.len(), Ok(0)).unwrap(), ok(200, false));
        let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok";
        assert_eq!(read_in(cut, 5, Ok(0)).unwrap(), ok(200, false));
        let timeout = read_in(cut, 5, Err(io::ErrorKind::TimedOut.into()));
        assert_eq!(timeout.unwrap(), ok(200, false), "the status stands");
        let mut long = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec();
        long.resize(long.len() + 1_000_000, b'x');
        assert_eq!(read_in(&long, 8192, Ok(0)).unwrap(), ok(200, false));
    }

    #[test]
    fn nothing_then_the_end_is_a_close_and_junk_or_a_101_is_unusable() {
        assert!(matches!(read_in(b"", 1, Ok(0)), Err(ReadError::Closed)));
        // Over TLS, a close without close_notify.
        let tls_eof = read_in(b"", 1, Err(io::ErrorKind::UnexpectedEof.into()));
        assert!(matches!(tls_eof, Err(ReadError::Closed)), "{tls_eof:?}");
        let reset = read_in(b"", 1, Err(io::ErrorKind::ConnectionReset.into()));
        assert!(matches!(reset, Err(ReadError::Closed)), "{reset:?}");
        let timeout = read_in(b"", 1, Err(io::ErrorKind::TimedOut.into()));
        assert!(matches!(timeout, Err(ReadError::Io(_))), "{timeout:?}");
        for junk in [
            &b"\x00\xffNOT HTTP AT ALL\xfe\r\n\r\n"[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Len",
        ] {
            let got = read_in(junk, 3, Ok(0));
            assert!(
                matches!(got, Err(ReadError::Unusable(_))),
                "{junk:?}: {got:?}"
            );
        }
    }

    #[test]
    fn a_head_over_64_kib_is_unusable_after_reading_at_most_that() {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        while head.len() < 2 * MAX_HEAD {
            head.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let mut offered = 0;
        let got = read_answer(call(), &mut Vec::new(), |buf| {
            let n = buf.len().min(head.len() - offered);
            buf[..n].copy_from_slice(&head[offered..offered + n]);
            offered += n;
            Ok(n)
        });
        assert!(matches!(got, Err(ReadError::Unusable(_))), "{got:?}");
        assert!(offered <= MAX_HEAD, "read {offered} bytes");
    }
}
