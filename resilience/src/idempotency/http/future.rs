//! The response future of [`Idempotency`](super::Idempotency).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use futures_util::future::BoxFuture;
use http::Response;
use pin_project_lite::pin_project;

use super::IdempotentBody;

type Guarded<ResBody, E> = BoxFuture<'static, Result<Response<IdempotentBody<ResBody>>, E>>;

pin_project! {
    /// The response future of [`Idempotency`](super::Idempotency).
    ///
    /// A request the layer does not protect is the inner future itself, no
    /// allocation added; a refused one is ready at once; a keyed one is a
    /// boxed future that reads the body, claims the key and waits for the
    /// detached handler (whose cost, a store round trip and a task, dwarfs
    /// the box).
    pub struct ResponseFuture<F, ResBody, E> {
        #[pin]
        kind: Kind<F, ResBody, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, ResBody, E> {
        Passthrough { #[pin] future: F },
        Rejected { response: Option<Response<IdempotentBody<ResBody>>> },
        Guarded { future: Guarded<ResBody, E> },
    }
}

impl<F, ResBody, E> ResponseFuture<F, ResBody, E> {
    pub(crate) fn passthrough(future: F) -> Self {
        Self {
            kind: Kind::Passthrough { future },
        }
    }

    pub(crate) fn rejected(response: Response<IdempotentBody<ResBody>>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }

    pub(crate) fn guarded(future: Guarded<ResBody, E>) -> Self {
        Self {
            kind: Kind::Guarded { future },
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F, ResBody, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<IdempotentBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { future } => {
                let result = ready!(future.poll(cx));
                Poll::Ready(result.map(|response| response.map(IdempotentBody::passthrough)))
            }
            KindProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("ResponseFuture polled after completion"),
            },
            KindProj::Guarded { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, ResBody, E> fmt::Debug for ResponseFuture<F, ResBody, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Passthrough { .. } => "passthrough",
            Kind::Rejected { .. } => "rejected",
            Kind::Guarded { .. } => "guarded",
        };
        f.debug_tuple("ResponseFuture").field(&kind).finish()
    }
}
