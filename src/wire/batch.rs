//! Batches: many records in one POST, for collectors that take them (Vector's `http_server`,
//! Fluent Bit's `http` input, most vendors' intake), and gzip for any body.

use std::io::Write as _;
use std::time::Duration;

/// The most records a batch holds by default.
pub const DEFAULT_BATCH_RECORDS: usize = 1000;
/// The most bytes (of JSON, before gzip) a batch holds by default: 1 MiB.
pub const DEFAULT_BATCH_BYTES: usize = 1024 * 1024;
/// How long the first record of a batch waits for more by default.
pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_secs(1);

/// Many records in one POST, each the JSON object of [`Builder::json`](crate::Builder::json)
/// (the same fields in the same order, every value a string), for
/// [`Builder::batch`](crate::Builder::batch).
///
/// A batch goes when it holds [`max_records`](Batch::max_records) records, or
/// [`max_bytes`](Batch::max_bytes) bytes of JSON, or when its first record has waited
/// [`max_delay`](Batch::max_delay); and at once at a flush, a drop of the logger, the exit of
/// the program and a signal taken by
/// [`flush_on_signals`](crate::Builder::flush_on_signals). [`Stats`](crate::Stats) counts
/// records, not requests. A transient failure retries the whole batch within the retry
/// budget; a batch the receiver refuses for what it holds (400, 413 or 422) is split in halves
/// and each half sent again, down to single records, so one bad record loses only itself. Any
/// other refusal (a 401, 403 or 404 refuses every batch alike) fails the batch's records at
/// once. `max_bytes` counts each record's JSON and its separator.
///
/// ```
/// use std::time::Duration;
/// use http_logger::Batch;
///
/// let batch = Batch::ndjson().max_records(500).max_delay(Duration::from_millis(200));
/// # let _ = batch;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub(crate) format: BatchFormat,
    pub(crate) max_records: usize,
    pub(crate) max_bytes: usize,
    pub(crate) max_delay: Duration,
}

/// How the records of a batch are put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchFormat {
    /// One JSON object per line, each line ending with `\n`.
    Ndjson,
    /// One JSON array of the objects.
    JsonArray,
}

impl Batch {
    /// One JSON object per line, `Content-Type: application/x-ndjson`: what Vector's
    /// `http_server` (with `framing.method = "newline_delimited"`) and Fluent Bit's `http`
    /// input take.
    pub fn ndjson() -> Batch {
        Batch::new(BatchFormat::Ndjson)
    }

    /// One JSON array of the objects, `Content-Type: application/json`.
    pub fn json_array() -> Batch {
        Batch::new(BatchFormat::JsonArray)
    }

    fn new(format: BatchFormat) -> Batch {
        Batch {
            format,
            max_records: DEFAULT_BATCH_RECORDS,
            max_bytes: DEFAULT_BATCH_BYTES,
            max_delay: DEFAULT_BATCH_DELAY,
        }
    }

    /// The most records in one batch (at least 1). Defaults to [`DEFAULT_BATCH_RECORDS`]
    /// (1,000).
    pub fn max_records(mut self, records: usize) -> Batch {
        self.max_records = records;
        self
    }

    /// The most bytes of JSON (before gzip) in one batch: a batch goes before a record would
    /// take it past this; a record larger than this goes alone. At least 1. Defaults to
    /// [`DEFAULT_BATCH_BYTES`] (1 MiB).
    pub fn max_bytes(mut self, bytes: usize) -> Batch {
        self.max_bytes = bytes;
        self
    }

    /// How long the first record of a batch waits for others before the batch goes. Defaults
    /// to [`DEFAULT_BATCH_DELAY`] (1 s); zero sends what the queue holds at once.
    pub fn max_delay(mut self, delay: Duration) -> Batch {
        self.max_delay = delay;
        self
    }
}

impl BatchFormat {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            BatchFormat::Ndjson => "application/x-ndjson",
            BatchFormat::JsonArray => "application/json",
        }
    }

    /// Writes the JSON objects `records` as one body into `out`.
    pub(crate) fn join<'a>(self, records: impl IntoIterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
        out.clear();
        match self {
            BatchFormat::Ndjson => {
                for record in records {
                    out.extend_from_slice(record);
                    out.push(b'\n');
                }
            }
            BatchFormat::JsonArray => {
                out.push(b'[');
                for (n, record) in records.into_iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(record);
                }
                out.push(b']');
            }
        }
    }
}

/// Compresses `body` with gzip into `out` (the fast level: log text compresses well even so,
/// and the worker's time per record stays small).
pub(crate) fn gzip(body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    let _ = encoder.finish();
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn ndjson_is_one_object_per_line_and_an_array_is_one_array() {
        let records: [&[u8]; 2] = [br#"{"msg":"a"}"#, br#"{"msg":"b"}"#];
        let mut out = b"left over".to_vec();
        BatchFormat::Ndjson.join(records, &mut out);
        assert_eq!(out, b"{\"msg\":\"a\"}\n{\"msg\":\"b\"}\n");
        BatchFormat::JsonArray.join(records, &mut out);
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed, serde_json::json!([{"msg": "a"}, {"msg": "b"}]));
        BatchFormat::JsonArray.join([], &mut out);
        assert_eq!(out, b"[]");
    }

    #[test]
    fn gzip_round_trips() {
        let body = "name=app&msg=h%C3%A9llo\n".repeat(1000);
        let mut packed = Vec::new();
        gzip(body.as_bytes(), &mut packed);
        assert!(packed.len() < body.len() / 10, "{} bytes", packed.len());
        let mut unpacked = String::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_string(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, body);
    }

    #[test]
    fn defaults_and_setters() {
        let batch = Batch::json_array();
        assert_eq!(
            (batch.max_records, batch.max_bytes, batch.max_delay),
            (1000, 1 << 20, Duration::from_secs(1))
        );
        assert_eq!(batch.format.content_type(), "application/json");
        let batch = Batch::ndjson()
            .max_records(5)
            .max_bytes(10)
            .max_delay(Duration::ZERO);
        assert_eq!(
            (batch.max_records, batch.max_bytes, batch.max_delay),
            (5, 10, Duration::ZERO)
        );
        assert_eq!(batch.format.content_type(), "application/x-ndjson");
    }
}
