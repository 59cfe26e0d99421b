//! `HttpProbe` over real loopback servers (axum on 127.0.0.1, ephemeral
//! ports): the verdict follows the status and the timeout, an instance
//! without an address is unknown, bad fields are typed errors naming the
//! field, and a supervised axum child's readiness follows its `/ready`.
//!
//! Real sockets need real time, so nothing here asserts a duration: every
//! wait is bounded by `WAIT`, far longer than any step needs.
#![cfg(feature = "http")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use orch_core::{ChildSpec, EventKind, HttpProbe, ProbeOutcome, ProbeSpec, ProbeTarget, SpecError};

mod support;
use support::{start, wait_for};

/// The bound on any one wait; only a bug reaches it.
const WAIT: Duration = Duration::from_secs(10);

/// Serves `router` on an ephemeral loopback port until the test ends.
async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn target(addr: Option<SocketAddr>) -> ProbeTarget {
    ProbeTarget::new("app", "web", 0, addr)
}

/// One check as the supervisor runs it, bounded.
async fn check(probe: HttpProbe, addr: Option<SocketAddr>) -> ProbeOutcome {
    let spec = ProbeSpec::new(probe).timeout(Duration::from_millis(300));
    tokio::time::timeout(WAIT, spec.check(&target(addr)))
        .await
        .expect("the check ends")
}

fn probe(path: &str) -> HttpProbe {
    HttpProbe::get(path).expect("a valid probe")
}

fn statuses() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/created", get(|| async { StatusCode::CREATED }))
        .route("/moved", get(|| async { StatusCode::FOUND }))
        .route("/hang", get(std::future::pending::<&'static str>))
        .route(
            "/guarded",
            get(|headers: HeaderMap| async move {
                match headers.get("x-probe").and_then(|v| v.to_str().ok()) {
                    Some("secret") => StatusCode::OK,
                    _ => StatusCode::UNAUTHORIZED,
                }
            }),
        )
}

#[tokio::test]
async fn the_verdict_follows_the_status() {
    let addr = Some(serve(statuses()).await);
    assert_eq!(check(probe("/ok"), addr).await, ProbeOutcome::Healthy);
    assert_eq!(check(probe("/fail"), addr).await, ProbeOutcome::Unhealthy);
    assert_eq!(
        check(probe("/missing"), addr).await,
        ProbeOutcome::Unhealthy,
        "404"
    );
    // Kubernetes' httpGet range: redirects count as healthy by default.
    assert_eq!(check(probe("/moved"), addr).await, ProbeOutcome::Healthy);
    let only_200 = HttpProbe::builder("/created")
        .status(200..=200)
        .build()
        .expect("valid");
    assert_eq!(only_200.status_range(), 200..201);
    assert_eq!(
        check(only_200, addr).await,
        ProbeOutcome::Unhealthy,
        "201 is outside 200..=200"
    );
    let redirects = HttpProbe::builder("/moved")
        .status(300..400)
        .build()
        .expect("valid");
    assert_eq!(check(redirects, addr).await, ProbeOutcome::Healthy);
}

#[tokio::test]
async fn headers_are_sent() {
    let addr = Some(serve(statuses()).await);
    assert_eq!(check(probe("/guarded"), addr).await, ProbeOutcome::Unhealthy);
    let with_header = HttpProbe::builder("/guarded")
        .header("x-probe", "secret")
        .build()
        .expect("valid");
    assert_eq!(check(with_header, addr).await, ProbeOutcome::Healthy);
}

#[tokio::test]
async fn a_server_that_never_answers_fails_on_the_probe_timeout() {
    let addr = Some(serve(statuses()).await);
    assert_eq!(check(probe("/hang"), addr).await, ProbeOutcome::Unhealthy);
    // The cancelled request cost its connection only: the next check works.
    assert_eq!(check(probe("/ok"), addr).await, ProbeOutcome::Healthy);
}

#[tokio::test]
async fn no_server_is_unhealthy_and_no_address_is_unknown() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local address")
    };
    assert_eq!(check(probe("/ok"), Some(closed)).await, ProbeOutcome::Unhealthy);
    assert_eq!(check(probe("/ok"), None).await, ProbeOutcome::Unknown);
}

#[tokio::test]
async fn a_fixed_address_wins_over_the_announced_one() {
    let addr = serve(statuses()).await;
    let fixed = HttpProbe::builder("/ok").at(addr).build().expect("valid");
    assert_eq!(check(fixed, None).await, ProbeOutcome::Healthy);
}

fn field_of(result: Result<HttpProbe, SpecError>) -> String {
    match result {
        Err(SpecError::InvalidField { field, .. }) => field,
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

#[test]
fn bad_fields_are_typed_errors_naming_the_field() {
    assert_eq!(field_of(HttpProbe::get("healthz")), "http.path");
    assert_eq!(field_of(HttpProbe::get("")), "http.path");
    assert_eq!(field_of(HttpProbe::get("/a b")), "http.path");
    assert_eq!(
        field_of(HttpProbe::builder("/").header("bad name", "x").build()),
        "http.headers[bad name]"
    );
    assert_eq!(
        field_of(HttpProbe::builder("/").header("x-ok", "line\nbreak").build()),
        "http.headers[x-ok]"
    );
    #[allow(clippy::reversed_empty_ranges)] // the point of the test
    let empty = HttpProbe::builder("/").status(400..200).build();
    assert_eq!(field_of(empty), "http.status");
    assert_eq!(
        field_of(HttpProbe::builder("/").status(200..200).build()),
        "http.status"
    );
    let message = HttpProbe::get("healthz").expect_err("invalid").to_string();
    assert!(
        message.contains("http.path") && message.contains("'/'"),
        "{message}"
    );
}

#[tokio::test]
async fn a_served_child_leaves_and_rejoins_rotation_with_its_ready_endpoint() {
    let ready = Arc::new(AtomicBool::new(true));
    let flag = ready.clone();
    let child = ChildSpec::serve_http("web", move |_ctx| {
        let flag = flag.clone();
        Router::new().route(
            "/ready",
            get(move || async move {
                if flag.load(Ordering::SeqCst) {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }),
        )
    })
    .readiness(
        ProbeSpec::new(probe("/ready"))
            .period(Duration::from_millis(20))
            .failure_threshold(2),
    );
    let (handle, mut events) = start(child);

    let (_, e) = wait_for(&mut events, WAIT, |e| matches!(e.kind, EventKind::Ready { .. })).await;
    assert!(matches!(e.kind, EventKind::Ready { address: Some(_) }), "{e:?}");
    ready.store(false, Ordering::SeqCst);
    let (before, _) = wait_for(&mut events, WAIT, |e| e.kind == EventKind::NotReady).await;
    assert!(
        before.is_empty(),
        "nothing between Ready and NotReady: {before:?}"
    );
    ready.store(true, Ordering::SeqCst);
    let (before, e) = wait_for(&mut events, WAIT, |e| matches!(e.kind, EventKind::Ready { .. })).await;
    assert!(
        before.is_empty(),
        "back in rotation without a restart: {before:?}"
    );
    assert_eq!(e.generation, 0);

    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("shutdown ends")
        .expect("clean shutdown");
}
