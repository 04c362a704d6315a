//! What a `log!` call captures on the caller's thread: everything tied to the call (the
//! formatted message, the key-values, the error chain, the clock, the thread), rendered into a
//! single buffer so the record can outlive the call. Encoding happens later, on the worker.

use std::error::Error as StdError;
use std::fmt::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use log::kv::{self, VisitSource};

use crate::wire::keys::{KV_PREFIX, is_standard_key};

/// Appended to a piece of text cut at the record size limit.
pub(crate) const TRUNCATION_MARKER: &str = " [truncated by http-logger]";

/// The deepest `source()` chain rendered; deeper causes (or a cycle) are cut.
const MAX_CHAIN: usize = 64;

/// A piece of text in [`Captured::buf`], or a `&'static str` the record already had.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Text {
    Static(&'static str),
    Span(u32, u32),
}

/// One log record, captured at call time and owned.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) level: log::Level,
    pub(crate) line: Option<u32>,
    /// Nanoseconds since the Unix epoch, one clock reading.
    pub(crate) created_ns: u64,
    pub(crate) thread_ident: u64,
    /// Whether a part of the record was cut at the size limit.
    pub(crate) truncated: bool,
    /// Its place in the order records were logged, for flush.
    pub(crate) seq: u64,
    /// Captured where the user asked for one; its symbols are resolved on the worker.
    pub(crate) stack: Option<Box<std::backtrace::Backtrace>>,
    buf: String,
    target: Text,
    msg: Text,
    file: Option<Text>,
    module_path: Option<Text>,
    thread_name: Text,
    /// `exc_info` and `exc_text` of the first error among the key-values.
    error: Option<(Text, Text)>,
    kvs: Vec<(Text, Text)>,
}

impl Captured {
    /// Captures `record`, keeping at most about `limit` bytes of its variable text: the
    /// message (with the error chain), `exc_info`, `exc_text`, and the key-values. The logger
    /// name, the file, the module and the thread name are never cut and do not count. When the
    /// variable text is over `limit`, only what is over is cut, the largest pieces first: each
    /// piece keeps at most an equal share, pieces under it keep all they have, and each cut
    /// piece ends with [`TRUNCATION_MARKER`].
    pub(crate) fn capture(record: &log::Record<'_>, limit: usize) -> Captured {
        let kvs_source = record.key_values();
        let has_error = kvs_source.count() > 0 && with_first_error(kvs_source, |_| ());
        let fixed = Fixed {
            level: record.level(),
            target: record.target(),
            file: (record.file_static().map(Text::Static), record.file()),
            module_path: (
                record.module_path_static().map(Text::Static),
                record.module_path(),
            ),
            line: record.line(),
        };
        Captured::from_parts(fixed, limit, |w| Variable::from_log(w, record, has_error))
    }

    /// Captures a record from its fixed parts and its variable pieces, which `pieces` writes
    /// (called once).
    pub(crate) fn from_parts(
        fixed: Fixed<'_>,
        limit: usize,
        pieces: impl FnOnce(&mut Writer) -> Variable,
    ) -> Captured {
        let limit = limit.min(u32::MAX as usize / 2);
        let created_ns = now_ns();
        let mut w = Writer::new(limit);
        let target = w.fixed(fixed.target);
        let text = |w: &mut Writer, (known, given): (Option<Text>, Option<&str>)| {
            known.or_else(|| given.map(|s| w.fixed(s)))
        };
        let file = text(&mut w, fixed.file);
        let module_path = text(&mut w, fixed.module_path);
        let (thread_ident, thread_name) = THREAD
            .try_with(|t| (t.ident, w.fixed(&t.name)))
            .unwrap_or_else(|_| {
                let t = ThreadInfo::current();
                (t.ident, w.fixed(&t.name))
            });
        let fixed_end = w.buf.len();
        // One pass of the program's own code (a `Display` may not be formattable twice), then,
        // over the limit, the pieces are cut to their shares.
        let mut variable = pieces(&mut w);
        let truncated = w.finish(fixed_end, &mut variable);

        Captured {
            level: fixed.level,
            line: fixed.line,
            created_ns,
            thread_ident,
            truncated,
            seq: 0,
            stack: None,
            buf: w.buf,
            target,
            msg: variable.msg,
            file,
            module_path,
            thread_name,
            error: variable.error,
            kvs: variable.kvs,
        }
    }

    /// About how much memory the record holds: what a queue of records is bounded by.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of::<Captured>()
            + self.buf.capacity()
            + self.kvs.capacity() * std::mem::size_of::<(Text, Text)>()
            // A captured backtrace: its frames, until resolved.
            + self.stack.as_ref().map_or(0, |_| 16 * 1024)
    }

    fn text(&self, t: Text) -> &str {
        match t {
            Text::Static(s) => s,
            Text::Span(start, end) => &self.buf[start as usize..end as usize],
        }
    }

    pub(crate) fn target(&self) -> &str {
        self.text(self.target)
    }

    /// The formatted message, followed by the error chain on one line when there is an error.
    pub(crate) fn msg(&self) -> &str {
        self.text(self.msg)
    }

    pub(crate) fn file(&self) -> Option<&str> {
        self.file.map(|t| self.text(t))
    }

    pub(crate) fn module_path(&self) -> Option<&str> {
        self.module_path.map(|t| self.text(t))
    }

    pub(crate) fn thread_name(&self) -> &str {
        self.text(self.thread_name)
    }

    /// The `Debug` rendering of the record's error.
    pub(crate) fn exc_info(&self) -> Option<&str> {
        self.error.map(|(info, _)| self.text(info))
    }

    /// The record's error and its causes, one per line.
    pub(crate) fn exc_text(&self) -> Option<&str> {
        self.error.map(|(_, text)| self.text(text))
    }

    /// The key-values in the record's order, keys already moved off the standard fields.
    pub(crate) fn key_values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.kvs.iter().map(|&(k, v)| (self.text(k), self.text(v)))
    }
}

/// What a record has that is never cut: its level, where it was logged, its logger name. A
/// file or module path is known for the program's life (`Text::Static`) or only for the call.
pub(crate) struct Fixed<'a> {
    pub(crate) level: log::Level,
    pub(crate) target: &'a str,
    pub(crate) file: (Option<Text>, Option<&'a str>),
    pub(crate) module_path: (Option<Text>, Option<&'a str>),
    pub(crate) line: Option<u32>,
}

/// The pieces of a record that count against its size limit.
pub(crate) struct Variable {
    pub(crate) msg: Text,
    /// `exc_info` and `exc_text`.
    pub(crate) error: Option<(Text, Text)>,
    pub(crate) kvs: Vec<(Text, Text)>,
}

impl Variable {
    /// Writes the message (with the error chain), the error, and the key-values, in that order
    /// (the same order every time: a second pass cuts the pieces the first one measured).
    fn from_log(w: &mut Writer, record: &log::Record<'_>, has_error: bool) -> Variable {
        let kvs_source = record.key_values();
        let msg = match record.args().as_str() {
            Some(s) if !has_error && s.len() <= w.room() => w.static_piece(s),
            _ => w.field(|w| {
                w.write_fmt(*record.args())?;
                let mut result = Ok(());
                with_first_error(kvs_source, |err| {
                    let sep = if w.piece_is_empty() { "" } else { ": " };
                    result = w.write_str(sep).and_then(|()| write_chain_line(w, err));
                });
                result
            }),
        };
        let mut error = None;
        if has_error {
            with_first_error(kvs_source, |err| {
                let info = w.field(|w| write!(w, "{err:?}"));
                let text = w.field(|w| write_chain_text(w, err));
                error = Some((info, text));
            });
        }
        let mut kvs = KvCapture { w, kvs: Vec::new() };
        // Our visitor never fails; a source that fails keeps what it gave so far.
        let _ = kvs_source.visit(&mut kvs);
        Variable {
            msg,
            error,
            kvs: kvs.kvs,
        }
    }
}

/// The smallest share worth giving each piece of a record over its limit: below it (a record
/// of very many pieces), the pieces are kept in order until the limit is reached instead.
const MIN_SHARE: usize = 2 * TRUNCATION_MARKER.len();

/// What each piece keeps, in order, so that all of them keep at most `limit` in all (with the
/// marker a cut piece gets), given their `sizes` (a piece `cut` while written is over its
/// size): pieces under an equal share keep everything, the largest are cut to it.
fn shares(sizes: &[(usize, bool)], limit: usize) -> Vec<usize> {
    let over = |&(size, cut): &(usize, bool)| size + usize::from(cut);
    let mut sorted: Vec<usize> = sizes.iter().map(over).collect();
    sorted.sort_unstable();
    let mut left = limit;
    let mut share = None;
    for (i, &size) in sorted.iter().enumerate() {
        let pieces = sorted.len() - i;
        if size.saturating_mul(pieces) > left {
            share = Some(left / pieces);
            break;
        }
        left -= size;
    }
    match share {
        None => sizes.iter().map(|&(size, _)| size).collect(),
        // Each cut piece keeps its share, less the marker it ends with.
        Some(share) if share >= MIN_SHARE => sizes
            .iter()
            .map(|&(size, cut)| {
                if size > share || cut {
                    share - TRUNCATION_MARKER.len()
                } else {
                    size
                }
            })
            .collect(),
        // Too many pieces for a useful share each: the first ones, in order, up to the limit;
        // the first that does not fit keeps what is left (less its marker), the rest nothing.
        Some(_) => {
            // Room for the one marker this leaves.
            let mut left = limit.saturating_sub(TRUNCATION_MARKER.len());
            sizes
                .iter()
                .map(|&(size, cut)| {
                    if size <= left && !cut {
                        left -= size;
                        size
                    } else {
                        std::mem::take(&mut left)
                    }
                })
                .collect()
        }
    }
}

/// Writes into the record's buffer. Each piece is written up to the limit, and all of them
/// up to twice the limit (what a record over its limit costs at most while it is cut down);
/// [`Writer::finish`] then cuts the pieces to their shares.
pub(crate) struct Writer {
    buf: String,
    limit: usize,
    /// What all pieces still may take, from twice the limit.
    scratch_left: usize,
    /// What the piece being written may still take.
    left: usize,
    /// Whether the piece being written was cut.
    cut: bool,
    /// The bytes of all pieces written.
    total: usize,
    /// The pieces cut while written (none, for almost every record).
    cuts: Vec<Text>,
}

impl Writer {
    fn new(limit: usize) -> Writer {
        Writer {
            buf: String::with_capacity(128),
            limit,
            scratch_left: limit.saturating_mul(2),
            left: 0,
            cut: false,
            total: 0,
            cuts: Vec::new(),
        }
    }

    /// What the next piece may take.
    fn room(&self) -> usize {
        self.limit.min(self.scratch_left)
    }

    /// Keeps a `&'static str` as a piece, uncopied.
    fn static_piece(&mut self, s: &'static str) -> Text {
        self.scratch_left = self.scratch_left.saturating_sub(s.len());
        self.total += s.len();
        Text::Static(s)
    }

    /// Writes a piece that is never cut and does not count.
    fn fixed(&mut self, s: &str) -> Text {
        let start = self.buf.len();
        self.buf.push_str(s);
        Text::Span(start as u32, self.buf.len() as u32)
    }

    /// Writes a key-value's key, never cut: one that is a standard field gets the `kv_`
    /// prefix, so it never overwrites that field.
    pub(crate) fn key(&mut self, key: &str) -> Text {
        let start = self.buf.len();
        if is_standard_key(key) {
            self.buf.push_str(KV_PREFIX);
        }
        self.buf.push_str(key);
        Text::Span(start as u32, self.buf.len() as u32)
    }

    /// Whether the piece being written has any text yet.
    pub(crate) fn piece_is_empty(&self) -> bool {
        self.left == self.room()
    }

    /// Writes one piece of text and returns where it is.
    pub(crate) fn field(&mut self, f: impl FnOnce(&mut Writer) -> fmt::Result) -> Text {
        let start = self.buf.len();
        self.left = self.room();
        self.cut = false;
        // A Display impl that returns an error leaves what it wrote; that is all we can send.
        let _ = f(self);
        let written = self.buf.len() - start;
        self.scratch_left = self.scratch_left.saturating_sub(written);
        self.total += written;
        let text = Text::Span(start as u32, self.buf.len() as u32);
        if self.cut {
            self.cuts.push(text);
        }
        text
    }

    fn len(&self, text: Text) -> usize {
        match text {
            Text::Static(s) => s.len(),
            Text::Span(start, end) => (end - start) as usize,
        }
    }

    /// When the pieces are over the limit, cuts each to its share (on a character boundary,
    /// marked with [`TRUNCATION_MARKER`]) in a new buffer after the first `fixed_end` bytes,
    /// and says where each piece now is. Returns whether any piece was cut.
    fn finish(&mut self, fixed_end: usize, variable: &mut Variable) -> bool {
        if self.total <= self.limit && self.cuts.is_empty() {
            return false;
        }
        // The pieces, in the order they were written: the message, the error, the values.
        let mut pieces = vec![variable.msg];
        if let Some((info, text)) = variable.error {
            pieces.extend([info, text]);
        }
        pieces.extend(variable.kvs.iter().map(|&(_, value)| value));
        let sizes: Vec<(usize, bool)> = pieces
            .iter()
            .map(|&text| (self.len(text), self.cuts.iter().any(|&c| same(c, text))))
            .collect();
        let keep = shares(&sizes, self.limit);
        let mut buf = String::with_capacity(fixed_end + self.limit + 64);
        buf.push_str(&self.buf[..fixed_end]);
        let mut moved = Vec::with_capacity(pieces.len());
        let mut marked = false;
        for (&piece, (&(size, cut), &keep)) in pieces.iter().zip(sizes.iter().zip(&keep)) {
            let text = match piece {
                Text::Static(s) => s,
                Text::Span(start, end) => &self.buf[start as usize..end as usize],
            };
            let mut end = keep.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let start = buf.len();
            buf.push_str(&text[..end]);
            // A piece cut to nothing is marked only when no piece was before: the markers
            // count against the limit too.
            if (end < size || cut) && (end > 0 || !marked) {
                marked = true;
                buf.push_str(TRUNCATION_MARKER);
            }
            moved.push((piece, Text::Span(start as u32, buf.len() as u32)));
        }
        // The fixed parts written among the pieces (keys) move too.
        let remap = |text: Text, buf: &mut String| -> Text {
            if let Some((_, new)) = moved.iter().find(|(old, _)| same(*old, text)) {
                return *new;
            }
            match text {
                Text::Span(start, end) if start as usize >= fixed_end => {
                    let s = &self.buf[start as usize..end as usize];
                    let at = buf.len();
                    buf.push_str(s);
                    Text::Span(at as u32, buf.len() as u32)
                }
                other => other,
            }
        };
        variable.msg = remap(variable.msg, &mut buf);
        if let Some((info, text)) = variable.error {
            variable.error = Some((remap(info, &mut buf), remap(text, &mut buf)));
        }
        for (key, value) in &mut variable.kvs {
            *key = remap(*key, &mut buf);
            *value = remap(*value, &mut buf);
        }
        self.buf = buf;
        true
    }
}

/// Whether two texts are the same piece.
fn same(a: Text, b: Text) -> bool {
    match (a, b) {
        (Text::Span(a0, a1), Text::Span(b0, b1)) => a0 == b0 && a1 == b1,
        (Text::Static(a), Text::Static(b)) => std::ptr::eq(a, b),
        _ => false,
    }
}

impl fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut take = s.len().min(self.left);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf.push_str(&s[..take]);
        self.left -= take;
        if take < s.len() {
            self.cut = true;
        }
        Ok(())
    }
}

struct KvCapture<'w> {
    w: &'w mut Writer,
    kvs: Vec<(Text, Text)>,
}

impl<'kvs> VisitSource<'kvs> for KvCapture<'_> {
    fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
        let key = self.w.key(key.as_str());
        let value = self.w.field(|w| match value.to_borrowed_error() {
            Some(err) => write_chain_line(w, err),
            None => write!(w, "{value}"),
        });
        self.kvs.push((key, value));
        Ok(())
    }
}

/// Calls `f` with the first key-value captured with `:err`, if any. Returns whether there was one.
fn with_first_error(source: &dyn kv::Source, f: impl FnOnce(&(dyn StdError + 'static))) -> bool {
    struct Find<F>(Option<F>);
    impl<'kvs, F: FnOnce(&(dyn StdError + 'static))> VisitSource<'kvs> for Find<F> {
        fn visit_pair(
            &mut self,
            _: kv::Key<'kvs>,
            value: kv::Value<'kvs>,
        ) -> Result<(), kv::Error> {
            if let Some(err) = value.to_borrowed_error() {
                if let Some(f) = self.0.take() {
                    f(err);
                }
            }
            Ok(())
        }
    }
    let mut find = Find(Some(f));
    let _ = source.visit(&mut find);
    find.0.is_none()
}

fn causes<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(err.source(), |e: &&'a (dyn StdError + 'static)| {
        (*e).source()
    })
    .take(MAX_CHAIN)
}

/// `error: cause: cause`, on one line.
pub(crate) fn write_chain_line(w: &mut impl Write, err: &(dyn StdError + 'static)) -> fmt::Result {
    write!(w, "{err}")?;
    for cause in causes(err) {
        write!(w, ": {cause}")?;
    }
    Ok(())
}

/// `error\n\nCaused by:\n    0: cause\n    1: cause`, as `anyhow` prints a chain.
pub(crate) fn write_chain_text(w: &mut impl Write, err: &(dyn StdError + 'static)) -> fmt::Result {
    write!(w, "{err}")?;
    for (i, cause) in causes(err).enumerate() {
        if i == 0 {
            w.write_str("\n\nCaused by:")?;
        }
        write!(w, "\n    {i}: {cause}")?;
    }
    Ok(())
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The calling thread's identity, looked up once per thread.
struct ThreadInfo {
    ident: u64,
    name: Box<str>,
}

thread_local! {
    static THREAD: ThreadInfo = ThreadInfo::current();
}

impl ThreadInfo {
    fn current() -> ThreadInfo {
        static UNNAMED: AtomicU64 = AtomicU64::new(1);
        let name = match std::thread::current().name() {
            Some(name) => name.into(),
            None => format!("Thread-{}", UNNAMED.fetch_add(1, Ordering::Relaxed)).into(),
        };
        ThreadInfo {
            ident: crate::sys::thread_ident(),
            name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[derive(Debug)]
    struct Wrapped {
        msg: &'static str,
        source: Option<Box<dyn StdError + 'static>>,
    }
    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.msg)
        }
    }
    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.source.as_deref()
        }
    }

    fn chain() -> Wrapped {
        Wrapped {
            msg: "could not save user",
            source: Some(Box::new(Wrapped {
                msg: "database write failed",
                source: Some(Box::new(io::Error::other("disk full"))),
            })),
        }
    }

    fn capture_with(args: fmt::Arguments<'_>, kvs: &dyn kv::Source, limit: usize) -> Captured {
        Captured::capture(
            &log::Record::builder()
                .args(args)
                .level(log::Level::Error)
                .target("app::db")
                .file(Some("src/db.rs"))
                .line(Some(42))
                .module_path(Some("app::db"))
                .key_values(kvs)
                .build(),
            limit,
        )
    }

    #[test]
    fn message_is_formatted_and_metadata_kept() {
        let user = "ann";
        let kvs: &[(&str, &str)] = &[];
        let c = capture_with(
            format_args!("user {user} logged in, {} tries", 3),
            &kvs,
            1 << 20,
        );
        assert_eq!(c.msg(), "user ann logged in, 3 tries");
        assert_eq!(c.target(), "app::db");
        assert_eq!(c.file(), Some("src/db.rs"));
        assert_eq!(c.module_path(), Some("app::db"));
        assert_eq!(c.line, Some(42));
        assert_eq!(c.level, log::Level::Error);
        assert_eq!(c.exc_info(), None);
        assert!(!c.truncated);
        assert_eq!(c.key_values().count(), 0);
    }

    #[test]
    fn error_chain_goes_to_msg_exc_info_exc_text_and_its_key_value() {
        let err = chain();
        let kvs = [
            ("user", kv::Value::from("ann")),
            ("err", kv::Value::from_dyn_error(&err)),
        ];
        let c = capture_with(format_args!("save failed"), &kvs, 1 << 20);
        assert_eq!(
            c.msg(),
            "save failed: could not save user: database write failed: disk full"
        );
        assert_eq!(
            c.exc_text(),
            Some(
                "could not save user\n\nCaused by:\n    0: database write failed\n    1: disk full"
            )
        );
        assert_eq!(c.exc_info(), Some(format!("{err:?}").as_str()));
        let kvs: Vec<_> = c.key_values().collect();
        assert_eq!(
            kvs,
            [
                ("user", "ann"),
                (
                    "err",
                    "could not save user: database write failed: disk full"
                )
            ]
        );
    }

    #[test]
    fn error_without_cause_has_no_caused_by() {
        let err = io::Error::other("boom");
        let kvs = [("e", kv::Value::from_dyn_error(&err))];
        let c = capture_with(format_args!("x"), &kvs, 1 << 20);
        assert_eq!(c.msg(), "x: boom");
        assert_eq!(c.exc_text(), Some("boom"));
    }

    #[test]
    fn standard_keys_are_prefixed_others_kept_in_order() {
        let kvs = [
            ("msg", kv::Value::from("not the message")),
            ("zeta", kv::Value::from(1)),
            ("alpha", kv::Value::from(2.5)),
            ("hostname", kv::Value::from(true)),
        ];
        let c = capture_with(format_args!("m"), &kvs, 1 << 20);
        let kvs: Vec<_> = c.key_values().collect();
        assert_eq!(
            kvs,
            [
                ("kv_msg", "not the message"),
                ("zeta", "1"),
                ("alpha", "2.5"),
                ("kv_hostname", "true")
            ]
        );
        assert_eq!(c.msg(), "m");
    }

    #[test]
    fn text_past_the_limit_is_cut_on_a_char_boundary_and_marked() {
        let long = "é".repeat(100); // 200 bytes
        let kvs: &[(&str, &str)] = &[];
        let c = capture_with(format_args!("{long}"), &kvs, 51);
        assert!(c.truncated);
        let expected = format!("{}{TRUNCATION_MARKER}", "é".repeat(25));
        assert_eq!(c.msg(), expected);
        // The logger name is never cut.
        assert_eq!(c.target(), "app::db");
    }

    #[test]
    fn a_huge_message_takes_only_its_share_and_the_other_pieces_keep_theirs() {
        let huge = "m".repeat(10 << 20); // 10 MiB
        let err = std::io::Error::other("disk full");
        let blob = "b".repeat(3000);
        let kvs: &[(&str, kv::Value<'_>)] = &[
            ("user", kv::Value::from("ann")),
            ("blob", kv::Value::from(&*blob)),
            ("err", kv::Value::from_dyn_error(&err)),
        ];
        let limit = 4096;
        let c = capture_with(format_args!("{huge}"), &kvs, limit);
        assert!(c.truncated);
        assert_eq!(c.target(), "app::db");
        assert!(!c.thread_name().is_empty());
        // Small pieces whole; the two big ones cut to the same share.
        let kv: Vec<(&str, &str)> = c.key_values().collect();
        assert_eq!(kv[0], ("user", "ann"));
        assert_eq!(kv[2], ("err", "disk full"));
        assert_eq!(c.exc_text(), Some("disk full"));
        assert!(c.exc_info().is_some_and(|i| i.contains("disk full")));
        let msg = c
            .msg()
            .strip_suffix(TRUNCATION_MARKER)
            .expect("the message is cut, marked");
        let blob = kv[1]
            .1
            .strip_suffix(TRUNCATION_MARKER)
            .expect("the blob is cut, marked");
        assert_eq!(msg.len(), blob.len(), "an equal share");
        assert!(msg.starts_with("mmm"), "{msg}");
        // Everything that counts (all but the keys) is within the limit, markers included.
        let counted = c.msg().len()
            + c.exc_info().unwrap().len()
            + c.exc_text().unwrap().len()
            + kv.iter().map(|(_, v)| v.len()).sum::<usize>();
        assert!(counted <= limit, "{counted}");
        assert!(
            counted > limit - 64,
            "the limit is used, not wasted: {counted}"
        );
    }

    #[test]
    fn the_shares_cut_the_largest_pieces_first_and_count_the_marker() {
        let m = TRUNCATION_MARKER.len();
        assert_eq!(
            shares(&[(10, false), (20, false)], 100),
            [10, 20],
            "all fit"
        );
        assert_eq!(shares(&[(10, false), (1000, false)], 200), [10, 190 - m]);
        assert_eq!(
            shares(&[(1000, false), (1000, false)], 200),
            [100 - m, 100 - m]
        );
        assert_eq!(
            shares(&[(5, false), (80, true)], 200),
            [5, 80],
            "cut while written: marked"
        );
        // So many pieces that a share would be tiny: the first ones, in order.
        let many = vec![(20, false); 100];
        let kept = shares(&many, 100);
        assert_eq!(&kept[..3], [20, 20, 20]);
        assert_eq!(
            kept[3],
            100 - m - 60,
            "the first that does not fit keeps what is left"
        );
        assert!(kept[4..].iter().all(|&k| k == 0), "{kept:?}");
    }

    #[test]
    fn many_small_key_values_keep_their_keys_and_the_record_its_limit() {
        let keys: Vec<String> = (0..200).map(|i| format!("request_{i:03}")).collect();
        let kvs: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "value_abcd")).collect();
        let c = capture_with(format_args!("hello {}", "world"), &kvs.as_slice(), 1000);
        assert!(c.truncated);
        let got: Vec<(&str, &str)> = c.key_values().collect();
        assert_eq!(got.len(), 200);
        for (i, (key, _)) in got.iter().enumerate() {
            assert_eq!(*key, keys[i], "keys are never cut");
        }
        let counted = c.msg().len() + got.iter().map(|(_, v)| v.len()).sum::<usize>();
        assert!(counted <= 1000, "{counted}");
        assert_eq!(c.msg(), "hello world", "the first pieces are whole");
    }

    #[test]
    fn a_display_formatted_once_is_formatted_once_even_over_the_limit() {
        struct Once(std::cell::Cell<bool>);
        impl fmt::Display for Once {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                assert!(!self.0.replace(true), "formatted twice");
                f.write_str(&"x".repeat(1000))
            }
        }
        let once = Once(std::cell::Cell::new(false));
        let kvs: &[(&str, &str)] = &[];
        let c = capture_with(format_args!("{once}"), &kvs, 100);
        assert!(c.truncated);
        assert_eq!(c.msg().len(), 100, "{}", c.msg());
        assert!(c.msg().starts_with("xxxxxxxxxx"), "{}", c.msg());
    }

    #[test]
    fn static_message_is_not_copied() {
        let kvs: &[(&str, &str)] = &[];
        let c = capture_with(format_args!("plain"), &kvs, 1 << 20);
        assert!(matches!(c.msg, Text::Static("plain")));
    }

    #[test]
    fn thread_name_and_ident() {
        let kvs: &[(&str, &str)] = &[];
        let main = capture_with(format_args!("m"), &kvs, 1 << 20);
        let named = std::thread::Builder::new()
            .name("worker-7".into())
            .spawn(|| {
                let kvs: &[(&str, &str)] = &[];
                let c = capture_with(format_args!("m"), &kvs, 1 << 20);
                (c.thread_name().to_owned(), c.thread_ident)
            })
            .unwrap()
            .join()
            .unwrap();
        let unnamed = std::thread::spawn(|| {
            let kvs: &[(&str, &str)] = &[];
            capture_with(format_args!("m"), &kvs, 1 << 20)
                .thread_name()
                .to_owned()
        })
        .join()
        .unwrap();
        assert_eq!(named.0, "worker-7");
        assert_ne!(named.1, main.thread_ident);
        assert!(unnamed.starts_with("Thread-"), "{unnamed}");
        assert!(
            unnamed["Thread-".len()..].parse::<u64>().is_ok(),
            "{unnamed}"
        );
    }
}
