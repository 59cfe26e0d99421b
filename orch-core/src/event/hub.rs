//! The event hub: one per supervisor tree, fed by every supervisor in it.
//!
//! Publishing updates the snapshot and sends on the broadcast channel under
//! one lock, and subscribing copies the snapshot and joins the channel under
//! the same lock: that is what makes "snapshot, then every later event"
//! exact, with no event both in the snapshot and in the stream and none in
//! neither.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::broadcast;

use super::{EventKind, InstanceId, InstanceInfo, InstanceState, LifecycleEvent};
use crate::supervisor::SupervisorHandle;

/// Default capacity of the broadcast channel; a subscriber that falls this
/// far behind is resynchronised from a fresh snapshot.
const DEFAULT_CAPACITY: usize = 4096;

pub(crate) struct EventHub {
    state: Mutex<HubState>,
    events: broadcast::Sender<LifecycleEvent>,
}

struct HubState {
    instances: BTreeMap<InstanceId, InstanceInfo>,
    supervisors: HashMap<Arc<str>, SupervisorHandle>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

impl EventHub {
    pub(crate) fn new() -> Arc<Self> {
        let (events, _) = broadcast::channel(DEFAULT_CAPACITY);
        Arc::new(Self {
            state: Mutex::new(HubState {
                instances: BTreeMap::new(),
                supervisors: HashMap::new(),
            }),
            events,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding this lock cannot leave the map half-updated
        // in a way that matters more than losing the whole tree's view, so
        // recover the guard instead of poisoning every later caller.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `event` to the snapshot and broadcasts it, atomically with
    /// respect to [`subscribe`](Self::subscribe).
    pub(crate) fn publish(&self, event: LifecycleEvent) {
        let mut state = self.lock();
        let address = match &event.kind {
            EventKind::Ready { address } => *address,
            EventKind::Starting => None,
            _ => state.instances.get(&event.id).and_then(|i| i.address),
        };
        let next = match &event.kind {
            EventKind::Starting => Some(InstanceState::Starting),
            EventKind::Ready { .. } => Some(InstanceState::Ready),
            EventKind::NotReady => Some(InstanceState::NotReady),
            EventKind::Restarting { .. } => Some(InstanceState::BackingOff),
            EventKind::Stopping => Some(InstanceState::Stopping),
            // An exit is followed by either Restarting or Stopped; keep the
            // entry (marked as backing off) until one of them says which.
            EventKind::Exited { .. } => Some(InstanceState::BackingOff),
            EventKind::Stopped { .. } => None,
        };
        match next {
            Some(s) => {
                state.instances.insert(
                    event.id.clone(),
                    InstanceInfo {
                        id: event.id.clone(),
                        child: event.child.clone(),
                        generation: event.generation,
                        state: s,
                        address,
                        since: event.at,
                    },
                );
            }
            None => {
                state.instances.remove(&event.id);
            }
        }
        // No receivers is fine: events are for whoever listens.
        let _ = self.events.send(event);
    }

    pub(crate) fn subscribe(self: &Arc<Self>) -> Subscription {
        let (snapshot, receiver) = self.resync();
        Subscription {
            snapshot,
            events: EventStream {
                receiver: Some(receiver),
                hub: Arc::downgrade(self),
            },
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<InstanceInfo> {
        self.lock().instances.values().cloned().collect()
    }

    fn resync(&self) -> (Vec<InstanceInfo>, broadcast::Receiver<LifecycleEvent>) {
        let state = self.lock();
        let receiver = self.events.subscribe();
        (state.instances.values().cloned().collect(), receiver)
    }

    pub(crate) fn register_supervisor(&self, path: Arc<str>, handle: SupervisorHandle) {
        self.lock().supervisors.insert(path, handle);
    }

    pub(crate) fn unregister_supervisor(&self, path: &str) {
        self.lock().supervisors.remove(path);
    }

    pub(crate) fn supervisor(&self, path: &str) -> Option<SupervisorHandle> {
        self.lock().supervisors.get(path).cloned()
    }
}

/// A consistent starting point plus everything that happens after it.
///
/// Apply `snapshot` first, then every [`Update`] from `events` in order: the
/// result is always the tree's current set of instances.
#[derive(Debug)]
pub struct Subscription {
    /// Every instance known when the subscription was taken.
    pub snapshot: Vec<InstanceInfo>,
    /// Every event published after the snapshot was taken.
    pub events: EventStream,
}

/// One item of an [`EventStream`].
#[derive(Debug, Clone)]
pub enum Update {
    /// The next event.
    Event(LifecycleEvent),
    /// The subscriber fell behind the channel's capacity and missed events:
    /// replace everything you derived from earlier updates with this fresh
    /// snapshot, then go on with the events that follow it.
    Resync(Vec<InstanceInfo>),
}

/// Lifecycle events of a supervisor tree, in publication order.
///
/// Nothing is lost silently: a subscriber that falls behind receives an
/// [`Update::Resync`] with a fresh snapshot instead of a gap. The stream ends
/// (`None`) once the whole tree has stopped and every event was read.
#[derive(Debug)]
pub struct EventStream {
    receiver: Option<broadcast::Receiver<LifecycleEvent>>,
    hub: Weak<EventHub>,
}

impl EventStream {
    /// Waits for the next update; `None` once the tree is gone.
    ///
    /// Cancel safe: dropping the future loses no event.
    pub async fn next(&mut self) -> Option<Update> {
        let receiver = self.receiver.as_mut()?;
        match receiver.recv().await {
            Ok(event) => Some(Update::Event(event)),
            Err(broadcast::error::RecvError::Closed) => {
                self.receiver = None;
                None
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                let Some(hub) = self.hub.upgrade() else {
                    self.receiver = None;
                    return None;
                };
                tracing::warn!(missed, "event subscriber lagged; resynchronising from a snapshot");
                let (snapshot, receiver) = hub.resync();
                self.receiver = Some(receiver);
                Some(Update::Resync(snapshot))
            }
        }
    }

    /// Turns this into a [`futures_util::Stream`].
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Update> + Send + Unpin {
        Box::pin(futures_util::stream::unfold(self, |mut s| async move {
            s.next().await.map(|u| (u, s))
        }))
    }
}
