//! Which Python interpreters the interop tests run: the one named by `HTTP_LOGGER_PYTHON`
//! (else `python3` on `PATH`), and every CPython 3.8 to 3.13 that pyenv installed; and
//! Python's own `HTTPHandler` sending to a receiver (`tests/interop/py_sender.py`).
//!
//! A test crate that has this module also has `mod child;` (`tests/child/mod.rs`).
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::child::{Finished, run_to_end};

/// What the tests that run Python need: the end of the message when it cannot start.
pub const NEEDS: &str = "these tests need Python 3.8 or newer; install Python 3 so that \
                         `python3` is on PATH, or set HTTP_LOGGER_PYTHON to the interpreter's \
                         path";

/// `tests/interop/py_sender.py`: Python's own `HTTPHandler` sends three records to
/// `HOST:PORT`.
pub const SENDER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/py_sender.py");

/// The name of the logger `py_sender.py` logs with.
pub const SENDER_LOGGER: &str = "interop.py_sender";

/// The interpreter to use: `HTTP_LOGGER_PYTHON`, else `python3` on `PATH`.
pub fn python() -> OsString {
    std::env::var_os("HTTP_LOGGER_PYTHON")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Every CPython 3.8 to 3.13 that pyenv installed, as (version, interpreter): each
/// `versions/3.X.*/bin/python3` under `$PYENV_ROOT`, else `$HOME/.pyenv` (no need for the
/// `pyenv` command). Says on stderr which ones run and which minor versions are absent.
///
/// # Panics
///
/// When it finds none.
pub fn pyenv_pythons() -> Vec<(String, PathBuf)> {
    let root = std::env::var_os("PYENV_ROOT")
        .filter(|root| !root.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".pyenv")))
        .expect("neither PYENV_ROOT nor HOME is set: cannot look for pyenv's Pythons");
    let versions = root.join("versions");
    let mut names: Vec<String> = std::fs::read_dir(&versions)
        .map(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut found = Vec::new();
    let mut absent = Vec::new();
    for minor in 8..=13 {
        let prefix = format!("3.{minor}.");
        let before = found.len();
        for name in names.iter().filter(|name| name.starts_with(&prefix)) {
            let python = versions.join(name).join("bin").join("python3");
            if python.is_file() {
                found.push((name.clone(), python));
            }
        }
        if found.len() == before {
            absent.push(format!("3.{minor}"));
        }
    }
    assert!(
        !found.is_empty(),
        "no CPython 3.8 to 3.13 under {} (PYENV_ROOT, else ~/.pyenv): install one with \
         `pyenv install 3.12`",
        versions.display()
    );
    let running: Vec<&str> = found.iter().map(|(version, _)| version.as_str()).collect();
    say(&format!(
        "pyenv Pythons in {}: running {}; skipped (absent): {}",
        versions.display(),
        running.join(", "),
        if absent.is_empty() {
            "none".to_owned()
        } else {
            absent.join(", ")
        }
    ));
    found
}

/// Writes a line to the process's stderr itself: the test harness captures `eprintln!`, and
/// which Pythons ran must show in every run.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs `check` under every CPython that [`pyenv_pythons`] finds, one thread each, and fails
/// naming the versions whose check panicked; says on stderr which passed `what`.
pub fn for_every_pyenv_python(what: &str, check: impl Fn(&OsStr) + Sync) {
    let pythons = pyenv_pythons();
    let check = &check;
    let failed: Vec<&str> = std::thread::scope(|s| {
        let runs: Vec<_> = pythons
            .iter()
            .map(|(version, python)| {
                let run = std::thread::Builder::new()
                    .name(format!("python-{version}"))
                    .spawn_scoped(s, move || check(python.as_os_str()))
                    .expect("spawn a thread");
                (version, run)
            })
            .collect();
        runs.into_iter()
            .filter_map(|(version, run)| run.join().is_err().then_some(version.as_str()))
            .collect()
    });
    assert!(
        failed.is_empty(),
        "failed under {failed:?}: see the panics above"
    );
    let passed: Vec<&str> = pythons
        .iter()
        .map(|(version, _)| version.as_str())
        .collect();
    say(&format!("{what} under {}", passed.join(", ")));
}

/// One record `py_sender.py` sent: what it logged, and what it printed about it.
pub struct SenderRecord {
    /// `levelname`.
    pub level: &'static str,
    /// `msg`, as Python sends it: unformatted.
    pub msg: &'static str,
    /// `repr(record.created)`, as printed.
    pub created: String,
    /// `repr(record.msecs)`, as printed.
    pub msecs: String,
    /// `record.lineno`, as printed.
    pub lineno: String,
}

/// Runs `py_sender.py` under `python` to its end against the receiver at `host`
/// (`HOST:PORT`): Python's own `HTTPHandler` sends a POST, a GET and an exception. Returns
/// the records sent, in order.
///
/// # Panics
///
/// If it cannot be started, fails, goes on for longer than `child::WAIT`, or does not print
/// one `CREATED MSECS LINENO` line per record; the messages start with `ctx`.
pub fn run_py_sender(python: &OsStr, host: &str, ctx: &str) -> Vec<SenderRecord> {
    let mut command = Command::new(python);
    command.arg(SENDER_SCRIPT).arg(host);
    let Finished {
        status,
        stdout: printed,
        stderr,
    } = run_to_end(command, NEEDS);
    assert!(
        status.success(),
        "{ctx}: py_sender.py failed ({status}): {}",
        stderr.join("\n")
    );
    let expected = [
        ("INFO", "hello from python %s"), // Python sends msg unformatted
        ("WARNING", "warning over GET"),
        ("ERROR", "division failed"),
    ];
    assert_eq!(
        printed.len(),
        expected.len(),
        "{ctx}: py_sender.py printed {printed:?}"
    );
    printed
        .iter()
        .zip(expected)
        .map(|(printed, (level, msg))| {
            let &[created, msecs, lineno] = &printed.split(' ').collect::<Vec<_>>()[..] else {
                panic!("{ctx}: py_sender.py printed {printed:?}, not CREATED MSECS LINENO");
            };
            SenderRecord {
                level,
                msg,
                created: created.to_owned(),
                msecs: msecs.to_owned(),
                lineno: lineno.to_owned(),
            }
        })
        .collect()
}
