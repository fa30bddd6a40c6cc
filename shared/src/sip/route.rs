//! Route, Record-Route and Path: comma-separated lists of name-addrs.
//!
//! ```text
//! RFC 3261 §20.34 Route        = "Route" HCOLON route-param *(COMMA route-param)
//!                 route-param  = name-addr *( SEMI rr-param )
//! RFC 3327 §4     Path         = "Path" HCOLON path-value *( COMMA path-value )
//! ```

use super::error::ParseError;
use super::message::Values;
use super::name_addr::NameAddr;

/// Iterator over the name-addr values of Route, Record-Route or Path headers.
#[derive(Debug, Clone)]
pub struct NameAddrs<'m> {
    values: Values<'m>,
    header: &'static str,
}

impl<'m> NameAddrs<'m> {
    pub(crate) fn new(values: Values<'m>, header: &'static str) -> Self {
        NameAddrs { values, header }
    }
}

impl<'m> Iterator for NameAddrs<'m> {
    type Item = Result<NameAddr<'m>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let v = self.values.next()?;
        let header = self.header;
        // RFC 3261 §20.34: route values are always name-addr (in angle brackets).
        Some(
            NameAddr::parse(v)
                .and_then(|na| {
                    if na.angle {
                        Ok(na)
                    } else {
                        Err(ParseError::BadHeader(header))
                    }
                })
                .map_err(|_| ParseError::BadHeader(header)),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::sip::{Limits, Message};

    #[test]
    fn routes_table() {
        let raw = b"INVITE sip:a@b SIP/2.0\r\nRoute: <sip:p1;lr>, <sip:p2;lr>\r\nRoute: <sip:[2001:db8::2];lr>\r\nRecord-Route: <sip:rr;lr>\r\nPath: <sip:tok@lb;lr;ob>\r\nl: 0\r\n\r\n";
        let m = Message::parse_datagram(bytes::Bytes::from_static(raw), &Limits::default())
            .expect("ok");
        let r: Vec<String> = m
            .routes()
            .map(|r| r.map(|n| n.uri.as_str().to_owned()).unwrap_or_default())
            .collect();
        assert_eq!(r, ["sip:p1;lr", "sip:p2;lr", "sip:[2001:db8::2];lr"]);
        assert_eq!(m.record_routes().count(), 1);
        let p = m.paths().next().and_then(Result::ok).expect("path");
        assert_eq!(p.uri.param("ob"), Some(None));
        let bad = Message::parse_datagram(
            bytes::Bytes::from_static(b"INVITE sip:a@b SIP/2.0\r\nRoute: sip:x\r\n\r\n"),
            &Limits::default(),
        )
        .expect("ok");
        assert!(bad.routes().next().is_some_and(|r| r.is_err()));
    }
}
