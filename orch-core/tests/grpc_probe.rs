//! `GrpcHealthProbe` against real tonic servers on 127.0.0.1 with
//! tonic-health's reporter: `SERVING` is healthy; `NOT_SERVING`, an unknown
//! service, a server without a health service (`UNIMPLEMENTED`) and no
//! server at all are unhealthy; an instance without an address is unknown;
//! a new incarnation gets a new channel.
//!
//! Real sockets need real time, so nothing here asserts a duration: every
//! wait is bounded by `WAIT`.
#![cfg(feature = "grpc")]

use std::net::SocketAddr;
use std::time::Duration;

use orch_core::{GrpcHealthProbe, ProbeOutcome, ProbeSpec, ProbeTarget};
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The bound on any one wait; only a bug reaches it.
const WAIT: Duration = Duration::from_secs(10);

/// Serves `routes` with tonic's own server on an ephemeral loopback port.
async fn serve(routes: Routes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(
        Server::builder()
            .add_routes(routes)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    addr
}

/// A server whose health service reports the whole server as `SERVING`.
async fn health_server() -> (HealthReporter, SocketAddr) {
    let (reporter, service) = tonic_health::server::health_reporter();
    (reporter, serve(Routes::new(service)).await)
}

/// One check as the supervisor runs it, bounded.
async fn check(spec: &ProbeSpec, generation: u64, addr: Option<SocketAddr>) -> ProbeOutcome {
    let target = ProbeTarget::new("app", "payments", generation, addr);
    tokio::time::timeout(WAIT, spec.check(&target))
        .await
        .expect("the check ends")
}

fn spec(probe: GrpcHealthProbe) -> ProbeSpec {
    ProbeSpec::new(probe).timeout(Duration::from_secs(2))
}

#[tokio::test]
async fn serving_is_healthy_and_not_serving_is_not() {
    let (reporter, addr) = health_server().await;
    let whole = spec(GrpcHealthProbe::new());
    assert_eq!(check(&whole, 0, Some(addr)).await, ProbeOutcome::Healthy);
    reporter.set_service_status("", ServingStatus::NotServing).await;
    assert_eq!(check(&whole, 0, Some(addr)).await, ProbeOutcome::Unhealthy);
    reporter.set_service_status("", ServingStatus::Serving).await;
    assert_eq!(check(&whole, 0, Some(addr)).await, ProbeOutcome::Healthy);
}

#[tokio::test]
async fn a_named_service_is_checked_by_its_name() {
    let (reporter, addr) = health_server().await;
    reporter
        .set_service_status("payments.v1.Payments", ServingStatus::Serving)
        .await;
    let payments = spec(GrpcHealthProbe::service("payments.v1.Payments"));
    assert_eq!(
        payments.check(&ProbeTarget::new("app", "p", 0, Some(addr))).await,
        ProbeOutcome::Healthy
    );
    reporter
        .set_service_status("payments.v1.Payments", ServingStatus::NotServing)
        .await;
    assert_eq!(check(&payments, 0, Some(addr)).await, ProbeOutcome::Unhealthy);
    // The server as a whole is still serving.
    assert_eq!(
        check(&spec(GrpcHealthProbe::new()), 0, Some(addr)).await,
        ProbeOutcome::Healthy
    );
}

#[tokio::test]
async fn an_unknown_service_is_unhealthy() {
    let (_reporter, addr) = health_server().await;
    let unknown = spec(GrpcHealthProbe::service("nobody.Knows"));
    assert_eq!(check(&unknown, 0, Some(addr)).await, ProbeOutcome::Unhealthy);
}

#[tokio::test]
async fn a_server_without_a_health_service_is_unhealthy() {
    // Every method answers UNIMPLEMENTED.
    let addr = serve(Routes::default()).await;
    assert_eq!(
        check(&spec(GrpcHealthProbe::new()), 0, Some(addr)).await,
        ProbeOutcome::Unhealthy
    );
}

#[tokio::test]
async fn no_server_is_unhealthy_and_no_address_is_unknown() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local address")
    };
    let probe = spec(GrpcHealthProbe::new());
    assert_eq!(check(&probe, 0, Some(closed)).await, ProbeOutcome::Unhealthy);
    assert_eq!(check(&probe, 0, None).await, ProbeOutcome::Unknown);
}

#[tokio::test]
async fn a_new_incarnation_or_address_gets_a_new_channel() {
    let (_up, first) = health_server().await;
    let (down, second) = health_server().await;
    down.set_service_status("", ServingStatus::NotServing).await;
    let probe = spec(GrpcHealthProbe::new());
    assert_eq!(check(&probe, 0, Some(first)).await, ProbeOutcome::Healthy);
    // Same instance, next incarnation, elsewhere: the answer is the new server's.
    assert_eq!(check(&probe, 1, Some(second)).await, ProbeOutcome::Unhealthy);
    // Same incarnation, moved back: the channel follows the address.
    assert_eq!(check(&probe, 1, Some(first)).await, ProbeOutcome::Healthy);
}
