//! The disk spool (`Builder::spool`), end to end: outages ridden out across a restart, a
//! SIGKILL mid-spill, two processes on one directory, bad disks. Each process of a scenario is
//! this binary re-run with `HTTP_LOGGER_CHILD` set; the parent owns the receiver (a real
//! socket on 127.0.0.1) and checks what it got, once each.
//! (`harness = false` in Cargo.toml: this file's `main` is the test runner.)

mod harness;
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::Outcome;
use http_logger::{Batch, ErrorKind, HttpLogger};
use support::{Reply, Server};

const WAIT: Duration = Duration::from_secs(60);
const WAIT_EMPTY: (&str, String) = ("WAIT_EMPTY", String::new());
const FLUSH: (&str, String) = ("FLUSH", String::new());

// ---- the children ----

/// A logger of the scenarios: the spool in `SPOOL_DIR`, a queue of 1,000, a receiver that is
/// given up on quickly.
fn logger(host: &str) -> http_logger::Builder {
    HttpLogger::builder(host, "/")
        .spool(std::env::var("SPOOL_DIR").expect("SPOOL_DIR"))
        .queue_capacity(1000)
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_secs(5))
        .retry_budget(3, Duration::from_millis(300))
        .shutdown_timeout(Duration::from_millis(500))
}

fn print_stats(stats: http_logger::Stats) {
    println!(
        "stats logged={} sent={} dropped={} failed={} queued={} spooled={} replayed={}",
        stats.logged,
        stats.sent,
        stats.dropped,
        stats.failed,
        stats.queued,
        stats.spooled,
        stats.replayed
    );
}

fn log(logger: &HttpLogger, msg: std::fmt::Arguments<'_>) {
    log::Log::log(
        logger,
        &log::Record::builder()
            .args(msg)
            .level(log::Level::Info)
            .build(),
    );
}

/// Whether `dir` holds no spool file.
fn no_spool_file(dir: &Path) -> bool {
    !spool_files(dir).iter().any(|name| name.ends_with(".spool"))
}

fn child(scenario: &str, host: &str) {
    let count: usize = std::env::var("COUNT").map_or(0, |n| n.parse().expect("COUNT"));
    let tag = std::env::var("TAG").unwrap_or_default();
    let dir = PathBuf::from(std::env::var("SPOOL_DIR").expect("SPOOL_DIR"));
    match scenario {
        // Logs COUNT records; with WAIT_EMPTY, waits until no spool file is left in the
        // directory (its own, and those it replays, or another process does); with FLUSH,
        // flushes; prints its stats; then is dropped: what is left goes to the spool.
        "log" => {
            let logger = logger(host).build().expect("build");
            for i in 0..count {
                log(&logger, format_args!("{tag} {i}"));
            }
            if std::env::var_os("WAIT_EMPTY").is_some() {
                let deadline = Instant::now() + Duration::from_secs(50);
                while !no_spool_file(&dir) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            if std::env::var_os("FLUSH").is_some() {
                logger.flush_timeout(Duration::from_secs(30));
            }
            if let Ok(ms) = std::env::var("LINGER_MS") {
                std::thread::sleep(Duration::from_millis(ms.parse().expect("LINGER_MS")));
            }
            print_stats(logger.stats());
        }
        // Installed, taking SIGTERM: logs COUNT records with the receiver down, says so, and
        // waits to be stopped.
        "sigterm" => {
            logger(host).flush_on_signals(true).init().expect("init");
            for i in 0..count {
                log::info!("{tag} {i}");
            }
            println!("logged");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        // Logs without end while the receiver is down, printing how many records are on disk.
        "spill-forever" => {
            let logger = logger(host).queue_capacity(100).build().expect("build");
            for i in 0.. {
                log(&logger, format_args!("{tag} {i}"));
                if i % 50 == 0 {
                    println!("spooled {}", logger.stats().spooled);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        // A file size limit of 64 KiB: the spool fills the disk, as far as this process goes.
        "tiny-disk" => {
            #[cfg(unix)]
            {
                let limit = libc::rlimit {
                    rlim_cur: 64 << 10,
                    rlim_max: 64 << 10,
                };
                // SAFETY: setrlimit reads the struct; no other precondition.
                assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) }, 0);
            }
            // No retries: every problem last_error names is the spool's.
            let logger = logger(host)
                .queue_capacity(10)
                .retry_budget(0, Duration::ZERO)
                .build()
                .expect("build");
            for i in 0..count {
                log(&logger, format_args!("{tag} {i}"));
            }
            // Long enough for the spill thread to write what it was handed.
            let deadline = Instant::now() + Duration::from_secs(20);
            while logger.stats().queued > 20 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            print_stats(logger.stats());
            println!("last_error {}", logger.last_error().unwrap_or_default());
            drop(logger);
        }
        other => panic!("unknown scenario {other}"),
    }
}

// ---- the parent's side ----

fn command(scenario: &str, host: &str, dir: &Path, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .env("HTTP_LOGGER_CHILD", scenario)
        .env("HTTP_LOGGER_HOST", host)
        .env("SPOOL_DIR", dir)
        .envs(env.iter().map(|(k, v)| (k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for `child` to end (killing it past `WAIT`), and takes what it printed.
fn finish(child: Child, scenario: &str) -> Outcome {
    harness::finish(child, scenario, WAIT)
}

fn run(scenario: &str, host: &str, dir: &Path, env: &[(&str, String)]) -> Outcome {
    let child = command(scenario, host, dir, env)
        .spawn()
        .expect("spawn child");
    finish(child, scenario)
}

/// A process that logs `count` records tagged `tag` while nothing listens, then exits: what
/// it could not deliver is left in the spool `dir`.
fn log_with_the_receiver_down(dir: &Path, count: usize, tag: &str) -> Outcome {
    let down = nothing_listens();
    let out = run(
        "log",
        &down.to_string(),
        dir,
        &[("COUNT", count.to_string()), ("TAG", tag.into())],
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out
}

/// The counters a child printed in its `stats` line.
fn stats(out: &Outcome) -> HashMap<String, u64> {
    let line = out
        .stdout
        .lines()
        .rfind(|l| l.starts_with("stats "))
        .unwrap_or_else(|| panic!("no stats line: {}\n{}", out.stdout, out.stderr));
    line.split_whitespace()
        .skip(1)
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("k=v");
            (k.to_owned(), v.parse().expect("a number"))
        })
        .collect()
}

/// An address on 127.0.0.1 where nothing listens (a port just freed): connections are refused.
fn nothing_listens() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// A receiver on `addr` again (a port a test let go of). The port may still be held for a
/// moment (a socket of the dropped receiver's closing, or a client's connection that the
/// kernel happened to give that very port): tried again for a while.
fn back_on(
    addr: SocketAddr,
    f: impl Fn(usize, &support::Request) -> Reply + Send + Sync + Clone + 'static,
) -> Server {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Server::start_on(addr, f.clone()) {
            Ok(server) => return server,
            Err(e) if Instant::now() < deadline => {
                eprintln!("spool test: {addr} not free yet ({e})");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{addr} still taken: {e}"),
        }
    }
}

/// A fresh spool directory of the test's own.
fn spool_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "http-logger-spool-test-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn spool_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Takes the `msg` of every record the server got until `n` arrived (or `timeout` passed, or,
/// once `n` arrived, nothing more came for a moment: late duplicates are caught too), and
/// counts how often each arrived.
fn received(server: &Server, n: usize, timeout: Duration) -> HashMap<String, usize> {
    let deadline = Instant::now() + timeout;
    let mut got: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    while Instant::now() < deadline {
        let wait = if total >= n {
            Duration::from_millis(300)
        } else {
            Duration::from_millis(200)
        };
        match server.recv(wait) {
            Some(request) => {
                for msg in messages(&request) {
                    *got.entry(msg).or_default() += 1;
                    total += 1;
                }
            }
            None if total >= n => break,
            None => {}
        }
    }
    got
}

/// The messages of one request: a form's `msg`, or each NDJSON line's.
fn messages(request: &support::Request) -> Vec<String> {
    if request.header("content-type") == Some("application/x-ndjson") {
        return String::from_utf8_lossy(&request.body)
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                v["msg"].as_str().expect("msg").to_owned()
            })
            .collect();
    }
    vec![request.field("msg").expect("msg")]
}

/// Every message `{tag} {i}` for `i` in `range` arrived exactly once.
fn assert_each_once(got: &HashMap<String, usize>, tag: &str, range: std::ops::Range<usize>) {
    let missing: Vec<usize> = range
        .clone()
        .filter(|i| !got.contains_key(&format!("{tag} {i}")))
        .collect();
    let twice: Vec<(&String, &usize)> = got
        .iter()
        .filter(|(m, n)| m.starts_with(&format!("{tag} ")) && **n > 1)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {tag} 0..{} missing, first {:?}",
        missing.len(),
        range.end,
        &missing[..missing.len().min(5)]
    );
    assert!(
        twice.is_empty(),
        "delivered twice: {:?}",
        &twice[..twice.len().min(5)]
    );
}

// ---- the tests ----

/// The issue's scenario: 50,000 records logged with the receiver down, a queue of 1,000 and
/// a spool; the process exits. The receiver comes up, and a second process with the same
/// directory delivers all 50,000 plus its own, nothing twice, and leaves the directory empty.
fn an_outage_is_ridden_out_across_a_restart() {
    let dir = spool_dir("restart");
    let first = log_with_the_receiver_down(&dir, 50_000, "old");
    let s = stats(&first);
    assert_eq!(
        (s["logged"], s["sent"], s["dropped"], s["failed"]),
        (50_000, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(s["spooled"] + s["queued"], 50_000, "{s:?}");
    // The shutdown at the drop put the rest on disk, and says so (and nothing was lost).
    let lines: Vec<&str> = first
        .stderr
        .lines()
        .filter(|l| l.contains("not delivered"))
        .collect();
    assert_eq!(lines.len(), 1, "{}", first.stderr);
    assert!(
        lines[0].starts_with("http-logger: 50,000 records not delivered to ")
            && lines[0].contains("wait in the spool"),
        "{}",
        lines[0]
    );
    assert!(!spool_files(&dir).is_empty());
    // Up again, on another port (the records do not carry the address).
    let server = Server::start();
    let second = run(
        "log",
        &server.host(),
        &dir,
        &[
            ("COUNT", "100".into()),
            ("TAG", "new".into()),
            WAIT_EMPTY,
            FLUSH,
        ],
    );
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    let got = received(&server, 50_100, Duration::from_secs(50));
    assert_each_once(&got, "old", 0..50_000);
    assert_each_once(&got, "new", 0..100);
    let s = stats(&second);
    assert_eq!(
        (s["sent"], s["replayed"], s["spooled"]),
        (100, 50_000, 0),
        "{s:?}"
    );
    assert!(spool_files(&dir).is_empty(), "{:?}", spool_files(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// SIGTERM with `flush_on_signals`: after the shutdown timeout, what is left goes to disk
/// before the process ends as SIGTERM ends it, and the next process delivers all of it.
fn sigterm_puts_what_is_left_on_disk() {
    let dir = spool_dir("sigterm");
    let down = nothing_listens();
    let mut child = command(
        "sigterm",
        &down.to_string(),
        &dir,
        &[("COUNT", "3000".into()), ("TAG", "s".into())],
    )
    .spawn()
    .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("a line");
    assert_eq!(line.trim(), "logged");
    // SAFETY: kill with a live child's pid and a signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = finish(child, "sigterm");
    assert_eq!(out.code, None, "ended by the signal: {}", out.stderr);
    assert!(
        out.stderr.contains("3,000 records not delivered") && out.stderr.contains("on SIGTERM"),
        "{}",
        out.stderr
    );
    let server = Server::start();
    let after = run("log", &server.host(), &dir, &[WAIT_EMPTY, FLUSH]);
    assert_eq!(stats(&after)["replayed"], 3000, "{}", after.stderr);
    let got = received(&server, 3000, Duration::from_secs(30));
    assert_each_once(&got, "s", 0..3000);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Processes that start and end while an earlier one's records are replayed each deliver a
/// part, and, ending cleanly, send nothing twice: what one had on its way is finished and
/// marked before it exits.
fn short_lived_processes_replay_a_backlog_in_parts_once_each() {
    let dir = spool_dir("parts");
    log_with_the_receiver_down(&dir, 3000, "p");
    let server = Server::start();
    let mut replayed = 0;
    let mut runs = 0;
    while !no_spool_file(&dir) && runs < 20 {
        // Each ends as soon as its own (none) are delivered: a part of the backlog each.
        let out = run("log", &server.host(), &dir, &[("LINGER_MS", "150".into())]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        replayed += stats(&out)["replayed"];
        runs += 1;
    }
    let got = received(&server, 3000, Duration::from_secs(10));
    assert_each_once(&got, "p", 0..3000);
    assert!(runs > 1, "the backlog went in parts ({runs} runs)");
    assert!(replayed <= 3000 + runs as u64, "{replayed} replayed");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A SIGKILL while records go to disk loses none that were written: every record the killed
/// process counted spooled is delivered by the next one.
fn sigkill_while_spilling_loses_nothing_on_disk() {
    let dir = spool_dir("sigkill");
    let down = nothing_listens();
    let mut child = command(
        "spill-forever",
        &down.to_string(),
        &dir,
        &[("TAG", "k".into())],
    )
    .spawn()
    .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut spooled = 0;
    let deadline = Instant::now() + WAIT;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        if let Some(n) = line.strip_prefix("spooled ") {
            spooled = n.parse().expect("a number");
            if spooled >= 3000 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "spooled only {spooled}");
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let server = Server::start();
    let after = run("log", &server.host(), &dir, &[WAIT_EMPTY, FLUSH]);
    assert_eq!(after.code, Some(0), "{}", after.stderr);
    let replayed = stats(&after)["replayed"] as usize;
    let got = received(&server, replayed, Duration::from_secs(30));
    // Which records were on disk is the process's business (those in its memory queue were
    // lost with it): as many as it counted, at least, each once, and all its own.
    assert!(replayed >= spooled as usize, "{replayed} < {spooled}");
    assert_eq!(got.len(), replayed, "{} distinct of {replayed}", got.len());
    assert!(got.values().all(|n| *n == 1), "each once");
    assert!(
        got.keys().all(|m| m.starts_with("k ")),
        "only the killed process's records"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two processes started at once on a directory a dead process left files in: between them
/// they deliver each of its records once, and each its own.
fn two_processes_at_once_share_the_dead_ones_files() {
    let dir = spool_dir("two");
    let first = log_with_the_receiver_down(&dir, 5000, "dead");
    assert_eq!(stats(&first)["dropped"], 0);
    let server = Server::start();
    let children: Vec<Child> = ["a", "b"]
        .iter()
        .map(|tag| {
            command(
                "log",
                &server.host(),
                &dir,
                &[
                    ("COUNT", "200".into()),
                    ("TAG", (*tag).into()),
                    WAIT_EMPTY,
                    FLUSH,
                ],
            )
            .spawn()
            .expect("spawn")
        })
        .collect();
    let outs: Vec<Outcome> = children.into_iter().map(|c| finish(c, "two")).collect();
    let replayed: u64 = outs.iter().map(|o| stats(o)["replayed"]).sum();
    let got = received(&server, 5400, Duration::from_secs(30));
    assert_each_once(&got, "dead", 0..5000);
    assert_each_once(&got, "a", 0..200);
    assert_each_once(&got, "b", 0..200);
    assert_eq!(replayed, 5000);
    assert!(spool_files(&dir).is_empty(), "{:?}", spool_files(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file size limit (the disk full, as far as this process goes): records past it are
/// dropped and counted, with why, the process lives on, and every record already on disk is
/// delivered later.
fn a_full_disk_drops_with_a_reason_and_keeps_what_is_on_disk() {
    let dir = spool_dir("tiny");
    let down = nothing_listens();
    let out = run(
        "tiny-disk",
        &down.to_string(),
        &dir,
        &[("COUNT", "2000".into()), ("TAG", "t".into())],
    );
    assert_eq!(out.code, Some(0), "no SIGXFSZ, no panic: {}", out.stderr);
    let s = stats(&out);
    assert!(s["dropped"] > 0 && s["spooled"] > 0, "{s:?}");
    assert_eq!(
        s["logged"],
        s["sent"] + s["dropped"] + s["failed"] + s["queued"] + s["spooled"],
        "{s:?}"
    );
    let last_error = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("last_error "))
        .unwrap_or_default();
    assert!(
        last_error.contains("spool") && last_error.contains("large"),
        "{last_error}"
    );
    let server = Server::start();
    let after = run("log", &server.host(), &dir, &[WAIT_EMPTY, FLUSH]);
    let replayed = stats(&after)["replayed"];
    assert!(replayed >= s["spooled"], "{replayed} < {}", s["spooled"]);
    let got = received(&server, replayed as usize, Duration::from_secs(30));
    assert_eq!(got.len() as u64, replayed, "each once");
    assert!(got.values().all(|n| *n == 1));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A directory that cannot be made, or written, fails the build with a clear error; files in
/// it that are not the spool's are left alone, a `.spool` file that is not one is set aside.
fn an_unusable_directory_fails_the_build() {
    let file = spool_dir("not-a-dir");
    std::fs::write(&file, b"a file").unwrap();
    let err = HttpLogger::builder("127.0.0.1:9", "/")
        .spool(file.join("logs"))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Spool);
    assert!(err.to_string().contains("cannot be created"), "{err}");
    std::fs::remove_file(&file).unwrap();
    // /proc/self exists, and no one may make a file in it, root included.
    if Path::new("/proc/self").is_dir() {
        let err = HttpLogger::builder("127.0.0.1:9", "/")
            .spool("/proc/self")
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Spool);
        assert!(err.to_string().contains("cannot be written"), "{err}");
    }
    let err = HttpLogger::builder("127.0.0.1:9", "/")
        .spool(spool_dir("zero"))
        .spool_max_bytes(0)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);

    let dir = spool_dir("foreign");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), b"mine").unwrap();
    std::fs::write(dir.join("00000000000000000001-1-1.spool"), b"not a spool").unwrap();
    let logger = HttpLogger::builder("127.0.0.1:9", "/")
        .spool(&dir)
        .build()
        .expect("a directory with other files in it is usable");
    drop(logger);
    assert_eq!(
        spool_files(&dir),
        ["00000000000000000001-1-1.spool.bad", "notes.txt"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// In one process: records out of retries go to disk, and are delivered from it once the
/// receiver is back (on the same port), counted sent and replayed, in batches too; a flush
/// waits for them.
fn records_out_of_retries_wait_on_disk_and_go_when_the_receiver_is_back() {
    for batch in [false, true] {
        let dir = spool_dir(if batch { "back-batch" } else { "back" });
        let addr = nothing_listens();
        let mut builder = HttpLogger::builder(addr.to_string(), "/")
            .spool(&dir)
            .connect_timeout(Duration::from_millis(200))
            .retry_budget(1, Duration::from_millis(100));
        if batch {
            builder = builder.batch(Batch::ndjson().max_delay(Duration::from_millis(20)));
        }
        let logger = builder.build().expect("build");
        for i in 0..20 {
            log::Log::log(
                &logger,
                &log::Record::builder()
                    .args(format_args!("r {i}"))
                    .level(log::Level::Warn)
                    .build(),
            );
        }
        let deadline = Instant::now() + WAIT;
        while logger.stats().spooled < 20 {
            assert!(Instant::now() < deadline, "{:?}", logger.stats());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !logger.flush_timeout(Duration::from_millis(50)),
            "they wait"
        );
        let server = back_on(addr, |_, _| Reply::Status(200));
        assert!(logger.flush_timeout(WAIT), "{:?}", logger.stats());
        let stats = logger.stats();
        assert_eq!(
            (
                stats.sent,
                stats.replayed,
                stats.spooled,
                stats.queued,
                stats.failed
            ),
            (20, 20, 0, 0, 0),
            "{stats:?}"
        );
        let got = received(&server, 21, Duration::from_secs(10));
        assert_each_once(&got, "r", 0..20);
        // The loss report tells the receiver the records went through the disk.
        let report: Vec<&String> = got
            .keys()
            .filter(|m| m.starts_with("http-logger"))
            .collect();
        assert!(
            report.len() == 1 && report[0].contains("20 records went to the spool on disk"),
            "{report:?}"
        );
        assert!(spool_files(&dir).is_empty(), "{:?}", spool_files(&dir));
        drop(logger);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Logs `n` WARN records with the receiver down, until each is on disk (out of retries).
fn spool_n(logger: &HttpLogger, n: u64, tag: &str) {
    for i in 0..n {
        log::Log::log(
            logger,
            &log::Record::builder()
                .args(format_args!("{tag} {i}"))
                .level(log::Level::Warn)
                .build(),
        );
    }
    let deadline = Instant::now() + WAIT;
    while logger.stats().spooled < n {
        assert!(Instant::now() < deadline, "{:?}", logger.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A quick logger of one process's tests: retries given up on at once.
fn quick(addr: SocketAddr, dir: &Path) -> http_logger::Builder {
    HttpLogger::builder(addr.to_string(), "/")
        .spool(dir)
        .connect_timeout(Duration::from_millis(200))
        .retry_budget(1, Duration::from_millis(100))
        .print_losses(false)
}

/// A receiver that closes connections without answering (restarting, a proxy without its
/// backend) refuses no record: the spool keeps them all. So does a 404 (a receiver that
/// moved), which refuses every record alike.
fn no_answer_or_a_404_keeps_the_spool() {
    for reply in [Reply::Close, Reply::Status(404)] {
        let dir = spool_dir("kept");
        let addr = nothing_listens();
        let logger = quick(addr, &dir).build().expect("build");
        spool_n(&logger, 20, "r");
        let server = back_on(addr, move |_, _| reply.clone());
        // Replay goes on meanwhile, every pause.
        let deadline = Instant::now() + Duration::from_secs(3);
        while server.requests() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let stats = logger.stats();
        assert!(server.requests() >= 2, "replay tried");
        assert_eq!(
            (stats.spooled, stats.sent, stats.failed),
            (20, 0, 0),
            "{stats:?}"
        );
        drop(server);
        // Back for real: all of them go.
        let server = back_on(addr, |_, _| Reply::Status(200));
        assert!(logger.flush_timeout(WAIT), "{:?}", logger.stats());
        assert_each_once(&received(&server, 20, Duration::from_secs(10)), "r", 0..20);
        drop(logger);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// One record the receiver (or a proxy before it) never answers holds no other back: after a
/// few tries it waits behind them, and stays on disk.
fn one_record_never_answered_holds_no_other_back() {
    let dir = spool_dir("poison");
    let addr = nothing_listens();
    let logger = quick(addr, &dir).build().expect("build");
    log(&logger, format_args!("poison"));
    spool_n(&logger, 4, "r");
    let wait = Instant::now() + WAIT;
    while logger.stats().spooled < 5 {
        assert!(Instant::now() < wait, "{:?}", logger.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let server = back_on(addr, |_, req: &support::Request| {
        if req.field("msg").as_deref() == Some("poison") {
            Reply::Close
        } else {
            Reply::Status(200)
        }
    });
    let wait = Instant::now() + WAIT;
    while logger.stats().sent < 4 {
        assert!(Instant::now() < wait, "{:?}", logger.stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut got: HashMap<String, usize> = HashMap::new();
    for request in server.try_drain() {
        for msg in messages(&request) {
            *got.entry(msg).or_default() += 1;
        }
    }
    assert_each_once(&got, "r", 0..4);
    let stats = logger.stats();
    assert_eq!((stats.spooled, stats.failed), (1, 0), "{stats:?}");
    drop(logger);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Steady traffic after an outage never holds the backlog back: replay takes turns with it.
fn replay_takes_turns_with_steady_traffic() {
    let dir = spool_dir("turns");
    let addr = nothing_listens();
    let logger = std::sync::Arc::new(
        quick(addr, &dir)
            .queue_capacity(100)
            .batch(Batch::ndjson().max_delay(Duration::from_millis(20)))
            .build()
            .expect("build"),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (logger, stop) = (logger.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                log(&logger, format_args!("t {i}"));
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let deadline = Instant::now() + WAIT;
    while logger.stats().spooled < 100 {
        assert!(Instant::now() < deadline, "{:?}", logger.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let _server = back_on(addr, |_, _| Reply::Delay(Duration::from_millis(30), 200));
    let deadline = Instant::now() + WAIT;
    while logger.stats().spooled > 0 {
        assert!(
            Instant::now() < deadline,
            "the backlog waits: {:?}",
            logger.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.join().unwrap();
    let stats = logger.stats();
    assert!(stats.replayed >= 100 && stats.failed == 0, "{stats:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// After a restart, records come back in the order they were logged: the queue's (older)
/// ones, spooled at the shutdown, and the one in flight, before those the full queue had
/// handed over.
fn after_a_restart_records_come_back_in_the_order_logged() {
    let dir = spool_dir("order");
    let addr = nothing_listens();
    {
        let logger = HttpLogger::builder(addr.to_string(), "/")
            .spool(&dir)
            .queue_capacity(10)
            .connect_timeout(Duration::from_millis(200))
            .retry_budget(3, Duration::from_secs(30))
            .shutdown_timeout(Duration::from_millis(300))
            .print_losses(false)
            .build()
            .expect("build");
        for i in 0..100 {
            log(&logger, format_args!("{i}"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let server = Server::start();
    // Its files are taken once the first logger's threads let them go (a look every 5 s).
    let logger = HttpLogger::builder(server.host(), "/")
        .spool(&dir)
        .print_losses(false)
        .build()
        .expect("build");
    let mut order = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while order.len() < 100 && Instant::now() < deadline {
        if let Some(r) = server.recv(Duration::from_millis(200)) {
            order.push(
                r.field("msg")
                    .expect("msg")
                    .parse::<u32>()
                    .expect("a number"),
            );
        }
    }
    drop(logger);
    assert_eq!(order, (0..100).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A record of this logger's that is corrupt on disk is counted dropped, with why: nothing
/// stays counted on disk, and a flush does not wait for it.
fn a_corrupt_record_on_disk_is_counted_dropped() {
    let dir = spool_dir("corrupt");
    let addr = nothing_listens();
    let logger = quick(addr, &dir).build().expect("build");
    spool_n(&logger, 5, "r");
    let path = spool_files(&dir)
        .into_iter()
        .find(|n| n.ends_with(".spool"))
        .map(|n| dir.join(n))
        .expect("a spool file");
    // The last byte flipped: the last record fails its checksum.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 1;
    bytes[at] ^= 0xff;
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&bytes[at..], at as u64)
            .unwrap();
    }
    let server = back_on(addr, |_, _| Reply::Status(200));
    assert!(logger.flush_timeout(WAIT), "{:?}", logger.stats());
    let s = logger.stats();
    assert_eq!(
        (s.sent, s.dropped, s.spooled, s.queued),
        (4, 1, 0, 0),
        "{s:?}"
    );
    assert!(logger.last_error().unwrap_or_default().contains("corrupt"));
    assert_each_once(&received(&server, 4, Duration::from_secs(10)), "r", 0..4);
    assert!(!spool_files(&dir).iter().any(|n| n.ends_with(".spool")));
    drop(logger);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A record larger than `queue_max_bytes` by itself goes to the spool, not away.
fn a_record_past_queue_max_bytes_goes_to_the_spool() {
    let dir = spool_dir("big");
    let logger = quick(nothing_listens(), &dir)
        .queue_max_bytes(4096)
        .build()
        .expect("build");
    let big = "x".repeat(10_000);
    log(&logger, format_args!("{big}"));
    let deadline = Instant::now() + WAIT;
    while logger.stats().spooled == 0 {
        assert!(Instant::now() < deadline, "{:?}", logger.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(logger.stats().dropped, 0);
    drop(logger);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn main() {
    if let Ok(scenario) = std::env::var("HTTP_LOGGER_CHILD") {
        let host = std::env::var("HTTP_LOGGER_HOST").expect("HTTP_LOGGER_HOST");
        child(&scenario, &host);
        return;
    }
    harness::run(&[
        (
            "no_answer_or_a_404_keeps_the_spool",
            no_answer_or_a_404_keeps_the_spool,
        ),
        (
            "one_record_never_answered_holds_no_other_back",
            one_record_never_answered_holds_no_other_back,
        ),
        (
            "replay_takes_turns_with_steady_traffic",
            replay_takes_turns_with_steady_traffic,
        ),
        (
            "after_a_restart_records_come_back_in_the_order_logged",
            after_a_restart_records_come_back_in_the_order_logged,
        ),
        (
            "a_corrupt_record_on_disk_is_counted_dropped",
            a_corrupt_record_on_disk_is_counted_dropped,
        ),
        (
            "a_record_past_queue_max_bytes_goes_to_the_spool",
            a_record_past_queue_max_bytes_goes_to_the_spool,
        ),
        (
            "records_out_of_retries_wait_on_disk_and_go_when_the_receiver_is_back",
            records_out_of_retries_wait_on_disk_and_go_when_the_receiver_is_back,
        ),
        (
            "an_unusable_directory_fails_the_build",
            an_unusable_directory_fails_the_build,
        ),
        (
            "an_outage_is_ridden_out_across_a_restart",
            an_outage_is_ridden_out_across_a_restart,
        ),
        (
            "sigterm_puts_what_is_left_on_disk",
            sigterm_puts_what_is_left_on_disk,
        ),
        (
            "short_lived_processes_replay_a_backlog_in_parts_once_each",
            short_lived_processes_replay_a_backlog_in_parts_once_each,
        ),
        (
            "sigkill_while_spilling_loses_nothing_on_disk",
            sigkill_while_spilling_loses_nothing_on_disk,
        ),
        (
            "two_processes_at_once_share_the_dead_ones_files",
            two_processes_at_once_share_the_dead_ones_files,
        ),
        (
            "a_full_disk_drops_with_a_reason_and_keeps_what_is_on_disk",
            a_full_disk_drops_with_a_reason_and_keeps_what_is_on_disk,
        ),
    ]);
}
