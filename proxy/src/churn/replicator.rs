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

use super::config::Peer;
use super::metrics::ChurnMetrics;
use super::wire::{encode_aor, ReplicaBody};

/// One replica set on its way.
#[derive(Debug)]
struct Job {
    aor: String,
    body: ReplicaBody,
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
    timeout: Duration,
    metrics: ChurnMetrics,
}

impl Replicator {
    /// Spawns one worker per peer (in the current runtime) that runs until
    /// `shutdown`; each queue holds at most `capacity` sets.
    pub fn start(
        peers: &[Peer],
        client: reqwest::Client,
        token: &str,
        timeout: Duration,
        capacity: usize,
        metrics: ChurnMetrics,
        shutdown: &CancellationToken,
    ) -> Self {
        let worker = Worker {
            client,
            token: Arc::from(token),
            timeout,
            metrics: metrics.clone(),
        };
        let queues = peers
            .iter()
            .map(|p| {
                let (tx, rx) = mpsc::channel(capacity.max(1));
                tokio::spawn(worker.clone().run(p.clone(), rx, shutdown.clone()));
                tx
            })
            .collect();
        Replicator { queues, metrics }
    }

    /// Queues `aor`'s set for the peer at `peer` (its index in the config).
    pub fn send(&self, peer: usize, aor: &str, body: ReplicaBody) {
        let Some(q) = self.queues.get(peer) else {
            return;
        };
        let job = Job {
            aor: aor.to_owned(),
            body,
        };
        if q.try_send(job).is_err() {
            // Full, or the worker stopped at shutdown.
            self.metrics.dropped.increment(1);
        }
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
            let put = self
                .client
                .put(&url)
                .bearer_auth(&*self.token)
                .timeout(self.timeout)
                .json(&job.body)
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
