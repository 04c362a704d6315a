//! The test runner of the `harness = false` test files (`tests/global.rs`, `tests/fleet.rs`),
//! which re-run their own binary as child processes: runs each named test (those whose name
//! holds one of the arguments that are not options, or all), prints libtest's lines, and exits
//! with 1 when one failed.

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
