//! Where records go: the `host` and `url` given to the builder, checked and taken apart once at
//! build time.

use crate::error::{Error, ErrorKind};

/// A checked destination: `scheme://host[:port]url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// The full url records are sent to, without the fields: for messages and `Debug`.
    pub(crate) base: String,
    /// The separator before the fields of a GET: `&` when `url` already holds a `?` (Python's
    /// rule), else `?`.
    pub(crate) query_separator: char,
    /// The request target: `url`, a path with its query.
    pub(crate) target: String,
    /// The host without brackets: a name to look up, or an IP address.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The `Host` header: the host as given, with the port unless it is the scheme's default.
    pub(crate) host_header: String,
}

impl Endpoint {
    /// Checks `host` (`name`, `name:port`, `[v6]`, `[v6]:port`) and `url` (starts with `/`).
    pub(crate) fn parse(host: &str, url: &str, secure: bool) -> Result<Endpoint, Error> {
        check_host(host)?;
        check_url(url)?;
        let scheme = if secure { "https" } else { "http" };
        let base = format!("{scheme}://{host}{url}");
        if let Err(e) = base.parse::<ureq_proto::http::Uri>() {
            return Err(Error::new(
                ErrorKind::InvalidUrl,
                format!("invalid url {url:?} for host {host:?}"),
            )
            .with_source(e));
        }
        let query_separator = if url.contains('?') { '&' } else { '?' };
        let default_port = if secure { 443 } else { 80 };
        let (name, port) = split_port(host);
        let port = port.map_or(default_port, |p| p.parse().unwrap_or(default_port));
        let host_header = if port == default_port {
            name.to_owned()
        } else {
            format!("{name}:{port}")
        };
        Ok(Endpoint {
            base,
            query_separator,
            target: url.to_owned(),
            host: name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            host_header,
        })
    }
}

/// `host` (already checked) as its name and its port, if it has one.
fn split_port(host: &str) -> (&str, Option<&str>) {
    if host.starts_with('[') {
        match host.rsplit_once("]:") {
            Some((v6, port)) => (&host[..v6.len() + 1], Some(port)),
            None => (host, None),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    }
}

fn host_error(message: String) -> Result<(), Error> {
    Err(Error::new(ErrorKind::InvalidHost, message))
}

fn check_host(host: &str) -> Result<(), Error> {
    if host.is_empty() {
        return host_error("invalid host: it is empty; give host or host:port".into());
    }
    if host.contains(['\r', '\n']) {
        return host_error("invalid host: it contains a CR or LF".into());
    }
    if host.contains('@') {
        // Never echo this one: it may hold a password.
        return host_error(
            "invalid host: user info (`user:password@`) is not allowed; use credentials(user, password)".into(),
        );
    }
    if host.contains("://") {
        return host_error(format!(
            "invalid host {host:?}: a scheme is not allowed; give host or host:port, and secure(true) for HTTPS"
        ));
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return host_error(format!("invalid host {host:?}: `[` without a closing `]`"));
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return host_error(format!(
                "invalid host {host:?}: {v6:?} in brackets is not an IPv6 address"
            ));
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => {
                    return host_error(format!(
                        "invalid host {host:?}: only `:port` may follow `]`"
                    ));
                }
            },
        }
    } else {
        match host.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return host_error(format!(
                    "invalid host {host:?}: an IPv6 address must be in brackets, as [::1]:8000"
                ));
            }
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    if let Some(name) = name {
        if name.is_empty() {
            return host_error(format!(
                "invalid host {host:?}: the name before `:` is empty"
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return host_error(format!(
                "invalid host {host:?}: {c:?} cannot be in a host name (give host or host:port, the path goes in url)"
            ));
        }
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|p| p != 0);
        if !valid {
            return host_error(format!(
                "invalid port {port:?} in host {host:?}: expected a number from 1 to 65535"
            ));
        }
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), Error> {
    let url_error = |message: String| Err(Error::new(ErrorKind::InvalidUrl, message));
    if url.contains(['\r', '\n']) {
        return url_error("invalid url: it contains a CR or LF".into());
    }
    if !url.starts_with('/') {
        return url_error(format!("invalid url {url:?}: it must start with `/`"));
    }
    if let Some(c) = url
        .chars()
        .find(|c| c.is_ascii_control() || *c == ' ' || !c.is_ascii())
    {
        return url_error(format!(
            "invalid url {url:?}: {c:?} must be percent-encoded"
        ));
    }
    if url.contains('#') {
        return url_error(format!(
            "invalid url {url:?}: a fragment (`#`) is never sent"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(host: &str, url: &str) -> Endpoint {
        Endpoint::parse(host, url, false).unwrap_or_else(|e| panic!("{host} {url}: {e}"))
    }

    fn err(host: &str, url: &str) -> Error {
        match Endpoint::parse(host, url, false) {
            Ok(e) => panic!("{host} {url} accepted as {e:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_host_host_port_and_bracketed_v6() {
        assert_eq!(ok("localhost", "/").base, "http://localhost/");
        assert_eq!(
            ok("localhost:8000", "/log").base,
            "http://localhost:8000/log"
        );
        assert_eq!(ok("[::1]:8000", "/").base, "http://[::1]:8000/");
        assert_eq!(ok("[::1]", "/").base, "http://[::1]/");
        assert_eq!(ok("127.0.0.1:65535", "/").base, "http://127.0.0.1:65535/");
        assert_eq!(
            ok("log-sink.internal_1", "/").base,
            "http://log-sink.internal_1/"
        );
        let secure = Endpoint::parse("example.com", "/x", true).unwrap();
        assert_eq!(secure.base, "https://example.com/x");
    }

    #[test]
    fn the_parts_are_taken_apart_once() {
        let e = ok("[::1]:8000", "/log?a=1");
        assert_eq!(
            (e.host.as_str(), e.port, e.host_header.as_str()),
            ("::1", 8000, "[::1]:8000")
        );
        assert_eq!(e.target, "/log?a=1");
        let e = ok("logs.internal:80", "/");
        assert_eq!((e.host.as_str(), e.port), ("logs.internal", 80));
        assert_eq!(
            e.host_header, "logs.internal",
            "the default port is not written"
        );
        let e = Endpoint::parse("[::1]", "/", true).unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.host_header.as_str()),
            ("::1", 443, "[::1]")
        );
        let e = Endpoint::parse("example.com:8443", "/", true).unwrap();
        assert_eq!(e.host_header, "example.com:8443");
    }

    #[test]
    fn query_separator_follows_python() {
        assert_eq!(ok("h", "/log").query_separator, '?');
        assert_eq!(ok("h", "/log?src=app").query_separator, '&');
    }

    #[test]
    fn refuses_bad_hosts_with_a_message_that_says_why() {
        let cases = [
            ("", "empty"),
            ("http://localhost:8000", "scheme"),
            ("localhost:", "port"),
            ("localhost:0", "port"),
            ("localhost:65536", "port"),
            ("localhost:80a", "port"),
            ("localhost:-1", "port"),
            (":8000", "empty"),
            ("::1", "brackets"),
            ("[::1", "closing"),
            ("[nope]:80", "IPv6"),
            ("[::1]x", "only `:port`"),
            ("local host", "' '"),
            ("localhost/log", "'/'"),
            ("local\rhost", "CR or LF"),
            ("localhost\n", "CR or LF"),
        ];
        for (host, needle) in cases {
            let e = err(host, "/");
            assert_eq!(e.kind(), ErrorKind::InvalidHost, "{host:?}");
            assert!(e.to_string().contains(needle), "{host:?}: {e}");
        }
    }

    #[test]
    fn user_info_is_refused_without_echoing_it() {
        let e = err("user:secret@localhost", "/");
        assert_eq!(e.kind(), ErrorKind::InvalidHost);
        assert!(e.to_string().contains("credentials"), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(!format!("{e:?}").contains("secret"), "{e:?}");
    }

    #[test]
    fn refuses_bad_urls() {
        let cases = [
            ("", "start with `/`"),
            ("log", "start with `/`"),
            ("/a\r\nX-Injected: 1", "CR or LF"),
            ("/a b", "percent-encoded"),
            ("/a\0", "percent-encoded"),
            ("/é", "percent-encoded"),
            ("/a#frag", "fragment"),
        ];
        for (url, needle) in cases {
            let e = err("localhost", url);
            assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{url:?}");
            assert!(e.to_string().contains(needle), "{url:?}: {e}");
        }
    }
}
