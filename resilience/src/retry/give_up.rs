//! The end of a call that is not retried further although its last result
//! was retryable: the metrics, the event, and the error that says why.

use std::{fmt, sync::Arc};

use crate::{
    error::{NotRetriedReason, ResilienceError},
    label::Label,
};

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
