//! Logs to the console and to an HTTP receiver at once, with `fern`'s `chain`: the built
//! `HttpLogger` is a plain `log::Log` beside any other output. The console shows every record
//! at DEBUG and above; the receiver gets INFO and above, filtered with `RUST_LOG`-style
//! directives (from `$HTTP_LOG` when set).
//!
//! ```text
//! cargo run --example receiver      # in one terminal
//! cargo run --example compose       # in another
//! ```

use http_logger::HttpLogger;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    let http = HttpLogger::builder(host, "/")
        .filter("info,compose::noisy=warn")
        .filter_env("HTTP_LOG")
        .build()?;

    fern::Dispatch::new()
        .level(log::LevelFilter::Debug)
        .chain(
            fern::Dispatch::new()
                .format(|out, message, record| {
                    out.finish(format_args!(
                        "{:<5} {}: {}",
                        record.level(),
                        record.target(),
                        message
                    ))
                })
                .chain(std::io::stdout()),
        )
        .chain(Box::new(http) as Box<dyn log::Log>)
        .apply()?;

    log::debug!("console only: below the receiver's level");
    log::info!("to the console and to the receiver");
    log::info!(target: "compose::noisy", "console only: compose::noisy sends WARN and above");
    log::warn!(target: "compose::noisy", "to both");
    // Nothing more: the records are delivered when main returns.
    Ok(())
}
