//! sipedge lb: library code behind the thin `main.rs`.
#![forbid(unsafe_code)]

pub mod branch;
pub mod flow;
pub mod keepalive;
pub mod proxy_set;
pub mod stun;
pub mod tls;
pub mod txn;
