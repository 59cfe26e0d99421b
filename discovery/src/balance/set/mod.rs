//! The endpoints a balancer knows, each in one stage of its life:
//! queued for the connector, connecting, not ready, ready, or backing off
//! after a failure; and, across stages, their membership (what table
//! pickers and the outlier detector number) and health (in `health.rs`).
//!
//! Entries live in a slab indexed by a small key; the ready set is a dense
//! list of [`ReadySlot`]s holding everything a request touches, so a pick is
//! two random positions and two slot reads, the same for 16 endpoints as for
//! 1,000, and a request never reads the slab. Moving an endpoint between
//! stages is a swap-remove and a push. Work queued for later (a connect, a reconnect
//! after backoff) carries the entry's *epoch*: a Remove or a new address
//! starts a new epoch, so stale work is recognised and dropped instead of
//! searched for.
//!
//! Every known endpoint is also a [`Member`]: a dense list in which table
//! pickers (round robin, Maglev) and the outlier detector number the
//! endpoints, whatever their stage. Tables are built over members and
//! rebuilt only when membership or a weight changes; a member's `ready`
//! position says whether it can be picked now.

mod health;
mod members;
mod recheck;

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use metrics::Counter;
use tokio::time::Instant;
use tower_service::Service;

use super::Timer;
use super::clock::Clock;
use super::config::{BalancerConfig, ReconnectBackoff};
use super::error::BoxError;
use super::health::Health;
use super::metrics::BalancerMetrics;
use super::rng::Rng;
use super::state::{EndpointState, LoadModel};
use super::strategy::ReadySlots;
use super::wake::WakeFlag;
use crate::{ConfigError, Endpoint, EndpointChange, EndpointId, Weight};

use members::Ramp;
pub(crate) use members::{Member, Members, NOT_READY};
use recheck::Rechecks;

/// A ready endpoint: everything a request touches (its load state, weight,
/// pick counter and the service itself), so a request never reads the
/// entry behind it. While an endpoint is ready its slot owns the service.
pub(crate) struct ReadySlot<S> {
    /// The endpoint's load and health. While the slot exists this is the
    /// second long-lived strong reference (see [`EndpointState`]).
    pub(crate) state: Arc<EndpointState>,
    /// `1 / weight`, with the weight ramped by slow start.
    pub(crate) inv_weight: f64,
    /// The entry's key.
    pub(crate) key: u32,
    /// The `orch_balancer_picks_total` handle of this endpoint.
    pub(crate) picks: Counter,
    /// The service, reserved by a `Ready` from its `poll_ready`.
    pub(crate) service: S,
    /// What the service is polled with (see `recheck.rs`).
    waker: Waker,
}

impl<S> ReadySlot<S> {
    /// Requests in flight to this endpoint: strong references beyond the
    /// entry's and this slot's.
    #[inline]
    pub(crate) fn in_flight(&self) -> usize {
        Arc::strong_count(&self.state) - 2
    }
}

/// One known endpoint.
pub(crate) struct Entry<S> {
    /// The endpoint as discovery last described it.
    pub(crate) endpoint: Endpoint,
    /// Load and health shared with requests in flight; the entry's strong
    /// reference is one of the long-lived ones (see [`EndpointState`]).
    pub(crate) state: Arc<EndpointState>,
    /// Its index in the member list.
    member: u32,
    /// Ejected by the outlier detector (mirrored into `state`).
    ejected: bool,
    ramp: Ramp,
    /// The weight tables pick with: its weight ramped by slow start.
    table_weight: Weight,
    /// The `orch_balancer_picks_total` handle of this endpoint.
    picks: Counter,
    /// The connected service while it is not ready (a ready one lives in
    /// its [`ReadySlot`]).
    service: Option<S>,
    /// What the service is polled with, made when it connected (see
    /// `recheck.rs`).
    waker: Option<Waker>,
    stage: Stage,
    epoch: u64,
    /// Consecutive failures (connect or `poll_ready`) since it was last ready.
    failures: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the connector to be ready.
    Queued,
    /// The connector's future is running.
    Connecting,
    /// Connected; its `poll_ready` said `Pending`. Position in `unready`.
    Unready(u32),
    /// Reserved by a `Ready` from `poll_ready`. Position in `ready`.
    Ready(u32),
    /// Broken; waiting to be connected again.
    Backoff,
}

struct Connecting<F> {
    key: u32,
    epoch: u64,
    future: Pin<Box<F>>,
}

struct Waiting {
    key: u32,
    epoch: u64,
    until: Instant,
}

/// At most this many discovery changes are applied per `poll_ready`, so a
/// stream that never stops yielding cannot starve requests.
pub(crate) const MAX_CHANGES_PER_POLL: usize = 1_024;

/// All endpoints of one balancer. See the module docs.
pub(crate) struct EndpointSet<S, F> {
    entries: Vec<Option<Entry<S>>>,
    free: Vec<u32>,
    ids: HashMap<EndpointId, u32>,
    ready: Vec<ReadySlot<S>>,
    unready: Vec<u32>,
    queued: VecDeque<(u32, u64)>,
    connecting: Vec<Connecting<F>>,
    waiting: Vec<Waiting>,
    /// Wakes the balancer when the next backoff ends.
    timer: Timer,
    /// How many ready endpoints have each table weight.
    ready_weights: HashMap<u32, usize>,
    /// Bumped on every change of the ready set or of a ready weight.
    version: u64,
    /// Every known endpoint, in table order.
    members: Members,
    /// Membership changed since the outlier detector was told.
    members_dirty: bool,
    /// Ready endpoints that are ejected.
    ready_ejected: usize,
    /// Keys of the endpoints whose slow start is under way.
    ramping: Vec<u32>,
    /// Still applying the first membership (whose endpoints do not ramp).
    initial: bool,
    health: Health,
    /// Wakes the balancer's background work (from a response future that
    /// trips the outlier detector).
    waker: Waker,
    next_epoch: u64,
    model: LoadModel,
    initial_estimate: f64,
    clock: Clock,
    reconnect: ReconnectBackoff,
    metrics: BalancerMetrics,
    wake: Arc<WakeFlag>,
    rechecks: Arc<Rechecks>,
}

impl<S, F> EndpointSet<S, F> {
    /// An empty set for a validated `config`.
    pub(crate) fn new(
        config: &BalancerConfig,
        clock: Clock,
        wake: Arc<WakeFlag>,
    ) -> Result<Self, ConfigError> {
        let (model, initial_estimate) = LoadModel::for_algorithm(&config.algorithm, &clock);
        let health = Health::new(&config.health, Instant::now())?;
        let metrics = BalancerMetrics::new(Arc::clone(&config.name));
        metrics.endpoints(0, 0);
        metrics.ejected.set(0.0);
        metrics.panic.set(0.0);
        Ok(Self {
            entries: Vec::new(),
            free: Vec::new(),
            ids: HashMap::new(),
            ready: Vec::new(),
            unready: Vec::new(),
            queued: VecDeque::new(),
            connecting: Vec::new(),
            waiting: Vec::new(),
            timer: Timer::default(),
            ready_weights: HashMap::new(),
            version: 0,
            members: Members::default(),
            members_dirty: false,
            ready_ejected: 0,
            ramping: Vec::new(),
            initial: true,
            health,
            waker: Waker::from(Arc::clone(&wake)),
            next_epoch: 0,
            model,
            initial_estimate,
            clock,
            reconnect: config.reconnect.clone(),
            metrics,
            rechecks: Rechecks::new(Arc::clone(&wake)),
            wake,
        })
    }

    /// Endpoints known, in any stage.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Endpoints that can be picked now.
    #[inline]
    pub(crate) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// The balancer's metrics.
    pub(crate) fn metrics(&self) -> &BalancerMetrics {
        &self.metrics
    }

    /// The ready endpoints, for a strategy.
    #[inline]
    pub(crate) fn ready_slots(&self) -> ReadySlots<'_, S> {
        ReadySlots {
            slots: &self.ready,
            uniform: self.ready_weights.len() <= 1,
            version: self.version,
            members: &self.members,
        }
    }

    /// The ready endpoint at `pos`.
    #[inline]
    pub(crate) fn ready_slot_mut(&mut self, pos: usize) -> Option<&mut ReadySlot<S>> {
        self.ready.get_mut(pos)
    }

    /// The id of the ready endpoint at `pos`.
    #[cfg(test)]
    pub(crate) fn ready_id(&self, pos: usize) -> Option<&EndpointId> {
        let key = self.ready.get(pos)?.key;
        Some(self.entries.get(key as usize)?.as_ref()?.endpoint.id())
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
        self.metrics.endpoints(self.ready.len(), self.ids.len());
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
                match self.ids.get(endpoint.id()) {
                    Some(&key) => self.update(key, endpoint),
                    None => self.insert(endpoint),
                }
            }
            EndpointChange::Remove(id) => {
                if let Some(key) = self.ids.remove(&id) {
                    self.leave_stage(key);
                    self.remove_member(key);
                    self.entries[key as usize] = None;
                    self.free.push(key);
                    tracing::debug!(balancer = self.metrics.name(), endpoint = %id, "endpoint removed");
                }
            }
        }
    }

    fn insert(&mut self, endpoint: Endpoint) {
        let epoch = self.new_epoch();
        let ramp = if self.health.slow_start_enabled() && !self.initial {
            Ramp::Waiting
        } else {
            Ramp::Full
        };
        let table_weight = self.health.table_weight(endpoint.weight(), 1.0);
        let entry = Entry {
            state: self.new_state(),
            member: self.members.list.len() as u32,
            ejected: false,
            ramp,
            table_weight,
            picks: self.metrics.picks(endpoint.id()),
            service: None,
            waker: None,
            stage: Stage::Queued,
            epoch,
            failures: 0,
            endpoint,
        };
        tracing::debug!(
            balancer = self.metrics.name(),
            endpoint = %entry.endpoint.id(),
            address = %entry.endpoint.address(),
            weight = entry.endpoint.weight().get(),
            "endpoint inserted"
        );
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
        if let Some(entry) = self.entries[key as usize].as_ref() {
            self.ids.insert(entry.endpoint.id().clone(), key);
            self.members.list.push(Member {
                key,
                id: entry.endpoint.id().clone(),
                weight: entry.endpoint.weight(),
                table_weight,
                ready: NOT_READY,
            });
            self.members_changed(true);
        }
        self.queued.push_back((key, epoch));
        self.wake.set();
    }

    fn update(&mut self, key: u32, endpoint: Endpoint) {
        let Some((address, weight)) = self.entries[key as usize]
            .as_ref()
            .map(|e| (e.endpoint.address(), e.endpoint.weight().get()))
        else {
            return;
        };
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
            self.leave_stage(key);
            let state = self.new_state();
            if let Some(old) = self.entries[key as usize].as_ref().map(|e| &e.state) {
                // Health is the endpoint's, by id: the new connection keeps
                // its ejection and its outlier counters.
                state.set_available(old.is_available());
                state.attach_health_of(old);
            }
            let epoch = self.new_epoch();
            if let Some(entry) = self.entries[key as usize].as_mut() {
                entry.service = None;
                entry.state = state;
                entry.failures = 0;
                entry.epoch = epoch;
                entry.stage = Stage::Queued;
            }
            self.queued.push_back((key, epoch));
            self.wake.set();
        }
        let new_weight = endpoint.weight();
        let Some(entry) = self.entries[key as usize].as_mut() else {
            return;
        };
        entry.endpoint = endpoint;
        // The stage now: a new address took it out of the ready set.
        let stage = entry.stage;
        if weight != new_weight.get() {
            if let Some(member) = self
                .entries
                .get(key as usize)
                .and_then(Option::as_ref)
                .and_then(|e| self.members.list.get_mut(e.member as usize))
            {
                member.weight = new_weight;
            }
            self.members.hash_version += 1;
            let factor = self.factor(key);
            self.set_table_weight(key, new_weight, factor, stage);
        }
    }

    /// Takes the entry out of whatever stage it is in; work queued for it
    /// becomes stale.
    fn leave_stage(&mut self, key: u32) {
        let Some(entry) = self.entries[key as usize].as_ref() else {
            return;
        };
        match entry.stage {
            Stage::Ready(pos) => drop(self.remove_ready(pos)),
            Stage::Unready(pos) => self.remove_unready(pos),
            Stage::Connecting => {
                let epoch = entry.epoch;
                self.connecting.retain(|c| !(c.key == key && c.epoch == epoch));
            }
            Stage::Queued | Stage::Backoff => {}
        }
        let epoch = self.new_epoch();
        if let Some(entry) = self.entries[key as usize].as_mut() {
            entry.epoch = epoch;
            entry.stage = Stage::Queued;
        }
    }

    // ===== stages =====

    /// Moves the entry's service into a new ready slot.
    fn push_ready(&mut self, key: u32) {
        let pos = self.ready.len() as u32;
        let Some(entry) = self.entries[key as usize].as_mut() else {
            return;
        };
        let (Some(service), Some(waker)) = (entry.service.take(), entry.waker.clone()) else {
            return;
        };
        if entry.ramp == Ramp::Waiting {
            // Slow start counts from the first time it can take requests.
            let now = Instant::now();
            entry.ramp = Ramp::Since(now);
            let (factor, _) = self.health.ramp(now, now);
            entry.table_weight = self.health.table_weight(entry.endpoint.weight(), factor);
            if let Some(member) = self.members.list.get_mut(entry.member as usize) {
                member.table_weight = entry.table_weight;
            }
            self.ramping.push(key);
            self.health.ensure_step(now);
            self.members.version += 1;
        }
        let weight = entry.table_weight;
        self.ready.push(ReadySlot {
            state: Arc::clone(&entry.state),
            inv_weight: self.health.inv_weight(weight),
            key,
            picks: entry.picks.clone(),
            service,
            waker,
        });
        entry.stage = Stage::Ready(pos);
        entry.failures = 0;
        if let Some(member) = self.members.list.get_mut(entry.member as usize) {
            member.ready = pos;
        }
        if entry.ejected {
            self.ready_ejected += 1;
        }
        self.count_weight(weight.get(), true);
        self.version += 1;
    }

    /// Takes the slot at `pos` out of the ready set; the caller decides
    /// what becomes of its service.
    fn remove_ready(&mut self, pos: u32) -> ReadySlot<S> {
        let slot = self.ready.swap_remove(pos as usize);
        let key = slot.key;
        if let Some(moved) = self.ready.get(pos as usize)
            && let Some(entry) = self.entries[moved.key as usize].as_mut()
        {
            entry.stage = Stage::Ready(pos);
            if let Some(member) = self.members.list.get_mut(entry.member as usize) {
                member.ready = pos;
            }
        }
        if let Some(entry) = self.entries[key as usize].as_ref() {
            let (weight, ejected, member) = (entry.table_weight.get(), entry.ejected, entry.member);
            self.count_weight(weight, false);
            if ejected {
                self.ready_ejected -= 1;
            }
            if let Some(member) = self.members.list.get_mut(member as usize) {
                member.ready = NOT_READY;
            }
        }
        self.version += 1;
        slot
    }

    fn push_unready(&mut self, key: u32) {
        let pos = self.unready.len() as u32;
        self.unready.push(key);
        if let Some(entry) = self.entries[key as usize].as_mut() {
            entry.stage = Stage::Unready(pos);
        }
    }

    fn remove_unready(&mut self, pos: u32) {
        self.unready.swap_remove(pos as usize);
        if let Some(&moved) = self.unready.get(pos as usize)
            && let Some(entry) = self.entries[moved as usize].as_mut()
        {
            entry.stage = Stage::Unready(pos);
        }
    }

    fn count_weight(&mut self, weight: u32, add: bool) {
        if add {
            *self.ready_weights.entry(weight).or_default() += 1;
        } else if let Some(count) = self.ready_weights.get_mut(&weight) {
            *count -= 1;
            if *count == 0 {
                self.ready_weights.remove(&weight);
            }
        }
    }

    /// Drops a broken service and schedules a reconnect after backoff.
    fn evict(&mut self, key: u32, error: BoxError, rng: &mut Rng) {
        self.metrics.evictions.increment(1);
        if let Some(entry) = self.entries[key as usize].as_mut() {
            entry.service = None;
            entry.waker = None;
            tracing::debug!(
                balancer = self.metrics.name(),
                endpoint = %entry.endpoint.id(),
                %error,
                "endpoint failed; evicted"
            );
        }
        self.retry_later(key, rng);
    }

    fn connect_failed(&mut self, key: u32, error: BoxError, rng: &mut Rng) {
        self.metrics.connect_failures.increment(1);
        if let Some(entry) = self.entries[key as usize].as_ref() {
            tracing::debug!(
                balancer = self.metrics.name(),
                endpoint = %entry.endpoint.id(),
                address = %entry.endpoint.address(),
                %error,
                "connect failed"
            );
        }
        self.retry_later(key, rng);
    }

    fn retry_later(&mut self, key: u32, rng: &mut Rng) {
        let epoch = self.new_epoch();
        let Some(entry) = self.entries[key as usize].as_mut() else {
            return;
        };
        entry.failures = entry.failures.saturating_add(1);
        let delay = self.reconnect.delay(entry.failures, rng);
        entry.stage = Stage::Backoff;
        entry.epoch = epoch;
        tracing::debug!(
            balancer = self.metrics.name(),
            endpoint = %entry.endpoint.id(),
            failures = entry.failures,
            ?delay,
            "reconnect scheduled"
        );
        self.waiting.push(Waiting {
            key,
            epoch,
            until: Instant::now() + delay,
        });
        // The timer is (re)armed by the next background pass.
        self.wake.set();
    }

    fn is_current(&self, key: u32, epoch: u64, stage: Stage) -> bool {
        self.entries
            .get(key as usize)
            .and_then(Option::as_ref)
            .is_some_and(|e| e.epoch == epoch && e.stage == stage)
    }

    fn new_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    fn new_state(&self) -> Arc<EndpointState> {
        EndpointState::new(self.model, self.initial_estimate, self.clock.clone())
    }

    // ===== background work, polled with the balancer's wake flag =====

    /// Moves endpoints whose backoff ended to the connect queue, and arms
    /// the timer for the next one.
    pub(crate) fn poll_waiting(&mut self, cx: &mut Context<'_>) {
        while !self.waiting.is_empty() {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            let (entries, queued) = (&mut self.entries, &mut self.queued);
            self.waiting.retain(|w| {
                let Some(entry) = entries[w.key as usize]
                    .as_mut()
                    .filter(|e| e.epoch == w.epoch && e.stage == Stage::Backoff)
                else {
                    return false;
                };
                if w.until <= now {
                    entry.stage = Stage::Queued;
                    queued.push_back((w.key, w.epoch));
                    false
                } else {
                    next = Some(next.map_or(w.until, |n| n.min(w.until)));
                    true
                }
            });
            let Some(next) = next else {
                return;
            };
            if self.timer.poll_until(next, cx).is_pending() {
                return;
            }
        }
    }

    /// Hands queued endpoints to the connector while it is ready.
    pub(crate) fn start_connects<M>(&mut self, connector: &mut M, cx: &mut Context<'_>, rng: &mut Rng)
    where
        M: Service<Endpoint, Response = S, Future = F>,
        M::Error: Into<BoxError>,
    {
        while let Some(&(key, epoch)) = self.queued.front() {
            if !self.is_current(key, epoch, Stage::Queued) {
                self.queued.pop_front();
                continue;
            }
            match connector.poll_ready(cx) {
                Poll::Pending => return,
                Poll::Ready(Err(error)) => {
                    self.queued.pop_front();
                    self.connect_failed(key, error.into(), rng);
                    continue;
                }
                Poll::Ready(Ok(())) => {}
            }
            self.queued.pop_front();
            let Some(entry) = self.entries[key as usize].as_mut() else {
                continue;
            };
            let future = connector.call(entry.endpoint.clone());
            entry.stage = Stage::Connecting;
            self.connecting.push(Connecting {
                key,
                epoch,
                future: Box::pin(future),
            });
        }
    }

    /// Polls connects in progress: a connected service waits in the not-ready
    /// set until its `poll_ready` says `Ready`; a failed connect backs off.
    pub(crate) fn poll_connecting<E>(&mut self, cx: &mut Context<'_>, rng: &mut Rng)
    where
        F: Future<Output = Result<S, E>>,
        E: Into<BoxError>,
    {
        let mut i = 0;
        while i < self.connecting.len() {
            let Poll::Ready(result) = self.connecting[i].future.as_mut().poll(cx) else {
                i += 1;
                continue;
            };
            let Connecting { key, epoch, .. } = self.connecting.swap_remove(i);
            if !self.is_current(key, epoch, Stage::Connecting) {
                continue;
            }
            match result {
                Ok(service) => {
                    let waker = self.rechecks.waker(key, epoch);
                    if let Some(entry) = self.entries[key as usize].as_mut() {
                        entry.service = Some(service);
                        entry.waker = Some(waker);
                    }
                    self.push_unready(key);
                }
                Err(error) => self.connect_failed(key, error.into(), rng),
            }
        }
    }

    /// Polls services in the not-ready set: `Ready` ones join the ready set,
    /// failed ones are evicted.
    pub(crate) fn poll_unready<Req>(&mut self, rng: &mut Rng)
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        let mut i = 0;
        while i < self.unready.len() {
            let key = self.unready[i];
            let Some((service, waker)) = self.entries[key as usize]
                .as_mut()
                .and_then(|e| e.service.as_mut().zip(e.waker.as_ref()))
            else {
                self.remove_unready(i as u32);
                continue;
            };
            match service.poll_ready(&mut Context::from_waker(waker)) {
                Poll::Pending => i += 1,
                Poll::Ready(Ok(())) => {
                    self.remove_unready(i as u32);
                    self.push_ready(key);
                }
                Poll::Ready(Err(error)) => {
                    self.remove_unready(i as u32);
                    self.evict(key, error.into(), rng);
                }
            }
        }
    }

    /// Asks again every ready endpoint whose service woke the balancer
    /// since the last pass (see `recheck.rs`).
    pub(crate) fn poll_rechecks<Req>(&mut self, rng: &mut Rng)
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        for (key, epoch) in self.rechecks.take() {
            let Some(entry) = self.entries.get(key as usize).and_then(Option::as_ref) else {
                continue;
            };
            // Not ready: `poll_unready` asks it anyway. Another epoch: the
            // service that woke is gone.
            if let (true, Stage::Ready(pos)) = (entry.epoch == epoch, entry.stage) {
                self.repoll::<Req>(pos as usize, rng);
            }
        }
    }

    /// Asks the endpoint just called (at ready position `pos`) whether it
    /// can take another request: it stays ready, waits in the not-ready set,
    /// or is evicted.
    #[inline]
    pub(crate) fn repoll<Req>(&mut self, pos: usize, rng: &mut Rng)
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        let Some(slot) = self.ready.get_mut(pos) else {
            return;
        };
        match slot.service.poll_ready(&mut Context::from_waker(&slot.waker)) {
            Poll::Ready(Ok(())) => {}
            Poll::Pending => {
                let slot = self.remove_ready(pos as u32);
                let key = slot.key;
                if let Some(entry) = self.entries[key as usize].as_mut() {
                    entry.service = Some(slot.service);
                }
                self.push_unready(key);
                self.publish();
            }
            Poll::Ready(Err(error)) => {
                let key = self.remove_ready(pos as u32).key;
                self.evict(key, error.into(), rng);
                self.publish();
            }
        }
    }
}
