//! sipmon against real in-process LBs (their admin API and majority vote) on
//! loopback: a proxy's death and return, a partitioned monitor, three
//! monitors voting, and a restarted LB that is current within one heartbeat.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sipedge_shared::sip::{build_response, Limits, Message};
use sipedge_tests::lb_harness::{LbOptions, TestLb, TEST_TOKEN};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

const INTERVAL_MS: u64 = 200;
const N: u64 = 3;
const M: u64 = 2;
const HEARTBEAT_MS: u64 = 600;
/// Scheduling slack on a shared 2-core machine.
const SLACK_MS: u64 = 300;

/// A proxy stand-in answering OPTIONS with 200, unless silenced, or unless
/// the probe comes from a denied source (one monitor's partial view).
#[derive(Clone)]
struct ProxyStandIn {
    addr: SocketAddr,
    silent: Arc<AtomicBool>,
    deny: Arc<Mutex<HashSet<SocketAddr>>>,
}

async fn proxy() -> ProxyStandIn {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind proxy");
    let p = ProxyStandIn {
        addr: sock.local_addr().expect("addr"),
        silent: Arc::default(),
        deny: Arc::default(),
    };
    let me = p.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if me.silent.load(Ordering::SeqCst) || me.deny.lock().expect("deny").contains(&from) {
                continue;
            }
            let data = bytes::Bytes::copy_from_slice(&buf[..n]);
            let Ok(msg) = Message::parse_datagram(data, &Limits::default()) else {
                continue;
            };
            if msg.is_request() {
                let r = build_response(&msg, 200, "OK", Some("px"), &[]);
                let _ = sock.send_to(&r, from).await;
            }
        }
    });
    p
}

/// A real LB whose admin port we choose (so it can be restarted in place).
/// An LB whose admin address is `admin` (port 0 for any).
async fn lb_at(admin: SocketAddr, proxies: &[(String, SocketAddr)]) -> TestLb {
    let mut opts = LbOptions::new(proxies.to_vec());
    opts.admin = admin;
    TestLb::start(opts).await.expect("start lb")
}

/// The LB's view: (source, live ids, number of monitors).
async fn lb_view(admin: SocketAddr) -> Option<(String, Vec<String>, usize)> {
    let v: serde_json::Value = reqwest::get(format!("http://{admin}/v1/proxies"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let live = v["live"]
        .as_array()?
        .iter()
        .filter_map(|p| p["id"].as_str().map(String::from))
        .collect();
    let monitors = v["monitors"].as_array().map_or(0, |m| m.len());
    Some((v["source"].as_str()?.to_string(), live, monitors))
}

/// Polls the LB until its monitor-fed live set is `want`; returns when.
async fn wait_live(admin: SocketAddr, want: &[&str], within: Duration, what: &str) -> Instant {
    let start = Instant::now();
    loop {
        if let Some((source, live, _)) = lb_view(admin).await {
            if source == "monitors" && live.iter().map(String::as_str).eq(want.iter().copied()) {
                return Instant::now();
            }
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn config(id: &str, proxies: &[(String, SocketAddr)], lbs: &[SocketAddr]) -> sipmon::Config {
    config_with(id, proxies, lbs, INTERVAL_MS, 150, N)
}

fn config_with(
    id: &str,
    proxies: &[(String, SocketAddr)],
    lbs: &[SocketAddr],
    interval_ms: u64,
    timeout_ms: u64,
    down_after: u64,
) -> sipmon::Config {
    let mut t = format!(
        r#"
id = "{id}"
[probe]
interval = "{interval_ms}ms"
timeout = "{timeout_ms}ms"
down_after = {down_after}
up_after = {M}
source = "127.0.0.1:0"
[push]
lbs = [{}]
token = "{TOKEN}"
heartbeat = "{HEARTBEAT_MS}ms"
timeout = "500ms"
retry = {{ min = "50ms", max = "300ms" }}
[admin]
listen = "127.0.0.1:0"
"#,
        lbs.iter()
            .map(|a| format!("\"http://{a}\""))
            .collect::<Vec<_>>()
            .join(", "),
        TOKEN = TEST_TOKEN,
    );
    for (pid, addr) in proxies {
        t.push_str(&format!("[[proxies]]\nid = \"{pid}\"\naddr = \"{addr}\"\n"));
    }
    sipmon::Config::parse(Path::new("e2e.toml"), &t).expect("valid config")
}

struct Mon {
    probe_from: SocketAddr,
    admin: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn monitor(config: sipmon::Config) -> Mon {
    let sockets = sipmon::BoundSockets::bind(&config)
        .await
        .expect("bind sipmon");
    let probe_from = sockets
        .probe_udp
        .as_ref()
        .and_then(|s| s.local_addr().ok())
        .expect("udp probe socket");
    let admin = sockets.admin.local_addr().expect("admin");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(sipmon::run(config, sockets, shutdown.clone()));
    Mon {
        probe_from,
        admin,
        shutdown,
        task,
    }
}

impl Mon {
    async fn stop(self) {
        self.shutdown.cancel();
        let r = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("sipmon stops")
            .expect("joins");
        r.expect("run ok");
    }
}

async fn three_proxies() -> (Vec<ProxyStandIn>, Vec<(String, SocketAddr)>) {
    let ps = vec![proxy().await, proxy().await, proxy().await];
    let ids = ps
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("p{}", i + 1), p.addr))
        .collect();
    (ps, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_lbs_drop_a_dead_proxy_and_take_it_back() {
    let (ps, ids) = three_proxies().await;
    let a = TestLb::start(LbOptions::new(ids.clone()))
        .await
        .expect("lb a");
    let b = TestLb::start(LbOptions::new(ids.clone()))
        .await
        .expect("lb b");
    let (la, lb) = (a.addrs.admin, b.addrs.admin);
    let mon = monitor(config("mon-a", &ids, &[la, lb])).await;
    let all = ["p1", "p2", "p3"];
    for admin in [la, lb] {
        wait_live(
            admin,
            &all,
            Duration::from_secs(5),
            "full set from the monitor",
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(2 * INTERVAL_MS)).await;

    ps[1].silent.store(true, Ordering::SeqCst);
    let killed = Instant::now();
    let bound = Duration::from_millis((N + 1) * INTERVAL_MS + SLACK_MS);
    for admin in [la, lb] {
        let at = wait_live(admin, &["p1", "p3"], Duration::from_secs(5), "p2 removed").await;
        let took = at.duration_since(killed);
        eprintln!("LB {admin}: p2 removed after {took:?} (bound {bound:?})");
        assert!(took <= bound, "p2 removed after {took:?}");
    }

    ps[1].silent.store(false, Ordering::SeqCst);
    let restored = Instant::now();
    let bound = Duration::from_millis((M + 1) * INTERVAL_MS + SLACK_MS);
    for admin in [la, lb] {
        let at = wait_live(admin, &all, Duration::from_secs(5), "p2 back").await;
        let took = at.duration_since(restored);
        eprintln!("LB {admin}: p2 back after {took:?} (bound {bound:?})");
        assert!(took <= bound, "p2 back after {took:?}");
    }
    mon.stop().await;
    a.stop().await.expect("lb a stops");
    b.stop().await.expect("lb b stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_monitor_leaves_the_lbs_with_the_full_set() {
    let (ps, ids) = three_proxies().await;
    let a = TestLb::start(LbOptions::new(ids.clone()))
        .await
        .expect("lb");
    let admin = a.addrs.admin;
    let mon = monitor(config("mon-a", &ids, &[admin])).await;
    let all = ["p1", "p2", "p3"];
    wait_live(admin, &all, Duration::from_secs(5), "full set").await;

    for p in &ps {
        p.silent.store(true, Ordering::SeqCst);
    }
    let until = Instant::now() + Duration::from_millis((N + 2) * INTERVAL_MS + 2 * HEARTBEAT_MS);
    while Instant::now() < until {
        let (source, live, _) = lb_view(admin).await.expect("lb answers");
        assert_eq!(
            (source.as_str(), live),
            ("monitors", ids.iter().map(|(i, _)| i.clone()).collect())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = sipmon::status::fetch(&reqwest::Client::new(), &format!("http://{}", mon.admin))
        .await
        .expect("status");
    assert!(status.holding, "the monitor says it holds: {status:?}");
    for p in &ps {
        p.silent.store(false, Ordering::SeqCst);
    }
    mon.stop().await;
    a.stop().await.expect("lb stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_monitors_cannot_remove_a_proxy_two_can() {
    let (ps, ids) = three_proxies().await;
    let a = TestLb::start(LbOptions::new(ids.clone()))
        .await
        .expect("lb");
    let admin = a.addrs.admin;
    let mut mons = Vec::new();
    for id in ["mon-a", "mon-b", "mon-c"] {
        mons.push(monitor(config(id, &ids, &[admin])).await);
    }
    let all = ["p1", "p2", "p3"];
    wait_live(admin, &all, Duration::from_secs(5), "full set").await;
    let start = Instant::now();
    while lb_view(admin).await.map_or(0, |v| v.2) < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "three monitors reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // mon-a alone loses p2: the LB keeps it (1 of 3 is no majority).
    ps[1].deny.lock().expect("deny").insert(mons[0].probe_from);
    let wait = Duration::from_millis((N + 2) * INTERVAL_MS + HEARTBEAT_MS);
    let until = Instant::now() + wait;
    while Instant::now() < until {
        let (_, live, _) = lb_view(admin).await.expect("lb answers");
        assert_eq!(live, ids.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = sipmon::status::fetch(
        &reqwest::Client::new(),
        &format!("http://{}", mons[0].admin),
    )
    .await
    .expect("status");
    let p2 = s.proxies.iter().find(|p| p.id == "p2").expect("p2");
    assert_eq!(
        p2.state,
        sipmon::health::State::Down,
        "mon-a does see p2 down"
    );

    // mon-b too: 2 of 3 say down, the LB removes it.
    ps[1].deny.lock().expect("deny").insert(mons[1].probe_from);
    let seen = Instant::now();
    let at = wait_live(
        admin,
        &["p1", "p3"],
        Duration::from_secs(5),
        "majority removes p2",
    )
    .await;
    eprintln!("majority removal after {:?}", at.duration_since(seen));
    for m in mons {
        m.stop().await;
    }
    a.stop().await.expect("lb stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_lb_gets_the_set_within_one_heartbeat() {
    let (ps, ids) = three_proxies().await;
    let first = lb_at("127.0.0.1:0".parse().expect("lo"), &ids).await;
    let admin = first.addrs.admin;
    let mon = monitor(config("mon-a", &ids, &[admin])).await;
    // p3 is down in the monitor's view, so the set it pushes differs from the
    // LB's static list, and the restarted LB must learn it from sipmon.
    ps[2].silent.store(true, Ordering::SeqCst);
    wait_live(admin, &["p1", "p2"], Duration::from_secs(5), "p3 removed").await;

    first.stop().await.expect("lb stops");
    // Down for a while: pushes fail and back off.
    tokio::time::sleep(Duration::from_millis(HEARTBEAT_MS)).await;
    let second = lb_at(admin, &ids).await;
    let up = Instant::now();
    let at = wait_live(
        admin,
        &["p1", "p2"],
        Duration::from_secs(5),
        "restarted LB current",
    )
    .await;
    let took = at.duration_since(up);
    let bound = Duration::from_millis(HEARTBEAT_MS + SLACK_MS);
    eprintln!("restarted LB current after {took:?} (bound {bound:?})");
    assert!(took <= bound, "restarted LB current after {took:?}");
    mon.stop().await;
    second.stop().await.expect("lb stops");
}

/// The issue's benchmark: time from a proxy's death to the change in LB
/// routing, p50 and p99 over 20 kills, with a 500 ms interval (goal ≤ 1.5 s).
/// Run with `cargo test -p sipedge-tests --test sipmon_lbs -- --ignored --nocapture`;
/// `SIPMON_BENCH_DOWN_AFTER` (default 3) and `SIPMON_BENCH_TIMEOUT_MS`
/// (default 200) change N and the probe timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: about a minute"]
async fn bench_death_to_routing_change() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let down_after = env("SIPMON_BENCH_DOWN_AFTER", 3);
    let timeout_ms = env("SIPMON_BENCH_TIMEOUT_MS", 200);
    let interval_ms = 500;
    let (ps, ids) = three_proxies().await;
    let a = TestLb::start(LbOptions::new(ids.clone()))
        .await
        .expect("lb");
    let admin = a.addrs.admin;
    let mon = monitor(config_with(
        "mon-a",
        &ids,
        &[admin],
        interval_ms,
        timeout_ms,
        down_after,
    ))
    .await;
    let all: Vec<&str> = ids.iter().map(|(i, _)| i.as_str()).collect();
    wait_live(admin, &all, Duration::from_secs(5), "full set").await;
    let mut samples = Vec::new();
    for k in 0..20 {
        let victim = k % ps.len();
        // A random phase against the probe ticks, as a real death has.
        let phase = (k as u64 * 137) % interval_ms;
        tokio::time::sleep(Duration::from_millis(phase)).await;
        ps[victim].silent.store(true, Ordering::SeqCst);
        let killed = Instant::now();
        let rest: Vec<&str> = all
            .iter()
            .copied()
            .filter(|id| *id != all[victim])
            .collect();
        let at = wait_live(admin, &rest, Duration::from_secs(10), "victim removed").await;
        samples.push(at.duration_since(killed));
        ps[victim].silent.store(false, Ordering::SeqCst);
        wait_live(admin, &all, Duration::from_secs(10), "victim back").await;
    }
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    eprintln!(
        "death -> LB routing change over {} kills (interval {interval_ms} ms, timeout {timeout_ms} ms, N={down_after}): p50 {:?}, p99 {:?}, min {:?}, max {:?}",
        samples.len(),
        pct(50),
        pct(99),
        samples[0],
        samples[samples.len() - 1]
    );
    mon.stop().await;
    a.stop().await.expect("lb stops");
}
