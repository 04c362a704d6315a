//! Deadlines that never overflow.

use std::time::{Duration, Instant};

/// The longest wait taken as it is: longer is forever.
pub(crate) const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + wait`, saturating far in the future instead of overflowing on `Duration::MAX`.
pub(crate) fn deadline_after(wait: Duration) -> Instant {
    Instant::now() + wait.min(FOREVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_never_overflow() {
        assert!(deadline_after(Duration::MAX) > Instant::now());
    }
}
