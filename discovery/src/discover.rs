//! A registry as a [`tower::discover::Discover`], so that tower's own
//! balancers (`tower::balance::p2c::Balance`) and anything else built on
//! `Discover` can route to the endpoints of a [`Registry`].
//!
//! The adapter turns each [`EndpointChange`] into a [`Change`], building the
//! service for an endpoint with a function of yours. An update becomes an
//! insertion under the same key: tower's `ReadyCache` replaces the old
//! service once the new one is ready, so requests never see a gap.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::{Stream, StreamExt};
use tower::discover::Change;

use crate::{ChangeStream, Endpoint, EndpointChange, EndpointId, Registry};

/// The endpoints of a registry as a tower
/// [`Discover`](tower::discover::Discover) of services keyed by
/// [`EndpointId`], from [`Registry::discover`].
///
/// It yields `Change::Insert` for every endpoint present when it was created,
/// then follows the registry: an [`Insert`](EndpointChange::Insert) or an
/// [`Update`](EndpointChange::Update) builds a service with `make` and
/// yields `Change::Insert(id, service)` (tower replaces the service of an
/// id it already has), a [`Remove`](EndpointChange::Remove) yields
/// `Change::Remove(id)`. Lag and end are those of [`ChangeStream`]: when the
/// registry is gone the stream ends and tower's balancers keep their
/// current services.
///
/// `make` runs synchronously inside the balancer's `poll_ready`, so it
/// should only construct the service: connect lazily, in the service's own
/// `poll_ready` (for example with `tower::reconnect::Reconnect`, or tonic's
/// `Endpoint::connect_lazy`). The balancer drives every pending service's
/// readiness at once, so one slow endpoint then never holds back the others.
/// Its error type is [`Infallible`]: a change can always be applied.
pub struct RegistryDiscover<F> {
    changes: ChangeStream,
    make: F,
}

impl<F> RegistryDiscover<F> {
    /// Follows `changes` (from [`Registry::changes`] to start from the whole
    /// set, or the `changes` of a [`Registry::subscribe`] to start after a
    /// snapshot you applied yourself), building services with `make`.
    pub fn new(changes: ChangeStream, make: F) -> Self {
        Self { changes, make }
    }

    /// The service constructor.
    pub fn get_ref(&self) -> &F {
        &self.make
    }

    /// The service constructor, mutably.
    pub fn get_mut(&mut self) -> &mut F {
        &mut self.make
    }

    /// The change stream and the service constructor.
    pub fn into_inner(self) -> (ChangeStream, F) {
        (self.changes, self.make)
    }
}

// Neither field is ever pinned: the stream is `Unpin` and `make` is only
// called through `&mut`.
impl<F> Unpin for RegistryDiscover<F> {}

impl<F, S> Stream for RegistryDiscover<F>
where
    F: FnMut(&Endpoint) -> S,
{
    type Item = Result<Change<EndpointId, S>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let change = match ready!(this.changes.poll_next_unpin(cx)) {
            None => return Poll::Ready(None),
            Some(EndpointChange::Insert(e) | EndpointChange::Update(e)) => {
                let service = (this.make)(&e);
                Change::Insert(e.id().clone(), service)
            }
            Some(EndpointChange::Remove(id)) => Change::Remove(id),
        };
        Poll::Ready(Some(Ok(change)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.changes.size_hint()
    }
}

impl<F> fmt::Debug for RegistryDiscover<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryDiscover")
            .field("changes", &self.changes)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The registry as a tower [`Discover`](tower::discover::Discover):
    /// every endpoint becomes a service built by `make`.
    ///
    /// ```
    /// use orch_discovery::{Endpoint, Registry};
    /// use tower::discover::Discover;
    ///
    /// fn assert_discover<D: Discover>(_: &D) {}
    ///
    /// let registry = Registry::new("api");
    /// registry.upsert(Endpoint::new("api-1", "127.0.0.1:8081".parse().unwrap()));
    /// // Any service will do; here, one that answers with the address it stands for.
    /// let discover = registry.discover(|e: &Endpoint| {
    ///     let address = e.address();
    ///     tower::service_fn(move |_req: ()| async move { Ok::<_, std::io::Error>(address) })
    /// });
    /// assert_discover(&discover);
    /// ```
    pub fn discover<F, S>(&self, make: F) -> RegistryDiscover<F>
    where
        F: FnMut(&Endpoint) -> S,
    {
        RegistryDiscover::new(self.changes(), make)
    }
}
