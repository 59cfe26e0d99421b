//! At most one run per key: concurrent repeats, leases that run out or are
//! renewed, clients that disconnect, handlers that panic.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::StatusCode;
use orch_resilience::idempotency::http::IdempotencyConfig;
use tower::{Layer, ServiceExt};

use super::{Handler, KEY, Seen, layer, memory, post, send, support::Metrics};

/// 64 tasks on two threads send the same request at once while the
/// handler is held; every one that is told "in progress" says so, and
/// the handler is let go only when all of them have. Then each sends
/// again, as a client honouring `Retry-After` would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_repeats_run_the_handler_once_and_all_get_its_answer() {
    const CLIENTS: usize = 64;
    let (handler, gate) = Handler::new().gated();
    let service = layer(memory(), IdempotencyConfig::default()).layer(handler.service());
    let refused = Arc::new(AtomicUsize::new(0));
    let (all_refused, mut when_all_refused) = tokio::sync::watch::channel(false);
    let all_refused = Arc::new(all_refused);

    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let service = service.clone();
            let refused = Arc::clone(&refused);
            let all_refused = Arc::clone(&all_refused);
            tokio::spawn(async move {
                let mut conflicts = 0;
                loop {
                    let seen = send(&service, post(KEY, "order")).await;
                    if seen.status != StatusCode::CONFLICT {
                        return (seen, conflicts);
                    }
                    assert_eq!(seen.headers["retry-after"], "1");
                    assert_eq!(
                        seen.problem()["type"],
                        "urn:orch:problem:idempotency-key-in-progress"
                    );
                    conflicts += 1;
                    if conflicts == 1 && refused.fetch_add(1, Ordering::SeqCst) + 1 == CLIENTS - 1 {
                        all_refused.send_replace(true);
                    }
                    // Until the handler has answered, ask again.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    when_all_refused.wait_for(|done| *done).await.unwrap();
    gate.add_permits(1);

    let mut answers: Vec<(Seen, usize)> = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(handler.calls(), 1, "one run for 64 requests");
    let first = answers
        .iter()
        .find(|(seen, _)| !seen.replayed())
        .unwrap()
        .0
        .clone();
    assert_eq!(
        (first.status, first.text()),
        (StatusCode::CREATED, "call 0: order".to_owned())
    );
    for (seen, _) in &answers {
        assert_eq!((seen.status, &seen.body), (first.status, &first.body));
    }
    assert_eq!(
        answers.iter().filter(|(seen, _)| seen.replayed()).count(),
        CLIENTS - 1
    );
    assert_eq!(
        answers.iter().filter(|(_, conflicts)| *conflicts > 0).count(),
        CLIENTS - 1
    );
}

#[tokio::test(start_paused = true)]
async fn a_lease_that_runs_out_gives_one_more_run_and_the_stale_completion_is_refused() {
    let metrics = Metrics::default();
    let _recording = metrics.install();
    // Renewal off, so the first run outlives its 1 s lease.
    let config = IdempotencyConfig::default()
        .lease(Duration::from_secs(1))
        .renew_leases(false);
    let handler = Handler::new().delays(&[Duration::from_secs(5)]);
    let service = layer(memory(), config).layer(handler.service());

    let slow = tokio::spawn({
        let service = service.clone();
        async move { send(&service, post(KEY, "x")).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        send(&service, post(KEY, "x")).await.status,
        StatusCode::CONFLICT,
        "lease still live"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let second = send(&service, post(KEY, "x")).await;
    assert_eq!(
        (second.status, second.text()),
        (StatusCode::CREATED, "call 1: x".to_owned())
    );
    let first = slow.await.unwrap();
    assert_eq!(
        first.text(),
        "call 0: x",
        "the stale holder's client still gets its answer"
    );

    let replay = send(&service, post(KEY, "x")).await;
    assert_eq!(
        replay.text(),
        "call 1: x",
        "the record holds the second run, not the stale one"
    );
    assert_eq!(handler.calls(), 2, "exactly one re-execution");
    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot.counter("orch_idempotency_finished_total", &[("result", "stale")]),
        1
    );
    assert_eq!(
        snapshot.counter("orch_idempotency_finished_total", &[("result", "saved")]),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_renewed_lease_outlives_a_long_handler() {
    let config = IdempotencyConfig::default().lease(Duration::from_secs(1));
    let handler = Handler::new().delays(&[Duration::from_secs(10)]);
    let service = layer(memory(), config).layer(handler.service());
    let slow = tokio::spawn({
        let service = service.clone();
        async move { send(&service, post(KEY, "x")).await }
    });
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(send(&service, post(KEY, "x")).await.status, StatusCode::CONFLICT);
    }
    assert_eq!(slow.await.unwrap().status, StatusCode::CREATED);
    assert!(send(&service, post(KEY, "x")).await.replayed());
    assert_eq!(handler.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_disconnects_still_gets_its_record_finished() {
    let (handler, gate) = Handler::new().gated();
    let service = layer(memory(), IdempotencyConfig::default()).layer(handler.service());

    let gone = tokio::time::timeout(
        Duration::from_millis(100),
        service.clone().oneshot(post(KEY, "x")),
    )
    .await;
    assert!(gone.is_err(), "the client gave up and dropped its call");
    assert_eq!(handler.calls(), 1);
    gate.add_permits(1);
    tokio::time::sleep(Duration::from_millis(10)).await;

    let retry = send(&service, post(KEY, "x")).await;
    assert!(retry.replayed(), "finished without anyone waiting");
    assert_eq!(retry.text(), "call 0: x");
    assert_eq!(handler.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_handler_panics_the_call_and_releases_the_key() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let inner = tower::service_fn(move |_: super::Req| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            assert!(n > 0, "first call fails");
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"ok"),
            )))
        }
    });
    let service = layer(memory(), IdempotencyConfig::default()).layer(inner);
    let call = tokio::spawn(service.clone().oneshot(post(KEY, "x")));
    assert!(call.await.unwrap_err().is_panic());
    assert_eq!(
        send(&service, post(KEY, "x")).await.text(),
        "ok",
        "the key was released"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
