//! Which ready endpoints asked to be looked at again.
//!
//! A ready endpoint is otherwise asked `poll_ready` only after it is
//! called, so a service that learns it is broken while idle (its
//! connection closed) would be picked once more before the balancer knew.
//! Each connected service is polled with a waker of its own: when it wakes
//! it, its key joins this list and the balancer's background work runs,
//! which asks every listed ready endpoint again (tower issue 824's
//! "noticed without waiting for the next request", for breakage). One
//! waker is allocated per connect, nothing per request.

use std::{
    sync::{Arc, Mutex},
    task::{Wake, Waker},
};

use super::super::wake::WakeFlag;

/// The endpoints that woke, and the balancer's wake flag.
#[derive(Debug)]
pub(crate) struct Rechecks {
    woken: Mutex<Vec<(u32, u64)>>,
    wake: Arc<WakeFlag>,
}

impl Rechecks {
    pub(crate) fn new(wake: Arc<WakeFlag>) -> Arc<Self> {
        Arc::new(Self {
            woken: Mutex::new(Vec::new()),
            wake,
        })
    }

    /// The waker for the service of entry `key` in `epoch`.
    pub(crate) fn waker(self: &Arc<Self>, key: u32, epoch: u64) -> Waker {
        Waker::from(Arc::new(EndpointWaker {
            key,
            epoch,
            rechecks: Arc::clone(self),
        }))
    }

    /// The endpoints that woke since the last call, oldest first.
    pub(crate) fn take(&self) -> Vec<(u32, u64)> {
        // A panic elsewhere while the lock was held leaves a plain list.
        std::mem::take(&mut *self.woken.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Wakes the balancer on behalf of one endpoint's service.
struct EndpointWaker {
    key: u32,
    epoch: u64,
    rechecks: Arc<Rechecks>,
}

impl Wake for EndpointWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.rechecks
            .woken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.key, self.epoch));
        self.rechecks.wake.wake_by_ref();
    }
}
