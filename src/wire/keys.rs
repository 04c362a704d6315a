//! The standard keys of the wire contract (`WIRE.md`), and the rule that keeps a key-value
//! from overwriting one.

/// The 21 keys of Python 3.12+'s `LogRecord.__dict__`, then ours, in the order they are sent.
pub(crate) const STANDARD_KEYS: [&str; 22] = [
    "name",
    "msg",
    "args",
    "levelname",
    "levelno",
    "pathname",
    "filename",
    "module",
    "exc_info",
    "exc_text",
    "stack_info",
    "lineno",
    "funcName",
    "created",
    "msecs",
    "relativeCreated",
    "thread",
    "threadName",
    "processName",
    "process",
    "taskName",
    "hostname",
];

/// Whether a key-value's key would collide with a standard field.
pub(crate) fn is_standard_key(key: &str) -> bool {
    STANDARD_KEYS.contains(&key)
}

/// The prefix given to a key-value whose key is one of the standard fields: `kv_<key>`.
pub(crate) const KV_PREFIX: &str = "kv_";
