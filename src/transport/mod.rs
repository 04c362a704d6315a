//! One HTTP request per record over a kept-alive connection, and what its outcome means: plain
//! `http://` through our own HTTP/1.1 client ([`http1`]), `https://` through ureq.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::http::{HeaderName, HeaderValue};
// ureq's `unversioned` API (not under semver: Cargo.toml pins ureq to 3.5.x) is the only way to
// give it a resolver.
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::transport::endpoint::Endpoint;
use crate::transport::http1::{Http1, USER_AGENT};
use crate::wire::Method;
use crate::wire::encode::{encode_form, encode_json};
use crate::wire::fields::FieldSource;

pub(crate) mod endpoint;
mod http1;

/// The most of a response body read (and thrown away) so the connection can be reused.
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// ureq resolves the host before every request, kept-alive connection or not, and with a
/// timeout set it starts a thread for each lookup. An IP address needs no lookup; a name is
/// looked up again at most once per [`RESOLVE_TTL`], so a receiver that moves is found again.
#[derive(Debug, Default)]
struct CachingResolver {
    inner: DefaultResolver,
    cache: Mutex<Option<(Instant, ResolvedSocketAddrs)>>,
}

/// How long a looked-up address is reused, by either client: a receiver that moves is found
/// again within this time.
pub(crate) const RESOLVE_TTL: Duration = Duration::from_secs(5);

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if let Some(authority) = uri.authority() {
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            if let Ok(ip) = host.parse::<IpAddr>() {
                let https = uri.scheme_str() == Some("https");
                let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
                let mut addrs = self.empty();
                addrs.push(SocketAddr::new(ip, port));
                return Ok(addrs);
            }
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, addrs)) = &*cache {
            if at.elapsed() < RESOLVE_TTL {
                return Ok(addrs.clone());
            }
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        *cache = Some((Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

/// What became of one attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A 2xx answer.
    Delivered,
    /// Worth another try: a connection error, a timeout, 408, 429 or a 5xx other than 501.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Never worth another try: any other status, or a request that cannot be made.
    Rejected { reason: String },
}

/// The settings a transport is made from.
#[derive(Debug, Clone)]
pub(crate) struct TransportConfig {
    pub(crate) endpoint: Endpoint,
    pub(crate) method: Method,
    /// Checked at build time; `Authorization` marked sensitive.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// `Some` with `secure(true)`.
    pub(crate) tls: Option<ureq::tls::TlsConfig>,
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    /// One JSON object per request instead of a form.
    pub(crate) json: bool,
}

/// Sends records; owns the request buffer, reused from one record to the next.
pub(crate) struct Transport {
    client: Client,
    config: TransportConfig,
    /// The POST form body, or the whole GET url.
    buf: String,
    /// The POST JSON body.
    json: Vec<u8>,
}

/// What sends the requests.
enum Client {
    /// Plain `http://`: a kept-alive connection of our own.
    Http1(Http1),
    /// `https://`: ureq over rustls.
    Ureq(ureq::Agent),
}

impl Transport {
    pub(crate) fn new(config: TransportConfig) -> Transport {
        let client = if config.endpoint.base.starts_with("https://") {
            Client::Ureq(ureq_agent(&config))
        } else {
            Client::Http1(Http1::new(&config))
        };
        Transport {
            client,
            config,
            buf: String::new(),
            json: Vec::new(),
        }
    }

    /// Encodes `fields` for the next [`send`](Transport::send)s.
    pub(crate) fn prepare(&mut self, fields: &dyn FieldSource) {
        if self.config.json {
            encode_json(fields, &mut self.json);
            return;
        }
        self.buf.clear();
        if self.config.method == Method::Get {
            self.buf.push_str(&self.config.endpoint.base);
            self.buf.push(self.config.endpoint.query_separator);
        }
        encode_form(fields, &mut self.buf);
    }

    /// Sends the prepared record once. A panic in the HTTP stack (which would otherwise end
    /// the worker, and all delivery with it) rejects the record.
    pub(crate) fn send(&mut self) -> Outcome {
        let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.send_once()));
        sent.unwrap_or_else(|_| {
            if let Client::Http1(http) = &mut self.client {
                // Whatever state the connection was left in, it is not to be trusted.
                http.disconnect();
            }
            Outcome::Rejected {
                reason: "the HTTP client panicked".to_owned(),
            }
        })
    }

    fn send_once(&mut self) -> Outcome {
        match &mut self.client {
            Client::Http1(http) => match self.config.method {
                Method::Post if self.config.json => http.post(&self.json),
                Method::Post => http.post(self.buf.as_bytes()),
                Method::Get => http.get(&self.buf),
            },
            Client::Ureq(agent) => send_ureq(agent, &self.config, &self.buf, &self.json),
        }
    }
}

fn ureq_agent(config: &TransportConfig) -> ureq::Agent {
    let mut agent = ureq::Agent::config_builder();
    if let Some(tls) = &config.tls {
        agent = agent.tls_config(tls.clone());
    }
    let agent = agent
        .http_status_as_error(false)
        .timeout_connect(Some(config.connect_timeout))
        .timeout_global(Some(config.timeout))
        .max_redirects(0)
        .max_redirects_will_error(false)
        .max_idle_connections_per_host(1)
        .proxy(None)
        .user_agent(USER_AGENT)
        .build();
    ureq::Agent::with_parts(agent, DefaultConnector::new(), CachingResolver::default())
}

/// One request through ureq: the form body or JSON body for POST, the url in `buf` for GET.
fn send_ureq(agent: &ureq::Agent, config: &TransportConfig, buf: &str, json: &[u8]) -> Outcome {
    let result = match config.method {
        Method::Post => {
            let mut req = agent.post(&config.endpoint.base);
            for (name, value) in &config.headers {
                req = req.header(name, value);
            }
            if config.json {
                req.content_type("application/json").send(json)
            } else {
                req.content_type("application/x-www-form-urlencoded")
                    .send(buf.as_bytes())
            }
        }
        Method::Get => {
            let mut req = agent.get(buf);
            for (name, value) in &config.headers {
                req = req.header(name, value);
            }
            req.call()
        }
    };
    match result {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            // Read what is left so the connection goes back to the pool. Its content is
            // of no use; an error here only costs the connection.
            let _ = response
                .body_mut()
                .with_config()
                .limit(MAX_RESPONSE_BODY)
                .read_to_vec();
            classify_status(status, retry_after)
        }
        Err(err) => classify_error(&err),
    }
}

pub(crate) fn classify_status(status: u16, retry_after: Option<Duration>) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500 | 502..=599 => Outcome::Transient {
            reason: format!("receiver answered {status}"),
            retry_after,
        },
        _ => Outcome::Rejected {
            reason: format!("receiver answered {status}"),
        },
    }
}

fn classify_error(err: &ureq::Error) -> Outcome {
    use ureq::Error as E;
    let reason = err.to_string();
    match err {
        // rustls reports a failed handshake (unknown issuer, wrong host name, ...) as
        // InvalidData: retrying cannot help.
        E::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => Outcome::Rejected { reason },
        E::Io(_) | E::Timeout(_) | E::ConnectionFailed | E::HostNotFound | E::Protocol(_) => {
            Outcome::Transient {
                reason,
                retry_after: None,
            }
        }
        _ => Outcome::Rejected { reason },
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_delivered_transient_or_rejected() {
        for s in [200, 201, 204, 299] {
            assert_eq!(classify_status(s, None), Outcome::Delivered, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(
                matches!(classify_status(s, None), Outcome::Transient { .. }),
                "{s}"
            );
        }
        for s in [100, 301, 302, 304, 400, 401, 403, 404, 413, 414, 501] {
            assert!(
                matches!(classify_status(s, None), Outcome::Rejected { .. }),
                "{s}"
            );
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let wait = parse_retry_after(&later).expect("a date parses");
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
