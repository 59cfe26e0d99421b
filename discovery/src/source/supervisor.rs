//! The in-process source: a registry that follows the instances of one
//! child of an orch-core supervisor.
//!
//! This is the bridge of the orchestration loop: the supervisor says when an
//! instance is ready and where it listens, and when it leaves rotation; the
//! registry turns that into endpoint changes for the balancers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use orch_core::{
    EventKind, InstanceId, InstanceInfo, InstanceState, LifecycleEvent, SupervisorHandle, Update,
};
use tokio::task::JoinHandle;

use crate::{Endpoint, EndpointId, Registry};

/// A ready instance, as the endpoint mapping of a [`SupervisorSource`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ReadyInstance<'a> {
    /// The instance (`root/api-2`); also the endpoint's id.
    pub id: &'a InstanceId,
    /// The child spec it belongs to.
    pub child: &'a str,
    /// Its incarnation: 0 at first start, +1 per restart.
    pub generation: u64,
    /// The address it announced.
    pub address: SocketAddr,
}

type MapEndpoint = dyn Fn(&ReadyInstance<'_>, Endpoint) -> Endpoint + Send + Sync;

/// Keeps a [`Registry`] in step with the ready instances of one child (a
/// replica group, or a single child) of a supervisor.
///
/// Each instance is one endpoint whose id is the instance id (`root/api-2`)
/// and whose address is the one it announced with
/// [`ChildContext::announce`](orch_core::ChildContext::announce). Events
/// are applied as follows:
///
/// | event | registry |
/// |---|---|
/// | `Ready { address: Some(a) }` | upsert the endpoint at `a` |
/// | `Ready { address: None }` | nothing; a warning (the instance never announced where it listens) |
/// | `NotReady`, `Stopping`, `Exited`, `Stopped` | remove the endpoint |
/// | `Starting`, `Restarting` | nothing (the instance is not in the registry then) |
/// | `Resync(snapshot)` (the source lagged) | make the child's endpoints exactly the ready instances of the snapshot |
///
/// A crashed instance therefore leaves the registry at its `Exited`, before
/// any restart, and comes back (same id, its new address) at its next
/// `Ready`. For an instance to leave the balancers *before* it stops serving
/// on a scale-down or shutdown, give its child a
/// [`drain_delay`](orch_core::ChildPolicy::drain_delay): the supervisor
/// publishes `Stopping`, which this source turns into a removal, and only
/// cancels the instance after the delay.
///
/// Only instances of the child `child` directly under the supervisor of
/// the given handle are followed (use
/// [`SupervisorHandle::nested`] for a child of a nested supervisor).
///
/// The endpoint mapping ([`map_endpoint`](Self::map_endpoint)) runs on the
/// source's task and must not panic: a panic ends the source (see
/// [`SupervisorSourceGuard::is_finished`]) and leaves its endpoints as they were.
///
/// # Metrics
///
/// The counter `orch_registry_source_resyncs_total{registry, child}` counts
/// the times the source fell behind the supervisor's events and was
/// reconciled from a snapshot.
///
/// ```
/// use std::time::Duration;
/// use orch_core::{ChildSpec, Supervisor, SupervisorSpec};
/// use orch_discovery::{Registry, SupervisorSource};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let spec = SupervisorSpec::builder("app")
///     .child(
///         ChildSpec::task("api", |ctx| async move {
///             let port = 8080 + ctx.generation() as u16;
///             ctx.announce(([127, 0, 0, 1], port).into());
///             ctx.cancelled().await;
///             Ok::<_, std::io::Error>(())
///         })
///         .replicas(2)
///         .ready_on_announce()
///         .drain_delay(Duration::from_secs(1)),
///     )
///     .build()?;
/// let supervisor = Supervisor::start(spec)?;
/// let registry = Registry::new("api");
/// let _source = SupervisorSource::new("api").start(&supervisor, &registry).await?;
/// # tokio::time::sleep(Duration::from_millis(1)).await;
/// assert_eq!(registry.len(), 2); // once both instances announced
/// # supervisor.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SupervisorSource {
    child: Arc<str>,
    map: Option<Arc<MapEndpoint>>,
}

/// Why a [`SupervisorSource`] could not start; nothing was started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The supervisor has no child with that id.
    #[error("supervisor {supervisor} has no child {child:?}")]
    NoSuchChild {
        /// The supervisor's path.
        supervisor: String,
        /// The child id that was asked for.
        child: String,
    },
    /// The supervisor has stopped.
    #[error("supervisor {supervisor} has stopped")]
    SupervisorStopped {
        /// The supervisor's path.
        supervisor: String,
    },
    /// `start` was called outside a tokio runtime.
    #[error("SupervisorSource::start must be called from within a tokio runtime")]
    NoRuntime,
}

// ===== impl SupervisorSource =====

impl SupervisorSource {
    /// Follows the instances of the child `child`.
    pub fn new(child: impl Into<Arc<str>>) -> Self {
        Self {
            child: child.into(),
            map: None,
        }
    }

    /// Decorates each endpoint (weight, zone, version, labels, or another
    /// address) from the instance it stands for. The function receives the
    /// instance and the plain endpoint (its id and announced address) and
    /// returns the endpoint to register; the id always stays the instance's.
    ///
    /// ```
    /// use orch_discovery::SupervisorSource;
    ///
    /// let source = SupervisorSource::new("api").map_endpoint(|instance, endpoint| {
    ///     endpoint
    ///         .with_zone("local")
    ///         .with_label("generation", instance.generation.to_string())
    /// });
    /// # let _ = source;
    /// ```
    pub fn map_endpoint(
        mut self,
        map: impl Fn(&ReadyInstance<'_>, Endpoint) -> Endpoint + Send + Sync + 'static,
    ) -> Self {
        self.map = Some(Arc::new(map));
        self
    }

    /// Starts following `supervisor`'s child into `registry`.
    ///
    /// Before it returns, the registry already holds the child's instances
    /// that are ready now; from then on a task applies every lifecycle event
    /// in order. It runs until the returned guard is dropped, or until the
    /// supervisor tree is gone (its instances are then withdrawn).
    ///
    /// Refused if the supervisor has no such child or has stopped.
    pub async fn start(
        self,
        supervisor: &SupervisorHandle,
        registry: &Registry,
    ) -> Result<SupervisorSourceGuard, SourceError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SourceError::NoRuntime)?;
        // `children` fails only once the supervisor has stopped.
        let children = supervisor
            .children()
            .await
            .map_err(|_| SourceError::SupervisorStopped {
                supervisor: supervisor.path().to_owned(),
            })?;
        if !children.iter().any(|c| *c.id == *self.child) {
            return Err(SourceError::NoSuchChild {
                supervisor: supervisor.path().to_owned(),
                child: self.child.to_string(),
            });
        }

        let labels = [
            ("registry", registry.name().to_owned()),
            ("child", self.child.to_string()),
        ];
        let subscription = supervisor.subscribe();
        let mut bridge = Bridge {
            registry: registry.clone(),
            parent: supervisor.path().into(),
            child: self.child,
            map: self.map,
            owned: BTreeSet::new(),
            stopped: false,
            resyncs: metrics::counter!("orch_registry_source_resyncs_total", &labels),
        };
        bridge.reconcile(&subscription.snapshot);
        tracing::debug!(
            registry = %bridge.registry.name(),
            supervisor = %bridge.parent,
            child = %bridge.child,
            endpoints = bridge.owned.len(),
            "supervisor source started"
        );

        let bridge = Arc::new(Mutex::new(bridge));
        let mut events = subscription.events;
        let task = runtime.spawn({
            let bridge = bridge.clone();
            async move {
                while let Some(update) = events.next().await {
                    let mut bridge = lock(&bridge);
                    // The guard may have stopped the source while this task
                    // waited; it has withdrawn everything, so add nothing.
                    if bridge.stopped {
                        return;
                    }
                    match update {
                        Update::Event(event) => bridge.on_event(&event),
                        Update::Resync(snapshot) => {
                            bridge.resyncs.increment(1);
                            tracing::warn!(
                                registry = %bridge.registry.name(),
                                child = %bridge.child,
                                "supervisor source lagged behind the lifecycle events; reconciling from a snapshot"
                            );
                            bridge.reconcile(&snapshot);
                        }
                    }
                }
                // The tree is gone, and with it every instance it ran.
                let mut bridge = lock(&bridge);
                if !bridge.stopped {
                    tracing::debug!(child = %bridge.child, "supervisor tree stopped; supervisor source finished");
                    bridge.withdraw_all();
                }
            }
        });
        Ok(SupervisorSourceGuard { bridge, task })
    }
}

impl fmt::Debug for SupervisorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorSource")
            .field("child", &self.child)
            .field("map", &self.map.as_ref().map(|_| "Fn"))
            .finish()
    }
}

// ===== impl SupervisorSourceGuard =====

/// A running [`SupervisorSource`].
///
/// Dropping it stops the source and withdraws the endpoints it put in the
/// registry: a source that no longer follows its instances cannot vouch for
/// them. Keep it as long as the registry should follow the supervisor.
#[must_use = "dropping the guard stops the source and withdraws its endpoints"]
pub struct SupervisorSourceGuard {
    bridge: Arc<Mutex<Bridge>>,
    task: JoinHandle<()>,
}

impl SupervisorSourceGuard {
    /// The ids of the endpoints this source has in the registry now.
    pub fn endpoints(&self) -> Vec<EndpointId> {
        lock(&self.bridge).owned.iter().cloned().collect()
    }

    /// Whether the source has finished on its own: the supervisor tree is
    /// gone and its endpoints were withdrawn.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for SupervisorSourceGuard {
    fn drop(&mut self) {
        self.task.abort();
        // Under the bridge's lock, so that a task running on another thread
        // either applied its update before this or sees `stopped` and adds
        // nothing after it.
        let mut bridge = lock(&self.bridge);
        if !bridge.stopped {
            bridge.stopped = true;
            bridge.withdraw_all();
        }
    }
}

impl fmt::Debug for SupervisorSourceGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bridge = lock(&self.bridge);
        f.debug_struct("SupervisorSourceGuard")
            .field("child", &bridge.child)
            .field("endpoints", &bridge.owned.len())
            .field("finished", &self.task.is_finished())
            .finish()
    }
}

// ===== impl Bridge =====

/// The source's state, shared by its task and its guard.
struct Bridge {
    registry: Registry,
    /// Path of the supervisor whose child is followed.
    parent: Arc<str>,
    child: Arc<str>,
    map: Option<Arc<MapEndpoint>>,
    /// The endpoints this source put in the registry.
    owned: BTreeSet<EndpointId>,
    stopped: bool,
    resyncs: metrics::Counter,
}

fn lock(bridge: &Mutex<Bridge>) -> MutexGuard<'_, Bridge> {
    // Registry edits cannot panic half-way; a poisoned guard is consistent.
    bridge.lock().unwrap_or_else(|e| e.into_inner())
}

impl Bridge {
    fn follows(&self, id: &InstanceId, child: &str) -> bool {
        child == &*self.child && id.supervisor_path() == &*self.parent
    }

    fn on_event(&mut self, event: &LifecycleEvent) {
        if !self.follows(&event.id, &event.child) {
            return;
        }
        match &event.kind {
            EventKind::Ready {
                address: Some(address),
            } => {
                let endpoint = self.endpoint(&event.id, event.generation, *address);
                self.upsert(endpoint);
            }
            EventKind::Ready { address: None } => self.warn_no_address(&event.id),
            EventKind::NotReady
            | EventKind::Stopping
            | EventKind::Exited { .. }
            | EventKind::Stopped { .. } => {
                self.withdraw(&event.id);
            }
            EventKind::Starting | EventKind::Restarting { .. } => {}
        }
    }

    /// Makes this source's endpoints exactly the ready instances of `snapshot`.
    fn reconcile(&mut self, snapshot: &[InstanceInfo]) {
        let mut wanted = BTreeMap::new();
        for info in snapshot.iter().filter(|i| self.follows(&i.id, &i.child)) {
            if info.state != InstanceState::Ready {
                continue;
            }
            match info.address {
                Some(address) => {
                    let endpoint = self.endpoint(&info.id, info.generation, address);
                    wanted.insert(endpoint.id().clone(), endpoint);
                }
                None => self.warn_no_address(&info.id),
            }
        }
        let gone: Vec<EndpointId> = self
            .owned
            .iter()
            .filter(|id| !wanted.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.owned.remove(&id);
            self.registry.remove(&id);
        }
        for endpoint in wanted.into_values() {
            self.upsert(endpoint);
        }
    }

    fn endpoint(&self, id: &InstanceId, generation: u64, address: SocketAddr) -> Endpoint {
        let plain = Endpoint::new(id.as_str(), address);
        let Some(map) = &self.map else {
            return plain;
        };
        let instance = ReadyInstance {
            id,
            child: &self.child,
            generation,
            address,
        };
        let mapped = map(&instance, plain);
        if mapped.id().as_str() == id.as_str() {
            return mapped;
        }
        tracing::warn!(
            instance = %id,
            mapped = %mapped.id(),
            "the endpoint mapping changed the id; keeping the instance id"
        );
        mapped.with_id(id.as_str())
    }

    fn upsert(&mut self, endpoint: Endpoint) {
        tracing::debug!(
            registry = %self.registry.name(),
            instance = %endpoint.id(),
            address = %endpoint.address(),
            "instance ready; endpoint registered"
        );
        self.owned.insert(endpoint.id().clone());
        self.registry.upsert(endpoint);
    }

    fn withdraw(&mut self, id: &InstanceId) {
        let id = EndpointId::new(id.as_str());
        if self.owned.remove(&id) {
            tracing::debug!(registry = %self.registry.name(), instance = %id, "instance left rotation; endpoint removed");
            self.registry.remove(&id);
        }
    }

    fn withdraw_all(&mut self) {
        for id in std::mem::take(&mut self.owned) {
            self.registry.remove(&id);
        }
    }

    fn warn_no_address(&self, id: &InstanceId) {
        tracing::warn!(
            registry = %self.registry.name(),
            instance = %id,
            "instance is ready but announced no address; it gets no endpoint (announce with ChildContext::announce and use ready_on_announce)"
        );
    }
}
