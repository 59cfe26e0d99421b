//! The pickers' contracts: weights honoured, smooth order, eligibility,
//! Maglev's consistency, balance and determinism.
#![allow(clippy::unwrap_used, reason = "test helpers unwrap like the tests they serve")]

use orch_discovery::{
    EndpointId, Weight,
    pick::{Maglev, MaglevError, SmoothWrr, mix64, stable_hash},
};

fn w(weight: u32) -> Weight {
    Weight::new(weight).unwrap()
}

fn ids(n: usize) -> Vec<EndpointId> {
    (0..n).map(|i| EndpointId::from(format!("api-{i}"))).collect()
}

/// Picks `n` times, counting per slot.
fn counts(wrr: &mut SmoothWrr, n: usize) -> Vec<u64> {
    let mut counts = vec![0; wrr.len()];
    for _ in 0..n {
        counts[wrr.pick().unwrap()] += 1;
    }
    counts
}

/// Asserts every slot's share of `counts` is within `tolerance` (relative)
/// of its share of `weights`.
fn assert_shares(counts: &[u64], weights: &[u32], tolerance: f64) {
    let total: u64 = counts.iter().sum();
    let weight_total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    for (slot, (&count, &weight)) in counts.iter().zip(weights).enumerate() {
        let expected = total as f64 * f64::from(weight) / weight_total;
        let error = (count as f64 - expected).abs() / expected;
        assert!(
            error <= tolerance,
            "slot {slot}: {count} picks, expected {expected:.0} ({:.2} % off)",
            error * 100.0
        );
    }
}

// ===== SmoothWrr =====

#[test]
fn wrr_picks_in_proportion_to_weights() {
    let weights = [1, 2, 3, 5, 8, 13, 40];
    let mut wrr = SmoothWrr::new(weights.map(w));
    assert_shares(&counts(&mut wrr, 100_000), &weights, 0.02);

    // Many distinct weights: a cycle too long to precompute.
    let weights: Vec<u32> = (0..150).map(|i| 1 + (i * 7_919) % 997).collect();
    let mut wrr = SmoothWrr::new(weights.iter().map(|&x| w(x)));
    assert!(wrr.cycle_len() > 65_536);
    let picks = 2 * wrr.cycle_len() as usize;
    assert_shares(&counts(&mut wrr, picks), &weights, 0.0);
}

#[test]
fn wrr_is_exact_over_every_cycle() {
    let weights = [100, 200, 300, 50];
    let mut wrr = SmoothWrr::new(weights.map(w));
    assert_eq!(wrr.cycle_len(), 13); // divided by the gcd, 50
    for _ in 0..3 {
        assert_eq!(counts(&mut wrr, 13), [2, 4, 6, 1]);
    }
}

#[test]
fn wrr_interleaves_like_nginx() {
    let mut wrr = SmoothWrr::new([w(5), w(1), w(1)]);
    let names: String = (0..14)
        .map(|_| char::from(b'a' + wrr.pick().unwrap() as u8))
        .collect();
    assert_eq!(names, "aabacaaaabacaa");

    // One heavy endpoint among light ones: the heavy one every other pick
    // (give or take one), each light one once; no burst of either.
    let mut wrr = SmoothWrr::new(std::iter::once(w(100)).chain((0..100).map(|_| w(1))));
    let picks: Vec<usize> = (0..200).map(|_| wrr.pick().unwrap()).collect();
    let longest_run = |heavy: bool| {
        picks
            .split(|&p| (p == 0) != heavy)
            .map(<[usize]>::len)
            .max()
            .unwrap()
    };
    assert!(longest_run(true) <= 2 && longest_run(false) <= 2, "{picks:?}");
    assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 100);
}

#[test]
fn wrr_skips_slots_out_of_the_rotation() {
    let weights = [3, 1, 2, 2];
    let mut wrr = SmoothWrr::new(weights.map(w));
    wrr.set_eligible(0, false);
    let got = counts(&mut wrr, 10_000);
    assert_eq!(got[0], 0);
    assert_shares(&got[1..], &weights[1..], 0.0);
    // The rest stay smooth: 1, 2, 2 interleave.
    let picks: Vec<usize> = (0..10).map(|_| wrr.pick().unwrap()).collect();
    assert!(picks.windows(2).all(|p| p[0] != p[1] || p[0] != 1), "{picks:?}");

    wrr.set_eligible(0, true);
    assert_shares(&counts(&mut wrr, 8_000), &weights, 0.0);

    for slot in 0..4 {
        wrr.set_eligible(slot, false);
    }
    assert_eq!(wrr.pick(), None);
    assert_eq!(wrr.cycle_len(), 0);
    assert_eq!(SmoothWrr::new([]).pick(), None);
}

#[test]
fn wrr_pick_where_gives_refused_turns_to_the_others() {
    let weights = [4, 1, 1, 2];
    let mut wrr = SmoothWrr::new(weights.map(w));
    let mut got = [0_u64; 4];
    for _ in 0..8_000 {
        got[wrr.pick_where(|slot| slot != 0).unwrap()] += 1;
    }
    assert_eq!(got[0], 0);
    // Slot 0's turns pass to whoever follows it in the cycle, so the others
    // keep their relative shares (exactly, here).
    assert_shares(&got[1..], &weights[1..], 0.05);
    assert_eq!(got.iter().sum::<u64>(), 8_000);

    // Refusing all but the lightest slot still finds it.
    assert_eq!(wrr.pick_where(|slot| slot == 2), Some(2));
    assert_eq!(wrr.pick_where(|_| false), None);
}

#[test]
fn wrr_weight_changes_take_effect_at_the_next_pick() {
    let mut wrr = SmoothWrr::new([w(1), w(1)]);
    assert_shares(&counts(&mut wrr, 1_000), &[1, 1], 0.0);
    wrr.set_weight(1, w(3));
    assert_shares(&counts(&mut wrr, 4_000), &[1, 3], 0.0);
    wrr.set_weights([w(1), w(1), w(2)]);
    assert_eq!(wrr.len(), 3);
    assert!(wrr.is_eligible(2));
    assert_eq!(wrr.weight(2), w(2));
    assert_shares(&counts(&mut wrr, 4_000), &[1, 1, 2], 0.0);
}

// ===== Maglev =====

fn table(ids: &[EndpointId], weights: impl Fn(usize) -> u32) -> Maglev {
    Maglev::new(ids.iter().enumerate().map(|(i, id)| (id, w(weights(i))))).unwrap()
}

/// The id of every entry.
fn owners<'a>(maglev: &Maglev, ids: &'a [EndpointId]) -> Vec<&'a EndpointId> {
    maglev.entries().map(|slot| &ids[slot]).collect()
}

#[test]
fn maglev_removing_one_of_n_moves_little_more_than_its_keys() {
    for n in [5, 10, 37, 100] {
        let all = ids(n);
        let before = owners(&table(&all, |_| 1), &all);
        for removed in [0, n / 2, n - 1] {
            let mut rest = all.clone();
            rest.remove(removed);
            let after = owners(&table(&rest, |_| 1), &rest);
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
            let moved = moved as f64 / before.len() as f64;
            assert!(
                moved <= 1.0 / n as f64 + 0.02,
                "n = {n}, removed {removed}: {:.2} % of keys moved",
                moved * 100.0
            );
        }
    }
}

#[test]
fn maglev_adding_one_moves_little_more_than_its_share() {
    let all = ids(21);
    let before = owners(&table(&all[..20], |_| 1), &all);
    let after = owners(&table(&all, |_| 1), &all);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count() as f64 / before.len() as f64;
    assert!(moved <= 1.0 / 21.0 + 0.02, "{:.2} % moved", moved * 100.0);
}

#[test]
fn maglev_balances_equal_weights_within_five_percent() {
    for n in [3, 10, 100, 500] {
        let all = ids(n);
        let maglev = table(&all, |_| 1);
        let mut entries = vec![0_u64; n];
        maglev.entries().for_each(|slot| entries[slot] += 1);
        assert_shares(&entries, &vec![1; n], 0.05);
    }
    // And by keys, not only by entries.
    let all = ids(10);
    let maglev = table(&all, |_| 1);
    let mut keys = vec![0_u64; 10];
    for key in 0..200_000_u64 {
        keys[maglev.lookup(key).unwrap()] += 1;
    }
    assert_shares(&keys, &[1; 10], 0.05);
}

#[test]
fn maglev_honours_weights() {
    let weights = [1, 2, 3, 4, 10];
    let all = ids(weights.len());
    let maglev = table(&all, |i| weights[i]);
    let mut entries = vec![0_u64; weights.len()];
    maglev.entries().for_each(|slot| entries[slot] += 1);
    assert_shares(&entries, &weights, 0.02);
}

#[test]
fn maglev_tables_depend_only_on_ids_and_weights() {
    let all = ids(50);
    let a = table(&all, |i| 1 + i as u32 % 3);
    let b = table(&all, |i| 1 + i as u32 % 3);
    assert!(a.entries().eq(b.entries()));

    // The same endpoints in another slot order map keys to the same ids.
    let mut reversed = all.clone();
    reversed.reverse();
    let c = table(&reversed, |i| 1 + (49 - i) as u32 % 3);
    assert_eq!(owners(&a, &all), owners(&c, &reversed));

    // Pinned: the table is the same on every machine and in every release
    // (a change here remaps keys for every user).
    let three = ids(3);
    let small = Maglev::with_table_size(three.iter().map(|id| (id, Weight::ONE)), 13).unwrap();
    let pinned: Vec<usize> = small.entries().collect();
    assert_eq!(pinned, PINNED_13);
}

/// The 13-entry table of `api-0`, `api-1`, `api-2` (weight 1).
const PINNED_13: [usize; 13] = [1, 2, 2, 1, 2, 0, 0, 2, 0, 1, 1, 0, 0];

#[test]
fn maglev_lookup_where_moves_only_the_refused_slots_keys() {
    let all = ids(8);
    let maglev = table(&all, |_| 1);
    let ejected = 3;
    let mut moved_to = [0_u64; 8];
    for key in 0..80_000_u64 {
        let home = maglev.lookup(key).unwrap();
        let now = maglev.lookup_where(key, |slot| slot != ejected).unwrap();
        if home == ejected {
            moved_to[now] += 1;
            // Deterministic: the same key goes to the same stand-in.
            assert_eq!(maglev.lookup_where(key, |slot| slot != ejected), Some(now));
        } else {
            assert_eq!(now, home, "key {key} moved although its endpoint is eligible");
        }
    }
    assert_eq!(moved_to[ejected], 0);
    // Spread over the other seven, roughly evenly.
    let others: Vec<u64> = (0..8).filter(|&s| s != ejected).map(|s| moved_to[s]).collect();
    assert_shares(&others, &[1; 7], 0.06);

    assert_eq!(maglev.lookup_where(1, |slot| slot == 5), Some(5));
    assert_eq!(maglev.lookup_where(1, |_| false), None);
}

#[test]
fn maglev_rejects_bad_table_sizes() {
    let all = ids(20);
    let of = |size| Maglev::with_table_size(all.iter().map(|id| (id, Weight::ONE)), size).map(|_| ());
    assert_eq!(of(65_536), Err(MaglevError::NotPrime(65_536)));
    assert_eq!(of(1), Err(MaglevError::NotPrime(1)));
    assert_eq!(
        of(19),
        Err(MaglevError::TooSmall {
            table_size: 19,
            endpoints: 20
        })
    );
    assert_eq!(of(5_000_012), Err(MaglevError::TooLarge(5_000_012)));
    assert!(of(23).is_ok());
    assert!(of(5_000_011).is_ok());
    assert!(of(65_536).unwrap_err().to_string().contains("not a prime"));
}

#[test]
fn maglev_without_endpoints_answers_none() {
    let maglev = Maglev::new([]).unwrap();
    assert!(maglev.is_empty());
    assert_eq!(maglev.table_size(), Maglev::DEFAULT_TABLE_SIZE);
    assert_eq!(maglev.lookup(7), None);
    assert_eq!(maglev.lookup_where(7, |_| true), None);
    assert_eq!(maglev.entries().len(), 0);
}

#[test]
fn stable_hashes_are_fixed() {
    assert_eq!(stable_hash(b"", 0), 0xEF46_DB37_51D8_E999);
    assert_ne!(stable_hash(b"api-1", 0), stable_hash(b"api-1", 1));
    assert_ne!(mix64(1), mix64(2));
    assert_eq!(mix64(0), 0);
}
