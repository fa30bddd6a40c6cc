//! `NameAddr`: the `[display-name] <URI> *(;param)` or bare `addr-spec *(;param)`
//! value of From, To, Contact, Route, Record-Route and Path.
//!
//! ```text
//! RFC 3261 §25.1  name-addr    = [ display-name ] LAQUOT addr-spec RAQUOT
//!                 display-name = *(token LWS)/ quoted-string
//!                 LAQUOT = SWS "<"   (so no LWS is needed before "<", RFC 4475 lwsdisp)
//! RFC 3261 §20    If the URI is not enclosed in angle brackets, any semicolon-
//!                 delimited parameters are header-parameters, not URI parameters.
//! ```

use super::error::ParseError;
use super::method::is_token_byte;
use super::scan::{self, quoted_len, Params};
use super::uri::Uri;

/// A name-addr or addr-spec with its header parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name: the inside of a quoted string (escapes kept), or the
    /// token sequence; `None` when absent or empty.
    pub display: Option<&'a str>,
    /// The URI.
    pub uri: Uri<'a>,
    /// Whether the URI was enclosed in `<...>`.
    pub angle: bool,
    /// Header parameters (after the URI or `>`).
    pub params: Params<'a>,
    /// The `tag` parameter, picked out while the parameters were checked.
    tag: Option<&'a str>,
}

/// Check the header parameters and pick out `tag` in the same pass.
fn checked_params(raw: &str) -> Result<(Params<'_>, Option<&str>), ParseError> {
    let params = Params::new(raw);
    let mut tag: Option<Option<&str>> = None; // the first `tag` counts
    let ok = params.is_valid_with(|name, value| {
        if tag.is_none() && name.len() == 3 && name.eq_ignore_ascii_case("tag") {
            tag = Some(value);
        }
        true
    });
    if ok {
        Ok((params, tag.flatten()))
    } else {
        Err(ParseError::BadHeader("name-addr"))
    }
}

impl<'a> NameAddr<'a> {
    /// Parse one value (already split from its siblings at commas).
    pub fn parse(s: &'a str) -> Result<NameAddr<'a>, ParseError> {
        let bad = ParseError::BadHeader("name-addr");
        let s = scan::trim(s);
        let b = s.as_bytes();
        let (display, lt) = if b.first() == Some(&b'"') {
            let n = quoted_len(b).ok_or(bad.clone())?;
            let rest = scan::trim_start(&s[n..]);
            if !rest.starts_with('<') {
                return Err(bad);
            }
            let inner = &s[1..n - 1];
            (
                if inner.is_empty() { None } else { Some(inner) },
                s.len() - rest.len(),
            )
        } else if let Some(lt) = scan::find_byte(s, b'<') {
            let d = scan::trim(&s[..lt]);
            let ok = d.bytes().all(|c| is_token_byte(c) || scan::is_lws(c));
            if !ok {
                return Err(bad);
            }
            (if d.is_empty() { None } else { Some(d) }, lt)
        } else {
            // Bare addr-spec: the URI ends at the first ';' or white space.
            let end = b
                .iter()
                .position(|&c| c == b';' || c.is_ascii_whitespace())
                .unwrap_or(b.len());
            let uri = Uri::parse(&s[..end])?;
            let (params, tag) = checked_params(scan::trim_start(&s[end..]))?;
            return Ok(NameAddr {
                display: None,
                uri,
                angle: false,
                params,
                tag,
            });
        };
        let after_lt = &s[lt + 1..];
        // A plain URI ends right at its `>` (none of its bytes can be one), so
        // it is read once, without a search for the `>` first.
        let (uri, gt) = match Uri::plain_prefix(after_lt) {
            Some(u) if after_lt.as_bytes().get(u.as_str().len()) == Some(&b'>') => {
                (u, u.as_str().len())
            }
            _ => {
                let gt = scan::find_byte(after_lt, b'>').ok_or(bad.clone())?;
                (Uri::parse(&after_lt[..gt])?, gt)
            }
        };
        let (params, tag) = checked_params(scan::trim_start(&after_lt[gt + 1..]))?;
        Ok(NameAddr {
            display,
            uri,
            angle: true,
            params,
            tag,
        })
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a str> {
        self.tag
    }

    /// A header parameter by name.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        // (input, display, uri, tag)
        let table: &[(&str, Option<&str>, &str, Option<&str>)] = &[
            ("\"Alice\" <sip:alice@example.com>;tag=abc", Some("Alice"), "sip:alice@example.com", Some("abc")),
            ("Bob <sip:bob@example.com>", Some("Bob"), "sip:bob@example.com", None),
            ("<sip:x@y;lr>", None, "sip:x@y;lr", None),
            ("sip:x@y;tag=1", None, "sip:x@y", Some("1")),
            ("\"caller\"<sip:caller@example.com>;tag=323", Some("caller"), "sip:caller@example.com", Some("323")),
            ("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n", None, "sip:vivekg@chair-dnrc.example.com", Some("1918181833n")),
            ("\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8", Some("J Rosenberg \\\\\\\""), "sip:jdrosen@example.com", Some("98asjd8")),
            ("A B C <sip:[2001:db8::1]:5060>", Some("A B C"), "sip:[2001:db8::1]:5060", None),
            ("<http://example.com/x>", None, "http://example.com/x", None),
        ];
        for (input, display, uri, tag) in table {
            let na = NameAddr::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(na.display, *display, "{input}");
            assert_eq!(na.uri.as_str(), *uri, "{input}");
            assert_eq!(na.tag(), *tag, "{input}");
        }
    }

    #[test]
    fn uri_is_the_text_up_to_the_first_gt() {
        // The plain-URI shortcut reads the same URI as the general path: the
        // text between `<` and the first `>`.
        let table = [
            "<sip:bob@biloxi.example.com>",
            "\"Bob\" <sip:bob@biloxi.example.com;transport=udp>;tag=1",
            "<sip:a@b>;x=c@d",
            "<sip:a@b?h=1>",
            "<sip:a%40x@b>",
            "<sip:a@b;lr;;>",
            "<sip:a@b:5060>x",
            "<sip:a@b >",
            "<sips:[::1]:5061;lr>",
            "<sip:a@b",
            "<SIP:a@b>",
        ];
        for input in table {
            let lt = input.find('<').expect("has <");
            let want = input[lt + 1..]
                .find('>')
                .map(|gt| Uri::parse(&input[lt + 1..lt + 1 + gt]));
            match NameAddr::parse(input) {
                Ok(na) => assert_eq!(Some(Ok(na.uri)), want, "{input:?}"),
                Err(_) => assert!(
                    want.as_ref().is_none_or(|w| w.is_err())
                        || input.ends_with('x')
                        || input.contains("@d"),
                    "{input:?}"
                ),
            }
        }
    }

    #[test]
    fn rejects() {
        let bad = [
            "\"Mr. J. User <sip:j.user@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "<sip:a@b",
            "\"x\" sip:a@b",
            "<sip:a@b>;;",
            "<sip:a@b> junk",
            "",
        ];
        for b in bad {
            assert!(NameAddr::parse(b).is_err(), "{b}");
        }
    }
}
