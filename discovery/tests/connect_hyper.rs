//! The hyper connector over real loopback servers: requests balanced over
//! three axum replicas, a killed replica routed around, typed errors for
//! bad addresses and schemes, a 503 replica losing its traffic and a bad
//! request ejecting nobody with the default classifier.
#![cfg(feature = "hyper")]
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

mod loopback;

use std::{collections::HashMap, time::Duration};

use axum::{Router, http::StatusCode, routing::get};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Builder, rt::TokioExecutor};
use loopback::{Replica, discovery};
use orch_discovery::{
    Endpoint,
    balance::{Algorithm, BalanceError, Balancer, BalancerConfig, SharedBalancer, failure_fn},
    connect::{ConnectorError, HyperConnector},
};
use tower::{Service, ServiceExt};

type Client = SharedBalancer<http::Request<Empty<Bytes>>, http::Response<hyper::body::Incoming>>;

async fn replica(name: &'static str) -> Replica {
    let router = Router::new().route("/who", get(move || async move { name }));
    Replica::serve(name, router).await
}

/// GET `uri`; the answering replica's name.
async fn who(client: &mut Client, uri: &str) -> Result<String, BalanceError> {
    let request = http::Request::get(uri).body(Empty::new()).unwrap();
    let response = client.ready().await?.call(request).await?;
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok(String::from_utf8(body.to_vec()).unwrap())
}

fn config() -> BalancerConfig {
    BalancerConfig::default()
        .name("http")
        .algorithm(Algorithm::RoundRobin)
        .failfast_timeout(Duration::from_secs(2))
        .seed(7)
}

#[tokio::test]
async fn requests_are_balanced_over_replicas_and_a_killed_one_is_routed_around() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (r0, r1, r2) = (replica("r0").await, replica("r1").await, replica("r2").await);
        let changes = discovery(&[&r0, &r1, &r2]);
        let mut client: Client = Balancer::with_config(&config(), changes, HyperConnector::new())
            .unwrap()
            .into_shared();

        // A path-only URI and a URI with a foreign authority both reach the
        // chosen replica.
        let mut served: HashMap<String, usize> = HashMap::new();
        for i in 0..30 {
            let uri = if i % 2 == 0 {
                "/who"
            } else {
                "http://elsewhere.invalid:1/who"
            };
            *served.entry(who(&mut client, uri).await.unwrap()).or_default() += 1;
        }
        assert_eq!(served.len(), 3, "{served:?}");

        r1.kill();
        let mut failures = Vec::new();
        let mut after = HashMap::<String, usize>::new();
        for _ in 0..60 {
            match who(&mut client, "/who").await {
                Ok(name) => *after.entry(name).or_default() += 1,
                Err(error) => failures.push(error),
            }
        }
        // The dead replica costs at most the one request that found it
        // dead (never sent: a connect failure), then is evicted.
        assert!(failures.len() <= 1, "{failures:?}");
        assert!(failures.iter().all(BalanceError::is_connect), "{failures:?}");
        assert_eq!(after.get("r1"), None, "{after:?}");
        assert_eq!(after.values().sum::<usize>() + failures.len(), 60);
        // Eviction is lasting: the connector's eager connect keeps it out.
        let tail: Vec<_> = {
            let mut names = Vec::new();
            for _ in 0..20 {
                names.push(who(&mut client, "/who").await.unwrap());
            }
            names
        };
        assert!(tail.iter().all(|n| n == "r0" || n == "r2"), "{tail:?}");
        r0.kill();
        r2.kill();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_request_that_cannot_connect_is_a_connect_error_and_breaks_the_endpoint() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let r0 = replica("r0").await;
        let mut connector = HyperConnector::<Empty<Bytes>>::new();
        let mut endpoint = connector
            .ready()
            .await
            .unwrap()
            .call(r0.endpoint())
            .await
            .unwrap();
        r0.kill();

        let request = http::Request::post("/who").body(Empty::new()).unwrap();
        let error = endpoint.ready().await.unwrap().call(request).await.unwrap_err();
        assert!(error.is_connect(), "{error}");
        // The balancer learns it from poll_ready, and evicts.
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
    let mut connector = HyperConnector::<Empty<Bytes>>::new();
    let error = connector.call(Endpoint::new("gone", address)).await.unwrap_err();
    assert!(error.is_connect(), "{error}");
}

#[tokio::test]
async fn bad_endpoint_addresses_are_typed_errors_naming_the_field() {
    let mut connector = HyperConnector::<Empty<Bytes>>::new();
    for address in [
        "127.0.0.1:0",
        "0.0.0.0:80",
        "[::]:80",
        "224.0.0.1:80",
        "255.255.255.255:80",
    ] {
        let endpoint = Endpoint::new("bad", address.parse().unwrap());
        let error = connector.call(endpoint).await.unwrap_err();
        assert!(matches!(error, ConnectorError::BadAddress { .. }), "{error}");
        assert_eq!(error.field_name(), Some("endpoint.address"));
        assert!(!error.is_connect());
        assert!(error.to_string().contains(address), "{error}");
    }
}

#[tokio::test]
async fn an_unsupported_scheme_is_a_typed_error_naming_it() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let r0 = replica("r0").await;
        let mut connector = HyperConnector::<Empty<Bytes>>::new();
        let mut endpoint = connector.call(r0.endpoint()).await.unwrap();
        let request = http::Request::get("https://r0/who").body(Empty::new()).unwrap();
        let error = endpoint.ready().await.unwrap().call(request).await.unwrap_err();
        assert!(
            matches!(&error, ConnectorError::UnsupportedScheme { scheme, .. } if scheme == "https"),
            "{error}"
        );
        assert_eq!(error.field_name(), Some("request.uri.scheme"));
        assert!(!error.is_connect());
        // Nothing was sent, nothing broke.
        endpoint.ready().await.unwrap();
        r0.kill();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_balanced_too() {
    tokio::time::timeout(Duration::from_secs(10), async {
        let (r0, r1) = (replica("r0").await, replica("r1").await);
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http2_only(true);
        let connector = HyperConnector::from_builder(&builder, Some(Duration::from_secs(1)));
        let mut client: Client = Balancer::with_config(&config(), discovery(&[&r0, &r1]), connector)
            .unwrap()
            .into_shared();
        let mut served: HashMap<String, usize> = HashMap::new();
        for _ in 0..10 {
            let request = http::Request::get("/who").body(Empty::new()).unwrap();
            let response = client.ready().await.unwrap().call(request).await.unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            *served
                .entry(String::from_utf8(body.to_vec()).unwrap())
                .or_default() += 1;
        }
        assert_eq!(served.len(), 2, "{served:?}");
        r0.kill();
        r1.kill();
    })
    .await
    .unwrap();
}

/// A replica that answers every request with 503 (its name as the body),
/// as a replica shedding load or failing its dependencies does: fast.
async fn sick_replica(name: &'static str) -> Replica {
    let router = Router::new().route(
        "/who",
        get(move || async move { (StatusCode::SERVICE_UNAVAILABLE, name) }),
    );
    Replica::serve(name, router).await
}

/// A balancer over `replicas` with [`config`] and the default classifier,
/// once every replica is connected (so round robin's counts are exact).
async fn connected<D>(changes: D, replicas: usize) -> Balancer<D, HyperConnector<Empty<Bytes>>>
where
    D: futures_util::Stream<Item = orch_discovery::EndpointChange> + Unpin,
{
    let mut balancer = Balancer::with_config(&config(), changes, HyperConnector::new()).unwrap();
    while balancer.ready_len() < replicas {
        ServiceExt::<http::Request<Empty<Bytes>>>::ready(&mut balancer)
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    balancer
}

/// Sends `n` GETs of `uri` through `balancer`, one at a time; the status
/// each replica answered with, by replica, and the errors.
async fn tally<S>(balancer: &mut S, n: usize, uri: &str) -> (HashMap<String, Vec<u16>>, Vec<BalanceError>)
where
    S: Service<
            http::Request<Empty<Bytes>>,
            Response = http::Response<hyper::body::Incoming>,
            Error = BalanceError,
        >,
{
    let mut answers: HashMap<String, Vec<u16>> = HashMap::new();
    let mut errors = Vec::new();
    for _ in 0..n {
        let request = http::Request::get(uri).body(Empty::new()).unwrap();
        match balancer.ready().await.unwrap().call(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let name = String::from_utf8(body.to_vec()).unwrap();
                answers.entry(name).or_default().push(status);
            }
            Err(error) => errors.push(error),
        }
    }
    (answers, errors)
}

#[tokio::test]
async fn a_replica_answering_503_loses_its_share_without_a_classifier() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (r0, r1, sick) = (
            replica("r0").await,
            replica("r1").await,
            sick_replica("sick").await,
        );

        // Counting errors only, as the classifier did before: round robin
        // gives the sick replica its third, and nothing ejects it.
        let errors_only = failure_fn(|result: Result<&http::Response<_>, &_>| result.is_err());
        let mut balancer = connected(discovery(&[&r0, &r1, &sick]), 3)
            .await
            .classify_with(errors_only);
        let (answers, errors) = tally(&mut balancer, 60, "/who").await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(answers["sick"].len(), 20, "{answers:?}");
        assert_eq!(balancer.ejected_len(), 0);

        // The default classifier reads the hyper connector's responses:
        // the fifth 503 in a row ejects the replica (outlier detection),
        // so it answers five of the sixty, then none.
        let mut balancer = connected(discovery(&[&r0, &r1, &sick]), 3).await;
        let (answers, errors) = tally(&mut balancer, 60, "/who").await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(answers["sick"], [503; 5], "{answers:?}");
        assert_eq!(answers["r0"].len() + answers["r1"].len(), 55, "{answers:?}");
        assert_eq!(balancer.ejected_len(), 1);

        // The default algorithm (P2C over peak-EWMA) on top: failures are
        // load too, and the sick replica is out after at most five.
        let config = BalancerConfig::default().name("http-p2c").seed(7);
        let mut balancer =
            Balancer::with_config(&config, discovery(&[&r0, &r1, &sick]), HyperConnector::new()).unwrap();
        let (answers, errors) = tally(&mut balancer, 100, "/who").await;
        assert!(errors.is_empty(), "{errors:?}");
        let sick_answers = answers.get("sick").map_or(0, Vec::len);
        assert!(sick_answers <= 5, "{answers:?}");
        r0.kill();
        r1.kill();
        sick.kill();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_malformed_request_ejects_no_replica_and_says_it_is_not_retryable() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let (r0, r1, r2) = (replica("r0").await, replica("r1").await, replica("r2").await);

        // Were input errors the endpoint's failures, ten `https` requests
        // in a row to each replica would eject one of them.
        let counted = failure_fn(|result: Result<&http::Response<_>, &_>| result.is_err());
        let mut balancer = connected(discovery(&[&r0, &r1, &r2]), 3)
            .await
            .classify_with(counted);
        let (_, errors) = tally(&mut balancer, 30, "https://r0/who").await;
        assert_eq!(errors.len(), 30);
        tally(&mut balancer, 3, "/who").await;
        assert_eq!(balancer.ejected_len(), 1, "the contrast holds");

        // With the default classifier they count against nobody.
        let mut balancer = connected(discovery(&[&r0, &r1, &r2]), 3).await;
        let (answers, errors) = tally(&mut balancer, 30, "https://r0/who").await;
        assert!(answers.is_empty(), "never sent: {answers:?}");
        assert_eq!(errors.len(), 30);
        for error in &errors {
            assert!(error.is_invalid_input(), "{error}");
            assert!(!error.is_connect(), "{error}");
            // What a layer that cannot name `ConnectorError` sees: std's
            // `InvalidInput` in the source chain.
            let kind = std::error::Error::source(error)
                .and_then(|e| e.downcast_ref::<std::io::Error>())
                .map(std::io::Error::kind);
            assert_eq!(kind, Some(std::io::ErrorKind::InvalidInput), "{error}");
        }
        let (answers, errors) = tally(&mut balancer, 30, "/who").await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(balancer.ejected_len(), 0);
        assert_eq!(answers.len(), 3, "every replica still serves: {answers:?}");
        r0.kill();
        r1.kill();
        r2.kill();
    })
    .await
    .unwrap();
}
