//! The admin HTTP server (hyper 1, HTTP/1.1) every binary runs on its own port:
//! `/metrics`, `/healthz`, `/readyz` built in, every other path delegated to the binary.
//!
//! The caller binds the listener (port 0 in tests). Each connection runs in its
//! own task with a header-read timeout; the number of connections is capped,
//! request bodies are limited (413), and cancelling the token stops accepting,
//! lets in-flight requests finish and closes idle connections.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A boxed, sendable future (what [`AdminRoutes::handle`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request for a binary's own admin routes, body already read.
#[derive(Debug, Clone)]
pub struct AdminRequest {
    /// HTTP method.
    pub method: Method,
    /// Path without the query, e.g. `/v1/proxies`.
    pub path: String,
    /// The query string, if any (without `?`).
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The whole body (at most [`AdminConfig::body_limit`] bytes).
    pub body: Bytes,
}

/// A response from a binary's admin routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    /// Status code.
    pub status: StatusCode,
    /// `Content-Type` value.
    pub content_type: &'static str,
    /// Body.
    pub body: Bytes,
}

impl AdminResponse {
    /// A `text/plain` response.
    pub fn text(status: StatusCode, body: impl Into<String>) -> Self {
        AdminResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(body.into()),
        }
    }

    /// An `application/json` response of `value`.
    pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(v) => AdminResponse {
                status,
                content_type: "application/json",
                body: Bytes::from(v),
            },
            Err(e) => Self::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: StatusCode, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": message }))
    }

    /// 404 for a path no route serves.
    pub fn not_found() -> Self {
        Self::error(StatusCode::NOT_FOUND, "not found")
    }
}

/// What a binary adds to the admin server.
pub trait AdminRoutes: Send + Sync + 'static {
    /// Serves every path other than the built-in ones.
    fn handle(&self, req: AdminRequest) -> BoxFuture<'_, AdminResponse>;

    /// Readiness for `/readyz` (200 when true, 503 otherwise).
    fn ready(&self) -> bool {
        true
    }
}

/// Routes that serve nothing beyond the built-ins and are always ready.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRoutes;

impl AdminRoutes for NoRoutes {
    fn handle(&self, _req: AdminRequest) -> BoxFuture<'_, AdminResponse> {
        Box::pin(async { AdminResponse::not_found() })
    }
}

/// Limits of the admin server.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Largest request body; larger gets 413.
    pub body_limit: usize,
    /// Time allowed to receive a request's headers.
    pub header_timeout: Duration,
    /// Concurrent connections; further ones are closed at once.
    pub max_connections: usize,
    /// On shutdown, how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            body_limit: 1 << 20,
            header_timeout: Duration::from_secs(5),
            max_connections: 256,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves with [`AdminConfig::default`] until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    routes: Arc<dyn AdminRoutes>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, routes, AdminConfig::default(), shutdown).await
}

/// Serves until `shutdown` is cancelled, then drains open connections (for at
/// most [`AdminConfig::drain_timeout`]).
pub async fn serve_with(
    listener: TcpListener,
    routes: Arc<dyn AdminRoutes>,
    config: AdminConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let handle = crate::metrics::install();
    let config = Arc::new(config);
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!("admin connection limit reached; closing a connection");
            continue;
        };
        let routes = routes.clone();
        let config = config.clone();
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let header_timeout = config.header_timeout;
            let service = hyper::service::service_fn(move |req| {
                let routes = routes.clone();
                let config = config.clone();
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(dispatch(req, &*routes, &config, &handle).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(config.drain_timeout, tracker.wait()).await;
    Ok(())
}

async fn dispatch(
    req: Request<Incoming>,
    routes: &dyn AdminRoutes,
    config: &AdminConfig,
    handle: &metrics_exporter_prometheus::PrometheusHandle,
) -> Response<Full<Bytes>> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => AdminResponse {
            status: StatusCode::OK,
            content_type: "text/plain; version=0.0.4",
            body: Bytes::from(crate::metrics::render(handle)),
        },
        (&Method::GET, "/healthz") => AdminResponse::text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") => {
            if routes.ready() {
                AdminResponse::text(StatusCode::OK, "ready")
            } else {
                AdminResponse::text(StatusCode::SERVICE_UNAVAILABLE, "not ready")
            }
        }
        _ => match read_request(req, config.body_limit).await {
            Ok(r) => routes.handle(r).await,
            Err(resp) => resp,
        },
    };
    into_response(resp)
}

async fn read_request(req: Request<Incoming>, limit: usize) -> Result<AdminRequest, AdminResponse> {
    let too_large = || AdminResponse::error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            return Err(AdminResponse::error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read body: {e}"),
            ))
        }
    };
    Ok(AdminRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    })
}

fn into_response(r: AdminResponse) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(r.body));
    *resp.status_mut() = r.status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(r.content_type));
    resp
}

/// Whether `headers` carry `Authorization: Bearer <expected>`. The comparison
/// is constant-time (over SHA-256 digests, so the length does not leak
/// either). An empty `expected` never matches.
pub fn check_bearer(headers: &HeaderMap, expected: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let Some(value) = headers.get(AUTHORIZATION).map(HeaderValue::as_bytes) else {
        return false;
    };
    let Some((scheme, token)) = value.split_first_chunk::<7>() else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    let token = token.trim_ascii();
    let a = Sha256::digest(token);
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Echo {
        ready: AtomicBool,
    }

    impl AdminRoutes for Echo {
        fn handle(&self, req: AdminRequest) -> BoxFuture<'_, AdminResponse> {
            Box::pin(async move {
                if req.path != "/echo" {
                    return AdminResponse::not_found();
                }
                AdminResponse::json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "method": req.method.as_str(),
                        "query": req.query,
                        "len": req.body.len(),
                        "auth": check_bearer(&req.headers, "s3cret"),
                    }),
                )
            })
        }
        fn ready(&self) -> bool {
            self.ready.load(Ordering::Relaxed)
        }
    }

    struct Server {
        addr: std::net::SocketAddr,
        routes: Arc<Echo>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn start(config: AdminConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let routes = Arc::new(Echo {
            ready: AtomicBool::new(false),
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_with(
            listener,
            routes.clone(),
            config,
            shutdown.clone(),
        ));
        Server {
            addr,
            routes,
            shutdown,
            task,
        }
    }

    /// Sends raw bytes, returns whatever the server answers until it closes
    /// (or 3 s pass).
    async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(bytes).await.expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn built_in_and_delegated_routes() {
        let srv = start(AdminConfig::default()).await;
        let base = format!("http://{}", srv.addr);
        let c = reqwest::Client::new();
        let get = |p: &str| c.get(format!("{base}{p}")).send();

        let r = get("/healthz").await.expect("healthz");
        assert_eq!(
            (r.status().as_u16(), r.text().await.expect("body")),
            (200, "ok".into())
        );
        assert_eq!(get("/readyz").await.expect("readyz").status().as_u16(), 503);
        srv.routes.ready.store(true, Ordering::Relaxed);
        assert_eq!(get("/readyz").await.expect("readyz").status().as_u16(), 200);
        metrics::counter!("sipedge_admin_test_total").increment(1);
        let m = get("/metrics")
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        assert!(m.contains("sipedge_admin_test_total"), "{m}");
        assert_eq!(get("/nope").await.expect("404").status().as_u16(), 404);

        let r = c
            .put(format!("{base}/echo?x=1"))
            .header("authorization", "Bearer s3cret")
            .body("hello")
            .send()
            .await
            .expect("echo");
        assert_eq!(r.status().as_u16(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(
            v,
            serde_json::json!({"method": "PUT", "query": "x=1", "len": 5, "auth": true})
        );

        srv.shutdown.cancel();
        srv.task.await.expect("join").expect("serve");
        assert!(tokio::net::TcpStream::connect(srv.addr).await.is_err());
    }

    #[tokio::test]
    async fn body_limit_gives_413() {
        let srv = start(AdminConfig {
            body_limit: 16,
            ..AdminConfig::default()
        })
        .await;
        let declared = raw(
            srv.addr,
            b"PUT /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
        let chunk = "a".repeat(100);
        let chunked = format!(
            "PUT /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n64\r\n{chunk}\r\n0\r\n\r\n"
        );
        let r = raw(srv.addr, chunked.as_bytes()).await;
        assert!(r.starts_with("HTTP/1.1 413"), "{r}");
        let ok = raw(
            srv.addr,
            b"PUT /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        srv.shutdown.cancel();
    }

    #[tokio::test]
    async fn slow_headers_are_cut_off() {
        let srv = start(AdminConfig {
            header_timeout: Duration::from_millis(200),
            ..AdminConfig::default()
        })
        .await;
        let started = std::time::Instant::now();
        let r = raw(srv.addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(!r.contains("200 OK"), "{r}");
        srv.shutdown.cancel();
    }

    #[tokio::test]
    async fn connection_cap() {
        let srv = start(AdminConfig {
            max_connections: 1,
            ..AdminConfig::default()
        })
        .await;
        // The first connection holds the only permit while idle.
        let _held = tokio::net::TcpStream::connect(srv.addr)
            .await
            .expect("connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = raw(srv.addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert_eq!(r, "", "second connection must be closed unanswered");
        srv.shutdown.cancel();
    }

    #[test]
    fn bearer() {
        let cases: [(Option<&str>, &str, bool); 8] = [
            (Some("Bearer tok"), "tok", true),
            (Some("bearer tok"), "tok", true),
            (Some("Bearer  tok "), "tok", true),
            (Some("Bearer tok2"), "tok", false),
            (Some("Basic tok"), "tok", false),
            (Some("Bearer "), "", false),
            (None, "tok", false),
            (Some("Bearer"), "tok", false),
        ];
        for (header, expected, want) in cases {
            let mut h = HeaderMap::new();
            if let Some(v) = header {
                h.insert(AUTHORIZATION, HeaderValue::from_str(v).expect("ascii"));
            }
            assert_eq!(check_bearer(&h, expected), want, "{header:?} vs {expected}");
        }
    }
}
