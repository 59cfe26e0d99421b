//! A TCP connect probe (Kubernetes' `tcpSocket`): healthy when a connection
//! to the instance's announced address opens.

use std::net::SocketAddr;

use super::{Probe, ProbeOutcome, ProbeTarget};

/// Healthy when a TCP connection opens to the target's announced address,
/// or to a fixed address given with [`TcpProbe::at`]. Unknown while the
/// instance has announced no address.
#[derive(Debug, Clone, Default)]
pub struct TcpProbe {
    fixed: Option<SocketAddr>,
}

impl TcpProbe {
    /// Connects to the address the instance announced.
    pub const fn new() -> Self {
        Self { fixed: None }
    }

    /// Connects to `addr` whatever the instance announced.
    pub const fn at(addr: SocketAddr) -> Self {
        Self { fixed: Some(addr) }
    }
}

#[async_trait::async_trait]
impl Probe for TcpProbe {
    async fn check(&self, target: &ProbeTarget) -> ProbeOutcome {
        let Some(addr) = self.fixed.or(target.address) else {
            return ProbeOutcome::Unknown;
        };
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => ProbeOutcome::Healthy,
            Err(e) => {
                tracing::debug!(instance = %target.id, %addr, error = %e, "tcp probe failed");
                ProbeOutcome::Unhealthy
            }
        }
    }
}
