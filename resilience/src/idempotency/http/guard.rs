//! The one flow both protocols share: read the key, buffer and fingerprint
//! the request, claim the key, then run the handler detached and finish
//! the record, or answer from the store.
//!
//! The handler runs in a task of its own (`tokio::spawn`) that also saves
//! or releases the record, and hands its result back through a oneshot
//! channel. So a client that disconnects, or a server that drops the
//! response future (a timeout layer above), never leaves a record in
//! progress until its lease ends: the handler runs to its end and the
//! record is finished either way. While the handler runs, the same task
//! renews the lease every half lease.

use std::{
    any::Any,
    future::{Future, poll_fn},
    panic::AssertUnwindSafe,
    pin::pin,
    sync::Arc,
    task::Poll,
};

use bytes::Bytes;
use futures_util::{FutureExt, future::BoxFuture};
use http::{Request, Response, response};
use http_body::Body;
use tokio::{sync::oneshot, time::Instant};
use tower_service::Service;

use super::{
    IdempotentBody, StoreFailure,
    body::{Collected, collect},
    fingerprint::bounded_scope,
    future::ResponseFuture,
    key::key_of,
    problem::Rejection,
    shared::{Shared, saved_response},
};
use crate::{
    BoxError,
    idempotency::{Claim, FencingToken, SavedResponse, StoreError},
};

/// What the detached run hands back to the caller.
enum Reply<T, E> {
    Response(T),
    Error(E),
    Panic(Box<dyn Any + Send>),
}

/// Starts a call: requests the layer does not protect, and those it
/// refuses from their head alone, are decided here without an allocation.
pub(crate) fn start<S, B, ResBody>(
    shared: &Arc<Shared>,
    inner: &mut S,
    request: Request<B>,
    rebuild: fn(Bytes) -> B,
) -> ResponseFuture<S::Future, ResBody, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    if !shared.covers(&request) {
        return ResponseFuture::passthrough(inner.call(request));
    }
    match key_of(request.headers(), &shared.config) {
        Err(error) => ResponseFuture::rejected(shared.reject(Rejection::BadKey(error))),
        Ok(None) if shared.config.key_required => {
            ResponseFuture::rejected(shared.reject(Rejection::KeyMissing))
        }
        Ok(None) => {
            shared.count("unkeyed");
            ResponseFuture::passthrough(inner.call(request))
        }
        Ok(Some(key)) => {
            // The service that `poll_ready` readied goes with the call;
            // the layer keeps a fresh clone (tower's usual move).
            let clone = inner.clone();
            let ready = std::mem::replace(inner, clone);
            ResponseFuture::guarded(Box::pin(guarded(
                Arc::clone(shared),
                ready,
                request,
                key,
                rebuild,
            )))
        }
    }
}

/// The rest of a keyed call.
async fn guarded<S, B, ResBody>(
    shared: Arc<Shared>,
    mut inner: S,
    request: Request<B>,
    key: String,
    rebuild: fn(Bytes) -> B,
) -> Result<Response<IdempotentBody<ResBody>>, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Error: Into<BoxError>,
    ResBody: Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let (parts, body) = request.into_parts();
    let max = shared.config.max_body_bytes;
    // Request trailers are not kept: no HTTP API we know of sends them,
    // and gRPC clients never do.
    let body = match collect(body, max).await {
        Collected::Whole { data, .. } => data,
        Collected::TooLarge { .. } => return Ok(shared.reject(Rejection::BodyTooLarge { max })),
        Collected::Failed { .. } => return Ok(shared.reject(Rejection::BodyUnreadable)),
    };
    let scope = bounded_scope((shared.scope)(&parts));
    let fingerprint = (shared.fingerprint)(&parts, &body);
    let claimed = shared
        .store
        .claim(&scope, &key, fingerprint, shared.config.lease)
        .await;
    match claimed {
        Ok(Claim::Acquired { token }) => {
            shared.count("executed");
            tracing::debug!(name = %shared.name, scope, generation = token.generation(), "idempotency: key claimed");
            run_detached(shared, inner, Request::from_parts(parts, rebuild(body)), token).await
        }
        Ok(Claim::Completed(saved)) => Ok(match shared.replay(saved) {
            Ok(response) => {
                shared.count("replayed");
                response
            }
            Err(rejection) => shared.reject(rejection),
        }),
        Ok(Claim::InProgress { retry_after }) => Ok(shared.reject(Rejection::InProgress {
            retry_after: shared.in_progress_hint(retry_after),
        })),
        Ok(Claim::Mismatch) => Ok(shared.reject(Rejection::Mismatch)),
        Err(error) if shared.config.on_store_error == StoreFailure::PassThrough => {
            shared.count("unprotected");
            tracing::warn!(name = %shared.name, %error, "idempotency: store failed; request runs unprotected");
            let response = inner.call(Request::from_parts(parts, rebuild(body))).await?;
            Ok(response.map(IdempotentBody::passthrough))
        }
        Err(error) => {
            tracing::warn!(name = %shared.name, %error, "idempotency: store failed; request refused");
            let retry_after = error.retry_after().unwrap_or(shared.config.store_retry_after);
            Ok(shared.reject(Rejection::Unavailable { retry_after }))
        }
    }
}

/// Runs the handler in its own task, which finishes the record before it
/// answers; the caller only waits for the answer.
async fn run_detached<S, B, ResBody>(
    shared: Arc<Shared>,
    mut inner: S,
    request: Request<B>,
    token: FencingToken,
) -> Result<Response<IdempotentBody<ResBody>>, S::Error>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Body + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let (tx, rx) = oneshot::channel();
    let task = Arc::clone(&shared);
    let call = inner.call(request);
    tokio::spawn(async move {
        let max = task.config.max_response_bytes;
        let run = async move {
            let (parts, body) = call.await?.into_parts();
            Ok((parts, collect(body, max).await))
        };
        let outcome = AssertUnwindSafe(renewing(&task, &token, run))
            .catch_unwind()
            .await;
        let reply = match outcome {
            Ok(Ok((parts, collected))) => Reply::Response(finish(&task, &token, parts, collected).await),
            Ok(Err(error)) => {
                release(&task, &token, "handler_error").await;
                Reply::Error(error)
            }
            Err(panic) => {
                release(&task, &token, "handler_panic").await;
                Reply::Panic(panic)
            }
        };
        // The caller may be gone (client disconnected): the record is
        // finished all the same.
        let _ = tx.send(reply);
    });
    match rx.await {
        Ok(Reply::Response(response)) => Ok(response),
        Ok(Reply::Error(error)) => Err(error),
        // The handler panicked: so does this call, as it would without
        // the layer (the record was released first).
        Ok(Reply::Panic(panic)) => std::panic::resume_unwind(panic),
        // The task was dropped unfinished: the runtime is shutting down.
        Err(_) => Ok(shared.reject(Rejection::Unavailable {
            retry_after: shared.config.store_retry_after,
        })),
    }
}

/// Saves or releases the record for a handler's response, and returns
/// the response for the caller.
async fn finish<ResBody>(
    shared: &Shared,
    token: &FencingToken,
    parts: response::Parts,
    collected: Collected<ResBody>,
) -> Response<IdempotentBody<ResBody>> {
    match collected {
        Collected::Whole { data, trailers } => {
            let (status, class) = shared.classify(&parts, trailers.as_ref());
            if shared.saves(class) {
                let saved = saved_response(status, &parts, &data, trailers.as_ref());
                complete(shared, token, saved).await;
            } else {
                release(shared, token, "not_saved").await;
            }
            Response::from_parts(parts, IdempotentBody::whole(data, trailers))
        }
        Collected::TooLarge { prefix, rest } => {
            tracing::warn!(
                name = %shared.name,
                max_response_bytes = shared.config.max_response_bytes,
                "idempotency: response too large to save; key released",
            );
            release(shared, token, "response_too_large").await;
            Response::from_parts(parts, Collected::TooLarge { prefix, rest }.into_body())
        }
        failed @ Collected::Failed { .. } => {
            release(shared, token, "body_error").await;
            Response::from_parts(parts, failed.into_body())
        }
    }
}

async fn complete(shared: &Shared, token: &FencingToken, saved: SavedResponse) {
    match shared.store.complete(token, saved).await {
        Ok(()) => finished(shared, "saved"),
        Err(StoreError::StaleToken) => {
            // The lease ran out and another claim took the key: its
            // response, not this one, is the one replayed.
            tracing::warn!(name = %shared.name, generation = token.generation(), "idempotency: lease lost; response not saved");
            finished(shared, "stale");
        }
        Err(error @ StoreError::ResponseTooLarge { .. }) => {
            tracing::warn!(name = %shared.name, %error, "idempotency: store refused the response; key released");
            release(shared, token, "response_too_large").await;
        }
        Err(error) => {
            tracing::error!(name = %shared.name, %error, "idempotency: response not saved; the key frees when its lease ends");
            finished(shared, "store_error");
        }
    }
}

async fn release(shared: &Shared, token: &FencingToken, why: &'static str) {
    let result = match shared.store.release(token).await {
        Ok(()) => "released",
        Err(StoreError::StaleToken) => "stale",
        Err(error) => {
            tracing::error!(name = %shared.name, %error, "idempotency: key not released; it frees when its lease ends");
            "store_error"
        }
    };
    tracing::debug!(name = %shared.name, why, result, "idempotency: key released");
    finished(shared, result);
}

fn finished(shared: &Shared, result: &'static str) {
    metrics::counter!(
        "orch_idempotency_finished_total",
        "name" => Arc::clone(&shared.name),
        "result" => result,
    )
    .increment(1);
}

/// Polls `run` and, every half lease until it ends, renews the lease. A
/// lost lease (another claim took the key) stops the renewals but not the
/// handler: its completion will then be refused.
async fn renewing<F: Future>(shared: &Shared, token: &FencingToken, run: F) -> F::Output {
    if !shared.config.renew_leases {
        return run.await;
    }
    let lease = shared.config.lease;
    let every = lease / 2;
    let mut run = pin!(run);
    let mut tick = pin!(tokio::time::sleep(every));
    let mut renewal: Option<BoxFuture<'_, Result<(), StoreError>>> = None;
    let mut lost = false;
    poll_fn(|cx| {
        if let Poll::Ready(output) = run.as_mut().poll(cx) {
            return Poll::Ready(output);
        }
        while !lost {
            if let Some(pending) = renewal.as_mut() {
                let Poll::Ready(result) = pending.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                renewal = None;
                lost = renewed(shared, result);
                tick.as_mut().reset(Instant::now() + every);
                continue;
            }
            if tick.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            renewal = Some(shared.store.renew(token, lease));
        }
        Poll::Pending
    })
    .await
}

/// Reports a renewal; true when the lease is lost for good.
fn renewed(shared: &Shared, result: Result<(), StoreError>) -> bool {
    let (label, lost) = match &result {
        Ok(()) => ("renewed", false),
        Err(StoreError::StaleToken) => ("stale", true),
        Err(_) => ("error", false),
    };
    metrics::counter!(
        "orch_idempotency_renewals_total",
        "name" => Arc::clone(&shared.name),
        "result" => label,
    )
    .increment(1);
    if let Err(error) = result {
        tracing::warn!(name = %shared.name, %error, lost, "idempotency: lease not renewed");
    }
    lost
}
