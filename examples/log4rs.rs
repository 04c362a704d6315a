//! http-logger as a log4rs appender, beside log4rs's console appender (feature `log4rs`).
//!
//! ```text
//! cargo run --example receiver                      # in one terminal
//! cargo run --example log4rs --features log4rs      # in another
//! ```

use http_logger::HttpLogger;
use log4rs::append::console::ConsoleAppender;
use log4rs::config::{Appender, Config, Root};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".to_owned());
    let http = HttpLogger::builder(host, "/").build()?;
    let console = ConsoleAppender::builder().build();
    let config = Config::builder()
        .appender(Appender::builder().build("console", Box::new(console)))
        .appender(Appender::builder().build("http", http.into_appender()))
        .build(
            Root::builder()
                .appender("console")
                .appender("http")
                .build(log::LevelFilter::Info),
        )?;
    log4rs::init_config(config)?;

    log::info!("through log4rs: to the console and to the receiver");
    log::warn!(attempt = 2; "a key-value through log4rs");
    // Nothing more: the records are delivered when main returns.
    Ok(())
}
