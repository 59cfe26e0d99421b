//! The demand trace of `benches/autoscale.rs`: a reproducible series of
//! work units per second, one value a simulated second, from a fixed seed.
//!
//! - A day/night pattern: a raised cosine from [`NIGHT`] at 04:00 to
//!   [`PEAK`] at 16:00.
//! - A known daily peak (the "lunch rush"): twice the pattern from 12:00 to
//!   12:30, every day, as a step. A schedule can know it; a metric cannot.
//! - [`SPIKES_PER_DAY`] unknown spikes a day: 3–5× the pattern for
//!   2–10 minutes, as steps, at random times that overlap neither each
//!   other nor the lunch rush.
//! - Noise: a slow component (AR(1) with a one-minute correlation time,
//!   σ 5 %) plus a per-second one (σ 3 %), multiplying the level.

/// Seconds in a day.
pub const DAY: u64 = 86_400;
/// Demand at 04:00, work units per second.
pub const NIGHT: f64 = 30.0;
/// Demand at 16:00, work units per second.
pub const PEAK: f64 = 180.0;
/// The lunch rush: from this second of the day, for [`LUNCH_LEN`], at
/// [`LUNCH_FACTOR`] times the pattern.
pub const LUNCH_START: u64 = 12 * 3600;
/// How long the lunch rush lasts.
pub const LUNCH_LEN: u64 = 30 * 60;
/// How much the lunch rush multiplies the pattern.
pub const LUNCH_FACTOR: f64 = 2.0;
/// Unknown spikes a day.
pub const SPIKES_PER_DAY: usize = 4;

/// A stretch of raised demand, known ahead (the lunch rush) or not.
#[derive(Debug, Clone, Copy)]
pub struct Spike {
    /// First second, counted from the trace's start.
    pub start: u64,
    /// Seconds.
    pub len: u64,
    /// Multiplier of the pattern.
    pub factor: f64,
    /// The daily lunch rush (a schedule may know it) rather than a random
    /// spike.
    pub known: bool,
}

impl Spike {
    fn overlaps(&self, other: &Self) -> bool {
        self.start < other.start + other.len && other.start < self.start + self.len
    }
}

/// Demand per simulated second.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Seconds since midnight of the first day at which the trace starts.
    pub offset: u64,
    /// What arrives in each second (work units), noise included.
    pub demand: Vec<f64>,
    /// The same without noise: what "enough capacity" is measured against.
    pub level: Vec<f64>,
    /// The spikes and lunch rushes, in order.
    pub spikes: Vec<Spike>,
}

impl Trace {
    /// `days` days from midnight, drawn from `seed`.
    pub fn generate(seed: u64, days: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let len = days * DAY;
        let mut spikes: Vec<Spike> = (0..days)
            .map(|d| Spike {
                start: d * DAY + LUNCH_START,
                len: LUNCH_LEN,
                factor: LUNCH_FACTOR,
                known: true,
            })
            .collect();
        for day in 0..days {
            let mut placed = 0;
            while placed < SPIKES_PER_DAY {
                let len = 120 + rng.below(481);
                let spike = Spike {
                    start: day * DAY + rng.below(DAY - len),
                    len,
                    factor: 3.0 + 2.0 * rng.unit(),
                    known: false,
                };
                // A quarter of an hour apart, so each spike's reaction is
                // measured from a settled group.
                let padded = Spike {
                    start: spike.start.saturating_sub(900),
                    len: spike.len + 1800,
                    ..spike
                };
                if spikes.iter().all(|s| !s.overlaps(&padded)) {
                    spikes.push(spike);
                    placed += 1;
                }
            }
        }
        spikes.sort_by_key(|s| s.start);
        let mut level: Vec<f64> = (0..len).map(|t| pattern(t % DAY)).collect();
        for spike in &spikes {
            for l in &mut level[spike.start as usize..(spike.start + spike.len) as usize] {
                *l *= spike.factor;
            }
        }
        let rho = (-1.0f64 / 60.0).exp();
        let mut slow = 0.0;
        let demand = level
            .iter()
            .map(|&l| {
                slow = rho * slow + (1.0 - rho * rho).sqrt() * rng.normal();
                (l * (1.0 + 0.05 * slow + 0.03 * rng.normal())).max(0.0)
            })
            .collect();
        Self {
            offset: 0,
            demand,
            level,
            spikes,
        }
    }

    /// The seconds `[from, to)` of this trace, with the spikes that start
    /// in them (cut at `to`).
    pub fn window(&self, from: u64, to: u64) -> Self {
        let spikes = self
            .spikes
            .iter()
            .filter(|s| (from..to).contains(&s.start))
            .map(|s| Spike {
                start: s.start - from,
                len: s.len.min(to - s.start),
                ..*s
            })
            .collect();
        let range = from as usize..to as usize;
        Self {
            offset: self.offset + from,
            demand: self.demand[range.clone()].to_vec(),
            level: self.level[range].to_vec(),
            spikes,
        }
    }

    /// Simulated seconds.
    pub fn len(&self) -> u64 {
        self.demand.len() as u64
    }
}

/// The day/night pattern at `second` of the day.
fn pattern(second: u64) -> f64 {
    let hours = second as f64 / 3600.0;
    let phase = std::f64::consts::TAU * (hours - 4.0) / 24.0;
    NIGHT + (PEAK - NIGHT) * (1.0 - phase.cos()) / 2.0
}

/// SplitMix64 (Steele, Lea and Flood): small, well mixed, seedable, so a
/// run repeats exactly.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `(0, 1]`.
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        self.next_u64() % n
    }

    /// Standard normal (Box–Muller, one of the pair).
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}
