//! HMAC-signed flow tokens (RFC 5626 §5.2) and signed URI parameters: what
//! the LB puts in Path and Record-Route so any LB can find (and trust) a flow.
//!
//! ```text
//! RFC 5626 §5.2: ... the edge proxy can ... encode the flow identifier
//!    in the Path header field value ... The flow token MUST be
//!    protected against modification; this can be done by signing it
//!    with an HMAC (using a key known to the edge proxy).
//! ```
//!
//! Wire layout (then HMAC-SHA256 over `"sipedge-flow-v1" || payload`,
//! truncated to [`FLOW_MAC_LEN`] bytes, appended; all base64url, no padding):
//!
//! ```text
//! byte 0      bits 0-2 transport (0 UDP, 1 TCP, 2 TLS, 3 WS, 4 WSS)
//!             bit 3 peer is IPv6, bit 4 listener index present,
//!             bits 5-7 version (0)
//! 2 bytes     LB id, big endian
//! 8 bytes     connection id, big endian (absent for UDP: always 0)
//! 4/16 bytes  peer IP, 2 bytes peer port
//! 1 byte      listener index (only when bit 4 is set)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the truncated HMAC in a flow token.
pub const FLOW_MAC_LEN: usize = 10;
/// Bytes of the truncated HMAC in [`sign_params`].
pub const PARAMS_MAC_LEN: usize = 12;
/// The shortest secret accepted for a [`FlowKey`].
pub const MIN_SECRET_LEN: usize = 16;

const FLOW_DOMAIN: &[u8] = b"sipedge-flow-v1";
const PARAMS_DOMAIN: &[u8] = b"sipedge-params-v1";

/// Errors building keys and tokens, and decoding tokens or signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowTokenError {
    /// A key secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("flow key must be at least {MIN_SECRET_LEN} bytes, got {0}")]
    KeyTooShort(usize),
    /// A key secret string is neither hex nor base64.
    #[error("flow key is neither hex nor base64")]
    KeyEncoding,
    /// The token is not valid base64url (no padding).
    #[error("flow token is not base64url")]
    BadBase64,
    /// The decoded token has a length no layout produces.
    #[error("flow token has a bad length ({0} bytes)")]
    BadLength(usize),
    /// The MAC does not verify under any configured key.
    #[error("flow token signature does not verify")]
    BadMac,
    /// The MAC verified but the payload is not a valid flow (unknown version
    /// or transport); only possible with a key shared with other software.
    #[error("flow token payload is malformed")]
    BadPayload,
    /// A UDP flow was given a non-zero connection id.
    #[error("a UDP flow has no connection id")]
    UdpConnId,
}

/// A shared flow-signing key. All LBs hold the same keys (from config, never
/// random at start). Debug output never shows the secret.
#[derive(Clone)]
pub struct FlowKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowKey(..)")
    }
}

impl FlowKey {
    /// A key from raw secret bytes (at least [`MIN_SECRET_LEN`]).
    pub fn from_secret(secret: &[u8]) -> Result<Self, FlowTokenError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(FlowTokenError::KeyTooShort(secret.len()));
        }
        let mac = HmacSha256::new_from_slice(secret)
            .map_err(|_| FlowTokenError::KeyTooShort(secret.len()))?;
        Ok(FlowKey { mac })
    }

    /// A key from its config text: `hex:…`, `base64:…`, or unprefixed, which
    /// is read as hex when it is all hex digits of even length, else base64
    /// (standard or URL alphabet, padding optional).
    pub fn parse_secret(text: &str) -> Result<Self, FlowTokenError> {
        let t = text.trim();
        let bytes = if let Some(h) = t.strip_prefix("hex:") {
            decode_hex(h).ok_or(FlowTokenError::KeyEncoding)?
        } else if let Some(b) = t.strip_prefix("base64:") {
            decode_b64_any(b).ok_or(FlowTokenError::KeyEncoding)?
        } else if let Some(h) = decode_hex(t) {
            h
        } else {
            decode_b64_any(t).ok_or(FlowTokenError::KeyEncoding)?
        };
        Self::from_secret(&bytes)
    }

    fn tag(&self, domain: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(domain);
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    fn verify(&self, domain: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut m = self.mac.clone();
        m.update(domain);
        for p in parts {
            m.update(p);
        }
        // Constant-time comparison of the leftmost tag.len() bytes.
        m.verify_truncated_left(tag).is_ok()
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() & 1 == 1 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn decode_b64_any(s: &str) -> Option<Vec<u8>> {
    let unpadded = s.trim_end_matches('=');
    STANDARD_NO_PAD
        .decode(unpadded)
        .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
        .or_else(|_| STANDARD.decode(s))
        .ok()
}

/// The transport of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: the flow is the 5-tuple.
    Udp,
    /// TCP connection.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket (RFC 7118).
    Ws,
    /// Secure WebSocket.
    Wss,
}

impl Transport {
    /// Every transport, in wire-code order.
    pub const ALL: [Transport; 5] = [
        Transport::Udp,
        Transport::Tcp,
        Transport::Tls,
        Transport::Ws,
        Transport::Wss,
    ];

    fn code(self) -> u8 {
        match self {
            Transport::Udp => 0,
            Transport::Tcp => 1,
            Transport::Tls => 2,
            Transport::Ws => 3,
            Transport::Wss => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Self::ALL.get(usize::from(c)).copied()
    }

    /// Lower-case name, as used in metrics labels and `/v1/flows`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }
}

/// A flow, as named in a token. Only constructible valid: by [`FlowToken::new`]
/// or by [`FlowToken::decode`] after the MAC verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowToken {
    lb_id: u16,
    transport: Transport,
    conn_id: u64,
    peer: SocketAddr,
    local: Option<u8>,
}

/// Longest payload: flags, LB id, conn id, IPv6, port, listener index.
const MAX_PAYLOAD: usize = 1 + 2 + 8 + 16 + 2 + 1;

impl FlowToken {
    /// A flow on LB `lb_id`. `conn_id` must be 0 for UDP (the peer address is
    /// the flow); `local` is the listener index, when the LB has several.
    pub fn new(
        lb_id: u16,
        transport: Transport,
        conn_id: u64,
        peer: SocketAddr,
        local: Option<u8>,
    ) -> Result<Self, FlowTokenError> {
        if transport == Transport::Udp && conn_id != 0 {
            return Err(FlowTokenError::UdpConnId);
        }
        Ok(FlowToken {
            lb_id,
            transport,
            conn_id,
            peer,
            local,
        })
    }

    /// The LB that holds the flow.
    pub fn lb_id(&self) -> u16 {
        self.lb_id
    }
    /// The flow's transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }
    /// The LB's connection id (0 for UDP).
    pub fn conn_id(&self) -> u64 {
        self.conn_id
    }
    /// The remote address of the flow.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
    /// The listener index on the LB, if recorded.
    pub fn local(&self) -> Option<u8> {
        self.local
    }

    fn payload(&self, buf: &mut [u8; MAX_PAYLOAD]) -> usize {
        let mut flags = self.transport.code();
        if self.peer.is_ipv6() {
            flags |= 1 << 3;
        }
        if self.local.is_some() {
            flags |= 1 << 4;
        }
        let mut n = 0;
        let mut put = |bytes: &[u8]| {
            buf[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        };
        put(&[flags]);
        put(&self.lb_id.to_be_bytes());
        if self.transport != Transport::Udp {
            put(&self.conn_id.to_be_bytes());
        }
        match self.peer.ip() {
            IpAddr::V4(a) => put(&a.octets()),
            IpAddr::V6(a) => put(&a.octets()),
        }
        put(&self.peer.port().to_be_bytes());
        if let Some(l) = self.local {
            put(&[l]);
        }
        n
    }

    /// The URI-safe token (base64url, no padding), signed with `key`.
    pub fn encode(&self, key: &FlowKey) -> String {
        let mut buf = [0u8; MAX_PAYLOAD + FLOW_MAC_LEN];
        let mut payload = [0u8; MAX_PAYLOAD];
        let n = self.payload(&mut payload);
        let tag = key.tag(FLOW_DOMAIN, &[&payload[..n]]);
        buf[..n].copy_from_slice(&payload[..n]);
        buf[n..n + FLOW_MAC_LEN].copy_from_slice(&tag[..FLOW_MAC_LEN]);
        URL_SAFE_NO_PAD.encode(&buf[..n + FLOW_MAC_LEN])
    }

    /// Decodes and verifies a token under any of `keys` (rotation: the first
    /// key signs, every key verifies).
    pub fn decode(token: &str, keys: &[FlowKey]) -> Result<FlowToken, FlowTokenError> {
        const MAX_B64: usize = (MAX_PAYLOAD + FLOW_MAC_LEN) * 4 / 3 + 4;
        if token.len() > MAX_B64 {
            return Err(FlowTokenError::BadLength(token.len() * 3 / 4));
        }
        let mut raw = [0u8; MAX_B64];
        let len = URL_SAFE_NO_PAD
            .decode_slice(token.as_bytes(), &mut raw)
            .map_err(|_| FlowTokenError::BadBase64)?;
        let raw = &raw[..len];
        let Some(&flags) = raw.first() else {
            return Err(FlowTokenError::BadLength(len));
        };
        let transport = Transport::from_code(flags & 0b111);
        let ip_len = if flags & (1 << 3) != 0 { 16 } else { 4 };
        let has_local = flags & (1 << 4) != 0;
        let conn_len = if transport == Some(Transport::Udp) {
            0
        } else {
            8
        };
        let want = 1 + 2 + conn_len + ip_len + 2 + usize::from(has_local) + FLOW_MAC_LEN;
        if len != want {
            return Err(FlowTokenError::BadLength(len));
        }
        let (payload, tag) = raw.split_at(len - FLOW_MAC_LEN);
        if !keys.iter().any(|k| k.verify(FLOW_DOMAIN, &[payload], tag)) {
            return Err(FlowTokenError::BadMac);
        }
        // Authentic from here on; still checked, never trusted to be in range.
        let transport = transport.ok_or(FlowTokenError::BadPayload)?;
        if flags >> 5 != 0 {
            return Err(FlowTokenError::BadPayload);
        }
        let mut r = Reader(&payload[1..]);
        let lb_id = u16::from_be_bytes(r.take()?);
        let conn_id = if conn_len == 8 {
            u64::from_be_bytes(r.take()?)
        } else {
            0
        };
        let ip = if ip_len == 16 {
            IpAddr::V6(Ipv6Addr::from(r.take::<16>()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(r.take::<4>()?))
        };
        let port = u16::from_be_bytes(r.take()?);
        let local = if has_local {
            Some(r.take::<1>()?[0])
        } else {
            None
        };
        FlowToken::new(lb_id, transport, conn_id, SocketAddr::new(ip, port), local)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], FlowTokenError> {
        let head = self.0.get(..N).ok_or(FlowTokenError::BadPayload)?;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        self.0 = &self.0[N..];
        Ok(out)
    }
}

fn length_prefixed(fields: &[&[u8]]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(fields.iter().map(|f| f.len() + 4).sum());
    for f in fields {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(f);
    }
    buf
}

/// Signs what a Record-Route asserts (e.g. chosen proxy id and flow token):
/// HMAC-SHA256 over the length-prefixed `fields`, truncated to
/// [`PARAMS_MAC_LEN`] bytes, base64url without padding (16 characters).
pub fn sign_params(key: &FlowKey, fields: &[&[u8]]) -> String {
    let tag = key.tag(PARAMS_DOMAIN, &[&length_prefixed(fields)]);
    URL_SAFE_NO_PAD.encode(&tag[..PARAMS_MAC_LEN])
}

/// Verifies a [`sign_params`] signature under any of `keys`.
pub fn verify_params(keys: &[FlowKey], fields: &[&[u8]], sig: &str) -> Result<(), FlowTokenError> {
    let mut tag = [0u8; PARAMS_MAC_LEN + 3];
    let n = URL_SAFE_NO_PAD
        .decode_slice(sig.as_bytes(), &mut tag)
        .map_err(|_| FlowTokenError::BadBase64)?;
    if n != PARAMS_MAC_LEN {
        return Err(FlowTokenError::BadLength(n));
    }
    let data = length_prefixed(fields);
    if keys
        .iter()
        .any(|k| k.verify(PARAMS_DOMAIN, &[&data], &tag[..n]))
    {
        Ok(())
    } else {
        Err(FlowTokenError::BadMac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> FlowKey {
        FlowKey::from_secret(&[b; 32]).expect("32 bytes")
    }

    fn samples() -> Vec<FlowToken> {
        let mut v = Vec::new();
        let peers: [SocketAddr; 3] = [
            "192.0.2.7:5060".parse().expect("addr"),
            "[2001:db8::1]:61000".parse().expect("addr"),
            "[::ffff:10.0.0.1]:1".parse().expect("addr"),
        ];
        for t in Transport::ALL {
            for peer in peers {
                for local in [None, Some(0), Some(255)] {
                    let conn = if t == Transport::Udp { 0 } else { u64::MAX - 7 };
                    v.push(FlowToken::new(7, t, conn, peer, local).expect("valid"));
                }
            }
        }
        v
    }

    #[test]
    fn round_trip_every_transport_and_family() {
        let k = key(1);
        for t in samples() {
            let s = t.encode(&k);
            assert!(s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(
                FlowToken::decode(&s, std::slice::from_ref(&k)),
                Ok(t),
                "{s}"
            );
        }
    }

    #[test]
    fn token_lengths_stay_short() {
        let k = key(1);
        let cases = [
            (Transport::Udp, "192.0.2.7:5060", 26),
            (Transport::Tcp, "192.0.2.7:5060", 36),
            (Transport::Tls, "[2001:db8::1]:5061", 52),
        ];
        for (t, peer, want) in cases {
            let conn = u64::from(t != Transport::Udp) * 42;
            let tok = FlowToken::new(1, t, conn, peer.parse().expect("addr"), None)
                .expect("valid")
                .encode(&k);
            println!("{t:?} {peer}: {} chars {tok}", tok.len());
            assert_eq!(tok.len(), want, "{tok}");
        }
    }

    #[test]
    fn tampering_any_byte_fails() {
        let k = [key(1)];
        for t in samples().into_iter().step_by(5) {
            let raw = URL_SAFE_NO_PAD.decode(t.encode(&k[0])).expect("b64");
            for i in 0..raw.len() {
                for bit in [0x01u8, 0x80] {
                    let mut bad = raw.clone();
                    bad[i] ^= bit;
                    let s = URL_SAFE_NO_PAD.encode(&bad);
                    let err = FlowToken::decode(&s, &k).expect_err("tampered");
                    assert!(
                        matches!(err, FlowTokenError::BadMac | FlowTokenError::BadLength(_)),
                        "byte {i}: {err:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn keys_and_rotation() {
        let (old, new) = (key(1), key(2));
        let t = samples()[4];
        let s = t.encode(&old);
        assert_eq!(
            FlowToken::decode(&s, std::slice::from_ref(&new)),
            Err(FlowTokenError::BadMac)
        );
        assert_eq!(FlowToken::decode(&s, &[new.clone(), old.clone()]), Ok(t));
        assert_eq!(FlowToken::decode(&s, &[]), Err(FlowTokenError::BadMac));
    }

    #[test]
    fn distinct_errors() {
        let k = [key(1)];
        let cases: [(&str, FlowTokenError); 4] = [
            ("", FlowTokenError::BadLength(0)),
            ("a+b/", FlowTokenError::BadBase64),
            ("AAAA", FlowTokenError::BadLength(3)),
            (&"A".repeat(200), FlowTokenError::BadLength(150)),
        ];
        for (input, want) in cases {
            assert_eq!(FlowToken::decode(input, &k), Err(want), "{input}");
        }
        assert_eq!(
            FlowToken::new(
                1,
                Transport::Udp,
                5,
                "1.2.3.4:5".parse().expect("addr"),
                None
            ),
            Err(FlowTokenError::UdpConnId)
        );
    }

    #[test]
    fn secrets() {
        let cases: [(&str, Result<(), FlowTokenError>); 6] = [
            ("00112233445566778899aabbccddeeff", Ok(())),
            ("hex:00112233445566778899aabbccddeeff", Ok(())),
            ("base64:c2lwZWRnZS1kZW1vLWtleS0wMQ==", Ok(())),
            ("c2lwZWRnZS1kZW1vLWtleS0wMQ", Ok(())),
            ("0011", Err(FlowTokenError::KeyTooShort(2))),
            ("not base64 !!", Err(FlowTokenError::KeyEncoding)),
        ];
        for (input, want) in cases {
            assert_eq!(FlowKey::parse_secret(input).map(|_| ()), want, "{input}");
        }
        assert_eq!(format!("{:?}", key(9)), "FlowKey(..)");
    }

    #[test]
    fn params_sign_and_verify() {
        let (k, other) = (key(3), key(4));
        let sig = sign_params(&k, &[b"p2", b"TOKEN"]);
        assert_eq!(sig.len(), 16);
        let keys = [k.clone()];
        assert_eq!(verify_params(&keys, &[b"p2", b"TOKEN"], &sig), Ok(()));
        type Case<'a> = (&'a [&'a [u8]], &'a str, &'a [FlowKey]);
        let bad: [Case; 5] = [
            (&[b"p3", b"TOKEN"], &sig, &keys),
            (&[b"p2T", b"OKEN"], &sig, &keys),
            (&[b"p2", b"TOKEN"], &sig, std::slice::from_ref(&other)),
            (&[b"p2", b"TOKEN"], "short", &keys),
            (&[b"p2", b"TOKEN"], "!!!!", &keys),
        ];
        for (fields, s, ks) in bad {
            assert!(verify_params(ks, fields, s).is_err(), "{fields:?} {s}");
        }
    }

    proptest! {
        #[test]
        fn prop_round_trip(
            lb in any::<u16>(), t in 0u8..5, conn in any::<u64>(),
            v6 in any::<bool>(), ip in any::<u128>(), port in any::<u16>(),
            local in proptest::option::of(any::<u8>()), secret in proptest::collection::vec(any::<u8>(), 16..64),
        ) {
            let k = FlowKey::from_secret(&secret).expect("≥ 16 bytes");
            let transport = Transport::from_code(t).expect("0..5");
            let conn = if transport == Transport::Udp { 0 } else { conn };
            let ip = if v6 { IpAddr::V6(Ipv6Addr::from(ip)) } else { IpAddr::V4(Ipv4Addr::from(ip as u32)) };
            let tok = FlowToken::new(lb, transport, conn, SocketAddr::new(ip, port), local).expect("valid");
            prop_assert_eq!(FlowToken::decode(&tok.encode(&k), &[k]), Ok(tok));
        }

        #[test]
        fn prop_garbage_never_panics(s in "[A-Za-z0-9_+/=-]{0,80}") {
            let _ = FlowToken::decode(&s, &[key(1)]);
            let _ = verify_params(&[key(1)], &[b"x"], &s);
        }
    }
}
