//! The slab of endpoints: every endpoint the balancer knows, under a small
//! key that stays the same for as long as the endpoint does, found by id.
//!
//! Work queued for later (a connect, a reconnect after backoff, a wake-up
//! from a service) names an entry by key and *epoch*: a Remove, a new
//! address or a failure starts a new epoch, so stale work is recognised and
//! dropped instead of searched for.

use std::{collections::HashMap, sync::Arc, task::Waker};

use metrics::Counter;

use super::passive_health::Ramp;
use crate::balance::load::EndpointLoad;
use crate::{Endpoint, EndpointId};

/// One known endpoint.
pub(crate) struct Entry<S> {
    /// The endpoint as discovery last described it.
    pub(crate) endpoint: Endpoint,
    /// Load and health shared with requests in flight; the entry's strong
    /// reference is one of the long-lived ones (see [`EndpointLoad`]).
    pub(crate) load: Arc<EndpointLoad>,
    /// Its index in the member list, where its ready position also is.
    pub(crate) member: u32,
    pub(crate) ramp: Ramp,
    /// The `orch_balancer_picks_total` handle of this endpoint.
    pub(crate) picks: Counter,
    /// The connected service while it is not ready (a ready one lives in
    /// its ready slot).
    pub(crate) service: Option<S>,
    /// What the service is polled with, made when it connected (see
    /// `EndpointWaker` in `wake.rs`).
    pub(crate) waker: Option<Waker>,
    pub(crate) stage: Stage,
    pub(crate) epoch: u64,
    /// Consecutive failures (connect or `poll_ready`) since it was last ready.
    pub(crate) failures: u32,
}

/// Where an endpoint is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Waiting for the connector to be ready.
    Queued,
    /// The connector's future is running.
    Connecting,
    /// Connected; its `poll_ready` said `Pending`.
    Unready,
    /// Reserved by a `Ready` from `poll_ready`; its member says where in
    /// the ready list.
    Ready,
    /// Broken; waiting to be connected again.
    Backoff,
}

/// Every known endpoint by key, and the key of each id.
pub(crate) struct Slab<S> {
    entries: Vec<Option<Entry<S>>>,
    free: Vec<u32>,
    ids: HashMap<EndpointId, u32>,
    next_epoch: u64,
}

impl<S> Default for Slab<S> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            ids: HashMap::new(),
            next_epoch: 0,
        }
    }
}

impl<S> Slab<S> {
    /// Endpoints known.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// The key of the endpoint `id`.
    pub(crate) fn key_of(&self, id: &EndpointId) -> Option<u32> {
        self.ids.get(id).copied()
    }

    pub(crate) fn get(&self, key: u32) -> Option<&Entry<S>> {
        self.entries.get(key as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, key: u32) -> Option<&mut Entry<S>> {
        self.entries.get_mut(key as usize)?.as_mut()
    }

    /// Stores `entry`; its key.
    pub(crate) fn insert(&mut self, entry: Entry<S>) -> u32 {
        let id = entry.endpoint.id().clone();
        let key = match self.free.pop() {
            Some(key) => {
                self.entries[key as usize] = Some(entry);
                key
            }
            None => {
                self.entries.push(Some(entry));
                (self.entries.len() - 1) as u32
            }
        };
        self.ids.insert(id, key);
        key
    }

    /// Forgets the entry `key` (the caller took it out of every index).
    pub(crate) fn remove(&mut self, key: u32) {
        if let Some(entry) = self.entries.get_mut(key as usize).and_then(Option::take) {
            self.ids.remove(entry.endpoint.id());
            self.free.push(key);
        }
    }

    /// A fresh epoch number.
    pub(crate) fn new_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    /// Moves the entry to `stage` in a new epoch (work queued for it
    /// before becomes stale); the new epoch.
    pub(crate) fn restart(&mut self, key: u32, stage: Stage) -> u64 {
        let epoch = self.new_epoch();
        if let Some(entry) = self.get_mut(key) {
            entry.epoch = epoch;
            entry.stage = stage;
        }
        epoch
    }

    /// Whether work queued for `key` in `epoch` at `stage` still applies.
    pub(crate) fn is_current(&self, key: u32, epoch: u64, stage: Stage) -> bool {
        self.get(key)
            .is_some_and(|e| e.epoch == epoch && e.stage == stage)
    }
}
