//! Waiting until a registry's set satisfies a predicate, for callers that
//! need "three replicas are registered" or "api-2 is gone" before they go
//! on (tests, startup ordering, a rollout step), without a polling loop.
//!
//! The waiter follows one subscription: it keeps its own copy of the set
//! (the snapshot, then every change applied in order) and asks the
//! predicate only when a batch of changes has been applied, so it never
//! sees a half-applied [`Registry::replace_all`](super::Registry::replace_all).

use futures_util::{FutureExt, StreamExt};

use super::{Registry, RegistrySubscription};
use crate::{Endpoint, EndpointChange};

/// Resolves to the first set of `registry`'s endpoints (in id order) for
/// which `predicate` holds, checking the current set first.
///
/// Holds a handle to the registry while it waits, so the change stream
/// cannot end under it: a set that never satisfies the predicate makes it
/// wait forever (bound it with `tokio::time::timeout`).
pub(super) async fn wait_until<P>(registry: Registry, mut predicate: P) -> Vec<Endpoint>
where
    P: FnMut(&[Endpoint]) -> bool,
{
    let RegistrySubscription {
        snapshot: mut set,
        mut changes,
    } = registry.subscribe();
    loop {
        if predicate(&set) {
            return set;
        }
        let Some(change) = changes.next().await else {
            // Unreachable while `registry` is held; if it ever ended, the
            // set could not change again and the predicate stays false.
            return std::future::pending().await;
        };
        apply(&mut set, change);
        // The rest of the batch: an edit's changes are queued together and
        // taken together, so whatever is ready now belongs to edits already
        // made. The predicate sees only whole edits.
        while let Some(Some(change)) = changes.next().now_or_never() {
            apply(&mut set, change);
        }
    }
}

/// Applies `change` to `set`, kept sorted by id.
fn apply(set: &mut Vec<Endpoint>, change: EndpointChange) {
    let position = |set: &Vec<Endpoint>, id| set.binary_search_by(|e: &Endpoint| e.id().cmp(id));
    match change {
        EndpointChange::Insert(endpoint) | EndpointChange::Update(endpoint) => {
            match position(set, endpoint.id()) {
                Ok(i) => set[i] = endpoint,
                Err(i) => set.insert(i, endpoint),
            }
        }
        EndpointChange::Remove(id) => {
            if let Ok(i) = position(set, &id) {
                set.remove(i);
            }
        }
    }
}
