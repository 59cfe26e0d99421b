//! The whole client stack on real loopback calls: does orch's client
//! (balancer + circuit breaker + retry + timeouts) cost anything a caller
//! would notice next to the network?
//!
//! Tiny servers run in this process on 127.0.0.1, as HTTP/1.1 (axum,
//! called with hyper-util's pooled client) and as gRPC over HTTP/2 (tonic,
//! the examples' `Payments` service), once as one server and once as three
//! replicas. Each client sends the same requests at concurrency 1 and 64:
//!
//! - `direct`: the same client calling the server (or taking the three
//!   replicas in turn), nothing in between: the baseline;
//! - `orch`: the servers' endpoints → orch's balancer (P2C peak-EWMA,
//!   shared handle) with orch's hyper or tonic connector → the resilience
//!   stack from its `http()` or `grpc()` preset (retry with its budget,
//!   circuit breaker, attempt timeout);
//! - `tower`: `tower::balance::p2c` over `PeakEwma` services of the same
//!   clients, behind `tower::buffer::Buffer` (tower's way to share a
//!   balancer), with `tower::retry` (two retries of 5xx and errors) and
//!   `tower::timeout` per attempt. For gRPC, tower's retry cannot replay a
//!   `tonic::body::Body`, so its policy declines to clone the request; the
//!   layer's cost is still paid;
//! - with one server, `orch stack only` (orch's stack over `direct`'s
//!   client) and `orch balancer only` (orch's balancer and connector, no
//!   stack), to tell what each half of `orch` costs.
//!
//! Servers and clients set `TCP_NODELAY`, as orch's served children and
//! connectors do: with Nagle's algorithm on the server, a response written
//! in two parts waited for the client's delayed ACK, and gRPC at
//! concurrency 64 had a p99 of 41 ms whatever the client.
//!
//! With one server, the balancer has one endpoint: the lines measure what
//! the client stack adds to a call. With three, `direct` pays for spreading
//! calls over three connections too (on two worker threads that is most of
//! the cost at concurrency 1), so each line compares like with like.
//!
//! Every round runs every contender once, in a rotating order, so that
//! they share the machine's noise; the table shows per contender the
//! median over rounds of p50, p99 and throughput, and each line's ratio to
//! `direct` of the same protocol and concurrency. Target (issue 12): p50 at
//! most 1.05× direct and throughput at least 0.95× direct.
//!
//! Run: `cargo bench --bench client_stack`; under `cargo test --benches`
//! it runs one short round. Arguments select lines by protocol and
//! concurrency: `cargo bench --bench client_stack -- "grpc ×1" @64`.
//!
//! # One contender, for instruction counts
//!
//! Wall-clock ratios on a shared machine are noisy; instruction counts are
//! not. With `CLIENT_STACK_ONE=<contender>` (`direct`, `orch`, `tower`,
//! `orch stack only`, `orch balancer only`) the harness runs only that
//! contender on each selected line: a warm-up (connections, first-touch
//! costs), then `CLIENT_STACK_REQUESTS` calls (default 2,000), once, and
//! prints nothing but the line's name. Under
//! `valgrind --tool=callgrind`, which counts the instructions of every
//! thread, client and servers included, the difference between two
//! contenders on the same line, divided by the requests, is what one
//! client adds to a call over the other; the difference between two
//! request counts of one contender removes the setup. How two worker
//! threads interleave changes the runtime's own work from run to run (by
//! about 1,000 instructions a call over gRPC); with
//! `CLIENT_STACK_THREAD=current` every task runs on one thread, and two
//! runs agree within a few dozen instructions a call. `benches/README.md`
//! has the commands.

#[path = "support/loopback.rs"]
mod loopback;

use std::time::Duration;

use loopback::{Table, measure, run_one};

/// Requests per contender per round, and rounds, when benchmarking.
const REQUESTS: usize = 4_000;
const ROUNDS: usize = 7;

fn main() {
    // `cargo test --benches` passes no `--bench`: one short round proves the
    // harness works without spending a minute.
    let quick = !std::env::args().any(|a| a == "--bench");
    let only = std::env::var("CLIENT_STACK_ONE").ok();
    let only_requests = match std::env::var("CLIENT_STACK_REQUESTS") {
        Ok(n) => n.parse().expect("CLIENT_STACK_REQUESTS is a number of requests"),
        Err(_) => 2_000,
    };
    let (requests, rounds) = if quick { (200, 1) } else { (REQUESTS, ROUNDS) };
    // Other arguments select the lines that contain each of them, read as
    // "{protocol} @{concurrency}": `-- "grpc ×1" @64`.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let selected = |protocol: &str, concurrency: usize| {
        let line = format!("{protocol} @{concurrency}");
        filters.iter().all(|f| line.contains(f.as_str()))
    };
    // `CLIENT_STACK_THREAD=current`: every task on the main thread, for
    // instruction counts that do not depend on how two workers interleave.
    let mut runtime = match std::env::var("CLIENT_STACK_THREAD").as_deref() {
        Ok("current") => tokio::runtime::Builder::new_current_thread(),
        _ => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(2);
            builder
        }
    };
    let runtime = runtime.enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let mut table = Table::default();
        for (replicas, http, grpc) in [(1, "http/1.1 ×1", "grpc ×1"), (3, "http/1.1 ×3", "grpc ×3")] {
            for concurrency in [1, 64] {
                for protocol in [http, grpc] {
                    if !selected(protocol, concurrency) {
                        continue;
                    }
                    let contenders = if protocol == http {
                        loopback::http_contenders(replicas).await
                    } else {
                        loopback::grpc_contenders(replicas).await
                    };
                    match &only {
                        Some(name) => {
                            let Some(contender) = contenders.iter().find(|c| c.name == name) else {
                                continue;
                            };
                            run_one(contender, concurrency, only_requests).await;
                            println!("{protocol} @{concurrency} {name}: {only_requests} requests");
                        }
                        None => {
                            measure(&mut table, protocol, concurrency, requests, rounds, &contenders).await
                        }
                    }
                }
            }
        }
        if only.is_none() {
            table.print();
        }
    });
    // Servers and clients are dropped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(1));
}
