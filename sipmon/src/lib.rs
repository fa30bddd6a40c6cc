//! sipedge sipmon: pings every proxy with SIP OPTIONS and pushes the live set
//! to every LB; library code behind the thin `main.rs`.
#![forbid(unsafe_code)]

pub mod config;
pub mod health;
pub mod probe_parse;
pub mod safety;
