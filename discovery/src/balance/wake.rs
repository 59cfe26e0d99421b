//! One waker for everything the balancer does in the background.
//!
//! Endpoints that are connecting, not ready or backing off, and the stream
//! of discovery changes, are polled with this waker instead of the caller's.
//! When any of them wakes it, a flag is set and the balancer's task is woken;
//! `poll_ready` looks at that flag (one relaxed load) and only then polls the
//! background work. So a request costs nothing for endpoints that are not in
//! play, unlike polling them all on every `poll_ready`, and without the
//! per-endpoint futures and cancel handles of tower's `ReadyCache`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Wake, Waker},
};

use futures_util::task::AtomicWaker;

/// The flag and the task to wake.
#[derive(Debug, Default)]
pub(crate) struct WakeFlag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl WakeFlag {
    /// A flag that starts set (so the first `poll_ready` polls everything),
    /// and the waker that sets it.
    pub(crate) fn new() -> (Arc<Self>, Waker) {
        let flag = Arc::new(Self {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
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
