//! The two calls into the C library that std does not offer: the OS thread identifier Python
//! reports as `thread`, and `atexit`, which runs the delivery of queued records when `main`
//! returns or `std::process::exit` is called.
#![allow(unsafe_code)]

/// The identifier of the calling OS thread: `pthread_self()` on Unix, as Python's
/// `threading.get_ident()`; elsewhere a process-unique number.
pub(crate) fn thread_ident() -> u64 {
    #[cfg(unix)]
    {
        // SAFETY: pthread_self has no preconditions and always succeeds.
        let id = unsafe { libc::pthread_self() };
        id as u64
    }
    #[cfg(not(unix))]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}

/// Registers `f` to run at normal process exit. Returns false if it could not be registered.
pub(crate) fn at_exit(f: extern "C" fn()) -> bool {
    #[cfg(any(unix, windows))]
    {
        // SAFETY: `f` is a plain `extern "C" fn()` with no captured state; the C library keeps
        // the pointer and calls it once at exit. It must not unwind, which the caller ensures.
        unsafe { libc::atexit(f) == 0 }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = f;
        false
    }
}
