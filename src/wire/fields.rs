//! The record-to-fields mapping of the wire contract (`WIRE.md`). Pure functions, run on the
//! worker.

use std::sync::Arc;

use crate::wire::number::Small;
use crate::wire::record::Captured;

/// The user's [`map_record`](crate::Builder::map_record) hook.
pub(crate) type MapRecord = Arc<dyn Fn(&mut Fields) + Send + Sync>;

/// What never changes for one logger: encoded once, sent with every record.
#[derive(Debug, Clone)]
pub(crate) struct Statics {
    pub(crate) process: String,
    pub(crate) process_name: String,
    pub(crate) hostname: Option<String>,
    /// When the logger was built, for `relativeCreated`.
    pub(crate) start_ns: u64,
}

/// Python's spelling of "no value".
const NONE: &str = "None";

/// Python's level name and number for a `log` level.
pub(crate) fn level_name_and_number(level: log::Level) -> (&'static str, &'static str) {
    match level {
        log::Level::Error => ("ERROR", "40"),
        log::Level::Warn => ("WARNING", "30"),
        log::Level::Info => ("INFO", "20"),
        log::Level::Debug => ("DEBUG", "10"),
        log::Level::Trace => ("TRACE", "5"),
    }
}

/// Calls `f` with each field of `rec`, in the order of the wire contract.
pub(crate) fn for_each_field(rec: &Captured, statics: &Statics, f: &mut dyn FnMut(&str, &str)) {
    let (levelname, levelno) = level_name_and_number(rec.level);
    let pathname = rec.file().unwrap_or("(unknown file)");
    let filename = pathname.rsplit(['/', '\\']).next().unwrap_or(pathname);
    let module = match rec.module_path() {
        Some(path) => path.rsplit("::").next().unwrap_or(path),
        None if rec.file().is_some() => filename.split('.').next().unwrap_or(filename),
        None => "Unknown module",
    };
    let mut num = Small::new();

    f("name", rec.target());
    f("msg", rec.msg());
    f("args", "()");
    f("levelname", levelname);
    f("levelno", levelno);
    f("pathname", pathname);
    f("filename", filename);
    f("module", module);
    f("exc_info", rec.exc_info().unwrap_or(NONE));
    f("exc_text", rec.exc_text().unwrap_or(NONE));
    match &rec.stack {
        Some(stack) => f(
            "stack_info",
            &format!("Stack (most recent call first):\n{stack}"),
        ),
        None => f("stack_info", NONE),
    }
    f("lineno", num.display(rec.line.unwrap_or(0)));
    f("funcName", "(unknown function)");
    // Python 3.13: created = ns / 1e9; msecs = (ns % 1e9) // 1e6 + 0.0;
    // relativeCreated = (ns - start) / 1e6. One clock reading for all three.
    let ns = rec.created_ns;
    f("created", num.py_float(ns as f64 / 1e9));
    f(
        "msecs",
        num.py_float(((ns % 1_000_000_000) / 1_000_000) as f64),
    );
    let relative = ns as i128 - statics.start_ns as i128;
    f("relativeCreated", num.py_float(relative as f64 / 1e6));
    f("thread", num.display(rec.thread_ident));
    f("threadName", rec.thread_name());
    f("processName", &statics.process_name);
    f("process", &statics.process);
    f("taskName", NONE);
    if let Some(hostname) = &statics.hostname {
        f("hostname", hostname);
    }
    for (key, value) in rec.key_values() {
        f(key, value);
    }
}

/// Anything that yields fields in wire order: a captured record, or the [`Fields`] a
/// [`map_record`](crate::Builder::map_record) hook changed.
pub(crate) trait FieldSource {
    fn for_each_field(&self, f: &mut dyn FnMut(&str, &str));
}

/// A captured record with the logger's fixed fields.
pub(crate) struct RecordView<'a> {
    pub(crate) rec: &'a Captured,
    pub(crate) statics: &'a Statics,
}

impl FieldSource for RecordView<'_> {
    fn for_each_field(&self, f: &mut dyn FnMut(&str, &str)) {
        for_each_field(self.rec, self.statics, f);
    }
}

/// The fields of one record, in wire order, as a
/// [`map_record`](crate::Builder::map_record) hook sees them: Python's `mapLogRecord`, in
/// Rust. Keys may repeat (a record can carry the same key-value twice); the accessors say how
/// they treat that.
///
/// ```
/// let mut fields = http_logger::Fields::from_iter([("name", "app"), ("msg", "hi")]);
/// fields.set("msg", "hello");
/// fields.set("service", "billing");
/// assert_eq!(fields.remove("name").as_deref(), Some("app"));
/// assert_eq!(fields.iter().collect::<Vec<_>>(), [("msg", "hello"), ("service", "billing")]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pairs: Vec<(String, String)>,
}

impl Fields {
    pub(crate) fn collect(source: &dyn FieldSource) -> Fields {
        let mut pairs = Vec::with_capacity(32);
        source.for_each_field(&mut |k, v| pairs.push((k.to_owned(), v.to_owned())));
        Fields { pairs }
    }

    /// The value of the first field named `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` to `value`: the first field named `key` takes the value (and any later one is
    /// removed), or the field is added at the end.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        match self.pairs.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                self.pairs[i].1 = value;
                let mut seen = 0;
                self.pairs.retain(|(k, _)| {
                    if *k == key {
                        seen += 1;
                        seen == 1
                    } else {
                        true
                    }
                });
            }
            None => self.pairs.push((key, value)),
        }
    }

    /// Removes every field named `key`, returning the first one's value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let first = self.pairs.iter().position(|(k, _)| k == key)?;
        let value = std::mem::take(&mut self.pairs[first].1);
        self.pairs.retain(|(k, _)| k != key);
        Some(value)
    }

    /// Keeps only the fields for which `keep(key, value)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.pairs.retain(|(k, v)| keep(k, v));
    }

    /// The fields, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there is no field.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Fields {
        Fields {
            pairs: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl FieldSource for Fields {
    fn for_each_field(&self, f: &mut dyn FnMut(&str, &str)) {
        for (k, v) in &self.pairs {
            f(k, v);
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A record and fixed fields, for the golden tests of the mapping and the encodings.
    use log::kv;

    use super::*;

    pub(crate) fn statics() -> Statics {
        Statics {
            process: "4242".into(),
            process_name: "svc".into(),
            hostname: Some("box-1".into()),
            start_ns: 1_795_459_757_000_000_000,
        }
    }

    pub(crate) fn captured(
        kvs: &dyn kv::Source,
        file: Option<&'static str>,
        module: Option<&'static str>,
    ) -> Captured {
        let mut rec = Captured::capture(
            &log::Record::builder()
                .args(format_args!("a {} b {}", "x", 3))
                .level(log::Level::Warn)
                .target("app::net")
                .file_static(file)
                .line(Some(7))
                .module_path_static(module)
                .key_values(kvs)
                .build(),
            1 << 20,
        );
        rec.created_ns = 1_795_459_757_656_476_300;
        rec.thread_ident = 140313281182592;
        rec
    }

    pub(crate) fn fields(rec: &Captured, statics: &Statics) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for_each_field(rec, statics, &mut |k, v| {
            out.push((k.to_owned(), v.to_owned()))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use log::kv;

    use super::fixtures::{captured, fields, statics};
    use super::*;
    use crate::wire::keys::STANDARD_KEYS;

    #[test]
    fn golden_field_list() {
        let kvs = [
            ("user", kv::Value::from("ann")),
            ("name", kv::Value::from("dup")),
        ];
        let rec = captured(&kvs, Some("src/net/mod.rs"), Some("app::net"));
        let got = fields(&rec, &statics());
        let thread_name = rec.thread_name().to_owned();
        let want: Vec<(String, String)> = [
            ("name", "app::net"),
            ("msg", "a x b 3"),
            ("args", "()"),
            ("levelname", "WARNING"),
            ("levelno", "30"),
            ("pathname", "src/net/mod.rs"),
            ("filename", "mod.rs"),
            ("module", "net"),
            ("exc_info", "None"),
            ("exc_text", "None"),
            ("stack_info", "None"),
            ("lineno", "7"),
            ("funcName", "(unknown function)"),
            ("created", "1795459757.6564765"),
            ("msecs", "656.0"),
            ("relativeCreated", "656.4763"),
            ("thread", "140313281182592"),
            ("threadName", thread_name.as_str()),
            ("processName", "svc"),
            ("process", "4242"),
            ("taskName", "None"),
            ("hostname", "box-1"),
            ("user", "ann"),
            ("kv_name", "dup"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        let keys: Vec<&str> = got.iter().take(22).map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, STANDARD_KEYS);
    }

    #[test]
    fn unknown_file_and_module_and_no_hostname() {
        let kvs: &[(&str, &str)] = &[];
        let mut s = statics();
        s.hostname = None;
        let rec = captured(&kvs, None, None);
        let got = fields(&rec, &s);
        let get = |k: &str| {
            got.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("pathname"), Some("(unknown file)"));
        assert_eq!(get("filename"), Some("(unknown file)"));
        assert_eq!(get("module"), Some("Unknown module"));
        assert_eq!(get("hostname"), None);
        assert_eq!(got.len(), 21);

        let rec = captured(&kvs, Some("C:\\src\\main.rs"), None);
        let got = fields(&rec, &s);
        let get = |k: &str| {
            got.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("filename"), Some("main.rs"));
        assert_eq!(get("module"), Some("main"));
    }

    #[test]
    fn levels_map_to_python_names_and_numbers() {
        use log::Level::*;
        let got: Vec<_> = [Error, Warn, Info, Debug, Trace]
            .into_iter()
            .map(level_name_and_number)
            .collect();
        assert_eq!(
            got,
            [
                ("ERROR", "40"),
                ("WARNING", "30"),
                ("INFO", "20"),
                ("DEBUG", "10"),
                ("TRACE", "5")
            ]
        );
    }

    #[test]
    fn fields_set_remove_retain() {
        let mut f = Fields::from_iter([("a", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(f.get("a"), Some("1"));
        f.set("a", "x");
        assert_eq!(f.iter().collect::<Vec<_>>(), [("a", "x"), ("b", "2")]);
        f.set("c", "4");
        assert_eq!(f.len(), 3);
        assert_eq!(f.remove("b").as_deref(), Some("2"));
        assert_eq!(f.remove("b"), None);
        f.retain(|k, _| k != "c");
        assert_eq!(f.iter().collect::<Vec<_>>(), [("a", "x")]);
        f.retain(|_, _| false);
        assert!(f.is_empty());
    }
}
