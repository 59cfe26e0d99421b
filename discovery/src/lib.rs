//! Endpoint registry and client-side load balancers fed by the supervisor; not yet built.
#![forbid(unsafe_code)]
