//! Which shard of a per-thread-sharded counter the calling thread uses.
//!
//! A counter that every call writes (a breaker's window, a retry budget's
//! deposits) is one cache line that all cores fight over: two threads
//! writing it run slower together than one alone. Such counters are split
//! into shards, one per thread in the common case, summed when read. Each
//! thread gets a seed once, round-robin, so threads that start together land
//! on different shards.

use std::{
    cell::Cell,
    fmt,
    ops::Deref,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

/// The most shards a counter has.
pub(crate) const MAX_SHARDS: usize = 64;

/// How many shards a sharded counter gets: twice the available parallelism (so that
/// two threads rarely land on one shard), rounded up to a power of two,
/// at most 64. Computed once per process.
pub(crate) fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores * 2).next_power_of_two().min(MAX_SHARDS)
    })
}

/// The calling thread's shard, for a counter with `mask + 1` shards.
#[inline]
pub(crate) fn shard_index(mask: usize) -> usize {
    thread_seed() & mask
}

/// The calling thread's seed, below `MAX_SHARDS`: its shard in every
/// sharded counter is `seed & mask`.
#[inline]
pub(crate) fn thread_seed() -> usize {
    static NEXT_SEED: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SEED: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SEED.try_with(|seed| {
        let mut value = seed.get();
        if value == usize::MAX {
            // First use on this thread: take the next seed, round-robin,
            // so threads that start together land on different shards.
            value = NEXT_SEED.fetch_add(1, Ordering::Relaxed) & (MAX_SHARDS - 1);
            seed.set(value);
        }
        value
    })
    // The thread is exiting and its locals are gone: any shard is correct.
    .unwrap_or(0)
}

/// Pads a value to its own cache-line pair, so that writes to it do not
/// slow down threads reading its neighbours (or the other way round).
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// One `T` per shard of calling threads ([`shard_count`] of them), each
/// thread finding its own by its seed: the breaker's windows, the retry
/// budget's deposit slots, the shard handles.
pub(crate) struct Sharded<T> {
    items: Box<[T]>,
    mask: usize,
}

impl<T> Sharded<T> {
    /// [`shard_count`] values made by `make`.
    pub(crate) fn new(mut make: impl FnMut() -> T) -> Self {
        let count = shard_count();
        Self {
            items: (0..count).map(|_| make()).collect(),
            mask: count - 1,
        }
    }

    /// The calling thread's value.
    pub(crate) fn local(&self) -> &T {
        &self.items[shard_index(self.mask)]
    }
}

impl<T> Deref for Sharded<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<T: fmt::Debug> fmt::Debug for Sharded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.items.iter()).finish()
    }
}

/// A handle to a shared value for the calls of one shard of threads.
pub(crate) type ShardHandle<T> = Padded<Arc<T>>;

/// One [`ShardHandle`] per shard, for `'static` futures and permits that must keep
/// a shared value alive. Cloning one `Arc` per call from every thread makes
/// its reference count the one line all threads write; cloning the calling
/// thread's shard handle keeps that write on a line of the shard's own.
pub(crate) struct ShardHandles<T>(Sharded<Arc<ShardHandle<T>>>);

impl<T> ShardHandles<T> {
    /// [`shard_count`] shard handles to `value`.
    pub(crate) fn new(value: &Arc<T>) -> Self {
        Self(Sharded::new(|| Arc::new(Padded(Arc::clone(value)))))
    }

    /// The calling thread's shard handle.
    pub(crate) fn for_thread(&self) -> Arc<ShardHandle<T>> {
        Arc::clone(self.0.local())
    }

    /// The shared value itself, for reads that need no handle of their own.
    pub(crate) fn value(&self) -> &T {
        &self.0[0].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_counts_are_powers_of_two() {
        let n = shard_count();
        assert!(n.is_power_of_two() && n <= MAX_SHARDS);
        assert!(shard_index(n - 1) < n);
    }

    #[test]
    fn a_thread_keeps_its_seed() {
        assert_eq!(thread_seed(), thread_seed());
        assert!(thread_seed() < MAX_SHARDS);
    }
}
