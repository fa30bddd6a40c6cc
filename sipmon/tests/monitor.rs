//! sipmon end to end on loopback: UDP OPTIONS responders stand in for the
//! proxies, and a tiny HTTP receiver stands in for the LB admin API.
//! STAND-IN: the receiver mimics the LB contract (bearer token, strictly
//! increasing generation, 200 with the live list) so this crate tests alone;
//! the same scenarios against the real LB are in `tests/tests/sipmon_lbs.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

const INTERVAL_MS: u64 = 200;
const N: u64 = 3;
const M: u64 = 2;
const HEARTBEAT_MS: u64 = 600;
/// Scheduling slack on a shared 2-core machine.
const SLACK_MS: u64 = 250;

/// A proxy stand-in answering OPTIONS with 200 unless silenced.
struct Responder {
    addr: SocketAddr,
    silent: Arc<AtomicBool>,
}

async fn responder() -> Responder {
    let sock = UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind responder");
    let addr = sock.local_addr().expect("addr");
    let silent = Arc::new(AtomicBool::new(false));
    let quiet = silent.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if quiet.load(Ordering::SeqCst) {
                continue;
            }
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let copy: Vec<&str> = text
                .split("\r\n")
                .filter(|l| {
                    ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                        .iter()
                        .any(|h| l.starts_with(h))
                })
                .collect();
            let resp = format!(
                "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
                copy.join("\r\n")
            );
            let _ = sock.send_to(resp.as_bytes(), from).await;
        }
    });
    Responder { addr, silent }
}

/// One PUT the LB stand-in accepted.
#[derive(Debug, Clone)]
struct Put {
    at: Instant,
    generation: u64,
    up: Vec<String>,
    down: Vec<String>,
}

/// The LB stand-in's memory (survives its restarts unless cleared).
#[derive(Default)]
struct LbLog {
    puts: Vec<Put>,
    last_generation: u64,
}

struct LbStub {
    addr: SocketAddr,
    log: Arc<Mutex<LbLog>>,
    stop: CancellationToken,
}

const TOKEN: &str = "secret-token";

async fn handle(
    req: Request<hyper::body::Incoming>,
    log: Arc<Mutex<LbLog>>,
) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        r
    };
    if req.method() != hyper::Method::PUT || req.uri().path() != "/v1/proxies" {
        return reply(StatusCode::NOT_FOUND, String::new());
    }
    let auth_ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
    if !auth_ok {
        return reply(StatusCode::UNAUTHORIZED, String::new());
    }
    let Ok(body) = req.into_body().collect().await else {
        return reply(StatusCode::BAD_REQUEST, String::new());
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body.to_bytes()) else {
        return reply(StatusCode::BAD_REQUEST, r#"{"error":"malformed"}"#.into());
    };
    let generation = v["generation"].as_u64().unwrap_or(0);
    let mut up = Vec::new();
    let mut down = Vec::new();
    for p in v["proxies"].as_array().into_iter().flatten() {
        let id = p["id"].as_str().unwrap_or_default().to_string();
        if p["up"].as_bool() == Some(true) {
            up.push(id);
        } else {
            down.push(id);
        }
    }
    assert_eq!(v["monitor"], "mon-test");
    let mut log = log.lock().expect("lb log");
    if generation <= log.last_generation {
        let last = log.last_generation;
        return reply(
            StatusCode::CONFLICT,
            format!(r#"{{"error":"stale generation","last":{last}}}"#),
        );
    }
    if up.is_empty() {
        return reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            r#"{"error":"empty set refused"}"#.into(),
        );
    }
    log.last_generation = generation;
    log.puts.push(Put {
        at: Instant::now(),
        generation,
        up: up.clone(),
        down,
    });
    reply(
        StatusCode::OK,
        serde_json::json!({"generation": generation, "live": up}).to_string(),
    )
}

async fn lb_on(listener: TcpListener, log: Arc<Mutex<LbLog>>) -> LbStub {
    let addr = listener.local_addr().expect("addr");
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let stub = LbStub {
        addr,
        log: log.clone(),
        stop,
    };
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = stopped.cancelled() => return,
                r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            };
            let log = log.clone();
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let log = log.clone();
                    async move { Ok::<_, Infallible>(handle(req, log).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc);
                tokio::select! {
                    _ = stopped.cancelled() => {}
                    _ = conn => {}
                }
            });
        }
    });
    stub
}

async fn lb() -> LbStub {
    let log: Arc<Mutex<LbLog>> = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind lb");
    lb_on(listener, log).await
}

/// Restarts a stopped LB stand-in on the same port with an empty memory.
async fn lb_restart(addr: SocketAddr) -> LbStub {
    let log: Arc<Mutex<LbLog>> = Arc::default();
    let listener = TcpListener::bind(addr).await.expect("rebind lb");
    lb_on(listener, log).await
}

fn config_text(proxies: &[&Responder], lbs: &[SocketAddr]) -> String {
    let addrs: Vec<SocketAddr> = proxies.iter().map(|r| r.addr).collect();
    config_text_at(&addrs, lbs, "udp")
}

fn config_text_at(proxies: &[SocketAddr], lbs: &[SocketAddr], transport: &str) -> String {
    let mut t = format!(
        r#"
id = "mon-test"
anycast_vips = ["203.0.113.10"]
[probe]
interval = "{INTERVAL_MS}ms"
timeout = "150ms"
down_after = {N}
up_after = {M}
transport = "{transport}"
source = "127.0.0.1:0"
[push]
lbs = [{}]
token = "{TOKEN}"
heartbeat = "{HEARTBEAT_MS}ms"
timeout = "300ms"
retry = {{ min = "50ms", max = "300ms" }}
[safety]
max_down_share = 0.5
[admin]
listen = "127.0.0.1:0"
"#,
        lbs.iter()
            .map(|a| format!("\"http://{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (i, p) in proxies.iter().enumerate() {
        t.push_str(&format!(
            "[[proxies]]\nid = \"p{}\"\naddr = \"{}\"\n",
            i + 1,
            p
        ));
    }
    t
}

struct Sipmon {
    admin: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_sipmon(text: &str) -> Sipmon {
    let config = sipmon::Config::parse(Path::new("test.toml"), text).expect("valid test config");
    let sockets = sipmon::BoundSockets::bind(&config)
        .await
        .expect("bind sipmon");
    let admin = sockets.admin.local_addr().expect("admin addr");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(sipmon::run(config, sockets, shutdown.clone()));
    Sipmon {
        admin,
        shutdown,
        task,
    }
}

impl Sipmon {
    async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("sipmon stops on shutdown")
            .expect("task joins");
        r.expect("run returns Ok");
    }
}

/// Polls the LB log until `pred` holds for its latest PUT; returns that PUT.
async fn wait_for(lb: &LbStub, within: Duration, what: &str, pred: impl Fn(&Put) -> bool) -> Put {
    let start = Instant::now();
    loop {
        if let Some(p) = lb.log.lock().expect("log").puts.last().cloned() {
            if pred(&p) {
                return p;
            }
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restore_a_proxy() {
    let (r1, r2, r3) = (responder().await, responder().await, responder().await);
    let (lb_a, lb_b) = (lb().await, lb().await);
    let mon = start_sipmon(&config_text(&[&r1, &r2, &r3], &[lb_a.addr, lb_b.addr])).await;
    for lb in [&lb_a, &lb_b] {
        wait_for(lb, Duration::from_secs(3), "full set", |p| {
            p.up == ids(&["p1", "p2", "p3"])
        })
        .await;
    }
    // Let the first M successes settle so counters are steady.
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS * 2)).await;

    r2.silent.store(true, Ordering::SeqCst);
    let killed = Instant::now();
    let bound = Duration::from_millis((N + 1) * INTERVAL_MS + SLACK_MS);
    for lb in [&lb_a, &lb_b] {
        let p = wait_for(lb, Duration::from_secs(5), "p2 down", |p| {
            p.down == ids(&["p2"])
        })
        .await;
        let took = p.at.duration_since(killed);
        eprintln!("p2 removed after {took:?} (bound {bound:?})");
        assert!(took <= bound, "p2 removed after {took:?}, bound {bound:?}");
    }

    r2.silent.store(false, Ordering::SeqCst);
    let restored = Instant::now();
    let bound = Duration::from_millis((M + 1) * INTERVAL_MS + SLACK_MS);
    for lb in [&lb_a, &lb_b] {
        let p = wait_for(lb, Duration::from_secs(5), "p2 back", |p| p.up.len() == 3).await;
        let took = p.at.duration_since(restored);
        eprintln!("p2 back after {took:?} (bound {bound:?})");
        assert!(took <= bound, "p2 back after {took:?}, bound {bound:?}");
    }

    // The status API and the CLI agree with what was pushed.
    let client = reqwest::Client::new();
    let status = sipmon::status::fetch(&client, &format!("http://{}", mon.admin))
        .await
        .expect("status");
    assert_eq!(status.monitor, "mon-test");
    assert!(!status.holding);
    let p2 = status
        .proxies
        .iter()
        .find(|p| p.id == "p2")
        .expect("p2 row");
    assert_eq!(p2.flaps, 2);
    assert!(p2.rtt_p50_ms.is_some());
    assert_eq!(status.lbs.len(), 2);
    assert!(status
        .lbs
        .iter()
        .all(|l| l.last_result.as_deref() == Some("200 ok")));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipmon"))
        .args(["status", "--admin", &format!("http://{}", mon.admin)])
        .output()
        .expect("run sipmon status");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("p2") && table.contains("200 ok"), "{table}");
    let metrics = client
        .get(format!("http://{}/metrics", mon.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "sipmon_proxy_up",
        "sipmon_flaps_total",
        "sipmon_pushes_total",
        "sipmon_probe_rtt_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    mon.stop().await;
    lb_a.stop.cancel();
    lb_b.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_monitor_holds_the_full_set() {
    let (r1, r2, r3) = (responder().await, responder().await, responder().await);
    let lb = lb().await;
    let mon = start_sipmon(&config_text(&[&r1, &r2, &r3], &[lb.addr])).await;
    wait_for(&lb, Duration::from_secs(3), "full set", |p| p.up.len() == 3).await;

    for r in [&r1, &r2, &r3] {
        r.silent.store(true, Ordering::SeqCst);
    }
    let partitioned = Instant::now();
    // Long enough for every proxy to be marked down, plus two heartbeats.
    tokio::time::sleep(Duration::from_millis(
        (N + 2) * INTERVAL_MS + 2 * HEARTBEAT_MS,
    ))
    .await;
    {
        let log = lb.log.lock().expect("log");
        let since: Vec<&Put> = log.puts.iter().filter(|p| p.at > partitioned).collect();
        assert!(since.len() >= 2, "heartbeats keep re-pushing: {since:?}");
        assert!(
            since.iter().all(|p| p.up.len() == 3),
            "full set held: {since:?}"
        );
    }
    let client = reqwest::Client::new();
    let status = sipmon::status::fetch(&client, &format!("http://{}", mon.admin))
        .await
        .expect("status");
    assert!(status.holding, "{status:?}");
    assert!(status
        .proxies
        .iter()
        .all(|p| p.state == sipmon::health::State::Down));

    for r in [&r1, &r2, &r3] {
        r.silent.store(false, Ordering::SeqCst);
    }
    let start = Instant::now();
    loop {
        let s = sipmon::status::fetch(&client, &format!("http://{}", mon.admin))
            .await
            .expect("status");
        if !s.holding {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "hold released after recovery"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mon.stop().await;
    lb.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_or_restarted_lb_gets_the_set_within_one_heartbeat() {
    let (r1, r2) = (responder().await, responder().await);
    // Reserve a port for an LB that is down when sipmon starts.
    let down_addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    let up_lb = lb().await;
    let mon = start_sipmon(&config_text(&[&r1, &r2], &[up_lb.addr, down_addr])).await;
    wait_for(
        &up_lb,
        Duration::from_secs(3),
        "set at the reachable LB",
        |p| p.up.len() == 2,
    )
    .await;
    // Several failed retries pile up against the absent LB.
    tokio::time::sleep(Duration::from_millis(2 * HEARTBEAT_MS)).await;

    let came_back = Instant::now();
    let late_lb = lb_restart(down_addr).await;
    let bound = Duration::from_millis(HEARTBEAT_MS + SLACK_MS);
    let p = wait_for(
        &late_lb,
        bound + Duration::from_secs(2),
        "set at the returning LB",
        |p| p.up.len() == 2,
    )
    .await;
    let took = p.at.duration_since(came_back);
    eprintln!("returning LB got the set after {took:?} (bound {bound:?})");
    assert!(took <= bound, "returning LB got the set after {took:?}");

    // A restart the monitor never noticed (no failed push in between): the
    // heartbeat alone brings the new process up to date.
    up_lb.log.lock().expect("log").puts.clear();
    let reset = Instant::now();
    let p = wait_for(&up_lb, bound + Duration::from_secs(2), "heartbeat", |_| {
        true
    })
    .await;
    let took = p.at.duration_since(reset);
    assert!(took <= bound, "heartbeat after {took:?}");

    let client = reqwest::Client::new();
    let status = sipmon::status::fetch(&client, &format!("http://{}", mon.admin))
        .await
        .expect("status");
    assert!(
        status.lbs.iter().all(|l| l.last_success_ago_ms.is_some()),
        "{status:?}"
    );
    mon.stop().await;
    up_lb.stop.cancel();
    late_lb.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_increase_across_restarts() {
    let r1 = responder().await;
    let lb = lb().await;
    let text = config_text(&[&r1], &[lb.addr]);
    let mon = start_sipmon(&text).await;
    let first = wait_for(&lb, Duration::from_secs(3), "first report", |_| true).await;
    mon.stop().await;
    // A restarted monitor with the same id is accepted (no 409) by the same LB.
    let count = lb.log.lock().expect("log").puts.len();
    let mon = start_sipmon(&text).await;
    let start = Instant::now();
    while lb.log.lock().expect("log").puts.len() <= count {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "restarted monitor pushes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last = lb
        .log
        .lock()
        .expect("log")
        .puts
        .last()
        .cloned()
        .expect("put");
    assert!(
        last.generation > first.generation,
        "{last:?} after {first:?}"
    );
    mon.stop().await;
    lb.stop.cancel();
}

/// A TCP proxy stand-in: answers OPTIONS with 200 on every connection until
/// stopped (listener and connections closed, like a dead process).
async fn tcp_responder(listener: TcpListener) -> CancellationToken {
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = tokio::select! {
                _ = stopped.cancelled() => return,
                r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
            };
            let stopped = stopped.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = tokio::select! {
                        _ = stopped.cancelled() => return,
                        r = s.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
                    };
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    let copy: Vec<&str> = text
                        .split("\r\n")
                        .filter(|l| {
                            ["Via:", "Call-ID:", "CSeq:"]
                                .iter()
                                .any(|h| l.starts_with(h))
                        })
                        .collect();
                    let resp = format!(
                        "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
                        copy.join("\r\n")
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_probes_reconnect_after_a_proxy_restart() {
    let l1 = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let l2 = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (a1, a2) = (l1.local_addr().expect("a"), l2.local_addr().expect("a"));
    let _p1 = tcp_responder(l1).await;
    let p2 = tcp_responder(l2).await;
    let lb = lb().await;
    let mon = start_sipmon(&config_text_at(&[a1, a2], &[lb.addr], "tcp")).await;
    wait_for(&lb, Duration::from_secs(3), "full set over TCP", |p| {
        p.up.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2 * INTERVAL_MS)).await;

    p2.cancel();
    let killed = Instant::now();
    let bound = Duration::from_millis((N + 1) * INTERVAL_MS + SLACK_MS);
    let p = wait_for(&lb, Duration::from_secs(5), "p2 down", |p| {
        p.down == ids(&["p2"])
    })
    .await;
    assert!(
        p.at.duration_since(killed) <= bound,
        "{:?}",
        p.at.duration_since(killed)
    );

    // The proxy comes back on the same port: sipmon reconnects.
    let _p2 = tcp_responder(TcpListener::bind(a2).await.expect("rebind")).await;
    wait_for(
        &lb,
        Duration::from_secs(3),
        "p2 back over a new connection",
        |p| p.up.len() == 2,
    )
    .await;
    mon.stop().await;
    lb.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_generation_409_is_overtaken() {
    let r1 = responder().await;
    let lb = lb().await;
    // The LB holds a generation an hour ahead of our clock (a previous
    // process with our id on a clock that was ahead, or a clock step back).
    let ahead = sipmon::generation::unix_ms() + 3_600_000;
    lb.log.lock().expect("log").last_generation = ahead;
    let mon = start_sipmon(&config_text(&[&r1], &[lb.addr])).await;
    let p = wait_for(&lb, Duration::from_secs(3), "accepted after a 409", |_| {
        true
    })
    .await;
    assert!(p.generation > ahead, "{} ≤ {ahead}", p.generation);
    mon.stop().await;
    lb.stop.cancel();
}
