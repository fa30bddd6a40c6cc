//! The JSON bodies proxies exchange over their admin servers, and the AOR
//! path segment encoding.
//!
//! ```text
//! PUT /v1/replicas/{aor}   Authorization: Bearer <peers.token>
//! {"origin":"p2","bindings":[{"contact":"sip:bob@192.0.2.7:5060","expires_in":3412,
//!   "age":188,"call_id":"…","cseq":2,"path":["sip:TOK@10.0.1.1;lr;ob"], …}]}
//! 204   401 bad token   400 malformed   (an empty list removes the replica)
//! GET /v1/bindings/{aor}   Authorization: Bearer <peers.token>
//! 200 {"proxy":"p1","bindings":[… same objects, "origin" on replicas …]}
//! ```
//!
//! Times travel as durations relative to "now" (`expires_in`, `age`), so the
//! proxies' clocks need not agree; only the transfer delay is lost.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::registrar::{Binding, Q};

/// Most bindings accepted in one body (an AOR holds at most
/// `registrar.max_contacts_per_aor`; this bounds what a peer can make us store).
pub const MAX_BINDINGS: usize = 64;

/// One binding on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireBinding {
    /// Contact URI.
    pub contact: String,
    /// q-value in per-mille.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<u16>,
    /// Seconds until it lapses.
    pub expires_in: u32,
    /// Seconds since the REGISTER that wrote it was accepted.
    #[serde(default)]
    pub age: u32,
    /// Call-ID of that REGISTER.
    pub call_id: String,
    /// Its CSeq number.
    pub cseq: u32,
    /// Path URIs (RFC 3327), in order.
    #[serde(default)]
    pub path: Vec<String>,
    /// Source of the REGISTER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<SocketAddr>,
    /// `+sip.instance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// `reg-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_id: Option<u32>,
    /// User-Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// On a lookup answer: the proxy the answering peer holds it for (absent:
    /// its own registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// `PUT /v1/replicas/{aor}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaBody {
    /// The sending proxy's id.
    pub origin: String,
    /// The AOR's whole binding set at the sender (empty: none left).
    pub bindings: Vec<WireBinding>,
}

/// `GET /v1/bindings/{aor}` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingsBody {
    /// The answering proxy's id.
    pub proxy: String,
    /// Its live bindings of the AOR, replicas included.
    pub bindings: Vec<WireBinding>,
}

/// Why a wire binding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// More than [`MAX_BINDINGS`].
    #[error("too many bindings ({0}, max {MAX_BINDINGS})")]
    TooMany(usize),
    /// An empty contact or Call-ID.
    #[error("binding {0}: empty contact or Call-ID")]
    Empty(usize),
    /// q above 1000.
    #[error("binding {0}: q must be 0..=1000 per mille")]
    BadQ(usize),
}

impl WireBinding {
    /// The wire form of `b` at `now` (`origin`: whose replica it is, if one).
    pub fn from_binding(b: &Binding, now: Instant, origin: Option<&str>) -> Self {
        let age = now.saturating_duration_since(b.registered_at).as_secs();
        WireBinding {
            contact: b.contact.clone(),
            q: b.q.map(Q::per_mille),
            expires_in: b.remaining_secs(now),
            age: u32::try_from(age).unwrap_or(u32::MAX),
            call_id: b.call_id.clone(),
            cseq: b.cseq,
            path: b.path.clone(),
            received: b.received,
            instance: b.instance.clone(),
            reg_id: b.reg_id,
            user_agent: b.user_agent.clone(),
            origin: origin.map(str::to_owned),
        }
    }

    /// The binding of `aor` this describes, timed from `now`.
    fn to_binding(&self, aor: &str, now: Instant, i: usize) -> Result<Binding, WireError> {
        if self.contact.is_empty() || self.call_id.is_empty() {
            return Err(WireError::Empty(i));
        }
        let q = match self.q {
            None => None,
            Some(v) => Some(Q::from_per_mille(v).ok_or(WireError::BadQ(i))?),
        };
        let age = Duration::from_secs(u64::from(self.age));
        Ok(Binding {
            aor: aor.to_owned(),
            contact: self.contact.clone(),
            q,
            expires_at: now + Duration::from_secs(u64::from(self.expires_in)),
            // An age older than this process's clock reaches: as old as we can say.
            registered_at: now.checked_sub(age).unwrap_or(now),
            call_id: self.call_id.clone(),
            cseq: self.cseq,
            path: self.path.clone(),
            received: self.received,
            instance: self.instance.clone(),
            reg_id: self.reg_id,
            user_agent: self.user_agent.clone(),
        })
    }
}

/// Decodes a received list for `aor` at `now`; already-lapsed entries are
/// left out.
pub fn decode(aor: &str, list: &[WireBinding], now: Instant) -> Result<Vec<Binding>, WireError> {
    if list.len() > MAX_BINDINGS {
        return Err(WireError::TooMany(list.len()));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, w) in list.iter().enumerate() {
        if w.expires_in > 0 {
            out.push(w.to_binding(aor, now, i)?);
        }
    }
    Ok(out)
}

/// Percent-encodes an AOR as one URL path segment (RFC 3986 unreserved
/// characters and `@` stay as they are).
pub fn encode_aor(aor: &str) -> String {
    let mut out = String::with_capacity(aor.len());
    for b in aor.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@' | b'+') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a path segment made by [`encode_aor`] (or any percent-encoding);
/// `None` for a bad escape or non-UTF-8 result.
pub fn decode_aor(segment: &str) -> Option<String> {
    let b = segment.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(now: Instant) -> Binding {
        Binding {
            aor: "bob@sipedge.local".into(),
            contact: "sip:bob@192.0.2.7:5060".into(),
            q: Q::from_per_mille(500),
            expires_at: now + Duration::from_secs(300),
            registered_at: now.checked_sub(Duration::from_secs(20)).unwrap_or(now),
            call_id: "c1".into(),
            cseq: 2,
            path: vec!["sip:TOK@10.0.1.1;lr;ob".into()],
            received: Some("10.0.1.1:5060".parse().expect("literal")),
            instance: Some("<urn:uuid:1>".into()),
            reg_id: Some(1),
            user_agent: Some("ua".into()),
        }
    }

    #[test]
    fn round_trip_keeps_everything_but_the_transfer_delay() {
        let now = Instant::now();
        let b = binding(now);
        let w = WireBinding::from_binding(&b, now, None);
        assert_eq!((w.expires_in, w.age, w.q), (300, 20, Some(500)));
        let json = serde_json::to_string(&w).expect("serialises");
        assert!(!json.contains("origin"), "{json}");
        let back: WireBinding = serde_json::from_str(&json).expect("parses");
        let later = now + Duration::from_secs(1);
        let got = decode(&b.aor, &[back], later).expect("valid");
        assert_eq!(got.len(), 1);
        let g = &got[0];
        assert_eq!(g.expires_at, later + Duration::from_secs(300));
        assert_eq!(g.remaining_secs(later), 300);
        assert_eq!(
            (g.contact.as_str(), g.cseq, &g.path),
            (b.contact.as_str(), 2, &b.path)
        );
        assert_eq!(
            (g.instance.clone(), g.reg_id, g.q),
            (b.instance.clone(), b.reg_id, b.q)
        );
    }

    #[test]
    fn decode_refuses_bad_entries_and_skips_lapsed_ones() {
        let now = Instant::now();
        let ok = WireBinding::from_binding(&binding(now), now, None);
        let lapsed = WireBinding {
            expires_in: 0,
            ..ok.clone()
        };
        // (list, Ok(kept) or Err)
        let table: Vec<(Vec<WireBinding>, Result<usize, WireError>)> = vec![
            (vec![ok.clone(), lapsed], Ok(1)),
            (vec![], Ok(0)),
            (
                vec![WireBinding {
                    contact: String::new(),
                    ..ok.clone()
                }],
                Err(WireError::Empty(0)),
            ),
            (
                vec![
                    ok.clone(),
                    WireBinding {
                        q: Some(1001),
                        ..ok.clone()
                    },
                ],
                Err(WireError::BadQ(1)),
            ),
            (
                vec![ok.clone(); MAX_BINDINGS + 1],
                Err(WireError::TooMany(65)),
            ),
        ];
        for (i, (list, want)) in table.into_iter().enumerate() {
            assert_eq!(decode("a@d", &list, now).map(|v| v.len()), want, "row {i}");
        }
    }

    #[test]
    fn aor_segments() {
        let table = [
            ("bob@sipedge.local", "bob@sipedge.local"),
            ("a b/c?d@x", "a%20b%2Fc%3Fd@x"),
            ("+4930123@d", "+4930123@d"),
            ("ü@d", "%C3%BC@d"),
        ];
        for (aor, seg) in table {
            assert_eq!(encode_aor(aor), seg);
            assert_eq!(decode_aor(seg).as_deref(), Some(aor));
        }
        for bad in ["%", "%zz", "%C3", ""] {
            assert_eq!(decode_aor(bad), None, "{bad}");
        }
    }
}
