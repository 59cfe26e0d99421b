//! A gRPC health probe (Kubernetes' `grpc` probe): asks the instance's
//! `grpc.health.v1.Health/Check` through tonic-health's client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{Probe, ProbeOutcome, ProbeTarget};
use crate::InstanceId;

/// A channel unused this long is dropped the next time a channel is made,
/// so instances removed by a scale-down do not hold channels for ever.
const IDLE_CHANNEL: Duration = Duration::from_secs(10 * 60);

/// Healthy when the instance's `grpc.health.v1.Health/Check` answers
/// `SERVING` for the probe's service; unknown while the instance has
/// announced no address.
///
/// Like Kubernetes' `grpc` probe, everything else is unhealthy:
/// `NOT_SERVING`, `SERVICE_UNKNOWN` (the server does not know the service),
/// `UNKNOWN`, any RPC error including `UNIMPLEMENTED` (the server has no
/// health service), a connection that cannot be made, or no answer within
/// the [`ProbeSpec`](crate::ProbeSpec)'s timeout.
///
/// The probe keeps one HTTP/2 channel per instance and reuses it from check
/// to check; a new incarnation (generation) or a new address gets a new
/// channel. The channel connects lazily, so the connection is made inside
/// the check and counts against its timeout.
///
/// ```
/// use std::time::Duration;
/// use orch_core::{GrpcHealthProbe, ProbeSpec};
///
/// let whole_server = ProbeSpec::new(GrpcHealthProbe::new()).period(Duration::from_secs(2));
/// let payments = ProbeSpec::new(GrpcHealthProbe::service("payments.v1.Payments"));
/// # let _ = (whole_server, payments);
/// ```
#[derive(Debug, Default)]
pub struct GrpcHealthProbe {
    service: String,
    fixed: Option<SocketAddr>,
    channels: Mutex<HashMap<InstanceId, Cached>>,
}

#[derive(Debug)]
struct Cached {
    generation: u64,
    addr: SocketAddr,
    channel: Channel,
    used: Instant,
}

impl GrpcHealthProbe {
    /// Checks the whole server (service name `""`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks one service by its fully qualified name
    /// (`package.Service`), as registered with the server's health reporter.
    pub fn service(name: impl Into<String>) -> Self {
        Self {
            service: name.into(),
            ..Self::default()
        }
    }

    /// Checks `addr` whatever the instance announced.
    pub fn at(mut self, addr: SocketAddr) -> Self {
        self.fixed = Some(addr);
        self
    }

    /// The service name this probe asks about (`""` = the whole server).
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// The channel for this incarnation at `addr`, made if there is none.
    fn channel(&self, target: &ProbeTarget, addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
        let now = Instant::now();
        // The lock is never held across an await, and nothing in it panics.
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(c) = channels.get_mut(&target.id)
            && c.generation == target.generation
            && c.addr == addr
        {
            c.used = now;
            return Ok(c.channel.clone());
        }
        channels.retain(|_, c| now.saturating_duration_since(c.used) < IDLE_CHANNEL);
        let channel = Endpoint::from_shared(format!("http://{addr}"))?.connect_lazy();
        channels.insert(
            target.id.clone(),
            Cached {
                generation: target.generation,
                addr,
                channel: channel.clone(),
                used: now,
            },
        );
        Ok(channel)
    }
}

#[async_trait::async_trait]
impl Probe for GrpcHealthProbe {
    async fn check(&self, target: &ProbeTarget) -> ProbeOutcome {
        let Some(addr) = self.fixed.or(target.address) else {
            return ProbeOutcome::Unknown;
        };
        let channel = match self.channel(target, addr) {
            Ok(channel) => channel,
            Err(e) => {
                tracing::debug!(instance = %target.id, %addr, error = %e, "grpc probe: bad endpoint");
                return ProbeOutcome::Unhealthy;
            }
        };
        let request = HealthCheckRequest {
            service: self.service.clone(),
        };
        match HealthClient::new(channel).check(request).await {
            Ok(response) => {
                let status = response.into_inner().status();
                if status == ServingStatus::Serving {
                    ProbeOutcome::Healthy
                } else {
                    tracing::debug!(instance = %target.id, %addr, service = %self.service, ?status, "grpc probe: not serving");
                    ProbeOutcome::Unhealthy
                }
            }
            Err(status) => {
                tracing::debug!(instance = %target.id, %addr, service = %self.service, code = ?status.code(), message = status.message(), "grpc probe failed");
                ProbeOutcome::Unhealthy
            }
        }
    }
}
