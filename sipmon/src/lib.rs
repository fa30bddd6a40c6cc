//! sipedge sipmon: library code behind the thin `main.rs`.
#![forbid(unsafe_code)]
