//! Per-request cost of the pickers and of passive health, for 16 and 1 000
//! endpoints, against nginx's O(n) loop as the baseline.
//!
//! Groups:
//! - `wrr/{16,1000}`: `SmoothWrr::pick` (precomputed cycle) for equal and
//!   mixed weights, `pick_where` with one slot refused, nginx's loop over
//!   the same weights, a bare table walk (the floor), and a rebuild.
//! - `maglev/{16,1000}`: `Maglev::lookup` and `lookup_where` with one
//!   slot refused; a table build.
//! - `health`: `EndpointStats::record` (success; failure), and
//!   `OutlierDetector::poll` when nothing is due.
//!
//! Run: `cargo bench --bench pick`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use orch::discovery::{
    EndpointId, Weight,
    health::{OutlierConfig, OutlierDetector},
    pick::{Maglev, SmoothWrr},
};
use tokio::time::Instant;

fn weights(n: usize, mixed: bool) -> Vec<Weight> {
    (0..n)
        .map(|i| Weight::new(if mixed { 1 + (i % 4) as u32 } else { 1 }).unwrap_or(Weight::ONE))
        .collect()
}

/// A pick as one word for `black_box`: an `Option<usize>` is two, and
/// `black_box` spills it through the stack, which costs more than the
/// pick (a store-forwarding stall) and would hide the picker's own cost.
#[inline(always)]
fn slot(pick: Option<usize>) -> usize {
    pick.unwrap_or(usize::MAX)
}

/// nginx's `ngx_http_upstream_get_peer` loop, the O(n) baseline.
struct Nginx {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl Nginx {
    fn new(weights: &[Weight]) -> Self {
        let weights: Vec<i64> = weights.iter().map(|w| i64::from(w.get())).collect();
        Self {
            total: weights.iter().sum(),
            current: vec![0; weights.len()],
            weights,
        }
    }

    fn pick(&mut self) -> usize {
        let mut best = 0;
        for i in 0..self.weights.len() {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        best
    }
}

fn wrr(c: &mut Criterion) {
    for n in [16, 1_000] {
        let mut g = c.benchmark_group(format!("wrr/{n}"));
        // The floor: a cursor over a table of `n`, with no picker around it.
        let table: Vec<u32> = (0..n as u32).collect();
        let mut cursor = 0;
        g.bench_function("bare table walk", |b| {
            b.iter(|| {
                let slot = table[cursor];
                cursor += 1;
                if cursor == table.len() {
                    cursor = 0;
                }
                black_box(slot)
            })
        });
        for mixed in [false, true] {
            let label = if mixed { "weights 1-4" } else { "equal weights" };
            let mut wrr = SmoothWrr::new(weights(n, mixed));
            g.bench_function(format!("SmoothWrr::pick, {label}"), |b| {
                b.iter(|| black_box(slot(wrr.pick())))
            });
            let mut nginx = Nginx::new(&weights(n, mixed));
            g.bench_function(format!("nginx loop, {label}"), |b| {
                b.iter(|| black_box(nginx.pick()))
            });
        }
        g.bench_function("SmoothWrr rebuild + first pick, weights 1-4", |b| {
            b.iter(|| black_box(slot(SmoothWrr::new(weights(n, true)).pick())))
        });
        let mut wrr = SmoothWrr::new(weights(n, true));
        g.bench_function("SmoothWrr::pick_where, one refused", |b| {
            b.iter(|| black_box(slot(wrr.pick_where(|s| s != 3))))
        });
        g.finish();
    }
}

fn maglev(c: &mut Criterion) {
    for n in [16, 1_000] {
        let mut g = c.benchmark_group(format!("maglev/{n}"));
        let ids: Vec<EndpointId> = (0..n).map(|i| EndpointId::from(format!("api-{i}"))).collect();
        let Ok(maglev) = Maglev::new(ids.iter().map(|id| (id, Weight::ONE))) else {
            panic!("the default table fits {n} endpoints");
        };
        g.bench_function("Maglev::new (rebuild, 65537 entries)", |b| {
            b.iter(|| black_box(Maglev::new(ids.iter().map(|id| (id, Weight::ONE))).map(|m| m.len())))
        });
        let mut key = 0_u64;
        g.bench_function("lookup", |b| {
            b.iter(|| {
                key = key.wrapping_add(1);
                black_box(slot(maglev.lookup(black_box(key))))
            })
        });
        g.bench_function("lookup_where, one refused", |b| {
            b.iter(|| {
                key = key.wrapping_add(1);
                black_box(slot(maglev.lookup_where(black_box(key), |s| s != 3)))
            })
        });
        g.finish();
    }
}

fn health(c: &mut Criterion) {
    let mut g = c.benchmark_group("health");
    let now = Instant::now();
    let Ok(mut detector) = OutlierDetector::new(OutlierConfig::default(), now) else {
        panic!("the default config is valid");
    };
    detector.set_endpoints((0..1_000).map(|i| EndpointId::from(format!("api-{i}"))), now);
    let stats = detector.stats(0).clone();
    g.bench_function("EndpointStats::record(true)", |b| {
        b.iter(|| stats.record(black_box(true)))
    });
    // Failures, reset by a success every 4 so the run never trips.
    let mut i = 0_u32;
    g.bench_function("EndpointStats::record(mixed 3 of 4 failed)", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            stats.record(black_box(i.is_multiple_of(4)))
        })
    });
    g.bench_function("OutlierDetector::poll, nothing due", |b| {
        b.iter(|| black_box(detector.poll(black_box(now)).len()))
    });
    g.finish();
}

criterion_group!(benches, wrr, maglev, health);
criterion_main!(benches);
