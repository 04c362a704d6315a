//! The calls into the C library that std does not offer: the OS thread identifier Python
//! reports as `thread`; `atexit`, which runs the delivery of queued records when `main`
//! returns or `std::process::exit` is called; and, for the spool, `flock`, `SIGXFSZ`, and
//! positional reads and writes.
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

/// Takes an exclusive `flock` on `file` without waiting: false when another open file holds
/// one (a live process's spool file). Released when the file is closed, or its process ends.
/// Elsewhere than Unix, no lock is taken: true.
pub(crate) fn try_lock(file: &std::fs::File) -> std::io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the life of `file`; flock has no other
        // preconditions.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(false)
        } else {
            Err(e)
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(true)
    }
}

/// Makes a write past the file size limit (`RLIMIT_FSIZE`) fail with `EFBIG` instead of
/// killing the process with `SIGXFSZ`, unless the program chose what the signal does.
pub(crate) fn survive_file_size_limit() {
    #[cfg(unix)]
    {
        // SAFETY: sigaction with a null new action only reads the current one into `old`;
        // setting SIG_IGN installs no handler code.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGXFSZ, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_DFL
            {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            }
        }
    }
}

/// Reads exactly `buf.len()` bytes of `file` at `offset`.
pub(crate) fn read_exact_at(
    file: &std::fs::File,
    buf: &mut [u8],
    offset: u64,
) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

/// Writes all of `buf` to `file` at `offset`.
pub(crate) fn write_all_at(file: &std::fs::File, buf: &[u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.write_all(buf)
    }
}
