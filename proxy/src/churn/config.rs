//! `[peers]` of the proxy config: the other proxies of the tier (id and admin
//! URL), the shared bearer token, timeouts and the replica queue size.
//!
//! Without `[[peers.proxy]]` entries the churn machinery is off and the proxy
//! behaves as a lone registrar.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use sipedge_shared::config::{serde_duration, ConfigError};

/// `[peers]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersFile {
    /// Bearer token of the replica/binding routes: sent to peers and required
    /// from them (every proxy of the tier uses the same one).
    #[serde(default)]
    pub token: Option<String>,
    /// How long a peer lookup waits for all peers.
    #[serde(default = "default_lookup_timeout", with = "serde_duration")]
    pub lookup_timeout: Duration,
    /// How long one replica PUT may take.
    #[serde(default = "default_replica_timeout", with = "serde_duration")]
    pub replica_timeout: Duration,
    /// Replicas waiting to be sent; when full, new ones are dropped (counted).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// How long "no peer has bindings for this AOR" is remembered, so a burst
    /// of requests for an unregistered user asks the peers once.
    #[serde(default = "default_negative_ttl", with = "serde_duration")]
    pub negative_ttl: Duration,
    /// The other proxies.
    #[serde(default)]
    pub proxy: Vec<PeerFile>,
}

impl Default for PeersFile {
    fn default() -> Self {
        PeersFile {
            token: None,
            lookup_timeout: default_lookup_timeout(),
            replica_timeout: default_replica_timeout(),
            queue: default_queue(),
            negative_ttl: default_negative_ttl(),
            proxy: vec![],
        }
    }
}

fn default_lookup_timeout() -> Duration {
    Duration::from_millis(300)
}

fn default_replica_timeout() -> Duration {
    Duration::from_secs(2)
}

fn default_queue() -> usize {
    10_000
}

fn default_negative_ttl() -> Duration {
    Duration::from_secs(2)
}

/// `[[peers.proxy]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerFile {
    /// The peer's proxy id (as the LBs and sipmon name it: the hash key).
    pub id: String,
    /// Base URL of the peer's admin server, e.g. `http://10.0.9.2:9071`.
    pub url: String,
}

/// One validated peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Proxy id.
    pub id: String,
    /// Admin base URL without a trailing `/`.
    pub url: String,
}

/// Validated `[peers]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeersSettings {
    /// Bearer token (empty when no peers are configured).
    pub token: String,
    /// Peer lookup deadline.
    pub lookup_timeout: Duration,
    /// Replica PUT deadline.
    pub replica_timeout: Duration,
    /// Replica queue capacity.
    pub queue: usize,
    /// Negative lookup cache lifetime.
    pub negative_ttl: Duration,
    /// The peers, in config order.
    pub peers: Vec<Peer>,
}

impl PeersSettings {
    /// True when peers are configured (replication and lookups on).
    pub fn enabled(&self) -> bool {
        !self.peers.is_empty()
    }
}

impl Default for PeersSettings {
    fn default() -> Self {
        PeersFile::default()
            .validate(Path::new("<defaults>"), "self", false)
            .expect("the defaults have no peers and are valid")
    }
}

impl PeersFile {
    /// Checks the values; `own_id` is this proxy's id (a peer may not carry
    /// it), `has_admin` whether `[admin] listen` is set (peers reach us there).
    /// Errors name `file` and `peers.<key>`.
    pub fn validate(
        &self,
        file: &Path,
        own_id: &str,
        has_admin: bool,
    ) -> Result<PeersSettings, ConfigError> {
        let bad = |key: String, msg: String| Err(ConfigError::invalid(file, key, msg));
        if self.lookup_timeout.is_zero() {
            return bad("peers.lookup_timeout".into(), "must be > 0".into());
        }
        if self.replica_timeout.is_zero() {
            return bad("peers.replica_timeout".into(), "must be > 0".into());
        }
        if self.queue == 0 {
            return bad("peers.queue".into(), "must be > 0".into());
        }
        let mut peers: Vec<Peer> = Vec::with_capacity(self.proxy.len());
        for (i, p) in self.proxy.iter().enumerate() {
            let key = |k: &str| format!("peers.proxy[{i}].{k}");
            let id = p.id.trim();
            if id.is_empty() {
                return bad(key("id"), "must not be empty".into());
            }
            if id == own_id {
                return bad(key("id"), format!("`{id}` is this proxy's own id"));
            }
            if peers.iter().any(|q| q.id == id) {
                return bad(key("id"), format!("`{id}` appears twice"));
            }
            let url = p.url.trim().trim_end_matches('/');
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            let host = url.split_once("://").map_or("", |(_, rest)| rest);
            if !scheme_ok || host.is_empty() || host.contains(['/', '?', '#', ' ']) {
                return bad(
                    key("url"),
                    format!("`{}` is not an http(s)://host:port base URL", p.url),
                );
            }
            peers.push(Peer {
                id: id.to_owned(),
                url: url.to_owned(),
            });
        }
        let token = self.token.clone().unwrap_or_default();
        if !peers.is_empty() {
            if token.trim().is_empty() {
                return bad(
                    "peers.token".into(),
                    "required when peers are configured".into(),
                );
            }
            if !has_admin {
                return bad(
                    "admin.listen".into(),
                    "required when peers are configured (they reach us there)".into(),
                );
            }
        }
        Ok(PeersSettings {
            token,
            lookup_timeout: self.lookup_timeout,
            replica_timeout: self.replica_timeout,
            queue: self.queue,
            negative_ttl: self.negative_ttl,
            peers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, has_admin: bool) -> Result<PeersSettings, String> {
        let p = Path::new("proxy.toml");
        let f: PeersFile = sipedge_shared::config::parse(p, text).map_err(|e| e.to_string())?;
        f.validate(p, "p1", has_admin).map_err(|e| e.to_string())
    }

    const TWO: &str = "token = \"t\"\n[[proxy]]\nid = \"p2\"\nurl = \"http://127.0.0.1:9072/\"\n\
                       [[proxy]]\nid = \"p3\"\nurl = \"https://10.0.9.3:9071\"\n";

    #[test]
    fn validation_names_the_key() {
        // (text, has admin listen, Err(key) or Ok(number of peers))
        let table: &[(&str, bool, Result<usize, &str>)] = &[
            ("", false, Ok(0)),
            (TWO, true, Ok(2)),
            (TWO, false, Err("admin.listen")),
            (
                "[[proxy]]\nid = \"p2\"\nurl = \"http://h:1\"\n",
                true,
                Err("peers.token"),
            ),
            (
                "token = \"t\"\n[[proxy]]\nid = \"p1\"\nurl = \"http://h:1\"\n",
                true,
                Err("peers.proxy[0].id"),
            ),
            (
                "token = \"t\"\n[[proxy]]\nid = \"\"\nurl = \"http://h:1\"\n",
                true,
                Err("peers.proxy[0].id"),
            ),
            (
                "token = \"t\"\n[[proxy]]\nid = \"p2\"\nurl = \"http://h:1\"\n[[proxy]]\nid = \"p2\"\nurl = \"http://h:2\"\n",
                true,
                Err("peers.proxy[1].id"),
            ),
            (
                "token = \"t\"\n[[proxy]]\nid = \"p2\"\nurl = \"h:1\"\n",
                true,
                Err("peers.proxy[0].url"),
            ),
            (
                "token = \"t\"\n[[proxy]]\nid = \"p2\"\nurl = \"http://h:1/x\"\n",
                true,
                Err("peers.proxy[0].url"),
            ),
            ("lookup_timeout = \"0s\"\n", true, Err("peers.lookup_timeout")),
            ("replica_timeout = \"0s\"\n", true, Err("peers.replica_timeout")),
            ("queue = 0\n", true, Err("peers.queue")),
        ];
        for (text, admin, want) in table {
            match (check(text, *admin), want) {
                (Ok(s), Ok(n)) => assert_eq!(s.peers.len(), *n, "{text}"),
                (Err(e), Err(key)) => {
                    assert!(e.contains(key) && e.contains("proxy.toml"), "{text}: {e}")
                }
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        assert!(check("bogus = 1\n", true).is_err());
    }

    #[test]
    fn urls_lose_the_trailing_slash_and_defaults_hold() {
        let s = check(TWO, true).expect("valid");
        assert_eq!(s.peers[0].url, "http://127.0.0.1:9072");
        assert_eq!(s.lookup_timeout, Duration::from_millis(300));
        assert!(s.enabled());
        assert!(!PeersSettings::default().enabled());
    }
}
