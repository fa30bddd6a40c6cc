//! sipedge lb: library code behind the thin `main.rs`.
#![forbid(unsafe_code)]
pub mod admin;
pub mod flood;
pub mod proxy_set;
