//! The endpoint registry: the current set of endpoints of one service, and
//! a stream of its changes for every balancer that routes to it.
//!
//! Sources (a static list, the supervisor's lifecycle events, etcd) write
//! into a [`Registry`]; balancers read it through a [`ChangeStream`] (or the
//! tower adapter [`RegistryDiscover`](crate::RegistryDiscover)). The registry
//! sits between them so that neither knows the other, any number of
//! balancers can follow one service, and a balancer that joins late or
//! falls behind still converges on the exact current set.
//!
//! ```
//! use futures_util::StreamExt;
//! use orch_discovery::{Endpoint, EndpointChange, Registry};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let registry = Registry::new("api");
//! registry.upsert(Endpoint::new("api-1", "127.0.0.1:8081".parse().unwrap()));
//!
//! let mut changes = registry.changes();
//! registry.remove(&"api-1".into());
//! // First the current set, then what happened after.
//! assert!(matches!(changes.next().await, Some(EndpointChange::Insert(_))));
//! assert_eq!(changes.next().await, Some(EndpointChange::Remove("api-1".into())));
//! # }
//! ```

mod error;
mod state;
mod stream;
mod wait;

pub use error::RegistryError;
pub use stream::{ChangeStream, RegistrySubscription};

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use state::{Queued, State};

use crate::{Endpoint, EndpointId};

/// Default number of changes buffered per subscriber before it is treated
/// as lagging and reconciled from a difference.
///
/// Endpoint sets change rarely (deploys, scaling, crashes), so this is far
/// more than a healthy subscriber ever holds, while a stalled one costs at
/// most this many queued changes.
pub const DEFAULT_SUBSCRIBER_BUFFER: usize = 1024;

/// What an edit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The endpoint was new; subscribers saw an [`Insert`](crate::EndpointChange::Insert).
    Inserted,
    /// The endpoint replaced a different one with the same id; subscribers
    /// saw an [`Update`](crate::EndpointChange::Update).
    Updated,
    /// An identical endpoint was already present; subscribers saw nothing.
    Unchanged,
}

/// The current set of endpoints of one service, shared by its sources and
/// its balancers. Cheap to clone: every clone is a handle to the same set.
///
/// Every edit is atomic and is seen by every subscriber in the same order;
/// an edit that changes nothing (an upsert of an identical endpoint) is not
/// seen at all.
///
/// ```
/// use orch_discovery::{Applied, Endpoint, Registry, Weight};
///
/// let registry = Registry::new("api");
/// let e = Endpoint::new("api-1", "127.0.0.1:8081".parse().unwrap());
/// assert_eq!(registry.upsert(e.clone()), Applied::Inserted);
/// assert_eq!(registry.upsert(e.clone()), Applied::Unchanged);
/// assert_eq!(registry.upsert(e.with_weight(Weight::new(2).unwrap())), Applied::Updated);
/// assert_eq!(registry.len(), 1);
/// assert_eq!(registry.get(&"api-1".into()).map(|e| e.weight().get()), Some(2));
/// ```
///
/// # Metrics
///
/// The gauge `orch_registry_endpoints{registry}` holds the number of
/// endpoints and the counter `orch_registry_subscriber_lags_total{registry}`
/// counts subscribers that fell behind their buffer. Registries that share
/// a name share these series.
#[derive(Clone)]
pub struct Registry {
    writer: Arc<Writer>,
}

/// What every handle shares; its drop means no handle is left.
struct Writer {
    shared: Arc<Shared>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        let wake = self.shared.lock().close();
        for waker in wake {
            waker.wake();
        }
    }
}

/// What handles and streams share.
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    capacity: usize,
    state: Mutex<State>,
    endpoints: metrics::Gauge,
    lags: metrics::Counter,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing user-supplied runs under this lock, and every edit is
        // applied to the map and queued in one step, so a guard recovered
        // from a panic elsewhere still sees a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// ===== impl Registry =====

impl Registry {
    /// An empty registry named `name` (the name appears in errors, logs and
    /// metric labels), with the default subscriber buffer.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self::with_parts(name.into(), DEFAULT_SUBSCRIBER_BUFFER, BTreeMap::new())
    }

    /// A builder, for a buffer size or an initial set of endpoints.
    pub fn builder(name: impl Into<Arc<str>>) -> RegistryBuilder {
        RegistryBuilder {
            name: name.into(),
            subscriber_buffer: DEFAULT_SUBSCRIBER_BUFFER,
            endpoints: Vec::new(),
        }
    }

    /// A registry holding exactly `endpoints`: the static source.
    ///
    /// ```
    /// use orch_discovery::{Endpoint, Registry, RegistryError};
    ///
    /// let a = Endpoint::new("a", "127.0.0.1:8081".parse().unwrap());
    /// let b = Endpoint::new("b", "127.0.0.1:8082".parse().unwrap());
    /// assert_eq!(Registry::from_endpoints("api", [a.clone(), b]).unwrap().len(), 2);
    ///
    /// let err = Registry::from_endpoints("api", [a.clone(), a]).unwrap_err();
    /// assert!(matches!(err, RegistryError::DuplicateId { ref id, .. } if id.as_str() == "a"));
    /// ```
    pub fn from_endpoints(
        name: impl Into<Arc<str>>,
        endpoints: impl IntoIterator<Item = Endpoint>,
    ) -> Result<Self, RegistryError> {
        Self::builder(name).endpoints(endpoints).build()
    }

    fn with_parts(name: Arc<str>, capacity: usize, endpoints: BTreeMap<EndpointId, Endpoint>) -> Self {
        let gauge = metrics::gauge!("orch_registry_endpoints", "registry" => name.to_string());
        gauge.set(endpoints.len() as f64);
        let lags = metrics::counter!("orch_registry_subscriber_lags_total", "registry" => name.to_string());
        let state = State::new(endpoints);
        Self {
            writer: Arc::new(Writer {
                shared: Arc::new(Shared {
                    name,
                    capacity,
                    state: Mutex::new(state),
                    endpoints: gauge,
                    lags,
                }),
            }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.writer.shared
    }

    /// The registry's name.
    pub fn name(&self) -> &str {
        &self.shared().name
    }

    /// Adds a new endpoint; an error if its id is already present.
    pub fn insert(&self, endpoint: Endpoint) -> Result<(), RegistryError> {
        let state = self.shared().lock();
        if state.endpoints.contains_key(endpoint.id()) {
            return Err(RegistryError::AlreadyRegistered {
                registry: self.shared().name.clone(),
                id: endpoint.id().clone(),
            });
        }
        self.commit(state, [Queued::Insert(endpoint)]);
        Ok(())
    }

    /// Adds the endpoint, or replaces the one with the same id. Replacing
    /// an endpoint with an identical one changes nothing and notifies nobody.
    pub fn upsert(&self, endpoint: Endpoint) -> Applied {
        let state = self.shared().lock();
        match state.endpoints.get(endpoint.id()) {
            None => {
                self.commit(state, [Queued::Insert(endpoint)]);
                Applied::Inserted
            }
            Some(old) if *old == endpoint => Applied::Unchanged,
            Some(old) => {
                let old = old.clone();
                self.commit(state, [Queued::Update { new: endpoint, old }]);
                Applied::Updated
            }
        }
    }

    /// Replaces the endpoint with the same id; an error if there is none.
    /// Returns [`Applied::Unchanged`] (and notifies nobody) if it is identical.
    pub fn update(&self, endpoint: Endpoint) -> Result<Applied, RegistryError> {
        let state = self.shared().lock();
        match state.endpoints.get(endpoint.id()) {
            None => Err(RegistryError::UnknownEndpoint {
                registry: self.shared().name.clone(),
                id: endpoint.id().clone(),
            }),
            Some(old) if *old == endpoint => Ok(Applied::Unchanged),
            Some(old) => {
                let old = old.clone();
                self.commit(state, [Queued::Update { new: endpoint, old }]);
                Ok(Applied::Updated)
            }
        }
    }

    /// Removes the endpoint `id` and returns it; `None` (and no
    /// notification) if it was not present.
    pub fn remove(&self, id: &EndpointId) -> Option<Endpoint> {
        let state = self.shared().lock();
        let old = state.endpoints.get(id)?.clone();
        self.commit(state, [Queued::Remove(old.clone())]);
        Some(old)
    }

    /// Makes the registry hold exactly `endpoints`, atomically: subscribers
    /// see the removals, then the insertions and updates, and a snapshot
    /// never shows a mix of the old and the new set. Returns the number of
    /// changes made.
    ///
    /// Refused, with nothing changed, if `endpoints` names an id twice.
    pub fn replace_all(&self, endpoints: impl IntoIterator<Item = Endpoint>) -> Result<usize, RegistryError> {
        let wanted = collect_unique(&self.shared().name, endpoints)?;
        let state = self.shared().lock();
        let mut changes = VecDeque::new();
        state::diff(&state.endpoints, &wanted, &mut changes);
        let n = changes.len();
        self.commit(state, changes);
        Ok(n)
    }

    /// The endpoint `id`, if present.
    pub fn get(&self, id: &EndpointId) -> Option<Endpoint> {
        self.shared().lock().endpoints.get(id).cloned()
    }

    /// Whether the endpoint `id` is present.
    pub fn contains(&self, id: &EndpointId) -> bool {
        self.shared().lock().endpoints.contains_key(id)
    }

    /// Every endpoint, in id order.
    pub fn snapshot(&self) -> Vec<Endpoint> {
        self.shared().lock().endpoints.values().cloned().collect()
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.shared().lock().endpoints.len()
    }

    /// Whether there are no endpoints.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of live subscriptions and change streams.
    pub fn subscribers(&self) -> usize {
        self.shared().lock().subscribers()
    }

    /// The current set plus a stream of every later change, with no gap and
    /// no overlap between them.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use orch_discovery::{Endpoint, EndpointChange, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = Registry::new("api");
    /// let a = Endpoint::new("a", "127.0.0.1:8081".parse().unwrap());
    /// registry.upsert(a.clone());
    /// let mut sub = registry.subscribe();
    /// assert_eq!(sub.snapshot, [a]);
    /// registry.remove(&"a".into());
    /// assert_eq!(sub.changes.next().await, Some(EndpointChange::Remove("a".into())));
    /// # }
    /// ```
    pub fn subscribe(&self) -> RegistrySubscription {
        let mut state = self.shared().lock();
        let id = state.subscribe();
        let snapshot = state.endpoints.values().cloned().collect();
        drop(state);
        RegistrySubscription {
            snapshot,
            changes: ChangeStream::new(self.shared().clone(), id, VecDeque::new()),
        }
    }

    /// A self-contained stream of the registry's set: an
    /// [`Insert`](crate::EndpointChange::Insert) for every current endpoint,
    /// then every later change. This is what balancers consume; see
    /// [`ChangeStream`] for lag and end.
    pub fn changes(&self) -> ChangeStream {
        let mut state = self.shared().lock();
        let id = state.subscribe();
        let current = state.endpoints.values().cloned().map(Queued::Insert).collect();
        drop(state);
        ChangeStream::new(self.shared().clone(), id, current)
    }

    /// Waits until the registry's endpoints satisfy `predicate`, and
    /// resolves to that set (every endpoint, in id order).
    ///
    /// The predicate is asked about the current set at once, then again
    /// after each edit (an edit that changes nothing is not seen; a
    /// [`replace_all`](Self::replace_all) is seen whole, never half
    /// applied). It follows a [`subscribe`](Self::subscribe)ption, so it
    /// sleeps until a change arrives: no polling, no timer. A waiter that
    /// falls behind the subscriber buffer catches up from the difference
    /// (see [`ChangeStream`]): it may skip intermediate sets, never the
    /// current one.
    ///
    /// The future is `'static` (it holds a handle to the registry) and
    /// `Send` when `predicate` is. While it waits the registry's change
    /// streams do not end. It waits as long as the predicate stays false;
    /// bound it with `tokio::time::timeout`. Dropping it unsubscribes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use orch_discovery::{Endpoint, Registry};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = Registry::new("api");
    /// let source = registry.clone();
    /// tokio::spawn(async move {
    ///     for i in 1..=3 {
    ///         let address = format!("127.0.0.1:808{i}").parse().unwrap();
    ///         source.upsert(Endpoint::new(format!("api-{i}"), address));
    ///     }
    /// });
    /// let ready = tokio::time::timeout(
    ///     Duration::from_secs(5),
    ///     registry.wait_until(|endpoints: &[Endpoint]| endpoints.len() >= 3),
    /// )
    /// .await
    /// .expect("three replicas within 5 s");
    /// assert_eq!(ready[0].id().as_str(), "api-1");
    /// # }
    /// ```
    pub fn wait_until<P>(&self, predicate: P) -> impl Future<Output = Vec<Endpoint>> + use<P>
    where
        P: FnMut(&[Endpoint]) -> bool,
    {
        wait::wait_until(self.clone(), predicate)
    }

    /// Applies `changes` to the locked state, notifies subscribers once the
    /// lock is released, and records metrics and traces.
    fn commit(&self, mut state: MutexGuard<'_, State>, changes: impl IntoIterator<Item = Queued>) {
        let shared = self.shared();
        let mut wake = Vec::new();
        let mut lagged = 0;
        for change in changes {
            trace_change(&shared.name, &change);
            lagged += state.commit(change, shared.capacity, &mut wake);
        }
        shared.endpoints.set(state.endpoints.len() as f64);
        drop(state);
        if lagged > 0 {
            shared.lags.increment(lagged as u64);
            tracing::warn!(
                registry = %shared.name,
                subscribers = lagged,
                buffer = shared.capacity,
                "subscribers fell behind; each will receive the difference at its next read"
            );
        }
        // Woken after unlocking, so a woken subscriber on another thread
        // does not immediately contend for the lock we hold.
        for waker in wake {
            waker.wake();
        }
    }
}

fn trace_change(registry: &str, change: &Queued) {
    match change {
        Queued::Insert(e) => tracing::debug!(
            registry,
            endpoint = %e.id(),
            address = %e.address(),
            weight = e.weight().get(),
            "endpoint inserted"
        ),
        Queued::Update { new, old } => tracing::debug!(
            registry,
            endpoint = %new.id(),
            address = %new.address(),
            old_address = %old.address(),
            weight = new.weight().get(),
            "endpoint updated"
        ),
        Queued::Remove(old) => tracing::debug!(
            registry,
            endpoint = %old.id(),
            address = %old.address(),
            "endpoint removed"
        ),
    }
}

/// Collects endpoints by id, refusing a repeated id.
fn collect_unique(
    registry: &Arc<str>,
    endpoints: impl IntoIterator<Item = Endpoint>,
) -> Result<BTreeMap<EndpointId, Endpoint>, RegistryError> {
    let mut map = BTreeMap::new();
    for e in endpoints {
        let id = e.id().clone();
        if map.insert(id.clone(), e).is_some() {
            return Err(RegistryError::DuplicateId {
                registry: registry.clone(),
                id,
            });
        }
    }
    Ok(map)
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared().lock();
        f.debug_struct("Registry")
            .field("name", &self.shared().name)
            .field("endpoints", &state.endpoints.len())
            .field("subscribers", &state.subscribers())
            .finish()
    }
}

// ===== impl RegistryBuilder =====

/// Builds a [`Registry`] with a subscriber buffer or an initial set;
/// [`build`](Self::build) validates both.
///
/// ```
/// use orch_discovery::{Endpoint, Registry};
///
/// let registry = Registry::builder("api")
///     .subscriber_buffer(64)
///     .endpoint(Endpoint::new("api-1", "127.0.0.1:8081".parse().unwrap()))
///     .build()
///     .unwrap();
/// assert_eq!(registry.len(), 1);
/// assert!(Registry::builder("api").subscriber_buffer(0).build().is_err());
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RegistryBuilder {
    name: Arc<str>,
    subscriber_buffer: usize,
    endpoints: Vec<Endpoint>,
}

impl RegistryBuilder {
    /// How many changes wait for one subscriber before it counts as lagging
    /// and is reconciled from a difference instead (see [`ChangeStream`]).
    /// At least 1; default [`DEFAULT_SUBSCRIBER_BUFFER`].
    pub fn subscriber_buffer(mut self, changes: usize) -> Self {
        self.subscriber_buffer = changes;
        self
    }

    /// Adds one endpoint to the initial set.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Adds endpoints to the initial set.
    pub fn endpoints(mut self, endpoints: impl IntoIterator<Item = Endpoint>) -> Self {
        self.endpoints.extend(endpoints);
        self
    }

    /// The registry, or an error naming the buffer size of zero or the
    /// first repeated endpoint id.
    pub fn build(self) -> Result<Registry, RegistryError> {
        if self.subscriber_buffer == 0 {
            return Err(RegistryError::field("subscriber_buffer", "must be at least 1"));
        }
        let endpoints = collect_unique(&self.name, self.endpoints)?;
        Ok(Registry::with_parts(self.name, self.subscriber_buffer, endpoints))
    }
}
