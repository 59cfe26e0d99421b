//! Publishing a registry into etcd: how a process's own replicas become
//! visible to clients on other machines.
//!
//! A process that supervises its replicas already has them in a
//! [`Registry`] (a [`SupervisorSource`](crate::SupervisorSource) puts each
//! instance there once it is ready and takes it out as soon as it is not).
//! [`EtcdPublisher`] mirrors that registry into etcd: one
//! [`EtcdRegistration`] per endpoint, so an instance that becomes ready is
//! registered, one that changes is registered with its new value, and one
//! that stops being ready, stops or crashes is deregistered at once.

use std::collections::HashMap;

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{EtcdConfig, EtcdError, EtcdRegistration};
use crate::{EndpointChange, EndpointId, Registry, StaticEndpoint};

/// Mirrors a [`Registry`] into etcd under a prefix: one
/// [`EtcdRegistration`] per endpoint, registered when it enters the
/// registry, registered again when it changes, deregistered when it
/// leaves.
///
/// ```no_run
/// use orch_discovery::Registry;
/// use orch_discovery::source::etcd::{EtcdConfig, EtcdPublisher};
///
/// # async fn run(local: Registry) -> Result<(), Box<dyn std::error::Error>> {
/// // `local` is fed by a SupervisorSource over this process's replicas.
/// let config = EtcdConfig::new(["http://127.0.0.1:2379"], "/orch/services/orders/");
/// let publisher = EtcdPublisher::new(&config)?.start(&local)?;
/// // ... serve ...
/// publisher.stop().await; // before the replicas stop: every key is revoked
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct EtcdPublisher {
    config: EtcdConfig,
}

/// The running mirror. [`stop`](Self::stop) deregisters every endpoint and
/// waits for it; dropping the guard stops the mirror and revokes each
/// registration best effort (as a dropped [`EtcdRegistration`] does).
#[derive(Debug)]
#[must_use = "dropping the guard stops publishing and deregisters every endpoint"]
pub struct EtcdPublisherGuard {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl EtcdPublisher {
    /// A publisher under the config's prefix; refused if the config is
    /// invalid.
    pub fn new(config: &EtcdConfig) -> Result<Self, EtcdError> {
        config.validate()?;
        Ok(Self {
            config: config.clone(),
        })
    }

    /// Starts mirroring `registry` on a task of the current runtime: every
    /// endpoint in it now, then every change.
    pub fn start(self, registry: &Registry) -> Result<EtcdPublisherGuard, EtcdError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| EtcdError::NoRuntime)?;
        let (stop, stopped) = oneshot::channel();
        let task = runtime.spawn(mirror(self.config, registry.clone(), stopped));
        Ok(EtcdPublisherGuard {
            stop: Some(stop),
            task,
        })
    }
}

impl EtcdPublisherGuard {
    /// Stops mirroring and deregisters every endpoint it registered: when
    /// this returns, their keys are gone from etcd (or, where etcd could
    /// not be reached, left to expire with their leases).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The task ends once every deregistration is done; a panic in it
        // has already been reported by the runtime.
        let _ = (&mut self.task).await;
    }
}

impl Drop for EtcdPublisherGuard {
    fn drop(&mut self) {
        if self.stop.is_some() {
            // Not stopped: the registrations are dropped with the task,
            // each revoking its lease on a task of its own.
            self.task.abort();
        }
    }
}

/// Follows `registry`'s changes into registrations until told to stop or
/// the registry is gone.
async fn mirror(config: EtcdConfig, registry: Registry, mut stopped: oneshot::Receiver<()>) {
    let mut changes = registry.changes();
    drop(registry);
    let mut published: HashMap<EndpointId, EtcdRegistration> = HashMap::new();
    loop {
        let change = tokio::select! {
            _ = &mut stopped => break,
            change = changes.next() => match change {
                Some(change) => change,
                None => break,
            },
        };
        match change {
            EndpointChange::Insert(endpoint) | EndpointChange::Update(endpoint) => {
                let id = endpoint.id().clone();
                match EtcdRegistration::start(&config, &StaticEndpoint::from(&endpoint)) {
                    Ok(registration) => {
                        // An update: the old lease goes. Its key is the new
                        // registration's once that has written it; if the
                        // revoke comes first, the key is missing until then.
                        if let Some(old) = published.insert(id.clone(), registration)
                            && let Err(error) = old.deregister().await
                        {
                            tracing::debug!(endpoint = %id, %error, "old lease not revoked; it expires");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(endpoint = %id, %error, "endpoint not published to etcd");
                    }
                }
            }
            EndpointChange::Remove(id) => {
                if let Some(registration) = published.remove(&id)
                    && let Err(error) = registration.deregister().await
                {
                    tracing::warn!(endpoint = %id, %error, "deregistration failed; the key expires with its lease");
                }
            }
        }
    }
    for (id, registration) in published {
        if let Err(error) = registration.deregister().await {
            tracing::warn!(endpoint = %id, %error, "deregistration failed; the key expires with its lease");
        }
    }
}
