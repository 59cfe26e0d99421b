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
    sync::{
        OnceLock,
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
#[inline(always)]
pub(crate) fn shard_index(mask: usize) -> usize {
    thread_seed() & mask
}

/// The calling thread's seed, below `MAX_SHARDS`: its shard in every
/// sharded counter is `seed & mask`.
#[inline(always)]
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
