//! Asking the peers for an AOR's bindings: every peer at once, the first
//! non-empty answer wins, everything bounded by one deadline. Used when a
//! request for a local user finds no binding here (the user's home proxy may
//! have died, or the live set moved them to us before they re-registered).

use std::time::Duration;

use tokio::task::JoinSet;

use super::config::Peer;
use super::wire::{encode_aor, BindingsBody};

/// The outcome of one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// This peer answered with bindings.
    Found(BindingsBody),
    /// No peer had any; `errors` of them failed or did not answer in time.
    NotFound {
        /// Peers that failed or timed out.
        errors: usize,
    },
}

/// Why one peer gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Connecting, sending or reading failed.
    #[error("request: {0}")]
    Http(#[from] reqwest::Error),
    /// The peer answered with a non-200 status.
    #[error("status {0}")]
    Status(reqwest::StatusCode),
}

async fn ask(
    client: reqwest::Client,
    url: String,
    token: String,
) -> Result<BindingsBody, PeerError> {
    let r = client.get(&url).bearer_auth(token).send().await?;
    if r.status() != reqwest::StatusCode::OK {
        return Err(PeerError::Status(r.status()));
    }
    Ok(r.json::<BindingsBody>().await?)
}

/// Asks every peer for `aor`; returns the first non-empty answer, or
/// `NotFound` when all answered empty, failed, or `timeout` passed.
pub async fn ask_peers(
    client: &reqwest::Client,
    peers: &[Peer],
    token: &str,
    aor: &str,
    timeout: Duration,
) -> Lookup {
    let mut set = JoinSet::new();
    for p in peers {
        let url = format!("{}/v1/bindings/{}", p.url, encode_aor(aor));
        set.spawn(ask(client.clone(), url, token.to_owned()));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut errors = 0;
    let mut answered = 0;
    while answered < peers.len() {
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok(Ok(body)))) => {
                answered += 1;
                if !body.bindings.is_empty() {
                    // Dropping the set aborts the slower requests.
                    return Lookup::Found(body);
                }
            }
            Ok(Some(Ok(Err(e)))) => {
                answered += 1;
                errors += 1;
                tracing::debug!(error = %e, %aor, "peer lookup failed");
            }
            Ok(Some(Err(_join))) => {
                answered += 1;
                errors += 1;
            }
            Ok(None) => break,
            Err(_elapsed) => {
                errors += peers.len() - answered;
                break;
            }
        }
    }
    Lookup::NotFound { errors }
}
