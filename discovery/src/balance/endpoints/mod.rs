//! The endpoints a balancer knows, in four named parts:
//!
//! | part | file | holds |
//! |---|---|---|
//! | [`Slab`] | `slab.rs` | every known endpoint under a stable key, found by id, with its stage and epoch |
//! | [`ReadyIndex`] | `ready.rs` | the members (table order) and the ready slots a pick reads; pickers get a read-only [`ReadyView`] of it |
//! | [`Connections`] | `connecting.rs` | endpoints queued, connecting, not ready, or backing off |
//! | [`PassiveHealth`] | `passive_health.rs` | outlier detection, panic mode and slow start, applied to the other parts |
//!
//! [`EndpointSet`] owns the four and moves an endpoint between them as
//! discovery changes and as its service connects, becomes ready, breaks
//! or wakes the balancer (`EndpointWaker` in `wake.rs`). Each part keeps its own indexes
//! consistent; this file keeps the parts consistent with each other.

mod connecting;
mod passive_health;
mod ready;
mod slab;

use std::{
    sync::Arc,
    task::{Context, Poll, Waker},
};

use tokio::time::Instant;
use tower_service::Service;

use super::clock::Clock;
use super::config::BalancerConfig;
use super::error::BoxError;
use super::load::{EndpointLoad, LoadModel};
use super::metrics::BalancerMetrics;
use super::rng::Rng;
use super::wake::WakeFlag;
use crate::{ConfigError, Endpoint, EndpointChange};

pub(crate) use connecting::Connections;
pub(crate) use passive_health::{PassiveHealth, Ramp};
pub(crate) use ready::{ReadyIndex, ReadySlot, ReadyView};
pub(crate) use slab::{Entry, Slab, Stage};

/// At most this many discovery changes are applied per `poll_ready`, so a
/// stream that never stops yielding cannot starve requests.
pub(crate) const MAX_CHANGES_PER_POLL: usize = 1_024;

/// All endpoints of one balancer. See the module docs.
pub(crate) struct EndpointSet<S, F> {
    slab: Slab<S>,
    pub(crate) ready: ReadyIndex<S>,
    connections: Connections<F>,
    pub(crate) health: PassiveHealth,
    /// How new endpoint states measure load.
    model: LoadModel,
    pub(crate) clock: Clock,
    pub(crate) metrics: BalancerMetrics,
    /// Set when background work can progress; `poll_ready` looks at it.
    pub(crate) wake: Arc<WakeFlag>,
    /// Sets `wake`; background work is polled with it.
    pub(crate) waker: Waker,
}

impl<S, F> EndpointSet<S, F> {
    /// An empty set for a validated `config`.
    pub(crate) fn new(config: &BalancerConfig, clock: Clock) -> Result<Self, ConfigError> {
        let (wake, waker) = WakeFlag::new();
        let metrics = BalancerMetrics::new(Arc::clone(&config.name));
        metrics.endpoints(0, 0);
        metrics.ejected.set(0.0);
        metrics.panic.set(0.0);
        Ok(Self {
            slab: Slab::default(),
            ready: ReadyIndex::default(),
            connections: Connections::new(config.reconnect.clone()),
            health: PassiveHealth::new(&config.health, Instant::now(), waker.clone())?,
            model: LoadModel::for_algorithm(&config.algorithm, &clock),
            clock,
            metrics,
            wake,
            waker,
        })
    }

    /// Endpoints known, in any stage.
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether peak-EWMA needs send and completion times.
    #[inline]
    pub(crate) fn measures_latency(&self) -> bool {
        matches!(self.model, LoadModel::PeakEwma { .. })
    }

    /// Publishes the endpoint counts (ejected ones included) and re-decides
    /// panic mode. Runs at the end of every background pass (and when a
    /// repoll takes an endpoint out of the ready set), so membership and
    /// health changes set the gauges and panic mode once per pass, however
    /// many of them the pass applied.
    pub(crate) fn publish(&mut self) {
        self.metrics.endpoints(self.ready.len(), self.slab.len());
        self.metrics.ejected.set(self.health.ejected_count() as f64);
        self.refresh_panic();
    }

    // ===== discovery changes =====

    /// Applies one change from discovery. A Remove takes effect at once: the
    /// endpoint leaves every stage, so it is never picked again; requests in
    /// flight to it keep their own futures and complete.
    pub(crate) fn apply(&mut self, change: EndpointChange) {
        match change {
            EndpointChange::Insert(endpoint) | EndpointChange::Update(endpoint) => {
                match self.slab.key_of(endpoint.id()) {
                    Some(key) => self.update(key, endpoint),
                    None => self.insert(endpoint),
                }
            }
            EndpointChange::Remove(id) => {
                let Some(key) = self.slab.key_of(&id) else {
                    return;
                };
                self.leave_stage(key);
                if let Some(index) = self.slab.get(key).map(|e| e.member)
                    && let Some(moved) = self.ready.remove_member(index)
                    && let Some(entry) = self.slab.get_mut(moved)
                {
                    entry.member = index;
                }
                self.slab.remove(key);
                tracing::debug!(balancer = self.metrics.name(), endpoint = %id, "endpoint removed");
            }
        }
    }

    fn insert(&mut self, endpoint: Endpoint) {
        tracing::debug!(
            balancer = self.metrics.name(),
            endpoint = %endpoint.id(),
            address = %endpoint.address(),
            weight = endpoint.weight().get(),
            "endpoint inserted"
        );
        let (id, weight) = (endpoint.id().clone(), endpoint.weight());
        let table_weight = self.health.table_weight(weight, 1.0);
        let epoch = self.slab.new_epoch();
        let key = self.slab.insert(Entry {
            load: EndpointLoad::new(self.model, self.clock.clone()),
            member: 0,
            ramp: self.health.new_ramp(),
            picks: self.metrics.picks(&id),
            service: None,
            waker: None,
            stage: Stage::Queued,
            epoch,
            failures: 0,
            endpoint,
        });
        let member = self.ready.add_member(key, id, weight, table_weight);
        if let Some(entry) = self.slab.get_mut(key) {
            entry.member = member;
        }
        self.connections.queue(key, epoch);
        self.wake.set();
    }

    fn update(&mut self, key: u32, endpoint: Endpoint) {
        let Some(entry) = self.slab.get(key) else {
            return;
        };
        let (address, weight) = (entry.endpoint.address(), entry.endpoint.weight());
        if address != endpoint.address() {
            // Another place: the old connection is of no use, and neither is
            // what was learned about the old place's load.
            tracing::debug!(
                balancer = self.metrics.name(),
                endpoint = %endpoint.id(),
                from = %address,
                to = %endpoint.address(),
                "endpoint moved; reconnecting"
            );
            let epoch = self.leave_stage(key);
            let load = EndpointLoad::new(self.model, self.clock.clone());
            if let Some(entry) = self.slab.get_mut(key) {
                // Health is the endpoint's, by id: the new connection keeps
                // its ejection and its outlier counters.
                load.set_available(entry.load.is_available());
                load.attach_health_of(&entry.load);
                entry.load = load;
                entry.service = None;
                entry.failures = 0;
            }
            self.connections.queue(key, epoch);
            self.wake.set();
        }
        let Some(entry) = self.slab.get_mut(key) else {
            return;
        };
        entry.endpoint = endpoint;
        if entry.endpoint.weight() != weight {
            let member = entry.member;
            self.ready.set_weight(member, entry.endpoint.weight());
            self.apply_ramp(key, Instant::now());
        }
    }

    /// Takes the entry out of whatever stage it is in and queues it in a
    /// new epoch (work queued for it before becomes stale); that epoch.
    fn leave_stage(&mut self, key: u32) -> u64 {
        if let Some(entry) = self.slab.get(key) {
            let (member, epoch, stage) = (entry.member, entry.epoch, entry.stage);
            if stage == Stage::Ready
                && let Some(pos) = self.ready.member(member).map(|m| m.ready as usize)
            {
                drop(self.ready.remove(pos));
            }
            self.connections.forget(key, epoch, stage);
        }
        self.slab.restart(key, Stage::Queued)
    }

    // ===== in and out of the ready list =====

    /// Moves the entry's service into a new ready slot.
    fn push_ready(&mut self, key: u32) {
        let Some(entry) = self.slab.get_mut(key) else {
            return;
        };
        let (Some(service), Some(waker)) = (entry.service.take(), entry.waker.clone()) else {
            return;
        };
        entry.stage = Stage::Ready;
        entry.failures = 0;
        let (member, load, picks) = (entry.member, Arc::clone(&entry.load), entry.picks.clone());
        if entry.ramp == Ramp::Waiting {
            // Slow start counts from the first time it can take requests.
            let now = Instant::now();
            entry.ramp = Ramp::Since(now);
            self.health.next_step.get_or_insert(now + self.health.step);
            self.apply_ramp(key, now);
        }
        let Some(table_weight) = self.ready.member(member).map(|m| m.table_weight) else {
            return;
        };
        self.ready.push(ReadySlot {
            load,
            inv_weight: self.health.inv_weight(table_weight),
            member,
            picks,
            service,
            waker,
        });
    }

    /// Asks every ready endpoint whose service woke the balancer since the
    /// last pass again (see `EndpointWaker` in `wake.rs`).
    pub(crate) fn poll_rechecks<Req>(&mut self, rng: &mut Rng)
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        for (key, epoch) in self.wake.take_rechecks() {
            // Not ready: `poll_unready` asks it anyway. Another epoch: the
            // service that woke is gone.
            if self.slab.is_current(key, epoch, Stage::Ready)
                && let Some(pos) = self
                    .slab
                    .get(key)
                    .and_then(|e| self.ready.member(e.member))
                    .map(|m| m.ready as usize)
            {
                self.repoll::<Req>(pos, rng);
            }
        }
    }

    /// Asks the endpoint just called (at ready position `pos`) whether it
    /// can take another request: it stays ready, waits in the not-ready
    /// list, or is evicted.
    #[inline]
    pub(crate) fn repoll<Req>(&mut self, pos: usize, rng: &mut Rng)
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        let Some(slot) = self.ready.slot_mut(pos) else {
            return;
        };
        let result = slot.service.poll_ready(&mut Context::from_waker(&slot.waker));
        if let Poll::Ready(Ok(())) = result {
            return;
        }
        let slot = self.ready.remove(pos);
        let Some(key) = self.ready.member(slot.member).map(|m| m.key) else {
            return;
        };
        match result {
            Poll::Ready(Err(error)) => self.evict(key, error.into(), rng),
            _ => {
                if let Some(entry) = self.slab.get_mut(key) {
                    entry.service = Some(slot.service);
                    entry.stage = Stage::Unready;
                    self.connections.unready.push(key);
                }
            }
        }
        self.publish();
    }
}
