//! sipedge sipmon: pings every proxy with SIP OPTIONS and pushes the live set
//! to every LB; library code behind the thin `main.rs`.
#![forbid(unsafe_code)]

pub mod config;
pub mod generation;
pub mod health;
pub mod probe;
pub mod probe_parse;
pub mod push;
pub mod safety;
