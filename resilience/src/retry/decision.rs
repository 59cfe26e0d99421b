//! What follows a retryable result: the next attempt, or the end of the
//! call with the reason, its metrics and its event; and the deadline
//! arithmetic both the decision and the response future use.

use std::{fmt, sync::Arc, time::Duration};

use tokio::time::Instant;

use super::{policy::CallPolicy, replay::Replay, timer::CallTimer};
use crate::{
    classify::{Classify, Pushback},
    error::{NotRetriedReason, ResilienceError},
    label::Label,
};

/// The end of a call with an overall timeout, and that timeout.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    pub(super) at: Instant,
    pub(super) after: Duration,
}

/// Which time limit the timer stands for while an attempt runs.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cutoff {
    /// The attempt's own timeout, of this length.
    Attempt(Duration),
    /// The whole call's deadline, this long after the call began.
    Overall(Duration),
}

/// When the timer of an attempt starting at `now` fires, and what that
/// means: the attempt's own cutoff, or the overall deadline when that
/// comes first; `None` with neither.
pub(super) fn cutoff_for(
    now: Instant,
    attempt_timeout: Option<Duration>,
    deadline: Option<Deadline>,
) -> Option<(Instant, Cutoff)> {
    let attempt_end =
        attempt_timeout.and_then(|limit| Some((now.checked_add(limit)?, Cutoff::Attempt(limit))));
    match (attempt_end, deadline) {
        (Some((end, cutoff)), Some(d)) if end <= d.at => Some((end, cutoff)),
        // Only the first attempt, or one delayed by the service's readiness,
        // can end after the deadline: later attempts start only when they fit.
        (_, Some(d)) => Some((d.at, Cutoff::Overall(d.after))),
        (attempt_end, None) => attempt_end,
    }
}

/// Whether an attempt started after `delay` from `now` can finish before
/// `deadline`: with an attempt timeout the whole attempt must fit; without
/// one, it must at least start before the deadline.
pub(super) fn fits(
    now: Instant,
    delay: Duration,
    attempt_timeout: Option<Duration>,
    deadline: Instant,
) -> bool {
    let Some(start) = now.checked_add(delay) else {
        return false;
    };
    match attempt_timeout {
        Some(limit) => start.checked_add(limit).is_some_and(|end| end <= deadline),
        None => start < deadline,
    }
}

/// The next attempt of a call: its request and the delay before it.
pub(super) struct NextAttempt<Request> {
    pub(super) request: Request,
    pub(super) delay: Duration,
    /// `"backoff"` or `"pushback"`, for the event.
    pub(super) reason: &'static str,
}

/// Decides what follows the retryable `result` of attempt `attempts`, in
/// the order of the module docs' table; the budget is asked last, so a
/// retry refused for any other reason spends nothing. `source` is what the
/// replay kept (`None` for a request that may not be repeated); `timer`
/// holds the call's time limits and its backoff schedule, started on
/// first use.
pub(super) fn next_attempt<Req, Res, C, R>(
    policy: &CallPolicy<C, R>,
    attempts: u32,
    source: Option<&R::Source>,
    result: Result<&Res, &ResilienceError>,
    timer: &mut CallTimer<Result<Res, ResilienceError>>,
) -> Result<NextAttempt<R::Request>, GiveUp>
where
    C: Classify<Res, ResilienceError>,
    R: Replay<Req>,
{
    let settings = &policy.settings;
    if let Some(throttle) = policy.throttle() {
        throttle.record_failure();
    }
    if attempts >= settings.max_attempts {
        return Err(GiveUp::NotRetried(NotRetriedReason::MaxAttempts));
    }
    let source = source.ok_or(GiveUp::NotRetried(NotRetriedReason::UnsafeRequest))?;
    let (delay, reason) = match policy.classifier.pushback(result) {
        Pushback::Stop => return Err(GiveUp::NotRetried(NotRetriedReason::Pushback)),
        Pushback::After(delay) => {
            // gRFC A6: after a pushback the backoff starts over from its
            // initial delay.
            *timer.backoff() = None;
            (delay, "pushback")
        }
        Pushback::None => match timer
            .backoff()
            .get_or_insert_with(|| policy.start_backoff())
            .next_delay()
        {
            Some(delay) => (delay, "backoff"),
            // A custom schedule that ends is a limit on attempts.
            None => return Err(GiveUp::NotRetried(NotRetriedReason::MaxAttempts)),
        },
    };
    if let Some(deadline) = timer.deadline()
        && !fits(Instant::now(), delay, timer.planned_attempt(), deadline.at)
    {
        return Err(GiveUp::NotRetried(NotRetriedReason::DeadlineTooClose));
    }
    let request = policy.replay.replay(source).map_err(GiveUp::NotRetried)?;
    if policy.throttle().is_some_and(|throttle| !throttle.allows_retry()) {
        return Err(GiveUp::Throttled);
    }
    if policy.budget().is_some_and(|budget| !budget.try_withdraw()) {
        return Err(GiveUp::Budget);
    }
    Ok(NextAttempt {
        request,
        delay,
        reason,
    })
}

/// Reports the retry that follows attempt `attempts`.
pub(super) fn report_retry(
    label: Label,
    attempts: u32,
    delay: Duration,
    reason: &str,
    error: Option<&ResilienceError>,
) {
    let name = label.name();
    metrics::counter!("orch_retry_attempts_total", "name" => Arc::clone(&name)).increment(1);
    tracing::debug!(
        name = %name,
        attempt = attempts,
        next_attempt = attempts + 1,
        delay = ?delay,
        reason,
        outcome = "retryable",
        error = error.map(tracing::field::display),
        "retrying",
    );
}

/// Why the layer stopped retrying a retryable result.
#[derive(Debug, Clone, Copy)]
pub(super) enum GiveUp {
    NotRetried(NotRetriedReason),
    Budget,
    Throttled,
}

impl GiveUp {
    fn label(self) -> &'static str {
        match self {
            Self::NotRetried(NotRetriedReason::MaxAttempts) => "max_attempts",
            Self::NotRetried(NotRetriedReason::DeadlineTooClose) => "deadline_too_close",
            Self::NotRetried(NotRetriedReason::Pushback) => "pushback",
            Self::NotRetried(NotRetriedReason::UnsafeRequest) => "unsafe_request",
            Self::NotRetried(NotRetriedReason::BodyTooLarge) => "body_too_large",
            Self::Budget => "budget_exhausted",
            Self::Throttled => "throttled",
        }
    }
}

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRetried(reason) => reason.fmt(f),
            Self::Budget => f.write_str("retry budget exhausted"),
            Self::Throttled => f.write_str("retries throttled: tokens at or below half of max_tokens"),
        }
    }
}

/// The call's output when no further attempt is made after a retryable
/// result: a response is returned as it is; an error is wrapped to say why.
pub(super) fn give_up<Res>(
    label: Label,
    attempts: u32,
    why: GiveUp,
    result: Result<Res, ResilienceError>,
) -> Result<Res, ResilienceError> {
    let name = label.name();
    metrics::counter!(
        "orch_retry_gave_up_total",
        "name" => Arc::clone(&name),
        "reason" => why.label(),
    )
    .increment(1);
    if matches!(why, GiveUp::Budget | GiveUp::Throttled) {
        metrics::counter!("orch_retry_budget_exhausted_total", "name" => Arc::clone(&name)).increment(1);
    }
    match result {
        Ok(response) => {
            tracing::debug!(
                name = %name,
                attempts,
                reason = why.label(),
                why = %why,
                "not retrying; returning the last response although it is classified retryable",
            );
            Ok(response)
        }
        Err(error) => {
            tracing::debug!(
                name = %name,
                attempts,
                reason = why.label(),
                why = %why,
                error = %error,
                "not retrying",
            );
            let last = Box::new(error);
            Err(match why {
                GiveUp::NotRetried(reason) => ResilienceError::NotRetried {
                    reason,
                    attempts,
                    last,
                },
                GiveUp::Budget | GiveUp::Throttled => ResilienceError::BudgetExhausted { attempts, last },
            })
        }
    }
}
