//! A worker: one [`Core`] (its transactions) behind a lock, its own internal
//! UDP socket and its own member of each external SO_REUSEPORT group, so a
//! proxy's response comes back to the worker that holds the transaction and
//! nothing is shared between workers but the routing snapshot and the flows.
//!
//! Each UDP socket is read by its own OS thread in a blocking `recvfrom`, as
//! Kamailio's UDP receivers do: a datagram costs one wakeup, one `recvfrom`
//! and its `sendto`s, without the readiness poll and the would-block read an
//! async loop pays per message. Stream connections stay async tasks and hand
//! their framed messages to the same core through [`Worker::external`].

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sipedge_shared::sip::{Limits, Message};
use tokio_util::sync::CancellationToken;

use crate::context::Shared;
use crate::flow::{FlowId, FlowTransport, Outbound};
use crate::pipeline::{malformed, Core, Dest, Out};
use crate::stun;

/// Receive buffer: one maximum-size datagram.
const RECV_CHUNK: usize = 65_536;

/// How long a blocked read waits before the thread looks at its timers and
/// at shutdown; the precision of the failover timers.
pub const TICK: Duration = Duration::from_millis(10);

/// One worker's core and the socket it sends to proxies from.
#[derive(Debug)]
pub struct Worker {
    core: Mutex<Core>,
    shared: Arc<Shared>,
    internal: UdpSocket,
}

/// Which socket a reader thread serves.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    /// The worker's internal socket (responses and requests from proxies).
    Internal,
    /// An external UDP listener, by listener index.
    External(u16),
}

impl Worker {
    /// A worker around `core`, sending to proxies from `internal` (a
    /// blocking socket with a read timeout, see [`prepare`]).
    pub fn new(core: Core, internal: UdpSocket) -> Self {
        Worker {
            shared: Arc::clone(&core.shared),
            core: Mutex::new(core),
            internal,
        }
    }

    /// The internal socket (read by this worker's internal thread).
    pub fn internal(&self) -> &UdpSocket {
        &self.internal
    }

    /// Handles a message framed on a stream connection, then sends what it
    /// produced. Called from the connection's task: the lock is held only
    /// while the sans-IO core runs, never across an await.
    pub fn external(&self, msg: Message, flow: FlowId, out: &mut Vec<Out>) {
        {
            let mut core = self.lock();
            core.on_external(msg, flow, Instant::now());
            run_timers(&mut core, Instant::now());
            out.append(&mut core.out);
        }
        self.flush(out);
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while the core was locked would already have failed the
        // test or the process; the state itself stays usable.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `out` (drained). UDP sends block only while the socket's send
    /// buffer is full; stream flows get the bytes through their queue.
    fn flush(&self, out: &mut Vec<Out>) {
        if out.is_empty() {
            return;
        }
        let shared = &self.shared;
        for o in out.drain(..) {
            match o.dest {
                Dest::Internal(addr) => {
                    let _ = self.internal.send_to(&o.bytes, addr);
                }
                Dest::Flow(flow) if flow.transport == FlowTransport::Udp => {
                    if let Some(s) = shared.ext_udp.get(usize::from(flow.listener)) {
                        let _ = s.send_to(&o.bytes, flow.peer);
                    }
                }
                Dest::Flow(flow) => {
                    let _ = shared.flows.send(&flow, Outbound::Message(o.bytes));
                }
            }
        }
    }
}

/// Makes a bound UDP socket fit for a reader thread: blocking, with a read
/// timeout of [`TICK`].
pub fn prepare(sock: &UdpSocket) -> std::io::Result<()> {
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(TICK))
}

fn run_timers(core: &mut Core, now: Instant) {
    if core.next_deadline().is_some_and(|d| d <= now) {
        core.on_timeout(now);
    }
    let closed = core.udp_peers.sweep(now);
    if closed > 0 {
        core.shared.flows.count_udp(0, closed);
        core.shared.metrics.flows[0].decrement(closed as f64);
    }
}

/// Reads `sock` until `stop` is cancelled: each datagram goes through the core,
/// and every read (or [`TICK`] without one) also runs the expired timers.
pub fn serve_udp(worker: &Worker, side: Side, sock: &UdpSocket, stop: &CancellationToken) {
    // Datagrams are read into this reused buffer and copied out at their
    // exact size: a message held by a lingering transaction then pins its own
    // few hundred bytes, not a shared 64 KiB block.
    let mut buf = vec![0u8; RECV_CHUNK];
    let mut out = Vec::new();
    let limits = worker.shared.settings.limits;
    while !stop.is_cancelled() {
        let got = match sock.recv_from(&mut buf) {
            Ok((n, from)) => Some((Bytes::copy_from_slice(&buf[..n]), from)),
            Err(e) if is_timeout(&e) => None,
            Err(e) => {
                // ICMP errors (ECONNREFUSED) surface here on Linux: not ours
                // to act on. Anything else is logged and retried after a tick.
                if e.kind() != std::io::ErrorKind::ConnectionRefused {
                    tracing::debug!(error = %e, "UDP read failed");
                    std::thread::sleep(TICK);
                }
                None
            }
        };
        {
            let mut core = worker.lock();
            let now = Instant::now();
            if let Some((data, from)) = got {
                match side {
                    Side::Internal => {
                        if let Ok(msg) = Message::parse_datagram(data, &limits) {
                            core.on_internal(msg, from, now);
                        }
                    }
                    Side::External(listener) => {
                        on_datagram(&mut core, data, listener, from, &limits, now);
                    }
                }
            }
            run_timers(&mut core, now);
            out.append(&mut core.out);
        }
        worker.flush(&mut out);
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn on_datagram(
    core: &mut Core,
    data: Bytes,
    listener: u16,
    peer: SocketAddr,
    limits: &Limits,
    now: Instant,
) {
    if core.udp_peers.touch(peer, now) {
        core.shared.flows.count_udp(1, 0);
        core.shared.metrics.flows[0].increment(1.0);
    }
    if stun::is_stun(&data) {
        if let Some(resp) = stun::binding_response(&data, peer) {
            core.shared.metrics.stun.increment(1);
            core.out.push(Out {
                dest: Dest::Flow(udp_flow(listener, peer)),
                bytes: Bytes::from(resp),
            });
        }
        return;
    }
    if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
        return; // UDP keepalive (CRLF): nothing to answer.
    }
    let flow = udp_flow(listener, peer);
    match Message::parse_datagram(data.clone(), limits) {
        Ok(msg) => core.on_external(msg, flow, now),
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

fn udp_flow(listener: u16, peer: SocketAddr) -> FlowId {
    FlowId {
        transport: FlowTransport::Udp,
        conn: 0,
        peer,
        listener,
    }
}

/// Starts the reader threads of `worker`: its internal socket and its
/// members of the external UDP groups. They end when `stop` is cancelled.
pub fn spawn_readers(
    worker: &Arc<Worker>,
    index: usize,
    external: Vec<(u16, Arc<UdpSocket>)>,
    stop: &CancellationToken,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut threads = Vec::with_capacity(1 + external.len());
    let internal = {
        let (w, stop) = (Arc::clone(worker), stop.clone());
        std::thread::Builder::new()
            .name(format!("udp-int-{index}"))
            .spawn(move || serve_udp(&w, Side::Internal, w.internal(), &stop))?
    };
    threads.push(internal);
    for (listener, sock) in external {
        let (w, stop) = (Arc::clone(worker), stop.clone());
        let t = std::thread::Builder::new()
            .name(format!("udp-ext-{index}-{listener}"))
            .spawn(move || serve_udp(&w, Side::External(listener), &sock, &stop))?;
        threads.push(t);
    }
    Ok(threads)
}
