//! Binding sockets the way every sipedge binary wants them: the caller binds
//! (port 0 in tests) and hands the sockets to `run`, so tests and production
//! run the same code.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Socket buffer size asked for on SIP UDP sockets; the kernel caps it at
/// `net.core.rmem_max`, which bursts of SIPp traffic easily exceed.
pub const UDP_BUFFER: usize = 4 << 20;

/// Binds `count` UDP sockets to `addr` with `SO_REUSEPORT`, one per worker,
/// so the kernel spreads datagrams over them by 4-tuple hash. With port 0
/// the first socket picks the port and the others join it.
pub fn bind_udp_group(addr: SocketAddr, count: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let mut out = Vec::with_capacity(count.max(1));
    let mut bound = addr;
    for _ in 0..count.max(1) {
        let s = udp_socket(bound, true)?;
        bound = s.local_addr()?;
        out.push(s);
    }
    Ok(out)
}

/// Binds one UDP socket (no port sharing), non-blocking.
pub fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    udp_socket(addr, false)
}

fn udp_socket(addr: SocketAddr, reuseport: bool) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    #[cfg(unix)]
    if reuseport {
        s.set_reuse_port(true)?;
    }
    // Larger buffers absorb bursts; failure to enlarge is not fatal.
    let _ = s.set_recv_buffer_size(UDP_BUFFER);
    let _ = s.set_send_buffer_size(UDP_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Binds a TCP listener with `SO_REUSEADDR` (fast restarts), non-blocking.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nodelay(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_group_shares_one_port() {
        let group = bind_udp_group("127.0.0.1:0".parse().expect("literal"), 3).expect("bind");
        let ports: Vec<u16> = group
            .iter()
            .map(|s| s.local_addr().expect("bound").port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0));
    }

    #[test]
    fn tcp_and_v6() {
        let l = bind_tcp("127.0.0.1:0".parse().expect("literal")).expect("bind");
        assert_ne!(l.local_addr().expect("bound").port(), 0);
        // IPv6 loopback may be absent in some sandboxes; only check when it binds.
        if let Ok(s) = bind_udp("[::1]:0".parse().expect("literal")) {
            assert!(s.local_addr().expect("bound").is_ipv6());
        }
    }
}
