//! What an open breaker does: rejects with the time left, without polling
//! or calling the inner service, in `poll_ready` or in `call`; and what
//! counts towards opening it through the service (readiness errors too).

use orch_resilience::{CircuitRejection, ErrorClass, breaker::BreakerState};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};

use super::{SEC, config, rejection};
use crate::support::{Step, scripted};

// ===== open =====

#[tokio::test(start_paused = true)]
async fn open_rejects_without_touching_the_inner_service() {
    let breaker = config().build().unwrap();
    let (inner, calls) = scripted::<()>([Step::Fail; 4], Step::Ok(200));
    let mut svc = breaker.layer().layer(inner);
    for _ in 0..4 {
        let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Inner);
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    advance(3 * SEC).await;
    for _ in 0..5 {
        let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
        assert_eq!(rejection(&err), (CircuitRejection::Open, Some(7 * SEC)));
        assert_eq!(err.retry_after(), Some(7 * SEC));
    }
    assert_eq!(calls.get(), 4, "rejected calls never reached the service");
    assert_eq!(breaker.metrics().rejections, 5);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_does_not_poll_the_inner_service_when_rejecting() {
    use std::task::{Context, Poll};

    /// A service whose poll_ready panics: it must never be asked.
    #[derive(Clone)]
    struct MustNotBePolled;
    impl Service<()> for MustNotBePolled {
        type Response = ();
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<(), std::io::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            panic!("the inner service was polled")
        }
        fn call(&mut self, (): ()) -> Self::Future {
            panic!("the inner service was called")
        }
    }

    let breaker = config().build().unwrap();
    breaker.force_open();
    let mut svc = breaker.layer().layer(MustNotBePolled);
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(rejection(&err), (CircuitRejection::ForcedOpen, None));
}

#[tokio::test(start_paused = true)]
async fn inner_poll_ready_errors_are_recorded() {
    use std::task::{Context, Poll};

    /// A service whose readiness check fails (a dead connection).
    #[derive(Clone, Debug)]
    struct Broken;
    impl Service<()> for Broken {
        type Response = ();
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<(), std::io::Error>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Err(std::io::Error::other("connection closed")))
        }
        fn call(&mut self, (): ()) -> Self::Future {
            std::future::ready(Ok(()))
        }
    }

    let breaker = config().build().unwrap();
    let mut svc = breaker.layer().layer(Broken);
    for _ in 0..4 {
        let err = svc.ready().await.unwrap_err();
        assert!(err.downcast_inner_ref::<std::io::Error>().is_some());
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(rejection(&err).0, CircuitRejection::Open);
}

#[tokio::test(start_paused = true)]
async fn call_without_poll_ready_still_asks_the_breaker() {
    let breaker = config().build().unwrap();
    let (inner, calls) = scripted::<()>([Step::Fail; 4], Step::Ok(200));
    let mut svc = breaker.layer().layer(inner);
    for _ in 0..4 {
        svc.call(()).await.unwrap_err();
    }
    let err = svc.call(()).await.unwrap_err();
    assert_eq!(rejection(&err).0, CircuitRejection::Open);
    assert_eq!(calls.get(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_breaker_that_opens_between_poll_ready_and_call_rejects_in_call() {
    let breaker = config().build().unwrap();
    let (inner, calls) = scripted::<()>([], Step::Ok(200));
    let mut svc = breaker.layer().layer(inner);
    std::future::poll_fn(|cx| svc.poll_ready(cx)).await.unwrap();
    breaker.force_open();
    let err = svc.call(()).await.unwrap_err();
    assert_eq!(rejection(&err).0, CircuitRejection::ForcedOpen);
    assert_eq!(calls.get(), 0);
}
