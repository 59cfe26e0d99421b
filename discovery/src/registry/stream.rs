//! The subscriber's side: a snapshot plus a stream of later changes.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::FusedStream;

use super::Shared;
use super::state::{Queued, Taken};
use crate::{Endpoint, EndpointChange};

/// A consistent starting point plus every change after it, from
/// [`Registry::subscribe`](crate::Registry::subscribe).
///
/// Apply `snapshot`, then every change of `changes` in order: the result is
/// always the registry's current set, with no change missed and none seen twice.
#[derive(Debug)]
pub struct RegistrySubscription {
    /// Every endpoint present when the subscription was taken, in id order.
    pub snapshot: Vec<Endpoint>,
    /// Every change made after the snapshot was taken.
    pub changes: ChangeStream,
}

/// The changes of one registry, in the order they were applied.
///
/// A `ChangeStream` from [`Registry::changes`](crate::Registry::changes)
/// first yields an [`Insert`](EndpointChange::Insert) for every endpoint
/// present when it was created, then every later change; one from
/// [`Registry::subscribe`](crate::Registry::subscribe) starts after the
/// snapshot it came with. Applying what it yields, in order, to an empty set
/// always gives a set that the registry held.
///
/// # Buffering and lag
///
/// Changes wait in a bounded buffer per subscriber
/// ([`RegistryBuilder::subscriber_buffer`](crate::RegistryBuilder::subscriber_buffer)),
/// so a stream nobody polls costs at most that much. A subscriber that
/// falls further behind loses no change silently: at its next read it
/// receives the difference between what it had seen and the registry's
/// current set (removals first, then insertions and updates, each in id
/// order), then later changes as usual. Intermediate states are skipped, so
/// an endpoint that was removed and added back while it lagged arrives as
/// one [`Update`](EndpointChange::Update), or as nothing if it came back
/// unchanged.
///
/// # End
///
/// The stream ends (`None`) once every [`Registry`](crate::Registry) handle
/// is dropped (sources hold one while they run) and every pending change
/// was read: nobody can change the set any more, so the last set it
/// described stays valid. It does not keep the registry's writers alive.
///
/// The stream is `Unpin`, `Send` and `'static`; dropping it unsubscribes.
pub struct ChangeStream {
    shared: Arc<Shared>,
    id: u64,
    /// Changes taken from the shared state and not yet yielded.
    ready: VecDeque<Queued>,
    done: bool,
}

impl ChangeStream {
    pub(super) fn new(shared: Arc<Shared>, id: u64, ready: VecDeque<Queued>) -> Self {
        Self {
            shared,
            id,
            ready,
            done: false,
        }
    }

    /// The name of the registry the changes come from.
    pub fn registry(&self) -> &str {
        &self.shared.name
    }
}

impl Stream for ChangeStream {
    type Item = EndpointChange;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<EndpointChange>> {
        let this = self.get_mut();
        if let Some(change) = this.ready.pop_front() {
            return Poll::Ready(Some(change.into_change()));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let taken = this
            .shared
            .lock()
            .take_changes(this.id, &mut this.ready, cx.waker());
        match taken {
            Taken::Some => Poll::Ready(this.ready.pop_front().map(Queued::into_change)),
            Taken::Closed => {
                this.done = true;
                Poll::Ready(None)
            }
            Taken::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (self.ready.len(), Some(self.ready.len()))
        } else {
            (self.ready.len(), None)
        }
    }
}

impl FusedStream for ChangeStream {
    fn is_terminated(&self) -> bool {
        self.done && self.ready.is_empty()
    }
}

impl Drop for ChangeStream {
    fn drop(&mut self) {
        self.shared.lock().unsubscribe(self.id);
    }
}

impl fmt::Debug for ChangeStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeStream")
            .field("registry", &self.shared.name)
            .field("buffered", &self.ready.len())
            .field("done", &self.done)
            .finish()
    }
}
