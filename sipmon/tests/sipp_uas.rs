//! sipmon against real SIPp UAS processes (skipped when `sipp` is not
//! installed, unless `SIPEDGE_REQUIRE_SIPP=1`): kill one, see it leave the
//! pushed set; restart it, see it return.
//! SIPp's built-in `uas` does not answer OPTIONS, hence `sipp/options_uas.xml`.
//! The LB is the same stand-in receiver as in `monitor.rs` (reduced here):
//! the lead will switch the e2e tests to the real LB admin.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the LB stand-in saw: when, and the ids reported up.
type PutLog = Arc<Mutex<Vec<(Instant, Vec<String>)>>>;

/// A SIPp child, killed when dropped.
struct Sipp(Child);

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scenario() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/options_uas.xml")
}

fn sipp(port: u16) -> Sipp {
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(scenario())
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
        // Bounded even if the test dies without dropping the guard.
        .args(["-timeout", "60s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp");
    Sipp(child)
}

/// A free UDP port (bound then released; SIPp needs a number).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// LB stand-in reduced to "record the up list of every PUT, answer 200".
async fn lb(log: PutLog) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() < len {
                        continue;
                    }
                    let v: serde_json::Value =
                        serde_json::from_str(&body[..len]).unwrap_or_default();
                    let up: Vec<String> = v["proxies"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|p| p["up"] == true)
                        .filter_map(|p| p["id"].as_str().map(String::from))
                        .collect();
                    log.lock().expect("log").push((Instant::now(), up));
                    let resp = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}";
                    let _ = s.write_all(resp.as_bytes()).await;
                    buf.clear();
                }
            });
        }
    });
    addr
}

async fn wait_up(log: &PutLog, want: &[&str], what: &str) -> Instant {
    let start = Instant::now();
    loop {
        if let Some((at, up)) = log.lock().expect("log").last() {
            if up.iter().map(String::as_str).eq(want.iter().copied()) {
                return *at;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_uas_killed_and_restarted() {
    if Command::new("sipp").arg("-v").output().is_err() {
        // CI sets SIPEDGE_REQUIRE_SIPP=1: there a missing SIPp fails.
        assert_ne!(
            std::env::var("SIPEDGE_REQUIRE_SIPP").as_deref(),
            Ok("1"),
            "SIPEDGE_REQUIRE_SIPP=1 but sipp is not installed"
        );
        eprintln!("skip: sipp is not installed (apt-get install sip-tester)");
        return;
    }
    let (port1, port2) = (free_udp_port(), free_udp_port());
    let uas1 = sipp(port1);
    let mut uas2 = Some(sipp(port2));
    let log = Arc::new(Mutex::new(Vec::new()));
    let lb = lb(log.clone()).await;
    let text = format!(
        r#"
id = "mon-sipp"
[probe]
interval = "200ms"
timeout = "150ms"
source = "127.0.0.1"
[[proxies]]
id = "p1"
addr = "127.0.0.1:{port1}"
[[proxies]]
id = "p2"
addr = "127.0.0.1:{port2}"
[push]
lbs = ["http://{lb}"]
token = "t"
heartbeat = "600ms"
retry = {{ min = "50ms", max = "300ms" }}
[admin]
listen = "127.0.0.1:0"
"#
    );
    let config = sipmon::Config::parse(Path::new("sipp.toml"), &text).expect("config");
    let sockets = sipmon::BoundSockets::bind(&config).await.expect("bind");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(sipmon::run(config, sockets, shutdown.clone()));

    // Both answer once SIPp is up; p2 may have gone down meanwhile, so wait for it.
    wait_up(&log, &["p1", "p2"], "both SIPp UAS up").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    wait_up(&log, &["p1", "p2"], "both still up").await;

    let killed = Instant::now();
    drop(uas2.take());
    let at = wait_up(&log, &["p1"], "p2 removed").await;
    let took = at.duration_since(killed);
    eprintln!("killed SIPp UAS removed after {took:?}");
    assert!(took <= Duration::from_millis(4 * 200 + 250), "{took:?}");

    let restarted = Instant::now();
    uas2 = Some(sipp(port2));
    let at = wait_up(&log, &["p1", "p2"], "p2 back").await;
    eprintln!(
        "restarted SIPp UAS back after {:?}",
        at.duration_since(restarted)
    );

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops")
        .expect("joins")
        .expect("ok");
    drop((uas1, uas2));
}
