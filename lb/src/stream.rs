//! TCP and TLS flows: the accept loops (per-IP connection caps, handshake
//! timeout) and one task per connection that frames messages, hands them to
//! a worker, writes what the flow table queues for it, and keeps the flow
//! alive with double-CRLF pings (RFC 5626 §4.4.1).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sipedge_shared::sip::{FrameEvent, StreamFramer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::context::Shared;
use crate::flow::{FlowTransport, Outbound};
use crate::keepalive::{Keepalive, KeepaliveAction};
use crate::tls::TlsState;
use crate::worker::Worker;

/// Queue depth of a connection's writer.
const WRITE_QUEUE: usize = 256;

/// Accepts TCP (or, with `tls`, TLS) connections until `shutdown`.
pub async fn accept_loop(
    listener: TcpListener,
    listener_index: u16,
    tls: Option<TlsState>,
    shared: Arc<Shared>,
    workers: Arc<Vec<Arc<Worker>>>,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(permit) = shared.flood.admit_connection(peer.ip()) else {
            continue; // Over the per-IP cap: the drop closes it.
        };
        let _ = tcp.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let workers = Arc::clone(&workers);
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    serve(
                        tcp,
                        peer,
                        FlowTransport::Tcp,
                        listener_index,
                        shared,
                        workers,
                        shutdown,
                    )
                    .await
                }
                Some(tls) => {
                    let timeout = shared.settings.handshake_timeout;
                    let acceptor = tls.acceptor();
                    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            serve(
                                stream,
                                peer,
                                FlowTransport::Tls,
                                listener_index,
                                shared,
                                workers,
                                shutdown,
                            )
                            .await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves one connection until it closes, fails framing or is shut down.
pub async fn serve<S>(
    stream: S,
    peer: SocketAddr,
    transport: FlowTransport,
    listener_index: u16,
    shared: Arc<Shared>,
    workers: Arc<Vec<Arc<Worker>>>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel(WRITE_QUEUE);
    let guard = shared.flows.register(transport, peer, listener_index, tx);
    let flow = guard.id();
    let m = &shared.metrics;
    let gauge = match transport {
        FlowTransport::Tls => &m.flows[2],
        _ => &m.flows[1],
    };
    gauge.increment(1.0);
    let worker = match workers.get((flow.conn as usize) % workers.len().max(1)) {
        Some(w) => Arc::clone(w),
        None => return,
    };
    let s = &shared.settings;
    let mut ka = Keepalive::new(s.keepalive_interval, s.keepalive_max_missed, Instant::now());
    let mut framer = StreamFramer::new(s.limits);
    let mut sends = Vec::new();
    let (mut rd, mut wr) = tokio::io::split(stream);
    'conn: loop {
        let wake = match ka.poll(Instant::now()) {
            KeepaliveAction::Wait(t) => t,
            KeepaliveAction::Ping => {
                m.pings.increment(1);
                if wr.write_all(b"\r\n\r\n").await.is_err() {
                    break;
                }
                continue;
            }
            KeepaliveAction::Close => {
                m.keepalive_timeouts.increment(1);
                break;
            }
        };
        framer.buffer_mut().reserve(4096);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(wake.into()) => {}
            r = rd.read_buf(framer.buffer_mut()) => {
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => ka.on_activity(Instant::now()),
                }
                while let Some(ev) = framer.next() {
                    match ev {
                        Ok(FrameEvent::Message(msg)) => {
                            worker.external(msg, flow, &mut sends);
                        }
                        Ok(FrameEvent::Ping) => {
                            m.client_pings.increment(1);
                            if wr.write_all(b"\r\n").await.is_err() {
                                break 'conn;
                            }
                        }
                        Ok(FrameEvent::Pong) => {
                            m.pongs.increment(1);
                            ka.on_pong(Instant::now());
                        }
                        Err(e) => {
                            // Framing is lost: answer what we can, then close.
                            let carrier = shared.carriers.lookup_index(peer.ip());
                            m.carrier(carrier).bad_messages.increment(1);
                            tracing::debug!(%peer, error = %e, "stream framing lost");
                            let _ = wr.write_all(&bad_stream_response(e.status(), &e.reason())).await;
                            break 'conn;
                        }
                    }
                }
            }
            out = rx.recv() => match out {
                Some(Outbound::Message(bytes)) => {
                    if wr.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Some(Outbound::Close) | None => break,
            },
        }
    }
    let _ = wr.shutdown().await;
    gauge.decrement(1.0);
    drop(guard);
}

/// A response for a stream whose framing is lost. Without a parsed request
/// there are no Via/Call-ID to copy, so it is minimal; the connection closes
/// right after it.
fn bad_stream_response(status: u16, reason: &str) -> Vec<u8> {
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    format!("SIP/2.0 {status} {reason}\r\nContent-Length: 0\r\n\r\n").into_bytes()
}
