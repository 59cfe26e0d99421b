//! Deadlines on tokio's clock that cannot overflow.
//!
//! A limit comes from a config or a server's pushback and may be any
//! `Duration`, `Duration::MAX` included; `Instant + Duration` panics when
//! the sum does not fit. The layers instead take such a sum to mean "never",
//! as `tokio::time::sleep` does.

use std::time::Duration;

use tokio::time::Instant;

/// Thirty years: later than any call will wait, and representable.
const FAR_FUTURE: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);

/// `now + delay`, or a time far enough to mean "never" when that overflows.
#[inline]
pub(crate) fn deadline_after(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay).unwrap_or_else(|| now + FAR_FUTURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflowing_delay_means_far_away_not_a_panic() {
        let now = Instant::now();
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(deadline_after(now, Duration::MAX), now + FAR_FUTURE);
    }
}
