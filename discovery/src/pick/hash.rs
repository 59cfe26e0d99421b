//! Hashes that are the same in every process, on every run and every
//! platform, so two clients build the same Maglev table from the same ids.
//!
//! `std`'s `DefaultHasher` is randomly seeded per process, so it cannot be
//! used here. [`stable_hash`] is XXH64 (Yann Collet's xxHash, 64-bit
//! variant), the hash Envoy's Maglev uses (`HashUtil::xxHash64`), written
//! out from its specification and checked against its published test
//! vectors. [`mix64`] is MurmurHash3's 64-bit finaliser: a cheap bijection
//! that spreads a caller's key hash (which may be a small integer) over all
//! 64 bits before it is mapped onto a table.

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

/// XXH64 of `bytes` with `seed`: a fixed, seedable, well-mixed 64-bit hash.
///
/// The result depends only on the bytes and the seed (never on the process,
/// the run or the platform's endianness), so it may be stored or compared
/// across machines. Use it to hash request keys for
/// [`Maglev::lookup`](super::Maglev::lookup) when every client must send a
/// key to the same endpoint.
///
/// ```
/// use orch_discovery::pick::stable_hash;
/// assert_eq!(stable_hash(b"abc", 0), 0x44BC_2CF5_AD77_0999); // XXH64's test vector
/// ```
pub fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    let (stripes, mut rest) = bytes.as_chunks::<32>();
    let mut h = if stripes.is_empty() {
        seed.wrapping_add(P5)
    } else {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        for stripe in stripes {
            for (lane, word) in v.iter_mut().zip(stripe.as_chunks::<8>().0) {
                *lane = round(*lane, u64::from_le_bytes(*word));
            }
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = (h ^ round(0, lane)).wrapping_mul(P1).wrapping_add(P4);
        }
        h
    };
    h = h.wrapping_add(bytes.len() as u64);
    while let Some((word, tail)) = rest.split_first_chunk::<8>() {
        h ^= round(0, u64::from_le_bytes(*word));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = tail;
    }
    if let Some((word, tail)) = rest.split_first_chunk::<4>() {
        h ^= u64::from(u32::from_le_bytes(*word)).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = tail;
    }
    for &byte in rest {
        h ^= u64::from(byte).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// MurmurHash3's `fmix64`: a bijection on `u64` whose every output bit
/// depends on every input bit.
///
/// Used on lookup keys before they are scaled onto a table, so keys that
/// differ only in their low bits (sequential ids) still land far apart.
#[inline]
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

/// Maps a well-mixed hash onto `0..len` with a multiply and a shift
/// (Lemire's "fast range"), in place of a division.
#[inline]
pub(crate) fn scale(hash: u64, len: usize) -> usize {
    // The product of a u64 and a usize (at most 64 bits) fits in a u128,
    // and its high half is below `len`, so the cast back cannot truncate.
    ((u128::from(hash) * len as u128) >> 64) as usize
}

#[inline]
fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_test_vectors() {
        assert_eq!(stable_hash(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(stable_hash(b"a", 0), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(stable_hash(b"abc", 0), 0x44BC_2CF5_AD77_0999);
        assert_eq!(stable_hash(b"Hello, World!", 0), 0xC49A_ACF8_080F_E47F);
        assert_eq!(stable_hash(b"Hello, World!", 42), 0xC2E0_FE28_B251_2846);
        // 39 bytes: one 32-byte stripe, then the 8-, 4- and 1-byte tails.
        let long = b"Nobody inspects the spammish repetition";
        assert_eq!(stable_hash(long, 0), 0xFBCE_A83C_8A37_8BF1);
    }

    #[test]
    fn mix_spreads_small_keys_and_scale_stays_in_range() {
        let a = scale(mix64(1), 65_537);
        let b = scale(mix64(2), 65_537);
        assert_ne!(a, b);
        assert!(a < 65_537 && b < 65_537);
        assert_eq!(scale(u64::MAX, 7), 6);
        assert_eq!(scale(0, 7), 0);
    }
}
