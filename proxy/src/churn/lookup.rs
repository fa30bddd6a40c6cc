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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use sipedge_shared::admin::{self, AdminRequest, AdminResponse, AdminRoutes, BoxFuture};
    use tokio_util::sync::CancellationToken;

    use crate::churn::wire::WireBinding;

    /// A peer that answers every lookup with `status` and this many bindings.
    struct Answers(&'static str, u16, usize);

    impl AdminRoutes for Answers {
        fn handle(&self, req: AdminRequest) -> BoxFuture<'_, AdminResponse> {
            let authorised = sipedge_shared::admin::check_bearer(&req.headers, "tok");
            let body = BindingsBody {
                proxy: self.0.into(),
                bindings: (0..self.2)
                    .map(|i| WireBinding {
                        contact: format!("sip:bob@{i}"),
                        q: None,
                        expires_in: 60,
                        age: 0,
                        call_id: "c".into(),
                        cseq: 1,
                        path: vec![],
                        received: None,
                        instance: None,
                        reg_id: None,
                        user_agent: None,
                        origin: None,
                    })
                    .collect(),
            };
            let status = if authorised { self.1 } else { 401 };
            let status = hyper::StatusCode::from_u16(status).expect("valid status");
            Box::pin(async move { AdminResponse::json(status, &body) })
        }
    }

    async fn peer(answers: Answers, stop: &CancellationToken) -> Peer {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let id = answers.0.to_string();
        tokio::spawn(admin::serve(l, Arc::new(answers), stop.clone()));
        Peer {
            id,
            url: format!("http://{addr}"),
        }
    }

    /// (peers, token, Ok(answering peer) or Err(errors), must finish within).
    type Row = (
        Vec<Peer>,
        &'static str,
        Result<&'static str, usize>,
        Duration,
    );

    #[tokio::test]
    async fn first_non_empty_answer_wins_within_the_deadline() {
        let stop = CancellationToken::new();
        let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let silent = Peer {
            id: "silent".into(),
            url: format!("http://{}", hole.local_addr().expect("addr")),
        };
        let empty = peer(Answers("empty", 200, 0), &stop).await;
        let full = peer(Answers("full", 200, 2), &stop).await;
        let broken = peer(Answers("broken", 500, 0), &stop).await;
        let client = reqwest::Client::new();
        let timeout = Duration::from_millis(300);
        let table: Vec<Row> = vec![
            (
                vec![silent.clone(), empty.clone(), full.clone()],
                "tok",
                Ok("full"),
                timeout,
            ),
            (vec![empty.clone(), broken.clone()], "tok", Err(1), timeout),
            (
                vec![empty.clone(), silent.clone()],
                "tok",
                Err(1),
                timeout * 2,
            ),
            (vec![full.clone()], "wrong", Err(1), timeout),
            (vec![], "tok", Err(0), timeout),
        ];
        for (i, (peers, token, want, limit)) in table.into_iter().enumerate() {
            let started = std::time::Instant::now();
            let got = ask_peers(&client, &peers, token, "bob@d", timeout).await;
            let took = started.elapsed();
            match (got, want) {
                (Lookup::Found(b), Ok(id)) => {
                    assert_eq!(b.proxy, id, "row {i}");
                    assert_eq!(b.bindings.len(), 2, "row {i}");
                }
                (Lookup::NotFound { errors }, Err(n)) => assert_eq!(errors, n, "row {i}"),
                (got, want) => panic!("row {i}: {got:?} vs {want:?}"),
            }
            assert!(took < limit, "row {i} took {took:?}");
        }
        stop.cancel();
        drop(hole);
    }
}
