//! Helpers for the end-to-end tests: locate binaries, fixtures and the
//! reference folder beside the repository.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// The reference folder (`../shared` beside the repository) read at run time.
///
/// `SIPEDGE_REFERENCE_DIR` overrides the default. Returns `None` when the
/// folder is absent, so a test on a user's clone can say so and skip.
pub fn reference_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SIPEDGE_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("..").join("shared"));
    dir.is_dir().then_some(dir)
}

/// The repository root (the parent of this crate's folder).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub mod lb_harness;
pub mod promql;
pub mod proxy_harness;
pub mod sipp;
