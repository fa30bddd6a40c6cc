//! Sending replica sets to peers: one bounded queue and one worker per peer,
//! so a dead or slow peer delays and drops only its own replicas, and sets for
//! one peer arrive in the order the REGISTERs were accepted.
//!
//! [`Replicator::send`] never waits: a full queue drops the set (counted), the
//! REGISTER it came from has already been answered.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::config::{Peer, PeersSettings};
use super::metrics::ChurnMetrics;
use super::wire::{encode_aor, ReplicaBody, WireBinding};
use crate::registrar::Binding;

/// One replica set on its way; put on the wire when sent, so the times it
/// carries (`expires_in`, `age`) do not include the time spent queued.
#[derive(Debug)]
struct Job {
    aor: String,
    bindings: Vec<Binding>,
}

/// The per-peer queues.
#[derive(Debug)]
pub struct Replicator {
    queues: Vec<mpsc::Sender<Job>>,
    metrics: ChurnMetrics,
}

/// What a worker needs.
#[derive(Debug, Clone)]
struct Worker {
    client: reqwest::Client,
    token: Arc<str>,
    origin: Arc<str>,
    timeout: Duration,
    metrics: ChurnMetrics,
}

impl Replicator {
    /// Spawns one worker per peer of `settings` (in the current runtime)
    /// that runs until `shutdown`; each queue holds at most `settings.queue`
    /// sets. `origin` is our own proxy id.
    pub fn start(
        origin: &str,
        settings: &PeersSettings,
        client: reqwest::Client,
        metrics: ChurnMetrics,
        shutdown: &CancellationToken,
    ) -> Self {
        let worker = Worker {
            client,
            token: Arc::from(settings.token.as_str()),
            origin: Arc::from(origin),
            timeout: settings.replica_timeout,
            metrics: metrics.clone(),
        };
        let capacity = settings.queue;
        let queues = settings
            .peers
            .iter()
            .map(|p| {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                tokio::spawn(worker.clone().run(p.clone(), rx, shutdown.clone()));
                tx
            })
            .collect();
        Replicator { queues, metrics }
    }

    /// Queues `aor`'s whole set for the peer at `peer` (its index in the
    /// config); false when it was dropped (queue full or stopped).
    pub fn send(&self, peer: usize, aor: &str, bindings: Vec<Binding>) -> bool {
        let Some(q) = self.queues.get(peer) else {
            return false;
        };
        let job = Job {
            aor: aor.to_owned(),
            bindings,
        };
        if q.try_send(job).is_err() {
            // Full, or the worker stopped at shutdown.
            self.metrics.dropped.increment(1);
            return false;
        }
        true
    }
}

impl Worker {
    async fn run(self, peer: Peer, mut rx: mpsc::Receiver<Job>, shutdown: CancellationToken) {
        loop {
            let job = tokio::select! {
                _ = shutdown.cancelled() => return,
                j = rx.recv() => match j {
                    Some(j) => j,
                    None => return,
                },
            };
            let url = format!("{}/v1/replicas/{}", peer.url, encode_aor(&job.aor));
            let now = std::time::Instant::now();
            let body = ReplicaBody {
                origin: self.origin.to_string(),
                bindings: job
                    .bindings
                    .iter()
                    .filter(|b| !b.is_expired(now))
                    .map(|b| WireBinding::from_binding(b, now, None))
                    .collect(),
            };
            let put = self
                .client
                .put(&url)
                .bearer_auth(&*self.token)
                .timeout(self.timeout)
                .json(&body)
                .send();
            match put.await {
                Ok(r) if r.status().is_success() => self.metrics.sent.increment(1),
                Ok(r) => {
                    self.metrics.failed.increment(1);
                    tracing::warn!(peer = %peer.id, status = %r.status(), aor = %job.aor, "replica refused");
                }
                Err(e) => {
                    self.metrics.failed.increment(1);
                    tracing::debug!(peer = %peer.id, error = %e, aor = %job.aor, "replica not sent");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::Instant;

    use sipedge_shared::admin::{self, AdminRequest, AdminResponse, AdminRoutes, BoxFuture};

    use crate::churn::config::PeersFile;
    use crate::churn::wire::WireBinding;

    /// A peer that records (path, Authorization, body) and answers 200.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(String, String, ReplicaBody)>>>);

    impl AdminRoutes for Recorder {
        fn handle(&self, req: AdminRequest) -> BoxFuture<'_, AdminResponse> {
            let auth = req
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            if let Ok(body) = serde_json::from_slice::<ReplicaBody>(&req.body) {
                self.0
                    .lock()
                    .expect("test lock")
                    .push((req.path.clone(), auth, body));
            }
            Box::pin(async { AdminResponse::text(hyper::StatusCode::OK, "") })
        }
    }

    fn binding(contact: &str, cseq: u32) -> Binding {
        let now = Instant::now();
        Binding {
            aor: "bob d@x".into(),
            contact: contact.into(),
            q: None,
            expires_at: now + Duration::from_secs(60),
            registered_at: now,
            call_id: "c".into(),
            cseq,
            path: vec![],
            received: None,
            instance: None,
            reg_id: None,
            user_agent: None,
        }
    }

    #[tokio::test]
    async fn sets_reach_the_peer_in_order_and_a_full_queue_drops() {
        let stop = CancellationToken::new();
        let rec = Recorder::default();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let live = l.local_addr().expect("addr");
        tokio::spawn(admin::serve(l, Arc::new(rec.clone()), stop.clone()));
        // A peer that accepts connections (backlog) and never answers.
        let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = hole.local_addr().expect("addr");
        let text = format!(
            "token = \"tok\"\nreplica_timeout = \"300ms\"\nqueue = 1\n\
             [[proxy]]\nid = \"p2\"\nurl = \"http://{live}\"\n\
             [[proxy]]\nid = \"p3\"\nurl = \"http://{dead}\"\n"
        );
        let f: PeersFile = sipedge_shared::config::parse(Path::new("t"), &text).expect("parses");
        let settings = f.validate(Path::new("t"), "p1", true).expect("valid");
        let r = Replicator::start(
            "p1",
            &settings,
            reqwest::Client::new(),
            ChurnMetrics::new("unit-replicator"),
            &stop,
        );
        // In order, one at a time (queue of one), to the live peer.
        for cseq in 1..=3 {
            assert!(
                r.send(0, "bob d@x", vec![binding("sip:a", cseq)]),
                "set {cseq}"
            );
            let mut arrived = false;
            for _ in 0..100 {
                if rec.0.lock().expect("test lock").len() == cseq as usize {
                    arrived = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(arrived, "set {cseq} arrived");
        }
        let got = rec.0.lock().expect("test lock").clone();
        for (i, (path, auth, body)) in got.iter().enumerate() {
            assert_eq!(path, "/v1/replicas/bob%20d@x");
            assert_eq!(auth, "Bearer tok");
            assert_eq!(body.origin, "p1");
            let cseqs: Vec<u32> = body.bindings.iter().map(|w: &WireBinding| w.cseq).collect();
            assert_eq!(cseqs, [i as u32 + 1]);
        }
        // The silent peer holds one in flight and one queued: the rest drop.
        let sent: Vec<bool> = (0..4)
            .map(|i| r.send(1, "bob d@x", vec![binding("sip:a", i)]))
            .collect();
        assert!(sent.iter().filter(|s| !**s).count() >= 2, "{sent:?}");
        assert!(!r.send(7, "bob d@x", vec![]), "no such peer");
        stop.cancel();
        drop(hole);
    }
}
