//! Contact: `*` or a list of contact values with expires, q, +sip.instance, reg-id.
//!
//! ```text
//! RFC 3261 §20.10 Contact = ("Contact" / "m") HCOLON
//!                           ( STAR / (contact-param *(COMMA contact-param)))
//!                 contact-params = c-p-q / c-p-expires / contact-extension
//! RFC 5626 §4.2   "+sip.instance" and "reg-id" contact parameters.
//! ```

use super::error::ParseError;
use super::message::Values;
use super::name_addr::NameAddr;

/// The Contact headers of a message.
#[derive(Debug, Clone)]
pub enum Contact<'m> {
    /// `Contact: *` (REGISTER: remove all bindings).
    Star,
    /// The contact values (possibly none); iterate to parse each lazily.
    List(ContactList<'m>),
}

impl<'m> Contact<'m> {
    pub(crate) fn from_values(values: Values<'m>) -> Result<Contact<'m>, ParseError> {
        let mut probe = values.clone();
        let mut star = false;
        let mut n = 0;
        for v in probe.by_ref() {
            n += 1;
            star |= v == "*";
        }
        if star {
            // RFC 3261 §10.2.2: "*" only alone.
            return if n == 1 {
                Ok(Contact::Star)
            } else {
                Err(ParseError::BadHeader("Contact"))
            };
        }
        Ok(Contact::List(ContactList { values }))
    }

    /// Is it `*`?
    pub fn is_star(&self) -> bool {
        matches!(self, Contact::Star)
    }
}

/// Lazy iterator over contact values.
#[derive(Debug, Clone)]
pub struct ContactList<'m> {
    values: Values<'m>,
}

impl<'m> Iterator for ContactList<'m> {
    type Item = Result<ContactValue<'m>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        let v = self.values.next()?;
        Some(
            NameAddr::parse(v)
                .map(ContactValue)
                .map_err(|_| ParseError::BadHeader("Contact")),
        )
    }
}

/// One contact value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactValue<'a>(pub NameAddr<'a>);

impl<'a> std::ops::Deref for ContactValue<'a> {
    type Target = NameAddr<'a>;
    fn deref(&self) -> &NameAddr<'a> {
        &self.0
    }
}

impl<'a> ContactValue<'a> {
    /// The `expires` parameter in seconds (`Err` when not a number).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.0.param("expires") {
            None => Ok(None),
            Some(v) => {
                let v = v.unwrap_or("");
                if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(ParseError::BadHeader("Contact"));
                }
                // RFC 3261 §20.19: values beyond 2^32-1 are taken as 2^32-1.
                Ok(Some(
                    super::cseq::parse_u32(v.as_bytes()).unwrap_or(u32::MAX),
                ))
            }
        }
    }

    /// The `q` parameter in thousandths (0..=1000).
    pub fn q(&self) -> Result<Option<u16>, ParseError> {
        let Some(v) = self.0.param("q") else {
            return Ok(None);
        };
        let bad = ParseError::BadHeader("Contact");
        let v = v.ok_or(bad.clone())?;
        let (int, frac) = v.split_once('.').unwrap_or((v, ""));
        if !(int == "0" || int == "1")
            || frac.len() > 3
            || !frac.bytes().all(|c| c.is_ascii_digit())
        {
            return Err(bad);
        }
        let mut thousandths = if int == "1" { 1000u16 } else { 0 };
        for (i, d) in frac.bytes().enumerate() {
            thousandths += u16::from(d - b'0') * [100, 10, 1][i];
        }
        if thousandths > 1000 {
            return Err(bad);
        }
        Ok(Some(thousandths))
    }

    /// The `+sip.instance` value without its quotes (and without `<`/`>`).
    pub fn sip_instance(&self) -> Option<&'a str> {
        let v = self.0.param("+sip.instance")??;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        Some(
            v.strip_prefix('<')
                .and_then(|v| v.strip_suffix('>'))
                .unwrap_or(v),
        )
    }

    /// The `reg-id` parameter.
    pub fn reg_id(&self) -> Option<u32> {
        self.0.param("reg-id")??.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Limits, Message};

    fn msg(contact: &str) -> Message {
        let raw = format!("REGISTER sip:example.com SIP/2.0\r\n{contact}\r\nl: 0\r\n\r\n");
        Message::parse_datagram(bytes::Bytes::from(raw), &Limits::default()).expect("parses")
    }

    #[test]
    fn star_and_lists() {
        assert!(msg("Contact: *").contacts().is_ok_and(|c| c.is_star()));
        assert!(msg("Contact: *, <sip:a@b>").contacts().is_err());
        let m = msg("m: <sip:a@b>;expires=3600;q=0.5;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1, \"x, y\" <sip:c@[2001:db8::3]>");
        let Ok(Contact::List(list)) = m.contacts() else {
            panic!("list")
        };
        let v: Vec<ContactValue> = list.map(|c| c.expect("valid")).collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].expires(), Ok(Some(3600)));
        assert_eq!(v[0].q(), Ok(Some(500)));
        assert_eq!(
            v[0].sip_instance(),
            Some("urn:uuid:00000000-0000-1000-8000-000A95A0E128")
        );
        assert_eq!(v[0].reg_id(), Some(1));
        assert_eq!(v[1].display, Some("x, y"));
        assert_eq!(v[1].expires(), Ok(None));
    }

    #[test]
    fn bad_params() {
        let table = [
            "m: <sip:a@b>;expires=x",
            "m: <sip:a@b>;q=2",
            "m: <sip:a@b>;q=0.1234",
        ];
        for t in table {
            let m = msg(t);
            let Ok(Contact::List(mut l)) = m.contacts() else {
                panic!("{t}")
            };
            let c = l.next().expect("one").expect("parses");
            assert!(c.expires().is_err() || c.q().is_err(), "{t}");
        }
        let m = msg("m: <sip:a@b>;;;");
        let Ok(Contact::List(mut l)) = m.contacts() else {
            panic!("list")
        };
        assert!(l.next().is_some_and(|c| c.is_err()));
    }
}
