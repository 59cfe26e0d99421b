//! Passive health configuration: plain data, validated when it is used.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::ConfigError;
use crate::config::{check, setters};

/// Passive health of a balancer's endpoints: outlier detection, panic
/// threshold and slow start, with Envoy's defaults.
///
/// Plain data: every field is public, has a builder-style setter of the
/// same name, and (de)serialises with `serde`, durations in humantime form
/// (`"30s"`). Unknown fields are rejected; missing ones take the defaults.
/// [`validate`](Self::validate) names the first bad field
/// (`health.outlier_detection.max_ejection_percent`).
///
/// ```
/// use std::time::Duration;
/// use orch_discovery::health::HealthConfig;
///
/// let config: HealthConfig = serde_json::from_str(r#"{
///     "outlier_detection": { "consecutive_failures": 3, "base_ejection_time": "10s" },
///     "slow_start": { "window": "1m" }
/// }"#).unwrap();
/// config.validate().unwrap();
/// let outlier = config.outlier_detection.as_ref().unwrap();
/// assert_eq!(outlier.consecutive_failures, Some(3));
/// assert_eq!(outlier.interval, Duration::from_secs(10)); // the default
/// assert_eq!(config.healthy_panic_threshold, 50.0);
///
/// let err = HealthConfig::default().healthy_panic_threshold(120.0).validate().unwrap_err();
/// assert_eq!(err.field_name(), "health.healthy_panic_threshold");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Eject endpoints whose responses fail; `None` turns it off. Default
    /// on, with Envoy's defaults (Envoy turns it on per cluster; a client
    /// balancer without it keeps sending to a broken instance until
    /// discovery notices, as linkerd's default failure accrual also
    /// reasons).
    pub outlier_detection: Option<OutlierConfig>,
    /// When fewer than this percentage of endpoints are healthy (ready and
    /// not ejected), the balancer ignores health and spreads over all of
    /// them, so a partial outage is not concentrated on the few survivors.
    /// In `[0, 100]`; 0 turns panic mode off. Default `50.0` (Envoy's
    /// `healthy_panic_threshold`).
    pub healthy_panic_threshold: f64,
    /// Ramp up the weight of new endpoints; `None` (the default, as in
    /// Envoy) gives them their full share at once.
    pub slow_start: Option<SlowStartConfig>,
}

/// Envoy's outlier detection (`outlier_detection` of a cluster), for the
/// consecutive-failure and success-rate detectors.
///
/// An endpoint is ejected (taken out of the rotation) when it fails
/// [`consecutive_failures`](Self::consecutive_failures) times in a row, or
/// when its success rate over an [`interval`](Self::interval) is an outlier
/// among its peers ([`success_rate`](Self::success_rate)). It comes back by
/// itself after `base_ejection_time × times ejected`, capped at
/// [`max_ejection_time`](Self::max_ejection_time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    /// Eject after this many failures in a row (any success resets the
    /// count); `None` turns the detector off. At least 1; default `5`
    /// (Envoy's `consecutive_5xx`).
    pub consecutive_failures: Option<u32>,
    /// How often success rates are judged, and the granularity of the
    /// decay of [times ejected](Self::base_ejection_time). Greater than
    /// zero, at most 365 days (as every duration here); default 10 s
    /// (Envoy).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// An ejection lasts this long times the number of times the endpoint
    /// has been ejected; that number goes down by one for every full
    /// interval the endpoint spends in the rotation. Default 30 s (Envoy).
    #[serde(with = "humantime_serde")]
    pub base_ejection_time: Duration,
    /// The longest an ejection lasts. At least `base_ejection_time`; default
    /// 300 s (Envoy).
    #[serde(with = "humantime_serde")]
    pub max_ejection_time: Duration,
    /// At most this percentage of the endpoints are ejected at once, except
    /// that one endpoint may always be ejected when there are at least two
    /// (as in Envoy, which ejects one whatever the percentage). The last
    /// endpoint in the rotation is never ejected. In `[0, 100]`; default
    /// `10` (Envoy).
    pub max_ejection_percent: u32,
    /// Eject endpoints whose success rate is far below their peers';
    /// `None` turns the detector off. Default on, with Envoy's defaults.
    pub success_rate: Option<SuccessRateConfig>,
}

/// Envoy's success-rate outlier detection.
///
/// Every interval, each endpoint that served at least
/// [`request_volume`](Self::request_volume) requests has its success rate
/// (percentage); if at least [`minimum_hosts`](Self::minimum_hosts) have
/// one, those below `mean − stdev_factor × stdev` are ejected, worst
/// first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuccessRateConfig {
    /// Judge only when at least this many endpoints have enough requests.
    /// Default `5` (Envoy's `success_rate_minimum_hosts`).
    pub minimum_hosts: u32,
    /// An endpoint needs at least this many requests in the interval to be
    /// judged. Default `100` (Envoy's `success_rate_request_volume`).
    pub request_volume: u32,
    /// How many standard deviations below the mean is an outlier. Finite,
    /// zero or more; default `1.9` (Envoy's `success_rate_stdev_factor`,
    /// 1900 thousandths).
    pub stdev_factor: f64,
}

/// Envoy's slow start (`slow_start_config`): a new endpoint's weight ramps
/// from a fraction of its weight to all of it over a window.
///
/// The factor after `t` is `max(min_weight_percent / 100, (t / window)^(1
/// / aggression))`: linear with aggression 1, faster at first above 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlowStartConfig {
    /// How long the ramp lasts. Greater than zero; default 30 s (Envoy
    /// requires it; a typical warm-up).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The shape of the ramp: 1 is linear, above 1 ramps faster early.
    /// Finite and greater than zero; default `1.0` (Envoy).
    pub aggression: f64,
    /// The factor never goes below this percentage, so a new endpoint gets
    /// some traffic from the start. In `[0, 100]`; default `10.0` (Envoy).
    pub min_weight_percent: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            outlier_detection: Some(OutlierConfig::default()),
            healthy_panic_threshold: 50.0,
            slow_start: None,
        }
    }
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(5),
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            success_rate: Some(SuccessRateConfig::default()),
        }
    }
}

impl Default for SuccessRateConfig {
    fn default() -> Self {
        Self {
            minimum_hosts: 5,
            request_volume: 100,
            stdev_factor: 1.9,
        }
    }
}

impl Default for SlowStartConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            aggression: 1.0,
            min_weight_percent: 10.0,
        }
    }
}

// ===== impl HealthConfig =====

impl HealthConfig {
    /// Checks every field, naming the first bad one with the `health.`
    /// prefix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|e| e.within("health"))
    }

    /// [`validate`](Self::validate) with the fields named from here
    /// (`healthy_panic_threshold`), for a config that holds this one.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        if let Some(outlier) = &self.outlier_detection {
            outlier.validate()?;
        }
        check::percent("healthy_panic_threshold", self.healthy_panic_threshold)?;
        if let Some(slow_start) = &self.slow_start {
            slow_start.validate()?;
        }
        Ok(())
    }

    /// Sets [`outlier_detection`](Self::outlier_detection).
    pub fn outlier_detection(mut self, config: OutlierConfig) -> Self {
        self.outlier_detection = Some(config);
        self
    }

    /// Turns outlier detection off.
    pub fn without_outlier_detection(mut self) -> Self {
        self.outlier_detection = None;
        self
    }

    /// Sets [`slow_start`](Self::slow_start), turning it on.
    pub fn slow_start(mut self, config: SlowStartConfig) -> Self {
        self.slow_start = Some(config);
        self
    }

    setters! { healthy_panic_threshold: f64 }
}

// ===== impl OutlierConfig =====

impl OutlierConfig {
    /// Checks every field, naming the first bad one with the
    /// `outlier_detection.` prefix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|e| e.within("outlier_detection"))
    }

    fn check(&self) -> Result<(), ConfigError> {
        check::that(
            self.consecutive_failures != Some(0),
            "consecutive_failures",
            "must be at least 1 (leave it out to turn the detector off)",
        )?;
        check::non_zero_duration("interval", self.interval)?;
        check::non_zero_duration("base_ejection_time", self.base_ejection_time)?;
        check::that(
            self.max_ejection_time >= self.base_ejection_time,
            "max_ejection_time",
            "must be at least base_ejection_time",
        )?;
        check::non_zero_duration("max_ejection_time", self.max_ejection_time)?;
        check::that(
            self.max_ejection_percent <= 100,
            "max_ejection_percent",
            "must be at most 100",
        )?;
        if let Some(success_rate) = &self.success_rate {
            check::finite_non_negative("success_rate.stdev_factor", success_rate.stdev_factor)?;
        }
        Ok(())
    }

    /// Sets [`consecutive_failures`](Self::consecutive_failures).
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = Some(failures);
        self
    }

    /// Turns the consecutive-failure detector off.
    pub fn without_consecutive_failures(mut self) -> Self {
        self.consecutive_failures = None;
        self
    }

    /// Sets [`success_rate`](Self::success_rate).
    pub fn success_rate(mut self, config: SuccessRateConfig) -> Self {
        self.success_rate = Some(config);
        self
    }

    /// Turns the success-rate detector off.
    pub fn without_success_rate(mut self) -> Self {
        self.success_rate = None;
        self
    }

    setters! {
        interval: Duration,
        base_ejection_time: Duration,
        max_ejection_time: Duration,
        max_ejection_percent: u32,
    }

    /// The ejection time after `times` ejections:
    /// `base_ejection_time × times`, at most `max_ejection_time`.
    pub(crate) fn ejection_time(&self, times: u32) -> Duration {
        self.base_ejection_time
            .checked_mul(times)
            .map_or(self.max_ejection_time, |t| t.min(self.max_ejection_time))
    }

    /// The number of ejections after which the ejection time stops growing
    /// (`ceil(max / base)`); times ejected is capped there, so it decays
    /// back in bounded time.
    pub(crate) fn max_times(&self) -> u32 {
        let base = self.base_ejection_time.as_nanos().max(1);
        let times = self.max_ejection_time.as_nanos().div_ceil(base);
        u32::try_from(times).unwrap_or(u32::MAX).max(1)
    }
}

impl SuccessRateConfig {
    setters! { minimum_hosts: u32, request_volume: u32, stdev_factor: f64 }
}

// ===== impl SlowStartConfig =====

impl SlowStartConfig {
    /// A ramp over `window`, linear, from 10 %.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            ..Self::default()
        }
    }

    /// Checks every field, naming the first bad one with the `slow_start.`
    /// prefix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|e| e.within("slow_start"))
    }

    fn check(&self) -> Result<(), ConfigError> {
        check::non_zero_duration("window", self.window)?;
        check::that(
            self.aggression.is_finite() && self.aggression > 0.0,
            "aggression",
            "must be a finite number greater than zero",
        )?;
        check::percent("min_weight_percent", self.min_weight_percent)
    }

    setters! { window: Duration, aggression: f64, min_weight_percent: f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_envoys_and_valid() {
        let config = HealthConfig::default();
        config.validate().unwrap();
        let outlier = config.outlier_detection.unwrap();
        assert_eq!(outlier.consecutive_failures, Some(5));
        assert_eq!(outlier.max_ejection_percent, 10);
        assert_eq!(outlier.success_rate.unwrap().stdev_factor, 1.9);
        assert!(config.slow_start.is_none());
    }

    #[test]
    fn every_bad_field_is_named() {
        let outlier = |o: OutlierConfig| HealthConfig::default().outlier_detection(o).validate();
        let name = |r: Result<(), ConfigError>| r.unwrap_err().field_name().to_owned();
        let d = OutlierConfig::default;
        assert_eq!(
            name(outlier(d().consecutive_failures(0))),
            "health.outlier_detection.consecutive_failures"
        );
        assert_eq!(
            name(outlier(d().interval(Duration::ZERO))),
            "health.outlier_detection.interval"
        );
        assert_eq!(
            name(outlier(d().max_ejection_time(Duration::MAX))),
            "health.outlier_detection.max_ejection_time"
        );
        assert_eq!(
            name(outlier(d().base_ejection_time(Duration::ZERO))),
            "health.outlier_detection.base_ejection_time"
        );
        assert_eq!(
            name(outlier(d().max_ejection_time(Duration::from_secs(1)))),
            "health.outlier_detection.max_ejection_time"
        );
        assert_eq!(
            name(outlier(d().max_ejection_percent(101))),
            "health.outlier_detection.max_ejection_percent"
        );
        assert_eq!(
            name(outlier(
                d().success_rate(SuccessRateConfig::default().stdev_factor(f64::NAN))
            )),
            "health.outlier_detection.success_rate.stdev_factor"
        );
        let slow = |s: SlowStartConfig| HealthConfig::default().slow_start(s).validate();
        let s = || SlowStartConfig::new(Duration::from_secs(10));
        assert_eq!(name(slow(s().window(Duration::ZERO))), "health.slow_start.window");
        assert_eq!(name(slow(s().aggression(0.0))), "health.slow_start.aggression");
        assert_eq!(
            name(slow(s().min_weight_percent(-1.0))),
            "health.slow_start.min_weight_percent"
        );
        assert_eq!(
            name(
                HealthConfig::default()
                    .healthy_panic_threshold(f64::NAN)
                    .validate()
            ),
            "health.healthy_panic_threshold"
        );
    }

    #[test]
    fn ejection_time_grows_to_the_cap() {
        let config = OutlierConfig::default();
        let secs: Vec<u64> = (1..=12).map(|t| config.ejection_time(t).as_secs()).collect();
        assert_eq!(secs, [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]);
        assert_eq!(config.ejection_time(u32::MAX).as_secs(), 300);
        assert_eq!(config.max_times(), 10);
        let uneven = config.max_ejection_time(Duration::from_secs(100));
        assert_eq!(uneven.max_times(), 4);
    }

    #[test]
    fn serde_round_trip_with_humantime() {
        let config = HealthConfig::default().slow_start(SlowStartConfig::new(Duration::from_secs(90)));
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains(r#""window":"1m 30s""#), "{json}");
        let back: HealthConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        let unknown = serde_json::from_str::<HealthConfig>(r#"{"panic": 1}"#);
        assert!(unknown.is_err());
    }
}
