//! sipedge common library: everything two of the binaries need.
//! The `sip` module is sans-IO (no tokio); I/O lives in the modules that say so.
#![forbid(unsafe_code)]

pub mod admin;
pub mod carrier;
pub mod config;
pub mod flow_token;
pub mod hash;
pub mod metrics;
pub mod net;
pub mod sip;
