//! `Method`: the SIP request methods we know by name; any other token is
//! `Method::Other` and its text stays in the message (no allocation).
//!
//! ```text
//! RFC 3261 §25.1  Method = INVITEm / ACKm / OPTIONSm / BYEm / CANCELm / REGISTERm
//!                          / extension-method
//!                 extension-method = token      (methods are case-sensitive)
//! ```

/// A SIP request method. `Other` is any valid extension token; compare those by
/// the text kept in the message ([`crate::sip::Message::method_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE (RFC 3261)
    Invite,
    /// ACK (RFC 3261)
    Ack,
    /// BYE (RFC 3261)
    Bye,
    /// CANCEL (RFC 3261)
    Cancel,
    /// REGISTER (RFC 3261)
    Register,
    /// OPTIONS (RFC 3261)
    Options,
    /// INFO (RFC 6086)
    Info,
    /// UPDATE (RFC 3311)
    Update,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// PUBLISH (RFC 3903)
    Publish,
    /// Any other extension method.
    Other,
}

impl Method {
    /// Classify a method token (case-sensitive, RFC 3261 §7.1). Does not check
    /// that `b` is a valid token; see [`is_token`].
    pub fn parse(b: &[u8]) -> Method {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            _ => Method::Other,
        }
    }

    /// The canonical name; `Other` has none here (use the message's raw text).
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other => "",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 3261 §25.1 `token` characters (for building tables at compile time).
pub(crate) const fn is_token_byte_const(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// RFC 3261 §25.1 `token` characters, as a table: the head scanner tests every
/// header-name byte, and one load beats the chain of range tests.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = is_token_byte_const(i as u8);
        i += 1;
    }
    t
};

/// RFC 3261 §25.1 `token` characters.
pub fn is_token_byte(c: u8) -> bool {
    TOKEN[usize::from(c)]
}

/// Is `b` a non-empty RFC 3261 token?
pub fn is_token(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|&c| is_token_byte(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let table: &[(&[u8], Method)] = &[
            (b"INVITE", Method::Invite),
            (b"invite", Method::Other),
            (b"REGISTER", Method::Register),
            (b"RE%47IST%45R", Method::Other),
            (b"PUBLISH", Method::Publish),
            (b"", Method::Other),
        ];
        for (b, m) in table {
            assert_eq!(Method::parse(b), *m, "{:?}", String::from_utf8_lossy(b));
            if *m != Method::Other {
                assert_eq!(m.as_str().as_bytes(), *b);
            }
        }
    }

    #[test]
    fn tokens() {
        assert!(is_token(b"!interesting-Method0123456789_*+`.%indeed'~"));
        assert!(!is_token(b""));
        assert!(!is_token(b"A B"));
        assert!(!is_token(b"A:B"));
    }
}
