//! sipedge lb: library code behind the thin `main.rs`.
#![forbid(unsafe_code)]
pub mod admin;
pub mod proxy_set;
