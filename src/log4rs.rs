//! [log4rs](https://docs.rs/log4rs) support (feature `log4rs`).

use crate::HttpLogger;

impl HttpLogger {
    /// This logger as a log4rs appender, to put beside log4rs's console and file appenders.
    /// log4rs's own filters and levels apply first, then this logger's
    /// [`level`](crate::Builder::level) and [`filter`](crate::Builder::filter).
    ///
    /// ```no_run
    /// use log4rs::append::console::ConsoleAppender;
    /// use log4rs::config::{Appender, Config, Root};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let http = http_logger::HttpLogger::builder("localhost:8000", "/").build()?;
    /// let config = Config::builder()
    ///     .appender(Appender::builder().build("console", Box::new(ConsoleAppender::builder().build())))
    ///     .appender(Appender::builder().build("http", http.into_appender()))
    ///     .build(Root::builder().appender("console").appender("http").build(log::LevelFilter::Info))?;
    /// log4rs::init_config(config)?;
    /// log::info!("to the console and to the receiver");
    /// # Ok(()) }
    /// ```
    pub fn into_appender(self) -> Box<dyn log4rs::append::Append> {
        Box::new(self)
    }
}
