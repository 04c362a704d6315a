//! Delivery: the workers that take records off the queue and send them ([`worker`]), the
//! retry policy ([`retry`]), what the callers, the workers and the exit hook share, flush
//! among it ([`progress`]), the counters ([`stats`]), and the disk spool ([`spool`]).

pub(crate) mod progress;
pub(crate) mod retry;
pub(crate) mod spool;
pub(crate) mod stats;
pub(crate) mod worker;
