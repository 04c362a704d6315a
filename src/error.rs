//! The crate's error type.

use std::error::Error as StdError;
use std::fmt;

/// An error from configuring or installing an [`HttpLogger`](crate::HttpLogger).
///
/// Delivery failures never surface as an `Error`: they happen on the background worker and
/// are counted in [`Stats`](crate::Stats). An `Error` comes only from
/// [`Builder::build`](crate::Builder::build) and [`Builder::init`](crate::Builder::init).
///
/// `Display` is a short lowercase message that says what is wrong with the input; the
/// underlying cause, if any, is given by [`source()`](StdError::source) and is never repeated
/// in the message. No secret (password, token, header value) is ever part of an `Error`.
///
/// ```
/// use http_logger::{ErrorKind, HttpLogger};
///
/// let err = HttpLogger::builder("http://localhost:8000", "/").build().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidHost);
/// assert!(err.to_string().contains("scheme"));
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

/// What kind of [`Error`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The `host` is empty, has a bad port, a scheme, a path, user info, CR or LF, or another
    /// character that cannot be in a host.
    InvalidHost,
    /// The `url` does not start with `/`, or holds CR, LF, a space, a control character, a
    /// fragment or a character that is not ASCII.
    InvalidUrl,
    /// A header name is not a valid HTTP token, or its value holds CR, LF or NUL.
    InvalidHeader,
    /// Credentials or an `Authorization` header were set for plain HTTP without opting in.
    InsecureCredentials,
    /// A TLS setting is invalid, or given without `secure(true)`.
    Tls,
    /// Another setting is out of range (a zero queue capacity, say).
    InvalidConfig,
    /// A logger is already installed for the `log` crate.
    AlreadyInitialized,
    /// The background worker thread could not be started.
    Spawn,
    /// The [spool](crate::Builder::spool) directory cannot be created or written.
    Spool,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                kind,
                message: message.into(),
                source: None,
            }),
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Error {
        self.inner.source = Some(source.into());
        self
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_small_send_sync_static() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn display_is_own_layer_and_source_is_the_cause() {
        let cause = std::io::Error::other("no threads left");
        let err =
            Error::new(ErrorKind::Spawn, "could not start the worker thread").with_source(cause);
        assert_eq!(err.to_string(), "could not start the worker thread");
        assert_eq!(
            err.source().map(|s| s.to_string()).as_deref(),
            Some("no threads left")
        );
        assert_eq!(err.kind(), ErrorKind::Spawn);
    }
}
