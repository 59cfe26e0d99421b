//! Endpoints on their way to the ready list: queued for the connector,
//! connecting, connected but not ready, or backing off after a failure.
//!
//! All of it is background work, polled with the balancer's wake flag's
//! waker, never per request. Queued work carries the entry's epoch (see
//! `slab.rs`), so work for an endpoint that was removed, moved or failed
//! meanwhile is dropped when it comes up.

use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::time::Instant;
use tower_service::Service;

use super::EndpointSet;
use super::slab::Stage;
use crate::Endpoint;
use crate::balance::{Timer, config::ReconnectBackoff, error::BoxError, rng::Rng};

/// The endpoints that are not ready, by stage. See the module docs.
pub(crate) struct Connections<F> {
    /// Waiting for the connector: `(key, epoch)`.
    queued: VecDeque<(u32, u64)>,
    connecting: Vec<Connect<F>>,
    /// Connected, `poll_ready` said `Pending`: keys.
    pub(super) unready: Vec<u32>,
    backoff: Vec<Backoff>,
    /// Wakes the balancer when the next backoff ends.
    timer: Timer,
    reconnect: ReconnectBackoff,
}

struct Connect<F> {
    key: u32,
    epoch: u64,
    future: Pin<Box<F>>,
}

struct Backoff {
    key: u32,
    epoch: u64,
    until: Instant,
}

impl<F> Connections<F> {
    pub(crate) fn new(reconnect: ReconnectBackoff) -> Self {
        Self {
            queued: VecDeque::new(),
            connecting: Vec::new(),
            unready: Vec::new(),
            backoff: Vec::new(),
            timer: Timer::default(),
            reconnect,
        }
    }

    /// Queues entry `key` in `epoch` for the connector.
    pub(super) fn queue(&mut self, key: u32, epoch: u64) {
        self.queued.push_back((key, epoch));
    }

    /// Drops what is under way for entry `key` in `stage` (queued work and
    /// backoff go stale with the epoch by themselves).
    pub(super) fn forget(&mut self, key: u32, epoch: u64, stage: Stage) {
        match stage {
            Stage::Connecting => self.connecting.retain(|c| !(c.key == key && c.epoch == epoch)),
            Stage::Unready => self.unready.retain(|&k| k != key),
            Stage::Queued | Stage::Ready | Stage::Backoff => {}
        }
    }
}

impl<S, F> EndpointSet<S, F> {
    /// Moves endpoints whose backoff ended to the connect queue, and arms
    /// the timer for the next one.
    pub(crate) fn poll_backoff(&mut self, cx: &mut Context<'_>) {
        let conns = &mut self.connections;
        while !conns.backoff.is_empty() {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            let (slab, queued) = (&mut self.slab, &mut conns.queued);
            conns.backoff.retain(|b| {
                let Some(entry) = slab
                    .get_mut(b.key)
                    .filter(|e| e.epoch == b.epoch && e.stage == Stage::Backoff)
                else {
                    return false;
                };
                if b.until <= now {
                    entry.stage = Stage::Queued;
                    queued.push_back((b.key, b.epoch));
                    false
                } else {
                    next = Some(next.map_or(b.until, |n| n.min(b.until)));
                    true
                }
            });
            match next {
                Some(next) if conns.timer.poll_until(next, cx).is_ready() => {}
                _ => return,
            }
        }
    }

    /// Hands queued endpoints to the connector while it is ready.
    pub(crate) fn start_connects<M>(&mut self, connector: &mut M, cx: &mut Context<'_>, rng: &mut Rng)
    where
        M: Service<Endpoint, Response = S, Future = F>,
        M::Error: Into<BoxError>,
    {
        while let Some(&(key, epoch)) = self.connections.queued.front() {
            if !self.slab.is_current(key, epoch, Stage::Queued) {
                self.connections.queued.pop_front();
                continue;
            }
            let ready = connector.poll_ready(cx);
            if ready.is_ready() {
                self.connections.queued.pop_front();
            }
            match ready {
                Poll::Pending => return,
                Poll::Ready(Err(error)) => self.connect_failed(key, error.into(), rng),
                Poll::Ready(Ok(())) => {
                    if let Some(entry) = self.slab.get_mut(key) {
                        let future = Box::pin(connector.call(entry.endpoint.clone()));
                        entry.stage = Stage::Connecting;
                        self.connections.connecting.push(Connect { key, epoch, future });
                    }
                }
            }
        }
    }

    /// Polls connects in progress: a connected service waits in the not-ready
    /// list until its `poll_ready` says `Ready`; a failed connect backs off.
    pub(crate) fn poll_connecting<E>(&mut self, cx: &mut Context<'_>, rng: &mut Rng)
    where
        F: Future<Output = Result<S, E>>,
        E: Into<BoxError>,
    {
        let mut i = 0;
        while i < self.connections.connecting.len() {
            let Poll::Ready(result) = self.connections.connecting[i].future.as_mut().poll(cx) else {
                i += 1;
                continue;
            };
            let Connect { key, epoch, .. } = self.connections.connecting.swap_remove(i);
            if !self.slab.is_current(key, epoch, Stage::Connecting) {
                continue;
            }
            match result {
                Ok(service) => {
                    let waker = self.wake.endpoint_waker(key, epoch);
                    if let Some(entry) = self.slab.get_mut(key) {
                        entry.service = Some(service);
                        entry.waker = Some(waker);
                        entry.stage = Stage::Unready;
                        self.connections.unready.push(key);
                    }
                }
                Err(error) => self.connect_failed(key, error.into(), rng),
            }
        }
    }

    /// Polls services in the not-ready list: `Ready` ones join the ready
    /// list, failed ones are evicted.
    pub(crate) fn poll_unready<Req>(&mut self, rng: &mut Rng)
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        let mut i = 0;
        while i < self.connections.unready.len() {
            let key = self.connections.unready[i];
            let Some((service, waker)) = self
                .slab
                .get_mut(key)
                .and_then(|e| e.service.as_mut().zip(e.waker.as_ref()))
            else {
                self.connections.unready.swap_remove(i);
                continue;
            };
            match service.poll_ready(&mut Context::from_waker(waker)) {
                Poll::Pending => i += 1,
                Poll::Ready(Ok(())) => {
                    self.connections.unready.swap_remove(i);
                    self.push_ready(key);
                }
                Poll::Ready(Err(error)) => {
                    self.connections.unready.swap_remove(i);
                    self.evict(key, error.into(), rng);
                }
            }
        }
    }

    /// Drops a broken service and schedules a reconnect after backoff.
    pub(super) fn evict(&mut self, key: u32, error: BoxError, rng: &mut Rng) {
        self.metrics.evictions.increment(1);
        if let Some(entry) = self.slab.get_mut(key) {
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
        if let Some(entry) = self.slab.get(key) {
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
        let epoch = self.slab.restart(key, Stage::Backoff);
        let Some(entry) = self.slab.get_mut(key) else {
            return;
        };
        entry.failures = entry.failures.saturating_add(1);
        let delay = self.connections.reconnect.delay(entry.failures, rng);
        tracing::debug!(
            balancer = self.metrics.name(),
            endpoint = %entry.endpoint.id(),
            failures = entry.failures,
            ?delay,
            "reconnect scheduled"
        );
        let until = Instant::now() + delay;
        self.connections.backoff.push(Backoff { key, epoch, until });
        // The timer is (re)armed by the next background pass.
        self.wake.set();
    }
}
