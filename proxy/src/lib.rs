//! sipedge proxy: library code behind the thin `main.rs`.
#![forbid(unsafe_code)]

pub mod auth;
pub mod churn;
pub mod cli;
pub mod config;
pub mod registrar;
pub mod run;
pub mod server;
pub mod transaction;
pub mod users;
