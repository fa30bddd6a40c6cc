//! sipedge lb: library code behind the thin `main.rs`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod branch;
pub mod config;
pub mod context;
pub mod flood;
pub mod flow;
pub mod keepalive;
pub mod metrics;
pub mod pipeline;
pub mod proxy_set;
pub mod run;
pub mod shard_map;
pub mod stream;
pub mod stun;
pub mod tls;
pub mod txn;
pub mod udp_peers;
pub mod worker;
