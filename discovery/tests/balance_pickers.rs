//! Table pickers through the balancer, on paused tokio time: smooth
//! weighted round robin and Maglev consistent hashing, with weights,
//! readiness, ejection and membership changes.
#![allow(clippy::unwrap_used, reason = "test helpers unwrap like the tests they serve")]

mod support;

use std::time::Duration;

use futures_util::{Stream, StreamExt, stream};
use orch_discovery::{
    EndpointChange,
    balance::{Algorithm, BalanceError, Balancer, HeaderKey},
    pick::stable_hash,
};
use support::{Answer, Fleet, changes, config, count, endpoint, fixed, handler, ids, send, tally};
use tokio::time::advance;
use tower::Service;

// ===== round robin =====

fn weighted(weights: &[u32]) -> impl Stream<Item = EndpointChange> + Unpin + use<> {
    let inserts: Vec<_> = weights
        .iter()
        .map(|&w| EndpointChange::Insert(endpoint(&format!("w{w}"), w)))
        .collect();
    stream::iter(inserts).chain(stream::pending())
}

#[tokio::test(start_paused = true)]
async fn round_robin_honours_weights_within_two_percent_over_100k_picks() {
    let fleet = Fleet::default();
    let weights = [1, 2, 3, 4];
    let mut balancer = Balancer::with_config(
        &config(Algorithm::RoundRobin),
        weighted(&weights),
        fleet.connector(),
    )
    .unwrap();
    let n = 100_000;
    let counts = tally(&mut balancer, n, |_| ()).await;
    for w in weights {
        let expected = n as f64 * f64::from(w) / 10.0;
        let got = count(&counts, &format!("w{w}")) as f64;
        assert!(
            (got - expected).abs() <= 0.02 * expected,
            "weight {w}: {got} picks, expected {expected} ({counts:?})"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn round_robin_skips_a_not_ready_endpoint_and_the_others_keep_their_shares() {
    let fleet = Fleet::default();
    let mut balancer = Balancer::with_config(
        &config(Algorithm::RoundRobin),
        weighted(&[1, 2, 3, 4]),
        fleet.connector(),
    )
    .unwrap();
    tally(&mut balancer, 100, |_| ()).await;

    // Seen not ready after its next call.
    fleet.set_ready("w4", false);
    tally(&mut balancer, 10, |_| ()).await;
    let counts = tally(&mut balancer, 6_000, |_| ()).await;
    assert_eq!(count(&counts, "w4"), 0, "{counts:?}");
    for w in [1, 2, 3] {
        assert_eq!(count(&counts, &format!("w{w}")), 1_000 * w, "{counts:?}");
    }

    fleet.set_ready("w4", true);
    let counts = tally(&mut balancer, 10_000, |_| ()).await;
    assert_eq!(count(&counts, "w4"), 4_000, "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn round_robin_follows_membership_and_weight_changes() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    tx.send(EndpointChange::Insert(endpoint("a", 1))).unwrap();
    tx.send(EndpointChange::Insert(endpoint("b", 1))).unwrap();
    let mut balancer =
        Balancer::with_config(&config(Algorithm::RoundRobin), changes, fleet.connector()).unwrap();
    let counts = tally(&mut balancer, 1_000, |_| ()).await;
    assert_eq!((count(&counts, "a"), count(&counts, "b")), (500, 500));

    tx.send(EndpointChange::Update(endpoint("b", 3))).unwrap();
    tx.send(EndpointChange::Insert(endpoint("c", 4))).unwrap();
    let counts = tally(&mut balancer, 8_000, |_| ()).await;
    assert_eq!(
        (count(&counts, "a"), count(&counts, "b"), count(&counts, "c")),
        (1_000, 3_000, 4_000)
    );

    tx.send(EndpointChange::Remove("c".into())).unwrap();
    let counts = tally(&mut balancer, 4_000, |_| ()).await;
    assert_eq!((count(&counts, "a"), count(&counts, "b")), (1_000, 3_000));
}

// ===== Maglev =====

/// Requests are `Some(key)` or `None` (no key).
type Keyed = Option<u64>;

fn key_hash(request: &Keyed) -> Option<u64> {
    request.map(|key| stable_hash(&key.to_le_bytes(), 0))
}

fn maglev<D>(
    fleet: &Fleet,
    changes: D,
    algorithm: impl Into<Algorithm>,
) -> impl Service<Keyed, Response = String, Error = BalanceError>
where
    D: Stream<Item = EndpointChange> + Unpin,
{
    Balancer::with_config(&config(algorithm), changes, fleet.connector())
        .unwrap()
        .hash_with(key_hash)
}

/// The endpoint that handles each of `keys`.
async fn mapping<S>(balancer: &mut S, keys: std::ops::Range<u64>) -> Vec<String>
where
    S: Service<Keyed, Response = String, Error = BalanceError>,
{
    let mut handlers = Vec::new();
    for key in keys {
        handlers.push(handler(&send(balancer, Some(key)).await));
    }
    handlers
}

fn moved(before: &[String], after: &[String]) -> usize {
    before.iter().zip(after).filter(|(b, a)| b != a).count()
}

#[tokio::test(start_paused = true)]
async fn maglev_sends_a_key_to_the_same_endpoint_on_every_client() {
    let fleet = Fleet::default();
    let names = ids(10);
    let mut balancer = maglev(&fleet, fixed(&names), Algorithm::maglev());
    let first = mapping(&mut balancer, 0..2_000).await;
    for _ in 0..3 {
        assert_eq!(mapping(&mut balancer, 0..2_000).await, first);
    }
    for id in &names {
        let keys = first.iter().filter(|h| *h == id).count();
        assert!((150..=250).contains(&keys), "{id} has {keys} of 2000 keys");
    }

    // Another client that learns the endpoints in another order agrees.
    let reversed: Vec<String> = names.iter().rev().cloned().collect();
    let mut other = maglev(&fleet, fixed(&reversed), Algorithm::maglev());
    assert_eq!(mapping(&mut other, 0..2_000).await, first);
}

#[tokio::test(start_paused = true)]
async fn removing_one_of_n_endpoints_moves_at_most_one_nth_plus_two_percent_of_keys() {
    let fleet = Fleet::default();
    let (tx, changes) = changes();
    let n = 10;
    for id in ids(n) {
        tx.send(EndpointChange::Insert(endpoint(&id, 1))).unwrap();
    }
    let mut balancer = maglev(&fleet, changes, Algorithm::maglev());
    let keys = 10_000;
    let before = mapping(&mut balancer, 0..keys).await;

    tx.send(EndpointChange::Remove("e3".into())).unwrap();
    let after = mapping(&mut balancer, 0..keys).await;
    assert!(after.iter().all(|h| h != "e3"));
    let limit = (keys as f64 * (1.0 / n as f64 + 0.02)) as usize;
    let moved = moved(&before, &after);
    assert!(
        moved <= limit,
        "{moved} of {keys} keys moved, at most {limit} allowed"
    );
    let own = before.iter().filter(|h| *h == "e3").count();
    assert!(moved >= own, "at least e3's own {own} keys move");
}

#[tokio::test(start_paused = true)]
async fn an_ejected_endpoints_keys_go_elsewhere_and_come_back_after_it_returns() {
    let fleet = Fleet::default();
    let mut balancer = maglev(&fleet, fixed(&ids(5)), Algorithm::maglev());
    let before = mapping(&mut balancer, 0..2_000).await;
    let own: Vec<u64> = (0..2_000).filter(|&k| before[k as usize] == "e2").collect();

    // Its own keys fail it five times in a row: ejected.
    fleet.answer("e2", Answer::Fail);
    for &key in &own[..5] {
        assert_eq!(handler(&send(&mut balancer, Some(key)).await), "e2");
    }
    let during = mapping(&mut balancer, 0..2_000).await;
    for (key, (b, d)) in before.iter().zip(&during).enumerate() {
        if b == "e2" {
            assert_ne!(d, "e2", "key {key} still goes to the ejected endpoint");
        } else {
            assert_eq!(b, d, "key {key} of another endpoint moved");
        }
    }
    // Stand-ins are stable while it is out.
    assert_eq!(mapping(&mut balancer, 0..2_000).await, during);

    fleet.answer("e2", Answer::Ok);
    advance(Duration::from_secs(30)).await;
    assert_eq!(mapping(&mut balancer, 0..2_000).await, before);
}

#[tokio::test(start_paused = true)]
async fn a_not_ready_endpoints_keys_go_elsewhere_and_come_back_when_it_is_ready() {
    let fleet = Fleet::default();
    let mut balancer = maglev(&fleet, fixed(&ids(5)), Algorithm::maglev());
    let before = mapping(&mut balancer, 0..2_000).await;
    let own = (0..2_000).find(|&k| before[k as usize] == "e4").unwrap();

    // Seen not ready after its next call.
    fleet.set_ready("e4", false);
    send(&mut balancer, Some(own)).await.unwrap();
    let during = mapping(&mut balancer, 0..2_000).await;
    assert!(during.iter().all(|h| h != "e4"));
    let moved = moved(&before, &during);
    assert_eq!(
        moved,
        before.iter().filter(|h| *h == "e4").count(),
        "only e4's keys move"
    );

    fleet.set_ready("e4", true);
    assert_eq!(mapping(&mut balancer, 0..2_000).await, before);
}

#[tokio::test(start_paused = true)]
async fn maglev_honours_weights() {
    let fleet = Fleet::default();
    let mut balancer = maglev(&fleet, weighted(&[1, 3]), Algorithm::maglev());
    let handlers = mapping(&mut balancer, 0..20_000).await;
    let heavy = handlers.iter().filter(|h| *h == "w3").count() as f64 / 20_000.0;
    assert!(
        (heavy - 0.75).abs() < 0.02,
        "weight 3 of 4 got {heavy:.4} of the keys"
    );
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_key_spread_like_p2c() {
    let fleet = Fleet::default();
    let mut balancer = maglev(&fleet, fixed(&ids(4)), Algorithm::maglev());
    let counts = tally(&mut balancer, 4_000, |_| None).await;
    for id in ids(4) {
        let share = count(&counts, &id) as f64 / 4_000.0;
        assert!((share - 0.25).abs() < 0.03, "{counts:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn with_more_endpoints_than_table_entries_every_request_goes_to_p2c() {
    let fleet = Fleet::default();
    let mut balancer = maglev(&fleet, fixed(&ids(10)), Algorithm::maglev().table_size(7));
    let counts = tally(&mut balancer, 1_000, |i| Some(i as u64 % 3)).await;
    assert_eq!(counts.len(), 10, "three keys spread over all ten: {counts:?}");
}

#[tokio::test(start_paused = true)]
async fn an_http_header_is_a_key() {
    let fleet = Fleet::default();
    let config = config(Algorithm::maglev());
    let mut balancer = Balancer::with_config(&config, fixed(&ids(8)), fleet.connector())
        .unwrap()
        .hash_with(HeaderKey::new(http::HeaderName::from_static("x-user")));
    let request = |user: &str| http::Request::builder().header("x-user", user).body(()).unwrap();
    for user in ["alice", "bob", "carol"] {
        let first = send(&mut balancer, request(user)).await.unwrap();
        for _ in 0..20 {
            assert_eq!(send(&mut balancer, request(user)).await.unwrap(), first);
        }
    }
}
