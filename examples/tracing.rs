//! A tokio service that logs through `tracing`: the usual `fmt` layer on the console, and
//! `HttpLayer` sending the same events, with their spans' fields, to a receiver. Tasks, nested
//! spans, an error with a cause chain, and a dependency that logs through `log` (bridged into
//! `tracing` by `tracing-log`, so its records arrive once, through the layer).
//!
//! Start the receiver in one terminal, then run this in another:
//!
//! ```text
//! cargo run --example receiver
//! cargo run --example tracing --features tracing                  # to 127.0.0.1:8000/
//! cargo run --example tracing --features tracing -- 127.0.0.1:9000
//! ```
//!
//! The events are delivered before the process exits, with no call from `main`.

use std::error::Error;
use std::fmt;

use tracing::Instrument as _;
use tracing_subscriber::prelude::*;

/// An error with a cause, as an application would have.
#[derive(Debug)]
struct SaveError {
    user: &'static str,
    cause: std::io::Error,
}

impl fmt::Display for SaveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not save profile of {}", self.user)
    }
}

impl Error for SaveError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.cause)
    }
}

async fn handle(order: u32) {
    tracing::info!(items = 3, "order received");
    let db = tracing::debug_span!("db", table = "orders");
    async {
        if order == 2 {
            let e = SaveError {
                user: "bob",
                cause: std::io::Error::other("disk quota exceeded"),
            };
            tracing::error!(error = &e as &dyn Error, "order failed");
        } else {
            tracing::info!(rows = 1, "saved");
        }
    }
    .instrument(db)
    .await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    let host = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".into());
    let http = http_logger::HttpLogger::builder(host, "/")
        .level(log::LevelFilter::Debug)
        .build_layer()?;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer())
        .with(http)
        .init();

    let tasks: Vec<_> = (1..=3)
        .map(|order| tokio::spawn(handle(order).instrument(tracing::info_span!("request", order))))
        .collect();
    for task in tasks {
        task.await?;
    }
    // A dependency logging through `log`: the same receiver, once.
    log::warn!(target: "some_dependency", "disk {}% full", 97);
    Ok(())
}
