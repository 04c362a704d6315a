//! The end of the program: every built logger still alive delivers what it holds when `main`
//! returns or `std::process::exit` is called (an `atexit` hook), and, when a builder asked for
//! it, on SIGTERM or SIGINT before the process ends as the signal would have ended it.

use std::sync::{Arc, Mutex, Once, Weak};
use std::time::{Duration, Instant};

use crate::deadline::FOREVER;
use crate::delivery::progress::Shared;

/// Every built logger still alive, with its shutdown timeout: a logger inside `fern` or
/// `log4rs`, or installed, is never dropped.
static LIVE: Mutex<Vec<(Weak<Shared>, Duration)>> = Mutex::new(Vec::new());

/// Registers a built logger for delivery at exit (and the exit hook, once).
pub(crate) fn deliver_at_exit(shared: &Arc<Shared>, shutdown_timeout: Duration) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        crate::sys::at_exit(exit_hook);
    });
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|(shared, _)| shared.strong_count() > 0);
    live.push((Arc::downgrade(shared), shutdown_timeout));
}

/// Delivers what every live logger holds, all within the longest of their shutdown timeouts;
/// a logger that waited its time out in a flush before does not wait again. `what` names the
/// occasion in the line a logger prints when it gives records up.
fn deliver_all(what: &str) {
    let live: Vec<_> = LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|(shared, timeout)| Some((shared.upgrade()?, *timeout)))
        .collect();
    let start = Instant::now();
    for (shared, timeout) in live {
        shared.shut_down(start + timeout.min(FOREVER), timeout, what);
    }
}

/// The signal being delivered for, if any (0: none).
static SIGNALLED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Runs at normal exit.
extern "C" fn exit_hook() {
    // Unwinding out of an `extern "C"` fn aborts; a panic here must not.
    let _ = std::panic::catch_unwind(|| deliver_all("at exit"));
    // `main` returned while a signal's delivery ran: the process still ends as the signal
    // would have ended it, not with `main`'s status.
    #[cfg(unix)]
    match SIGNALLED.load(std::sync::atomic::Ordering::SeqCst) {
        0 => {}
        signal => die_of(signal),
    }
}

/// From now on, SIGTERM and SIGINT make every live logger deliver what it holds (within its
/// shutdown timeout), then end the process as the signal would have (status 143 for SIGTERM,
/// 130 for SIGINT). Once per process; `signal-hook` takes the signals on a thread of its own.
/// Returns false when the signals could not be taken.
#[cfg(unix)]
pub(crate) fn deliver_on_signals() -> bool {
    use signal_hook::consts::{SIGINT, SIGTERM};
    static WATCH: Once = Once::new();
    static WATCHING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    WATCH.call_once(|| {
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("http-logger-signals".into())
            .spawn(move || {
                let mut delivering = false;
                for signal in signals.forever() {
                    if delivering {
                        // A second signal while delivering (Ctrl-C again): end now.
                        die_of(signal);
                    }
                    delivering = true;
                    SIGNALLED.store(signal, std::sync::atomic::Ordering::SeqCst);
                    let what = if signal == SIGTERM {
                        "on SIGTERM"
                    } else {
                        "on SIGINT"
                    };
                    let spawned = std::thread::Builder::new()
                        .name("http-logger-shutdown".into())
                        .spawn(move || {
                            let _ = std::panic::catch_unwind(|| deliver_all(what));
                            die_of(signal);
                        });
                    if spawned.is_err() {
                        // No thread to deliver on: deliver here (a second signal then waits
                        // for it), never swallow the signal.
                        let _ = std::panic::catch_unwind(|| deliver_all(what));
                        die_of(signal);
                    }
                }
            });
        WATCHING.store(spawned.is_ok(), std::sync::atomic::Ordering::SeqCst);
    });
    WATCHING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Ends the process as `signal` would have: killed by it.
#[cfg(unix)]
fn die_of(signal: i32) -> ! {
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    // Only if the default action did not end the process.
    std::process::exit(128 + signal)
}

/// Signals are a Unix matter: elsewhere nothing is taken.
#[cfg(not(unix))]
pub(crate) fn deliver_on_signals() -> bool {
    true
}
