//! Subscribers and where they come from: a users file (the embedded default)
//! or PostgreSQL, behind an in-memory TTL cache. Only HA1 values are kept.
//!
//! The store trait returns a boxed future rather than using `async fn` in the
//! trait, so it stays object-safe: the proxy holds an `Arc<dyn SubscriberStore>`.

use std::future::Future;
use std::pin::Pin;

pub mod cache;
pub mod config;
pub mod file;
pub mod postgres;

/// A subscriber's credentials. `ha1_*` = H(user ":" realm ":" password) in
/// lowercase hex, with the realm being the subscriber's domain.
#[derive(Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// The user part (`alice`).
    pub user: String,
    /// The domain, also the digest realm (`sipedge.local`).
    pub domain: String,
    /// MD5 HA1, 32 hex digits.
    pub ha1_md5: String,
    /// SHA-256 HA1, 64 hex digits.
    pub ha1_sha256: String,
    /// A disabled subscriber cannot authenticate.
    pub enabled: bool,
}

impl std::fmt::Debug for Subscriber {
    // HA1s are password equivalents for their realm: keep them out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("user", &self.user)
            .field("domain", &self.domain)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl Subscriber {
    /// A subscriber from a plaintext password (hashed here, never kept).
    pub fn from_password(user: &str, domain: &str, password: &str) -> Self {
        use crate::auth::digest::{ha1, Algorithm};
        Self {
            user: user.to_string(),
            domain: domain.to_string(),
            ha1_md5: ha1(Algorithm::Md5, user, domain, password),
            ha1_sha256: ha1(Algorithm::Sha256, user, domain, password),
            enabled: true,
        }
    }

    /// `user@domain`.
    pub fn aor(&self) -> String {
        format!("{}@{}", self.user, self.domain)
    }
}

/// Normalises a lookup key: domains are case-insensitive, users are not (RFC 3261 §19.1.4).
pub fn normalize_domain(domain: &str) -> String {
    domain.to_ascii_lowercase()
}

/// A subscriber store error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or failed; the proxy answers 503 so the
    /// LB fails over to another proxy.
    #[error("subscriber store unavailable: {0}")]
    Unavailable(String),
    /// The request itself is wrong (bad name, duplicate, row not found for
    /// a delete…); not a reason to fail over.
    #[error("subscriber store: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether the proxy should answer 503 (the store, not the request, failed).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A boxed, `Send` future borrowed from the store.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where subscribers are looked up.
pub trait SubscriberStore: Send + Sync {
    /// The subscriber `user@domain`, `Ok(None)` when there is none.
    fn lookup<'a>(&'a self, user: &'a str, domain: &'a str) -> StoreFuture<'a, Option<Subscriber>>;
}

impl<S: SubscriberStore + ?Sized> SubscriberStore for std::sync::Arc<S> {
    fn lookup<'a>(&'a self, user: &'a str, domain: &'a str) -> StoreFuture<'a, Option<Subscriber>> {
        (**self).lookup(user, domain)
    }
}

/// Splits `user@domain` (for the CLI); both parts non-empty.
pub fn split_aor(aor: &str) -> Option<(&str, &str)> {
    let aor = aor.strip_prefix("sip:").unwrap_or(aor);
    let (u, d) = aor.rsplit_once('@')?;
    (!u.is_empty()
        && !d.is_empty()
        && !u.contains(char::is_whitespace)
        && !d.contains(char::is_whitespace))
    .then_some((u, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aor_split() {
        let table = [
            ("alice@sipedge.local", Some(("alice", "sipedge.local"))),
            ("sip:bob@x", Some(("bob", "x"))),
            ("a@b@c", Some(("a@b", "c"))),
            ("alice", None),
            ("@x", None),
            ("x@", None),
            ("a b@x", None),
        ];
        for (s, want) in table {
            assert_eq!(split_aor(s), want, "{s}");
        }
    }

    #[test]
    fn debug_hides_ha1() {
        let s = Subscriber::from_password("alice", "d", "pw");
        let d = format!("{s:?}");
        assert!(!d.contains(&s.ha1_md5) && d.contains("alice"), "{d}");
        assert_eq!(s.ha1_md5.len(), 32);
        assert_eq!(s.ha1_sha256.len(), 64);
    }
}
