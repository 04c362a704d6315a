//! The builder, its defaults, and the checks `build()` makes.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ureq_proto::http::{HeaderName, HeaderValue, header};

use crate::delivery::progress::Shared;
use crate::delivery::progress::Spilling;
use crate::delivery::retry::RetryPolicy;
use crate::delivery::spool::Spool;
use crate::delivery::worker::{Worker, run_spill};
use crate::error::{Error, ErrorKind};
use crate::logger::{HttpLogger, Overflow};
use crate::transport::conn::TlsTarget;
use crate::transport::endpoint::Endpoint;
use crate::transport::exchange::BodyHeaders;
use crate::transport::{Transport, TransportConfig, tls};
use crate::wire::Method;
use crate::wire::batch::Batch;
use crate::wire::encode::Encoding;
use crate::wire::fields::{Fields, MapRecord, Statics};
use crate::wire::record::now_ns;

/// The level below which records are ignored, by default.
pub const DEFAULT_LEVEL: log::LevelFilter = log::LevelFilter::Info;
/// Records the queue holds, by default.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16_384;
/// The most bytes the records in the queue may hold, by default: 64 MiB.
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 64 << 20;
/// Time allowed to open a connection, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a whole request (connect, send, answer), by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a flush, a drop or the exit waits for queued records, by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of one record after its first attempt, by default.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 12;
/// Time from a record's first attempt after which it is not retried, by default.
pub const DEFAULT_RETRY_TIME: Duration = Duration::from_secs(30);
/// The first wait before a retry, by default; it doubles up to [`DEFAULT_MAX_BACKOFF`].
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two retries, by default.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Connections (and worker threads) delivering at once, by default.
pub const DEFAULT_CONNECTIONS: usize = 1;
/// The most connections a logger may have.
const MAX_CONNECTIONS: usize = 64;
/// The most bytes of text (message, error, key-values) one record keeps, by default.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 4 << 20;
/// The most bytes a logger keeps in its [spool](Builder::spool), by default: 256 MiB.
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 256 << 20;

impl HttpLogger {
    /// Installs a logger sending to `host` (`name`, `name:port` or `[v6]:port`) at `url` (a path
    /// starting with `/`, with a query if wanted) with `method`, every other setting at its
    /// default. The shorthand for `HttpLogger::builder(host, url).method(method).init()`.
    ///
    /// # Errors
    ///
    /// As [`Builder::init`]: a malformed host or url, or a logger already installed.
    ///
    /// ```no_run
    /// use http_logger::{HttpLogger, Method};
    ///
    /// # fn main() -> Result<(), http_logger::Error> {
    /// HttpLogger::init("localhost:8000", "/", Method::Post)?;
    /// log::warn!("disk {}% full", 91);
    /// # Ok(()) }
    /// ```
    pub fn init(host: &str, url: &str, method: Method) -> Result<(), Error> {
        Self::builder(host, url).method(method).init()
    }

    /// A [`Builder`] for a logger sending to `host` at `url`, with every setting at its default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_logger::{HttpLogger, Method};
    ///
    /// # fn main() -> Result<(), http_logger::Error> {
    /// let logger = HttpLogger::builder("127.0.0.1:8000", "/log")
    ///     .method(Method::Get)
    ///     .level(log::LevelFilter::Debug)
    ///     .timeout(Duration::from_secs(2))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(host: impl Into<String>, url: impl Into<String>) -> Builder {
        Builder::new(host.into(), url.into())
    }
}

/// Configures an [`HttpLogger`]. Made by [`HttpLogger::builder`].
///
/// Setters never fail: [`build`](Builder::build) checks everything and says what is wrong.
///
/// | setting | default |
/// |---|---|
/// | [`method`](Builder::method) | [`Method::Post`] |
/// | [`level`](Builder::level) | [`DEFAULT_LEVEL`] (`Info`) |
/// | [`filter`](Builder::filter), [`filter_env`](Builder::filter_env) | none |
/// | [`stack_info`](Builder::stack_info) | `Off` |
/// | [`secure`](Builder::secure) | `false` (plain HTTP) |
/// | [`credentials`](Builder::credentials) | none |
/// | [`header`](Builder::header), [`bearer_token`](Builder::bearer_token) | none |
/// | [`add_root_certificate`](Builder::add_root_certificate) | none: the Mozilla roots |
/// | [`client_certificate`](Builder::client_certificate) | none |
/// | [`connect_timeout`](Builder::connect_timeout) | [`DEFAULT_CONNECT_TIMEOUT`] (5 s) |
/// | [`timeout`](Builder::timeout) | [`DEFAULT_TIMEOUT`] (10 s) |
/// | [`queue_capacity`](Builder::queue_capacity) | [`DEFAULT_QUEUE_CAPACITY`] (16,384) |
/// | [`queue_max_bytes`](Builder::queue_max_bytes) | [`DEFAULT_QUEUE_MAX_BYTES`] (64 MiB) |
/// | [`connections`](Builder::connections) | [`DEFAULT_CONNECTIONS`] (1) |
/// | [`map_record`](Builder::map_record) | none |
/// | [`json`](Builder::json) | `false` (a form body) |
/// | [`overflow`](Builder::overflow) | [`Overflow::Drop`] |
/// | [`shutdown_timeout`](Builder::shutdown_timeout) | [`DEFAULT_SHUTDOWN_TIMEOUT`] (5 s) |
/// | [`retry_budget`](Builder::retry_budget) | [`DEFAULT_RETRY_ATTEMPTS`] (12), [`DEFAULT_RETRY_TIME`] (30 s) |
/// | [`backoff`](Builder::backoff) | [`DEFAULT_MIN_BACKOFF`] (50 ms) to [`DEFAULT_MAX_BACKOFF`] (2 s) |
/// | [`spool`](Builder::spool) | none: what the queue cannot hold is dropped |
/// | [`spool_max_bytes`](Builder::spool_max_bytes) | [`DEFAULT_SPOOL_MAX_BYTES`] (256 MiB) |
/// | [`print_losses`](Builder::print_losses) | `true` |
/// | [`flush_on_signals`](Builder::flush_on_signals) | `false` |
/// | [`hostname`](Builder::hostname) | `true` |
/// | [`process_name`](Builder::process_name) | the executable's file name |
/// | [`max_record_bytes`](Builder::max_record_bytes) | [`DEFAULT_MAX_RECORD_BYTES`] (4 MiB) |
///
/// `Debug` shows every setting but secrets: passwords and header values are redacted.
#[derive(Clone)]
pub struct Builder {
    host: String,
    url: String,
    method: Method,
    level: log::LevelFilter,
    secure: bool,
    credentials: Option<(String, String)>,
    credentials_over_http: bool,
    headers: Vec<(String, String)>,
    root_certificates: Vec<Vec<u8>>,
    client_certificate: Option<(Vec<u8>, Vec<u8>)>,
    connect_timeout: Duration,
    timeout: Duration,
    queue_capacity: usize,
    queue_max_bytes: usize,
    overflow: Overflow,
    shutdown_timeout: Duration,
    retry: RetryPolicy,
    hostname: bool,
    process_name: Option<String>,
    max_record_bytes: usize,
    filter: Option<String>,
    filter_env: Option<String>,
    stack_info: log::LevelFilter,
    connections: usize,
    map_record: Option<MapRecord>,
    json: bool,
    batch: Option<Batch>,
    gzip: bool,
    print_losses: bool,
    flush_on_signals: bool,
    spool: Option<PathBuf>,
    spool_max_bytes: u64,
}

impl Builder {
    pub(crate) fn new(host: String, url: String) -> Builder {
        Builder {
            host,
            url,
            method: Method::default(),
            level: DEFAULT_LEVEL,
            secure: false,
            credentials: None,
            credentials_over_http: false,
            headers: Vec::new(),
            root_certificates: Vec::new(),
            client_certificate: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            overflow: Overflow::default(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            retry: RetryPolicy {
                attempts: DEFAULT_RETRY_ATTEMPTS,
                budget: DEFAULT_RETRY_TIME,
                min_backoff: DEFAULT_MIN_BACKOFF,
                max_backoff: DEFAULT_MAX_BACKOFF,
            },
            hostname: true,
            process_name: None,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            filter: None,
            filter_env: None,
            stack_info: log::LevelFilter::Off,
            connections: DEFAULT_CONNECTIONS,
            map_record: None,
            json: false,
            batch: None,
            gzip: false,
            print_losses: true,
            flush_on_signals: false,
            spool: None,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
        }
    }

    /// Sends with POST (a form body) or GET (a query string).
    ///
    /// Defaults to [`Method::Post`]. (Python's handler defaults to GET.)
    pub fn method(mut self, method: Method) -> Builder {
        self.method = method;
        self
    }

    /// Ignores records less severe than `level`. [`init`](Builder::init) also sets the `log`
    /// crate's max level to it (to the most verbose directive's, with a
    /// [`filter`](Builder::filter)).
    ///
    /// Defaults to [`DEFAULT_LEVEL`] (`Info`).
    pub fn level(mut self, level: log::LevelFilter) -> Builder {
        self.level = level;
        self
    }

    /// Filters records with `RUST_LOG`-style directives (`warn,app::db=debug,hyper=off`), as
    /// `env_logger` does: the most specific module prefix decides. Replaces
    /// [`level`](Builder::level), which is then only the level of a directive without a module.
    /// [`build`](Builder::build) refuses directives that do not parse.
    ///
    /// Defaults to none: [`level`](Builder::level) alone decides.
    pub fn filter(mut self, directives: impl Into<String>) -> Builder {
        self.filter = Some(directives.into());
        self
    }

    /// Reads [`filter`](Builder::filter) directives from the environment variable `var` (say
    /// `RUST_LOG`) when the logger is built; when `var` is unset, the other settings decide.
    ///
    /// Defaults to none.
    pub fn filter_env(mut self, var: impl Into<String>) -> Builder {
        self.filter_env = Some(var.into());
        self
    }

    /// Captures a backtrace into `stack_info` for records at or above `level` (say
    /// `LevelFilter::Error`). The capture happens in the `log!` call and costs tens of
    /// microseconds; symbols are resolved on the worker.
    ///
    /// Defaults to `LevelFilter::Off`: `stack_info` is `None`.
    pub fn stack_info(mut self, level: log::LevelFilter) -> Builder {
        self.stack_info = level;
        self
    }

    /// Sends over HTTPS (TLS with certificate and host name verification against the Mozilla
    /// roots), like Python's `secure=True`.
    ///
    /// Defaults to `false`.
    pub fn secure(mut self, secure: bool) -> Builder {
        self.secure = secure;
        self
    }

    /// Sends `Authorization: Basic base64(user:password)` (UTF-8) with every record, as Python's
    /// `credentials=(user, password)` does.
    ///
    /// Over plain HTTP anyone on the path can read them, so [`build`](Builder::build) refuses
    /// credentials without [`secure(true)`](Builder::secure), unless
    /// [`credentials_over_http(true)`](Builder::credentials_over_http) says otherwise.
    ///
    /// Defaults to none.
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Builder {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    /// Allows [`credentials`](Builder::credentials) and an `Authorization` header over plain
    /// HTTP, as Python sends them. Only for a receiver on a trusted network.
    ///
    /// Defaults to `false`.
    pub fn credentials_over_http(mut self, allow: bool) -> Builder {
        self.credentials_over_http = allow;
        self
    }

    /// Adds a header to every request. [`build`](Builder::build) refuses a name that is not an
    /// HTTP token and a value holding CR, LF or NUL. An `Authorization` header counts as
    /// credentials (see [`credentials`](Builder::credentials)).
    ///
    /// Every header value is treated as a secret, as credentials are: it is in no `Debug`, no
    /// error, and no log record of the crate or of its HTTP stack, at any level. (ureq-proto,
    /// which writes each request, dumps what it writes at `TRACE` to whatever logger the
    /// program installed: it only ever writes a placeholder, which is replaced by the value in
    /// the crate's own send buffer.)
    ///
    /// Defaults to none.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Builder {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends `Authorization: Bearer <token>` with every record. Like
    /// [`credentials`](Builder::credentials), refused over plain HTTP unless
    /// [`credentials_over_http(true)`](Builder::credentials_over_http).
    ///
    /// Defaults to none.
    pub fn bearer_token(self, token: impl AsRef<str>) -> Builder {
        let value = format!("Bearer {}", token.as_ref());
        self.header("Authorization", value)
    }

    /// Trusts the CA certificates in `pem` (one or more `-----BEGIN CERTIFICATE-----` blocks)
    /// to verify the receiver, what Python's `context` is mostly used for. Once one is added,
    /// the added ones are the only roots trusted, as with Python's
    /// `ssl.create_default_context(cafile=...)`: the Mozilla roots are no longer used. Needs
    /// [`secure(true)`](Builder::secure).
    ///
    /// Defaults to none: the Mozilla root certificates (`webpki-roots`).
    pub fn add_root_certificate(mut self, pem: impl AsRef<[u8]>) -> Builder {
        self.root_certificates.push(pem.as_ref().to_vec());
        self
    }

    /// Presents this client certificate chain and private key (PEM) to receivers that require
    /// mutual TLS. Needs [`secure(true)`](Builder::secure).
    ///
    /// Defaults to none.
    pub fn client_certificate(
        mut self,
        certificate_chain_pem: impl AsRef<[u8]>,
        private_key_pem: impl AsRef<[u8]>,
    ) -> Builder {
        self.client_certificate = Some((
            certificate_chain_pem.as_ref().to_vec(),
            private_key_pem.as_ref().to_vec(),
        ));
        self
    }

    /// The most time allowed to open a connection (TCP and TLS).
    ///
    /// Defaults to [`DEFAULT_CONNECT_TIMEOUT`] (5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Builder {
        self.connect_timeout = timeout;
        self
    }

    /// The most time allowed for one whole request: connect, send, and read the answer. A
    /// receiver that never answers costs at most this, then the record is retried.
    ///
    /// Defaults to [`DEFAULT_TIMEOUT`] (10 s).
    pub fn timeout(mut self, timeout: Duration) -> Builder {
        self.timeout = timeout;
        self
    }

    /// How many records the queue holds while the worker delivers. Memory is bounded by it.
    ///
    /// With [`Overflow::Drop`], records less severe than `WARN` fill at most three quarters of
    /// it: when chatter fills the queue (a receiver down, a burst of debug records), warnings
    /// and errors still find room. A record that finds no room is dropped and counted in
    /// [`Stats::dropped`](crate::Stats::dropped).
    ///
    /// Defaults to [`DEFAULT_QUEUE_CAPACITY`] (16,384).
    pub fn queue_capacity(mut self, capacity: usize) -> Builder {
        self.queue_capacity = capacity;
        self
    }

    /// The most memory the records in the queue (and those being delivered) may hold, about:
    /// their text and their bookkeeping. A record that would take the queue past it is dropped
    /// and counted in [`Stats::dropped`](crate::Stats::dropped), as on a full queue. With
    /// [`queue_capacity`](Builder::queue_capacity) it bounds what a receiver that is down can
    /// cost: 16,384 records of 1 MiB would be 16 GiB, but the queue holds at most this.
    ///
    /// Defaults to [`DEFAULT_QUEUE_MAX_BYTES`] (64 MiB).
    pub fn queue_max_bytes(mut self, bytes: usize) -> Builder {
        self.queue_max_bytes = bytes;
        self
    }

    /// What a `log!` call does when the queue is full.
    ///
    /// Defaults to [`Overflow::Drop`]: the caller never waits.
    pub fn overflow(mut self, overflow: Overflow) -> Builder {
        self.overflow = overflow;
        self
    }

    /// The most time [`log::Log::flush`], dropping a built logger, or the exit of a program
    /// with an installed logger waits for queued records to be delivered.
    ///
    /// Defaults to [`DEFAULT_SHUTDOWN_TIMEOUT`] (5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Builder {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long one record is retried after a transient failure (a connection error, a
    /// timeout, 408, 429, or a 5xx other than 501): at most `attempts` retries, and none that
    /// would start later than `time` after its first attempt. Then it is counted as failed.
    ///
    /// Defaults to [`DEFAULT_RETRY_ATTEMPTS`] (12) and [`DEFAULT_RETRY_TIME`] (30 s): enough to
    /// ride out a receiver restart of several seconds.
    pub fn retry_budget(mut self, attempts: u32, time: Duration) -> Builder {
        self.retry.attempts = attempts;
        self.retry.budget = time;
        self
    }

    /// The wait before the first retry, doubled at each retry up to `max`, each wait jittered
    /// down by up to half. A `Retry-After` from the receiver replaces it.
    ///
    /// Defaults to [`DEFAULT_MIN_BACKOFF`] (50 ms) and [`DEFAULT_MAX_BACKOFF`] (2 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Builder {
        self.retry.min_backoff = min;
        self.retry.max_backoff = max;
        self
    }

    /// How many connections deliver at once, each with a worker thread of its own. One keeps
    /// records in the order they were logged; with more, records can arrive out of order
    /// across connections (`created` orders them) and a record being retried no longer holds
    /// back the others.
    ///
    /// Defaults to [`DEFAULT_CONNECTIONS`] (1), for the order that receivers written for
    /// Python's handler assume. Against nginx on a 2-core machine, one connection delivers
    /// 20,000 to 29,000 records a second and two about 1.5 times as much (`bash
    /// scripts/bench.sh`, figures in the README); how much more each connection adds depends
    /// on the receiver and the cores. With one connection, the worker encodes the next record
    /// while the receiver answers.
    pub fn connections(mut self, connections: usize) -> Builder {
        self.connections = connections;
        self
    }

    /// Calls `map` with the fields of every record before it is sent, to add, change or remove
    /// fields: Python's `HTTPHandler.mapLogRecord`, in Rust. It runs on the worker thread, not
    /// in the `log!` call. A record whose hook panics is counted as failed.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), http_logger::Error> {
    /// http_logger::HttpLogger::builder("localhost:8000", "/")
    ///     .map_record(|fields| {
    ///         fields.set("service", "billing");
    ///         fields.remove("exc_info");
    ///     })
    ///     .init()?;
    /// # Ok(()) }
    /// ```
    ///
    /// Defaults to none: the fields of the wire format, unchanged.
    pub fn map_record(mut self, map: impl Fn(&mut Fields) + Send + Sync + 'static) -> Builder {
        self.map_record = Some(Arc::new(map));
        self
    }

    /// Sends the same fields as one JSON object per request (every value a string),
    /// `Content-Type: application/json`, for receivers and collectors that take JSON. Needs
    /// [`Method::Post`].
    ///
    /// Defaults to `false`: a form body.
    pub fn json(mut self, json: bool) -> Builder {
        self.json = json;
        self
    }

    /// Sends many records in one POST, as a collector takes them: NDJSON
    /// ([`Batch::ndjson`]) or a JSON array ([`Batch::json_array`]) of the objects
    /// [`json(true)`](Builder::json) sends one at a time. See [`Batch`] for when a batch goes
    /// and what happens to one the receiver refuses. Needs [`Method::Post`] (build fails
    /// otherwise); `json` is then implied.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), http_logger::Error> {
    /// use http_logger::{Batch, HttpLogger};
    ///
    /// HttpLogger::builder("collector.internal:8080", "/logs")
    ///     .batch(Batch::ndjson())
    ///     .gzip(true)
    ///     .init()?;
    /// # Ok(()) }
    /// ```
    ///
    /// Defaults to none: one record per request, what Python's receivers expect.
    pub fn batch(mut self, batch: Batch) -> Builder {
        self.batch = Some(batch);
        self
    }

    /// Compresses every body with gzip (`Content-Encoding: gzip`): batches and single
    /// records alike. A GET has no body: build fails.
    ///
    /// Defaults to `false`.
    pub fn gzip(mut self, gzip: bool) -> Builder {
        self.gzip = gzip;
        self
    }

    /// Keeps on disk, in files of `dir`, what memory cannot hold, instead of dropping or giving
    /// it up: a record the queue cannot take (full, or past
    /// [`queue_max_bytes`](Builder::queue_max_bytes)), a record whose retries run out, a
    /// record refused the way every record would be (a 401, 403 or 404, an answer that is not
    /// HTTP, a TLS failure), and every record still undelivered when a flush at shutdown (a
    /// drop, the exit, a signal) reaches its [timeout](Builder::shutdown_timeout). Only a
    /// refusal of the record itself (a 400, 413 or 422 for it alone) fails it. Spooled records
    /// are delivered when the receiver answers again, in the order they were logged and after
    /// what the queue held before them, by this process or by the next one started with the
    /// same `dir`; new records take turns with a backlog meanwhile. They keep every field as
    /// it was when they were logged (`created`, `process`, the `map_record` hook's changes).
    ///
    /// - **Costs nothing while the receiver keeps up**: no file is made until a record goes
    ///   to disk.
    /// - **Crash-consistent**: each record is framed with its length and a CRC-32; a torn or
    ///   corrupt tail (a crash or a power loss mid-write) is reported in one stderr line and
    ///   skipped, never costing the records before it; a record failing its checksum costs
    ///   only itself. A record leaves the spool only once the
    ///   receiver took it (or refused it for good): a crash in between may deliver it again
    ///   (at least once). Files are not `fsync`ed: what the kernel had not written when the
    ///   machine lost power is lost; a killed process loses nothing it had written.
    /// - **Several processes, one directory**: each writes files of its own, locked while it
    ///   lives (`flock`; on Unix only), and replays the files dead processes left, at start
    ///   and every few seconds. Files in `dir` that are not spool files are left alone; a `.spool` file
    ///   without a spool header is renamed `.spool.bad` and reported.
    /// - **Bounded**: past [`spool_max_bytes`](Builder::spool_max_bytes) (the files this
    ///   logger wrote, together), or when the disk refuses a write, records are dropped and
    ///   counted, with the reason in [`last_error`](crate::HttpLogger::last_error). A write past the
    ///   process's file size limit fails instead of killing it (`SIGXFSZ` is ignored, unless
    ///   the program set what it does).
    /// - **Not guaranteed**: what was only in memory when the process was killed (`SIGKILL`,
    ///   an abort), or when a shutdown's workers did not hand it over within a second of the
    ///   timeout (a request in flight).
    ///
    /// [`Stats::spooled`](crate::Stats::spooled) counts this logger's records on disk, and
    /// [`Stats::replayed`](crate::Stats::replayed) the records delivered from it.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), http_logger::Error> {
    /// http_logger::HttpLogger::builder("localhost:8000", "/")
    ///     .spool("/var/spool/my-service/logs")
    ///     .init()?;
    /// # Ok(()) }
    /// ```
    ///
    /// Build fails ([`ErrorKind::Spool`]) when `dir` cannot be created, or a file cannot be
    /// made, locked and removed in it. Defaults to none.
    pub fn spool(mut self, dir: impl Into<PathBuf>) -> Builder {
        self.spool = Some(dir.into());
        self
    }

    /// The most bytes this logger keeps in its [spool](Builder::spool): about the records'
    /// fields, plus 17 bytes each and 24 a file. Size it for the longest outage to ride out:
    /// the rate of records times their size (a form of some 600 bytes with short messages)
    /// times the outage: 100 records a second for an hour is about 220 MB.
    ///
    /// Defaults to [`DEFAULT_SPOOL_MAX_BYTES`] (256 MiB). Zero: build fails.
    pub fn spool_max_bytes(mut self, bytes: u64) -> Builder {
        self.spool_max_bytes = bytes;
        self
    }

    /// Whether a shutdown that gives records up (dropping a built logger, the exit of the
    /// program) says so in one line on stderr: how many, where to, and why, as
    /// `http-logger: 2,749 records not delivered to http://127.0.0.1:9100/ within the 5 s
    /// shutdown timeout (at exit): connection refused (retrying)`.
    ///
    /// Defaults to `true`: no record is lost without a word.
    pub fn print_losses(mut self, print: bool) -> Builder {
        self.print_losses = print;
        self
    }

    /// On SIGTERM (what `docker stop` and Kubernetes send) or SIGINT (Ctrl-C), delivers what
    /// every logger holds, each within its [shutdown timeout](Builder::shutdown_timeout), then
    /// ends the process as the signal would have: killed by it, exit status 143 for SIGTERM and
    /// 130 for SIGINT as a shell reports it. The signals are taken with `signal-hook`, on a
    /// thread of their own; a program's own handlers of these signals stop being called.
    ///
    /// Leave it off in a program that handles these signals itself (tokio's
    /// `signal::ctrl_c()`, say): end it by returning from `main` (or `std::process::exit`),
    /// and the records are delivered at exit all the same. Only on Unix; elsewhere it does
    /// nothing. The signals are taken even when the process was started with them ignored (a
    /// background job's SIGINT, say).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), http_logger::Error> {
    /// http_logger::HttpLogger::builder("localhost:8000", "/")
    ///     .flush_on_signals(true)
    ///     .init()?;
    /// # Ok(()) }
    /// ```
    ///
    /// Defaults to `false`: a library does not take a signal unasked.
    pub fn flush_on_signals(mut self, flush: bool) -> Builder {
        self.flush_on_signals = flush;
        self
    }

    /// Whether to send the `hostname` field (Python's handler sends none).
    ///
    /// Defaults to `true`.
    pub fn hostname(mut self, send: bool) -> Builder {
        self.hostname = send;
        self
    }

    /// The `processName` field.
    ///
    /// Defaults to the file name of the running executable.
    pub fn process_name(mut self, name: impl Into<String>) -> Builder {
        self.process_name = Some(name.into());
        self
    }

    /// The most bytes of text one record keeps: its message with the error chain, `exc_info`,
    /// `exc_text` and its key-values. Only what is over is cut, the largest pieces first (each
    /// piece keeps at most an equal share of the limit; smaller ones keep all they have), on a
    /// character boundary, each cut piece marked ` [truncated by http-logger]`, and the record
    /// is counted in [`Stats::truncated`](crate::Stats::truncated). The logger name, the file,
    /// the module, the thread name and the standard fields are never cut. A 10 MB message
    /// keeps the first 4 MiB or so, and its key-values and error stay whole.
    ///
    /// Defaults to [`DEFAULT_MAX_RECORD_BYTES`] (4 MiB).
    pub fn max_record_bytes(mut self, bytes: usize) -> Builder {
        self.max_record_bytes = bytes;
        self
    }

    /// Checks the settings and starts the logger's worker thread.
    ///
    /// # Errors
    ///
    /// An [`Error`] saying what is wrong: a malformed host ([`ErrorKind::InvalidHost`]) or url
    /// ([`ErrorKind::InvalidUrl`]), a bad header ([`ErrorKind::InvalidHeader`]), credentials
    /// over plain HTTP ([`ErrorKind::InsecureCredentials`]), filter directives that do not
    /// parse, zero or more than 64 connections, `json(true)` with GET
    /// ([`ErrorKind::InvalidConfig`]), a TLS setting without
    /// `secure(true)` or a PEM that holds no certificate or key ([`ErrorKind::Tls`]), a zero queue capacity
    /// ([`ErrorKind::InvalidConfig`]), or no thread to be had ([`ErrorKind::Spawn`]).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), http_logger::Error> {
    /// use log::Log as _;
    ///
    /// let logger = http_logger::HttpLogger::builder("127.0.0.1:8000", "/").build()?;
    /// logger.log(&log::Record::builder().args(format_args!("hi")).level(log::Level::Info).build());
    /// # Ok(()) }
    /// ```
    pub fn build(self) -> Result<HttpLogger, Error> {
        let endpoint = Endpoint::parse(&self.host, &self.url, self.secure)?;
        let headers = self.checked_headers()?;
        let tls = self.checked_tls(&endpoint)?;
        let filter = self.checked_filter()?;
        let config_error = |message: &str| Err(Error::new(ErrorKind::InvalidConfig, message));
        if self.queue_capacity == 0 {
            return config_error("invalid queue capacity: it must be at least 1");
        }
        if self.queue_max_bytes == 0 {
            return config_error("invalid queue_max_bytes: it must be at least 1");
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.connections) {
            return config_error("invalid connections: it must be from 1 to 64");
        }
        if let Some(batch) = &self.batch {
            if self.method == Method::Get {
                return config_error("batch(..) needs Method::Post: a GET has no body");
            }
            if batch.max_records == 0 || batch.max_bytes == 0 {
                return config_error(
                    "invalid batch: max_records and max_bytes must each be at least 1",
                );
            }
        }
        if self.gzip && self.method == Method::Get {
            return config_error("gzip(true) needs Method::Post: a GET has no body");
        }
        let encoding = match (self.method, self.json || self.batch.is_some()) {
            (Method::Post, false) => Encoding::Form,
            (Method::Post, true) => Encoding::Json,
            (Method::Get, false) => Encoding::Query {
                prefix: format!("{}{}", endpoint.target, endpoint.query_separator),
            },
            (Method::Get, true) => {
                return config_error("json(true) needs Method::Post: a GET has no body");
            }
        };
        let statics = Arc::new(Statics {
            process: std::process::id().to_string(),
            process_name: self.process_name.clone().unwrap_or_else(program_name),
            hostname: self
                .hostname
                .then(|| gethostname::gethostname().to_string_lossy().into_owned()),
            start_ns: now_ns(),
        });
        let body = BodyHeaders {
            content_type: match &self.batch {
                Some(batch) => Some(batch.format.content_type()),
                None => encoding.content_type(),
            },
            content_encoding: self.gzip.then_some("gzip"),
        };
        let transport = TransportConfig::new(
            endpoint.clone(),
            encoding.method(),
            body,
            &headers,
            tls,
            self.connect_timeout,
            self.timeout,
        )
        .map_err(|reason| Error::new(ErrorKind::InvalidConfig, reason))?;
        let (tx, rx) = crossbeam_channel::bounded(self.queue_capacity);
        let (spill, spilling) = match &self.spool {
            None => (None, None),
            Some(_) if self.spool_max_bytes == 0 => {
                return config_error("invalid spool_max_bytes: it must be at least 1");
            }
            Some(dir) => {
                let spool = Spool::open(
                    dir.clone(),
                    self.spool_max_bytes,
                    statics.clone(),
                    self.map_record.clone(),
                    encoding.stored(),
                )
                .map_err(|message| Error::new(ErrorKind::Spool, message))?;
                // Bounded by bytes (as the queue is, by queue_max_bytes), not by count: a burst
                // the disk takes more slowly than it comes waits here in memory.
                let (spill, handed) = crossbeam_channel::unbounded();
                let spilling = Spilling {
                    spool: Arc::new(spool),
                    queue: rx.clone(),
                    handed,
                    handed_bytes: AtomicU64::new(0),
                };
                (Some(spill), Some(spilling))
            }
        };
        let shared = Arc::new(Shared::new(
            self.print_losses.then(|| endpoint.base.clone()),
            self.queue_max_bytes as u64,
            spilling,
        ));
        let spool = shared.spilling.as_ref().map(|s| s.spool.clone());
        let spawn_error = |e| {
            Error::new(
                ErrorKind::Spawn,
                "could not start an http-logger worker thread",
            )
            .with_source(e)
        };
        if let Some(spilling) = &shared.spilling {
            let (shared, handed) = (shared.clone(), spilling.handed.clone());
            std::thread::Builder::new()
                .name("http-logger-spool".into())
                .spawn(move || run_spill(shared, handed))
                .map_err(spawn_error)?;
        }
        for _ in 0..self.connections {
            let worker = Worker {
                rx: rx.clone(),
                transport: Transport::new(transport.clone()),
                encoding: encoding.clone(),
                payload: Vec::new(),
                look_ahead: self.connections == 1,
                ahead: None,
                ahead_payload: Vec::new(),
                batch: self.batch.clone(),
                gzip: self.gzip,
                stash: Vec::new(),
                stash_body: None,
                statics: statics.clone(),
                shared: shared.clone(),
                retry: self.retry,
                map_record: self.map_record.clone(),
                max_record_bytes: self.max_record_bytes,
                spool: spool.clone(),
                replaying: false,
                replay_after: Instant::now(),
                replay_next: false,
            };
            // A worker that did start keeps going until the queue is closed: dropping `tx`
            // on this error path ends it.
            std::thread::Builder::new()
                .name("http-logger".into())
                .spawn(move || worker.run())
                .map_err(spawn_error)?;
        }
        crate::shutdown::deliver_at_exit(&shared, self.shutdown_timeout);
        if self.flush_on_signals && !crate::shutdown::deliver_on_signals() {
            return Err(Error::new(
                ErrorKind::Spawn,
                "could not take SIGTERM and SIGINT for flush_on_signals(true)",
            ));
        }
        Ok(HttpLogger {
            filter,
            chatter_room: chatter_room(self.queue_capacity),
            stack_info: self.stack_info,
            tx,
            spill,
            shared,
            overflow: self.overflow,
            max_record_bytes: self.max_record_bytes,
            shutdown_timeout: self.shutdown_timeout,
            destination: endpoint.base,
            method: self.method,
        })
    }

    /// Builds the logger as a [`tracing_subscriber::Layer`](crate::HttpLayer) instead of a
    /// `log::Log` (feature `tracing`): same settings, queue, worker, stats and delivery at exit.
    /// The level and [`filter`](Builder::filter) directives apply to events by their level and
    /// target.
    ///
    /// # Errors
    ///
    /// As [`build`](Builder::build).
    ///
    /// ```no_run
    /// use tracing_subscriber::prelude::*;
    ///
    /// # fn main() -> Result<(), http_logger::Error> {
    /// let http = http_logger::HttpLogger::builder("localhost:8000", "/log").build_layer()?;
    /// tracing_subscriber::registry()
    ///     .with(tracing_subscriber::fmt::layer())
    ///     .with(http)
    ///     .init();
    /// tracing::info!(order = 1042, "checkout done");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "tracing")]
    pub fn build_layer(self) -> Result<crate::HttpLayer, Error> {
        Ok(crate::HttpLayer::new(self.build()?))
    }

    /// Builds the logger and installs it for the `log` crate, setting the max level to
    /// [`level`](Builder::level). Records logged before the program exits normally are
    /// delivered at exit, within the shutdown timeout.
    ///
    /// # Errors
    ///
    /// As [`build`](Builder::build), and [`ErrorKind::AlreadyInitialized`] when a logger is
    /// already installed.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), http_logger::Error> {
    /// http_logger::HttpLogger::builder("logs.example.com:443", "/ingest")
    ///     .secure(true)
    ///     .credentials("svc", "s3cret")
    ///     .init()?;
    /// # Ok(()) }
    /// ```
    pub fn init(self) -> Result<(), Error> {
        self.build()?.install()
    }

    fn checked_filter(&self) -> Result<env_filter::Filter, Error> {
        let mut filter = env_filter::Builder::new();
        filter.filter_level(self.level);
        let from_env = self
            .filter_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok().map(|value| (var, value)));
        let directives = match (&from_env, &self.filter) {
            (Some((var, value)), _) => Some((format!("in ${var}"), value.as_str())),
            (None, Some(directives)) => Some(("given to filter".to_owned(), directives.as_str())),
            (None, None) => None,
        };
        if let Some((origin, directives)) = directives {
            filter.try_parse(directives).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("invalid filter directives {directives:?} {origin}"),
                )
                .with_source(e)
            })?;
        }
        Ok(filter.build())
    }

    fn checked_tls(&self, endpoint: &Endpoint) -> Result<Option<TlsTarget>, Error> {
        let has_settings = !self.root_certificates.is_empty() || self.client_certificate.is_some();
        if !self.secure {
            return if has_settings {
                Err(Error::new(
                    ErrorKind::Tls,
                    "TLS settings (add_root_certificate, client_certificate) need secure(true)",
                ))
            } else {
                Ok(None)
            };
        }
        let client = self
            .client_certificate
            .as_ref()
            .map(|(chain, key)| (&chain[..], &key[..]));
        tls::target(&endpoint.host, &self.root_certificates, client).map(Some)
    }

    fn checked_headers(&self) -> Result<Vec<(HeaderName, HeaderValue)>, Error> {
        let mut headers = Vec::with_capacity(self.headers.len() + 1);
        for (name, value) in &self.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidHeader,
                    format!("invalid header name {name:?}: it must be an HTTP token"),
                )
            })?;
            let mut header_value = HeaderValue::from_str(value).map_err(|_| {
                Error::new(
                    ErrorKind::InvalidHeader,
                    format!("invalid value for header {name:?}: it holds CR, LF, NUL or another control character"),
                )
            })?;
            if header_name == header::AUTHORIZATION {
                header_value.set_sensitive(true);
            }
            headers.push((header_name, header_value));
        }
        if let Some((user, password)) = &self.credentials {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let mut value = HeaderValue::from_str(&format!("Basic {token}"))
                .expect("base64 is a valid header value");
            value.set_sensitive(true);
            headers.push((header::AUTHORIZATION, value));
        }
        let has_auth = headers.iter().any(|(n, _)| *n == header::AUTHORIZATION);
        if has_auth && !self.secure && !self.credentials_over_http {
            return Err(Error::new(
                ErrorKind::InsecureCredentials,
                "credentials over plain HTTP: anyone on the path can read them; use secure(true), or credentials_over_http(true) for a trusted network",
            ));
        }
        Ok(headers)
    }
}

/// How much of a queue of `capacity` records less severe than `WARN` may fill: three quarters,
/// and at least one record.
fn chatter_room(capacity: usize) -> usize {
    (capacity - capacity / 4).max(1)
}

/// The running executable's file name, as `processName`.
fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| {
            std::env::args_os().next().and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
        })
        .unwrap_or_else(|| "MainProcess".to_owned())
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Redacted<'a>(&'a [(String, String)]);
        impl fmt::Debug for Redacted<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(name, _)| (name, "<redacted>")))
                    .finish()
            }
        }
        f.debug_struct("Builder")
            .field("host", &self.host)
            .field("url", &self.url)
            .field("method", &self.method)
            .field("level", &self.level)
            .field("secure", &self.secure)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(user, _)| (user, "<redacted>")),
            )
            .field("credentials_over_http", &self.credentials_over_http)
            .field("headers", &Redacted(&self.headers))
            .field("root_certificates", &self.root_certificates.len())
            .field(
                "client_certificate",
                &self.client_certificate.as_ref().map(|_| "<redacted>"),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("queue_capacity", &self.queue_capacity)
            .field("queue_max_bytes", &self.queue_max_bytes)
            .field("overflow", &self.overflow)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("retry", &self.retry)
            .field("hostname", &self.hostname)
            .field("process_name", &self.process_name)
            .field("max_record_bytes", &self.max_record_bytes)
            .field("filter", &self.filter)
            .field("filter_env", &self.filter_env)
            .field("stack_info", &self.stack_info)
            .field("connections", &self.connections)
            .field("map_record", &self.map_record.as_ref().map(|_| "<fn>"))
            .field("json", &self.json)
            .field("print_losses", &self.print_losses)
            .field("flush_on_signals", &self.flush_on_signals)
            .field("spool", &self.spool)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> Builder {
        Builder::new("127.0.0.1:9".into(), "/".into())
    }

    fn err(b: Builder) -> Error {
        b.build().expect_err("build should fail")
    }

    #[test]
    fn header_injection_is_refused() {
        let e = err(builder().header("X-Ok", "a\r\nX-Injected: 1"));
        assert_eq!(e.kind(), ErrorKind::InvalidHeader);
        assert!(
            !e.to_string().contains("Injected"),
            "the value is not echoed: {e}"
        );
        let e = err(builder().header("X-Bad\r\nName", "v"));
        assert_eq!(e.kind(), ErrorKind::InvalidHeader);
        let e = err(builder().header("X Space", "v"));
        assert_eq!(e.kind(), ErrorKind::InvalidHeader);
        assert!(builder().header("X-Api-Key", "k").build().is_ok());
    }

    #[test]
    fn credentials_over_plain_http_need_an_opt_in() {
        let e = err(builder().credentials("user", "pw"));
        assert_eq!(e.kind(), ErrorKind::InsecureCredentials);
        assert!(e.to_string().contains("secure(true)"), "{e}");
        let e = err(builder().header("authorization", "Bearer t"));
        assert_eq!(e.kind(), ErrorKind::InsecureCredentials);
        assert!(
            builder()
                .credentials("user", "pw")
                .credentials_over_http(true)
                .build()
                .is_ok()
        );
        assert!(
            builder()
                .credentials("user", "pw")
                .secure(true)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn basic_credentials_are_encoded_as_python_does() {
        // 009_POST.raw, captured from CPython's HTTPHandler with credentials=('user', 'pässword:x').
        let b = builder()
            .credentials("user", "pässword:x")
            .credentials_over_http(true);
        let headers = b.checked_headers().unwrap();
        let (name, value) = headers.last().unwrap();
        assert_eq!(name, "authorization");
        assert_eq!(value.to_str().unwrap(), "Basic dXNlcjpww6Rzc3dvcmQ6eA==");
        assert!(value.is_sensitive());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let b = builder()
            .credentials("user", "hunter2-password")
            .header("X-Api-Key", "key-abc123");
        let shown = format!("{b:?}");
        assert!(!shown.contains("hunter2-password"), "{shown}");
        assert!(!shown.contains("key-abc123"), "{shown}");
        assert!(shown.contains("X-Api-Key"), "{shown}");
        assert!(shown.contains("\"user\""), "{shown}");
        let logger = b.credentials_over_http(true).build().unwrap();
        let shown = format!("{logger:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("key-abc123"),
            "{shown}"
        );
        assert!(shown.contains("http://127.0.0.1:9/"), "{shown}");
    }

    #[test]
    fn chatter_fills_three_quarters_of_the_queue() {
        assert_eq!(chatter_room(16_384), 12_288);
        assert_eq!(chatter_room(4), 3);
        assert_eq!(chatter_room(1), 1, "a queue of one still takes any record");
    }

    #[test]
    fn zero_capacity_is_refused() {
        assert_eq!(
            err(builder().queue_capacity(0)).kind(),
            ErrorKind::InvalidConfig
        );
    }
}
