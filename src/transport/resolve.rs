//! Name resolution: an IP address is never looked up; a name is looked up on a thread of its
//! own (the system's resolver has no timeout) and the answer kept for [`RESOLVE_TTL`].

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long a looked-up address is reused: a receiver that moves is found again within this
/// time.
pub(crate) const RESOLVE_TTL: Duration = Duration::from_secs(5);

/// Where the receiver is.
#[derive(Debug)]
pub(crate) enum Peer {
    /// An IP address: never looked up.
    Addr(SocketAddr),
    /// A name, looked up again at most once per [`RESOLVE_TTL`].
    Name {
        name: String,
        port: u16,
        cached: Option<(Instant, Vec<SocketAddr>)>,
    },
}

impl Peer {
    /// `host` is a name or an IP address without brackets.
    pub(crate) fn new(host: &str, port: u16) -> Peer {
        match host.parse::<IpAddr>() {
            Ok(ip) => Peer::Addr(SocketAddr::new(ip, port)),
            Err(_) => Peer::Name {
                name: host.to_owned(),
                port,
                cached: None,
            },
        }
    }

    /// The addresses to try, looked up if needed, waiting at most `wait` for the lookup.
    pub(crate) fn addrs(&mut self, wait: Duration) -> Result<&[SocketAddr], String> {
        match self {
            Peer::Addr(addr) => Ok(std::slice::from_ref(addr)),
            Peer::Name { name, port, cached } => {
                let fresh = cached
                    .as_ref()
                    .is_some_and(|(at, _)| at.elapsed() < RESOLVE_TTL);
                if !fresh {
                    *cached = Some((Instant::now(), lookup(name, *port, wait)?));
                }
                Ok(cached.as_ref().map_or(&[][..], |(_, addrs)| &addrs[..]))
            }
        }
    }
}

/// Looks `name` up on a thread of its own, waiting at most `wait` for it.
fn lookup(name: &str, port: u16, wait: Duration) -> Result<Vec<SocketAddr>, String> {
    let resolve = move |name: &str| {
        (name, port)
            .to_socket_addrs()
            .map(|addrs| addrs.collect::<Vec<_>>())
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let owned = name.to_owned();
    let spawned = std::thread::Builder::new()
        .name("http-logger-lookup".into())
        .spawn(move || {
            let _ = tx.send(resolve(&owned));
        });
    let result = match spawned {
        Ok(_) => rx
            .recv_timeout(wait)
            .map_err(|_| "timeout looking up the host".to_owned())?,
        Err(_) => resolve(name),
    };
    match result {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err("host not found".into()),
        Err(e) => Err(format!("host not found: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_address_is_never_looked_up() {
        let mut peer = Peer::new("::1", 8000);
        assert!(matches!(peer, Peer::Addr(_)));
        let addrs = peer.addrs(Duration::ZERO).unwrap().to_vec();
        assert_eq!(addrs, ["[::1]:8000".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn a_name_is_looked_up_once_per_ttl() {
        let mut peer = Peer::new("localhost", 9);
        let first = peer.addrs(Duration::from_secs(5)).unwrap().to_vec();
        assert!(
            first.iter().all(|a| a.port() == 9 && a.ip().is_loopback()),
            "{first:?}"
        );
        let Peer::Name { cached, .. } = &peer else {
            panic!("localhost is a name")
        };
        let at = cached.as_ref().unwrap().0;
        peer.addrs(Duration::from_secs(5)).unwrap();
        let Peer::Name { cached, .. } = &peer else {
            unreachable!()
        };
        assert_eq!(cached.as_ref().unwrap().0, at, "not looked up again");
    }
}
