//! The cost of encoding one record on the worker: the 22 standard fields of a real record as
//! an `application/x-www-form-urlencoded` body.
//!
//! The crate's own encoder (`wire::fields::for_each_field` + `wire::encode::encode_form`) is
//! private, so this measures the closest public path on the same data:
//!
//! - the fields of a real record, captured once through a `map_record` hook (the hook runs on
//!   the worker before the first send; the logger points at a closed port and gives up at
//!   once, so no receiver is needed);
//! - `encode/form_direct`: those fields with `form_urlencoded::Serializer::append_pair`, as
//!   `encode_form` does;
//! - `encode/form_via_serde`: the same bytes through `serde_urlencoded` (a serde map over the
//!   pairs), what `encode_form` did before: the cost of that layer;
//! - `encode/fields_collect`: building the owned `Fields` a `map_record` hook is given (what
//!   a hook adds per record).
//! - `batch/ndjson_1000` and `batch/ndjson_1000_gzip`: a batch of 1,000 such records as the
//!   worker builds one (each record's JSON object with `serde_json`, sized up front, then the
//!   lines joined), and the same gzip-compressed with `flate2` at its fast level; per record.
//!
//! What this does not see: the mapping itself (`for_each_field`: the float formatting of
//! `created`, `msecs`, `relativeCreated`, the module and file name splitting). Run with
//! `cargo bench --bench encode`.

use std::hint::black_box;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_logger::{Fields, HttpLogger};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// The fields of one real record, logged as the `log_call` bench logs it.
fn real_fields() -> Fields {
    // A port where nothing listens: the hook runs, the send is refused, the record fails.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("local address").port()
    };
    let seen: Arc<Mutex<Option<Fields>>> = Arc::default();
    let hook = seen.clone();
    let logger = HttpLogger::builder(format!("127.0.0.1:{port}"), "/")
        .retry_budget(0, Duration::ZERO)
        .shutdown_timeout(Duration::from_secs(1))
        .map_record(move |fields| {
            *hook.lock().unwrap() = Some(fields.clone());
        })
        .build()
        .expect("build the logger");
    log::set_max_level(log::LevelFilter::Info);
    let (name, tries) = ("ann", 3);
    log::info!(logger: logger, "user {} logged in after {} tries", name, tries);
    assert!(logger.flush_timeout(Duration::from_secs(10)), "flushed");
    drop(logger);
    let fields = seen
        .lock()
        .unwrap()
        .take()
        .expect("the hook saw the record");
    assert_eq!(fields.get("msg"), Some("user ann logged in after 3 tries"));
    fields
}

/// The pairs as one serde map, in order: what the crate's `AsMap` does.
struct AsMap<'a>(&'a Fields);

impl Serialize for AsMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.0.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

fn encode_via_serde(fields: &Fields, out: &mut String) {
    out.clear();
    let mut form = form_urlencoded::Serializer::for_suffix(out, 0);
    let _ = AsMap(fields).serialize(serde_urlencoded::Serializer::new(&mut form));
    form.finish();
}

fn encode_direct(fields: &Fields, out: &mut String) {
    out.clear();
    let mut form = form_urlencoded::Serializer::for_suffix(out, 0);
    for (key, value) in fields.iter() {
        form.append_pair(key, value);
    }
    form.finish();
}

fn bench(c: &mut Criterion) {
    let fields = real_fields();
    let mut serde_body = String::new();
    let mut direct_body = String::new();
    encode_via_serde(&fields, &mut serde_body);
    encode_direct(&fields, &mut direct_body);
    assert_eq!(serde_body, direct_body, "both encoders give the same body");
    eprintln!(
        "encode: {} fields, {} bytes of body",
        fields.len(),
        serde_body.len()
    );

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    let mut out = String::with_capacity(1024);
    group.bench_function("form_via_serde", |b| {
        b.iter(|| {
            encode_via_serde(black_box(&fields), &mut out);
            black_box(out.len())
        })
    });
    group.bench_function("form_direct", |b| {
        b.iter(|| {
            encode_direct(black_box(&fields), &mut out);
            black_box(out.len())
        })
    });
    group.bench_function("fields_collect", |b| {
        b.iter(|| black_box(Fields::from_iter(black_box(&fields).iter())))
    });
    group.finish();

    const BATCH: usize = 1000;
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut body = Vec::with_capacity(1 << 20);
    let mut packed = Vec::with_capacity(1 << 20);
    let ndjson = |body: &mut Vec<u8>| {
        let objects: Vec<Vec<u8>> = (0..BATCH)
            .map(|_| {
                let mut json = Vec::with_capacity(1024);
                let _ = serde_json::to_writer(&mut json, &AsMap(black_box(&fields)));
                json
            })
            .collect();
        body.clear();
        for object in &objects {
            body.extend_from_slice(object);
            body.push(b'\n');
        }
    };
    ndjson(&mut body);
    eprintln!("batch: {BATCH} records, {} bytes of NDJSON", body.len());
    group.bench_function("ndjson_1000", |b| {
        b.iter(|| {
            ndjson(&mut body);
            black_box(body.len())
        })
    });
    group.bench_function("ndjson_1000_gzip", |b| {
        b.iter(|| {
            ndjson(&mut body);
            packed.clear();
            let mut gz = flate2::write::GzEncoder::new(&mut packed, flate2::Compression::fast());
            let _ = std::io::Write::write_all(&mut gz, &body);
            let _ = gz.finish();
            black_box(packed.len())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
