//! Which Python interpreters the interop tests run: the one named by `HTTP_LOGGER_PYTHON`
//! (else `python3` on `PATH`), and every CPython 3.8 to 3.13 that pyenv installed.
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};

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
