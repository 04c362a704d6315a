//! One connection to the receiver, plain TCP or TLS: opened within the connect timeout, every
//! read and write ending by the request's deadline, checked before it is used again, and closed
//! so that the receiver sees a clean end.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};
use socket2::SockRef;

/// How far a socket timeout may exceed the time left before it is lowered: a request may
/// overrun its deadline by this much, and a fast request never pays a `setsockopt`.
const SLACK: Duration = Duration::from_millis(5);
/// Less time left than this is no time left.
const MIN_WAIT: Duration = Duration::from_millis(1);
/// The longest socket timeout set; a longer wait is made of several.
const MAX_SOCKET_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The most bytes read and thrown away before closing a connection the receiver wrote to
/// unasked, so that the close is a FIN and not a reset (which could discard what the receiver
/// has not read yet).
const MAX_DRAIN: usize = 64 * 1024;

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// No TCP connection: refused, unreachable, timed out, or the name not found.
    Connect(String),
    /// The TLS handshake failed: the receiver's certificate, or ours, was refused.
    Tls(String),
}

/// The receiver's TLS identity: the settings and the name its certificate must have.
#[derive(Debug, Clone)]
pub(crate) struct TlsTarget {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

/// An open connection and the socket timeouts it has now.
pub(crate) struct Conn {
    tcp: TcpStream,
    /// `Some` over HTTPS.
    tls: Option<Box<ClientConnection>>,
    read_timeout: Duration,
    write_timeout: Duration,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// Connects to the first of `addrs` that takes a connection, then completes the TLS
    /// handshake if `tls` says so, all within `connect_timeout` and by `deadline`.
    pub(crate) fn open(
        addrs: &[SocketAddr],
        tls: Option<&TlsTarget>,
        connect_timeout: Duration,
        deadline: Instant,
    ) -> Result<Conn, OpenError> {
        let connect_deadline = deadline.min(Instant::now() + connect_timeout);
        let tcp = connect(addrs, connect_deadline).map_err(OpenError::Connect)?;
        let socket_timeout = time_left(deadline)
            .unwrap_or(MIN_WAIT)
            .min(MAX_SOCKET_TIMEOUT);
        let setup = tcp
            .set_nodelay(true)
            .and_then(|()| tcp.set_read_timeout(Some(socket_timeout)))
            .and_then(|()| tcp.set_write_timeout(Some(socket_timeout)));
        if let Err(e) = setup {
            return Err(OpenError::Connect(format!("connection failed: {e}")));
        }
        let mut conn = Conn {
            tcp,
            tls: None,
            read_timeout: socket_timeout,
            write_timeout: socket_timeout,
        };
        if let Some(tls) = tls {
            conn.handshake(tls, connect_deadline)?;
        }
        Ok(conn)
    }

    fn handshake(&mut self, tls: &TlsTarget, deadline: Instant) -> Result<(), OpenError> {
        let mut client = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(|e| OpenError::Tls(format!("tls: {e}")))?;
        // By hand, one socket call at a time, each by the deadline: rustls's own loops would
        // go on as long as a receiver trickles bytes in.
        while client.is_handshaking() {
            let step = if client.wants_write() {
                self.write_tls(&mut client, deadline)
            } else {
                self.read_tls(&mut client, deadline).and_then(|n| {
                    if n == 0 {
                        Err(io::ErrorKind::UnexpectedEof.into())
                    } else {
                        Ok(())
                    }
                })
            };
            match step {
                Ok(()) => {}
                // A refused handshake (unknown issuer, wrong name, an alert): no retry helps.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(OpenError::Tls(format!("tls handshake failed: {e}")));
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(OpenError::Tls(
                        "tls handshake failed: the receiver closed the connection".into(),
                    ));
                }
                Err(e) => return Err(OpenError::Connect(io_reason(&e))),
            }
        }
        // The handshake's last flight, if any.
        while client.wants_write() {
            self.write_tls(&mut client, deadline)
                .map_err(|e| OpenError::Connect(io_reason(&e)))?;
        }
        self.tls = Some(Box::new(client));
        Ok(())
    }

    /// Writes what rustls has to send, one socket call, by `deadline`.
    fn write_tls(&mut self, tls: &mut ClientConnection, deadline: Instant) -> io::Result<()> {
        let tcp = &self.tcp;
        let set = |t| tcp.set_write_timeout(Some(t));
        by_deadline(deadline, &mut self.write_timeout, set, || {
            tls.write_tls(&mut &*tcp)
        })?;
        Ok(())
    }

    /// Reads what has arrived into rustls and processes it, one socket call, by `deadline`.
    /// `Ok(0)` is the end of the connection.
    fn read_tls(&mut self, tls: &mut ClientConnection, deadline: Instant) -> io::Result<usize> {
        let tcp = &self.tcp;
        let set = |t| tcp.set_read_timeout(Some(t));
        let n = by_deadline(deadline, &mut self.read_timeout, set, || {
            tls.read_tls(&mut &*tcp)
        })?;
        tls.process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(n)
    }

    /// Writes all of `data` (over TLS, every byte it becomes) by `deadline`.
    pub(crate) fn write_all(&mut self, mut data: &[u8], deadline: Instant) -> io::Result<()> {
        if let Some(mut tls) = self.tls.take() {
            let written = self.write_all_tls(&mut tls, data, deadline);
            self.tls = Some(tls);
            return written;
        }
        let tcp = &self.tcp;
        let set = |t| tcp.set_write_timeout(Some(t));
        while !data.is_empty() {
            let n = by_deadline(deadline, &mut self.write_timeout, set, || {
                (&*tcp).write(data)
            })?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            data = &data[n..];
        }
        Ok(())
    }

    /// Encrypts `data` into rustls's buffer as far as it takes (it holds a bounded amount),
    /// writes that out one socket call at a time, and so on until all of it is sent.
    fn write_all_tls(
        &mut self,
        tls: &mut ClientConnection,
        mut data: &[u8],
        deadline: Instant,
    ) -> io::Result<()> {
        loop {
            let n = tls.writer().write(data)?;
            data = &data[n..];
            if n == 0 && !data.is_empty() && !tls.wants_write() {
                return Err(io::ErrorKind::WriteZero.into());
            }
            while tls.wants_write() {
                self.write_tls(tls, deadline)?;
            }
            if data.is_empty() {
                return Ok(());
            }
        }
    }

    /// Reads what has arrived, waiting by `deadline` for at least one byte. `Ok(0)` is the end
    /// of the connection (over TLS, a `close_notify`; a close without one is `UnexpectedEof`).
    pub(crate) fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let Some(mut tls) = self.tls.take() else {
            let tcp = &self.tcp;
            let set = |t| tcp.set_read_timeout(Some(t));
            return by_deadline(deadline, &mut self.read_timeout, set, || (&*tcp).read(buf));
        };
        let read = loop {
            match tls.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => break done,
            }
            // Nothing decrypted yet: one more socket read, by the deadline.
            match self.read_tls(&mut tls, deadline) {
                Ok(0) => match tls.reader().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(0),
                    done => break done,
                },
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        self.tls = Some(tls);
        read
    }

    /// Whether this idle connection can carry another request: the receiver has sent nothing
    /// since the last answer and has not closed it. Bytes waiting are an answer to no request
    /// of ours (a second answer, junk, an unsolicited error): read as the next answer they
    /// would be taken for another record's. One non-blocking peek.
    pub(crate) fn is_reusable(&mut self) -> bool {
        if let Some(tls) = &mut self.tls {
            match tls.process_new_packets() {
                Ok(state) if state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed() => {}
                _ => return false,
            }
        }
        let mut byte = [MaybeUninit::<u8>::uninit(); 1];
        matches!(peek_now(&self.tcp, &mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Closes the connection. What the receiver sent unasked is read and dropped first (up to
    /// [`MAX_DRAIN`]), so that the close is a FIN, not a reset that could make the receiver
    /// lose requests it has not read yet.
    pub(crate) fn close(mut self) {
        let tcp = &self.tcp;
        if tcp.set_nonblocking(true).is_ok() {
            if let Some(tls) = &mut self.tls {
                // Tell a TLS receiver this is a clean end, if the socket takes it at once.
                tls.send_close_notify();
                let _ = tls.write_tls(&mut &*tcp);
            }
            let mut buf = [0u8; 4096];
            let mut drained = 0;
            while drained < MAX_DRAIN {
                match (&*tcp).read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => drained += n,
                }
            }
        }
        let _ = tcp.shutdown(std::net::Shutdown::Both);
    }
}

/// A peek that never waits: `WouldBlock` when nothing has arrived.
fn peek_now(tcp: &TcpStream, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    let sock = SockRef::from(tcp);
    #[cfg(unix)]
    {
        sock.recv_with_flags(buf, libc::MSG_PEEK | libc::MSG_DONTWAIT)
    }
    #[cfg(not(unix))]
    {
        sock.set_nonblocking(true)?;
        let peeked = sock.peek(buf);
        sock.set_nonblocking(false)?;
        peeked
    }
}

/// A TCP connection to the first address that takes one, by `deadline`.
fn connect(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, String> {
    let mut last = None;
    for addr in addrs {
        let Some(wait) = time_left(deadline) else {
            return Err("connect timeout".into());
        };
        match TcpStream::connect_timeout(addr, wait) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if is_timeout(&e) => "connect timeout".into(),
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => "connection refused".into(),
        Some(e) => format!("connection failed: {e}"),
        None => "host not found".into(),
    })
}

/// A short reason for an I/O error.
pub(crate) fn io_reason(e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        K::TimedOut | K::WouldBlock => "timeout".into(),
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset by the receiver".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::BrokenPipe => "connection closed by the receiver".into(),
        K::UnexpectedEof => "connection closed by the receiver mid-answer".into(),
        _ => format!("io: {e}"),
    }
}

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
}

fn timed_out() -> io::Error {
    io::ErrorKind::TimedOut.into()
}

/// The time left until `deadline`, if any.
fn time_left(deadline: Instant) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (left >= MIN_WAIT).then_some(left)
}

/// Runs `op` (a blocking read or write on a socket whose timeout is `*current`) so that it
/// ends by `deadline`: the socket timeout is lowered when it exceeds the time left by more
/// than [`SLACK`], and raised only when it ran out before the deadline. A fast operation costs
/// no `setsockopt`.
fn by_deadline<T>(
    deadline: Instant,
    current: &mut Duration,
    set: impl Fn(Duration) -> io::Result<()>,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    loop {
        // Again at every pass: an interrupted call must not restart a full socket timeout.
        let left = time_left(deadline).ok_or_else(timed_out)?;
        if *current > left + SLACK {
            let wait = left.min(MAX_SOCKET_TIMEOUT);
            set(wait)?;
            *current = wait;
        }
        match op() {
            Err(e) if is_timeout(&e) => {
                // The socket's timeout was set for an earlier, shorter wait: wait the rest.
                let left = time_left(deadline).ok_or_else(timed_out)?;
                let wait = left.min(MAX_SOCKET_TIMEOUT);
                set(wait)?;
                *current = wait;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    #[test]
    fn an_interrupted_call_cannot_stretch_the_deadline() {
        // A signal handler on the worker thread interrupts every call: each retry must count
        // against the same deadline.
        let deadline = Instant::now() + Duration::from_millis(100);
        let mut current = Duration::from_secs(10);
        let mut calls = 0;
        let result = by_deadline(
            deadline,
            &mut current,
            |_| Ok(()),
            || {
                calls += 1;
                if calls > 1000 {
                    return Ok(()); // ten seconds of interruptions: long past the deadline
                }
                thread::sleep(Duration::from_millis(10));
                Err(io::ErrorKind::Interrupted.into())
            },
        );
        assert_eq!(result.map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        assert!(
            current < Duration::from_millis(100),
            "socket timeout {current:?}"
        );
    }

    fn pair() -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let conn = Conn::open(&[addr], None, Duration::from_secs(5), deadline).unwrap();
        let (peer, _) = listener.accept().unwrap();
        (conn, peer)
    }

    /// Waits (bounded) until the peer's bytes or FIN reached our socket.
    fn until_not_reusable(conn: &mut Conn) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !conn.is_reusable() {
                return true;
            }
            thread::sleep(Duration::from_millis(2));
        }
        false
    }

    #[test]
    fn an_idle_connection_is_reusable_until_the_receiver_writes_or_closes() {
        let (mut conn, mut peer) = pair();
        assert!(conn.is_reusable(), "nothing arrived");
        assert!(conn.is_reusable(), "the check takes nothing");
        peer.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert!(until_not_reusable(&mut conn), "bytes waiting");

        let (mut conn, peer) = pair();
        drop(peer);
        assert!(until_not_reusable(&mut conn), "EOF");
    }

    #[test]
    fn a_connection_with_unread_bytes_closes_with_a_fin_not_a_reset() {
        let (mut conn, mut peer) = pair();
        peer.write_all(&[b'x'; 1000]).unwrap();
        assert!(until_not_reusable(&mut conn));
        conn.close();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        // A reset would make this read fail with ECONNRESET.
        assert_eq!(peer.read(&mut buf).unwrap(), 0, "a clean end of stream");
    }

    #[test]
    fn reads_and_writes_end_by_the_deadline() {
        let (mut conn, _peer) = pair();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(50);
        let err = conn.read(&mut [0u8; 16], deadline).unwrap_err();
        assert!(is_timeout(&err), "{err}");
    }
}
