//! Probe semantics of the supervisor, checked deterministically on paused
//! tokio time (Kubernetes rules, as documented in `orch_core::probe`):
//!
//! - readiness: an instance starts not ready, becomes ready after
//!   `success_threshold` consecutive successes, leaves rotation after
//!   `failure_threshold` consecutive failures, and is never restarted for it;
//! - liveness: `failure_threshold` consecutive failures kill and restart the
//!   instance (`ExitReason::LivenessFailed`); failures interleaved with
//!   successes do not;
//! - startup: gates liveness and readiness until it succeeds; failing its
//!   threshold kills and restarts the instance (`ExitReason::StartupFailed`);
//! - a check that outlives its timeout is a failure;
//! - `ProbeOutcome::Unknown` leaves the counters as they are;
//! - `initial_delay` holds back the first check;
//! - bad probe timing is rejected when the spec is built, naming the field.
//!
//! Probe answers come from scripted shared state; every time comparison is
//! between virtual `tokio::time::Instant`s, so nothing here depends on the
//! wall clock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orch_core::{
    ChildSpec, EventKind, EventStream, ExitReason, InstanceState, LifecycleEvent, ProbeOutcome, ProbeSpec,
    SpecError, SupervisorSpec, Update, probe_fn,
};
use tokio::time::Instant;

use ProbeOutcome::{Healthy, Unhealthy, Unknown};

/// Virtual time allowed for any one expected event; far longer than any
/// probe schedule used here, so only a real bug reaches it.
const WAIT: Duration = Duration::from_secs(600);

mod support;
use support::{is_exit, start};

/// The probe period used by most tests.
const PERIOD: Duration = Duration::from_secs(1);

// ===== helpers =====

/// One probe call as the scripted probe saw it.
#[derive(Debug, Clone, Copy)]
struct Call {
    at: Instant,
    generation: u64,
}

/// A probe whose answers are scripted: it pops the next outcome from a
/// queue, or answers `fallback` once the queue is empty, and logs each call.
#[derive(Clone)]
struct Script {
    answers: Arc<Mutex<VecDeque<ProbeOutcome>>>,
    fallback: ProbeOutcome,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Script {
    fn new(answers: impl IntoIterator<Item = ProbeOutcome>, fallback: ProbeOutcome) -> Self {
        Self {
            answers: Arc::new(Mutex::new(answers.into_iter().collect())),
            fallback,
            calls: Arc::default(),
        }
    }

    /// A probe spec that answers from this script, with the test period.
    fn spec(&self) -> ProbeSpec {
        let script = self.clone();
        ProbeSpec::new(probe_fn(move |target| {
            let outcome = script
                .answers
                .lock()
                .expect("answers lock")
                .pop_front()
                .unwrap_or(script.fallback);
            script.calls.lock().expect("calls lock").push(Call {
                at: Instant::now(),
                generation: target.generation,
            });
            async move { outcome }
        }))
        .period(PERIOD)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls lock").clone()
    }

    fn call_count(&self) -> usize {
        self.calls.lock().expect("calls lock").len()
    }
}

/// A task child that serves until it is asked to stop.
fn server(id: &str) -> ChildSpec {
    ChildSpec::task(id, |ctx| async move {
        ctx.cancelled().await;
        Ok::<_, std::io::Error>(())
    })
}

async fn next_event(events: &mut EventStream) -> LifecycleEvent {
    support::next_event(events, WAIT).await
}

async fn wait_for(
    events: &mut EventStream,
    pred: impl FnMut(&LifecycleEvent) -> bool,
) -> (Vec<LifecycleEvent>, LifecycleEvent) {
    support::wait_for(events, WAIT, pred).await
}

/// Every event published during the next `span` of virtual time.
async fn events_during(events: &mut EventStream, span: Duration) -> Vec<LifecycleEvent> {
    let deadline = Instant::now() + span;
    let mut seen = Vec::new();
    while let Ok(update) = tokio::time::timeout_at(deadline, events.next()).await {
        match update {
            Some(Update::Event(e)) => seen.push(e),
            Some(Update::Resync(_)) => panic!("the subscriber lagged; a test this small never should"),
            None => break,
        }
    }
    seen
}

fn is_kind(kind: &EventKind) -> impl Fn(&LifecycleEvent) -> bool + '_ {
    move |e| &e.kind == kind
}

fn is_ready(e: &LifecycleEvent) -> bool {
    matches!(e.kind, EventKind::Ready { .. })
}

fn kinds(events: &[LifecycleEvent]) -> Vec<&EventKind> {
    events.iter().map(|e| &e.kind).collect()
}

// ===== readiness =====

#[tokio::test(start_paused = true)]
async fn readiness_needs_consecutive_successes_and_failures_and_never_restarts() {
    // success_threshold 3, failure_threshold 2. Calls at t = 0, 1, 2, ...
    // The failure at call 3 resets the successes, so the instance becomes
    // ready at call 6 (t = 5); one failure (call 7) is not enough to leave
    // rotation, two in a row (calls 9 and 10, t = 9) are.
    let script = Script::new(
        [
            Healthy, Healthy, Unhealthy, Healthy, Healthy, Healthy, // ready at call 6
            Unhealthy, Healthy, Unhealthy, Unhealthy, // not ready at call 10
        ],
        Unhealthy,
    );
    let child = server("web").readiness(script.spec().success_threshold(3).failure_threshold(2));
    let (handle, mut events) = start(child);

    let starting = next_event(&mut events).await;
    assert_eq!(starting.kind, EventKind::Starting);
    assert_eq!(starting.generation, 0);
    let info = handle.instances();
    assert_eq!(info.len(), 1);
    assert_eq!(
        info[0].state,
        InstanceState::Starting,
        "an instance starts not ready"
    );
    let children = handle.children().await.expect("supervisor runs");
    assert_eq!(children[0].ready, 0, "an instance starts not ready");

    let (before, ready) = wait_for(&mut events, is_ready).await;
    assert!(
        before.is_empty(),
        "nothing between Starting and Ready: {:?}",
        kinds(&before)
    );
    assert_eq!(ready.generation, 0);
    assert_eq!(ready.at - starting.at, 5 * PERIOD, "ready at the sixth call");
    assert_eq!(
        script.call_count(),
        6,
        "ready right after the third consecutive success"
    );
    assert_eq!(handle.instances()[0].state, InstanceState::Ready);

    let (before, not_ready) = wait_for(&mut events, |e| e.kind != EventKind::Starting).await;
    assert!(before.is_empty(), "{:?}", kinds(&before));
    assert_eq!(
        not_ready.kind,
        EventKind::NotReady,
        "a lone failure keeps it ready"
    );
    assert_eq!(not_ready.generation, 0);
    assert_eq!(
        not_ready.at - starting.at,
        9 * PERIOD,
        "not ready at the tenth call"
    );
    assert_eq!(script.call_count(), 10);

    // A minute of failing readiness: out of rotation, but never restarted.
    let later = events_during(&mut events, Duration::from_secs(60)).await;
    assert!(
        later.is_empty(),
        "readiness failures must not restart: {:?}",
        kinds(&later)
    );
    assert!(script.call_count() >= 60, "the probe kept running");
    assert!(script.calls().iter().all(|c| c.generation == 0));
    let info = handle.instances();
    assert_eq!(info[0].generation, 0);
    assert_eq!(info[0].state, InstanceState::NotReady);
    let children = handle.children().await.expect("supervisor runs");
    assert_eq!((children[0].instances, children[0].ready), (1, 0));

    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn readiness_failures_before_first_ready_publish_nothing() {
    // Not ready is the initial state: failing checks before the first
    // success change nothing observable.
    let script = Script::new([Unhealthy, Unhealthy, Unhealthy, Unhealthy], Healthy);
    let child = server("web").readiness(script.spec().failure_threshold(1));
    let (handle, mut events) = start(child);

    let starting = next_event(&mut events).await;
    let (before, ready) = wait_for(&mut events, is_ready).await;
    assert!(before.is_empty(), "{:?}", kinds(&before));
    assert_eq!(ready.at - starting.at, 4 * PERIOD);

    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn readiness_returns_to_rotation_after_success_threshold() {
    // success_threshold 2, failure_threshold 1: ready at call 2 (t = 1),
    // not ready at call 3 (t = 2), ready again at call 5 (t = 4).
    let script = Script::new([Healthy, Healthy, Unhealthy, Healthy, Healthy], Healthy);
    let child = server("web").readiness(script.spec().success_threshold(2).failure_threshold(1));
    let (handle, mut events) = start(child);

    let starting = next_event(&mut events).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = next_event(&mut events).await;
        seen.push((e.kind.clone(), e.at - starting.at, e.generation));
    }
    assert_eq!(
        seen,
        [
            (EventKind::Ready { address: None }, PERIOD, 0),
            (EventKind::NotReady, 2 * PERIOD, 0),
            (EventKind::Ready { address: None }, 4 * PERIOD, 0),
        ]
    );
    assert_eq!(handle.children().await.expect("supervisor runs")[0].ready, 1);

    handle.shutdown().await.expect("clean shutdown");
}

// ===== liveness =====

#[tokio::test(start_paused = true)]
async fn liveness_consecutive_failures_restart_the_instance() {
    // failure_threshold 3: calls 2-3 fail, call 4 succeeds (resets), calls
    // 5-7 fail: the instance is killed at call 7 (t = 6).
    let script = Script::new(
        [
            Healthy, Unhealthy, Unhealthy, Healthy, Unhealthy, Unhealthy, Unhealthy,
        ],
        Healthy,
    );
    let child = server("web").liveness(script.spec().failure_threshold(3));
    let (handle, mut events) = start(child);

    let starting = next_event(&mut events).await;
    assert_eq!(starting.kind, EventKind::Starting);
    // Without a readiness probe the instance is ready at once.
    let ready = next_event(&mut events).await;
    assert!(is_ready(&ready), "{ready:?}");

    let (before, exited) = wait_for(&mut events, is_exit).await;
    assert_eq!(kinds(&before), [&EventKind::Stopping], "killed, then reported");
    assert_eq!(
        exited.kind,
        EventKind::Exited {
            reason: ExitReason::LivenessFailed
        }
    );
    assert_eq!(exited.generation, 0);
    assert_eq!(exited.at - starting.at, 6 * PERIOD, "killed at the seventh call");
    assert_eq!(script.call_count(), 7);

    let restarting = next_event(&mut events).await;
    assert!(
        matches!(restarting.kind, EventKind::Restarting { attempt: 1, .. }),
        "{restarting:?}"
    );
    let (_, again) = wait_for(&mut events, is_kind(&EventKind::Starting)).await;
    assert_eq!(again.generation, 1);
    let (_, ready) = wait_for(&mut events, is_ready).await;
    assert_eq!(ready.generation, 1);

    // The new incarnation is probed as generation 1.
    let _ = events_during(&mut events, 3 * PERIOD).await;
    let calls = script.calls();
    assert!(calls[..7].iter().all(|c| c.generation == 0));
    assert!(
        calls.len() > 7 && calls[7..].iter().all(|c| c.generation == 1),
        "{calls:?}"
    );

    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn liveness_failures_interleaved_with_successes_do_not_restart() {
    // Two failures, one success, forever: never three in a row.
    let pattern = [Unhealthy, Unhealthy, Healthy];
    let script = Script::new(pattern.iter().copied().cycle().take(90), Healthy);
    let child = server("web").liveness(script.spec().failure_threshold(3));
    let (handle, mut events) = start(child);

    let seen = events_during(&mut events, Duration::from_secs(100)).await;
    assert_eq!(
        kinds(&seen),
        [&EventKind::Starting, &EventKind::Ready { address: None }],
        "no restart"
    );
    assert!(script.call_count() >= 90, "every scripted answer was used");
    assert_eq!(handle.instances()[0].generation, 0);
    assert_eq!(handle.instances()[0].state, InstanceState::Ready);

    handle.shutdown().await.expect("clean shutdown");
}

// ===== startup =====

#[tokio::test(start_paused = true)]
async fn startup_gates_liveness_and_readiness_until_it_passes() {
    // Startup fails twice, then passes at its third call (t = 2) with
    // failure_threshold 3; only then may liveness and readiness run.
    let startup = Script::new([Unhealthy, Unhealthy], Healthy);
    let liveness = Script::new([], Healthy);
    let readiness = Script::new([], Healthy);
    let child = server("web")
        .startup(startup.spec().failure_threshold(3))
        .liveness(liveness.spec())
        .readiness(readiness.spec());
    let (handle, mut events) = start(child);

    let starting = next_event(&mut events).await;
    assert_eq!(starting.kind, EventKind::Starting);

    tokio::time::sleep_until(starting.at + PERIOD * 3 / 2).await;
    assert_eq!(startup.call_count(), 2, "two startup checks by t = 1.5");
    assert_eq!(liveness.call_count(), 0, "liveness waits for startup");
    assert_eq!(readiness.call_count(), 0, "readiness waits for startup");
    assert_eq!(handle.instances()[0].state, InstanceState::Starting);

    let (before, ready) = wait_for(&mut events, is_ready).await;
    assert!(before.is_empty(), "{:?}", kinds(&before));
    assert_eq!(ready.generation, 0);
    assert_eq!(ready.at - starting.at, 2 * PERIOD, "ready once startup passed");

    let _ = events_during(&mut events, 5 * PERIOD).await;
    let passed_at = startup.calls()[2].at;
    assert_eq!(startup.call_count(), 3, "startup stops once it passed");
    for (name, script) in [("liveness", &liveness), ("readiness", &readiness)] {
        let calls = script.calls();
        assert!(!calls.is_empty(), "{name} runs after startup");
        assert_eq!(calls[0].at, passed_at, "{name} starts when startup passes");
        assert!(calls.iter().all(|c| c.at >= passed_at), "{name}: {calls:?}");
    }

    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn startup_failing_its_threshold_restarts_the_instance() {
    // Generation 0 never passes startup; generation 1 passes at once.
    let startup_calls = Arc::new(AtomicUsize::new(0));
    let calls = startup_calls.clone();
    let startup = ProbeSpec::new(probe_fn(move |target| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if target.generation == 0 {
                Unhealthy
            } else {
                Healthy
            }
        }
    }))
    .period(PERIOD)
    .failure_threshold(3);
    let liveness = Script::new([], Healthy);
    let readiness = Script::new([], Healthy);
    let child = server("web")
        .startup(startup)
        .liveness(liveness.spec())
        .readiness(readiness.spec());
    let (handle, mut events) = start(child);

    let starting = next_event(&mut events).await;
    let (before, exited) = wait_for(&mut events, is_exit).await;
    assert_eq!(kinds(&before), [&EventKind::Stopping], "never ready, killed");
    assert_eq!(
        exited.kind,
        EventKind::Exited {
            reason: ExitReason::StartupFailed
        }
    );
    assert_eq!(exited.generation, 0);
    assert_eq!(exited.at - starting.at, 2 * PERIOD, "third failed check");
    assert_eq!(startup_calls.load(Ordering::SeqCst), 3);
    assert_eq!(liveness.call_count(), 0, "liveness never ran for generation 0");
    assert_eq!(readiness.call_count(), 0, "readiness never ran for generation 0");

    let restarting = next_event(&mut events).await;
    assert!(
        matches!(restarting.kind, EventKind::Restarting { attempt: 1, .. }),
        "{restarting:?}"
    );
    let (_, again) = wait_for(&mut events, is_kind(&EventKind::Starting)).await;
    assert_eq!(again.generation, 1);
    let (_, ready) = wait_for(&mut events, is_ready).await;
    assert_eq!(ready.generation, 1);
    assert!(liveness.calls().iter().all(|c| c.generation == 1));
    assert!(readiness.calls().iter().all(|c| c.generation == 1));

    handle.shutdown().await.expect("clean shutdown");
}

// ===== timeout =====

/// A probe that answers Healthy after sleeping `delay`, and counts its calls.
fn slow_probe(delay: Duration, calls: Arc<AtomicUsize>) -> ProbeSpec {
    ProbeSpec::new(probe_fn(move |_| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(delay).await;
            Healthy
        }
    }))
}

#[tokio::test(start_paused = true)]
async fn probe_timeout_counts_as_failure() {
    // Each check sleeps 2 s against a 500 ms timeout. failure_threshold 2:
    // the first check times out at t = 0.5, the second starts at t = 1 and
    // times out at t = 1.5, which kills the instance.
    let calls = Arc::new(AtomicUsize::new(0));
    let liveness = slow_probe(Duration::from_secs(2), calls.clone())
        .period(PERIOD)
        .timeout(Duration::from_millis(500))
        .failure_threshold(2);
    let (handle, mut events) = start(server("web").liveness(liveness));

    let starting = next_event(&mut events).await;
    let (_, exited) = wait_for(&mut events, is_exit).await;
    assert_eq!(
        exited.kind,
        EventKind::Exited {
            reason: ExitReason::LivenessFailed
        }
    );
    assert_eq!(exited.generation, 0);
    assert_eq!(exited.at - starting.at, Duration::from_millis(1_500));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn slow_probe_within_its_timeout_is_healthy() {
    // The same probe with a timeout longer than its 2 s answer passes.
    let calls = Arc::new(AtomicUsize::new(0));
    let liveness = slow_probe(Duration::from_secs(2), calls.clone())
        .period(PERIOD)
        .timeout(Duration::from_secs(3))
        .failure_threshold(1);
    let (handle, mut events) = start(server("web").liveness(liveness));

    let seen = events_during(&mut events, Duration::from_secs(30)).await;
    assert_eq!(
        kinds(&seen),
        [&EventKind::Starting, &EventKind::Ready { address: None }]
    );
    assert!(calls.load(Ordering::SeqCst) >= 10, "the probe kept running");

    handle.shutdown().await.expect("clean shutdown");
}

// ===== unknown =====

#[tokio::test(start_paused = true)]
async fn unknown_outcome_leaves_failure_counter_unchanged() {
    // failure_threshold 3: Unknown neither counts nor resets, so the third
    // Unhealthy (call 4, t = 3) kills the instance, not the second.
    let script = Script::new([Unhealthy, Unknown, Unhealthy, Unhealthy], Healthy);
    let child = server("web").liveness(script.spec().failure_threshold(3));
    let (handle, mut events) = start(child);

    let starting = next_event(&mut events).await;
    let (_, exited) = wait_for(&mut events, is_exit).await;
    assert_eq!(
        exited.kind,
        EventKind::Exited {
            reason: ExitReason::LivenessFailed
        }
    );
    assert_eq!(
        exited.at - starting.at,
        3 * PERIOD,
        "fails at the third Unhealthy"
    );
    assert_eq!(script.call_count(), 4);

    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn unknown_outcome_leaves_success_counter_unchanged() {
    // Readiness success_threshold 2: Healthy, Unknown, Healthy is two
    // consecutive successes (ready at call 3, t = 2).
    let script = Script::new([Healthy, Unknown, Healthy], Healthy);
    let child = server("web").readiness(script.spec().success_threshold(2));
    let (handle, mut events) = start(child);

    let starting = next_event(&mut events).await;
    let (before, ready) = wait_for(&mut events, is_ready).await;
    assert!(before.is_empty(), "{:?}", kinds(&before));
    assert_eq!(ready.at - starting.at, 2 * PERIOD);
    assert_eq!(script.call_count(), 3);

    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn only_unknown_outcomes_change_nothing() {
    // A readiness probe that cannot tell keeps the instance out of
    // rotation; a liveness probe that cannot tell never kills it.
    let readiness = Script::new([], Unknown);
    let liveness = Script::new([], Unknown);
    let child = server("web")
        .readiness(readiness.spec().failure_threshold(1))
        .liveness(liveness.spec().failure_threshold(1));
    let (handle, mut events) = start(child);

    let seen = events_during(&mut events, Duration::from_secs(30)).await;
    assert_eq!(kinds(&seen), [&EventKind::Starting]);
    assert!(readiness.call_count() >= 30 && liveness.call_count() >= 30);
    assert_eq!(handle.instances()[0].state, InstanceState::Starting);

    handle.shutdown().await.expect("clean shutdown");
}

// ===== initial delay =====

#[tokio::test(start_paused = true)]
async fn initial_delay_holds_back_the_first_check() {
    let liveness = Script::new([], Healthy);
    let readiness = Script::new([], Healthy);
    let child = server("web")
        .liveness(liveness.spec().initial_delay(Duration::from_secs(3)))
        .readiness(readiness.spec().initial_delay(Duration::from_secs(5)));
    let (handle, mut events) = start(child);

    let starting = next_event(&mut events).await;
    tokio::time::sleep_until(starting.at + Duration::from_millis(2_900)).await;
    assert_eq!(liveness.call_count(), 0, "liveness waits 3 s");
    assert_eq!(readiness.call_count(), 0, "readiness waits 5 s");

    let (before, ready) = wait_for(&mut events, is_ready).await;
    assert!(before.is_empty(), "{:?}", kinds(&before));
    assert_eq!(
        ready.at - starting.at,
        Duration::from_secs(5),
        "first readiness check at 5 s"
    );

    let _ = events_during(&mut events, 3 * PERIOD).await;
    let l = liveness.calls();
    let r = readiness.calls();
    assert_eq!(l[0].at - starting.at, Duration::from_secs(3), "{l:?}");
    assert_eq!(r[0].at - starting.at, Duration::from_secs(5), "{r:?}");
    // After the delay, checks follow the period.
    assert_eq!(l[1].at - l[0].at, PERIOD);
    assert_eq!(r[1].at - r[0].at, PERIOD);

    handle.shutdown().await.expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn startup_initial_delay_also_delays_the_probes_it_gates() {
    let startup = Script::new([], Healthy);
    let liveness = Script::new([], Healthy);
    let child = server("web")
        .startup(startup.spec().initial_delay(Duration::from_secs(4)))
        .liveness(liveness.spec());
    let (handle, mut events) = start(child);

    let starting = next_event(&mut events).await;
    let (before, ready) = wait_for(&mut events, is_ready).await;
    assert!(before.is_empty(), "{:?}", kinds(&before));
    assert_eq!(ready.at - starting.at, Duration::from_secs(4));
    assert_eq!(startup.calls()[0].at - starting.at, Duration::from_secs(4));
    let _ = events_during(&mut events, PERIOD).await;
    assert!(
        liveness
            .calls()
            .iter()
            .all(|c| c.at - starting.at >= Duration::from_secs(4))
    );

    handle.shutdown().await.expect("clean shutdown");
}

// ===== validation =====

fn healthy() -> ProbeSpec {
    ProbeSpec::new(probe_fn(|_| async { Healthy }))
}

fn build_error(child: ChildSpec) -> (String, SpecError) {
    let err = SupervisorSpec::builder("app")
        .child(child)
        .build()
        .expect_err("the spec must be rejected");
    match &err {
        SpecError::InvalidField { field, .. } => (field.clone(), err),
        other => panic!("expected InvalidField, got {other:?}"),
    }
}

#[test]
fn bad_probe_timing_is_rejected_at_build_naming_the_field() {
    let cases: Vec<(ChildSpec, &str)> = vec![
        (
            server("web").liveness(healthy().period(Duration::ZERO)),
            "children[web].liveness.period",
        ),
        (
            server("web").readiness(healthy().period(Duration::ZERO)),
            "children[web].readiness.period",
        ),
        (
            server("web").startup(healthy().period(Duration::ZERO)),
            "children[web].startup.period",
        ),
        (
            server("web").liveness(healthy().timeout(Duration::ZERO)),
            "children[web].liveness.timeout",
        ),
        (
            server("web").liveness(healthy().initial_delay(Duration::MAX)),
            "children[web].liveness.initial_delay",
        ),
        (
            server("web").readiness(healthy().period(Duration::from_secs(366 * 86_400))),
            "children[web].readiness.period",
        ),
        (
            server("web").startup(healthy().timeout(Duration::MAX)),
            "children[web].startup.timeout",
        ),
        (
            server("web").readiness(healthy().success_threshold(0)),
            "children[web].readiness.success_threshold",
        ),
        (
            server("web").readiness(healthy().failure_threshold(0)),
            "children[web].readiness.failure_threshold",
        ),
        (
            server("web").liveness(healthy().failure_threshold(0)),
            "children[web].liveness.failure_threshold",
        ),
        (
            server("web").liveness(healthy().success_threshold(2)),
            "children[web].liveness.success_threshold",
        ),
        (
            server("web").startup(healthy().success_threshold(2)),
            "children[web].startup.success_threshold",
        ),
    ];
    for (child, expected) in cases {
        let (field, err) = build_error(child);
        assert_eq!(field, expected, "{err}");
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[test]
fn readiness_may_require_several_successes() {
    // Only liveness and startup are held to success_threshold 1.
    SupervisorSpec::builder("app")
        .child(server("web").readiness(healthy().success_threshold(3)))
        .build()
        .expect("readiness success_threshold 3 is valid");
}
