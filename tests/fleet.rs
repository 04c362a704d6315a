//! A fleet behind a real load balancer: four sender processes log through nginx to two
//! companion receivers (`examples/receiver.rs`), and one receiver is killed (SIGKILL) in the
//! middle of the sending.
//!
//! What it checks:
//!
//! - every record reaches a receiver at least once: the survivor, or the killed one before it
//!   died (a receiver prints a record's line, flushed, before it answers, so a record whose
//!   answer came back is in one of the two outputs);
//! - each receiver prints every record at most once, so a duplicate is a record the killed
//!   receiver read and printed but whose answer died with it, sent again to the survivor by
//!   nginx (`proxy_next_upstream error timeout http_502 http_503 non_idempotent`) or by the
//!   sender's retry;
//! - the duplicates are at most `SENDERS × CONNECTIONS` (8): each of a logger's connections
//!   has one request outstanding at a time, and nginx passes each on as one upstream request,
//!   so at most that many requests are at the killed receiver when it dies, and each of them
//!   yields at most one extra copy (nginx tries an upstream once per request, and the
//!   survivor's answers are never lost; a sender's retry, after a 502 from nginx, is one of
//!   those same requests);
//! - every sender's `Stats` add up (`logged == sent + dropped + failed + queued`), with every
//!   record sent and none dropped or failed: the queue (16,384) holds all 2,000, and the
//!   failover is nginx's, within the request;
//! - the kill was in the middle of the sending: nginx logged an upstream error for the killed
//!   receiver, and the survivor printed records after the kill.
//!
//! nginx is a requirement, not an option: without `/usr/sbin/nginx` or `nginx` on `PATH` the
//! test fails and says how to install it (`bash .ci/run` installs it). Everything listens on
//! 127.0.0.1; every wait is bounded; every child (nginx, receivers, senders) is killed and
//! reaped when its guard drops, whatever happens.
//!
//! `harness = false` in Cargo.toml: this file's `main` is the test runner, and the senders are
//! this same binary, re-run with `HTTP_LOGGER_FLEET_SENDER` set to the sender's number.

mod child;
mod harness;

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use child::{Client, Guard, Lines, Server, WAIT, example_binary, shown, spawn};
use http_logger::HttpLogger;

/// The sender processes.
const SENDERS: usize = 4;
/// The records each sender logs.
const RECORDS: usize = 2_000;
/// The connections (worker threads) of each sender's logger.
const CONNECTIONS: usize = 2;
/// The killed receiver is killed once it has printed this many records: about a quarter of
/// the whole (nginx gives it about half), so most of the sending is still to come.
const KILL_AFTER: usize = SENDERS * RECORDS / 8;
/// The most a sender's flush may wait.
const FLUSH: Duration = Duration::from_secs(20);
/// The whole sending, from the first sender started to the last one's exit.
const SENDING: Duration = Duration::from_secs(40);

/// Set in a sender's environment: its number. The parent sets it, never a user.
const SENDER_ENV: &str = "HTTP_LOGGER_FLEET_SENDER";
/// Set in a sender's environment: where to send, nginx's `127.0.0.1:PORT`.
const HOST_ENV: &str = "HTTP_LOGGER_FLEET_HOST";

// ---------------------------------------------------------------------------------------------
// A sender
// ---------------------------------------------------------------------------------------------

/// One sender process: logs `RECORDS` records (`sender ID record N`) to `host`, flushes, and
/// prints its `Stats` as `key: value` lines on stdout.
fn sender(id: usize, host: &str) {
    let logger = HttpLogger::builder(host, "/log")
        .connections(CONNECTIONS)
        .process_name(format!("fleet-sender-{id}"))
        .build()
        .expect("build the logger");
    log::set_max_level(log::LevelFilter::Info);
    for record in 0..RECORDS {
        log::info!(logger: logger, target: "fleet", "sender {id} record {record}");
    }
    let flushed = logger.flush_timeout(FLUSH);
    let stats = logger.stats();
    println!("flushed: {flushed}");
    println!("logged: {}", stats.logged);
    println!("sent: {}", stats.sent);
    println!("dropped: {}", stats.dropped);
    println!("failed: {}", stats.failed);
    println!("queued: {}", stats.queued);
    println!("retried: {}", stats.retried);
    if let Some(error) = logger.last_error() {
        println!("last_error: {error}");
    }
}

/// A running sender, killed and reaped when dropped.
struct Sender {
    id: usize,
    child: Guard,
    stdout: Lines,
    stderr: Lines,
}

impl Sender {
    fn start(id: usize, host: &str) -> Sender {
        let exe = std::env::current_exe().expect("the test binary has a path");
        let mut command = Command::new(exe);
        command
            .env(SENDER_ENV, id.to_string())
            .env(HOST_ENV, host)
            .stdin(Stdio::null());
        let name = format!("sender {id}");
        let (child, stdout, stderr) = spawn(command, &name, "it is this test binary, re-run");
        Sender {
            id,
            child,
            stdout,
            stderr,
        }
    }
}

/// What a sender printed: its `Stats`, and whether its flush ended in time.
#[derive(Debug)]
struct SenderStats {
    flushed: bool,
    logged: u64,
    sent: u64,
    dropped: u64,
    failed: u64,
    queued: u64,
    retried: u64,
    last_error: Option<String>,
}

impl SenderStats {
    /// Parses the `key: value` lines a sender prints.
    ///
    /// # Panics
    ///
    /// If one is missing or not a number.
    fn parse(lines: &[String], name: &str) -> SenderStats {
        let get = |key: &str| -> Option<&str> {
            lines
                .iter()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix(": "))
        };
        let number = |key: &str| -> u64 {
            get(key)
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("{name} printed no `{key}: N`; it printed {lines:?}"))
        };
        SenderStats {
            flushed: get("flushed") == Some("true"),
            logged: number("logged"),
            sent: number("sent"),
            dropped: number("dropped"),
            failed: number("failed"),
            queued: number("queued"),
            retried: number("retried"),
            last_error: get("last_error").map(str::to_owned),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------------------------

/// The nginx binary: Debian's `/usr/sbin/nginx`, else `nginx` on `PATH`.
///
/// # Panics
///
/// If there is neither, saying how to install it.
fn nginx_binary() -> PathBuf {
    let debian = Path::new("/usr/sbin/nginx");
    if debian.is_file() {
        return debian.to_path_buf();
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "nginx is not installed (neither /usr/sbin/nginx nor `nginx` on PATH): this test \
             puts a real load balancer in front of two receivers. Install it: on Debian or \
             Ubuntu `apt-get install nginx-core` (`bash .ci/run` does it, with the service kept \
             from starting); elsewhere, any nginx on PATH"
        )
    })
}

/// A directory of its own under cargo's temporary directory for integration tests (in the
/// target directory), removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("fleet-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port on 127.0.0.1 that was free a moment ago (nginx cannot say which port it took).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port on 127.0.0.1");
    listener.local_addr().expect("its address").port()
}

/// nginx's configuration: one process (`master_process off`, so that killing it leaves no
/// worker behind), on 127.0.0.1:`port`, everything it writes in `dir`, proxying to the two
/// receivers over kept-alive HTTP/1.1 and moving a request whose upstream failed, POST
/// included, to the other.
fn nginx_conf(dir: &Path, port: u16, upstreams: [u16; 2]) -> String {
    // The workers of a root nginx would switch to its default user, who may not write here.
    let user = if is_root() { "user root;\n" } else { "" };
    let dir = dir.display();
    let [a, b] = upstreams;
    format!(
        r#"# Written by tests/fleet.rs.
{user}daemon off;
master_process off;
pid "{dir}/nginx.pid";
error_log "{dir}/error.log" warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path "{dir}/body";
    proxy_temp_path "{dir}/proxy";
    fastcgi_temp_path "{dir}/fastcgi";
    uwsgi_temp_path "{dir}/uwsgi";
    scgi_temp_path "{dir}/scgi";

    upstream receivers {{
        server 127.0.0.1:{a};
        server 127.0.0.1:{b};
        keepalive 16;
    }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://receivers;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_connect_timeout 2s;
            proxy_send_timeout 5s;
            proxy_read_timeout 5s;
        }}
    }}
}}
"#
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A running nginx, killed and reaped (then its directory removed) when dropped.
struct Nginx {
    /// Dropped first: the process, killed and reaped.
    _process: Guard,
    stderr: Lines,
    port: u16,
    version: String,
    error_log: PathBuf,
    /// Dropped last: the configuration, logs and temporary files.
    _dir: TempDir,
}

impl Nginx {
    /// Starts `binary` in front of `upstreams` and waits until a request through it is
    /// answered.
    ///
    /// # Panics
    ///
    /// If nginx exits, or does not answer within [`WAIT`].
    fn start(binary: &Path, upstreams: [u16; 2]) -> Nginx {
        let version = Command::new(binary)
            .arg("-v")
            .output()
            .map(|out| {
                let said = String::from_utf8_lossy(&out.stderr);
                let said = said.trim();
                said.strip_prefix("nginx version: ")
                    .unwrap_or(said)
                    .to_owned()
            })
            .unwrap_or_else(|_| "nginx".to_owned());
        // The free port may be taken before nginx binds it: then try another.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = TempDir::new();
            let port = free_port();
            let conf = dir.0.join("nginx.conf");
            std::fs::write(&conf, nginx_conf(&dir.0, port, upstreams))
                .unwrap_or_else(|err| panic!("cannot write {}: {err}", conf.display()));
            let mut command = Command::new(binary);
            // `-e stderr`: the log nginx writes before it reads the configuration.
            command
                .arg("-p")
                .arg(&dir.0)
                .arg("-c")
                .arg(&conf)
                .args(["-e", "stderr"])
                .stdin(Stdio::null());
            let name = shown(&command);
            let (mut child, _stdout, stderr) = spawn(command, &name, "see nginx_binary()");
            let error_log = dir.0.join("error.log");
            let deadline = Instant::now() + WAIT;
            let exited = loop {
                if let Ok(Some(status)) = child.0.try_wait() {
                    break Some(status);
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break None;
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx did not listen on 127.0.0.1:{port} within {WAIT:?}; stderr:\n{}",
                    stderr.text()
                );
                std::thread::sleep(Duration::from_millis(10));
            };
            let nginx = Nginx {
                _process: child,
                stderr,
                port,
                version: version.clone(),
                error_log,
                _dir: dir,
            };
            match exited {
                None => {
                    nginx.probe();
                    return nginx;
                }
                Some(status) => {
                    let said = format!("{}{}", nginx.stderr.text(), nginx.errors());
                    if said.contains("Address already in use") && attempt < 3 {
                        continue;
                    }
                    panic!("nginx exited ({status}) before listening:\n{said}");
                }
            }
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// One request through nginx to a receiver (a form the receivers print as fields, not as
    /// a record of the fleet), answered 200: the whole path works.
    fn probe(&self) {
        let mut client = Client::connect(self.port);
        let response = client.request("POST", "/probe", b"probe=fleet");
        assert_eq!(
            response.status,
            200,
            "the probe through nginx: {response:?}; nginx's error log:\n{}",
            self.errors()
        );
    }

    /// nginx's error log so far.
    fn errors(&self) -> String {
        std::fs::read_to_string(&self.error_log).unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// The receivers and their output
// ---------------------------------------------------------------------------------------------

/// Starts the companion receiver on a port of its own (pretty output: one line per record).
fn start_receiver(label: &str) -> Server {
    let mut command = Command::new(example_binary("receiver"));
    command.args(["--port", "0"]).stdin(Stdio::null());
    Server::start(
        format!("receiver {label} ({})", shown(&command)),
        command,
        WAIT,
        "`cargo build --examples` builds it, and it needs a port on 127.0.0.1",
    )
}

/// The sender and record numbers of a line the receiver printed for a fleet record
/// (`... fleet  INFO  sender 2 record 1234`); `None` for any other line.
fn record_of(line: &str) -> Option<(usize, usize)> {
    let (_, rest) = line.split_once("  sender ")?;
    let (sender, record) = rest.split_once(" record ")?;
    Some((sender.parse().ok()?, record.trim_end().parse().ok()?))
}

/// The fleet records among `text`'s lines, in order.
fn records_in(text: &str) -> Vec<(usize, usize)> {
    text.lines().filter_map(record_of).collect()
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

fn a_fleet_behind_nginx_delivers_every_record_at_least_once_when_a_receiver_dies() {
    let started = Instant::now();
    let nginx_binary = nginx_binary(); // before anything starts: no nginx is a failure
    let mut doomed = start_receiver("A");
    let mut survivor = start_receiver("B");
    let nginx = Nginx::start(&nginx_binary, [doomed.port, survivor.port]);
    let host = nginx.host();

    let senders: Vec<Sender> = (0..SENDERS).map(|id| Sender::start(id, &host)).collect();
    let sending = Instant::now();
    let deadline = sending + SENDING;

    // Kill A once it has printed KILL_AFTER records: in the middle of the sending.
    let mut seen_by_a = 0;
    while seen_by_a < KILL_AFTER {
        match doomed.stdout.recv_until(deadline) {
            Ok(line) => seen_by_a += usize::from(record_of(&line).is_some()),
            Err(err) => {
                let said: Vec<String> = senders
                    .iter()
                    .map(|s| format!("sender {}: {}{}", s.id, s.stdout.text(), s.stderr.text()))
                    .collect();
                panic!(
                    "receiver A printed {seen_by_a} records, not {KILL_AFTER} ({err:?}); the \
                     senders said:\n{}\nnginx:\n{}",
                    said.join("\n"),
                    nginx.errors()
                );
            }
        }
    }
    let survivor_before_kill = records_in(&survivor.stdout.text()).len();
    let kill_status = doomed.kill();
    let killed_at = sending.elapsed();
    assert!(
        kill_status.code().is_none(),
        "receiver A had exited by itself before the kill ({kill_status}); stderr:\n{}",
        doomed.stderr.text()
    );

    // Every sender flushes, prints its stats and exits.
    let mut stats = Vec::new();
    for mut sender in senders {
        let name = format!("sender {}", sender.id);
        let left = deadline.saturating_duration_since(Instant::now());
        let status: ExitStatus = sender.child.wait_within(left, &name);
        let stdout = sender.stdout.to_end();
        assert!(
            status.success(),
            "{name} failed ({status}); stdout:\n{}\nstderr:\n{}",
            stdout.join("\n"),
            sender.stderr.text()
        );
        stats.push((sender.id, SenderStats::parse(&stdout, &name)));
    }
    let sending_took = sending.elapsed();

    // Every record a sender counted sent was printed before its 200 was sent (the receiver
    // writes and flushes the line, then answers): end both outputs and read them whole.
    survivor.kill();
    doomed.stdout.to_end();
    survivor.stdout.to_end();
    let at_a = records_in(&doomed.stdout.text());
    let at_b = records_in(&survivor.stdout.text());
    let errors = nginx.errors();
    let nginx_version = nginx.version.clone();
    drop(nginx);

    // ---- what arrived ----
    let mut copies: HashMap<(usize, usize), (usize, usize)> = HashMap::new();
    for &key in &at_a {
        copies.entry(key).or_default().0 += 1;
    }
    for &key in &at_b {
        copies.entry(key).or_default().1 += 1;
    }
    let unknown: Vec<_> = copies
        .keys()
        .filter(|&&(sender, record)| sender >= SENDERS || record >= RECORDS)
        .collect();
    assert!(unknown.is_empty(), "records nobody sent: {unknown:?}");
    let mut missing = Vec::new();
    for sender in 0..SENDERS {
        for record in 0..RECORDS {
            if !copies.contains_key(&(sender, record)) {
                missing.push(format!("sender {sender} record {record}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} records never arrived (A printed {}, B {}): {:?}; nginx's error log:\n{errors}",
        missing.len(),
        at_a.len(),
        at_b.len(),
        &missing[..missing.len().min(20)]
    );
    // Each receiver prints a record at most once; a second copy is one the killed receiver
    // read (and printed) but whose answer was lost with it, sent again to the survivor.
    let twice_at_one: Vec<_> = copies
        .iter()
        .filter(|&(_, &(a, b))| a > 1 || b > 1)
        .collect();
    assert!(
        twice_at_one.is_empty(),
        "records printed twice by one receiver: {twice_at_one:?}"
    );
    let mut duplicates: Vec<(usize, usize)> = copies
        .iter()
        .filter(|&(_, &(a, b))| a + b > 1)
        .map(|(&key, _)| key)
        .collect();
    duplicates.sort_unstable();
    // Where each duplicate is in A's output, counted from its end: the last ones it read.
    let from_end: Vec<usize> = duplicates
        .iter()
        .map(|key| at_a.len() - at_a.iter().rposition(|seen| seen == key).unwrap_or(0))
        .collect();
    let bound = SENDERS * CONNECTIONS;

    // ---- what the senders counted ----
    for (id, s) in &stats {
        assert_eq!(
            s.logged,
            s.sent + s.dropped + s.failed + s.queued,
            "sender {id}'s stats do not add up: {s:?}"
        );
        assert!(s.flushed, "sender {id}'s flush did not end in time: {s:?}");
        assert_eq!(s.logged, RECORDS as u64, "sender {id}: {s:?}");
        assert_eq!(
            (s.sent, s.dropped, s.failed, s.queued),
            (RECORDS as u64, 0, 0, 0),
            "sender {id} did not send every record: {s:?}"
        );
    }
    let retried: u64 = stats.iter().map(|(_, s)| s.retried).sum();

    // ---- the failover happened while records were flowing ----
    let doomed_port = format!("127.0.0.1:{}", doomed.port);
    let upstream_errors: Vec<&str> = errors
        .lines()
        .filter(|line| line.contains("upstream") && line.contains(&doomed_port))
        .collect();
    let survivor_after_kill = at_b.len() - survivor_before_kill.min(at_b.len());

    println!(
        "fleet: {SENDERS} senders x {RECORDS} records ({CONNECTIONS} connections each) through \
         {} to 2 receivers; receiver A killed (SIGKILL) {} ms into the sending, after it \
         printed {seen_by_a} records; the sending took {} ms",
        nginx_version,
        killed_at.as_millis(),
        sending_took.as_millis()
    );
    println!(
        "fleet: receiver A printed {} records, receiver B {} (about {survivor_after_kill} after \
         the kill); {} distinct of {}",
        at_a.len(),
        at_b.len(),
        copies.len(),
        SENDERS * RECORDS
    );
    let shown_duplicates: Vec<String> = duplicates
        .iter()
        .zip(&from_end)
        .map(|((s, r), end)| match end {
            1 => format!("sender {s} record {r} (the last record A printed)"),
            _ => format!("sender {s} record {r} ({end} from the end of A's output)"),
        })
        .collect();
    println!(
        "fleet: duplicates: {} (bound {bound} = senders x connections, the requests in flight \
         at once), each read by A and sent again to B: {}",
        duplicates.len(),
        if shown_duplicates.is_empty() {
            "none".to_owned()
        } else {
            shown_duplicates.join(", ")
        }
    );
    println!(
        "fleet: sender retries {retried}; nginx logged {} upstream errors for A, first: {}",
        upstream_errors.len(),
        upstream_errors.first().copied().unwrap_or("none")
    );
    for (id, s) in &stats {
        println!(
            "fleet: sender {id}: logged {} sent {} dropped {} failed {} queued {} retried {}{}",
            s.logged,
            s.sent,
            s.dropped,
            s.failed,
            s.queued,
            s.retried,
            s.last_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (last error: {e})"))
        );
    }
    println!("fleet: took {} ms in all", started.elapsed().as_millis());

    assert!(
        duplicates.len() <= bound,
        "{} duplicates, more than the {bound} requests that can be in flight at once",
        duplicates.len()
    );
    assert!(
        !upstream_errors.is_empty(),
        "nginx logged no upstream error for receiver A ({doomed_port}): no request met the \
         dead receiver, so the kill was not in the middle of the sending; its log:\n{errors}"
    );
    assert!(
        survivor_after_kill > 0,
        "receiver B printed nothing after the kill"
    );
}

// ---------------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------------

fn main() {
    if let Ok(id) = std::env::var(SENDER_ENV) {
        let id = id.parse().expect("a sender number");
        let host = std::env::var(HOST_ENV).expect("HTTP_LOGGER_FLEET_HOST");
        sender(id, &host);
        return;
    }
    let tests: [(&str, fn()); 1] = [(
        "a_fleet_behind_nginx_delivers_every_record_at_least_once_when_a_receiver_dies",
        a_fleet_behind_nginx_delivers_every_record_at_least_once_when_a_receiver_dies,
    )];
    harness::run(&tests);
}
