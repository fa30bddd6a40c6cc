//! A real Prometheus scrapes an in-process stack (LB, proxy, sipmon) under
//! SIPp load, and every PromQL expression of the dashboards and rules returns data.
//!
//! Alert expressions that end in a threshold (`expr > 0.1`, `expr == 0`) are
//! queried without the comparison, each side of an `and` on its own: the point
//! is that every series exists and has samples, not that the alert fires.
//! Skips (with a message) when `prometheus` or `sipp` is missing, unless
//! `SIPEDGE_REQUIRE_PROMETHEUS=1`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sipedge_shared::sip::{build_response, Limits, Message};
use sipedge_tests::lb_harness::{LbOptions, TestLb, TEST_TOKEN};
use sipedge_tests::promql::{dashboard_exprs, parse_rules, Expr};
use sipedge_tests::proxy_harness::{finish, ProxyOptions, Sipp, TestProxyServer};
use sipedge_tests::repo_root;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

/// The `edge` every component and target carries.
const EDGE: &str = "test";
/// How long Prometheus may take until every expression has data.
const QUERY_LIMIT: Duration = Duration::from_secs(40);

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// `prometheus` and `sipp`, or `None` after a skip message (a failure when
/// `SIPEDGE_REQUIRE_PROMETHEUS=1`).
fn tools() -> Option<PathBuf> {
    let prom = which("prometheus");
    let sipp = which("sipp");
    if let (Some(p), Some(_)) = (&prom, &sipp) {
        return Some(p.clone());
    }
    let msg = format!("prometheus_live: skipped (prometheus: {prom:?}, sipp: {sipp:?})");
    assert!(
        std::env::var("SIPEDGE_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
        "{msg}, but SIPEDGE_REQUIRE_PROMETHEUS=1"
    );
    eprintln!("{msg}");
    None
}

/// A proxy stand-in: OPTIONS get 200 (unless silenced), other requests 503,
/// so the LB fails over while sipmon keeps it in the live set.
struct StandIn {
    addr: SocketAddr,
    silent: Arc<AtomicBool>,
}

async fn stand_in() -> StandIn {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind stand-in");
    let s = StandIn {
        addr: sock.local_addr().expect("addr"),
        silent: Arc::default(),
    };
    let silent = Arc::clone(&s.silent);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            if silent.load(Ordering::SeqCst) {
                continue;
            }
            let data = bytes::Bytes::copy_from_slice(&buf[..n]);
            let Ok(msg) = Message::parse_datagram(data, &Limits::default()) else {
                continue;
            };
            if !msg.is_request() || msg.method_str() == "ACK" {
                continue;
            }
            let r = if msg.method_str() == "OPTIONS" {
                build_response(&msg, 200, "OK", Some("si"), &[])
            } else {
                build_response(&msg, 503, "Service Unavailable", Some("si"), &[])
            };
            let _ = sock.send_to(&r, from).await;
        }
    });
    s
}

fn sipmon_config(proxies: &[(&str, SocketAddr)], lbs: &[String]) -> sipmon::Config {
    let mut t = format!(
        r#"
id = "mon1"
[probe]
interval = "200ms"
timeout = "150ms"
down_after = 2
up_after = 2
source = "127.0.0.1:0"
[push]
lbs = [{}]
token = "{TEST_TOKEN}"
heartbeat = "600ms"
timeout = "500ms"
retry = {{ min = "50ms", max = "300ms" }}
[admin]
listen = "127.0.0.1:0"
"#,
        lbs.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for (id, addr) in proxies {
        t.push_str(&format!("[[proxies]]\nid = \"{id}\"\naddr = \"{addr}\"\n"));
    }
    sipmon::Config::parse(Path::new("prometheus_live sipmon.toml"), &t).expect("valid config")
}

/// A TCP flow to the LB that sends one OPTIONS; it answers keepalive pings
/// (CRLFCRLF) with a pong (CRLF) when `pong`, else reads and stays silent.
async fn tcp_flow(lb: SocketAddr, pong: bool, stop: CancellationToken) {
    let Ok(mut s) = TcpStream::connect(lb).await else {
        return;
    };
    let local = s.local_addr().expect("local addr");
    let req = format!(
        "OPTIONS sip:sipedge.local SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcp{}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@sipedge.local>;tag=t1\r\nTo: <sip:sipedge.local>\r\n\
         Call-ID: tcp-flow-{}@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        local.port(),
        local.port()
    );
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = vec![0u8; 8192];
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if pong && buf[..n].ends_with(b"\r\n\r\n") && buf[..n].iter().all(|b| *b == b'\r' || *b == b'\n') {
                        let _ = s.write_all(b"\r\n").await;
                    }
                }
            }
        }
    }
}

/// REGISTERs and OPTIONS for many users straight over UDP, so some land on
/// the 503 stand-in (failovers); answers are read and dropped.
async fn udp_requests(lb: SocketAddr, n: usize) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let local = sock.local_addr().expect("addr");
    for i in 0..n {
        let method = if i % 2 == 0 { "REGISTER" } else { "OPTIONS" };
        let req = format!(
            "{method} sip:sipedge.local SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKraw{i};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:user{i}@sipedge.local>;tag=r{i}\r\nTo: <sip:user{i}@sipedge.local>\r\n\
             Call-ID: raw-{i}@test\r\nCSeq: 1 {method}\r\nContact: <sip:user{i}@{local}>\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = sock.send_to(req.as_bytes(), lb).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut buf = vec![0u8; 65536];
    let end = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Ok(_)) = tokio::time::timeout_at(end, sock.recv_from(&mut buf)).await {}
}

/// One call: bob registers and answers, alice calls him (as in proxy_e2e.rs).
async fn sipp_call(lb: SocketAddr, dir: &Path, n: usize) -> String {
    let cid = format!("live-%u-{n}@test");
    let auth = |s: Sipp, user: &str, pw: &str, uri: &str| {
        let mut s = s
            .arg("-au")
            .arg(user)
            .arg("-ap")
            .arg(pw)
            .arg("-auth_uri")
            .arg(uri)
            .arg("-cid_str")
            .arg(&cid);
        s.timeout = Duration::from_secs(10);
        s
    };
    let bob = auth(
        Sipp::new("call_uas_registered.xml", lb, "u1", "bob"),
        "bob",
        "bob-secret",
        "sipedge.local",
    );
    let Ok((bob_child, bob_port)) = bob.spawn(dir) else {
        return "bob did not start".into();
    };
    // The callee needs its binding before the INVITE; a fixed pause keeps this simple.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let alice = auth(
        Sipp::new("call_uac_auth.xml", lb, "u1", "bob"),
        "alice",
        "alice-secret",
        "bob@sipedge.local",
    )
    .run(dir)
    .await;
    let bob = finish(bob_child, bob_port, dir, Duration::from_secs(15)).await;
    format!(
        "call {n}: alice {:?}, bob {:?}",
        alice.map(|r| r.code).ok(),
        bob.map(|r| r.code).ok()
    )
}

/// Kills Prometheus when dropped.
struct Prometheus {
    child: std::process::Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_tcp() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn prometheus_yml(rules: &Path, jobs: &[(&str, Vec<SocketAddr>)]) -> String {
    let mut y = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {:?}\nscrape_configs:\n",
        rules.join("*.yml").display().to_string()
    );
    for (job, targets) in jobs {
        let t: Vec<String> = targets.iter().map(|a| format!("\"{a}\"")).collect();
        y.push_str(&format!(
            "  - job_name: {job}\n    honor_labels: true\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [{}]\n        labels:\n          edge: {EDGE}\n",
            t.join(", ")
        ));
    }
    y
}

fn start_prometheus(bin: &Path, dir: &Path, yml: &str) -> Prometheus {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, yml).expect("write prometheus.yml");
    let addr = free_tcp();
    let log = dir.join("prometheus.log");
    let out = std::fs::File::create(&log).expect("log file");
    let child = std::process::Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .expect("start prometheus");
    Prometheus { child, addr, log }
}

/// Dashboard variables replaced by values that match every series.
fn grafana_to_promql(e: &str) -> String {
    e.replace("${edge}", ".*")
        .replace("$edge", ".*")
        .replace("${carrier}", ".*")
        .replace("$carrier", ".*")
        .replace("$__rate_interval", "30s")
        .replace("$__interval", "5s")
}

/// `e` split on its top-level ` and `.
fn split_and(e: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    let b = e.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => depth -= 1,
            b' ' if depth == 0 && e[i..].starts_with(" and ") => {
                out.push(e[start..i].trim().to_string());
                i += 5;
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(e[start..].trim().to_string());
    out
}

/// `e` without a trailing threshold comparison (`> 0.1`, `== 0`, `> bool 0`).
fn strip_threshold(e: &str) -> String {
    let e = e.trim();
    let num_start = e
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .map_or(0, |i| i + 1);
    if num_start == e.len() || e[num_start..].parse::<f64>().is_err() {
        return e.to_string();
    }
    let mut rest = e[..num_start].trim_end();
    rest = rest.strip_suffix("bool").map_or(rest, str::trim_end);
    for op in ["==", "!=", ">=", "<=", ">", "<"] {
        if let Some(left) = rest.strip_suffix(op) {
            return left.trim().to_string();
        }
    }
    e.to_string()
}

/// Every expression to query, with where it came from.
fn expressions() -> Vec<Expr> {
    let deploy = repo_root().join("deploy");
    let mut out = Vec::new();
    let mut rules: Vec<PathBuf> = std::fs::read_dir(deploy.join("prometheus").join("rules"))
        .expect("rules dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    rules.sort();
    for p in rules {
        let text = std::fs::read_to_string(&p).expect("rules file");
        let rf = parse_rules(&p, &text);
        // Alert exprs follow `alert:` lines; tell them apart by re-reading the pairs.
        let alert_exprs = alert_exprs(&text);
        for e in rf.exprs {
            if alert_exprs.contains(&e.expr) {
                for part in split_and(&e.expr) {
                    out.push(Expr {
                        origin: format!("{} (alert, threshold stripped)", e.origin),
                        expr: strip_threshold(&part),
                    });
                }
            } else {
                out.push(e);
            }
        }
    }
    let mut dashes: Vec<PathBuf> = std::fs::read_dir(deploy.join("grafana"))
        .expect("grafana dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    dashes.sort();
    for p in dashes {
        let dash: Value =
            serde_json::from_str(&std::fs::read_to_string(&p).expect("dashboard")).expect("JSON");
        for e in dashboard_exprs(&p, &dash) {
            out.push(Expr {
                origin: e.origin,
                expr: grafana_to_promql(&e.expr),
            });
        }
    }
    out
}

/// The inline `expr:` values of alerting rules (every alert here is one line).
fn alert_exprs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_alert = false;
    for line in text.lines() {
        let body = line.trim_start().trim_start_matches("- ");
        if body.starts_with("alert:") {
            in_alert = true;
        } else if body.starts_with("record:") {
            in_alert = false;
        } else if let Some(v) = body.strip_prefix("expr:") {
            if in_alert {
                out.push(sipedge_tests::promql::unquote(v));
            }
        }
    }
    out
}

/// The number of series `expr` returns now (`Err` with the API's error).
async fn query(client: &reqwest::Client, prom: SocketAddr, expr: &str) -> Result<usize, String> {
    let r = client
        .get(format!("http://{prom}/api/v1/query"))
        .query(&[("query", expr)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let v: Value = r.json().await.map_err(|e| e.to_string())?;
    if v["status"] != "success" {
        return Err(format!("{}: {}", v["errorType"], v["error"]));
    }
    Ok(v["data"]["result"].as_array().map_or(0, Vec::len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_and_rule_expression_returns_data() {
    let Some(prom_bin) = tools() else { return };
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");

    // The stack: one LB, a 503 stand-in, a flapping stand-in, a real proxy,
    // sipmon. The LB starts first and is up before anything else in this
    // process installs the metrics recorder, as in the sipedge-lb binary; the
    // real proxy joins the LB's live set through sipmon's pushes.
    let sick = stand_in().await;
    let flapper = stand_in().await;
    let mut lb_opts = LbOptions::new(vec![
        ("p503".to_string(), sick.addr),
        ("pflap".to_string(), flapper.addr),
    ]);
    lb_opts.timer = Duration::from_secs(1);
    lb_opts.keepalive = Duration::from_secs(1);
    let lb = TestLb::start(lb_opts).await.expect("lb");
    let client = reqwest::Client::new();
    let healthz = format!("http://{}/healthz", lb.addrs.admin);
    for _ in 0..100 {
        if client.get(&healthz).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let proxy = TestProxyServer::start(&ProxyOptions {
        edge: EDGE.into(),
        ..ProxyOptions::default()
    })
    .await
    .expect("proxy");
    let dead_lb = free_tcp();
    let mon_cfg = sipmon_config(
        &[
            ("p1", proxy.addrs.udp),
            ("p503", sick.addr),
            ("pflap", flapper.addr),
        ],
        &[
            format!("http://{}", lb.addrs.admin),
            format!("http://{dead_lb}"),
        ],
    );
    let sockets = sipmon::BoundSockets::bind(&mon_cfg)
        .await
        .expect("bind sipmon");
    let mon_admin = sockets.admin.local_addr().expect("sipmon admin");
    let mon_stop = CancellationToken::new();
    let mon = tokio::spawn(sipmon::run(mon_cfg, sockets, mon_stop.clone()));
    // Calls need the real proxy in the LB's live set: wait for sipmon's push.
    let proxies_url = format!("http://{}/v1/proxies", lb.addrs.admin);
    for _ in 0..100 {
        let live: Value = match client.get(&proxies_url).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        let has_p1 = live["live"]
            .as_array()
            .is_some_and(|l| l.iter().any(|p| p["id"] == "p1"));
        if has_p1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let proxy_admin = proxy.addrs.admin.expect("proxy admin");
    let rules = repo_root().join("deploy").join("prometheus").join("rules");
    let yml = prometheus_yml(
        &rules,
        &[
            ("sipedge-lb", vec![lb.addrs.admin]),
            ("sipedge-proxy", vec![proxy_admin]),
            ("sipmon", vec![mon_admin]),
        ],
    );
    let prom = start_prometheus(&prom_bin, dir.path(), &yml);

    // Load, ~12 s: flapping, TCP flows, raw requests, SIPp calls, a wrong password.
    let load_stop = CancellationToken::new();
    let flap = {
        let (silent, stop) = (Arc::clone(&flapper.silent), load_stop.clone());
        tokio::spawn(async move {
            let mut on = false;
            while !stop.is_cancelled() {
                on = !on;
                silent.store(on, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1200)).await;
            }
        })
    };
    let flows = [
        tokio::spawn(tcp_flow(lb.addrs.tcp[0], true, load_stop.clone())),
        tokio::spawn(tcp_flow(lb.addrs.tcp[0], false, load_stop.clone())),
    ];
    let raw = tokio::spawn(udp_requests(lb.addrs.udp[0], 120));
    let mut calls = Vec::new();
    for n in 0..6 {
        calls.push(sipp_call(lb.addrs.udp[0], dir.path(), n).await);
    }
    let mut wrong = Sipp::new("register_wrong.xml", lb.addrs.udp[0], "u1", "alice")
        .arg("-au")
        .arg("alice")
        .arg("-ap")
        .arg("not-the-password")
        .arg("-auth_uri")
        .arg("sipedge.local");
    wrong.timeout = Duration::from_secs(5);
    let wrong = wrong.run(dir.path()).await.map(|r| r.code);
    let _ = raw.await;
    eprintln!(
        "load done after {:?}: {calls:?}, wrong password: {wrong:?}",
        started.elapsed()
    );

    // Poll until every expression has data, or the limit.
    let exprs = expressions();
    let deadline = Instant::now() + QUERY_LIMIT;
    let mut empty: Vec<String>;
    loop {
        empty = Vec::new();
        for e in &exprs {
            match query(&client, prom.addr, &e.expr).await {
                Ok(n) if n > 0 => {}
                Ok(_) => empty.push(format!("{}\n    {}", e.origin, e.expr)),
                Err(err) => empty.push(format!("{}\n    {}\n    error: {err}", e.origin, e.expr)),
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // A precise diagnosis when the LB exports none of its own series.
    let lb_metrics = match client
        .get(format!("http://{}/metrics", lb.addrs.admin))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let lb_note = if lb_metrics.contains("sipedge_lb_requests_total") {
        String::new()
    } else {
        "\n\nThe LB's /metrics has no sipedge_lb_requests_total: its metric handles were \
         made before the process installed the recorder (they are then no-ops for good)."
            .to_string()
    };
    load_stop.cancel();
    flap.abort();
    for f in flows {
        let _ = f.await;
    }
    mon_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), mon).await;
    let log = std::fs::read_to_string(&prom.log).unwrap_or_default();
    drop(prom);
    let _ = lb.stop().await;
    let _ = proxy.stop().await;
    eprintln!(
        "{} expressions checked in {:?}",
        exprs.len(),
        started.elapsed()
    );
    assert!(
        empty.is_empty(),
        "{} of {} expressions returned no data:\n  {}{lb_note}\n\nprometheus log (tail):\n{}",
        empty.len(),
        exprs.len(),
        empty.join("\n  "),
        log.lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_stripped() {
        let cases = [
            ("a > 0.1", "a"),
            ("instance:x:bool == 0", "instance:x:bool"),
            ("sum by (e) (x) == 0", "sum by (e) (x)"),
            (
                "a * 300 / clamp_min(b, 100) > 0.05",
                "a * 300 / clamp_min(b, 100)",
            ),
            ("x > bool 0", "x"),
            ("rate(x[5m])", "rate(x[5m])"),
            ("histogram_quantile(0.5, y)", "histogram_quantile(0.5, y)"),
        ];
        for (input, want) in cases {
            assert_eq!(strip_threshold(input), want, "{input}");
        }
    }

    #[test]
    fn and_splits_at_top_level_only() {
        let cases: [(&str, &[&str]); 3] = [
            ("a > 1 and b > 2", &["a > 1", "b > 2"]),
            ("sum by (x) (a and b)", &["sum by (x) (a and b)"]),
            ("a", &["a"]),
        ];
        for (input, want) in cases {
            assert_eq!(split_and(input), want, "{input}");
        }
    }

    #[test]
    fn grafana_variables_become_match_all() {
        let e = r#"rate(x{edge=~"$edge", carrier=~"$carrier"}[$__rate_interval])"#;
        assert_eq!(
            grafana_to_promql(e),
            r#"rate(x{edge=~".*", carrier=~".*"}[30s])"#
        );
    }
}
