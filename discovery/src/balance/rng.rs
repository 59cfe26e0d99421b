//! The balancer's random numbers: a tiny seedable generator, not a crypto one.
//!
//! P2C needs two small random indices per request, so the generator must cost
//! a couple of nanoseconds and live inside the balancer (no thread-local
//! lookup, no lock). wyrand (Wang Yi's generator, as used by `fastrand`) is
//! one add and one 64×64→128 multiply per number and passes BigCrush; a fixed
//! seed makes picks reproducible in tests.

use std::hash::{BuildHasher, Hasher};

/// wyrand: a 64-bit state advanced by a constant, mixed by one wide multiply.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub(crate) const fn seeded(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded from the process's random hasher keys (the same
    /// entropy source as `HashMap`), different for every balancer.
    pub(crate) fn from_entropy() -> Self {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5eed);
        Self::seeded(hasher.finish())
    }

    /// The next 64 random bits.
    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// A number in `[0, 1)`.
    #[inline]
    pub(crate) fn next_f64(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Maps 32 random bits onto `[0, n)` without a division (Lemire's
/// multiply-shift; the bias is at most `n / 2^32`, far below what P2C notices).
#[inline]
pub(crate) fn below(random32: u32, n: usize) -> usize {
    debug_assert!(
        n > 0 && n <= u32::MAX as usize,
        "range must be non-empty and fit in u32"
    );
    ((u64::from(random32) * n as u64) >> 32) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_the_sequence_and_indices_stay_in_range() {
        let (mut a, mut b) = (Rng::seeded(7), Rng::seeded(7));
        for _ in 0..1_000 {
            let x = a.next_u64();
            assert_eq!(x, b.next_u64());
            assert!(below(x as u32, 3) < 3);
            let f = a.next_f64();
            assert!((0.0..1.0).contains(&f));
            b.next_u64();
        }
        assert_ne!(Rng::from_entropy().next_u64(), Rng::from_entropy().next_u64());
    }

    #[test]
    fn indices_are_roughly_uniform() {
        let mut rng = Rng::seeded(1);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[below(rng.next_u64() as u32, 10)] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)), "{counts:?}");
    }
}
