//! One waker for everything the balancer does in the background.
//!
//! Endpoints that are connecting, not ready or backing off, and the stream
//! of discovery changes, are polled with this waker instead of the caller's.
//! When any of them wakes it, a flag is set and the balancer's task is woken;
//! `poll_ready` looks at that flag (one relaxed load) and only then polls the
//! background work. So a request costs nothing for endpoints that are not in
//! play, unlike polling them all on every `poll_ready`, and without the
//! per-endpoint futures and cancel handles of tower's `ReadyCache`.
//!
//! Beside the flag: a waker per connected endpoint, which lists the endpoint
//! for a recheck, and the reusable [`Timer`] of the balancer's
//! deadlines.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

use futures_util::task::AtomicWaker;
use tokio::time::{Instant, Sleep};

/// The flag and the task to wake.
#[derive(Debug, Default)]
pub(crate) struct WakeFlag {
    woken: AtomicBool,
    task: AtomicWaker,
    /// The ready endpoints that woke, as `(key, epoch)` (see below).
    rechecks: Mutex<Vec<(u32, u64)>>,
}

impl WakeFlag {
    /// A flag that starts set (so the first `poll_ready` polls everything),
    /// and the waker that sets it.
    pub(crate) fn new() -> (Arc<Self>, Waker) {
        let flag = Arc::new(Self {
            woken: AtomicBool::new(true),
            ..Self::default()
        });
        let waker = Waker::from(Arc::clone(&flag));
        (flag, waker)
    }

    /// Clears the flag; true if it was set.
    #[inline]
    pub(crate) fn take(&self) -> bool {
        // The plain load keeps the common case (not woken) free of a write.
        self.woken.load(Ordering::Relaxed) && self.woken.swap(false, Ordering::Acquire)
    }

    /// Sets the flag without waking the task: work queued from inside the
    /// balancer, picked up by the next `poll_ready`.
    pub(crate) fn set(&self) {
        self.woken.store(true, Ordering::Release);
    }

    /// Makes the next wake-up wake `waker`'s task; true when the flag was
    /// set meanwhile (then the caller must look again instead of sleeping).
    pub(crate) fn register(&self, waker: &Waker) -> bool {
        self.task.register(waker);
        // A wake between the caller's `take` and this registration set the
        // flag but found no task to wake: seeing the flag here covers it.
        self.woken.load(Ordering::Acquire)
    }
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

// ===== rechecks =====

// Which ready endpoints asked to be looked at again (`WakeFlag::rechecks`).
//
// A ready endpoint is otherwise asked `poll_ready` only after it is
// called, so a service that learns it is broken while idle (its
// connection closed) would be picked once more before the balancer knew.
// Each connected service is polled with a waker of its own: when it wakes
// it, its key joins this list and the balancer's background work runs,
// which asks every listed ready endpoint again (tower issue 824's
// "noticed without waiting for the next request", for breakage). One
// waker is allocated per connect, nothing per request.

impl WakeFlag {
    /// The waker for the service of entry `key` in `epoch`.
    pub(crate) fn endpoint_waker(self: &Arc<Self>, key: u32, epoch: u64) -> Waker {
        Waker::from(Arc::new(EndpointWaker {
            key,
            epoch,
            flag: Arc::clone(self),
        }))
    }

    /// The endpoints that woke since the last call, oldest first.
    pub(crate) fn take_rechecks(&self) -> Vec<(u32, u64)> {
        // A panic elsewhere while the lock was held leaves a plain list.
        std::mem::take(&mut *self.rechecks.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Wakes the balancer on behalf of one endpoint's service.
struct EndpointWaker {
    key: u32,
    epoch: u64,
    flag: Arc<WakeFlag>,
}

impl Wake for EndpointWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flag
            .rechecks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.key, self.epoch));
        self.flag.wake_by_ref();
    }
}

// ===== timer =====

// A reusable timer for the balancer's deadlines (fail-fast, reconnect
// backoff, passive health), so arming one again does not allocate.

/// A timer allocated on first use and reused after: background work and
/// fail-fast arm theirs again and again, and a boxed `Sleep` per arm would
/// allocate each time.
#[derive(Default)]
pub(crate) struct Timer(Option<Pin<Box<Sleep>>>);

impl Timer {
    /// Polls the timer for `deadline`. It is reset only when the deadline
    /// moved: a reset re-registers with the time driver, and polling an
    /// unchanged deadline (one that already passed included) gives the same
    /// answer without it.
    pub(crate) fn poll_until(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let timer = self
            .0
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    }
}
