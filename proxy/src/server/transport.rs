//! The proxy's I/O: one UDP socket (what the LBs use), and TCP connections
//! from direct clients, each with a reader task (framing) and a writer task.
//!
//! ```text
//! RFC 3261 §18.2.2: if the request arrived over a reliable transport, the
//! response is sent on the same connection; over UDP, to the source.
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sipedge_shared::sip::{FrameEvent, Limits, StreamFramer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::state::Dest;
use super::{Core, Source};
use crate::transaction::Transport;

/// Messages queued per TCP connection before sends are dropped.
const TCP_QUEUE: usize = 512;
/// Most concurrent TCP connections.
const MAX_TCP: usize = 4096;
/// A connection with nothing received for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(600);

/// The sending side of every socket.
#[derive(Debug)]
pub struct Net {
    udp: Arc<UdpSocket>,
    tcp: Mutex<HashMap<u64, mpsc::Sender<Bytes>>>,
    next_conn: AtomicU64,
}

impl Net {
    /// Over `udp`.
    pub fn new(udp: Arc<UdpSocket>) -> Self {
        Net {
            udp,
            tcp: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
        }
    }

    /// Sends without waiting; a full socket or queue drops the message
    /// (the transaction layer retransmits over UDP).
    pub fn send(&self, dest: Dest, bytes: Bytes) {
        match dest {
            Dest::Udp(addr) => {
                if let Err(e) = self.udp.try_send_to(&bytes, addr) {
                    tracing::debug!(%addr, error = %e, "UDP send failed");
                }
            }
            Dest::Tcp(id) => {
                let tx = self
                    .tcp
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                    .cloned();
                if let Some(tx) = tx {
                    let _ = tx.try_send(bytes);
                }
            }
        }
    }
}

/// Receives on the UDP socket until `shutdown`.
pub async fn udp_loop(core: Arc<Core>, udp: Arc<UdpSocket>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let r = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = udp.recv_from(&mut buf) => r,
        };
        let (n, peer) = match r {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors surface here on some systems; keep serving.
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        // A keepalive (CRLF) or STUN: nothing for us.
        if n < 16 {
            continue;
        }
        let src = Source {
            peer,
            dest: Dest::Udp(peer),
            transport: Transport::Unreliable,
        };
        core.on_message(Bytes::copy_from_slice(&buf[..n]), src);
    }
}

/// Accepts TCP connections until `shutdown`.
pub async fn tcp_loop(core: Arc<Core>, listener: TcpListener, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            continue; // Over the cap: the connection is dropped (closed).
        };
        let core = Arc::clone(&core);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            connection(core, stream, peer, stop).await;
            drop(permit);
        });
    }
}

async fn connection(
    core: Arc<Core>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    shutdown: CancellationToken,
) {
    let id = core.net.next_conn.fetch_add(1, Ordering::Relaxed);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(TCP_QUEUE);
    core.net
        .tcp
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, tx.clone());
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::new(core.env.limits);
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = tokio::time::timeout(TCP_IDLE, rd.read(&mut buf)) => match r {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => n,
            },
        };
        framer.feed(&buf[..n]);
        while let Some(ev) = framer.next() {
            match ev {
                Ok(FrameEvent::Message(m)) => {
                    let src = Source {
                        peer,
                        dest: Dest::Tcp(id),
                        transport: Transport::Reliable,
                    };
                    core.on_message(m.bytes().clone(), src);
                }
                Ok(FrameEvent::Ping) => {
                    // RFC 5626 §4.4.1: answer a double CRLF with one CRLF.
                    let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                }
                Ok(FrameEvent::Pong) => {}
                Err(_) => break 'read, // Framing lost: close.
            }
        }
        if framer.is_lost() {
            break;
        }
    }
    core.net
        .tcp
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    drop(tx);
    let _ = writer.await;
}

/// Default limits for the proxy's sockets.
pub fn limits() -> Limits {
    Limits::default()
}
