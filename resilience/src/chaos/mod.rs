//! Fault injection for chaos tests: a `tower` layer that adds latency,
//! fails or drops requests, by probability and on a schedule, reproducibly
//! from a seed.
//!
//! Put it where a fault would happen: inside a server (its handlers slow
//! or failing), or on a client below the resilience stack (the network
//! slow or lossy), and check that what is above it copes: retries
//! recover, breakers open, timeouts fire, nothing is lost twice.
//!
//! ```
//! use std::time::Duration;
//! use orch_resilience::chaos::{ErrorFault, FaultConfig, LatencyFault};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let faults = FaultConfig {
//!     seed: 7,
//!     latency: Some(LatencyFault { probability: 0.5, min: Duration::from_millis(10), max: Duration::from_millis(50) }),
//!     error: Some(ErrorFault { probability: 0.2 }),
//!     ..FaultConfig::default()
//! }
//! .build()
//! .unwrap();
//! let service = faults.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n * 2) }));
//! let mut failed = 0;
//! for n in 0..100 {
//!     if service.clone().oneshot(n).await.is_err() {
//!         failed += 1;
//!     }
//! }
//! assert!((5..40).contains(&failed), "about a fifth fail: {failed}");
//! # }
//! ```

mod config;
mod future;
mod layer;

pub use config::{DropFault, ErrorFault, FaultConfig, FaultSchedule, LatencyFault};
pub use future::FaultFuture;
pub use layer::{FaultLayer, Faulty, Inject, InjectError, InjectResponse, InjectedFault};
