//! The LB's admin routes on the shared admin server: `GET`/`PUT /v1/proxies`
//! (monitor reports, bearer token) and `GET /v1/flows`; readiness for `/readyz`.
//!
//! ```text
//! PUT /v1/proxies   Authorization: Bearer <token>
//! {"monitor":"mon-a","generation":N,"proxies":[{"id":"p1","addr":"127.0.0.1:5071","up":true}, ...]}
//! 200 {"generation":<snapshot generation>,"live":["p1",...]}   401 missing/bad token
//! 400 malformed JSON or address   409 {"error":"stale generation","last":N}
//! 422 {"error":"empty set refused"}  (the last good set is kept)
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use sipedge_shared::admin::{check_bearer, AdminRequest, AdminResponse, AdminRoutes, BoxFuture};
use sipedge_shared::flow_token::Transport;

use crate::proxy_set::{MonitorReport, MonitorStatus, ProxySet, Refusal, ReportedProxy, Source};

/// Flow counts by transport, as `GET /v1/flows` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowCounts {
    /// UDP flows (5-tuples seen recently).
    pub udp: u64,
    /// TCP connections.
    pub tcp: u64,
    /// TLS connections.
    pub tls: u64,
    /// WebSocket connections.
    pub ws: u64,
    /// Secure WebSocket connections.
    pub wss: u64,
    /// The sum.
    pub total: u64,
}

/// Where flow counts come from (the socket layer).
pub trait FlowCountSource: Send + Sync + 'static {
    /// The current counts.
    fn flow_counts(&self) -> FlowCounts;
}

/// Atomic per-transport counters the socket layer may use as its
/// [`FlowCountSource`]: `opened` when a flow starts, `closed` when it ends.
#[derive(Debug, Default)]
pub struct FlowCounters {
    counts: [AtomicU64; 5],
}

impl FlowCounters {
    fn slot(t: Transport) -> usize {
        match t {
            Transport::Udp => 0,
            Transport::Tcp => 1,
            Transport::Tls => 2,
            Transport::Ws => 3,
            Transport::Wss => 4,
        }
    }

    /// A flow of transport `t` was opened.
    pub fn opened(&self, t: Transport) {
        self.counts[Self::slot(t)].fetch_add(1, Ordering::Relaxed);
    }

    /// A flow of transport `t` was closed (never goes below zero).
    pub fn closed(&self, t: Transport) {
        let _ =
            self.counts[Self::slot(t)].fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }
}

impl FlowCountSource for FlowCounters {
    fn flow_counts(&self) -> FlowCounts {
        let [udp, tcp, tls, ws, wss] =
            std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed));
        FlowCounts {
            udp,
            tcp,
            tls,
            ws,
            wss,
            total: udp + tcp + tls + ws + wss,
        }
    }
}

/// The PUT body. Unknown fields are ignored so monitors may add some (e.g. RTTs).
#[derive(Debug, Deserialize)]
struct PutBody {
    monitor: String,
    generation: u64,
    proxies: Vec<PutProxy>,
}

#[derive(Debug, Deserialize)]
struct PutProxy {
    id: String,
    addr: String,
    up: bool,
}

#[derive(Debug, Serialize)]
struct LiveProxy<'a> {
    id: &'a str,
    addr: SocketAddr,
}

#[derive(Debug, Serialize)]
struct GetBody<'a> {
    generation: u64,
    source: Source,
    live: Vec<LiveProxy<'a>>,
    monitors: Vec<MonitorStatus>,
}

/// The LB's admin routes.
pub struct LbAdmin {
    proxies: Arc<ProxySet>,
    token: String,
    flows: Arc<dyn FlowCountSource>,
    sockets_bound: Arc<AtomicBool>,
}

impl std::fmt::Debug for LbAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbAdmin")
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl LbAdmin {
    /// Routes over `proxies`, accepting monitor reports with `token`.
    /// `sockets_bound` is the flag the socket layer sets once every listener
    /// is bound; `/readyz` also needs a non-empty live set.
    pub fn new(
        proxies: Arc<ProxySet>,
        token: impl Into<String>,
        flows: Arc<dyn FlowCountSource>,
        sockets_bound: Arc<AtomicBool>,
    ) -> Self {
        LbAdmin {
            proxies,
            token: token.into(),
            flows,
            sockets_bound,
        }
    }

    fn put_proxies(&self, req: &AdminRequest) -> AdminResponse {
        if !check_bearer(&req.headers, &self.token) {
            return AdminResponse::error(StatusCode::UNAUTHORIZED, "missing or bad bearer token");
        }
        let body: PutBody = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => {
                return AdminResponse::error(
                    StatusCode::BAD_REQUEST,
                    &format!("malformed JSON: {e}"),
                )
            }
        };
        let mut proxies = Vec::with_capacity(body.proxies.len());
        for p in body.proxies {
            let Ok(addr) = p.addr.parse::<SocketAddr>() else {
                return AdminResponse::error(
                    StatusCode::BAD_REQUEST,
                    &format!("proxy `{}`: bad address `{}`", p.id, p.addr),
                );
            };
            proxies.push(ReportedProxy {
                id: p.id,
                addr,
                up: p.up,
            });
        }
        let report = MonitorReport {
            monitor: body.monitor,
            generation: body.generation,
            proxies,
        };
        let monitor = report.monitor.clone();
        match self.proxies.apply_report(report, Instant::now()) {
            Ok(a) => {
                if a.changed {
                    tracing::info!(%monitor, generation = a.generation, live = ?a.live, "live proxy set changed");
                }
                AdminResponse::json(
                    StatusCode::OK,
                    &serde_json::json!({ "generation": a.generation, "live": a.live }),
                )
            }
            Err(Refusal::Stale { last }) => AdminResponse::json(
                StatusCode::CONFLICT,
                &serde_json::json!({ "error": "stale generation", "last": last }),
            ),
            Err(Refusal::Empty) => {
                tracing::warn!(%monitor, "refused a report that would empty the live set");
                AdminResponse::error(StatusCode::UNPROCESSABLE_ENTITY, "empty set refused")
            }
            Err(Refusal::Invalid(msg)) => AdminResponse::error(StatusCode::BAD_REQUEST, &msg),
        }
    }

    fn get_proxies(&self) -> AdminResponse {
        let now = Instant::now();
        self.proxies.refresh(now);
        let snap = self.proxies.snapshot();
        let body = GetBody {
            generation: snap.generation,
            source: snap.source,
            live: snap
                .proxies
                .iter()
                .map(|p| LiveProxy {
                    id: &p.id,
                    addr: p.addr,
                })
                .collect(),
            monitors: self.proxies.monitors(now),
        };
        AdminResponse::json(StatusCode::OK, &body)
    }

    fn route(&self, req: &AdminRequest) -> AdminResponse {
        match (req.path.as_str(), &req.method) {
            ("/v1/proxies", &Method::PUT) => self.put_proxies(req),
            ("/v1/proxies", &Method::GET) => self.get_proxies(),
            ("/v1/flows", &Method::GET) => {
                AdminResponse::json(StatusCode::OK, &self.flows.flow_counts())
            }
            ("/v1/proxies" | "/v1/flows", _) => {
                AdminResponse::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            }
            _ => AdminResponse::not_found(),
        }
    }
}

impl AdminRoutes for LbAdmin {
    fn handle(&self, req: AdminRequest) -> BoxFuture<'_, AdminResponse> {
        Box::pin(async move { self.route(&req) })
    }

    fn ready(&self) -> bool {
        self.sockets_bound.load(Ordering::Acquire) && self.proxies.live_count() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_set::Proxy;
    use serde_json::{json, Value};
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    struct Lb {
        base: String,
        bound: Arc<AtomicBool>,
        flows: Arc<FlowCounters>,
        set: Arc<ProxySet>,
        shutdown: CancellationToken,
    }

    async fn start(static_ids: &[&str]) -> Lb {
        let statics = static_ids
            .iter()
            .enumerate()
            .map(|(i, id)| Proxy {
                id: (*id).into(),
                addr: SocketAddr::from(([127, 0, 0, 1], 5071 + i as u16)),
            })
            .collect();
        let set = Arc::new(ProxySet::new(statics, Duration::from_secs(10), "test"));
        let flows = Arc::new(FlowCounters::default());
        let bound = Arc::new(AtomicBool::new(false));
        let admin = LbAdmin::new(set.clone(), "tok", flows.clone(), bound.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        tokio::spawn(sipedge_shared::admin::serve(
            listener,
            Arc::new(admin),
            shutdown.clone(),
        ));
        Lb {
            base,
            bound,
            flows,
            set,
            shutdown,
        }
    }

    async fn put(lb: &Lb, token: Option<&str>, body: &str) -> (u16, Value) {
        let mut r = reqwest::Client::new()
            .put(format!("{}/v1/proxies", lb.base))
            .body(body.to_owned());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let resp = r.send().await.expect("put");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(lb: &Lb, path: &str) -> (u16, Value) {
        let resp = reqwest::get(format!("{}{path}", lb.base))
            .await
            .expect("get");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    fn report(monitor: &str, generation: u64, up: &[(&str, bool)]) -> String {
        let proxies: Vec<Value> = up
            .iter()
            .enumerate()
            .map(|(i, (id, up))| json!({"id": id, "addr": format!("127.0.0.1:{}", 5071 + i), "up": up}))
            .collect();
        json!({"monitor": monitor, "generation": generation, "proxies": proxies}).to_string()
    }

    #[tokio::test]
    async fn put_contract() {
        let lb = start(&["p1", "p2", "p3"]).await;
        let all = [("p1", true), ("p2", true), ("p3", true)];
        let p2_down = [("p1", true), ("p2", false), ("p3", true)];
        let cases: Vec<(Option<&str>, String, u16, Value)> = vec![
            (
                None,
                report("mon-a", 1, &all),
                401,
                json!({"error": "missing or bad bearer token"}),
            ),
            (
                Some("nope"),
                report("mon-a", 1, &all),
                401,
                json!({"error": "missing or bad bearer token"}),
            ),
            (
                Some("tok"),
                report("mon-a", 1732240000123, &p2_down),
                200,
                json!({"generation": 2, "live": ["p1", "p3"]}),
            ),
            (
                Some("tok"),
                report("mon-a", 1732240000123, &all),
                409,
                json!({"error": "stale generation", "last": 1732240000123u64}),
            ),
            (
                Some("tok"),
                report("mon-a", 1732240000124, &[("p1", false)]),
                422,
                json!({"error": "empty set refused"}),
            ),
            (
                Some("tok"),
                report("mon-a", 1732240000125, &p2_down),
                200,
                json!({"generation": 2, "live": ["p1", "p3"]}),
            ),
            (
                Some("tok"),
                report("mon-a", 1732240000126, &all),
                200,
                json!({"generation": 3, "live": ["p1", "p2", "p3"]}),
            ),
        ];
        for (token, body, status, want) in cases {
            assert_eq!(put(&lb, token, &body).await, (status, want), "{body}");
        }
        for bad in [
            "{",
            r#"{"monitor":"m","generation":1}"#,
            r#"{"monitor":"m","generation":1,"proxies":[{"id":"p1","addr":"nowhere","up":true}]}"#,
            r#"{"monitor":"m","generation":-1,"proxies":[]}"#,
        ] {
            assert_eq!(put(&lb, Some("tok"), bad).await.0, 400, "{bad}");
        }
        lb.shutdown.cancel();
    }

    #[tokio::test]
    async fn get_proxies_flows_and_readiness() {
        let lb = start(&["p2", "p1"]).await;
        let (status, v) = get(&lb, "/v1/proxies").await;
        assert_eq!(status, 200);
        assert_eq!(
            v,
            json!({"generation": 1, "source": "static", "monitors": [],
                   "live": [{"id": "p1", "addr": "127.0.0.1:5072"}, {"id": "p2", "addr": "127.0.0.1:5071"}]})
        );
        assert_eq!(
            put(
                &lb,
                Some("tok"),
                &report("mon-a", 7, &[("p1", true), ("p2", false)])
            )
            .await
            .0,
            200
        );
        let (_, v) = get(&lb, "/v1/proxies").await;
        assert_eq!(v["source"], "monitors");
        assert_eq!(v["live"], json!([{"id": "p1", "addr": "127.0.0.1:5071"}]));
        assert_eq!(v["monitors"][0]["id"], "mon-a");
        assert_eq!(v["monitors"][0]["generation"], 7);
        assert_eq!(v["monitors"][0]["up"], json!(["p1"]));
        assert!(v["monitors"][0]["age_ms"].as_u64().is_some());

        lb.flows.opened(Transport::Udp);
        lb.flows.opened(Transport::Tls);
        lb.flows.opened(Transport::Tls);
        lb.flows.closed(Transport::Tls);
        lb.flows.closed(Transport::Ws);
        assert_eq!(
            get(&lb, "/v1/flows").await,
            (
                200,
                json!({"udp": 1, "tcp": 0, "tls": 1, "ws": 0, "wss": 0, "total": 2})
            )
        );

        let ready = || async {
            reqwest::get(format!("{}/readyz", lb.base))
                .await
                .expect("readyz")
                .status()
                .as_u16()
        };
        assert_eq!(ready().await, 503, "sockets not bound yet");
        lb.bound.store(true, Ordering::Release);
        assert_eq!(ready().await, 200);
        assert_eq!(lb.set.live_count(), 1);
        lb.shutdown.cancel();
    }

    #[tokio::test]
    async fn empty_static_set_is_not_ready() {
        let lb = start(&[]).await;
        lb.bound.store(true, Ordering::Release);
        let status = reqwest::get(format!("{}/readyz", lb.base))
            .await
            .expect("readyz")
            .status();
        assert_eq!(status.as_u16(), 503);
        let r = reqwest::Client::new()
            .delete(format!("{}/v1/proxies", lb.base))
            .send()
            .await
            .expect("delete");
        assert_eq!(r.status().as_u16(), 405);
        lb.shutdown.cancel();
    }
}
