//! The replica side: one endpoint's key in etcd, kept alive by a lease.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::Client;
use super::source::{next_delay, reconnect_backoff};
use super::{EtcdConfig, EtcdError};
use crate::{RegistryError, StaticEndpoint};

/// Registers one replica in etcd for as long as it lives: its endpoint's
/// JSON under `<prefix><id>`, attached to a lease of
/// [`lease_ttl`](EtcdConfig::lease_ttl).
///
/// A task keeps the lease alive (a keepalive every TTL/3, so two may be
/// lost before the key expires). When etcd says the lease is gone (it
/// expired while the replica was cut off, or etcd lost its data), the task
/// grants a new lease and writes the key again; while etcd cannot be
/// reached it retries with a delay that doubles up to
/// [`reconnect_max`](EtcdConfig::reconnect_max).
///
/// [`deregister`](Self::deregister) revokes the lease, so the key is gone
/// from etcd when it returns, and [`EtcdSource`](super::EtcdSource)s drop
/// the endpoint as soon as their watch sees the delete. Dropping the
/// registration revokes it too, best effort, on a task of the current
/// runtime. If the process dies, etcd deletes the key when the TTL runs out.
///
/// A key deleted by someone else while the lease is alive is not written
/// again until the lease is lost.
#[must_use = "dropping the registration deregisters the replica"]
pub struct EtcdRegistration {
    client: Client,
    key: Arc<str>,
    lease: Arc<Mutex<Option<i64>>>,
    registered: watch::Receiver<bool>,
    task: Option<JoinHandle<()>>,
}

impl EtcdRegistration {
    /// Starts registering `endpoint` under the config's prefix on a task of
    /// the current runtime; returns at once. Await
    /// [`registered`](Self::registered) for the key to be written.
    ///
    /// Refused if the config or the endpoint is invalid (the endpoint is
    /// validated as a [`StaticSource`](crate::StaticSource) validates it).
    pub fn start(config: &EtcdConfig, endpoint: &StaticEndpoint) -> Result<Self, EtcdError> {
        let client = Client::new(config)?;
        endpoint.to_endpoint()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| EtcdError::NoRuntime)?;
        let value = serde_json::to_vec(endpoint)
            .map_err(|_| RegistryError::field("endpoint", "cannot be written as JSON"))?;
        let key: Arc<str> = format!("{}{}", config.prefix, endpoint.id).into();
        let lease = Arc::new(Mutex::new(None));
        let (registered_tx, registered) = watch::channel(false);
        let keeper = Keeper {
            client: client.clone(),
            key: key.clone(),
            value,
            ttl: config.lease_ttl.as_secs(),
            lease: lease.clone(),
            registered: registered_tx,
            backoff: reconnect_backoff(config),
        };
        let task = runtime.spawn(keeper.run());
        Ok(Self {
            client,
            key,
            lease,
            registered,
            task: Some(task),
        })
    }

    /// The key this replica is registered under.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Resolves once the key is written under a live lease. Waits as long
    /// as etcd cannot be reached: bound it with `tokio::time::timeout`.
    pub async fn registered(&self) {
        let mut registered = self.registered.clone();
        if registered.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Whether the key is written under a lease that etcd confirmed at the
    /// last keepalive: `false` before the first registration, while
    /// keepalives fail (etcd unreachable) and until a lost lease is replaced.
    pub fn is_registered(&self) -> bool {
        *self.registered.borrow()
    }

    /// Stops keeping the key and revokes its lease: when this returns `Ok`,
    /// the key is gone from etcd. An error (etcd unreachable) leaves the
    /// key to expire with its TTL.
    pub async fn deregister(mut self) -> Result<(), EtcdError> {
        if let Some(task) = self.task.take() {
            task.abort();
            // The lease is final once the task is gone; a cancelled task's
            // error is the expected outcome.
            let _ = task.await;
        }
        let lease = lock(&self.lease).take();
        match lease {
            Some(id) => self.client.lease_revoke(id).await,
            None => Ok(()),
        }
    }
}

impl Drop for EtcdRegistration {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return; // deregistered
        };
        task.abort();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(key = %self.key, "registration dropped outside a runtime; its key expires with the lease");
            return;
        };
        let client = self.client.clone();
        let lease = self.lease.clone();
        let key = self.key.clone();
        runtime.spawn(async move {
            let _ = task.await;
            let lease = lock(&lease).take();
            if let Some(id) = lease
                && let Err(error) = client.lease_revoke(id).await
            {
                tracing::warn!(%key, %error, "cannot revoke the lease of a dropped registration; its key expires with the TTL");
            }
        });
    }
}

impl fmt::Debug for EtcdRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistration")
            .field("key", &self.key)
            .field("registered", &self.is_registered())
            .finish()
    }
}

fn lock(lease: &Mutex<Option<i64>>) -> MutexGuard<'_, Option<i64>> {
    lease.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registration's task.
struct Keeper {
    client: Client,
    key: Arc<str>,
    value: Vec<u8>,
    /// Whole seconds, at least 1 (validated).
    ttl: u64,
    /// The lease the key is attached to, for the revoke.
    lease: Arc<Mutex<Option<i64>>>,
    registered: watch::Sender<bool>,
    backoff: ExponentialBuilder,
}

impl Keeper {
    async fn run(self) {
        let period = Duration::from_secs(self.ttl) / 3;
        let mut delays = self.backoff.build();
        loop {
            let lease = match self.register().await {
                Ok(lease) => lease,
                Err(error) => {
                    let delay = next_delay(&mut delays, &self.backoff);
                    tracing::warn!(key = %self.key, %error, retry_in = ?delay, "cannot register in etcd");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            self.registered.send_replace(true);
            delays = self.backoff.build();
            tracing::info!(key = %self.key, lease, ttl = self.ttl, "registered in etcd");
            self.keep_alive(lease, period).await;
            self.registered.send_replace(false);
            *lock(&self.lease) = None;
        }
    }

    /// A new lease with the key written under it.
    async fn register(&self) -> Result<i64, EtcdError> {
        let lease = self.client.lease_grant(self.ttl).await?;
        // Recorded before the put: if the task is stopped during the put,
        // the revoke still finds the lease.
        *lock(&self.lease) = Some(lease);
        if let Err(error) = self.client.put(&self.key, &self.value, lease).await {
            // A lease without its key is useless; it would expire anyway.
            let _ = self.client.lease_revoke(lease).await;
            *lock(&self.lease) = None;
            return Err(error);
        }
        Ok(lease)
    }

    /// Keeps `lease` alive; returns once etcd says it is gone.
    async fn keep_alive(&self, lease: i64, period: Duration) {
        loop {
            tokio::time::sleep(period).await;
            match self.client.lease_keepalive(lease).await {
                Ok(ttl) if ttl > 0 => {
                    self.registered.send_replace(true);
                }
                Ok(_) => {
                    tracing::warn!(key = %self.key, lease, "etcd lost the lease; registering again");
                    return;
                }
                // The lease may still be alive: keep trying each period,
                // etcd answers "gone" once it is back if it expired.
                Err(error) => {
                    self.registered.send_replace(false);
                    tracing::warn!(key = %self.key, lease, %error, "etcd keepalive failed");
                }
            }
        }
    }
}
