//! A real broker as an autoscaling signal: how much work a NATS JetStream
//! durable consumer has not finished, read from the server's consumer info
//! (`$JS.API.CONSUMER.INFO`), the number KEDA's NATS JetStream scaler
//! reads. A [`QueueBacklog`](super::QueueBacklog) policy on it sizes the
//! workers that pull from that consumer.

use std::{fmt, time::Duration};

use async_nats::{
    connection::State,
    jetstream::{self, context::ConsumerInfoErrorKind},
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{AutoscaleError, MetricSource, Reading};

/// Which consumer to read and how: a plain serde struct, loadable with the
/// rest of a service's configuration, validated by
/// [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use orch_core::autoscale::JetStreamPendingConfig;
///
/// let config: JetStreamPendingConfig = serde_json::from_str(
///     r#"{ "stream": "JOBS", "consumer": "workers", "timeout": "500ms" }"#,
/// )?;
/// assert!(config.include_ack_pending);
/// assert_eq!(config.timeout, Duration::from_millis(500));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JetStreamPendingConfig {
    /// The stream the consumer reads.
    pub stream: String,
    /// The durable consumer's name.
    pub consumer: String,
    /// Whether messages delivered but not yet acknowledged count (default
    /// `true`). A worker holding a message is still work: leaving them out
    /// would let a group whose every replica is busy on a long job read a
    /// backlog of zero and scale itself away under that work. Turn it off
    /// for a consumer whose ack pending count says nothing about load (a
    /// consumer that acknowledges on receipt, or one with a long
    /// `ack_wait` that crashed workers leave full).
    #[serde(default = "include_by_default")]
    pub include_ack_pending: bool,
    /// How long one reading may take before it is missing (default 2 s).
    /// The autoscaler waits for every source in each evaluation, so a hung
    /// server must not hold it longer than this.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

const fn include_by_default() -> bool {
    true
}

const fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

impl JetStreamPendingConfig {
    /// Reads `consumer` on `stream`, ack pending included, 2 s timeout.
    pub fn new(stream: impl Into<String>, consumer: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            consumer: consumer.into(),
            include_ack_pending: include_by_default(),
            timeout: default_timeout(),
        }
    }

    /// Sets whether delivered, unacknowledged messages count.
    pub fn include_ack_pending(mut self, include: bool) -> Self {
        self.include_ack_pending = include;
        self
    }

    /// Sets how long one reading may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks every field; the error names the first wrong one.
    pub fn validate(&self) -> Result<(), AutoscaleError> {
        jetstream_name("stream", &self.stream)?;
        jetstream_name("consumer", &self.consumer)?;
        if self.timeout.is_zero() {
            return Err(AutoscaleError::field("timeout", "must be greater than zero"));
        }
        Ok(())
    }

    /// The source over `context` (or a [`Client`](async_nats::Client),
    /// through [`jetstream::new`]). Nothing is sent before the first
    /// [`sample`](MetricSource::sample): a consumer that does not exist
    /// yet reads as missing, not as a build error.
    pub fn build(self, context: jetstream::Context) -> Result<JetStreamPending, AutoscaleError> {
        self.validate()?;
        Ok(JetStreamPending {
            context,
            config: self,
        })
    }
}

/// The names JetStream accepts for streams and consumers: the subjects of
/// its API embed them as single tokens.
fn jetstream_name(field: &str, name: &str) -> Result<(), AutoscaleError> {
    if name.is_empty() {
        return Err(AutoscaleError::field(field, "must not be empty"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| c.is_ascii_whitespace() || matches!(c, '.' | '*' | '>'))
    {
        return Err(AutoscaleError::field(
            field,
            format!("{name:?} has {bad:?}; JetStream names have no whitespace, '.', '*' or '>'"),
        ));
    }
    Ok(())
}

/// The work a NATS JetStream durable consumer has not finished, as a
/// [`MetricSource`]: its `num_pending` (in the stream, not yet delivered)
/// plus, unless turned off, its `num_ack_pending` (delivered, not yet
/// acknowledged).
///
/// Each [`sample`](MetricSource::sample) is one request to the server,
/// bounded by the configured timeout. Every failure is a
/// [`Reading::Missing`] whose reason names what failed: a client that is
/// not connected (answered at once, without waiting), a stream or a
/// consumer that does not exist, a server that does not answer in time.
/// The policies hold the replica count on a missing reading; they never
/// scale down on one.
///
/// Build the client with
/// [`retry_on_initial_connect`](async_nats::ConnectOptions::retry_on_initial_connect)
/// if the service should start while NATS is down: the source reads
/// missing until the client connects.
///
/// ```no_run
/// use std::time::Duration;
/// use orch_core::autoscale::{AutoscalerConfig, JetStreamPending, QueueBacklog};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let pending = JetStreamPending::new(async_nats::jetstream::new(client), "JOBS", "workers")?;
/// let config = AutoscalerConfig::default()
///     .replicas(0, 20)
///     .evaluation_period(Duration::from_secs(5))
///     .policy(QueueBacklog::new("jobs", 50.0));
/// // Autoscaler::builder(config).source("jobs", pending).scaler(group).build()?
/// # let _ = (pending, config);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct JetStreamPending {
    context: jetstream::Context,
    config: JetStreamPendingConfig,
}

impl fmt::Debug for JetStreamPending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamPending")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl JetStreamPending {
    /// Reads `consumer` on `stream` through `context`, with the defaults of
    /// [`JetStreamPendingConfig::new`]; the error names a name JetStream
    /// would refuse.
    pub fn new(
        context: jetstream::Context,
        stream: impl Into<String>,
        consumer: impl Into<String>,
    ) -> Result<Self, AutoscaleError> {
        JetStreamPendingConfig::new(stream, consumer).build(context)
    }

    /// What it reads and how.
    pub fn config(&self) -> &JetStreamPendingConfig {
        &self.config
    }

    /// The JetStream context it asks.
    pub fn get_ref(&self) -> &jetstream::Context {
        &self.context
    }

    async fn pending(&self) -> Result<f64, String> {
        let JetStreamPendingConfig { stream, consumer, .. } = &self.config;
        // A client that is not connected queues requests until it is; the
        // answer is known now, so give it now rather than at the timeout.
        match self.context.client().connection_state() {
            State::Connected => {}
            State::Pending => {
                return Err("the NATS client is not connected: it has not connected yet".to_owned());
            }
            State::Disconnected => {
                return Err(
                    "the NATS client is not connected: it lost its connection and is reconnecting".to_owned(),
                );
            }
        }
        let info = async {
            // No request here: the names were checked at build.
            let stream_handle = self
                .context
                .get_stream_no_info(stream)
                .await
                .map_err(|e| format!("stream {stream:?}: {e}"))?;
            stream_handle
                .consumer_info(consumer)
                .await
                .map_err(|e| match e.kind() {
                    ConsumerInfoErrorKind::StreamNotFound => {
                        format!("stream {stream:?} does not exist")
                    }
                    ConsumerInfoErrorKind::NotFound => {
                        format!("consumer {consumer:?} does not exist on stream {stream:?}")
                    }
                    ConsumerInfoErrorKind::NoResponders => {
                        "no JetStream answered (is JetStream enabled on the server?)".to_owned()
                    }
                    _ => format!("consumer {consumer:?} on stream {stream:?}: {e}"),
                })
        };
        let info = tokio::time::timeout(self.config.timeout, info)
            .await
            .map_err(|_| {
                format!(
                    "consumer {consumer:?} on stream {stream:?}: no answer within {:?}",
                    self.config.timeout
                )
            })??;
        let ack_pending = if self.config.include_ack_pending {
            info.num_ack_pending as u64
        } else {
            0
        };
        Ok(info.num_pending.saturating_add(ack_pending) as f64)
    }
}

#[async_trait]
impl MetricSource for JetStreamPending {
    async fn sample(&self) -> Reading {
        match self.pending().await {
            // Stamped on arrival: the server's count is at most one round
            // trip older than this.
            Ok(value) => Reading::Sample {
                value,
                at: Instant::now(),
            },
            Err(reason) => {
                tracing::debug!(
                    stream = %self.config.stream,
                    consumer = %self.config.consumer,
                    %reason,
                    "jetstream pending: no reading"
                );
                Reading::Missing { reason }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_jetstream_refuses_are_field_errors() {
        let cases = [
            (JetStreamPendingConfig::new("", "c"), "stream"),
            (JetStreamPendingConfig::new("jobs.eu", "c"), "stream"),
            (JetStreamPendingConfig::new("jobs", "all>"), "consumer"),
            (JetStreamPendingConfig::new("jobs", "a b"), "consumer"),
            (
                JetStreamPendingConfig::new("jobs", "c").timeout(Duration::ZERO),
                "timeout",
            ),
        ];
        for (config, field) in cases {
            match config.validate() {
                Err(AutoscaleError::InvalidField { field: named, .. }) => {
                    assert_eq!(named, field, "{config:?}");
                }
                other => panic!("{config:?}: expected an error on {field}, got {other:?}"),
            }
        }
        assert!(
            JetStreamPendingConfig::new("JOBS", "workers-1")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn the_defaults_count_work_in_hand_and_bound_a_reading() {
        let config: JetStreamPendingConfig =
            serde_json::from_str(r#"{ "stream": "JOBS", "consumer": "workers" }"#).expect("valid");
        assert_eq!(config, JetStreamPendingConfig::new("JOBS", "workers"));
        assert!(config.include_ack_pending);
        assert_eq!(config.timeout, Duration::from_secs(2));
        let unknown = serde_json::from_str::<JetStreamPendingConfig>(
            r#"{ "stream": "JOBS", "consumer": "workers", "subject": "x" }"#,
        );
        assert!(unknown.is_err());
    }
}
