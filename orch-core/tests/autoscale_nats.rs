//! `JetStreamPending` against a real NATS server with JetStream: what it
//! counts as messages are published, delivered and acknowledged; what it
//! says when the stream, the consumer or the server is not there; and an
//! autoscaler that follows it from zero and back.
//!
//! The server is `ORCH_TEST_NATS_URL` (`.ci/run` sets it and starts
//! nats-server; there, a server that does not answer fails the tests).
//! Where it is unset, each test that needs it prints that it was skipped
//! and passes. Every test makes a stream and a durable pull consumer of
//! its own (in memory, named after the test, the process and the clock)
//! and deletes them at the end, whether it passed or not.
//!
//! The server works in real time, so these tests do too; every wait is
//! bounded by a timeout and nothing asserts on durations.

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_nats::jetstream::{self, consumer::PullConsumer, consumer::pull, stream};
use futures_util::StreamExt;
use orch_core::{
    ScaleError, Scaler,
    autoscale::{
        Autoscaler, AutoscalerConfig, Behavior, Decision, DecisionSubscription, JetStreamPending,
        JetStreamPendingConfig, MetricSource, MetricState, QueueBacklog, Reading, ScalingRules, SelectPolicy,
    },
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
};
use tokio_util::sync::CancellationToken;

const URL_VAR: &str = "ORCH_TEST_NATS_URL";

/// The bound on any one wait for the server or the autoscaler.
const PATIENCE: Duration = Duration::from_secs(10);

fn nats_url(test: &str) -> Option<String> {
    let url = std::env::var(URL_VAR).ok().filter(|url| !url.is_empty());
    if url.is_none() {
        println!("{test}: skipped, {URL_VAR} is not set (CI sets it and starts nats-server)");
    }
    url
}

/// A stream of one test's own, its subject, and a durable pull consumer
/// on it.
struct Fixture {
    js: jetstream::Context,
    stream: String,
    subject: String,
    consumer: PullConsumer,
}

const CONSUMER: &str = "workers";

impl Fixture {
    async fn create(url: &str, test: &str) -> Self {
        let client = async_nats::connect(url).await.expect("the NATS server answers");
        let js = jetstream::new(client);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        let stream = format!("orch_test_{test}_{}_{nanos}", std::process::id());
        let subject = format!("{stream}.jobs");
        js.create_stream(stream::Config {
            name: stream.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("stream created");
        let consumer = js
            .create_consumer_on_stream(
                pull::Config {
                    durable_name: Some(CONSUMER.to_owned()),
                    // Far longer than any test: nothing is redelivered
                    // behind the test's back.
                    ack_wait: Duration::from_secs(300),
                    ..Default::default()
                },
                &stream,
            )
            .await
            .expect("consumer created");
        Self {
            js,
            stream,
            subject,
            consumer,
        }
    }

    /// Publishes `n` jobs, each stored before the next.
    async fn publish(&self, n: usize) {
        for i in 0..n {
            self.js
                .publish(self.subject.clone(), format!("job {i}").into())
                .await
                .expect("published")
                .await
                .expect("stored");
        }
    }

    /// Pulls exactly `n` messages, without acknowledging them.
    async fn fetch(&self, n: usize) -> Vec<jetstream::Message> {
        let mut taken = Vec::with_capacity(n);
        while taken.len() < n {
            let mut batch = self
                .consumer
                .fetch()
                .max_messages(n - taken.len())
                .expires(Duration::from_secs(1))
                .messages()
                .await
                .expect("fetch");
            while let Some(message) = batch.next().await {
                taken.push(message.expect("a message"));
            }
        }
        taken
    }

    /// Pulls `n` messages and acknowledges each, waiting for the server
    /// to confirm, so the next reading already sees them done.
    async fn consume(&self, n: usize) {
        for message in self.fetch(n).await {
            message.double_ack().await.expect("acknowledged");
        }
    }

    fn source(&self) -> JetStreamPendingConfig {
        JetStreamPendingConfig::new(&self.stream, CONSUMER)
    }

    async fn delete(&self) {
        if let Err(error) = self.js.delete_consumer_from_stream(CONSUMER, &self.stream).await {
            println!("consumer {CONSUMER} on {}: not deleted: {error}", self.stream);
        }
        if let Err(error) = self.js.delete_stream(&self.stream).await {
            println!("stream {}: not deleted: {error}", self.stream);
        }
    }
}

/// Runs `body` on a fresh fixture and deletes it afterwards, also when
/// `body` panics (the panic is then passed on).
async fn with_fixture<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Arc<Fixture>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(url) = nats_url(test) else { return };
    let fixture = Arc::new(Fixture::create(&url, test).await);
    let outcome = tokio::time::timeout(PATIENCE * 3, tokio::spawn(body(Arc::clone(&fixture)))).await;
    fixture.delete().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(failed)) => std::panic::resume_unwind(failed.into_panic()),
        Err(_) => panic!("{test}: did not finish within {:?}", PATIENCE * 3),
    }
}

async fn read(source: &JetStreamPending) -> Reading {
    tokio::time::timeout(PATIENCE, source.sample())
        .await
        .expect("a reading comes within its own timeout")
}

async fn value(source: &JetStreamPending) -> f64 {
    match read(source).await {
        Reading::Sample { value, .. } => value,
        Reading::Missing { reason } => panic!("expected a value, missing: {reason}"),
    }
}

async fn missing(source: &JetStreamPending) -> String {
    match read(source).await {
        Reading::Missing { reason } => {
            println!("missing: {reason}");
            reason
        }
        Reading::Sample { value, .. } => panic!("expected missing, read {value}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_messages_are_pending() {
    with_fixture("published", |f| async move {
        let source = f.source().build(f.js.clone()).expect("valid");
        assert_eq!(value(&source).await, 0.0);
        f.publish(7).await;
        assert_eq!(value(&source).await, 7.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_leave_the_count() {
    with_fixture("acked", |f| async move {
        let source = f.source().build(f.js.clone()).expect("valid");
        f.publish(10).await;
        f.consume(4).await;
        assert_eq!(value(&source).await, 6.0);
        f.consume(6).await;
        assert_eq!(value(&source).await, 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_hand_count_unless_ack_pending_is_excluded() {
    with_fixture("in_hand", |f| async move {
        let with_in_hand = f.source().build(f.js.clone()).expect("valid");
        let waiting_only = f
            .source()
            .include_ack_pending(false)
            .build(f.js.clone())
            .expect("valid");
        f.publish(10).await;
        let held = f.fetch(4).await;
        assert_eq!(value(&with_in_hand).await, 10.0);
        assert_eq!(value(&waiting_only).await, 6.0);
        for message in held {
            message.double_ack().await.expect("acknowledged");
        }
        assert_eq!(value(&with_in_hand).await, 6.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_or_consumer_that_does_not_exist_is_missing_by_name() {
    with_fixture("absent", |f| async move {
        let no_stream = format!("{}_absent", f.stream);
        let source = JetStreamPending::new(f.js.clone(), &no_stream, CONSUMER).expect("valid");
        let reason = missing(&source).await;
        assert!(reason.contains(&no_stream), "{reason}");
        assert!(reason.contains("stream"), "{reason}");

        let source = JetStreamPending::new(f.js.clone(), &f.stream, "ghost").expect("valid");
        let reason = missing(&source).await;
        assert!(reason.contains("\"ghost\""), "{reason}");
        assert!(reason.contains(&f.stream), "{reason}");

        // The consumer is still readable once it exists.
        let source = f.source().build(f.js.clone()).expect("valid");
        assert_eq!(value(&source).await, 0.0);
    })
    .await;
}

/// A loopback port that nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_not_there_is_missing_at_once() {
    let url = format!("nats://127.0.0.1:{}", closed_port());
    // A service that must start while NATS is down connects like this.
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(&url)
        .await
        .expect("a client that connects in the background");
    let source = JetStreamPending::new(jetstream::new(client), "JOBS", CONSUMER).expect("valid");
    let reason = missing(&source).await;
    assert!(reason.contains("not connected"), "{reason}");
}

/// Accepts one NATS connection, completes the handshake, then answers
/// nothing but PINGs: a server that is up and hung.
async fn hung_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let url = format!("nats://{}", listener.local_addr().expect("bound"));
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let info = r#"INFO {"server_id":"hung","version":"2.10.0","proto":1,"headers":true,"max_payload":1048576,"jetstream":true}"#;
        if socket.write_all(format!("{info}\r\n").as_bytes()).await.is_err() {
            return;
        }
        let mut lines = BufReader::new(socket);
        let mut line = String::new();
        while lines.read_line(&mut line).await.is_ok_and(|n| n > 0) {
            if line.starts_with("PING") && lines.get_mut().write_all(b"PONG\r\n").await.is_err() {
                return;
            }
            line.clear();
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_is_missing_after_the_timeout() {
    let client = async_nats::connect(hung_server().await)
        .await
        .expect("the handshake completes");
    let source = JetStreamPendingConfig::new("JOBS", CONSUMER)
        .timeout(Duration::from_millis(300))
        .build(jetstream::new(client))
        .expect("valid");
    let reason = missing(&source).await;
    assert!(reason.contains("no answer within 300ms"), "{reason}");
    assert!(reason.contains("\"JOBS\""), "{reason}");
}

/// A replica group that does what it is asked at once and remembers it.
#[derive(Debug, Default)]
struct Group {
    replicas: AtomicUsize,
    scaled: Mutex<Vec<usize>>,
}

impl Group {
    fn history(&self) -> Vec<usize> {
        self.scaled.lock().expect("not poisoned").clone()
    }
}

#[async_trait::async_trait]
impl Scaler for Group {
    async fn current(&self) -> Result<usize, ScaleError> {
        Ok(self.replicas.load(Ordering::Relaxed))
    }

    async fn scale_to(&self, replicas: usize) -> Result<(), ScaleError> {
        self.replicas.store(replicas, Ordering::Relaxed);
        self.scaled.lock().expect("not poisoned").push(replicas);
        Ok(())
    }
}

/// The first decision that `until` accepts, within [`PATIENCE`].
async fn decision(
    decisions: &mut DecisionSubscription,
    what: &str,
    until: impl Fn(&Decision) -> bool,
) -> Arc<Decision> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let decision = decisions.next().await.expect("the autoscaler runs");
            if until(&decision) {
                return decision;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no decision {what} within {PATIENCE:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autoscaler_follows_the_consumer_from_zero_and_back() {
    with_fixture("autoscaler", |f| async move {
        const JOBS: usize = 25;
        const PER_REPLICA: f64 = 10.0;
        let immediate = ScalingRules {
            stabilization_window: Duration::ZERO,
            cooldown: Duration::ZERO,
            select: SelectPolicy::Max,
            policies: Vec::new(),
        };
        let config = AutoscalerConfig::default()
            .replicas(0, 10)
            .evaluation_period(Duration::from_millis(50))
            .scale_to_zero_cooldown(Duration::from_millis(200))
            .behavior(Behavior {
                scale_up: immediate.clone(),
                scale_down: immediate,
            })
            .policy(QueueBacklog::new("jobs", PER_REPLICA));
        let group = Arc::new(Group::default());
        let autoscaler = Autoscaler::builder(config)
            .name("nats-workers")
            .source("jobs", f.source().build(f.js.clone()).expect("valid"))
            .scaler(Arc::clone(&group))
            .build()
            .expect("valid config");
        let mut decisions = autoscaler.handle().subscribe();
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(autoscaler.run(shutdown.clone()));

        let idle = decision(&mut decisions, "on an empty consumer", |_| true).await;
        assert_eq!(idle.steps.target, 0, "{idle}");
        assert_eq!(
            idle.inputs,
            [("jobs".to_owned(), MetricState::Fresh(0.0))],
            "{idle}"
        );
        assert!(group.history().is_empty());

        f.publish(JOBS).await;
        let wanted = (JOBS as f64 / PER_REPLICA).ceil() as usize;
        decision(&mut decisions, "up to the backlog", |d| d.steps.target == wanted).await;
        let up = group.history();
        // Evaluations may land while the jobs are still being published,
        // so the way up may have steps, but it only rises and stops there.
        assert!(up.windows(2).all(|w| w[0] < w[1]), "{up:?}");
        assert_eq!(up.last(), Some(&wanted), "{up:?}");

        f.consume(JOBS).await;
        decision(&mut decisions, "back to zero", |d| d.steps.target == 0).await;
        let history = group.history();
        println!("scaled: {history:?}");
        let down = &history[up.len() - 1..];
        assert!(down.windows(2).all(|w| w[0] > w[1]), "{history:?}");
        assert_eq!(down.last(), Some(&0), "{history:?}");

        shutdown.cancel();
        tokio::time::timeout(PATIENCE, running)
            .await
            .expect("the autoscaler stops on shutdown")
            .expect("the autoscaler did not panic");
    })
    .await;
}
