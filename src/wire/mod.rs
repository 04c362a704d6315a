//! The wire format: what a record becomes on its way to the receiver. Capture at the call
//! ([`record`]), the fields of the wire contract in order ([`fields`], [`keys`]), and their
//! encodings ([`encode`], [`number`]). Changing what a receiver gets happens here.

pub(crate) mod batch;
pub(crate) mod encode;
#[cfg(feature = "tracing")]
pub(crate) mod event;
pub(crate) mod fields;
pub(crate) mod keys;
pub(crate) mod number;
pub(crate) mod record;

/// How records are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Method {
    /// The fields as an `application/x-www-form-urlencoded` body. The default: no length limit
    /// from the url.
    #[default]
    Post,
    /// The fields as the query string (`url?fields`, or `url&fields` when `url` already holds a
    /// `?`). Receivers limit the length of a url (often 8 KiB to 64 KiB): a longer record is
    /// rejected by the receiver and counted as failed; a url of 64 KiB or more is not sent at
    /// all (the `http` crate takes none that long) and is counted as failed too.
    Get,
}
