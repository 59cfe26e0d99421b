//! Task children: a factory that builds the child's future, run with its
//! panics caught so that a panic is a crash of the child, never of the
//! supervisor.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::FutureExt;

use super::ChildContext;
use crate::ExitReason;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ChildFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// Builds one incarnation of a task child.
pub(crate) type TaskFactory = Arc<dyn Fn(ChildContext) -> ChildFuture + Send + Sync>;

pub(crate) fn factory<F, Fut, E>(f: F) -> TaskFactory
where
    F: Fn(ChildContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    Arc::new(move |ctx| Box::pin(f(ctx).map(|r| r.map_err(Into::into))))
}

/// Runs one incarnation to its end.
pub(crate) async fn run_task(factory: TaskFactory, ctx: ChildContext) -> ExitReason {
    let watch = ctx.clone();
    // The factory itself runs user code, so its panics are caught too.
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| factory(ctx))) {
        Ok(fut) => fut,
        Err(panic) => return ExitReason::Panicked(panic_message(&*panic).into()),
    };
    let result = AssertUnwindSafe(fut).catch_unwind().await;
    // A child that failed itself was asked to stop by its own hand: its
    // reason beats the `Ok` or the error its future ended with.
    if let (Ok(_), Some(reason)) = (&result, watch.failure()) {
        return ExitReason::Failed(reason);
    }
    match result {
        Ok(Ok(())) if watch.is_cancelled() => ExitReason::Stopped,
        Ok(Ok(())) => ExitReason::Normal,
        Ok(Err(e)) => ExitReason::Failed(e.to_string().into()),
        Err(panic) => ExitReason::Panicked(panic_message(&*panic).into()),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
