//! The whole HTTP client path over real loopback servers, built from the
//! `orch` facade as a user builds it: axum replicas under a supervisor
//! (`ChildSpec::serve_http`, `HttpProbe` readiness and liveness) →
//! `SupervisorSource` → `Registry` → `Balancer` over the `HyperConnector`
//! → `SharedBalancer` → the resilience stack's HTTP preset → hyper requests.
//!
//! What reached the servers is counted at the servers ([`Fleet`]). Real
//! sockets need real time, so every wait is bounded ([`WAIT`]) and nothing
//! asserts a duration.

#[path = "support/replicas.rs"]
mod replicas;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use orch::core::{HttpProbe, SpecError};
use orch::discovery::{
    Endpoint, Registry,
    balance::{BalanceError, Balancer, BalancerConfig, HttpFailures, SharedBalancer},
    connect::{ConnectorError, HyperConnector},
};
use orch::resilience::{
    CircuitBreakerConfig, IDEMPOTENCY_KEY, ResilienceError, ResilienceLayer, RetryConfig,
    retry::BackoffConfig,
};
use replicas::{Fleet, Running, WAIT};
use tower::{Layer, Service, ServiceExt};

type Body = Full<Bytes>;
type Shared = SharedBalancer<Request<Body>, Response<Incoming>>;

/// The balancer a user builds over the registry: the hyper connector, HTTP
/// failures (5xx, 429) counted against their endpoint, shared by clones.
fn balancer(registry: &Registry, failfast: Duration) -> Shared {
    let config = BalancerConfig::default().name("web").failfast_timeout(failfast);
    Balancer::with_config(&config, registry.changes(), HyperConnector::new())
        .expect("a valid balancer config")
        .classify_with(HttpFailures)
        .into_shared()
}

/// Three attempts, 5 ms apart, with the default retry budget.
fn retry() -> RetryConfig {
    RetryConfig::default()
        .max_attempts(3)
        .backoff(BackoffConfig::constant(Duration::from_millis(5)))
}

/// The HTTP preset (overall and attempt timeouts, retry) over
/// [`balancer`]: the client most tests share.
fn client(
    registry: &Registry,
    failfast: Duration,
) -> impl Service<Request<Body>, Response = Response<Incoming>, Error = ResilienceError, Future: Send>
+ Clone
+ Send
+ 'static {
    let stack = ResilienceLayer::http()
        .overall_timeout(Duration::from_secs(5))
        .retry(retry())
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .expect("a valid stack");
    stack.layer(balancer(registry, failfast))
}

/// A request for `/work/{key}`; POSTs carry `Idempotency-Key: {key}` when
/// `keyed`.
fn request(method: Method, key: &str, keyed: bool) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(format!("/work/{key}"));
    if keyed {
        builder = builder.header(IDEMPOTENCY_KEY, key);
    }
    builder
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("a valid request")
}

/// Sends `request` through `client` (bounded); the status and the body
/// (the replica's id).
async fn send<S>(client: &S, request: Request<Body>) -> Result<(StatusCode, String), ResilienceError>
where
    S: Service<Request<Body>, Response = Response<Incoming>, Error = ResilienceError> + Clone,
{
    let call = async {
        let response = client.clone().oneshot(request).await?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(ResilienceError::from_inner)?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(WAIT, call).await.expect("the call ends")
}

#[tokio::test]
async fn a_get_answered_503_is_retried_and_a_post_only_with_an_idempotency_key() {
    let fleet = Fleet::default();
    let web = Running::start(fleet.http_child("web", 3), 3).await;
    let client = client(&web.registry, Duration::from_secs(3));

    fleet.fail_next("get", 1);
    let (status, _) = send(&client, request(Method::GET, "get", false)).await.unwrap();
    assert_eq!(status, StatusCode::OK, "retried after the 503");
    assert_eq!(fleet.attempts("get"), 2);

    fleet.fail_next("post", 1);
    let (status, _) = send(&client, request(Method::POST, "post", false)).await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "the 503 is the answer");
    assert_eq!(fleet.attempts("post"), 1, "a POST without a key is sent once");

    fleet.fail_next("keyed-post", 1);
    let (status, _) = send(&client, request(Method::POST, "keyed-post", true))
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK, "retried after the 503");
    assert_eq!(fleet.attempts("keyed-post"), 2);

    web.shutdown().await;
}

#[tokio::test]
async fn the_breaker_opens_on_5xx_and_then_rejects_without_a_network_call() {
    let fleet = Fleet::default();
    let web = Running::start(fleet.http_child("web", 3), 3).await;
    for replica in fleet.replicas() {
        replica.answer_with(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let stack = ResilienceLayer::http()
        .overall_timeout(Duration::from_secs(5))
        .retry(retry())
        .circuit_breaker(
            CircuitBreakerConfig::default()
                .name("web")
                .count_window(4)
                .minimum_calls(4)
                .failure_rate_threshold(0.5)
                .open_wait(Duration::from_secs(60)),
        )
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .expect("a valid stack");
    let client = stack.layer(balancer(&web.registry, Duration::from_secs(3)));

    // A 500 is a failure, not retryable: one attempt each.
    for _ in 0..4 {
        let (status, _) = send(&client, request(Method::GET, "broken", false))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    }
    assert_eq!(fleet.attempts("broken"), 4);

    for _ in 0..5 {
        let error = send(&client, request(Method::GET, "broken", false))
            .await
            .expect_err("the open breaker rejects");
        assert!(
            matches!(&error, ResilienceError::CircuitOpen { name, .. } if &**name == "web"),
            "the breaker's error: {error:?}"
        );
        assert!(error.is_local_rejection());
    }
    assert_eq!(fleet.attempts("broken"), 4, "rejected without a network call");

    web.shutdown().await;
}

#[tokio::test]
async fn a_replica_answering_503_loses_its_share_of_traffic() {
    let fleet = Fleet::default();
    let web = Running::start(fleet.http_child("web", 3), 3).await;
    let client = client(&web.registry, Duration::from_secs(3));

    // Warm-up: every replica serves.
    for i in 0..30 {
        let (status, _) = send(&client, request(Method::GET, &format!("warm-{i}"), false))
            .await
            .unwrap();
        assert_eq!(status, StatusCode::OK);
    }
    let bad = fleet.replicas().remove(0);
    bad.answer_with(StatusCode::SERVICE_UNAVAILABLE);
    let before = bad.hits();

    const REQUESTS: usize = 300;
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in (t..REQUESTS).step_by(4) {
                    let (status, served_by) =
                        send(&client, request(Method::GET, &format!("load-{i}"), false))
                            .await
                            .unwrap();
                    assert_eq!(status, StatusCode::OK, "request {i} (by {served_by})");
                }
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(WAIT, task)
            .await
            .expect("the load ends")
            .unwrap();
    }
    // With a fair share it would see a third of the requests (100); the
    // balancer's failure penalty and outlier ejection leave it a handful.
    let share = bad.hits() - before;
    assert!(
        share < REQUESTS / 10,
        "the failing replica still got {share} of {REQUESTS} requests"
    );

    web.shutdown().await;
}

#[tokio::test]
async fn killing_a_replica_under_load_loses_no_idempotent_request() {
    let fleet = Fleet::default();
    // A killed replica stops answering, and its requests in flight are cut
    // after 1 ms of grace.
    let child = fleet
        .http_child("web", 3)
        .shutdown_grace(Duration::from_millis(1));
    let web = Running::start(child, 3).await;
    fleet.set_delay(Duration::from_millis(2));
    let client = client(&web.registry, Duration::from_secs(3));

    let victim = fleet.replicas().remove(0);
    let killed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let after_kill = Arc::new(AtomicUsize::new(0));
    const TASKS: usize = 16;
    const MAX_PER_TASK: usize = 300;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (client, killed, done, after_kill) = (
                client.clone(),
                Arc::clone(&killed),
                Arc::clone(&done),
                Arc::clone(&after_kill),
            );
            tokio::spawn(async move {
                let mut since_kill = 0;
                // Until the kill took effect and ten more requests went out.
                for i in 0..MAX_PER_TASK {
                    if since_kill >= 10 {
                        break;
                    }
                    let key = format!("t{t}-{i}");
                    let method = if i % 2 == 0 { Method::GET } else { Method::POST };
                    let was_killed = killed.load(Ordering::SeqCst);
                    let outcome = send(&client, request(method.clone(), &key, true)).await;
                    match outcome {
                        Ok((StatusCode::OK, _)) => {}
                        other => panic!("{method} {key} lost: {other:?}"),
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    if was_killed {
                        since_kill += 1;
                        after_kill.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();

    // Kill a replica once the load is under way.
    let under_way = async {
        while done.load(Ordering::SeqCst) < 100 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(WAIT, under_way)
        .await
        .expect("the load runs");
    let served_before_kill = victim.hits();
    victim.kill().await;
    web.wait_for_removal(&victim.id).await;
    killed.store(true, Ordering::SeqCst);

    for task in tasks {
        tokio::time::timeout(WAIT, task)
            .await
            .expect("the load ends")
            .unwrap();
    }
    assert!(served_before_kill > 0, "the victim was serving");
    // Its requests in flight were cut with it, and answered by a retry.
    assert!(victim.unfinished() > 0, "the kill cut requests in flight");
    assert!(
        after_kill.load(Ordering::SeqCst) >= TASKS * 10,
        "every task went on after the kill"
    );

    web.shutdown().await;
}

#[tokio::test]
async fn after_an_outage_past_the_failfast_timeout_the_same_shared_client_recovers() {
    let fleet = Fleet::default();
    let web = Running::start(fleet.http_child("web", 2), 2).await;
    let client = client(&web.registry, Duration::from_millis(200));
    let clones: Vec<_> = (0..4).map(|_| client.clone()).collect();
    assert_eq!(
        send(&client, request(Method::GET, "before", false))
            .await
            .unwrap()
            .0,
        StatusCode::OK
    );

    // Every replica down, for longer than the fail-fast timeout.
    web.handle.terminate_child("web").await.expect("the child exists");
    web.wait_for_endpoints(|n| n == 0).await;
    for (i, client) in clones.iter().enumerate() {
        let error = send(client, request(Method::GET, &format!("outage-{i}"), false))
            .await
            .expect_err("no replica to answer");
        let balance = error
            .downcast_inner_ref::<BalanceError>()
            .unwrap_or_else(|| panic!("a balancer error: {error:?}"));
        assert!(balance.is_no_endpoints(), "{balance}");
    }
    assert_eq!(fleet.total_hits(), 1, "nothing reached a server");

    // One replica back: the same client and its clones succeed.
    web.handle.restart_child("web").await.expect("the child exists");
    web.wait_for_endpoints(|n| n >= 1).await;
    // The registry has it; the balancer connects it in the background.
    let first = async {
        loop {
            match send(&client, request(Method::GET, "back", false)).await {
                Ok((status, _)) => return status,
                Err(error) => {
                    let no_endpoints = error
                        .downcast_inner_ref::<BalanceError>()
                        .is_some_and(BalanceError::is_no_endpoints);
                    assert!(
                        no_endpoints,
                        "only no-endpoint errors while it connects: {error:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    };
    let status = tokio::time::timeout(WAIT, first)
        .await
        .expect("the client recovers");
    assert_eq!(status, StatusCode::OK);
    let tasks: Vec<_> = clones
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            tokio::spawn(async move {
                for j in 0..5 {
                    let key = format!("after-{i}-{j}");
                    assert_eq!(
                        send(&client, request(Method::GET, &key, false)).await.unwrap().0,
                        StatusCode::OK
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    web.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_a_typed_error_naming_the_field() {
    // A probe path without its leading '/'.
    match HttpProbe::get("ready") {
        Err(SpecError::InvalidField { field, .. }) => assert_eq!(field, "http.path"),
        other => panic!("expected an invalid http.path, got {other:?}"),
    }

    // Endpoint addresses that cannot be connected to.
    for address in ["0.0.0.0:8080", "127.0.0.1:0", "224.0.0.1:8080"] {
        let endpoint = Endpoint::new("bad", address.parse().unwrap());
        let error = HyperConnector::<Body>::new()
            .oneshot(endpoint)
            .await
            .expect_err("refused");
        assert!(matches!(error, ConnectorError::BadAddress { .. }), "{error}");
        assert_eq!(error.field_name(), Some("endpoint.address"), "{address}");
    }

    // An https request through the whole client: refused unsent.
    let fleet = Fleet::default();
    let web = Running::start(fleet.http_child("web", 1), 1).await;
    let client = client(&web.registry, Duration::from_secs(3));
    let https = Request::get("https://web/work/tls")
        .body(Full::default())
        .unwrap();
    let error = send(&client, https).await.expect_err("https is not supported");
    let connector = error
        .inner()
        .and_then(|e| e.downcast_ref::<BalanceError>())
        .and_then(BalanceError::inner_ref)
        .and_then(|e| e.downcast_ref::<ConnectorError>())
        .unwrap_or_else(|| panic!("a connector error: {error:?}"));
    assert!(
        matches!(connector, ConnectorError::UnsupportedScheme { scheme, .. } if scheme == "https"),
        "{connector}"
    );
    assert_eq!(connector.field_name(), Some("request.uri.scheme"));
    assert_eq!(fleet.attempts("tls"), 0, "never sent");

    web.shutdown().await;
}
