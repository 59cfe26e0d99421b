//! The client side: a registry that follows a key prefix of etcd.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::Client;
use super::value::{InvalidValue, endpoint_of, id_of_key};
use super::wire::{Event, EventKind, KeyValue};
use super::{EtcdConfig, EtcdError};
use crate::Registry;

/// Keeps a [`Registry`] equal to the endpoints stored under a key prefix
/// of etcd.
///
/// Each key `<prefix><id>` is one endpoint; its value is a
/// [`StaticEndpoint`](crate::StaticEndpoint) in JSON whose `id` is the
/// key's `<id>` part (what an [`EtcdRegistration`](super::EtcdRegistration)
/// writes). The source lists the prefix, makes the registry hold exactly
/// those endpoints, then watches the prefix from the revision it listed
/// and applies each put (an upsert) and delete (a removal) in order.
///
/// * **Invalid values** (not JSON, a field that does not validate, an `id`
///   that is not the key's) are skipped with a warning naming the key and
///   the field: the registry is never changed by them, so the key keeps the
///   endpoint it had, if any, and its next valid value applies.
/// * **etcd unreachable** (restarted, partitioned, compacted past the
///   watch): the source reconnects after a delay that doubles from
///   [`reconnect_initial`](EtcdConfig::reconnect_initial) up to
///   [`reconnect_max`](EtcdConfig::reconnect_max), trying the configured
///   endpoints in order (from the one that answered last), and lists the
///   prefix again, so the registry converges on etcd's content, changes
///   made meanwhile included. A watch that etcd cancels because it
///   compacted the revisions the watch needed is listed again at once.
///   Meanwhile the registry keeps its last known endpoints: an etcd outage
///   does not take every replica out of the balancers (like Kubernetes'
///   endpoints cache); a replica that died meanwhile is left to the
///   balancer's passive health until etcd is back.
///
/// The source owns the registry's content: give it a registry that no
/// other source writes to.
///
/// # Metrics
///
/// The counters `orch_etcd_source_relists_total{registry}` (a list after
/// the first: the watch broke or was compacted) and
/// `orch_etcd_source_invalid_values_total{registry}` (skipped values).
#[derive(Clone)]
pub struct EtcdSource {
    client: Client,
    prefix: Arc<str>,
    backoff: ExponentialBuilder,
}

/// A running [`EtcdSource`]; dropping it stops the source.
///
/// The registry then keeps the endpoints it holds (the last known state),
/// and nothing changes it any more.
#[must_use = "dropping the guard stops the source"]
pub struct EtcdSourceGuard {
    follower: Arc<Mutex<Follower>>,
    synced: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

// ===== impl EtcdSource =====

impl EtcdSource {
    /// A source of the config's prefix; refused if the config is invalid.
    pub fn new(config: &EtcdConfig) -> Result<Self, EtcdError> {
        let client = Client::new(config)?;
        Ok(Self {
            client,
            prefix: config.prefix.as_str().into(),
            backoff: reconnect_backoff(config),
        })
    }

    /// Starts following the prefix into `registry` on a task of the current
    /// runtime; returns at once. Await [`EtcdSourceGuard::synced`] for the
    /// first list to be applied.
    pub fn start(self, registry: &Registry) -> Result<EtcdSourceGuard, EtcdError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| EtcdError::NoRuntime)?;
        let labels = [("registry", registry.name().to_owned())];
        let follower = Arc::new(Mutex::new(Follower {
            registry: registry.clone(),
            prefix: self.prefix.clone(),
            stopped: false,
            invalid: metrics::counter!("orch_etcd_source_invalid_values_total", &labels),
        }));
        let (synced_tx, synced) = watch::channel(false);
        let relists = metrics::counter!("orch_etcd_source_relists_total", &labels);
        let task = runtime.spawn(follow(self, follower.clone(), synced_tx, relists));
        Ok(EtcdSourceGuard {
            follower,
            synced,
            task,
        })
    }
}

impl fmt::Debug for EtcdSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdSource")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The reconnect delays: doubling, capped, forever, without jitter (one
/// client's reconnects need no spreading; a fleet's are spread by when
/// each one noticed the outage).
pub(crate) fn reconnect_backoff(config: &EtcdConfig) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(config.reconnect_initial)
        .with_max_delay(config.reconnect_max)
        .with_factor(2.0)
        .without_max_times()
}

/// The next delay; the cap once the iterator is spent (it never is,
/// without a maximum number of attempts).
pub(crate) fn next_delay(delays: &mut ExponentialBackoff, builder: &ExponentialBuilder) -> Duration {
    delays
        .next()
        .unwrap_or_else(|| builder.build().last().unwrap_or(Duration::from_secs(1)))
}

// ===== impl EtcdSourceGuard =====

impl EtcdSourceGuard {
    /// Resolves once the first list of the prefix has been applied to the
    /// registry. Waits as long as etcd cannot be reached: bound it with
    /// `tokio::time::timeout` if startup must not wait for etcd.
    pub async fn synced(&self) {
        let mut synced = self.synced.clone();
        if synced.wait_for(|s| *s).await.is_err() {
            // The task is gone (it only ends when aborted): never synced.
            std::future::pending::<()>().await;
        }
    }

    /// Whether the first list has been applied.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }
}

impl Drop for EtcdSourceGuard {
    fn drop(&mut self) {
        self.task.abort();
        // Under the follower's lock: a task on another thread either
        // finished its edit before this, or sees `stopped` and makes none.
        lock(&self.follower).stopped = true;
    }
}

impl fmt::Debug for EtcdSourceGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdSourceGuard")
            .field("prefix", &lock(&self.follower).prefix)
            .field("synced", &self.is_synced())
            .finish()
    }
}

// ===== the task =====

/// Why a watch ended.
enum WatchEnd {
    /// etcd compacted the revisions the watch needed: list again now.
    Compacted(i64),
    /// The connection broke or etcd refused: list again after a delay.
    Failed(EtcdError),
    /// The guard was dropped.
    Stopped,
}

async fn follow(
    source: EtcdSource,
    follower: Arc<Mutex<Follower>>,
    synced: watch::Sender<bool>,
    relists: metrics::Counter,
) {
    let EtcdSource {
        client,
        prefix,
        backoff,
    } = source;
    let registry = lock(&follower).registry.name().to_owned();
    let mut delays = backoff.build();
    loop {
        let revision = match client.range_prefix(&prefix).await {
            Ok(range) => {
                if !lock(&follower).apply_list(range.kvs) {
                    return;
                }
                if synced.send_replace(true) {
                    relists.increment(1);
                }
                tracing::debug!(%registry, %prefix, revision = range.header.revision, "etcd prefix listed");
                delays = backoff.build();
                range.header.revision
            }
            Err(error) => {
                let delay = next_delay(&mut delays, &backoff);
                tracing::warn!(%registry, %prefix, %error, retry_in = ?delay, "cannot list etcd; keeping the last known endpoints");
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        match watch(&client, &prefix, revision + 1, &follower).await {
            WatchEnd::Stopped => return,
            WatchEnd::Compacted(compacted) => {
                tracing::warn!(%registry, %prefix, compacted, "etcd compacted past the watch; listing again");
            }
            WatchEnd::Failed(error) => {
                let delay = next_delay(&mut delays, &backoff);
                tracing::warn!(%registry, %prefix, %error, retry_in = ?delay, "etcd watch broke; keeping the last known endpoints");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn watch(client: &Client, prefix: &str, from: i64, follower: &Mutex<Follower>) -> WatchEnd {
    let mut stream = match client.watch_prefix(prefix, from).await {
        Ok(stream) => stream,
        Err(e) => return WatchEnd::Failed(e),
    };
    loop {
        let answer = match stream.next().await {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                return WatchEnd::Failed(EtcdError::Unavailable {
                    endpoint: stream.endpoint().to_owned(),
                    reason: "etcd closed the watch".to_owned(),
                });
            }
            Err(e) => return WatchEnd::Failed(e),
        };
        if answer.compact_revision > 0 {
            return WatchEnd::Compacted(answer.compact_revision);
        }
        if answer.canceled {
            return WatchEnd::Failed(EtcdError::Refused {
                endpoint: stream.endpoint().to_owned(),
                status: 200,
                message: format!("watch canceled: {}", answer.cancel_reason),
            });
        }
        if !answer.events.is_empty() && !lock(follower).apply_events(&answer.events) {
            return WatchEnd::Stopped;
        }
    }
}

// ===== impl Follower =====

/// What the task and the guard share: the registry and whether to stop.
struct Follower {
    registry: Registry,
    prefix: Arc<str>,
    stopped: bool,
    invalid: metrics::Counter,
}

fn lock(follower: &Mutex<Follower>) -> MutexGuard<'_, Follower> {
    // Registry edits cannot panic half-way; a poisoned guard is consistent.
    follower.lock().unwrap_or_else(|e| e.into_inner())
}

impl Follower {
    /// Makes the registry hold exactly the listed endpoints (an invalid
    /// value keeps its key's current endpoint). `false` if stopped.
    fn apply_list(&mut self, kvs: Vec<KeyValue>) -> bool {
        if self.stopped {
            return false;
        }
        let mut endpoints = Vec::with_capacity(kvs.len());
        for kv in kvs {
            match endpoint_of(&self.prefix, &kv.key, &kv.value) {
                Ok(endpoint) => endpoints.push(endpoint),
                Err(invalid) => {
                    self.warn_invalid(&kv.key, &invalid);
                    let kept = id_of_key(&self.prefix, &kv.key).and_then(|id| self.registry.get(&id));
                    endpoints.extend(kept);
                }
            }
        }
        // Ids are distinct keys' suffixes, so they are distinct.
        if let Err(error) = self.registry.replace_all(endpoints) {
            tracing::warn!(registry = %self.registry.name(), %error, "etcd listing not applied");
        }
        true
    }

    /// Applies a watch answer's events in order. `false` if stopped.
    fn apply_events(&mut self, events: &[Event]) -> bool {
        if self.stopped {
            return false;
        }
        for event in events {
            let kv = &event.kv;
            match event.kind {
                EventKind::Put => match endpoint_of(&self.prefix, &kv.key, &kv.value) {
                    Ok(endpoint) => {
                        self.registry.upsert(endpoint);
                    }
                    Err(invalid) => self.warn_invalid(&kv.key, &invalid),
                },
                EventKind::Delete => {
                    if let Some(id) = id_of_key(&self.prefix, &kv.key) {
                        self.registry.remove(&id);
                    }
                }
            }
        }
        true
    }

    fn warn_invalid(&self, key: &[u8], invalid: &InvalidValue) {
        self.invalid.increment(1);
        tracing::warn!(
            registry = %self.registry.name(),
            key = %String::from_utf8_lossy(key),
            field = %invalid.field,
            reason = %invalid.reason,
            "etcd value is not a valid endpoint; skipped (the key keeps the endpoint it had, if any)"
        );
    }
}
