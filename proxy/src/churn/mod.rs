//! Churn handling of the proxy tier: when the live proxy set changes, a
//! user's requests land on a proxy that did not see their REGISTER. Each
//! accepted REGISTER's binding set is copied to the next-ranked proxy (the
//! one the LBs fail over to), and a proxy that finds no binding for a
//! subscriber asks its peers before answering 480 (a name that is no
//! subscriber still gets 404 or goes to the PSTN without asking anyone).
//!
//! Off (the proxy behaves as a lone registrar) unless `[[peers.proxy]]` is
//! configured. Transport: HTTP on the admin servers (`admin`, `wire`).

pub mod admin;
pub mod config;
pub mod lookup;
pub mod metrics;
pub mod rank;
pub mod replicas;
pub mod replicator;
pub mod wire;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::registrar::Binding;
use config::PeersSettings;
use lookup::Lookup;
use metrics::ChurnMetrics;
use replicas::Replicas;
use replicator::Replicator;
use wire::{BindingsBody, ReplicaBody, WireBinding, WireError};

/// Most AORs remembered as "no peer has them" (the cache is cleared when full).
const MAX_MISSES: usize = 10_000;

/// Why a replica set from a peer was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The origin is not one of our configured peers.
    #[error("origin `{0}` is not a configured peer")]
    UnknownOrigin(String),
    /// A binding in the set is malformed.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// The churn machinery of one proxy.
#[derive(Debug)]
pub struct Churn {
    own_id: String,
    settings: PeersSettings,
    peer_ids: Vec<String>,
    replicas: Replicas,
    client: reqwest::Client,
    replicator: Option<Replicator>,
    misses: Mutex<HashMap<String, Instant>>,
    /// Metric handles.
    pub metrics: ChurnMetrics,
}

impl Churn {
    /// Sets up replication toward `settings.peers` (workers run in the
    /// current runtime until `shutdown`). Without peers nothing is spawned.
    pub fn start(
        own_id: &str,
        settings: PeersSettings,
        edge: &str,
        shutdown: &CancellationToken,
    ) -> Result<Self, reqwest::Error> {
        let metrics = ChurnMetrics::new(edge);
        let client = reqwest::Client::builder()
            .connect_timeout(settings.replica_timeout)
            .build()?;
        let replicator = settings.enabled().then(|| {
            Replicator::start(own_id, &settings, client.clone(), metrics.clone(), shutdown)
        });
        Ok(Churn {
            own_id: own_id.to_owned(),
            peer_ids: settings.peers.iter().map(|p| p.id.clone()).collect(),
            settings,
            replicas: Replicas::default(),
            client,
            replicator,
            misses: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// True when peers are configured.
    pub fn enabled(&self) -> bool {
        self.settings.enabled()
    }

    /// The bearer token peers present (empty when disabled).
    pub fn token(&self) -> &str {
        &self.settings.token
    }

    /// After an accepted REGISTER that changed `aor`: queue its whole binding
    /// set (`bindings`, as the registrar now holds it) for the next-ranked proxy.
    pub fn replicate(&self, aor: &str, bindings: Vec<Binding>) {
        let Some(replicator) = &self.replicator else {
            return;
        };
        let Some(target) = rank::replica_target(aor, &self.peer_ids) else {
            return;
        };
        let Some(peer) = self.peer_ids.iter().position(|p| p == target) else {
            return;
        };
        replicator.send(peer, aor, bindings);
    }

    /// The bindings to route `aor` to: the registrar's (`local`) merged with
    /// the replicas held here (see [`replicas::merge`]).
    pub fn routable(&self, aor: &str, local: Vec<Binding>, now: Instant) -> Vec<Binding> {
        if !self.enabled() {
            return local;
        }
        let held = self.replicas.get(aor, now);
        if held.is_empty() {
            return local;
        }
        replicas::merge(local, held.into_iter().map(|(_, b)| b))
    }

    /// Asks the peers for `aor` (no binding here); the first non-empty answer
    /// is stored as a replica of the answering peer and returned.
    pub async fn ask_peers(&self, aor: &str) -> Vec<Binding> {
        if !self.enabled() {
            return vec![];
        }
        if self.recent_miss(aor, Instant::now()) {
            self.metrics.lookup_cached.increment(1);
            return vec![];
        }
        let outcome = lookup::ask_peers(
            &self.client,
            &self.settings.peers,
            &self.settings.token,
            aor,
            self.settings.lookup_timeout,
        )
        .await;
        let now = Instant::now();
        match outcome {
            Lookup::Found(body) => {
                let Some(origin) = self.peer_ids.iter().find(|p| **p == body.proxy) else {
                    tracing::warn!(proxy = %body.proxy, "lookup answer from an unknown proxy id");
                    self.metrics.lookup_not_found.increment(1);
                    return vec![];
                };
                match wire::decode(aor, &body.bindings, now) {
                    Ok(bindings) => {
                        self.metrics.lookup_found.increment(1);
                        tracing::info!(%aor, peer = %origin, n = bindings.len(), "bindings found at a peer");
                        self.replicas.put(aor, origin, bindings.clone(), now);
                        bindings
                    }
                    Err(e) => {
                        self.metrics.lookup_errors.increment(1);
                        tracing::warn!(peer = %origin, error = %e, "malformed lookup answer");
                        vec![]
                    }
                }
            }
            Lookup::NotFound { errors } => {
                self.metrics.lookup_not_found.increment(1);
                self.metrics.lookup_errors.increment(errors as u64);
                self.remember_miss(aor, now);
                vec![]
            }
        }
    }

    fn recent_miss(&self, aor: &str, now: Instant) -> bool {
        let misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        misses
            .get(aor)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.settings.negative_ttl)
    }

    fn remember_miss(&self, aor: &str, now: Instant) {
        if self.settings.negative_ttl.is_zero() {
            return;
        }
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        if misses.len() >= MAX_MISSES {
            misses.clear();
        }
        misses.insert(aor.to_owned(), now);
    }

    fn forget_miss(&self, aor: &str) {
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        misses.remove(aor);
    }

    /// Stores a replica set a peer sent for `aor`; returns how many bindings
    /// are held for that peer now.
    pub fn accept_replica(
        &self,
        aor: &str,
        body: &ReplicaBody,
        now: Instant,
    ) -> Result<usize, ReplicaError> {
        if !self.peer_ids.contains(&body.origin) {
            return Err(ReplicaError::UnknownOrigin(body.origin.clone()));
        }
        let bindings = wire::decode(aor, &body.bindings, now)?;
        let n = self.replicas.put(aor, &body.origin, bindings, now);
        self.forget_miss(aor);
        self.metrics.received.increment(1);
        Ok(n)
    }

    /// The answer to a peer's lookup: our own bindings of `aor` (`local`) and
    /// the replicas we hold (marked with their origin).
    pub fn lookup_answer(&self, aor: &str, local: &[Binding], now: Instant) -> BindingsBody {
        let mut bindings: Vec<WireBinding> = local
            .iter()
            .map(|b| WireBinding::from_binding(b, now, None))
            .collect();
        bindings.extend(
            self.replicas
                .get(aor, now)
                .iter()
                .map(|(o, b)| WireBinding::from_binding(b, now, Some(o))),
        );
        BindingsBody {
            proxy: self.own_id.clone(),
            bindings,
        }
    }

    /// Drops lapsed replicas and old negative-cache entries; updates the gauge.
    pub fn purge(&self, now: Instant) {
        self.replicas.purge_expired(now);
        self.metrics.held.set(self.replicas.count() as f64);
        let ttl = self.settings.negative_ttl;
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        misses.retain(|_, t| now.saturating_duration_since(*t) < ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    fn settings(peers: &[&str]) -> PeersSettings {
        let mut text = String::from("token = \"t\"\n");
        for p in peers {
            // Port 9 (discard): nothing answers; these tests never send.
            text.push_str(&format!(
                "[[proxy]]\nid = \"{p}\"\nurl = \"http://127.0.0.1:9\"\n"
            ));
        }
        let f: config::PeersFile =
            sipedge_shared::config::parse(Path::new("t.toml"), &text).expect("parses");
        f.validate(Path::new("t.toml"), "p1", true).expect("valid")
    }

    fn binding(now: Instant, contact: &str, cseq: u32) -> Binding {
        Binding {
            aor: "bob@d".into(),
            contact: contact.into(),
            q: None,
            expires_at: now + Duration::from_secs(60),
            registered_at: now,
            call_id: "c".into(),
            cseq,
            path: vec!["sip:TOK@10.0.1.1;lr;ob".into()],
            received: None,
            instance: None,
            reg_id: None,
            user_agent: None,
        }
    }

    #[tokio::test]
    async fn replicas_from_peers_are_routable_and_answered() {
        let stop = CancellationToken::new();
        let c = Churn::start("p1", settings(&["p2", "p3"]), "unit-churn", &stop).expect("client");
        let now = Instant::now();
        let wire = |b: &Binding| WireBinding::from_binding(b, now, None);
        // (origin, set, Ok(held) or Err)
        let table: Vec<(&str, Vec<Binding>, Result<usize, &str>)> = vec![
            ("p2", vec![binding(now, "sip:a", 1)], Ok(1)),
            ("p9", vec![binding(now, "sip:a", 1)], Err("p9")),
            ("p3", vec![binding(now, "sip:b", 1)], Ok(1)),
        ];
        for (origin, set, want) in table {
            let body = ReplicaBody {
                origin: origin.into(),
                bindings: set.iter().map(wire).collect(),
            };
            match (c.accept_replica("bob@d", &body, now), want) {
                (Ok(n), Ok(w)) => assert_eq!(n, w, "{origin}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
                (got, want) => panic!("{origin}: {got:?} vs {want:?}"),
            }
        }
        // A local binding with the same contact and a higher CSeq shadows p2's.
        let local = vec![binding(now, "sip:a", 5)];
        let got: Vec<(String, u32)> = c
            .routable("bob@d", local.clone(), now)
            .into_iter()
            .map(|b| (b.contact, b.cseq))
            .collect();
        assert_eq!(got, [("sip:a".to_string(), 5), ("sip:b".to_string(), 1)]);
        let answer = c.lookup_answer("bob@d", &local, now);
        assert_eq!(answer.proxy, "p1");
        let origins: Vec<Option<&str>> = answer
            .bindings
            .iter()
            .map(|b| b.origin.as_deref())
            .collect();
        assert_eq!(origins, [None, Some("p2"), Some("p3")]);
        // Expiry: gone from routing once lapsed, and purged.
        let later = now + Duration::from_secs(61);
        assert!(c.routable("bob@d", vec![], later).is_empty());
        c.purge(later);
        assert_eq!(c.replicas.count(), 0);
        stop.cancel();
    }

    #[tokio::test]
    async fn disabled_without_peers() {
        let stop = CancellationToken::new();
        let c =
            Churn::start("p1", PeersSettings::default(), "unit-churn-off", &stop).expect("client");
        let now = Instant::now();
        assert!(!c.enabled());
        c.replicate("bob@d", vec![binding(now, "sip:a", 1)]);
        assert!(c.ask_peers("bob@d").await.is_empty());
        let body = ReplicaBody {
            origin: "p2".into(),
            bindings: vec![],
        };
        assert!(c.accept_replica("bob@d", &body, now).is_err());
    }

    #[tokio::test]
    async fn a_miss_is_remembered_for_the_negative_ttl() {
        let stop = CancellationToken::new();
        let c = Churn::start("p1", settings(&["p2"]), "unit-churn-miss", &stop).expect("client");
        let now = Instant::now();
        // (remembered at, asked at, want cached)
        let ttl = c.settings.negative_ttl;
        let table = [
            (now, now, true),
            (now, now + ttl / 2, true),
            (now, now + ttl, false),
        ];
        for (at, asked, want) in table {
            c.remember_miss("bob@d", at);
            assert_eq!(c.recent_miss("bob@d", asked), want, "{:?}", asked - at);
        }
        // A replica arriving for the AOR clears the miss.
        c.remember_miss("bob@d", now);
        let body = ReplicaBody {
            origin: "p2".into(),
            bindings: vec![WireBinding::from_binding(
                &binding(now, "sip:a", 1),
                now,
                None,
            )],
        };
        c.accept_replica("bob@d", &body, now).expect("accepted");
        assert!(!c.recent_miss("bob@d", now));
        stop.cancel();
    }
}
