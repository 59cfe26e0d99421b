//! `tower::hedge` as the benchmarks compare against it.

use std::time::Duration;

use tower::Service;

/// `tower::hedge` as its documentation sets it up: hedge above the 95th
/// percentile of latencies once 100 were seen, over 10 s windows.
pub fn tower_hedge<S>(service: S) -> tower::hedge::Hedge<S, HedgeAll>
where
    S: Service<u64> + Clone,
    S::Error: Into<tower::BoxError>,
{
    tower::hedge::Hedge::new(service, HedgeAll, 100, 0.95, Duration::from_secs(10))
}

/// `tower::hedge`'s policy: every request may be hedged.
#[derive(Clone)]
pub struct HedgeAll;

impl tower::hedge::Policy<u64> for HedgeAll {
    fn clone_request(&self, request: &u64) -> Option<u64> {
        Some(*request)
    }

    fn can_retry(&self, _: &u64) -> bool {
        true
    }
}
