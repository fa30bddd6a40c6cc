//! Lexing helpers shared by the typed header parsers: linear white space,
//! comma splitting that respects quotes and angle brackets, and `;name=value` params.
//!
//! ```text
//! RFC 3261 §25.1  LWS  = [*WSP CRLF] 1*WSP ; linear whitespace
//!                 SEMI = SWS ";" SWS    COMMA = SWS "," SWS
//! RFC 3261 §7.3.1 header values may be folded; a fold is LWS.
//! ```
//! Values handed to these helpers are raw header spans, which may still hold
//! folds (CRLF + WSP); CR and LF therefore count as white space here.

use super::method::is_token;

/// White space inside a raw (possibly folded) header value.
pub(crate) fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trim LWS on both sides. (Byte loops: a `char` pattern decodes UTF-8 and
/// showed up in the benchmark profile; LWS is ASCII, so the cuts are on
/// character boundaries.)
pub(crate) fn trim(s: &str) -> &str {
    let b = s.as_bytes();
    let mut a = 0;
    let mut e = b.len();
    while a < e && is_lws(b[a]) {
        a += 1;
    }
    while e > a && is_lws(b[e - 1]) {
        e -= 1;
    }
    s.get(a..e).unwrap_or("")
}

/// Trim LWS on the left.
pub(crate) fn trim_start(s: &str) -> &str {
    let b = s.as_bytes();
    let mut a = 0;
    while a < b.len() && is_lws(b[a]) {
        a += 1;
    }
    s.get(a..).unwrap_or("")
}

/// Length of a quoted string starting at `s[0] == '"'`, quotes included; `None`
/// when it is not terminated.
pub(crate) fn quoted_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Iterator over the comma-separated elements of a header value, as byte ranges
/// `(start, end)` relative to the value, trimmed of LWS. Commas inside quoted
/// strings and `<...>` do not split. Empty elements are yielded (as empty ranges)
/// so that validators can reject them.
#[derive(Debug, Clone)]
pub(crate) struct CommaSplit<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        CommaSplit {
            s: s.as_bytes(),
            pos: 0,
            done: false,
        }
    }
}

impl Iterator for CommaSplit<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let mut i = start;
        let mut in_angle = false;
        let end;
        loop {
            let Some(&c) = self.s.get(i) else {
                end = self.s.len();
                self.done = true;
                break;
            };
            match c {
                b'"' => match quoted_len(&self.s[i..]) {
                    Some(n) => i += n,
                    None => i = self.s.len(),
                },
                b'<' => {
                    in_angle = true;
                    i += 1
                }
                b'>' => {
                    in_angle = false;
                    i += 1
                }
                b',' if !in_angle => {
                    end = i;
                    self.pos = i + 1;
                    break;
                }
                _ => i += 1,
            }
        }
        let end = end.min(self.s.len());
        let (mut a, mut b) = (start.min(end), end);
        while a < b && is_lws(self.s[a]) {
            a += 1;
        }
        while b > a && is_lws(self.s[b - 1]) {
            b -= 1;
        }
        // A value that is only white space after a trailing comma is not an element.
        if self.done && a == b && start > 0 {
            return None;
        }
        Some((a, b))
    }
}

/// The `;name[=value]` parameters of a header value or URI, kept as the raw text
/// that follows the first `;` (empty when there are none). Iteration is lazy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a str,
}

impl<'a> Params<'a> {
    /// Wrap the raw text after the element (it starts with `;` or is empty).
    pub(crate) fn new(raw: &'a str) -> Self {
        Params { raw }
    }

    /// The raw parameter text as received (starts with `;` unless empty).
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// `Some(None)` for a present flag parameter, `Some(Some(v))` for `name=v`,
    /// `None` when absent. Names compare case-insensitively.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Iterate `(name, value)` pairs in order.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            s: self.raw,
            pos: 0,
        }
    }

    /// Every parameter has a token name, and every value is a token, host or a
    /// terminated quoted string (RFC 3261 §25.1 `generic-param`).
    pub(crate) fn is_valid(&self) -> bool {
        let t = trim(self.raw);
        if t.is_empty() {
            return true;
        }
        if !t.starts_with(';') {
            return false;
        }
        let mut n = 0;
        for (name, value) in self.iter() {
            n += 1;
            if !is_token(name.as_bytes()) {
                return false;
            }
            if let Some(v) = value {
                let ok = if v.starts_with('"') {
                    quoted_len(v.as_bytes()) == Some(v.len())
                } else {
                    !v.is_empty()
                        && v.bytes().all(|c| {
                            super::method::is_token_byte(c) || matches!(c, b':' | b'[' | b']')
                        })
                };
                if !ok {
                    return false;
                }
            }
        }
        // Every ';' must have introduced a parameter (no empty `;;`).
        n == count_unquoted(t.as_bytes(), b';')
    }
}

fn count_unquoted(s: &[u8], ch: u8) -> usize {
    let mut i = 0;
    let mut n = 0;
    while i < s.len() {
        if s[i] == b'"' {
            i += quoted_len(&s[i..]).unwrap_or(s.len() - i);
            continue;
        }
        if s[i] == ch {
            n += 1;
        }
        i += 1;
    }
    n
}

/// Iterator over `(name, Option<value>)`; see [`Params`].
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.s.as_bytes();
        // Skip to just after the next ';'.
        while self.pos < b.len() && b[self.pos] != b';' {
            self.pos += 1;
        }
        if self.pos >= b.len() {
            return None;
        }
        self.pos += 1;
        let start = self.pos;
        let mut i = start;
        let mut eq = None;
        while i < b.len() && b[i] != b';' {
            if b[i] == b'"' {
                i += quoted_len(&b[i..]).unwrap_or(b.len() - i);
                continue;
            }
            if b[i] == b'=' && eq.is_none() {
                eq = Some(i);
            }
            i += 1;
        }
        let i = i.min(b.len());
        self.pos = i;
        let item = match eq {
            Some(e) => (
                trim(self.s.get(start..e).unwrap_or("")),
                Some(trim(self.s.get(e + 1..i).unwrap_or(""))),
            ),
            None => (trim(self.s.get(start..i).unwrap_or("")), None),
        };
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<&str> {
        CommaSplit::new(s).map(|(a, b)| &s[a..b]).collect()
    }

    #[test]
    fn comma_split_table() {
        let table: &[(&str, &[&str])] = &[
            ("a, b ,c", &["a", "b", "c"]),
            (
                "\"x, y\" <sip:a>, <sip:b,c>",
                &["\"x, y\" <sip:a>", "<sip:b,c>"],
            ),
            ("one", &["one"]),
            ("", &[""]),
            ("a,,b", &["a", "", "b"]),
            ("a ,\r\n b", &["a", "b"]),
            ("\"unterminated, x", &["\"unterminated, x"]),
            ("a, ", &["a"]),
        ];
        for (input, want) in table {
            assert_eq!(split(input), *want, "{input:?}");
        }
    }

    #[test]
    fn params_table() {
        let p = Params::new(";branch=z9hG4bK1 ; rport ;received = 1.2.3.4;x=\"a;b\"");
        assert_eq!(p.get("branch"), Some(Some("z9hG4bK1")));
        assert_eq!(p.get("RPORT"), Some(None));
        assert_eq!(p.get("received"), Some(Some("1.2.3.4")));
        assert_eq!(p.get("x"), Some(Some("\"a;b\"")));
        assert_eq!(p.get("nope"), None);
        assert!(p.is_valid());
        let bad = ["; ;", ";;", ";a=", ";a=\"x", "x", ";a b"];
        for b in bad {
            assert!(!Params::new(b).is_valid(), "{b:?}");
        }
        assert!(Params::new("").is_valid());
        assert!(Params::new(" ;\r\n  tag = 98asjd8").is_valid());
    }
}
