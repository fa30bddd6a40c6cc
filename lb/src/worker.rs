//! A worker's I/O loop: its own external UDP socket (one of a SO_REUSEPORT
//! group) and its own internal socket, so a proxy's response comes back to
//! the worker that holds the transaction and nothing is shared between
//! workers but the routing snapshot and the flow table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sipedge_shared::sip::Message;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::flow::{FlowId, FlowTransport, Outbound};
use crate::pipeline::{malformed, Core, Dest, Out};
use crate::stun;

/// Work handed to a worker by a stream connection task.
#[derive(Debug)]
pub struct FromStream {
    /// The framed message.
    pub msg: Message,
    /// The connection it came on.
    pub flow: FlowId,
}

/// Receive buffer: one maximum-size datagram.
const RECV_CHUNK: usize = 65_536;

/// The sockets one worker reads.
#[derive(Debug)]
pub struct WorkerSockets {
    /// This worker's internal socket (toward proxies).
    pub internal: Arc<UdpSocket>,
    /// This worker's external UDP sockets with their listener index.
    pub external: Vec<(u16, Arc<UdpSocket>)>,
}

async fn recv_any(
    socks: &[(u16, Arc<UdpSocket>)],
    buf: &mut [u8],
) -> std::io::Result<(usize, u16, SocketAddr)> {
    // One listener per worker is the common case; more are polled in turn.
    match socks {
        [] => std::future::pending().await,
        [(i, s)] => s.recv_from(buf).await.map(|(n, a)| (n, *i, a)),
        many => loop {
            for (i, s) in many {
                s.readable().await?;
                match s.try_recv_from(buf) {
                    Ok((n, a)) => return Ok((n, *i, a)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
        },
    }
}

/// Runs one worker until `shutdown`.
pub async fn run(
    mut core: Core,
    sockets: WorkerSockets,
    mut from_streams: mpsc::Receiver<FromStream>,
    shutdown: CancellationToken,
) {
    // Datagrams are read into these reused buffers and copied out at their
    // exact size: a message held by a lingering transaction then pins its own
    // few hundred bytes, not a shared 64 KiB block (which made the heap grow
    // and page-fault under load).
    let mut ext_buf = vec![0u8; RECV_CHUNK];
    let mut int_buf = vec![0u8; RECV_CHUNK];
    let limits = core.shared.settings.limits;
    loop {
        let deadline = core.next_deadline();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            r = sockets.internal.recv_from(&mut int_buf) => {
                if let Ok((n, from)) = r {
                    let data = Bytes::copy_from_slice(&int_buf[..n]);
                    if let Ok(msg) = Message::parse_datagram(data, &limits) {
                        core.on_internal(msg, from, Instant::now());
                    }
                }
            }
            r = recv_any(&sockets.external, &mut ext_buf) => {
                if let Ok((n, listener, peer)) = r {
                    let data = Bytes::copy_from_slice(&ext_buf[..n]);
                    on_datagram(&mut core, data, listener, peer, &limits);
                }
            }
            Some(m) = from_streams.recv() => {
                core.on_external(m.msg, m.flow, Instant::now());
            }
            _ = sleep_until(deadline) => {
                core.on_timeout(Instant::now());
            }
        }
        flush(&mut core, &sockets.internal).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn on_datagram(
    core: &mut Core,
    data: Bytes,
    listener: u16,
    peer: SocketAddr,
    limits: &sipedge_shared::sip::Limits,
) {
    if stun::is_stun(&data) {
        if let Some(resp) = stun::binding_response(&data, peer) {
            core.shared.metrics.stun.increment(1);
            if let Some(s) = core.shared.ext_udp.get(usize::from(listener)) {
                let _ = s.try_send_to(&resp, peer);
            }
        }
        return;
    }
    if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
        return; // UDP keepalive (CRLF): nothing to answer.
    }
    let flow = FlowId {
        transport: FlowTransport::Udp,
        conn: 0,
        peer,
        listener,
    };
    match Message::parse_datagram(data.clone(), limits) {
        Ok(msg) => core.on_external(msg, flow, Instant::now()),
        Err(e) => {
            let carrier = core.shared.carriers.lookup_index(peer.ip());
            core.shared
                .metrics
                .carrier(carrier)
                .bad_messages
                .increment(1);
            if let Some(resp) = malformed::error_response(&data, e.status(), &e.reason()) {
                core.out.push(Out {
                    dest: Dest::Flow(flow),
                    bytes: Bytes::from(resp),
                });
            }
        }
    }
}

/// Sends everything the core queued.
async fn flush(core: &mut Core, internal: &UdpSocket) {
    for out in core.out.drain(..) {
        match out.dest {
            Dest::Internal(addr) => {
                if internal.try_send_to(&out.bytes, addr).is_err() {
                    let _ = internal.send_to(&out.bytes, addr).await;
                }
            }
            Dest::Flow(flow) if flow.transport == FlowTransport::Udp => {
                if let Some(s) = core.shared.ext_udp.get(usize::from(flow.listener)) {
                    if s.try_send_to(&out.bytes, flow.peer).is_err() {
                        let _ = s.send_to(&out.bytes, flow.peer).await;
                    }
                }
            }
            Dest::Flow(flow) => {
                let _ = core.shared.flows.send(&flow, Outbound::Message(out.bytes));
            }
        }
    }
}
