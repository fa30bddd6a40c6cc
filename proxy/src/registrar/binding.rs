//! One registration binding (RFC 3261 §10, RFC 3327 Path, RFC 5626
//! instance/reg-id) and the q-value type it carries.
//!
//! ```text
//! RFC 3261 §20.10 / §25.1:
//!   qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
//! RFC 3261 §10.3 step 6: [...] The binding for a contact is identified by
//! its URI, compared with the rules of §19.1.4.
//! RFC 5626 §6: [...] the registrar MUST ... treat the combination of the
//! AOR, instance-id and reg-id as the key of the binding; a new REGISTER
//! with the same key replaces the old flow.
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

/// A q-value in per-mille (0..=1000), parsed exactly per the RFC grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Q(u16);

/// Why a q-value string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid q-value `{0}` (want 0, 0.5, 1.000 …)")]
pub struct QError(pub String);

impl Q {
    /// q = 1.
    pub const ONE: Q = Q(1000);

    /// From per-mille; `None` above 1000.
    pub fn from_per_mille(v: u16) -> Option<Q> {
        (v <= 1000).then_some(Q(v))
    }

    /// The value in per-mille.
    pub fn per_mille(self) -> u16 {
        self.0
    }

    /// Parses `0`, `0.7`, `0.125`, `1`, `1.0`, `1.000`.
    pub fn parse(s: &str) -> Result<Q, QError> {
        let err = || QError(s.to_owned());
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        // Right-pad the fraction to three digits: "7" → 700.
        let mut milli = 0u16;
        for (i, b) in frac.bytes().enumerate() {
            milli += u16::from(b - b'0') * [100, 10, 1][i];
        }
        match int {
            "0" => Ok(Q(milli)),
            "1" if milli == 0 => Ok(Q(1000)),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for Q {
    /// Shortest RFC form: `1`, `0`, `0.5`, `0.125`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1000 => f.write_str("1"),
            0 => f.write_str("0"),
            v => {
                let s = format!("{v:03}");
                write!(f, "0.{}", s.trim_end_matches('0'))
            }
        }
    }
}

/// A stored binding of an address of record to a contact.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The address of record (normalised by the caller).
    pub aor: String,
    /// The contact URI as received.
    pub contact: String,
    /// The q-value, if the contact had one.
    pub q: Option<Q>,
    /// When the binding lapses.
    pub expires_at: Instant,
    /// When the REGISTER that last wrote it was accepted (for a replica:
    /// reconstructed from the age the peer reported). Orders bindings with
    /// different Call-IDs (see `churn::replicas::is_newer`).
    pub registered_at: Instant,
    /// Call-ID of the REGISTER that last wrote it.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// The Path header URIs of that REGISTER, in order (RFC 3327).
    pub path: Vec<String>,
    /// The source address the REGISTER came from.
    pub received: Option<SocketAddr>,
    /// `+sip.instance` (RFC 5626), as received (e.g. `<urn:uuid:…>`).
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626).
    pub reg_id: Option<u32>,
    /// The User-Agent header, for operators.
    pub user_agent: Option<String>,
}

/// What identifies a binding within its AOR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingId<'a> {
    /// RFC 5626 flow: instance + reg-id.
    Flow(&'a str, u32),
    /// Plain RFC 3261: the contact URI.
    Contact(&'a str),
}

impl Binding {
    /// The identity of this binding (RFC 5626 flow if both instance and
    /// reg-id are present, else the contact URI).
    pub fn id(&self) -> BindingId<'_> {
        binding_id(&self.contact, self.instance.as_deref(), self.reg_id)
    }

    /// The q-value used to order targets; a contact without q counts as 1.
    pub fn effective_q(&self) -> Q {
        self.q.unwrap_or(Q::ONE)
    }

    /// Seconds left, rounded up (what the 200 OK echoes in `expires=`).
    pub fn remaining_secs(&self, now: Instant) -> u32 {
        let left = self.expires_at.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// True when the binding has lapsed at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at <= now
    }
}

/// The identity of a would-be binding (see [`Binding::id`]).
pub fn binding_id<'a>(
    contact: &'a str,
    instance: Option<&'a str>,
    reg_id: Option<u32>,
) -> BindingId<'a> {
    match (instance, reg_id) {
        (Some(i), Some(r)) => BindingId::Flow(i, r),
        _ => BindingId::Contact(contact),
    }
}

impl BindingId<'_> {
    /// Whether two identities name the same binding. Contact URIs are compared
    /// with a simplified §19.1.4: scheme and host part case-insensitively,
    /// user part exactly; parameters are compared as written (the caller may
    /// pass a normalised URI for a full comparison).
    pub fn same(&self, other: &BindingId<'_>) -> bool {
        match (self, other) {
            (BindingId::Flow(i1, r1), BindingId::Flow(i2, r2)) => i1 == i2 && r1 == r2,
            (BindingId::Contact(a), BindingId::Contact(b)) => uri_eq(a, b),
            _ => false,
        }
    }
}

/// Simplified SIP URI equality (see [`BindingId::same`]).
pub fn uri_eq(a: &str, b: &str) -> bool {
    let split = |u: &str| -> (String, String, String) {
        let (scheme, rest) = u.split_once(':').unwrap_or(("", u));
        let (user, host) = match rest.rsplit_once('@') {
            Some((user, host)) => (user.to_owned(), host),
            None => (String::new(), rest),
        };
        (scheme.to_ascii_lowercase(), user, host.to_ascii_lowercase())
    };
    split(a) == split(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_parse_and_print() {
        let ok = [
            ("0", 0),
            ("0.", 0),
            ("0.7", 700),
            ("0.05", 50),
            ("0.125", 125),
            ("1", 1000),
            ("1.000", 1000),
            ("1.", 1000),
        ];
        for (s, want) in ok {
            let q = Q::parse(s).expect(s);
            assert_eq!(q.per_mille(), want, "{s}");
        }
        for bad in [
            "", "2", "1.5", "0.1234", "-0", "0.x", ".5", "01", "1.001", "0,5",
        ] {
            assert!(Q::parse(bad).is_err(), "{bad}");
        }
        for (v, s) in [
            (1000, "1"),
            (0, "0"),
            (500, "0.5"),
            (125, "0.125"),
            (50, "0.05"),
        ] {
            assert_eq!(Q::from_per_mille(v).expect("in range").to_string(), s);
        }
        assert_eq!(Q::from_per_mille(1001), None);
    }

    #[test]
    fn identity_table() {
        let table = [
            (("sip:a@h", None, None), ("sip:a@h", None, None), true),
            (
                ("sip:a@Host.Example", None, None),
                ("SIP:a@host.example", None, None),
                true,
            ),
            (("sip:A@h", None, None), ("sip:a@h", None, None), false),
            (
                ("sip:a@h", Some("<urn:uuid:1>"), Some(1)),
                ("sip:b@other", Some("<urn:uuid:1>"), Some(1)),
                true,
            ),
            (
                ("sip:a@h", Some("<urn:uuid:1>"), Some(1)),
                ("sip:a@h", Some("<urn:uuid:1>"), Some(2)),
                false,
            ),
            // Instance without reg-id: plain contact matching.
            (
                ("sip:a@h", Some("<urn:uuid:1>"), None),
                ("sip:a@h", None, None),
                true,
            ),
        ];
        for ((c1, i1, r1), (c2, i2, r2), want) in table {
            assert_eq!(
                binding_id(c1, i1, r1).same(&binding_id(c2, i2, r2)),
                want,
                "{c1} {c2}"
            );
        }
    }

    #[test]
    fn remaining_rounds_up() {
        let now = Instant::now();
        let mut b = Binding {
            aor: "a".into(),
            contact: "sip:a@h".into(),
            q: None,
            expires_at: now + std::time::Duration::from_millis(1500),
            registered_at: now,
            call_id: "c".into(),
            cseq: 1,
            path: vec![],
            received: None,
            instance: None,
            reg_id: None,
            user_agent: None,
        };
        assert_eq!(b.remaining_secs(now), 2);
        b.expires_at = now;
        assert_eq!(b.remaining_secs(now), 0);
        assert!(b.is_expired(now));
        assert_eq!(b.effective_q(), Q::ONE);
    }
}
