//! The state one bulkhead's services share: slots, the queue count, metrics.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use metrics::{Counter, Gauge};
use tokio::{sync::Semaphore, time::Instant};

use super::BulkheadConfig;
use crate::error::ResilienceError;

/// The wait of a queued call: resolves to a slot, or to the rejection.
pub(crate) type SlotWait = Pin<Box<dyn Future<Output = Result<Slot, ResilienceError>> + Send>>;

/// What a call gets when it arrives.
pub(crate) enum Admission {
    /// A slot was free; the call may run now.
    Run(Slot),
    /// No slot, but a place in the queue; the call waits with this future.
    Wait(SlotWait),
    /// No slot and no place in the queue (or waiting is disabled).
    Rejected(ResilienceError),
}

pub(crate) struct Shared {
    name: Arc<str>,
    /// One permit per slot. Permits are `forget`-ed when taken and added back
    /// by [`Slot`]'s `Drop`, so a slot needs no borrow of the semaphore.
    slots: Semaphore,
    max_concurrent: usize,
    max_queue: usize,
    max_wait: Duration,
    queued: AtomicUsize,
    in_flight_gauge: Gauge,
    queued_gauge: Gauge,
    rejections: Counter,
}

impl Shared {
    pub(crate) fn new(config: &BulkheadConfig) -> Self {
        let name: Arc<str> = config.name.as_str().into();
        Self {
            slots: Semaphore::new(config.max_concurrent),
            max_concurrent: config.max_concurrent,
            max_queue: config.max_queue,
            max_wait: config.max_wait,
            queued: AtomicUsize::new(0),
            in_flight_gauge: metrics::gauge!("orch_bulkhead_in_flight", "name" => Arc::clone(&name)),
            queued_gauge: metrics::gauge!("orch_bulkhead_queued", "name" => Arc::clone(&name)),
            rejections: metrics::counter!("orch_bulkhead_rejections_total", "name" => Arc::clone(&name)),
            name,
        }
    }

    /// Decides what a call arriving now gets.
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        // `try_acquire` fails while calls are queued even if a slot was just
        // released: tokio's semaphore hands released permits to waiters first,
        // so a newcomer never overtakes the queue (FIFO).
        if let Ok(permit) = self.slots.try_acquire() {
            permit.forget();
            return Admission::Run(Slot::taken(Arc::clone(self)));
        }
        if self.max_wait.is_zero() {
            return Admission::Rejected(self.reject(Duration::ZERO, "no free slot"));
        }
        let joined = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued < self.max_queue).then_some(queued + 1)
            })
            .is_ok();
        if !joined {
            return Admission::Rejected(self.reject(Duration::ZERO, "wait queue full"));
        }
        self.queued_gauge.increment(1.0);
        let ticket = QueueTicket {
            shared: Arc::clone(self),
        };
        let mut wait: SlotWait = Box::pin(ticket.wait());
        // Poll once now, with a waker that does nothing, so the call takes its
        // place in the semaphore's FIFO queue and its `max_wait` starts at
        // `call`, not whenever the caller first polls the response future.
        // Later polls register the caller's real waker.
        match wait.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(slot)) => Admission::Run(slot),
            Poll::Ready(Err(error)) => Admission::Rejected(error),
            Poll::Pending => Admission::Wait(wait),
        }
    }

    /// Counts and reports a rejection, and builds its error.
    fn reject(&self, waited: Duration, reason: &'static str) -> ResilienceError {
        self.rejections.increment(1);
        tracing::debug!(
            name = %self.name,
            max_concurrent = self.max_concurrent,
            queued = self.queued.load(Ordering::Relaxed),
            ?waited,
            reason,
            "bulkhead rejected call"
        );
        ResilienceError::BulkheadFull {
            name: Arc::clone(&self.name),
            max_concurrent: self.max_concurrent,
            waited,
        }
    }
}

/// A place in the wait queue; leaving the queue (with a slot, by timing out,
/// or by being dropped) gives the place back.
struct QueueTicket {
    shared: Arc<Shared>,
}

impl QueueTicket {
    async fn wait(self) -> Result<Slot, ResilienceError> {
        let started = Instant::now();
        let shared = &self.shared;
        match tokio::time::timeout(shared.max_wait, shared.slots.acquire()).await {
            Ok(Ok(permit)) => {
                permit.forget();
                Ok(Slot::taken(Arc::clone(shared)))
            }
            // The semaphore is never closed, so `Ok(Err(_))` cannot happen;
            // treating it as a timeout keeps this path panic-free.
            Ok(Err(_)) | Err(_) => Err(shared.reject(started.elapsed(), "max wait elapsed")),
        }
    }
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        self.shared.queued_gauge.decrement(1.0);
    }
}

/// A held slot; dropping it frees the slot for the next caller.
pub(crate) struct Slot {
    shared: Arc<Shared>,
}

impl Slot {
    /// Wraps a permit that was just taken and forgotten.
    fn taken(shared: Arc<Shared>) -> Self {
        shared.in_flight_gauge.increment(1.0);
        Self { shared }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The gauge goes down before the permit goes back, so the next holder's
        // increment never makes it read above `max_concurrent`.
        self.shared.in_flight_gauge.decrement(1.0);
        self.shared.slots.add_permits(1);
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("bulkhead", &self.shared.name)
            .finish()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.name)
            .field("max_concurrent", &self.max_concurrent)
            .field("available", &self.slots.available_permits())
            .field("max_queue", &self.max_queue)
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

/// A view of one bulkhead's occupancy, shared with all its services.
///
/// The numbers are read without a lock, so under concurrent calls they are a
/// snapshot that may already be out of date.
#[derive(Debug, Clone)]
pub struct BulkheadHandle {
    shared: Arc<Shared>,
}

impl BulkheadHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configured number of concurrent calls.
    pub fn max_concurrent(&self) -> usize {
        self.shared.max_concurrent
    }

    /// Free slots.
    pub fn available(&self) -> usize {
        self.shared.slots.available_permits()
    }

    /// Slots held by running calls (`max_concurrent - available`).
    pub fn in_flight(&self) -> usize {
        self.shared.max_concurrent.saturating_sub(self.available())
    }

    /// Calls waiting for a slot.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
}
