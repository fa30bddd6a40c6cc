//! Starting a real proxy in-process on loopback port 0 (alone or behind a
//! real LB), and running SIPp scenarios from `tests/sipp/` against it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sipedge_proxy::churn::wire::{encode_aor, BindingsBody};
use sipedge_proxy::config::ProxyConfig;
use sipedge_proxy::run::{bind, run, Addresses};
use tokio_util::sync::CancellationToken;

use crate::lb_harness::{LbOptions, TestLb};

/// Knobs of a test proxy.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Proxy id (the hash key the LB ranks on).
    pub id: String,
    /// `[[peers.proxy]]`: (id, admin base URL); empty: no peers.
    pub peers: Vec<(String, String)>,
    /// `auth.nonce_lifetime` in seconds (at least 10).
    pub nonce_lifetime_s: u64,
    /// `auth.ban.ip_max_failures`.
    pub ip_max_failures: u32,
    /// Gateway groups: (name, prefixes, gateways).
    pub gateway_groups: Vec<(String, Vec<String>, Vec<SocketAddr>)>,
    /// CDR file.
    pub cdr: Option<PathBuf>,
    /// The `edge` label (tests in one binary share the metrics registry).
    pub edge: String,
    /// Offer MD5 before SHA-256 (SIPp 3.6 reads only the first challenge
    /// and knows only MD5); false keeps the production order.
    pub md5_first: bool,
    /// `users.db_url` (PostgreSQL) instead of the demo users.
    pub users_db_url: Option<String>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            id: "p1".into(),
            peers: vec![],
            nonce_lifetime_s: 300,
            ip_max_failures: 20,
            gateway_groups: vec![],
            cdr: None,
            edge: "test".into(),
            md5_first: true,
            users_db_url: None,
        }
    }
}

/// The TOML of a test proxy (port 0 everywhere, demo users). MD5 is offered
/// first because SIPp 3.6 reads only the first challenge and knows only MD5.
pub fn proxy_toml(opts: &ProxyOptions) -> String {
    let mut s = format!(
        "id = {:?}\nedge = \"{}\"\ndomains = [\"sipedge.local\"]\npstn_pattern = \"+?[0-9]{{5,}}\"\n\
         [listen]\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [auth]\nnonce_secret = \"sipedge-test-nonce-secret-0123\"\nnonce_lifetime = \"{}s\"\n\
         challenge_order = {}\n\
         [auth.ban]\nip_max_failures = {}\nuser_max_failures = 0\n\
         [timers]\nt1 = \"100ms\"\nt2 = \"400ms\"\nt4 = \"500ms\"\ntrying_delay = \"0ms\"\n",
        opts.id,
        opts.edge,
        opts.nonce_lifetime_s,
        if opts.md5_first {
            "[\"MD5\", \"SHA-256\"]"
        } else {
            "[\"SHA-256\", \"MD5\"]"
        },
        opts.ip_max_failures
    );
    if let Some(u) = &opts.users_db_url {
        s.push_str(&format!("[users]\ndb_url = {u:?}\n"));
    }
    if !opts.peers.is_empty() {
        s.push_str(&format!("[peers]\ntoken = {PEER_TOKEN:?}\n"));
        for (id, url) in &opts.peers {
            s.push_str(&format!("[[peers.proxy]]\nid = {id:?}\nurl = {url:?}\n"));
        }
    }
    if let Some(c) = &opts.cdr {
        s.push_str(&format!("[cdr]\nfile = {:?}\n", c.display().to_string()));
    }
    for (name, prefixes, gws) in &opts.gateway_groups {
        let p: Vec<String> = prefixes.iter().map(|p| format!("{p:?}")).collect();
        let g: Vec<String> = gws.iter().map(|g| format!("\"{g}\"")).collect();
        s.push_str(&format!(
            "[[gateway_group]]\nname = {name:?}\nprefixes = [{}]\ngateways = [{}]\n",
            p.join(", "),
            g.join(", ")
        ));
    }
    s
}

/// The `peers.token` of test proxies.
pub const PEER_TOKEN: &str = "test-peer-token";

/// A running proxy.
#[derive(Debug)]
pub struct TestProxyServer {
    /// Where it listens.
    pub addrs: Addresses,
    /// Cancels it.
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), sipedge_proxy::run::RunError>>,
}

impl TestProxyServer {
    /// Starts a proxy with `opts` on 127.0.0.1, port 0.
    pub async fn start(opts: &ProxyOptions) -> anyhow::Result<TestProxyServer> {
        let cfg = ProxyConfig::parse(Path::new("<test proxy.toml>"), &proxy_toml(opts))?;
        let sockets = bind(&cfg.listen)?;
        let addrs = sockets.addresses()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(cfg, sockets, shutdown.clone()));
        Ok(TestProxyServer {
            addrs,
            shutdown,
            task,
        })
    }

    /// Stops it and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        Ok(self.task.await??)
    }

    /// Starts `ids.len()` proxies that are each other's peers: all bind
    /// first (port 0), then each runs with the others' admin URLs. Proxy `i`
    /// gets id `ids[i]` and edge `{opts.edge}-{ids[i]}` (its own metrics).
    pub async fn start_tier(
        ids: &[&str],
        opts: &ProxyOptions,
    ) -> anyhow::Result<Vec<TestProxyServer>> {
        let path = Path::new("<test proxy.toml>");
        let mut bound = Vec::with_capacity(ids.len());
        for id in ids {
            let o = ProxyOptions {
                id: (*id).into(),
                edge: format!("{}-{id}", opts.edge),
                peers: vec![],
                ..opts.clone()
            };
            let cfg = ProxyConfig::parse(path, &proxy_toml(&o))?;
            let sockets = bind(&cfg.listen)?;
            let admin = sockets
                .addresses()?
                .admin
                .ok_or_else(|| anyhow::anyhow!("test proxies have an admin server"))?;
            bound.push((o, sockets, admin));
        }
        let urls: Vec<(String, String)> = bound
            .iter()
            .map(|(o, _, admin)| (o.id.clone(), format!("http://{admin}")))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for (mut o, sockets, _) in bound {
            o.peers = urls.iter().filter(|(id, _)| *id != o.id).cloned().collect();
            let cfg = ProxyConfig::parse(path, &proxy_toml(&o))?;
            let addrs = sockets.addresses()?;
            let shutdown = CancellationToken::new();
            let task = tokio::spawn(run(cfg, sockets, shutdown.clone()));
            out.push(TestProxyServer {
                addrs,
                shutdown,
                task,
            });
        }
        Ok(out)
    }

    /// `GET /v1/bindings/{aor}` on its admin server (peer token): the bindings
    /// it would hand a peer, replicas marked with their origin.
    pub async fn bindings(&self, aor: &str) -> anyhow::Result<BindingsBody> {
        let admin = self
            .addrs
            .admin
            .ok_or_else(|| anyhow::anyhow!("no admin server"))?;
        let url = format!("http://{admin}/v1/bindings/{}", encode_aor(aor));
        let r = reqwest::Client::new()
            .get(&url)
            .bearer_auth(PEER_TOKEN)
            .send()
            .await?
            .error_for_status()?;
        Ok(r.json().await?)
    }

    /// The value of the metric line starting `name{edge="<edge>"` plus
    /// `labels` (e.g. `,result="found"`), 0 when absent.
    pub async fn metric(&self, name: &str, edge: &str, labels: &str) -> f64 {
        let Some(admin) = self.addrs.admin else {
            return 0.0;
        };
        let want = format!("{name}{{edge=\"{edge}\"{labels}}} ");
        let text = match reqwest::get(format!("http://{admin}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => return 0.0,
        };
        text.lines()
            .find_map(|l| l.strip_prefix(&want))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// An LB in front of one proxy.
#[derive(Debug)]
pub struct Stack {
    /// The LB.
    pub lb: TestLb,
    /// The proxy.
    pub proxy: TestProxyServer,
}

impl Stack {
    /// Starts proxy, then LB.
    pub async fn start(opts: &ProxyOptions) -> anyhow::Result<Stack> {
        let proxy = TestProxyServer::start(opts).await?;
        let mut lb_opts = LbOptions::new(vec![("p1".into(), proxy.addrs.udp)]);
        lb_opts.timer = Duration::from_secs(2);
        let lb = TestLb::start(lb_opts).await?;
        Ok(Stack { lb, proxy })
    }

    /// The LB's UDP address.
    pub fn udp(&self) -> SocketAddr {
        self.lb.addrs.udp[0]
    }

    /// The LB's TCP address.
    pub fn tcp(&self) -> SocketAddr {
        self.lb.addrs.tcp[0]
    }

    /// Stops both.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.lb.stop().await?;
        self.proxy.stop().await
    }

    /// Waits (bounded) until the proxy's registration gauge for `edge`
    /// reaches `n`; false on timeout.
    pub async fn wait_registrations(&self, edge: &str, n: u64, limit: Duration) -> bool {
        let Some(admin) = self.proxy.addrs.admin else {
            return false;
        };
        let url = format!("http://{admin}/metrics");
        let want = format!("sipedge_proxy_registrations_active{{edge=\"{edge}\"}} ");
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Ok(r) = reqwest::get(&url).await {
                let text = r.text().await.unwrap_or_default();
                let v = text
                    .lines()
                    .find_map(|l| l.strip_prefix(&want))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or(0.0);
                if v >= n as f64 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// How a stand-in gateway answers INVITEs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayMode {
    /// 100, then this final status.
    Fail(u16),
    /// 100, 180, 200 (Contact, Record-Route copied); 200 to BYE.
    Answer,
}

/// A UDP stand-in for a PSTN gateway that records the methods it receives.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Its address.
    pub addr: SocketAddr,
    /// Methods received, in order.
    pub received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Gateway {
    /// Binds 127.0.0.1:0 and answers as `mode` says.
    pub async fn start(mode: GatewayMode) -> anyhow::Result<Gateway> {
        use sipedge_shared::sip::{build_response, HeaderName, Limits, Message};
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let addr = sock.local_addr()?;
        let gw = Gateway {
            addr,
            received: Default::default(),
        };
        let rec = gw.received.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let data = bytes::Bytes::copy_from_slice(&buf[..n]);
                let Ok(m) = Message::parse_datagram(data, &Limits::default()) else {
                    continue;
                };
                if !m.is_request() {
                    continue;
                }
                let method = m.method_str().to_string();
                rec.lock().expect("test lock").push(method.clone());
                let contact = format!("<sip:gw@{addr}>");
                let rr: Vec<String> = m
                    .header_entries()
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.name == HeaderName::RecordRoute)
                    .map(|(i, _)| m.header_unfolded(i).into_owned())
                    .collect();
                let mut ok_extra: Vec<(&str, &str)> = vec![("Contact", contact.as_str())];
                ok_extra.extend(rr.iter().map(|v| ("Record-Route", v.as_str())));
                let replies = match (method.as_str(), mode) {
                    ("ACK", _) => vec![],
                    ("INVITE", GatewayMode::Fail(s)) => vec![
                        build_response(&m, 100, "Trying", None, &[]),
                        build_response(&m, s, "Gateway Failure", Some("gw"), &[]),
                    ],
                    ("INVITE", GatewayMode::Answer) => vec![
                        build_response(&m, 100, "Trying", None, &[]),
                        build_response(&m, 180, "Ringing", Some("gw"), &ok_extra),
                        build_response(&m, 200, "OK", Some("gw"), &ok_extra),
                    ],
                    _ => vec![build_response(&m, 200, "OK", Some("gw"), &[])],
                };
                for r in replies {
                    let _ = sock.send_to(&r, from).await;
                }
            }
        });
        Ok(gw)
    }

    /// The methods received so far.
    pub fn methods(&self) -> Vec<String> {
        self.received.lock().expect("test lock").clone()
    }
}

/// Is SIPp usable? Without it a test prints a skip message and passes,
/// unless `SIPEDGE_REQUIRE_SIPP=1` (see [`crate::sipp::sipp_or_skip`]).
pub fn sipp_or_skip(test: &str) -> bool {
    crate::sipp::sipp_or_skip(test).is_some()
}

pub use crate::sipp::scenario;

/// A port free for both UDP and TCP on 127.0.0.1 right now (bound, then
/// released; callers retry on a conflict).
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let Ok(u) = std::net::UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(a) = u.local_addr() else { continue };
        if std::net::TcpListener::bind(a).is_ok() {
            return a.port();
        }
    }
    0
}

/// One SIPp run.
#[derive(Debug, Clone)]
pub struct Sipp {
    /// Scenario file name in `tests/sipp/`.
    pub scenario: String,
    /// Target (`host:port`).
    pub target: SocketAddr,
    /// `u1` (UDP) or `t1` (TCP).
    pub transport: &'static str,
    /// `[service]`: the user in the scenario.
    pub service: String,
    /// Extra arguments.
    pub args: Vec<String>,
    /// Hard limit on the run.
    pub timeout: Duration,
}

/// What a SIPp run did.
#[derive(Debug)]
pub struct SippResult {
    /// Exit code (0: every call succeeded).
    pub code: Option<i32>,
    /// Its local port.
    pub port: u16,
    /// stdout + stderr + the error log, for assertions and diagnostics.
    pub log: String,
}

impl Sipp {
    /// A run of `scenario` against `target` over `transport`.
    pub fn new(scenario: &str, target: SocketAddr, transport: &'static str, service: &str) -> Self {
        Sipp {
            scenario: scenario.into(),
            target,
            transport,
            service: service.into(),
            args: vec![],
            timeout: Duration::from_secs(20),
        }
    }

    /// Adds arguments.
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }

    /// Starts SIPp (one call, `-m 1`) on a free port; the child is killed
    /// when the handle is dropped.
    pub fn spawn(&self, dir: &Path) -> anyhow::Result<(tokio::process::Child, u16)> {
        let port = free_port();
        let mut cmd = tokio::process::Command::new("sipp");
        cmd.arg("-sf")
            .arg(scenario(&self.scenario))
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", self.transport, "-m", "1", "-nostdin"])
            .args(["-s", &self.service])
            .args(["-timeout", &format!("{}s", self.timeout.as_secs())])
            .arg("-timeout_error")
            .args(["-recv_timeout", "8000"])
            .arg("-trace_err")
            .arg("-trace_msg")
            .arg("-error_file")
            .arg(dir.join(format!("{port}_errors.log")))
            .arg("-message_file")
            .arg(dir.join(format!("{port}_messages.log")))
            .args(self.args.iter())
            .arg(self.target.to_string())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Ok((cmd.spawn()?, port))
    }

    /// Runs to completion (bounded by `timeout` + 5 s).
    pub async fn run(&self, dir: &Path) -> anyhow::Result<SippResult> {
        let (child, port) = self.spawn(dir)?;
        finish(child, port, dir, self.timeout + Duration::from_secs(5)).await
    }
}

/// Waits for a spawned SIPp (bounded) and collects its logs.
pub async fn finish(
    child: tokio::process::Child,
    port: u16,
    dir: &Path,
    limit: Duration,
) -> anyhow::Result<SippResult> {
    let out = tokio::time::timeout(limit, child.wait_with_output()).await??;
    let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = name.starts_with(&format!("{port}_"));
            if ours && (name.ends_with("_errors.log") || name.ends_with("_messages.log")) {
                log.push_str(&format!("\n==== {name}\n"));
                log.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    Ok(SippResult {
        code: out.status.code(),
        port,
        log,
    })
}
