//! Starting a real LB in-process on loopback port 0, and tiny UDP stand-ins
//! for proxies that record what they receive and answer as told.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sipedge_lb::context::Settings;
use sipedge_lb::flood::FloodSettings;
use sipedge_lb::proxy_set::Proxy;
use sipedge_lb::run::{bind, run, Addresses, Listen, RunConfig};
use sipedge_lb::txn::Timers;
use sipedge_shared::flow_token::FlowKey;
use sipedge_shared::sip::{build_response, Limits, Message};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// The flow key every test LB uses.
pub const TEST_FLOW_KEY: &[u8] = b"sipedge-test-flow-key-0123456789";
/// The admin bearer token of test LBs.
pub const TEST_TOKEN: &str = "test-token";

/// A running LB.
#[derive(Debug)]
pub struct TestLb {
    /// Where it listens.
    pub addrs: Addresses,
    /// Cancels it.
    pub shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Options of a test LB.
#[derive(Debug, Clone)]
pub struct LbOptions {
    /// Static proxies (id, address).
    pub proxies: Vec<(String, SocketAddr)>,
    /// Failover timer.
    pub timer: Duration,
    /// Keepalive interval.
    pub keepalive: Duration,
    /// TLS certificate and key.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Flood settings.
    pub flood: FloodSettings,
    /// Transactions the worker may hold.
    pub max_transactions: usize,
    /// Admin HTTP address (port 0 by default; a fixed one lets a test
    /// restart an LB where its monitors expect it).
    pub admin: SocketAddr,
    /// Address of the external UDP/TCP/TLS listeners (port 0); the internal
    /// and admin sockets stay on 127.0.0.1.
    pub external: IpAddr,
}

impl LbOptions {
    /// Defaults over these proxies.
    pub fn new(proxies: Vec<(String, SocketAddr)>) -> Self {
        LbOptions {
            proxies,
            timer: Duration::from_millis(300),
            keepalive: Duration::from_secs(30),
            tls: None,
            flood: FloodSettings::default(),
            max_transactions: 4096,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            external: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

impl TestLb {
    /// Starts an LB with these options on 127.0.0.1, port 0 everywhere.
    pub async fn start(opts: LbOptions) -> anyhow::Result<TestLb> {
        let lo: SocketAddr = "127.0.0.1:0".parse()?;
        let ext = SocketAddr::new(opts.external, 0);
        let listen = Listen {
            udp: vec![ext],
            tcp: vec![ext],
            tls: if opts.tls.is_some() {
                vec![ext]
            } else {
                vec![]
            },
            internal: lo,
            admin: opts.admin,
            workers: 1,
        };
        let sockets = bind(&listen)?;
        let addrs = sockets.addresses()?;
        let settings = Settings {
            lb_id: 1,
            edge: "test".into(),
            advertise: addrs.udp[0].to_string(),
            internal: addrs.internal,
            flow_keys: vec![FlowKey::from_secret(TEST_FLOW_KEY)?],
            timers: Timers {
                non_invite: opts.timer,
                invite: opts.timer,
                ..Timers::default()
            },
            max_transactions: opts.max_transactions,
            keepalive_interval: opts.keepalive,
            keepalive_max_missed: 2,
            limits: Limits::default(),
            handshake_timeout: Duration::from_secs(5),
            log_sample: 0.0,
        };
        let cfg = RunConfig {
            settings,
            flood: opts.flood,
            static_proxies: opts
                .proxies
                .iter()
                .map(|(id, addr)| Proxy {
                    id: id.clone(),
                    addr: *addr,
                })
                .collect(),
            monitor_freshness: Duration::from_secs(10),
            admin_token: TEST_TOKEN.into(),
            carriers: vec![],
            tls: opts.tls,
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(cfg, sockets, shutdown.clone()));
        Ok(TestLb {
            addrs,
            shutdown,
            task: Some(task),
        })
    }

    /// Stops it and waits.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestLb {
    /// A test that fails before `stop` still ends its LB (its UDP reader
    /// threads would otherwise keep the runtime's shutdown waiting).
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// How a test proxy answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 OK (to INVITE: 100, 180, 200).
    Ok,
    /// This final status.
    Status(u16),
    /// Nothing.
    Silent,
    /// INVITE: 100 and 180, then wait; a CANCEL gets 200 and the INVITE 487.
    Ring,
}

/// A UDP stand-in for a proxy: records requests, answers as told.
#[derive(Debug, Clone)]
pub struct TestProxy {
    /// Its id.
    pub id: String,
    /// Its address.
    pub addr: SocketAddr,
    /// The socket (to send requests toward users).
    pub socket: Arc<UdpSocket>,
    /// Requests received.
    pub received: Arc<Mutex<Vec<Message>>>,
    /// Responses received (to requests it sent).
    pub responses: Arc<Mutex<Vec<Message>>>,
    answer: Arc<Mutex<Answer>>,
}

impl TestProxy {
    /// Binds 127.0.0.1:0 and starts answering.
    pub async fn start(id: &str, answer: Answer) -> anyhow::Result<TestProxy> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let p = TestProxy {
            id: id.to_string(),
            addr: socket.local_addr()?,
            socket: Arc::clone(&socket),
            received: Arc::default(),
            responses: Arc::default(),
            answer: Arc::new(Mutex::new(answer)),
        };
        let me = p.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let data = Bytes::copy_from_slice(&buf[..n]);
                let Ok(msg) = Message::parse_datagram(data, &Limits::default()) else {
                    continue;
                };
                if !msg.is_request() {
                    me.responses.lock().expect("test lock").push(msg);
                    continue;
                }
                let method = msg.method_str().to_string();
                me.received.lock().expect("test lock").push(msg.clone());
                if method == "ACK" {
                    continue;
                }
                let answer = *me.answer.lock().expect("test lock");
                if method == "CANCEL" {
                    let invite = me
                        .received
                        .lock()
                        .expect("test lock")
                        .iter()
                        .find(|m| {
                            m.method_str() == "INVITE" && m.call_id().ok() == msg.call_id().ok()
                        })
                        .cloned();
                    let _ = socket
                        .send_to(&build_response(&msg, 200, "OK", Some("uas"), &[]), from)
                        .await;
                    if let Some(inv) = invite {
                        let r = build_response(&inv, 487, "Request Terminated", Some("uas"), &[]);
                        let _ = socket.send_to(&r, from).await;
                    }
                    continue;
                }
                let replies: Vec<Bytes> = match answer {
                    Answer::Ring if method == "INVITE" => vec![
                        build_response(&msg, 100, "Trying", None, &[]),
                        build_response(&msg, 180, "Ringing", Some("uas"), &[]),
                    ],
                    Answer::Ring => vec![build_response(&msg, 200, "OK", Some("uas"), &[])],
                    Answer::Silent => vec![],
                    Answer::Status(s) => vec![build_response(&msg, s, "Test", Some("uas"), &[])],
                    Answer::Ok if method == "INVITE" => vec![
                        build_response(&msg, 100, "Trying", None, &[]),
                        build_response(&msg, 180, "Ringing", Some("uas"), &[]),
                        build_response(&msg, 200, "OK", Some("uas"), &[]),
                    ],
                    Answer::Ok => vec![build_response(&msg, 200, "OK", Some("uas"), &[])],
                };
                for r in replies {
                    let _ = socket.send_to(&r, from).await;
                }
            }
        });
        Ok(p)
    }

    /// Changes how it answers.
    pub fn set_answer(&self, a: Answer) {
        *self.answer.lock().expect("test lock") = a;
    }

    /// Number of requests received with this method.
    pub fn count(&self, method: &str) -> usize {
        self.received
            .lock()
            .expect("test lock")
            .iter()
            .filter(|m| m.method_str() == method)
            .count()
    }
}

/// A minimal request from a UA at `from`.
pub fn request(method: &str, ruri: &str, from: SocketAddr, call_id: &str, extra: &str) -> String {
    let to = if method == "REGISTER" {
        "<sip:alice@example.com>".to_string()
    } else {
        format!("<{ruri}>")
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}x;rport\r\nMax-Forwards: 70\r\nFrom: <sip:bob@example.com>;tag=ua1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\nContact: <sip:bob@{from}>\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// Receives one SIP message on `sock` within `wait`.
pub async fn recv_msg(sock: &UdpSocket, wait: Duration) -> Option<Message> {
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(wait, sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Message::parse_datagram(Bytes::copy_from_slice(&buf[..n]), &Limits::default()).ok()
}

/// Receives until a final response arrives (skipping provisionals).
pub async fn recv_final(sock: &UdpSocket, wait: Duration) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = recv_msg(sock, left).await?;
        if m.status().is_some_and(|s| s >= 200) {
            return Some(m);
        }
    }
}
