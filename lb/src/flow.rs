//! Flows: every stream connection (and every UDP source address) a request
//! arrived on. The table maps a connection id to its writer so that a request
//! toward a user, or a response, goes back over the very same connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

/// The transport of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowTransport {
    /// UDP: the flow is the peer's address on one of our sockets.
    Udp,
    /// TCP connection.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl FlowTransport {
    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            FlowTransport::Udp => "UDP",
            FlowTransport::Tcp => "TCP",
            FlowTransport::Tls => "TLS",
        }
    }

    /// The `transport` URI parameter of a Record-Route naming this flow's
    /// face (`None` for UDP, the default).
    pub fn uri_param(self) -> Option<&'static str> {
        match self {
            FlowTransport::Udp => None,
            FlowTransport::Tcp => Some("tcp"),
            FlowTransport::Tls => Some("tls"),
        }
    }

    fn index(self) -> usize {
        match self {
            FlowTransport::Udp => 0,
            FlowTransport::Tcp => 1,
            FlowTransport::Tls => 2,
        }
    }
}

/// Where a message came from, and so where answers go back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowId {
    /// Transport.
    pub transport: FlowTransport,
    /// Connection id (0 for UDP).
    pub conn: u64,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Index of our external listener (UDP socket) the flow is on.
    pub listener: u16,
}

/// What a connection task is asked to write.
#[derive(Debug)]
pub enum Outbound {
    /// A SIP message.
    Message(Bytes),
    /// Close the connection after what was queued.
    Close,
}

struct StreamFlow {
    peer: SocketAddr,
    transport: FlowTransport,
    tx: mpsc::Sender<Outbound>,
}

const SHARDS: usize = 16;

/// Why a message could not be handed to a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The connection is gone (answer 430 Flow Failed).
    #[error("flow is gone")]
    Gone,
    /// The connection's queue is full: the peer does not read.
    #[error("flow write queue full")]
    Congested,
}

/// All stream flows of this LB, sharded by connection id, plus counts.
pub struct FlowTable {
    shards: Vec<Mutex<HashMap<u64, StreamFlow>>>,
    next_conn: AtomicU64,
    counts: [AtomicU64; 3],
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("counts", &self.counts())
            .finish()
    }
}

impl Default for FlowTable {
    fn default() -> Self {
        Self::new()
    }
}

impl FlowTable {
    /// An empty table.
    pub fn new() -> Self {
        FlowTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            // Connection ids start at a random point so ids from before a
            // restart do not resolve to a new, unrelated connection.
            next_conn: AtomicU64::new(rand::random::<u32>() as u64 * 4096 + 1),
            counts: Default::default(),
        }
    }

    fn shard(&self, conn: u64) -> &Mutex<HashMap<u64, StreamFlow>> {
        &self.shards[(conn as usize) % SHARDS]
    }

    /// Registers a new stream connection; the guard removes it when dropped.
    pub fn register(
        self: &Arc<Self>,
        transport: FlowTransport,
        peer: SocketAddr,
        listener: u16,
        tx: mpsc::Sender<Outbound>,
    ) -> FlowGuard {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        lock(self.shard(conn)).insert(
            conn,
            StreamFlow {
                peer,
                transport,
                tx,
            },
        );
        self.counts[transport.index()].fetch_add(1, Ordering::Relaxed);
        FlowGuard {
            table: Arc::clone(self),
            id: FlowId {
                transport,
                conn,
                peer,
                listener,
            },
        }
    }

    /// UDP flows opened and closed, as the workers' `UdpPeers` saw them
    /// (UDP flows are counted here, not stored).
    pub fn count_udp(&self, opened: usize, closed: usize) {
        let c = &self.counts[FlowTransport::Udp.index()];
        c.fetch_add(opened as u64, Ordering::Relaxed);
        c.fetch_sub(closed as u64, Ordering::Relaxed);
    }

    /// Open flows of `transport`.
    pub fn count(&self, transport: FlowTransport) -> u64 {
        self.counts[transport.index()].load(Ordering::Relaxed)
    }

    /// (udp, tcp, tls) counts of open flows.
    pub fn counts(&self) -> [u64; 3] {
        [
            self.count(FlowTransport::Udp),
            self.count(FlowTransport::Tcp),
            self.count(FlowTransport::Tls),
        ]
    }

    /// Queues `msg` on the stream flow `id`; the peer address must match,
    /// so a stale id never reaches a different connection.
    pub fn send(&self, id: &FlowId, msg: Outbound) -> Result<(), FlowError> {
        let shard = lock(self.shard(id.conn));
        let flow = shard.get(&id.conn).ok_or(FlowError::Gone)?;
        if flow.peer != id.peer || flow.transport != id.transport {
            return Err(FlowError::Gone);
        }
        flow.tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => FlowError::Congested,
            mpsc::error::TrySendError::Closed(_) => FlowError::Gone,
        })
    }

    /// True when the stream flow is still open.
    pub fn is_open(&self, id: &FlowId) -> bool {
        lock(self.shard(id.conn))
            .get(&id.conn)
            .is_some_and(|f| f.peer == id.peer && !f.tx.is_closed())
    }

    fn remove(&self, id: &FlowId) {
        if lock(self.shard(id.conn)).remove(&id.conn).is_some() {
            self.counts[id.transport.index()].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Removes its flow from the table when the connection task ends.
#[derive(Debug)]
pub struct FlowGuard {
    table: Arc<FlowTable>,
    id: FlowId,
}

impl FlowGuard {
    /// The flow's id.
    pub fn id(&self) -> FlowId {
        self.id
    }
}

impl Drop for FlowGuard {
    fn drop(&mut self) {
        self.table.remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this short lock cannot leave the map
    // inconsistent (single insert/remove), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn register_send_and_drop() {
        let table = Arc::new(FlowTable::new());
        let (tx, mut rx) = mpsc::channel(4);
        let peer: SocketAddr = "127.0.0.1:4000".parse().expect("literal");
        let guard = table.register(FlowTransport::Tcp, peer, 0, tx);
        let id = guard.id();
        assert_eq!(table.counts(), [0, 1, 0]);
        table
            .send(&id, Outbound::Message(Bytes::from_static(b"x")))
            .expect("open flow");
        assert!(matches!(rx.recv().await, Some(Outbound::Message(_))));
        let mut wrong = id;
        wrong.peer = "127.0.0.1:4001".parse().expect("literal");
        assert_eq!(table.send(&wrong, Outbound::Close), Err(FlowError::Gone));
        drop(guard);
        assert_eq!(table.counts(), [0, 0, 0]);
        assert_eq!(table.send(&id, Outbound::Close), Err(FlowError::Gone));
    }

    #[tokio::test]
    async fn full_queue_is_congestion() {
        let table = Arc::new(FlowTable::new());
        let (tx, _rx) = mpsc::channel(1);
        let peer: SocketAddr = "[::1]:4000".parse().expect("literal");
        let g = table.register(FlowTransport::Tls, peer, 0, tx);
        table.send(&g.id(), Outbound::Close).expect("first fits");
        assert_eq!(
            table.send(&g.id(), Outbound::Close),
            Err(FlowError::Congested)
        );
    }
}
