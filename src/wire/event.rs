//! What a `tracing` event captures at the call (feature `tracing`): the same pieces as a `log`
//! record. `msg` is its `message` field (with the chain of an error recorded as a field, as
//! `log`'s `:err`), its other fields are key-values (strings unquoted), then the fields of the
//! spans in scope (from the root; the innermost wins on a clash, the event's own fields over
//! all), then `span`, the scope's names from the root joined by `:`, as `fmt` prints them.

use std::error::Error as StdError;
use std::fmt::{self, Write};

use tracing_core::field::{Field, Visit};
use tracing_core::{Event, Level, Metadata};

use crate::wire::record::{
    Captured, Fixed, Text, Variable, Writer, write_chain_line, write_chain_text,
};

/// The field tracing's macros put the formatted message in.
const MESSAGE: &str = "message";

/// `log`'s level for a `tracing` level.
pub(crate) fn level(level: &Level) -> log::Level {
    match *level {
        Level::ERROR => log::Level::Error,
        Level::WARN => log::Level::Warn,
        Level::INFO => log::Level::Info,
        Level::DEBUG => log::Level::Debug,
        Level::TRACE => log::Level::Trace,
    }
}

/// Whether a field is one of those `tracing-log` adds to a `log` record it bridges (its target,
/// module, file and line, which the normalized metadata already gives).
fn is_bridged(name: &str) -> bool {
    name.starts_with("log.")
}

/// A span's fields, rendered when the span is made (and when fields are recorded on it later).
#[derive(Debug, Default)]
pub(crate) struct SpanFields(pub(crate) Vec<(&'static str, String)>);

impl SpanFields {
    fn set(&mut self, name: &'static str, value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), value.to_owned());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn StdError + 'static)) {
        let mut line = String::new();
        let _ = write_chain_line(&mut line, value);
        self.set(field.name(), line);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set(field.name(), format!("{value:?}"));
    }
}

/// One span of the scope: its name and its fields.
pub(crate) type ScopeSpan<'a> = (&'a str, &'a SpanFields);

/// Captures `event`, as [`Captured::capture`] does a `log` record. `metadata` is the event's
/// own, or the normalized one of a bridged `log` record; `scope` runs from the root span to the
/// innermost.
pub(crate) fn capture(
    event: &Event<'_>,
    metadata: &Metadata<'_>,
    bridged: bool,
    scope: &[ScopeSpan<'_>],
    limit: usize,
) -> Captured {
    let is_static = !bridged;
    let known = |s: Option<&'static str>| s.filter(|_| is_static).map(Text::Static);
    let event_meta = event.metadata();
    let fixed = Fixed {
        level: level(metadata.level()),
        target: metadata.target(),
        file: (known(event_meta.file()), metadata.file()),
        module_path: (known(event_meta.module_path()), metadata.module_path()),
        line: metadata.line(),
    };
    Captured::from_parts(fixed, limit, |w| pieces(w, event, bridged, scope))
}

/// The variable pieces, always in the same order: the message, the error, the event's fields,
/// the spans' fields, `span`.
fn pieces(w: &mut Writer, event: &Event<'_>, bridged: bool, scope: &[ScopeSpan<'_>]) -> Variable {
    let mut has_error = false;
    let msg = w.field(|w| {
        event.record(&mut Message(w, &mut has_error));
        if has_error {
            let mut result = Ok(());
            event.record(&mut FirstError(Some(&mut |err| {
                let sep = if w.piece_is_empty() { "" } else { ": " };
                result = w.write_str(sep).and_then(|()| write_chain_line(w, err));
            })));
            result?;
        }
        Ok(())
    });
    let mut error = None;
    if has_error {
        event.record(&mut FirstError(Some(&mut |err| {
            let info = w.field(|w| write!(w, "{err:?}"));
            let text = w.field(|w| write_chain_text(w, err));
            error = Some((info, text));
        })));
    }
    let mut fields = Fields {
        w,
        kvs: Vec::new(),
        names: Vec::new(),
        bridged,
        // The names matter only to leave the spans' fields of the same names out.
        keep_names: !scope.is_empty(),
    };
    event.record(&mut fields);
    let Fields {
        w, mut kvs, names, ..
    } = fields;
    // The spans' fields, from the root; a name the event, or a span further in, has is left
    // out.
    let taken = |name: &str, from: usize| {
        names.contains(&name)
            || scope[from + 1..]
                .iter()
                .any(|(_, f)| f.0.iter().any(|(n, _)| *n == name))
    };
    for (i, (_, span_fields)) in scope.iter().enumerate() {
        for (name, value) in &span_fields.0 {
            if !taken(name, i) {
                let key = w.key(name);
                let value = w.field(|w| w.write_str(value));
                kvs.push((key, value));
            }
        }
    }
    if !scope.is_empty() {
        let key = w.key("span");
        let value = w.field(|w| {
            for (i, (name, _)) in scope.iter().enumerate() {
                if i > 0 {
                    w.write_char(':')?;
                }
                w.write_str(name)?;
            }
            Ok(())
        });
        kvs.push((key, value));
    }
    Variable { msg, error, kvs }
}

/// Calls the function with the event's first error field.
struct FirstError<'a>(Option<&'a mut OnError<'a>>);

/// What is done with an error field.
type OnError<'a> = dyn FnMut(&(dyn StdError + 'static)) + 'a;

impl Visit for FirstError<'_> {
    fn record_error(&mut self, _: &Field, value: &(dyn StdError + 'static)) {
        if let Some(f) = self.0.take() {
            f(value);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}

/// Writes the `message` field, and tells whether the event has an error field.
struct Message<'a>(&'a mut Writer, &'a mut bool);

impl Visit for Message<'_> {
    fn record_error(&mut self, _: &Field, _: &(dyn StdError + 'static)) {
        *self.1 = true;
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == MESSAGE {
            let _ = self.0.write_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == MESSAGE {
            // The message is `format_args!`, whose Debug is its Display.
            let _ = write!(self.0, "{value:?}");
        }
    }
}

/// Writes every other field as a key-value.
struct Fields<'a> {
    w: &'a mut Writer,
    kvs: Vec<(Text, Text)>,
    names: Vec<&'static str>,
    /// A `log` record bridged by `tracing-log`: its `log.*` fields are its call site.
    bridged: bool,
    keep_names: bool,
}

impl Fields<'_> {
    fn push(&mut self, field: &Field, value: impl FnOnce(&mut Writer) -> fmt::Result) {
        let name = field.name();
        if name == MESSAGE || self.bridged && is_bridged(name) {
            return;
        }
        let key = self.w.key(name);
        let value = self.w.field(value);
        self.kvs.push((key, value));
        if self.keep_names {
            self.names.push(name);
        }
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, |w| w.write_str(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn StdError + 'static)) {
        self.push(field, |w| write_chain_line(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, |w| write!(w, "{value:?}"));
    }
}
