//! STUN binding responses on the SIP UDP port (RFC 5626 §4.4.2, RFC 5389):
//! a UA behind NAT learns its public address and keeps the binding open.
//!
//! ```text
//! RFC 5626 §4.4.2: ... the UAC sends a STUN Binding request to the
//! server's SIP port ... The server MUST respond with a Binding response
//! containing XOR-MAPPED-ADDRESS.
//! ```

use std::net::{IpAddr, SocketAddr};

const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const XOR_MAPPED_ADDRESS: u16 = 0x0020;
const HEADER_LEN: usize = 20;

/// True when `buf` looks like a STUN message: the first two bits are zero
/// (never the case for a SIP start line) and the magic cookie is present.
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] & 0xC0 == 0 && buf[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// Builds the Binding success response to a Binding request from `peer`,
/// or `None` when `req` is not a well-formed Binding request.
pub fn binding_response(req: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
    if !is_stun(req) {
        return None;
    }
    let msg_type = u16::from_be_bytes([req[0], req[1]]);
    let msg_len = usize::from(u16::from_be_bytes([req[2], req[3]]));
    if msg_type != BINDING_REQUEST || req.len() != HEADER_LEN + msg_len || msg_len % 4 != 0 {
        return None;
    }
    let txn_id = &req[8..20];
    let port = peer.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let mut attr = Vec::with_capacity(20);
    match peer.ip() {
        IpAddr::V4(ip) => {
            attr.extend_from_slice(&[0, 0x01]);
            attr.extend_from_slice(&port.to_be_bytes());
            let x = u32::from(ip) ^ MAGIC_COOKIE;
            attr.extend_from_slice(&x.to_be_bytes());
        }
        IpAddr::V6(ip) => {
            attr.extend_from_slice(&[0, 0x02]);
            attr.extend_from_slice(&port.to_be_bytes());
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            mask[4..].copy_from_slice(txn_id);
            attr.extend(ip.octets().iter().zip(mask).map(|(a, m)| a ^ m));
        }
    }
    let mut out = Vec::with_capacity(HEADER_LEN + 4 + attr.len());
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    let body_len = u16::try_from(4 + attr.len()).ok()?;
    out.extend_from_slice(&body_len.to_be_bytes());
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(txn_id);
    out.extend_from_slice(&XOR_MAPPED_ADDRESS.to_be_bytes());
    out.extend_from_slice(&u16::try_from(attr.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&attr);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Vec<u8> {
        let mut r = vec![0x00, 0x01, 0x00, 0x00];
        r.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        r.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        r
    }

    #[test]
    fn answers_v4_binding_with_xor_mapped_address() {
        let peer: SocketAddr = "192.0.2.1:32853".parse().expect("literal");
        let resp = binding_response(&request(), peer).expect("binding request");
        assert_eq!(&resp[0..2], &[0x01, 0x01]);
        assert_eq!(&resp[8..20], &request()[8..20]);
        // RFC 5769 §2.2 style check: port 32853 ^ 0x2112 = 0xA147.
        assert_eq!(&resp[24..28], &[0x00, 0x01, 0xA1, 0x47]);
        assert_eq!(&resp[28..32], &[0xE1, 0x12, 0xA6, 0x43]);
    }

    #[test]
    fn answers_v6() {
        let peer: SocketAddr = "[2001:db8::1]:5060".parse().expect("literal");
        let resp = binding_response(&request(), peer).expect("binding request");
        assert_eq!(resp.len(), 20 + 4 + 20);
    }

    #[test]
    fn rejects_non_stun() {
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("literal");
        for bad in [
            &b"OPTIONS sip:a SIP/2.0\r\n\r\n"[..],
            &b""[..],
            &[0u8; 19][..],
            &request()[..19],
        ] {
            assert!(binding_response(bad, peer).is_none());
        }
        let mut not_binding = request();
        not_binding[1] = 0x11;
        assert!(binding_response(&not_binding, peer).is_none());
    }
}
