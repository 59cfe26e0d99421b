//! Thread-local handles to breakers, so that the `tower` service's response
//! future can record an outcome without owning a reference count.
//!
//! A response future must be `'static`, so it cannot borrow its breaker, and
//! owning an `Arc` costs two atomic read-modify-writes per call (the clone
//! and the drop): more than everything else a closed breaker does. Instead,
//! a future carries only its breaker's id, and the thread that completes it
//! (or drops a half-open trial's future unrecorded, giving the trial slot
//! back) finds the breaker in its own cache: a thread-local lookup, no
//! shared write. A thread meets a breaker there for
//! the first time through a process-wide registry of weak handles (a mutex,
//! once per thread and breaker), and a future completed after its breaker
//! was dropped records nothing, as nobody can read the breaker any more.
//!
//! The cache holds strong handles, so a dropped breaker lives on in the
//! caches of the threads that used it until they next miss (a miss sweeps
//! retired breakers out) or exit.

use std::{
    cell::RefCell,
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicU64, Ordering},
    },
};

use super::shared::Shared;

/// Every breaker ever built, weakly, by id.
static REGISTRY: Mutex<Vec<(u64, Weak<Shared>)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Ids beside the handles, so a lookup scans one contiguous array
    // instead of chasing a pointer per entry.
    static CACHE: RefCell<Vec<(u64, Arc<Shared>)>> = const { RefCell::new(Vec::new()) };
}

/// A fresh id for a breaker being built.
pub(super) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Makes `shared` findable by its id from any thread.
pub(super) fn register(shared: &Arc<Shared>) {
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    // Registration is rare (one per breaker built): the moment to forget
    // breakers that are gone.
    registry.retain(|(_, weak)| weak.strong_count() > 0);
    registry.push((shared.id(), Arc::downgrade(shared)));
}

/// Runs `f` on the live breaker `id`, or returns `None` if it is gone.
#[inline]
pub(super) fn with_breaker<R>(id: u64, f: impl FnOnce(&Shared) -> R) -> Option<R> {
    let mut f = Some(f);
    // A shared borrow: `f` may emit events whose subscriber records into
    // another breaker on this thread, which borrows the cache again.
    let hit = CACHE
        .try_with(|cache| {
            let cache = cache.try_borrow().ok()?;
            // A retired breaker found here still takes the outcome: nobody
            // reads it any more, so it is harmless, and not asking saves a
            // load from another cache line. Misses sweep retired entries out.
            let (_, shared) = cache.iter().find(|(entry, _)| *entry == id)?;
            f.take().map(|f| f(shared))
        })
        .ok()
        .flatten();
    match (hit, f) {
        (Some(result), _) => Some(result),
        (None, Some(f)) => miss(id, f),
        // `f` ran and returned: not reachable, as a hit returns `Some`.
        (None, None) => None,
    }
}

#[cold]
#[inline(never)]
fn miss<R>(id: u64, f: impl FnOnce(&Shared) -> R) -> Option<R> {
    let shared = {
        let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        registry
            .iter()
            .find(|(entry, _)| *entry == id)
            .and_then(|(_, weak)| weak.upgrade())
    };
    // Sweep and fill the cache; skipped when the thread is exiting or the
    // cache is borrowed further up this thread's stack.
    let _ = CACHE.try_with(|cache| {
        if let Ok(mut cache) = cache.try_borrow_mut() {
            cache.retain(|(_, s)| !s.is_retired());
            if let Some(shared) = &shared
                && !shared.is_retired()
            {
                cache.push((id, Arc::clone(shared)));
            }
        }
    });
    shared.filter(|s| !s.is_retired()).map(|s| f(&s))
}
