//! Scale-in under load over real loopback servers: the autoscaler reads
//! the shared balancer's requests in flight per ready replica, decides to
//! remove replicas, and the supervisor's drain path takes them out of the
//! balancer before they stop, so no request fails, even with no retry.
//!
//! Real sockets need real time: every wait is bounded ([`WAIT`]) and
//! nothing asserts a duration.

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
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use orch::core::Scaler;
use orch::core::autoscale::{Autoscaler, AutoscalerConfig, Behavior, Outcome, TargetTracking};
use orch::discovery::{
    balance::{Balancer, BalancerConfig, SharedBalancer},
    connect::HyperConnector,
};
use replicas::{Fleet, Running, WAIT};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

type Client = SharedBalancer<Request<Full<Bytes>>, Response<Incoming>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_removed_by_the_autoscaler_under_load_fail_no_request() {
    let fleet = Fleet::default();
    // A removed replica leaves the balancer, then keeps serving 100 ms
    // before its cancellation, then finishes what it has in flight.
    let child = fleet
        .http_child("web", 4)
        .drain_delay(Duration::from_millis(100))
        .shutdown_grace(Duration::from_secs(2));
    let web = Running::start(child, 4).await;
    fleet.set_delay(Duration::from_millis(5));
    let config = BalancerConfig::default().name("web");
    let client: Client = Balancer::with_config(&config, web.registry.changes(), HyperConnector::new())
        .expect("a valid balancer config")
        .into_shared();

    // The balancer has connected to every replica before the autoscaler
    // looks: a replica not yet connected would raise the load per ready
    // endpoint of the others.
    let connected = async {
        while client.load().snapshot().is_none_or(|s| s.ready < 4) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, connected)
        .await
        .expect("the balancer connects");

    // Four callers in a closed loop: about one request in flight per
    // replica of four, against a target of four per replica, asks for one.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let callers: Vec<_> = (0..4)
        .map(|caller| {
            let (client, stop, sent, failed) = (
                client.clone(),
                Arc::clone(&stop),
                Arc::clone(&sent),
                Arc::clone(&failed),
            );
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && n < 20_000 {
                    n += 1;
                    let request = Request::get(format!("/work/c{caller}-{n}"))
                        .body(Full::new(Bytes::new()))
                        .expect("a valid request");
                    let outcome = tokio::time::timeout(WAIT, client.clone().oneshot(request)).await;
                    sent.fetch_add(1, Ordering::SeqCst);
                    match outcome {
                        Ok(Ok(response)) if response.status() == StatusCode::OK => {}
                        other => {
                            eprintln!("caller {caller} request {n} failed: {other:?}");
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();

    let mut behavior = Behavior::default();
    behavior.scale_down.stabilization_window = Duration::ZERO;
    let config = AutoscalerConfig::default()
        .replicas(1, 4)
        .evaluation_period(Duration::from_millis(100))
        .behavior(behavior)
        .policy(TargetTracking::new("inflight", 4.0));
    let autoscaler = Autoscaler::builder(config)
        .name("web")
        .source("inflight", client.load())
        .scaler(web.handle.replica_group("web"))
        .build()
        .expect("a valid autoscaler");
    let mut decisions = autoscaler.handle().subscribe();
    let shutdown = CancellationToken::new();
    let autoscaling = tokio::spawn(autoscaler.run(shutdown.clone()));

    let scaled_in = async {
        loop {
            let decision = decisions.next().await.expect("the autoscaler runs");
            if let Outcome::Scaled { from: 4, to } = decision.outcome {
                break (to, decision);
            }
        }
    };
    let (to, decision) = tokio::time::timeout(WAIT, scaled_in)
        .await
        .expect("the autoscaler scales in");
    assert_eq!(to, 1, "{decision}");
    web.wait_for_endpoints(|n| n == 1).await;
    // Load goes on over the one replica left, then stops.
    let before = sent.load(Ordering::SeqCst);
    let more = async {
        while sent.load(Ordering::SeqCst) < before + 100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, more).await.expect("the load goes on");
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        caller.await.expect("a caller ends");
    }
    shutdown.cancel();
    autoscaling.await.expect("the autoscaler ends");

    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "of {} requests",
        sent.load(Ordering::SeqCst)
    );
    assert_eq!(
        web.handle
            .replica_group("web")
            .status()
            .await
            .map(|s| s.desired)
            .ok(),
        Some(1)
    );
    web.shutdown().await;
}
