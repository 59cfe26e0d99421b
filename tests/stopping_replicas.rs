//! A replica on its way out gets no new requests, over real loopback
//! servers: one scaled away keeps serving through its drain delay but the
//! balancer sends it nothing once it has seen the removal; one that
//! crashes is out of rotation until its restart is ready, and then serves
//! again.
//!
//! "New" is what the balancer picks after it has seen the change: requests
//! it picked before are already on their way, at most one per caller (each
//! caller has one request outstanding), and may still arrive. Real sockets
//! need real time: every wait is bounded ([`WAIT`]) and nothing asserts a
//! duration.

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
use orch::discovery::{
    balance::{Balancer, BalancerConfig, SharedBalancer},
    connect::HyperConnector,
};
use replicas::{Fleet, Running, WAIT};
use tokio::task::JoinHandle;
use tower::ServiceExt;

type Client = SharedBalancer<Request<Full<Bytes>>, Response<Incoming>>;

/// Callers in a closed loop, each with one request outstanding.
const CALLERS: usize = 4;

/// A balancer over `web`'s registry, once it has connected `ready` replicas.
async fn connected_client(web: &Running, ready: usize) -> Client {
    let config = BalancerConfig::default().name("web");
    let client: Client = Balancer::with_config(&config, web.registry.changes(), HyperConnector::new())
        .expect("a valid balancer config")
        .into_shared();
    wait_for_ready(&client, ready).await;
    client
}

/// Waits until the balancer itself (not only the registry) has `ready`
/// ready endpoints: from then on, its picks follow the change.
async fn wait_for_ready(client: &Client, ready: usize) {
    let seen = async {
        while client.load().snapshot().is_none_or(|s| s.ready != ready) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(WAIT, seen)
        .await
        .unwrap_or_else(|_| panic!("the balancer never had {ready} ready endpoints"));
}

/// [`CALLERS`] tasks sending `GET /work/..` until `stop`, counting what
/// they sent and what did not come back 200.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    callers: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(client: &Client) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let callers = (0..CALLERS)
            .map(|caller| {
                let (client, stop, sent, failed) = (
                    client.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&sent),
                    Arc::clone(&failed),
                );
                tokio::spawn(async move {
                    let mut n = 0;
                    // Bounded in count as well as by `stop`.
                    while !stop.load(Ordering::SeqCst) && n < 50_000 {
                        n += 1;
                        let request = Request::get(format!("/work/c{caller}-{n}"))
                            .body(Full::new(Bytes::new()))
                            .expect("a valid request");
                        let outcome = tokio::time::timeout(WAIT, client.clone().oneshot(request)).await;
                        sent.fetch_add(1, Ordering::SeqCst);
                        if !matches!(outcome, Ok(Ok(ref response)) if response.status() == StatusCode::OK) {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            sent,
            failed,
            callers,
        }
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    /// Waits until `more` requests beyond those sent so far went out.
    async fn send_more(&self, more: usize) {
        let target = self.sent() + more;
        let wait = async {
            while self.sent() < target {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("the load stalled at {} requests", self.sent()));
    }

    /// Stops the callers; returns (sent, failed).
    async fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        for caller in self.callers {
            caller.await.expect("a caller ends");
        }
        (
            self.sent.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_scaled_away_gets_no_new_request_while_it_drains() {
    let fleet = Fleet::default();
    // The replica scaled away keeps serving for 2 s after it leaves the
    // registry (Kubernetes' preStop), far longer than the 300 requests
    // below take: it could still answer, so only routing keeps them away.
    let child = fleet
        .http_child("web", 3)
        .drain_delay(Duration::from_secs(2))
        .shutdown_grace(Duration::from_secs(3));
    let web = Running::start(child, 3).await;
    fleet.set_delay(Duration::from_millis(2));
    let client = connected_client(&web, 3).await;
    let load = Load::start(&client);
    load.send_more(300).await;

    // A scale-down removes the newest instance.
    let leaving = fleet.replica("app/web-2");
    let served_before = leaving.hits();
    assert!(served_before > 0, "every replica served before the scale-down");
    web.handle
        .replica_group("web")
        .scale_to(2)
        .await
        .expect("the group scales to 2");
    web.wait_for_removal("app/web-2").await;
    wait_for_ready(&client, 2).await;
    let at_removal = leaving.hits();

    load.send_more(300).await;
    let after = leaving.hits();
    let (sent, failed) = load.stop().await;
    assert!(
        after - at_removal <= CALLERS,
        "{} requests reached the draining replica after the balancer saw it leave \
         (at most {CALLERS} were already on their way)",
        after - at_removal
    );
    assert_eq!(failed, 0, "of {sent} requests, across the scale-down");
    web.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replica_is_out_of_rotation_until_its_restart_is_ready() {
    let fleet = Fleet::default();
    let web = Running::start(fleet.http_child("web", 3), 3).await;
    fleet.set_delay(Duration::from_millis(2));
    let client = connected_client(&web, 3).await;
    let load = Load::start(&client);
    load.send_more(300).await;

    // Killed: it stops answering and fails liveness; the supervisor kills
    // it (cutting what it holds) and starts a new incarnation.
    let crashed = fleet.replica("app/web-1");
    assert_eq!(crashed.generation, 0);
    crashed.kill().await;
    web.wait_for_removal("app/web-1").await;
    let at_removal = crashed.hits();
    // Back: the restart is ready, in the registry and in the balancer.
    web.wait_for_endpoints(|n| n == 3).await;
    wait_for_ready(&client, 3).await;
    let restarted = fleet.replica("app/web-1");
    assert!(restarted.generation > crashed.generation, "a new incarnation");

    load.send_more(600).await;
    let (sent, failed) = load.stop().await;
    // Without a retry, what the kill cut fails: at most the requests the
    // callers had on the dying replica, one each.
    assert!(failed <= CALLERS, "{failed} of {sent} requests failed");
    assert!(
        crashed.hits() - at_removal <= CALLERS,
        "{} requests reached the crashed incarnation after it left the registry",
        crashed.hits() - at_removal
    );
    assert!(
        restarted.hits() > 0,
        "the restarted replica is back in rotation (of {sent} requests, none reached it)"
    );
    web.shutdown().await;
}
