//! SIP OPTIONS probes over UDP (one socket bound to the unicast source,
//! responses matched by Via branch and Call-ID) or TCP (one connection per
//! proxy, reconnected after any failure, Content-Length framing). Responses
//! are read with the shared zero-copy parser (`shared::sip`).
//!
//! ```text
//! RFC 3261 §11.1: The response to an OPTIONS is constructed using the
//! standard rules for a SIP response as discussed in Section 8.2.6.
//! RFC 3261 §8.1.1.7: The branch ID inserted by an element compliant with
//! this specification MUST always begin with the characters "z9hG4bK".
//! RFC 3581 §3: A client [...] MAY include an rport parameter, with no value.
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use sipedge_shared::sip::{FrameEvent, Limits, Message, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::Transport;
use crate::health::Outcome;
use crate::push::lock;

/// RFC 3261 §17.1.1.1 T1: the first UDP retransmission interval.
pub const T1: Duration = Duration::from_millis(500);

/// Identifiers of one probe.
#[derive(Debug, Clone)]
pub struct ProbeIds {
    /// Via branch, `z9hG4bK` + random.
    pub branch: String,
    /// Call-ID.
    pub call_id: String,
    /// From tag.
    pub tag: String,
    /// CSeq number.
    pub cseq: u32,
}

impl ProbeIds {
    /// Fresh random ids; the Call-ID carries the source host.
    pub fn random(local: SocketAddr, cseq: u32) -> Self {
        let mut rng = rand::thread_rng();
        ProbeIds {
            branch: format!("z9hG4bK{:016x}", rng.gen::<u64>()),
            call_id: format!("{:016x}@{}", rng.gen::<u64>(), local.ip()),
            tag: format!("{:08x}", rng.gen::<u32>()),
            cseq,
        }
    }
}

/// The OPTIONS request text. (Built with `format!` until the shared message
/// model is merged.)
pub fn options_request(
    transport: Transport,
    local: SocketAddr,
    target: SocketAddr,
    ids: &ProbeIds,
) -> String {
    let t = transport.via_token();
    let uri_transport = match transport {
        Transport::Udp => "",
        Transport::Tcp => ";transport=tcp",
    };
    format!(
        "OPTIONS sip:{target}{uri_transport} SIP/2.0\r\n\
         Via: SIP/2.0/{t} {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:sipmon@{local}{uri_transport}>;tag={tag}\r\n\
         To: <sip:{target}{uri_transport}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} OPTIONS\r\n\
         Contact: <sip:sipmon@{local}{uri_transport}>\r\n\
         Accept: application/sdp\r\n\
         User-Agent: sipedge-sipmon\r\n\
         Content-Length: 0\r\n\r\n",
        branch = ids.branch,
        tag = ids.tag,
        call_id = ids.call_id,
        cseq = ids.cseq,
    )
}

/// Maps a final response code to a probe outcome.
pub fn judge(code: u16, down_codes: &[u16], rtt: Duration) -> Outcome {
    if down_codes.contains(&code) {
        Outcome::Failed
    } else {
        Outcome::Alive { rtt }
    }
}

/// A waiting UDP probe: its Call-ID and where to deliver the final code.
type Pending = HashMap<String, (String, oneshot::Sender<u16>)>;

/// UDP prober: one socket, one receive task dispatching by branch.
#[derive(Debug)]
pub struct UdpProber {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    pending: Arc<Mutex<Pending>>,
    cseq: AtomicU32,
    timeout: Duration,
    down_codes: Vec<u16>,
}

impl UdpProber {
    /// Takes the bound socket and starts its receive task (ends with `shutdown`).
    pub fn new(
        socket: UdpSocket,
        timeout: Duration,
        down_codes: Vec<u16>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = socket.local_addr()?;
        let socket = Arc::new(socket);
        let pending: Arc<Mutex<Pending>> = Arc::default();
        tokio::spawn(Self::receive(socket.clone(), pending.clone(), shutdown));
        Ok(UdpProber {
            socket,
            local,
            pending,
            cseq: AtomicU32::new(1),
            timeout,
            down_codes,
        })
    }

    /// The address responses come back to (and the Via sent-by).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    async fn receive(
        socket: Arc<UdpSocket>,
        pending: Arc<Mutex<Pending>>,
        shutdown: CancellationToken,
    ) {
        let limits = Limits::default();
        let mut buf = vec![0u8; 65_535];
        loop {
            let r = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = socket.recv_from(&mut buf) => r,
            };
            let n = match r {
                Ok((n, _from)) => n,
                Err(e) => {
                    // ICMP port unreachable surfaces here on some systems;
                    // the probe simply times out.
                    tracing::trace!(error = %e, "probe socket receive error");
                    // Never spin on a persistent error.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            };
            let Ok(msg) = Message::parse_datagram(Bytes::copy_from_slice(&buf[..n]), &limits)
            else {
                continue;
            };
            // RFC 3261 §17.1.1.2: provisional responses do not end the transaction.
            let Some(code) = msg.status().filter(|c| *c >= 200) else {
                continue;
            };
            let Some(branch) = msg.top_via().ok().and_then(|v| v.branch) else {
                continue;
            };
            let call_id = msg.call_id().ok();
            let mut map = lock(&pending);
            let matches = map
                .get(branch.as_str())
                .is_some_and(|(cid, _)| call_id == Some(cid.as_str()));
            if matches {
                if let Some((_, tx)) = map.remove(branch.as_str()) {
                    let _ = tx.send(code);
                }
            }
        }
    }

    /// Probes `target` once: retransmits on T1 doubling (§17.1.2.2 Timer E)
    /// until a final response or the timeout.
    pub async fn probe(&self, target: SocketAddr) -> Outcome {
        let ids = ProbeIds::random(self.local, self.cseq.fetch_add(1, Ordering::Relaxed));
        let request = options_request(Transport::Udp, self.local, target, &ids);
        let (tx, mut rx) = oneshot::channel();
        lock(&self.pending).insert(ids.branch.clone(), (ids.call_id.clone(), tx));
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut retransmit = T1;
        let outcome = loop {
            if let Err(e) = self.socket.send_to(request.as_bytes(), target).await {
                tracing::debug!(%target, error = %e, "probe send failed");
                break Outcome::Failed;
            }
            let next = (tokio::time::Instant::now() + retransmit).min(deadline);
            tokio::select! {
                code = &mut rx => break match code {
                    Ok(code) => judge(code, &self.down_codes, start.elapsed()),
                    Err(_) => Outcome::Failed,
                },
                _ = tokio::time::sleep_until(next) => {
                    if next >= deadline {
                        break Outcome::Failed;
                    }
                    retransmit = (retransmit * 2).min(Duration::from_secs(4));
                }
            }
        };
        lock(&self.pending).remove(&ids.branch);
        outcome
    }
}

/// One proxy's TCP connection and its framer (Content-Length framing).
#[derive(Debug)]
struct TcpConn {
    stream: TcpStream,
    local: SocketAddr,
    framer: StreamFramer,
}

/// TCP prober: one connection per proxy id, reused across rounds.
#[derive(Debug)]
pub struct TcpProber {
    source: SocketAddr,
    conns: Mutex<HashMap<String, TcpConn>>,
    cseq: AtomicU32,
    timeout: Duration,
    down_codes: Vec<u16>,
}

impl TcpProber {
    /// Connections will be bound to `source`'s IP (any port).
    pub fn new(source: SocketAddr, timeout: Duration, down_codes: Vec<u16>) -> Self {
        TcpProber {
            source: SocketAddr::new(source.ip(), 0),
            conns: Mutex::default(),
            cseq: AtomicU32::new(1),
            timeout,
            down_codes,
        }
    }

    /// Probes proxy `id` at `target`; the whole exchange (including a
    /// reconnect) is bounded by the timeout. A failed connection is dropped
    /// and re-established on the next probe.
    pub async fn probe(&self, id: &str, target: SocketAddr) -> Outcome {
        let existing = lock(&self.conns).remove(id);
        let start = Instant::now();
        let exchange = self.exchange(existing, target);
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok((code, conn))) => {
                lock(&self.conns).insert(id.to_string(), conn);
                judge(code, &self.down_codes, start.elapsed())
            }
            Ok(Err(e)) => {
                tracing::debug!(%target, error = %e, "tcp probe failed");
                Outcome::Failed
            }
            Err(_) => Outcome::Failed,
        }
    }

    async fn connect(&self, target: SocketAddr) -> std::io::Result<TcpConn> {
        let socket = if target.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.bind(self.source)?;
        let stream = socket.connect(target).await?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        Ok(TcpConn {
            stream,
            local,
            framer: StreamFramer::new(Limits::default()),
        })
    }

    async fn exchange(
        &self,
        existing: Option<TcpConn>,
        target: SocketAddr,
    ) -> std::io::Result<(u16, TcpConn)> {
        let mut conn = match existing {
            Some(c) => c,
            None => self.connect(target).await?,
        };
        let ids = ProbeIds::random(conn.local, self.cseq.fetch_add(1, Ordering::Relaxed));
        let request = options_request(Transport::Tcp, conn.local, target, &ids);
        conn.stream.write_all(request.as_bytes()).await?;
        loop {
            while let Some(event) = conn.framer.next() {
                match event.map_err(std::io::Error::other)? {
                    FrameEvent::Message(msg) => {
                        let final_code = msg.status().filter(|c| *c >= 200);
                        if let Some(code) = final_code {
                            if msg.call_id().ok() == Some(ids.call_id.as_str()) {
                                return Ok((code, conn));
                            }
                        }
                    }
                    // RFC 5626 §4.4.1: answer a keepalive ping with a pong.
                    FrameEvent::Ping => conn.stream.write_all(b"\r\n").await?,
                    FrameEvent::Pong => {}
                }
            }
            let n = conn.stream.read_buf(conn.framer.buffer_mut()).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// Either prober.
#[derive(Debug)]
pub enum Prober {
    /// Over UDP.
    Udp(UdpProber),
    /// Over TCP.
    Tcp(TcpProber),
}

impl Prober {
    /// Probes proxy `id` at `target` once.
    pub async fn probe(&self, id: &str, target: SocketAddr) -> Outcome {
        match self {
            Prober::Udp(p) => p.probe(target).await,
            Prober::Tcp(p) => p.probe(id, target).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shape() {
        let local: SocketAddr = "127.0.0.1:5999".parse().expect("addr");
        let target: SocketAddr = "[::1]:5071".parse().expect("addr");
        let ids = ProbeIds::random(local, 7);
        assert!(ids.branch.starts_with("z9hG4bK") && ids.branch.len() > 7 + 8);
        let udp = options_request(Transport::Udp, local, target, &ids);
        let tcp = options_request(Transport::Tcp, local, target, &ids);
        for (req, via, ruri) in [
            (
                &udp,
                "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=",
                "OPTIONS sip:[::1]:5071 SIP/2.0\r\n",
            ),
            (
                &tcp,
                "Via: SIP/2.0/TCP 127.0.0.1:5999;branch=",
                "OPTIONS sip:[::1]:5071;transport=tcp SIP/2.0\r\n",
            ),
        ] {
            assert!(req.starts_with(ruri), "{req}");
            assert!(
                req.contains(&format!("{via}{};rport\r\n", ids.branch)),
                "{req}"
            );
            assert!(req.contains("\r\nMax-Forwards: 70\r\n"), "{req}");
            assert!(
                req.contains(&format!("\r\nCall-ID: {}\r\n", ids.call_id)),
                "{req}"
            );
            assert!(req.contains("\r\nCSeq: 7 OPTIONS\r\n"), "{req}");
            assert!(req.ends_with("\r\nContent-Length: 0\r\n\r\n"), "{req}");
        }
        // Two probes never share a branch.
        assert_ne!(ProbeIds::random(local, 1).branch, ids.branch);
    }

    #[test]
    fn judging() {
        let rtt = Duration::from_millis(3);
        let cases = [
            (200, &[503][..], Outcome::Alive { rtt }),
            (404, &[503][..], Outcome::Alive { rtt }),
            (503, &[503][..], Outcome::Failed),
            (500, &[500, 503][..], Outcome::Failed),
        ];
        for (code, down, want) in cases {
            assert_eq!(judge(code, down, rtt), want, "{code}");
        }
    }

    /// Answers OPTIONS on `sock` with `code` (after a 100 Trying), copying Via and Call-ID.
    async fn responder(sock: UdpSocket, code: u16) {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let pick = |name: &str| {
                text.split("\r\n")
                    .find(|l| l.starts_with(name))
                    .unwrap_or_default()
                    .to_string()
            };
            for c in [100, code] {
                let resp = format!(
                    "SIP/2.0 {c} X\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
                    pick("Via:"),
                    pick("Call-ID:")
                );
                let _ = sock.send_to(resp.as_bytes(), from).await;
            }
        }
    }

    #[tokio::test]
    async fn udp_probe_outcomes() {
        let shutdown = CancellationToken::new();
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let prober = UdpProber::new(
            sock,
            Duration::from_millis(300),
            vec![503],
            shutdown.clone(),
        )
        .expect("prober");
        let ok = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let busy = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let (ok_addr, busy_addr) = (ok.local_addr().expect("a"), busy.local_addr().expect("a"));
        let silent_addr = silent.local_addr().expect("a");
        tokio::spawn(responder(ok, 200));
        tokio::spawn(responder(busy, 503));
        assert!(matches!(prober.probe(ok_addr).await, Outcome::Alive { .. }));
        assert_eq!(prober.probe(busy_addr).await, Outcome::Failed);
        assert_eq!(prober.probe(silent_addr).await, Outcome::Failed);
        assert!(lock(&prober.pending).is_empty());
        shutdown.cancel();
    }

    #[tokio::test]
    async fn tcp_probe_reuses_and_reconnects() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicU32::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).to_string();
                        let cid = text
                            .split("\r\n")
                            .find(|l| l.starts_with("Call-ID:"))
                            .unwrap_or_default()
                            .to_string();
                        // A keepalive, a provisional, then the final response.
                        let resp = format!(
                            "\r\n\r\nSIP/2.0 100 Trying\r\n{cid}\r\nContent-Length: 0\r\n\r\n\
                             SIP/2.0 200 OK\r\n{cid}\r\nContent-Length: 2\r\n\r\nhi"
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let p = TcpProber::new(
            "127.0.0.1:0".parse().expect("src"),
            Duration::from_millis(500),
            vec![503],
        );
        for _ in 0..3 {
            assert!(matches!(p.probe("p1", addr).await, Outcome::Alive { .. }));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection reused");
        // A closed port fails and leaves no connection behind.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        assert_eq!(p.probe("p2", closed).await, Outcome::Failed);
        assert!(!lock(&p.conns).contains_key("p2"));
    }
}
