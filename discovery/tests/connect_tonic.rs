//! The tonic connector over real loopback servers: a generated gRPC client
//! (`grpc.health.v1`) over two replicas through a shared balancer, a
//! killed replica routed around and evicted, typed errors for bad input,
//! and `UNAVAILABLE` (not `UNKNOWN`) when no endpoint can take a call.
#![cfg(feature = "tonic")]
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

mod loopback;

use std::time::Duration;

use futures_util::StreamExt;

use loopback::{Replica, discovery};
use orch_discovery::{
    Endpoint,
    balance::{Algorithm, BalanceError, Balancer, BalancerConfig},
    connect::{ConnectorError, TonicConnector},
};
use tonic::Code;
use tonic_health::{
    ServingStatus,
    pb::{HealthCheckRequest, health_client::HealthClient},
};
use tower::{Service, ServiceExt};

/// A replica serving `grpc.health.v1` where only the service named like
/// the replica is known: a check of `r0` says which replica answered
/// (`SERVING` from r0, `NOT_FOUND` from the others).
async fn replica(name: &'static str) -> Replica {
    let (reporter, server) = tonic_health::server::health_reporter();
    reporter.set_service_status(name, ServingStatus::Serving).await;
    Replica::serve(name, server).await
}

fn config() -> BalancerConfig {
    BalancerConfig::default()
        .name("grpc")
        .algorithm(Algorithm::RoundRobin)
        .failfast_timeout(Duration::from_secs(2))
        .seed(11)
}

/// Checks service `r0`: `Ok(true)` when r0 answered, `Ok(false)` when
/// another replica did.
async fn answered_by_r0<T>(client: &mut HealthClient<T>) -> Result<bool, tonic::Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    let request = HealthCheckRequest {
        service: "r0".to_owned(),
    };
    match client.check(request).await {
        Ok(response) => Ok(response.into_inner().status == ServingStatus::Serving as i32),
        Err(status) if status.code() == Code::NotFound => Ok(false),
        Err(status) => Err(status),
    }
}

#[tokio::test]
async fn a_generated_client_runs_over_replicas_and_a_killed_one_is_evicted() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (r0, r1) = (replica("r0").await, replica("r1").await);
        let template = tonic::transport::Endpoint::from_static("http://health")
            .timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(30));
        let balancer = Balancer::with_config(
            &config(),
            discovery(&[&r0, &r1]),
            TonicConnector::new(template).unwrap(),
        )
        .unwrap();
        let mut client = HealthClient::new(balancer.into_shared());

        let mut by_r0 = 0;
        for _ in 0..20 {
            by_r0 += usize::from(answered_by_r0(&mut client).await.unwrap());
        }
        assert!(
            0 < by_r0 && by_r0 < 20,
            "both replicas answer: {by_r0} of 20 by r0"
        );

        r1.kill();
        let mut failures = Vec::new();
        let mut after = Vec::new();
        for _ in 0..40 {
            match answered_by_r0(&mut client.clone()).await {
                Ok(r0_answered) => after.push(r0_answered),
                Err(status) => failures.push(status),
            }
        }
        // Round robin would send every other call to r1: at most the calls
        // that raced the kill fail. One that found the connection closed
        // is UNAVAILABLE and was never sent; one already on its way when
        // the connection died is a transport error of a sent request.
        // Either way the balancer evicts r1 and every later call goes to r0.
        assert!(failures.len() <= 2, "{failures:?}");
        for status in &failures {
            let error = std::error::Error::source(status)
                .and_then(|e| e.downcast_ref::<BalanceError>())
                .unwrap();
            let connector = error.inner_ref().and_then(|e| e.downcast_ref::<ConnectorError>());
            match connector {
                Some(ConnectorError::Connect { .. }) => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    assert!(error.is_connect());
                }
                Some(ConnectorError::Request { .. }) => assert!(!error.is_connect()),
                _ => panic!("not a transport failure: {status:?}"),
            }
        }
        assert!(after.iter().all(|&r0_answered| r0_answered), "{after:?}");
        assert_eq!(after.len() + failures.len(), 40);
        r0.kill();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_endpoint_whose_connection_closed_fails_its_poll_ready() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let r0 = replica("r0").await;
        let mut connector = TonicConnector::default();
        let mut endpoint = connector
            .ready()
            .await
            .unwrap()
            .call(r0.endpoint())
            .await
            .unwrap();
        let mut client = HealthClient::new(endpoint.clone());
        assert!(answered_by_r0(&mut client).await.unwrap());

        r0.kill();
        // Whether this call finds the connection closed already or on the
        // way, it fails, and the endpoint knows its connection is gone.
        answered_by_r0(&mut client).await.unwrap_err();
        let error = endpoint.ready().await.unwrap_err();
        assert!(error.is_connect(), "{error}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_dead_endpoint_never_connects() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let error = TonicConnector::default()
        .call(Endpoint::new("gone", address))
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error}");
}

#[tokio::test]
async fn bad_input_is_a_typed_error_naming_the_field() {
    let error = TonicConnector::new(tonic::transport::Endpoint::from_static("https://health")).unwrap_err();
    assert!(
        matches!(&error, ConnectorError::UnsupportedScheme { scheme, .. } if scheme == "https"),
        "{error}"
    );
    assert_eq!(error.field_name(), Some("template.uri.scheme"));

    let error = TonicConnector::default()
        .call(Endpoint::new("bad", "127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(error.field_name(), Some("endpoint.address"));
    assert!(!error.is_connect());
}

/// Checks any service through `balancer` shared: the status it fails with.
async fn status_through<D>(balancer: Balancer<D, TonicConnector>) -> tonic::Status
where
    D: futures_util::Stream<Item = orch_discovery::EndpointChange> + Unpin + Send + 'static,
{
    let mut client = HealthClient::new(balancer.into_shared());
    client
        .check(HealthCheckRequest::default())
        .await
        .expect_err("no endpoint to answer")
}

#[tokio::test(start_paused = true)]
async fn no_endpoint_is_unavailable_to_a_generated_client() {
    // Discovery knows nothing, and never will.
    let changes = futures_util::stream::pending();
    let config = config().failfast_timeout(Duration::from_millis(500));
    let balancer = Balancer::with_config(&config, changes, TonicConnector::default()).unwrap();
    let status = status_through(balancer).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // The balancer's own error stays one `source` away.
    let error = std::error::Error::source(&status)
        .and_then(|e| e.downcast_ref::<BalanceError>())
        .unwrap_or_else(|| panic!("the balancer's error: {status:?}"));
    assert!(
        matches!(error, BalanceError::NoEndpoints { known: 0, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn endpoints_that_cannot_connect_are_unavailable_to_a_generated_client() {
    tokio::time::timeout(Duration::from_secs(10), async {
        // A port nobody listens on: every connect is refused, so the
        // endpoint never enters rotation.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let changes = futures_util::stream::iter([orch_discovery::EndpointChange::Insert(Endpoint::new(
            "gone", address,
        ))])
        .chain(futures_util::stream::pending());
        let config = config().failfast_timeout(Duration::from_millis(300));
        let balancer = Balancer::with_config(&config, changes, TonicConnector::default()).unwrap();
        let status = status_through(balancer).await;
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        let error = std::error::Error::source(&status)
            .and_then(|e| e.downcast_ref::<BalanceError>())
            .unwrap();
        assert!(
            matches!(error, BalanceError::NoEndpoints { known: 1, .. }),
            "{error}"
        );
    })
    .await
    .unwrap();
}

#[test]
fn the_balancers_other_errors_keep_their_codes() {
    // A broken `Service` contract or a driver gone do not heal by
    // retrying: not `UNAVAILABLE`.
    for error in [BalanceError::NotReady, BalanceError::Closed] {
        let status = tonic::Status::from_error(Box::new(error));
        assert_eq!(status.code(), Code::Unknown, "{status:?}");
    }
    let status = tonic::Status::from_error(Box::new(BalanceError::NoEndpoints {
        waited: Duration::from_secs(3),
        known: 2,
    }));
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}
