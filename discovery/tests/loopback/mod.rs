//! Real servers on 127.0.0.1 ephemeral ports for the connector tests, each
//! one killable: a kill closes the listener and every open connection, as
//! a crashed process would.
#![allow(dead_code, reason = "each test file uses a part of the helpers")]

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use futures_util::stream::{self, Stream, StreamExt};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use orch_discovery::{Endpoint, EndpointChange};
use tokio::{net::TcpListener, task::JoinSet};
use tower::Service;

/// One replica: a server on a loopback port, serving HTTP/1.1 and HTTP/2.
pub struct Replica {
    pub name: String,
    pub address: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<JoinSet<()>>>,
}

impl Replica {
    /// Serves `service` on `127.0.0.1:0`.
    pub async fn serve<S, B>(name: &str, service: S) -> Self
    where
        S: Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let accept = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let service = TowerToHyperService::new(service.clone());
                    connections.lock().unwrap().spawn(async move {
                        let _ = auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Self {
            name: name.to_owned(),
            address,
            accept,
            connections,
        }
    }

    /// The replica as a discovery endpoint.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.name.as_str(), self.address)
    }

    /// Closes the listener and every connection at once.
    pub fn kill(self) {
        self.accept.abort();
        self.connections.lock().unwrap().abort_all();
    }
}

/// Inserts of `replicas`, then a stream that stays open.
pub fn discovery(replicas: &[&Replica]) -> impl Stream<Item = EndpointChange> + Unpin + Send + use<> {
    let inserts: Vec<_> = replicas
        .iter()
        .map(|r| EndpointChange::Insert(r.endpoint()))
        .collect();
    stream::iter(inserts).chain(stream::pending())
}
