//! The test runner of the `harness = false` test files (`tests/global.rs`, `tests/fleet.rs`),
//! which re-run their own binary as child processes: runs each named test (those whose name
//! holds one of the arguments that are not options, or all), prints libtest's lines, and exits
//! with 1 when one failed.

use std::io::Read;
use std::process::Child;
use std::time::{Duration, Instant};

/// How a child process of a test ended, and what it printed.
#[allow(dead_code)] // tests/fleet.rs reads its children its own way
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Waits for `child` (started with its stdout and stderr piped) to end, and takes what it
/// printed; past `wait` it is killed and the test fails, naming `scenario`.
#[allow(dead_code)]
pub fn finish(mut child: Child, scenario: &str, wait: Duration) -> Outcome {
    let deadline = Instant::now() + wait;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait child") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let _ = child
        .stdout
        .take()
        .map(|mut s| s.read_to_string(&mut stdout));
    let _ = child
        .stderr
        .take()
        .map(|mut s| s.read_to_string(&mut stderr));
    let status =
        status.unwrap_or_else(|| panic!("child {scenario} still running after {wait:?}: {stderr}"));
    Outcome {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Runs `tests` as libtest would.
pub fn run(tests: &[(&str, fn())]) {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    println!("\nrunning {} tests", tests.len());
    let (mut passed, mut failed, mut filtered) = (0, 0, 0);
    for &(name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            filtered += 1;
            continue;
        }
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    let result = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {result}. {passed} passed; {failed} failed; 0 ignored; 0 measured; \
         {filtered} filtered out\n"
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
