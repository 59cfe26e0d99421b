//! Property test: random crash sequences against the real supervisor, judged
//! by a small reference model of the restart-intensity rule.
//!
//! The rule (OTP's, with our window convention): a restart at time `t` is
//! allowed while at most `max_restarts` restarts, this one included, fall in
//! `(t - within, t]`; the first one that would exceed it fails the supervisor.

use std::sync::Arc;
use std::time::Duration;

use orch_core::{
    BackoffPolicy, ChildSpec, EventKind, RestartIntensity, Supervisor, SupervisorError, SupervisorSpec,
    Update,
};
use proptest::prelude::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Index of the crash whose restart the model refuses, if any.
fn model(limit: RestartIntensity, crash_times: &[Duration]) -> Option<usize> {
    (0..crash_times.len()).find(|&i| {
        let t = crash_times[i];
        let in_window = crash_times[..=i]
            .iter()
            .filter(|&&u| t - u < limit.within)
            .count();
        in_window > limit.max_restarts as usize
    })
}

/// Runs the supervisor over `lifetimes` (incarnation `g` crashes after
/// `lifetimes[g]`; later ones run until stopped) and returns how many crashes
/// it saw and whether it gave up.
fn run(limit: RestartIntensity, lifetimes: Vec<Duration>) -> (usize, bool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let lifetimes = Arc::new(lifetimes);
        let n = lifetimes.len();
        let child = ChildSpec::task("c", move |ctx| {
            let lifetimes = lifetimes.clone();
            async move {
                match lifetimes.get(ctx.generation() as usize) {
                    Some(&life) => {
                        tokio::time::sleep(life).await;
                        Err::<(), BoxError>("crash".into())
                    }
                    None => {
                        ctx.cancelled().await;
                        Ok(())
                    }
                }
            }
        })
        .backoff(BackoffPolicy::none());
        let spec = SupervisorSpec::builder("s")
            .intensity(limit)
            .child(child)
            .build()
            .expect("valid");
        let handle = Supervisor::start(spec).expect("runtime");
        let mut events = handle.subscribe().events;
        let mut crashes = 0;
        let outcome = loop {
            match events.next().await {
                Some(Update::Event(e)) => match e.kind {
                    EventKind::Exited { .. } => crashes += 1,
                    EventKind::Ready { .. } if e.generation as usize == n => break handle.shutdown().await,
                    _ => {}
                },
                Some(Update::Resync(_)) => panic!("subscriber lagged"),
                None => break handle.wait().await,
            }
        };
        match outcome {
            Ok(()) => (crashes, false),
            Err(SupervisorError::IntensityExceeded { .. }) => (crashes, true),
            Err(e) => panic!("unexpected outcome {e}"),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn supervisor_follows_the_intensity_rule(
        max_restarts in 0u32..4,
        within_ms in 100u64..3_000,
        lifetimes_ms in proptest::collection::vec(0u64..1_500, 1..14),
    ) {
        let limit = RestartIntensity::new(max_restarts, Duration::from_millis(within_ms));
        let lifetimes: Vec<Duration> = lifetimes_ms.iter().map(|&ms| Duration::from_millis(ms)).collect();
        let mut t = Duration::ZERO;
        let crash_times: Vec<Duration> = lifetimes.iter().map(|&l| { t += l; t }).collect();
        let (crashes, failed) = run(limit, lifetimes.clone());
        match model(limit, &crash_times) {
            Some(k) => {
                prop_assert!(failed, "model fails at crash {k}, supervisor survived");
                prop_assert_eq!(crashes, k + 1);
            }
            None => {
                prop_assert!(!failed, "model survives, supervisor failed after {crashes} crashes");
                prop_assert_eq!(crashes, lifetimes.len());
            }
        }
    }
}
