//! Sends a few records of every kind to a receiver: every level, an error with its cause
//! chain, key-values, and a message full of characters that need encoding.
//!
//! Start the receiver in one terminal, then run this in another:
//!
//! ```text
//! cargo run --example receiver
//! cargo run --example hello                      # POST to 127.0.0.1:8000/
//! cargo run --example hello -- 127.0.0.1:8000 get   # the same as GET query strings
//! ```
//!
//! Nothing more is needed for delivery: the records are on their way when `main` returns,
//! and the logger delivers them before the process exits.

use std::error::Error;
use std::fmt;

use http_logger::{HttpLogger, Method};

/// An error with a cause, as an application would have.
#[derive(Debug)]
struct SaveError {
    user: &'static str,
    source: std::io::Error,
}

impl fmt::Display for SaveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not save profile of {}", self.user)
    }
}

impl Error for SaveError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let host = args.next().unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    let method = match args.next().as_deref() {
        None | Some("post") => Method::Post,
        Some("get") => Method::Get,
        Some(other) => return Err(format!("unknown method {other:?}: use post or get").into()),
    };

    HttpLogger::builder(host, "/")
        .method(method)
        .level(log::LevelFilter::Trace)
        .init()?;

    log::error!("disk {} is {}% full", "/var", 97);
    log::warn!("retrying in {} ms", 250);
    log::info!(user = "ann", attempts = 3; "user {} logged in", "ann");
    log::debug!("cache hit ratio {:.2}", 0.8731);
    log::trace!(target: "hello::wire", "raw frame {:02x?}", [0xde, 0xad, 0xbe, 0xef]);

    let err = SaveError {
        user: "ann",
        source: std::io::Error::other("database is read-only"),
    };
    log::error!(err:err = err, user = "ann"; "request failed");

    log::info!("special: h\u{e9}llo \u{4e16}\u{754c} & a=b %41 +plus ~tilde/slash \"q\" \u{1F980}");
    Ok(())
}
