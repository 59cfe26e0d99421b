//! Served children over real loopback sockets: an axum or tonic child
//! announces the address it bound and answers there; a shutdown refuses new
//! connections at once and lets a request in flight finish inside the grace
//! period, and one that outlives it is cut with its instance; a crashed
//! child comes back on a fresh listener with a fresh router, and so does
//! one that failed itself (`ChildContext::fail`), which leaves rotation
//! before it drains; a bind failure is the child's exit error.
//!
//! Real sockets need real time, so nothing here asserts a duration: every
//! wait is bounded by `WAIT`, far longer than any step needs.
#![cfg(all(feature = "http", feature = "grpc"))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use orch_core::{
    ChildSpec, EventKind, ExitReason, GrpcHealthProbe, HttpProbe, LifecycleEvent, ProbeOutcome, ProbeSpec,
    ProbeTarget, RestartType,
};
use tokio::sync::{Notify, mpsc};
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

mod support;
use support::{start, wait_for};

/// The bound on any one wait; only a bug reaches it.
const WAIT: Duration = Duration::from_secs(10);

/// GETs `path` from `addr` on a new connection; the status and body.
async fn get_text(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}{path}").parse().expect("a valid uri");
    let call = async {
        let response = client.get(uri).await.expect("a response");
        let status = response.status();
        let body = response.into_body().collect().await.expect("a body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(WAIT, call).await.expect("an answer in time")
}

/// The address of the next `Ready` of `generation`.
async fn ready_at(events: &mut orch_core::EventStream, generation: u64) -> SocketAddr {
    let is_ready =
        |e: &LifecycleEvent| e.generation == generation && matches!(e.kind, EventKind::Ready { .. });
    match wait_for(events, WAIT, is_ready).await.1.kind {
        EventKind::Ready { address: Some(addr) } => addr,
        other => panic!("ready without an address: {other:?}"),
    }
}

fn generation_router(ctx: &orch_core::ChildContext) -> Router {
    let generation = ctx.generation().to_string();
    Router::new().route("/generation", get(move || async move { generation }))
}

#[tokio::test]
async fn a_served_child_announces_its_loopback_address_and_answers_there() {
    let (handle, mut events) = start(ChildSpec::serve_http("web", generation_router));
    let addr = ready_at(&mut events, 0).await;
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    assert_eq!(
        get_text(addr, "/generation").await,
        (StatusCode::OK, "0".to_owned())
    );
    assert_eq!(handle.instances()[0].address, Some(addr));
    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown ends")
        .expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_refuses_new_connections_and_lets_a_request_in_flight_finish() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let gate = release.clone();
    let child = ChildSpec::serve_http("web", move |_ctx| {
        let (entered_tx, gate) = (entered_tx.clone(), gate.clone());
        Router::new().route(
            "/slow",
            get(move || async move {
                let _ = entered_tx.send(());
                gate.notified().await;
                "finished"
            }),
        )
    })
    .shutdown_grace(Duration::from_secs(60));
    let (handle, mut events) = start(child);
    let addr = ready_at(&mut events, 0).await;

    let slow = tokio::spawn(get_text(addr, "/slow"));
    tokio::time::timeout(WAIT, entered.recv())
        .await
        .expect("the request reaches its handler")
        .expect("the router is alive");
    let stopping = tokio::spawn({
        let handle = handle.clone();
        async move { handle.shutdown().await }
    });
    wait_for(&mut events, WAIT, |e| e.kind == EventKind::Stopping).await;

    // The listener closes once the child sees its cancellation; poll for it.
    let refused = async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) => return e.kind(),
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    let kind = tokio::time::timeout(WAIT, refused)
        .await
        .expect("the listener closes");
    assert_eq!(kind, std::io::ErrorKind::ConnectionRefused);
    assert!(
        !slow.is_finished() && !stopping.is_finished(),
        "the request in flight holds the shutdown"
    );

    release.notify_one();
    let answer = tokio::time::timeout(WAIT, slow)
        .await
        .expect("answered")
        .expect("no panic");
    assert_eq!(answer, (StatusCode::OK, "finished".to_owned()));
    let (_, stopped) = wait_for(&mut events, WAIT, |e| matches!(e.kind, EventKind::Stopped { .. })).await;
    assert_eq!(
        stopped.kind,
        EventKind::Stopped { forced: false },
        "drained inside the grace period"
    );
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("shutdown ends")
        .expect("no panic")
        .expect("clean shutdown");
}

#[tokio::test]
async fn a_request_that_outlives_the_grace_period_is_cut_with_its_instance() {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let child = ChildSpec::serve_http("web", move |_ctx| {
        let entered_tx = entered_tx.clone();
        Router::new().route(
            "/forever",
            get(move || async move {
                let _ = entered_tx.send(());
                std::future::pending::<&'static str>().await
            }),
        )
    })
    .shutdown_grace(Duration::from_millis(100));
    let (handle, mut events) = start(child);
    let addr = ready_at(&mut events, 0).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}/forever").parse().expect("a valid uri");
    let call = tokio::spawn(client.get(uri));
    tokio::time::timeout(WAIT, entered.recv())
        .await
        .expect("the request reaches its handler")
        .expect("the router is alive");

    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown ends")
        .expect("clean shutdown");
    let (_, stopped) = wait_for(&mut events, WAIT, |e| matches!(e.kind, EventKind::Stopped { .. })).await;
    assert_eq!(stopped.kind, EventKind::Stopped { forced: true });
    // No connection outlives the instance: the client sees it closed.
    let answer = tokio::time::timeout(WAIT, call)
        .await
        .expect("the call ends")
        .expect("no panic");
    assert!(answer.is_err(), "cut, not answered: {answer:?}");
}

#[tokio::test]
async fn a_crashed_served_child_is_restarted_on_a_fresh_listener() {
    // The first incarnation's /healthz starts failing on demand, so its
    // liveness probe kills it.
    let sick = Arc::new(AtomicBool::new(false));
    let flag = sick.clone();
    let child = ChildSpec::serve_http("web", move |ctx| {
        let sick = (ctx.generation() == 0).then(|| flag.clone());
        generation_router(ctx).route(
            "/healthz",
            get(move || async move {
                match &sick {
                    Some(sick) if sick.load(Ordering::SeqCst) => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::OK,
                }
            }),
        )
    })
    .liveness(
        ProbeSpec::new(HttpProbe::get("/healthz").expect("valid"))
            .period(Duration::from_millis(20))
            .failure_threshold(1),
    );
    let (handle, mut events) = start(child);
    let first = ready_at(&mut events, 0).await;
    assert_eq!(get_text(first, "/generation").await.1, "0");

    sick.store(true, Ordering::SeqCst);
    let (_, exit) = wait_for(&mut events, WAIT, support::is_exit).await;
    assert_eq!(
        exit.kind,
        EventKind::Exited {
            reason: ExitReason::LivenessFailed
        }
    );
    let second = ready_at(&mut events, 1).await;
    assert_eq!(
        get_text(second, "/generation").await,
        (StatusCode::OK, "1".to_owned())
    );
    // The first incarnation's listener is gone with it.
    if second != first {
        assert!(tokio::net::TcpStream::connect(first).await.is_err());
    }
    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown ends")
        .expect("clean shutdown");
}

#[tokio::test]
async fn a_served_child_that_fails_itself_exits_failed_and_is_restarted() {
    // Transient: restarted only after an abnormal exit, which `fail` is.
    let child = ChildSpec::serve_http("web", |ctx| {
        let ctx = ctx.clone();
        generation_router(&ctx).route(
            "/crash",
            get(move || async move {
                ctx.fail("asked to crash");
                StatusCode::ACCEPTED
            }),
        )
    })
    .restart(RestartType::Transient);
    let (handle, mut events) = start(child);
    let first = ready_at(&mut events, 0).await;
    assert_eq!(get_text(first, "/crash").await.0, StatusCode::ACCEPTED);
    let (_, exit) = wait_for(&mut events, WAIT, support::is_exit).await;
    assert_eq!(
        exit.kind,
        EventKind::Exited {
            reason: ExitReason::Failed("asked to crash".into())
        }
    );
    let second = ready_at(&mut events, 1).await;
    assert_eq!(get_text(second, "/generation").await.1, "1");
    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown ends")
        .expect("clean shutdown");
}

#[tokio::test]
async fn a_served_child_that_fails_itself_leaves_rotation_before_it_drains() {
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let child = ChildSpec::serve_http("web", {
        let (entered, release) = (entered.clone(), release.clone());
        move |ctx| {
            let ctx = ctx.clone();
            let (entered, release) = (entered.clone(), release.clone());
            generation_router(&ctx)
                .route(
                    "/slow",
                    get(move || async move {
                        entered.notify_one();
                        release.notified().await;
                        "finished"
                    }),
                )
                .route(
                    "/crash",
                    get(move || async move {
                        ctx.fail("asked to crash");
                        StatusCode::ACCEPTED
                    }),
                )
        }
    })
    .restart(RestartType::Temporary);
    let (handle, mut events) = start(child);
    let addr = ready_at(&mut events, 0).await;
    let slow = tokio::spawn(get_text(addr, "/slow"));
    tokio::time::timeout(WAIT, entered.notified())
        .await
        .expect("the slow call reaches its handler");
    assert_eq!(get_text(addr, "/crash").await.0, StatusCode::ACCEPTED);

    // Out of rotation while a request is still in flight: the instance
    // has not exited, it is draining.
    let (before, left) = wait_for(&mut events, WAIT, |e| {
        matches!(e.kind, EventKind::NotReady | EventKind::Exited { .. })
    })
    .await;
    assert_eq!(
        (left.generation, &left.kind),
        (0, &EventKind::NotReady),
        "{before:?}"
    );
    assert!(!slow.is_finished());

    release.notify_one();
    assert_eq!(
        slow.await.expect("the slow call's task"),
        (StatusCode::OK, "finished".to_owned())
    );
    let (_, exit) = wait_for(&mut events, WAIT, support::is_exit).await;
    assert_eq!(
        exit.kind,
        EventKind::Exited {
            reason: ExitReason::Failed("asked to crash".into())
        }
    );
    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown ends")
        .expect("clean shutdown");
}

#[tokio::test]
async fn a_bind_failure_is_the_exit_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("local address");
    let child = ChildSpec::serve_http_on("web", addr, generation_router).restart(RestartType::Temporary);
    let (handle, mut events) = start(child);
    let (before, exit) = wait_for(&mut events, WAIT, support::is_exit).await;
    assert!(
        !before.iter().any(|e| matches!(e.kind, EventKind::Ready { .. })),
        "never ready: {before:?}"
    );
    match exit.kind {
        EventKind::Exited {
            reason: ExitReason::Failed(message),
        } => assert!(message.contains(&format!("binding {addr}")), "{message}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown ends")
        .expect("clean shutdown");
}

#[tokio::test]
async fn a_served_tonic_child_answers_health_checks_and_restarts_on_a_fresh_listener() {
    let first_reporter: Arc<Mutex<Option<HealthReporter>>> = Arc::default();
    let keep = first_reporter.clone();
    let child = ChildSpec::serve_grpc("payments", move |ctx| {
        let (reporter, service) = tonic_health::server::health_reporter();
        if ctx.generation() == 0 {
            *keep.lock().expect("reporter lock") = Some(reporter);
        }
        Routes::new(service)
    })
    .readiness(ProbeSpec::new(GrpcHealthProbe::new()).period(Duration::from_millis(20)))
    .liveness(
        ProbeSpec::new(GrpcHealthProbe::new())
            .period(Duration::from_millis(20))
            .failure_threshold(1),
    );
    let (handle, mut events) = start(child);
    let first = ready_at(&mut events, 0).await;
    let probe = ProbeSpec::new(GrpcHealthProbe::new()).timeout(WAIT);
    let target = |generation, addr| ProbeTarget::new("test", "payments", generation, Some(addr));
    assert_eq!(probe.check(&target(0, first)).await, ProbeOutcome::Healthy);

    let reporter = first_reporter
        .lock()
        .expect("reporter lock")
        .take()
        .expect("the first run kept it");
    reporter.set_service_status("", ServingStatus::NotServing).await;
    let (_, exit) = wait_for(&mut events, WAIT, support::is_exit).await;
    assert_eq!(
        exit.kind,
        EventKind::Exited {
            reason: ExitReason::LivenessFailed
        }
    );
    let second = ready_at(&mut events, 1).await;
    assert_eq!(probe.check(&target(1, second)).await, ProbeOutcome::Healthy);

    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown ends")
        .expect("clean shutdown");
    let (_, stopped) = wait_for(&mut events, WAIT, |e| matches!(e.kind, EventKind::Stopped { .. })).await;
    assert_eq!(stopped.kind, EventKind::Stopped { forced: false });
}
