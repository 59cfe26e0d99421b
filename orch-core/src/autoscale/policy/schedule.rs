//! Schedule windows, KEDA's cron scaler: between a `start` and an `end`
//! cron time in a time zone, the floor is raised to `replicas`, optionally
//! `lead` ahead of the start so that capacity is there when a known peak
//! begins.

use std::time::Duration;

use croner::Cron;
use jiff::{Timestamp, tz::TimeZone};
use serde::{Deserialize, Serialize};

use super::{Inputs, Vote};
use crate::autoscale::AutoscaleError;

/// A window of the week (or day, or month) that needs at least `replicas`.
///
/// The window is open from each `start` time until the next `end` time
/// (five-field cron expressions, read in `time_zone`, an IANA name such as
/// `Europe/Paris`; daylight-saving changes follow the zone's rules).
///
/// ```
/// use std::time::Duration;
/// use orch_core::autoscale::Schedule;
///
/// // Weekdays 08:00 to 18:00 in Paris, ready 10 minutes early.
/// let peak = Schedule::new("0 8 * * 1-5", "0 18 * * 1-5", "Europe/Paris", 6)
///     .lead(Duration::from_secs(600));
/// assert_eq!(peak.replicas, 6);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// When the window opens (cron: minute hour day month weekday).
    pub start: String,
    /// When it closes.
    pub end: String,
    /// The IANA time zone both are read in.
    pub time_zone: String,
    /// The floor while the window is open.
    pub replicas: usize,
    /// How long before `start` the floor is raised already.
    #[serde(default, with = "humantime_serde")]
    pub lead: Duration,
}

impl Schedule {
    /// A window from `start` to `end` in `time_zone` needing `replicas`.
    pub fn new(
        start: impl Into<String>,
        end: impl Into<String>,
        time_zone: impl Into<String>,
        replicas: usize,
    ) -> Self {
        Self {
            start: start.into(),
            end: end.into(),
            time_zone: time_zone.into(),
            replicas,
            lead: Duration::ZERO,
        }
    }

    /// Raises the floor `lead` before the window opens.
    pub fn lead(mut self, lead: Duration) -> Self {
        self.lead = lead;
        self
    }

    pub(crate) fn compile(&self) -> Result<CompiledSchedule, AutoscaleError> {
        let cron = |field: &str, expression: &str| {
            expression.parse::<Cron>().map_err(|e| {
                AutoscaleError::field(field, format!("not a cron expression ({expression:?}): {e}"))
            })
        };
        let start = cron("start", &self.start)?;
        let end = cron("end", &self.end)?;
        let zone = TimeZone::get(&self.time_zone).map_err(|_| {
            AutoscaleError::field("time_zone", format!("unknown time zone {:?}", self.time_zone))
        })?;
        if self.replicas == 0 {
            return Err(AutoscaleError::field("replicas", "must be at least 1"));
        }
        let lead = jiff::SignedDuration::try_from(self.lead)
            .map_err(|_| AutoscaleError::field("lead", "too long"))?;
        Ok(CompiledSchedule {
            start,
            end,
            zone,
            replicas: self.replicas,
            lead,
        })
    }
}

/// A [`Schedule`] with its expressions parsed and its zone found.
#[derive(Debug, Clone)]
pub(crate) struct CompiledSchedule {
    start: Cron,
    end: Cron,
    zone: TimeZone,
    replicas: usize,
    lead: jiff::SignedDuration,
}

impl CompiledSchedule {
    /// Whether the window is open at `at`: its last start is later than
    /// its last end (both inclusive of `at`).
    fn open_at(&self, at: Timestamp) -> bool {
        let now = at.to_zoned(self.zone.clone());
        let last_start = self.start.find_previous_occurrence(&now, true).ok();
        let last_end = self.end.find_previous_occurrence(&now, true).ok();
        match (last_start, last_end) {
            (Some(start), Some(end)) => start > end,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    pub(super) fn recommend(&self, inputs: &Inputs<'_>) -> (Vote, bool, String) {
        let ahead = inputs.wall.checked_add(self.lead).unwrap_or(inputs.wall);
        if self.open_at(inputs.wall) {
            (
                Vote::Replicas(self.replicas),
                true,
                format!("window open: floor {}", self.replicas),
            )
        } else if self.open_at(ahead) {
            (
                Vote::Replicas(self.replicas),
                true,
                format!(
                    "window opens within the lead of {}: floor {}",
                    self.lead, self.replicas
                ),
            )
        } else {
            (Vote::Abstain, false, "window closed".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScaleStatus;

    fn vote(schedule: &CompiledSchedule, wall: &str) -> Vote {
        let inputs = Inputs {
            status: ScaleStatus { desired: 1, ready: 1 },
            metric: Err("none"),
            wall: wall.parse().unwrap(),
        };
        schedule.recommend(&inputs).0
    }

    #[test]
    fn open_between_start_and_end_in_its_zone() {
        let s = Schedule::new("0 8 * * 1-5", "0 18 * * 1-5", "Europe/Paris", 6)
            .lead(Duration::from_secs(600))
            .compile()
            .unwrap();
        // Thursday 2026-12-03, Paris is UTC+1 in winter.
        assert_eq!(vote(&s, "2026-12-03T06:49:00Z"), Vote::Abstain);
        assert_eq!(vote(&s, "2026-12-03T06:50:00Z"), Vote::Replicas(6), "10 min lead");
        assert_eq!(vote(&s, "2026-12-03T07:00:00Z"), Vote::Replicas(6));
        assert_eq!(vote(&s, "2026-12-03T16:59:00Z"), Vote::Replicas(6));
        assert_eq!(vote(&s, "2026-12-03T17:00:00Z"), Vote::Abstain);
        // Saturday: closed all day.
        assert_eq!(vote(&s, "2026-12-05T10:00:00Z"), Vote::Abstain);
    }

    #[test]
    fn bad_expressions_and_zones_name_the_field() {
        let err = Schedule::new("0 25 * * *", "0 18 * * *", "UTC", 2)
            .compile()
            .unwrap_err();
        assert!(
            matches!(&err, AutoscaleError::InvalidField { field, .. } if field == "start"),
            "{err}"
        );
        let err = Schedule::new("0 8 * * *", "0 18 * * *", "Mars/Olympus", 2)
            .compile()
            .unwrap_err();
        assert!(
            matches!(&err, AutoscaleError::InvalidField { field, .. } if field == "time_zone"),
            "{err}"
        );
    }
}
