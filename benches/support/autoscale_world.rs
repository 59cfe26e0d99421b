//! The simulated replica group of `benches/autoscale.rs`, one step per
//! simulated second, and what every contender observes of it.
//!
//! - Each replica serves [`CAPACITY`] work units a second once it is ready,
//!   [`STARTUP`] seconds after it was asked for. Work that finds no free
//!   capacity waits in a backlog (FIFO, served before new work).
//! - Scaling down removes the newest replicas first, so replicas still
//!   starting go before ready ones (as a ReplicaSet picks not-ready pods
//!   first).
//! - Utilisation is the busy share of the ready replicas' capacity, at most
//!   1 (a CPU cannot be busier than busy), as CPU utilisation is.
//! - The metrics pipeline of a Kubernetes cluster, modelled on
//!   metrics-server at its default resolution: every [`SCRAPE`] seconds a
//!   sample of the utilisation averaged over the [`SCRAPE`] seconds before
//!   it. HPA counts a pod as ready only when its sample covers a whole
//!   window after it became ready (its CPU rule for pods still starting),
//!   so "ready" in that view is the replicas ready at the window's start.
//! - In-process signals, read at any instant with no lag: the utilisation
//!   since the last evaluation (a busy-time counter) or in the last second
//!   (the busy share now), the backlog.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use orch::core::{
    ScaleError, ScaleStatus, Scaler,
    autoscale::{MetricSource, Reading},
};
use tokio::time::Instant;

/// Work units per second one ready replica serves.
pub const CAPACITY: f64 = 10.0;
/// Seconds from a replica's creation to its readiness.
pub const STARTUP: u64 = 30;
/// metrics-server's resolution: one utilisation sample every 15 s.
pub const SCRAPE: u64 = 15;
/// The longest stretch an in-process utilisation is averaged over.
pub const RECENT: usize = 15;

/// A change of the replica count.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// The simulated second it took effect.
    pub at: u64,
    /// Replicas before.
    pub from: usize,
    /// Replicas after.
    pub to: usize,
}

/// metrics-server's last sample.
#[derive(Debug, Clone, Copy)]
pub struct Scraped {
    /// Mean utilisation of the ready replicas over the window.
    pub utilisation: f64,
    /// The second it was taken (the window's end).
    pub at: u64,
}

/// The replica group, its backlog, its metrics and what happened to them.
#[derive(Debug)]
pub struct World {
    /// Seconds simulated so far: the current instant.
    now: u64,
    /// When each replica was asked for (negative: before the start), in
    /// order.
    created: Vec<i64>,
    backlog: f64,
    served_in_window: f64,
    ready_seconds_in_window: u64,
    scraped: Option<Scraped>,
    /// Served work and ready replicas of the last [`RECENT`] seconds.
    recent: VecDeque<(f64, u64)>,
    /// Every change of the count.
    pub events: Vec<Event>,
    /// Ready replicas in each simulated second.
    pub ready_log: Vec<u32>,
    /// Replicas asked for, summed over seconds (starting ones cost too).
    pub replica_seconds: u64,
    /// Seconds in which the demand exceeded the ready capacity.
    pub under_seconds: u64,
}

impl World {
    /// A group of `replicas`, all ready, at second 0.
    pub fn new(replicas: usize) -> Self {
        Self {
            now: 0,
            created: vec![-(STARTUP as i64); replicas],
            backlog: 0.0,
            served_in_window: 0.0,
            ready_seconds_in_window: 0,
            scraped: None,
            recent: VecDeque::with_capacity(RECENT),
            events: Vec::new(),
            ready_log: Vec::new(),
            replica_seconds: 0,
            under_seconds: 0,
        }
    }

    /// Replicas asked for.
    pub fn replicas(&self) -> usize {
        self.created.len()
    }

    /// Replicas ready at second `at` (of those that exist now).
    pub fn ready_at(&self, at: u64) -> usize {
        // Creation times are in order, so the ready replicas are a prefix.
        self.created
            .partition_point(|&created| created + STARTUP as i64 <= at as i64)
    }

    /// Replicas ready now.
    pub fn ready(&self) -> usize {
        self.ready_at(self.now)
    }

    /// metrics-server's last sample, and the replicas HPA counts as ready
    /// with it.
    pub fn scraped(&self) -> Option<(Scraped, usize)> {
        self.scraped
            .map(|s| (s, self.ready_at(s.at.saturating_sub(SCRAPE))))
    }

    /// The utilisation over the last `seconds` (at most [`RECENT`]), if
    /// a replica was ready in them: a busy-time counter read in-process.
    pub fn utilisation_over(&self, seconds: usize) -> Option<f64> {
        debug_assert!(seconds <= RECENT);
        let (served, ready) = self
            .recent
            .iter()
            .rev()
            .take(seconds)
            .fold((0.0, 0), |(s, r), &(served, ready)| (s + served, r + ready));
        (ready > 0).then(|| served / (CAPACITY * ready as f64))
    }

    /// Work waiting.
    pub fn backlog(&self) -> f64 {
        self.backlog
    }

    /// Asks for `replicas`: new ones start now, removed ones are the newest.
    pub fn scale_to(&mut self, replicas: usize) {
        let from = self.replicas();
        if replicas == from {
            return;
        }
        self.events.push(Event {
            at: self.now,
            from,
            to: replicas,
        });
        self.created.resize(replicas, self.now as i64);
    }

    /// Simulates the current second with `arrivals` work units arriving.
    pub fn step(&mut self, arrivals: f64) {
        let ready = self.ready();
        let capacity = ready as f64 * CAPACITY;
        let waiting = self.backlog + arrivals;
        let served = waiting.min(capacity);
        self.backlog = waiting - served;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((served, ready as u64));
        self.served_in_window += served;
        self.ready_seconds_in_window += ready as u64;
        self.ready_log.push(ready as u32);
        self.replica_seconds += self.replicas() as u64;
        if arrivals > capacity {
            self.under_seconds += 1;
        }
        self.now += 1;
        if self.now.is_multiple_of(SCRAPE) {
            // No ready replica in the window: no sample, the last one ages.
            if self.ready_seconds_in_window > 0 {
                self.scraped = Some(Scraped {
                    utilisation: self.served_in_window / (CAPACITY * self.ready_seconds_in_window as f64),
                    at: self.now,
                });
            }
            self.served_in_window = 0.0;
            self.ready_seconds_in_window = 0;
        }
    }
}

/// A [`World`] shared between the driver, the scaler and the sources.
#[derive(Debug, Clone)]
pub struct Shared {
    world: Arc<Mutex<World>>,
    /// The tokio instant of simulated second 0.
    origin: Instant,
}

impl Shared {
    /// `world`, whose second 0 is tokio's `origin`.
    pub fn new(world: World, origin: Instant) -> Self {
        Self {
            world: Arc::new(Mutex::new(world)),
            origin,
        }
    }

    /// The world, locked (never contended: the simulation is one task).
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("no panic while the world is locked")
    }

    /// The world, once nothing else holds it.
    pub fn into_inner(self) -> World {
        match Arc::try_unwrap(self.world) {
            Ok(world) => world.into_inner().expect("not poisoned"),
            Err(_) => panic!("the autoscaler still holds the world"),
        }
    }

    fn instant(&self, second: u64) -> Instant {
        self.origin + Duration::from_secs(second)
    }
}

/// Which replicas the autoscaler is told are ready.
#[derive(Debug, Clone, Copy)]
pub enum View {
    /// Those serving now (an in-process group).
    Serving,
    /// Those metrics-server has a whole sample of (what HPA counts).
    Scraped,
}

/// The [`Scaler`] orch drives: the simulated group.
#[derive(Debug, Clone)]
pub struct SimGroup(pub Shared, pub View);

#[async_trait::async_trait]
impl Scaler for SimGroup {
    async fn current(&self) -> Result<usize, ScaleError> {
        Ok(self.0.lock().replicas())
    }

    async fn scale_to(&self, replicas: usize) -> Result<(), ScaleError> {
        self.0.lock().scale_to(replicas);
        Ok(())
    }

    async fn status(&self) -> Result<ScaleStatus, ScaleError> {
        let world = self.0.lock();
        let ready = match self.1 {
            View::Serving => world.ready(),
            View::Scraped => world.scraped().map_or(0, |(_, counted)| counted),
        };
        Ok(ScaleStatus {
            desired: world.replicas(),
            ready,
        })
    }
}

/// What a [`MetricSource`] of the simulation reads.
#[derive(Debug, Clone, Copy)]
pub enum Signal {
    /// metrics-server's last utilisation sample, with its age.
    ScrapedUtilisation,
    /// The utilisation of the last this many seconds (the evaluation
    /// period: since the last evaluation; 1: now), read in-process.
    LiveUtilisation(usize),
    /// The backlog, read in-process.
    Backlog,
}

/// A signal of the simulated group as a [`MetricSource`].
#[derive(Debug, Clone)]
pub struct SimSource(pub Shared, pub Signal);

#[async_trait::async_trait]
impl MetricSource for SimSource {
    async fn sample(&self) -> Reading {
        let world = self.0.lock();
        let now = self.0.instant(world.now);
        match self.1 {
            Signal::ScrapedUtilisation => match world.scraped() {
                Some((s, _)) => Reading::Sample {
                    value: s.utilisation,
                    at: self.0.instant(s.at),
                },
                None => Reading::missing("no sample yet"),
            },
            Signal::LiveUtilisation(seconds) => match world.utilisation_over(seconds) {
                Some(value) => Reading::Sample { value, at: now },
                None => Reading::missing("no replica ready"),
            },
            Signal::Backlog => Reading::Sample {
                value: world.backlog(),
                at: now,
            },
        }
    }
}
