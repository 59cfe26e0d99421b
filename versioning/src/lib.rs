//! API versions, negotiation and versioned contracts; not yet built.
#![forbid(unsafe_code)]
