//! What every benchmark of a `tower` layer needs: a bare service that
//! answers at once, and a way to drive one call to completion without an
//! executor, so no scheduler cost is in the numbers.

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
};

use criterion::{BenchmarkGroup, measurement::WallTime};
use tower::{Service, service_fn, util::ServiceFn};

/// The baseline: a service whose future is ready at once.
pub type Bare = ServiceFn<fn(u64) -> Ready<Result<u64, Infallible>>>;

/// A [`Bare`] service.
pub fn bare() -> Bare {
    service_fn(|x: u64| ready(Ok::<u64, Infallible>(x)))
}

/// One call driven to completion without an executor. A service that is
/// not ready or a future that is pending (a peer waiting on an async lock
/// under contention) is polled again at once: the spin is part of its cost.
#[inline]
pub fn call_now<S: Service<u64>>(svc: &mut S, request: u64) -> S::Response {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match svc.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => break,
            Poll::Ready(Err(_)) => panic!("service failed"),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
    let mut future = pin!(svc.call(request));
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => return response,
            Poll::Ready(Err(_)) => panic!("call failed"),
            Poll::Pending => std::hint::spin_loop(),
        }
    }
}

/// One benchmark line: `svc` called once per iteration. A thousand calls
/// first, outside the measurement, so that connects, first readiness and
/// first-touch costs (thread-local caches, shard seeds) are not timed.
pub fn bench_service<S: Service<u64>>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut svc: S) {
    for i in 0..1_000 {
        black_box(call_now(&mut svc, i));
    }
    g.bench_function(name, |b| b.iter(|| black_box(call_now(&mut svc, black_box(7)))));
}
