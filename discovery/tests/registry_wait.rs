//! `Registry::wait_until`: resolving at once, waiting for other tasks'
//! edits without polling, seeing only whole edits, catching up after lag,
//! and waiting as long as the predicate stays false.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::FutureExt;
use orch_discovery::{Endpoint, Registry, Weight};

fn ep(id: &str, port: u16) -> Endpoint {
    Endpoint::new(id, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn ids(set: &[Endpoint]) -> Vec<&str> {
    set.iter().map(|e| e.id().as_str()).collect()
}

#[tokio::test]
async fn a_set_that_already_satisfies_resolves_at_once() {
    let registry = Registry::from_endpoints("api", [ep("b", 2), ep("a", 1)]).unwrap();
    let set = registry
        .wait_until(|set: &[Endpoint]| set.len() == 2)
        .now_or_never()
        .expect("no wait");
    assert_eq!(ids(&set), ["a", "b"], "in id order");
    assert_eq!(registry.subscribers(), 0, "the waiter unsubscribed");
}

#[tokio::test(start_paused = true)]
async fn it_waits_for_another_tasks_edits_and_returns_the_set_that_satisfied() {
    let registry = Registry::new("api");
    let writer = registry.clone();
    tokio::spawn(async move {
        for (i, id) in ["c", "a", "b"].into_iter().enumerate() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            writer.upsert(ep(id, 8080 + i as u16));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        writer.upsert(ep("a", 8081).with_weight(Weight::new(5).unwrap()));
    });

    let asked = Arc::new(Mutex::new(0));
    let set = registry
        .wait_until({
            let asked = Arc::clone(&asked);
            move |set: &[Endpoint]| {
                *asked.lock().unwrap() += 1;
                set.len() == 3
            }
        })
        .await;
    assert_eq!(ids(&set), ["a", "b", "c"]);
    // Once for the empty set, once per edit: woken by the edits, never by
    // a timer.
    assert_eq!(*asked.lock().unwrap(), 4);

    // An update is seen as one: it replaces the endpoint in place.
    let set = registry
        .wait_until(|set: &[Endpoint]| set.iter().any(|e| e.weight().get() == 5))
        .await;
    assert_eq!(ids(&set), ["a", "b", "c"]);
    assert_eq!(set[0].weight().get(), 5);
}

#[tokio::test]
async fn a_replace_all_is_seen_whole() {
    let registry = Registry::from_endpoints("api", [ep("a", 1), ep("b", 2)]).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let waiter = tokio::spawn(registry.wait_until({
        let seen = Arc::clone(&seen);
        move |set: &[Endpoint]| {
            seen.lock().unwrap().push(ids(set).join(","));
            set.iter().any(|e| e.id().as_str() == "d")
        }
    }));
    // Let the waiter see the first set and sleep.
    while seen.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    // Two removals and two insertions, in one edit.
    assert_eq!(registry.replace_all([ep("c", 3), ep("d", 4)]).unwrap(), 4);
    let set = waiter.await.unwrap();
    assert_eq!(ids(&set), ["c", "d"]);
    assert_eq!(*seen.lock().unwrap(), ["a,b", "c,d"], "never a half-applied set");
}

#[tokio::test]
async fn a_waiter_behind_its_buffer_catches_up_from_the_difference() {
    let registry = Registry::builder("api").subscriber_buffer(1).build().unwrap();
    let mut waiter =
        Box::pin(registry.wait_until(|set: &[Endpoint]| set.len() == 1 && set[0].id().as_str() == "e9"));
    assert!((&mut waiter).now_or_never().is_none());
    // Far more edits than the buffer holds, before the waiter runs again.
    for i in 0..10 {
        registry.upsert(ep(&format!("e{i}"), 9000 + i));
        if i > 0 {
            registry.remove(&format!("e{}", i - 1).as_str().into());
        }
    }
    let set = waiter.await;
    assert_eq!(ids(&set), ["e9"]);
}

#[tokio::test(start_paused = true)]
async fn it_waits_as_long_as_the_predicate_stays_false() {
    let registry = Registry::from_endpoints("api", [ep("a", 1)]).unwrap();
    let waiting = tokio::time::timeout(
        Duration::from_secs(3600),
        registry.wait_until(|set: &[Endpoint]| set.is_empty()),
    );
    assert!(waiting.await.is_err(), "still waiting after an hour");
    // Every other handle gone: the waiter's own keeps the set open, so it
    // neither ends nor resolves.
    let waiter = registry.wait_until(|set: &[Endpoint]| set.is_empty());
    drop(registry);
    assert!(
        tokio::time::timeout(Duration::from_secs(3600), waiter)
            .await
            .is_err()
    );
}
