//! The whole gRPC client path over real loopback servers, built from the
//! `orch` facade as a user builds it: tonic replicas under a supervisor
//! (`ChildSpec::serve_grpc`, `GrpcHealthProbe` readiness and liveness) →
//! `SupervisorSource` → `Registry` → `Balancer` over the `TonicConnector`
//! → `SharedBalancer` → the resilience stack's gRPC preset → the generated
//! `PaymentsClient` of `examples/proto`.
//!
//! What reached the servers is counted at the servers ([`Fleet`]). Real
//! sockets need real time, so every wait is bounded ([`WAIT`]) and nothing
//! asserts a duration.

#[path = "support/replicas.rs"]
mod replicas;

use std::{
    error::Error as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use orch::discovery::{
    Endpoint, Registry,
    balance::{BalanceError, Balancer, BalancerConfig, HttpFailures},
    connect::{ConnectorError, TonicConnector},
};
use orch::resilience::{AlwaysSafe, ResilienceLayer, RetryConfig, retry::BackoffConfig};
use replicas::{
    Fleet, Running, WAIT,
    payments::{ChargeReply, ChargeRequest, payments_client::PaymentsClient},
};
use tonic::Code;
use tower::{Layer, ServiceExt};

/// Three attempts, 5 ms apart, with the default retry budget.
fn retry() -> RetryConfig {
    RetryConfig::default()
        .max_attempts(3)
        .backoff(BackoffConfig::constant(Duration::from_millis(5)))
}

/// The generated client over the whole path: the tonic connector, the
/// shared balancer (gRPC `UNAVAILABLE` counted against its endpoint), the
/// gRPC preset with every call safe to repeat (`AlwaysSafe`: the caller's
/// word that a `Charge` may run twice; here every attempt is counted).
fn payments_client(registry: &Registry, failfast: Duration) -> PaymentsClient<impl GrpcChannel> {
    let template =
        tonic::transport::Endpoint::from_static("http://payments").connect_timeout(Duration::from_secs(1));
    let connector = TonicConnector::new(template).expect("a plain http template");
    let config = BalancerConfig::default()
        .name("payments")
        .failfast_timeout(failfast);
    let balancer = Balancer::with_config(&config, registry.changes(), connector)
        .expect("a valid balancer config")
        .classify_with(HttpFailures)
        .into_shared();
    let stack = ResilienceLayer::grpc(AlwaysSafe)
        .overall_timeout(Duration::from_secs(5))
        .retry(retry())
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .expect("a valid stack");
    PaymentsClient::new(stack.layer(balancer))
}

/// What a generated client needs of its channel, and what the tests need
/// (clones sent to tasks).
trait GrpcChannel:
    tonic::client::GrpcService<
        tonic::body::Body,
        Error: Into<tonic::codegen::StdError>,
        ResponseBody: tonic::codegen::Body<
            Data = bytes::Bytes,
            Error: Into<tonic::codegen::StdError> + Send,
        > + Send
                          + 'static,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
}

impl<T> GrpcChannel for T where
    T: tonic::client::GrpcService<
            tonic::body::Body,
            Error: Into<tonic::codegen::StdError>,
            ResponseBody: tonic::codegen::Body<
                Data = bytes::Bytes,
                Error: Into<tonic::codegen::StdError> + Send,
            > + Send
                              + 'static,
            Future: Send,
        > + Clone
        + Send
        + 'static
{
}

fn charge(order: &str, amount_cents: u64) -> ChargeRequest {
    ChargeRequest {
        order_id: order.to_owned(),
        amount_cents,
    }
}

/// One `Charge` through `client` (bounded).
async fn call<T: GrpcChannel>(
    client: &PaymentsClient<T>,
    request: ChargeRequest,
) -> Result<ChargeReply, tonic::Status> {
    let mut client = client.clone();
    tokio::time::timeout(WAIT, client.charge(request))
        .await
        .expect("the call ends")
        .map(tonic::Response::into_inner)
}

/// The balancer's error somewhere in the status's chain of sources.
fn balance_error(status: &tonic::Status) -> Option<&BalanceError> {
    let mut source = status.source();
    while let Some(error) = source {
        if let Some(balance) = error.downcast_ref::<BalanceError>() {
            return Some(balance);
        }
        if let Some(own) = error.downcast_ref::<orch::resilience::ResilienceError>()
            && let Some(balance) = own.downcast_inner_ref::<BalanceError>()
        {
            return Some(balance);
        }
        source = error.source();
    }
    None
}

#[tokio::test]
async fn unavailable_is_retried_and_invalid_argument_is_not() {
    let fleet = Fleet::default();
    let payments = Running::start(fleet.grpc_child("payments", 3), 3).await;
    let client = payments_client(&payments.registry, Duration::from_secs(3));

    fleet.fail_next("order-1", 1);
    let reply = call(&client, charge("order-1", 100)).await.unwrap();
    assert_eq!(reply.charge_id, "charge-order-1", "retried after UNAVAILABLE");
    assert!(
        reply.served_by.starts_with("app/payments-"),
        "{}",
        reply.served_by
    );
    assert_eq!(fleet.attempts("order-1"), 2);

    let status = call(&client, charge("order-2", 0))
        .await
        .expect_err("a zero amount");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(fleet.attempts("order-2"), 1, "INVALID_ARGUMENT is not retried");

    // Once too often: the last UNAVAILABLE is the answer.
    fleet.fail_next("order-3", 5);
    let status = call(&client, charge("order-3", 100))
        .await
        .expect_err("always unavailable");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(fleet.attempts("order-3"), 3, "max_attempts");

    payments.shutdown().await;
}

#[tokio::test]
async fn killing_a_replica_under_load_loses_no_call() {
    let fleet = Fleet::default();
    // A killed replica stops answering, and its calls in flight are cut
    // after 1 ms of grace.
    let child = fleet
        .grpc_child("payments", 3)
        .shutdown_grace(Duration::from_millis(1));
    let payments = Running::start(child, 3).await;
    fleet.set_delay(Duration::from_millis(2));
    let client = payments_client(&payments.registry, Duration::from_secs(3));

    let victim = fleet.replicas().remove(0);
    let killed = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    const TASKS: usize = 16;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (client, killed, done) = (client.clone(), Arc::clone(&killed), Arc::clone(&done));
            tokio::spawn(async move {
                let mut since_kill = 0;
                for i in 0..300 {
                    if since_kill >= 10 {
                        break;
                    }
                    let order = format!("t{t}-{i}");
                    let was_killed = killed.load(Ordering::SeqCst);
                    if let Err(status) = call(&client, charge(&order, 100)).await {
                        panic!("{order} lost: {status:?}");
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    since_kill += usize::from(was_killed);
                }
                since_kill
            })
        })
        .collect();

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
    payments.wait_for_removal(&victim.id).await;
    killed.store(true, Ordering::SeqCst);

    for task in tasks {
        let since_kill = tokio::time::timeout(WAIT, task)
            .await
            .expect("the load ends")
            .unwrap();
        assert_eq!(since_kill, 10, "every task went on after the kill");
    }
    assert!(served_before_kill > 0, "the victim was serving");
    // Its calls in flight were cut with it, and answered by a retry.
    assert!(victim.unfinished() > 0, "the kill cut calls in flight");

    payments.shutdown().await;
}

#[tokio::test]
async fn after_an_outage_past_the_failfast_timeout_the_same_client_recovers() {
    let fleet = Fleet::default();
    let payments = Running::start(fleet.grpc_child("payments", 2), 2).await;
    let client = payments_client(&payments.registry, Duration::from_millis(200));
    let clones: Vec<_> = (0..4).map(|_| client.clone()).collect();
    call(&client, charge("before", 100)).await.unwrap();

    payments
        .handle
        .terminate_child("payments")
        .await
        .expect("the child exists");
    payments.wait_for_endpoints(|n| n == 0).await;
    for (i, client) in clones.iter().enumerate() {
        let status = call(client, charge(&format!("outage-{i}"), 100))
            .await
            .expect_err("no replica to answer");
        let balance = balance_error(&status).unwrap_or_else(|| panic!("a balancer error: {status:?}"));
        assert!(balance.is_no_endpoints(), "{balance}");
    }
    assert_eq!(fleet.total_hits(), 1, "nothing reached a server");

    payments
        .handle
        .restart_child("payments")
        .await
        .expect("the child exists");
    payments.wait_for_endpoints(|n| n >= 1).await;
    // The registry has it; the balancer connects it in the background.
    let first = async {
        loop {
            match call(&client, charge("back", 100)).await {
                Ok(reply) => return reply,
                Err(status) => {
                    let no_endpoints = balance_error(&status).is_some_and(BalanceError::is_no_endpoints);
                    assert!(
                        no_endpoints,
                        "only no-endpoint errors while it connects: {status:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    };
    tokio::time::timeout(WAIT, first)
        .await
        .expect("the client recovers");
    let tasks: Vec<_> = clones
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            tokio::spawn(async move {
                for j in 0..5 {
                    call(&client, charge(&format!("after-{i}-{j}"), 100))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    payments.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_a_typed_error_naming_the_field() {
    let https = tonic::transport::Endpoint::from_static("https://payments");
    let error = TonicConnector::new(https).expect_err("https is not supported");
    assert!(
        matches!(&error, ConnectorError::UnsupportedScheme { scheme, .. } if scheme == "https"),
        "{error}"
    );
    assert_eq!(error.field_name(), Some("template.uri.scheme"));

    for address in ["0.0.0.0:50051", "127.0.0.1:0", "255.255.255.255:50051"] {
        let endpoint = Endpoint::new("bad", address.parse().unwrap());
        let error = TonicConnector::default()
            .oneshot(endpoint)
            .await
            .expect_err("refused");
        assert!(matches!(error, ConnectorError::BadAddress { .. }), "{error}");
        assert_eq!(error.field_name(), Some("endpoint.address"), "{address}");
    }
}
