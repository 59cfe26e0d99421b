//! The registry's shared state: the endpoints, and one bounded queue of
//! pending changes per subscriber, all under one lock.
//!
//! Every change is applied to the map and queued for every subscriber under
//! the same lock that [`State::subscribe`] takes to copy the map and add a
//! queue: that is what makes "snapshot, then every later change" exact.
//!
//! A queue that is full is not extended and nothing is dropped silently:
//! the subscriber is marked as lagging, together with the set of endpoints
//! it had seen (rebuilt by undoing its queued changes, which carry the value
//! they replaced). When it next reads, it receives the difference between
//! that set and the current one, and then later changes as usual. Nothing
//! is copied per change for this; the one copy is made when a queue overflows.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::task::Waker;

use crate::{Endpoint, EndpointChange, EndpointId};

/// One change as queued for a subscriber: the change, plus the value it
/// replaced, so that a lagging subscriber's view can be rebuilt by undoing it.
#[derive(Debug, Clone)]
pub(crate) enum Queued {
    Insert(Endpoint),
    Update { new: Endpoint, old: Endpoint },
    Remove(Endpoint),
}

impl Queued {
    pub(crate) fn into_change(self) -> EndpointChange {
        match self {
            Self::Insert(e) => EndpointChange::Insert(e),
            Self::Update { new, .. } => EndpointChange::Update(new),
            Self::Remove(old) => EndpointChange::Remove(old.id().clone()),
        }
    }

    fn id(&self) -> &EndpointId {
        match self {
            Self::Insert(e) | Self::Update { new: e, .. } | Self::Remove(e) => e.id(),
        }
    }

    /// Takes this change back out of `view`, which must contain it.
    fn undo(self, view: &mut BTreeMap<EndpointId, Endpoint>) {
        match self {
            Self::Insert(e) => {
                view.remove(e.id());
            }
            Self::Update { old, .. } | Self::Remove(old) => {
                view.insert(old.id().clone(), old);
            }
        }
    }
}

/// One subscriber's side of the state.
#[derive(Debug, Default)]
struct Slot {
    queue: VecDeque<Queued>,
    /// Set when the queue overflowed: what the subscriber had seen then.
    /// While set, nothing is queued; the next read reconciles.
    lagged: Option<BTreeMap<EndpointId, Endpoint>>,
    waker: Option<Waker>,
}

/// What [`State::take_changes`] found for a subscriber.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Changes were moved into the subscriber's buffer.
    Some,
    /// Nothing pending and every writer is gone.
    Closed,
    /// Nothing pending; the waker is registered.
    Pending,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) endpoints: BTreeMap<EndpointId, Endpoint>,
    subscribers: HashMap<u64, Slot>,
    next_subscriber: u64,
    closed: bool,
}

impl State {
    pub(crate) fn new(endpoints: BTreeMap<EndpointId, Endpoint>) -> Self {
        Self {
            endpoints,
            ..Self::default()
        }
    }

    /// Queues `change` for every subscriber and applies it to the map.
    /// Returns the wakers to wake once the lock is released, and how many
    /// subscribers this change made lag.
    pub(crate) fn commit(&mut self, change: Queued, capacity: usize, wake: &mut Vec<Waker>) -> usize {
        let mut lagged = 0;
        for slot in self.subscribers.values_mut() {
            if slot.lagged.is_some() {
                continue;
            }
            if slot.queue.len() >= capacity {
                // The map does not contain `change` yet, so undoing the
                // queue from it gives exactly what the subscriber has seen.
                let mut view = self.endpoints.clone();
                for queued in slot.queue.drain(..).rev() {
                    queued.undo(&mut view);
                }
                slot.lagged = Some(view);
                lagged += 1;
            } else {
                slot.queue.push_back(change.clone());
            }
            if let Some(waker) = slot.waker.take() {
                wake.push(waker);
            }
        }
        match change {
            Queued::Insert(e) | Queued::Update { new: e, .. } => {
                self.endpoints.insert(e.id().clone(), e);
            }
            Queued::Remove(old) => {
                self.endpoints.remove(old.id());
            }
        }
        lagged
    }

    /// Adds a subscriber; the caller copies whatever it needs of the
    /// current map under the same lock.
    pub(crate) fn subscribe(&mut self) -> u64 {
        let id = self.next_subscriber;
        self.next_subscriber += 1;
        self.subscribers.insert(id, Slot::default());
        id
    }

    pub(crate) fn unsubscribe(&mut self, id: u64) {
        self.subscribers.remove(&id);
    }

    /// Moves subscriber `id`'s pending changes (or, if it lagged, the
    /// difference between what it had and the current map) into `out`,
    /// which must be empty.
    pub(crate) fn take_changes(&mut self, id: u64, out: &mut VecDeque<Queued>, waker: &Waker) -> Taken {
        debug_assert!(
            out.is_empty(),
            "the subscriber reads its buffer before taking more"
        );
        let Some(slot) = self.subscribers.get_mut(&id) else {
            return Taken::Closed;
        };
        match slot.lagged.take() {
            Some(had) => diff(&had, &self.endpoints, out),
            // Swapping keeps both buffers' allocations in use.
            None => std::mem::swap(out, &mut slot.queue),
        }
        if !out.is_empty() {
            Taken::Some
        } else if self.closed {
            Taken::Closed
        } else {
            if !slot.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                slot.waker = Some(waker.clone());
            }
            Taken::Pending
        }
    }

    /// Marks the state closed (every writer is gone) and returns the wakers
    /// of every subscriber, so they can see the end.
    pub(crate) fn close(&mut self) -> Vec<Waker> {
        self.closed = true;
        self.subscribers
            .values_mut()
            .filter_map(|s| s.waker.take())
            .collect()
    }

    pub(crate) fn subscribers(&self) -> usize {
        self.subscribers.len()
    }
}

/// The changes that turn `had` into `now`: removals first, then insertions
/// and updates, each in id order.
pub(crate) fn diff(
    had: &BTreeMap<EndpointId, Endpoint>,
    now: &BTreeMap<EndpointId, Endpoint>,
    out: &mut VecDeque<Queued>,
) {
    // Borrowed, so that only what changed is cloned (`replace_all` diffs the
    // live map under the registry's lock).
    out.extend(
        had.iter()
            .filter(|(id, _)| !now.contains_key(*id))
            .map(|(_, old)| Queued::Remove(old.clone())),
    );
    for (id, e) in now {
        match had.get(id) {
            None => out.push_back(Queued::Insert(e.clone())),
            Some(old) if old != e => out.push_back(Queued::Update {
                new: e.clone(),
                old: old.clone(),
            }),
            Some(_) => {}
        }
    }
    debug_assert!(
        out.iter().zip(out.iter().skip(1)).all(|(a, b)| a.id() != b.id()),
        "a diff names each id once"
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ep(id: &str, port: u16) -> Endpoint {
        Endpoint::new(id, ([127, 0, 0, 1], port).into())
    }

    fn map(eps: &[Endpoint]) -> BTreeMap<EndpointId, Endpoint> {
        eps.iter().map(|e| (e.id().clone(), e.clone())).collect()
    }

    fn changes(q: VecDeque<Queued>) -> Vec<EndpointChange> {
        q.into_iter().map(Queued::into_change).collect()
    }

    #[test]
    fn diff_removes_first_then_inserts_and_updates() {
        let had = map(&[ep("a", 1), ep("b", 2), ep("c", 3)]);
        let now = map(&[ep("a", 1), ep("b", 20), ep("d", 4)]);
        let mut out = VecDeque::new();
        diff(&had, &now, &mut out);
        assert_eq!(
            changes(out),
            [
                EndpointChange::Remove("c".into()),
                EndpointChange::Update(ep("b", 20)),
                EndpointChange::Insert(ep("d", 4)),
            ]
        );
    }

    #[test]
    fn an_overflowing_queue_remembers_what_its_subscriber_had() {
        let waker = Waker::noop();
        let mut state = State::default();
        let mut wake = Vec::new();
        state.commit(Queued::Insert(ep("a", 1)), 2, &mut wake);
        let sub = state.subscribe();
        // Queued: update a, insert b. The third change overflows.
        state.commit(
            Queued::Update {
                new: ep("a", 10),
                old: ep("a", 1),
            },
            2,
            &mut wake,
        );
        state.commit(Queued::Insert(ep("b", 2)), 2, &mut wake);
        assert_eq!(state.commit(Queued::Remove(ep("a", 10)), 2, &mut wake), 1);
        state.commit(Queued::Insert(ep("c", 3)), 2, &mut wake);

        let mut out = VecDeque::new();
        assert_eq!(state.take_changes(sub, &mut out, waker), Taken::Some);
        // It had {a:1}; now there is {b, c}.
        assert_eq!(
            changes(std::mem::take(&mut out)),
            [
                EndpointChange::Remove("a".into()),
                EndpointChange::Insert(ep("b", 2)),
                EndpointChange::Insert(ep("c", 3)),
            ]
        );
        // Back to queueing.
        state.commit(Queued::Remove(ep("c", 3)), 2, &mut wake);
        assert_eq!(state.take_changes(sub, &mut out, waker), Taken::Some);
        assert_eq!(changes(out), [EndpointChange::Remove("c".into())]);
    }
}
