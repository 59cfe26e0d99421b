//! Whether a stack may repeat requests, as the builder's last type
//! parameter.
//!
//! Retry and hedging need requests they can send again (`Clone`, or a body
//! kept by `buffer_bodies`). A stack with neither must not ask for that, so
//! that it wraps any client as it is (a tonic `Channel`, a hyper client of
//! `Incoming` bodies) and pays nothing for a slot it does not use. The
//! builder starts as [`SendOnce`] and becomes [`MayRepeat`] when `retry` or
//! `hedge` is set; every other layer is a setting that leaves the type
//! alone, and `build_from_config` builds a [`MayRepeat`] stack, since the
//! config decides at run time.

use super::{
    BodyReplay, OptionalLayer,
    repeat::{RepeatKind, RepeatLayer},
};
use crate::{ConfigError, TimeoutLayer};

/// A stack that sends each request once (no retry, no hedging): its repeat
/// slot holds only the overall timeout, if one is set, and its requests
/// need not be repeatable. The builder's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendOnce;

/// A stack with retry or hedging (or one built from a `StackConfig`): its
/// repeat slot is a [`RepeatLayer`], and its requests must be repeatable.
#[derive(Debug, Clone, Copy, Default)]
pub struct MayRepeat;

/// [`SendOnce`] or [`MayRepeat`]: what the repeat slot of a built stack is.
pub trait RepeatChoice {
    /// The layer in the repeat slot.
    type Layer<C, Q, R: BodyReplay>;

    /// The slot's layer for what the builder enabled.
    #[doc(hidden)]
    fn slot<C, Q, R: BodyReplay>(
        kind: RepeatKind<C, Q, R>,
        replay: R,
    ) -> Result<Self::Layer<C, Q, R>, ConfigError>;
}

impl RepeatChoice for SendOnce {
    type Layer<C, Q, R: BodyReplay> = OptionalLayer<TimeoutLayer>;

    fn slot<C, Q, R: BodyReplay>(
        kind: RepeatKind<C, Q, R>,
        _replay: R,
    ) -> Result<Self::Layer<C, Q, R>, ConfigError> {
        match kind {
            RepeatKind::Once => Ok(OptionalLayer(None)),
            RepeatKind::Overall(timeout) => Ok(OptionalLayer(Some(timeout))),
            // `retry` and `hedge` make the builder `MayRepeat`, so this
            // cannot happen; refuse rather than drop a layer silently.
            RepeatKind::Retry(_) | RepeatKind::Hedge { .. } => Err(ConfigError::field(
                "stack.retry",
                "set on a builder that sends once; set it with `retry` or `hedge`",
            )),
        }
    }
}

impl RepeatChoice for MayRepeat {
    type Layer<C, Q, R: BodyReplay> = RepeatLayer<C, Q, R>;

    fn slot<C, Q, R: BodyReplay>(
        kind: RepeatKind<C, Q, R>,
        replay: R,
    ) -> Result<Self::Layer<C, Q, R>, ConfigError> {
        Ok(RepeatLayer::new(kind, replay))
    }
}
