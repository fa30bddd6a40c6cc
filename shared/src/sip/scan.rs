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

/// Position of the ASCII byte `b` in `s`. A plain loop: the values searched
/// are tens of bytes, where `str::find(char)` cost over a hundred
/// instructions per call in the parse profile. (The offset of an ASCII byte
/// is a char boundary, so slicing there is safe.)
pub(crate) fn find_byte(s: &str, b: u8) -> Option<usize> {
    s.as_bytes().iter().position(|&c| c == b)
}

/// Trim LWS on both sides. (Byte loops: a `char` pattern decodes UTF-8 and
/// showed up in the benchmark profile; LWS is ASCII, so the cuts are on
/// character boundaries.)
pub(crate) fn trim(s: &str) -> &str {
    let (a, e) = trim_range(s.as_bytes());
    s.get(a..e).unwrap_or("")
}

/// Trim LWS on both sides of raw bytes.
pub(crate) fn trim_bytes(b: &[u8]) -> &[u8] {
    let (a, e) = trim_range(b);
    b.get(a..e).unwrap_or_default()
}

/// The range of `b` without LWS on either side.
#[inline(always)]
fn trim_range(b: &[u8]) -> (usize, usize) {
    let mut a = 0;
    let mut e = b.len();
    while a < e && is_lws(b[a]) {
        a += 1;
    }
    while e > a && is_lws(b[e - 1]) {
        e -= 1;
    }
    (a, e)
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
    loop {
        i += memchr::memchr2(b'"', b'\\', s.get(i..)?)?;
        if s[i] == b'"' {
            return Some(i + 1);
        }
        i += 2; // a quoted-pair: the escaped byte is skipped
    }
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
        let s = self.s;
        let mut i = start;
        let end = loop {
            // Jump to the next byte that matters (SIMD search): outside `<...>`
            // that is a quote, `<` or a comma; inside it, a quote or `>`.
            let found = match s.get(i..) {
                Some(rest) if !rest.is_empty() => memchr::memchr3(b'"', b'<', b',', rest),
                _ => None,
            };
            let Some(off) = found else {
                self.done = true;
                break s.len();
            };
            i += off;
            match s[i] {
                b'"' => i += quoted_len(&s[i..]).unwrap_or(s.len() - i),
                b'<' => {
                    // Inside `<...>` only a quote or the closing `>` matter.
                    loop {
                        match memchr::memchr2(b'>', b'"', s.get(i + 1..).unwrap_or_default()) {
                            None => i = s.len(),
                            Some(o) if s[i + 1 + o] == b'"' => {
                                i += 1 + o;
                                i += quoted_len(&s[i..]).unwrap_or(s.len() - i) - 1;
                                continue;
                            }
                            Some(o) => i += 2 + o,
                        }
                        break;
                    }
                }
                _ => {
                    self.pos = i + 1;
                    break i;
                }
            }
        };
        let end = end.min(s.len());
        let (mut a, mut b) = (start.min(end), end);
        while a < b && is_lws(s[a]) {
            a += 1;
        }
        while b > a && is_lws(s[b - 1]) {
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
    #[cfg(test)]
    pub(crate) fn is_valid(&self) -> bool {
        self.is_valid_with(|_, _| true)
    }

    /// [`Params::is_valid`], handing each parameter to `each` in the same pass
    /// (typed views pick out the ones they know without a second walk);
    /// `each` returning `false` makes the whole list invalid.
    pub(crate) fn is_valid_with(
        &self,
        mut each: impl FnMut(&'a str, Option<&'a str>) -> bool,
    ) -> bool {
        let t = trim(self.raw);
        if t.is_empty() {
            return true;
        }
        if !t.starts_with(';') {
            return false;
        }
        // Each `;` starts exactly one parameter (the iterator steps from `;` to
        // `;` outside quotes), so an empty `;;` shows up as an empty name.
        self.iter().all(|(name, value)| {
            is_token(name.as_bytes()) && value.is_none_or(is_param_value) && each(name, value)
        })
    }
}

/// A generic-param value: a token or host (`:` `[` `]` for IPv6), or a whole quoted string.
fn is_param_value(v: &str) -> bool {
    let b = v.as_bytes();
    if b.first() == Some(&b'"') {
        return quoted_len(b) == Some(b.len());
    }
    !b.is_empty() && b.iter().all(|&c| is_param_value_byte(c))
}

/// A byte of an unquoted generic-param value (token characters plus `:[]`).
#[inline(always)]
pub(crate) fn is_param_value_byte(c: u8) -> bool {
    PARAM_VALUE[usize::from(c)]
}

/// Bytes of an unquoted generic-param value: token characters plus `:[]`.
const PARAM_VALUE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = super::method::is_token_byte_const(i as u8) || matches!(i as u8, b':' | b'[' | b']');
        i += 1;
    }
    t
};

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
        let start = self.pos + memchr::memchr(b';', b.get(self.pos..)?)? + 1;
        // The parameter ends at the next ';' outside a quoted string; its name
        // at the first '=' before any quote.
        let mut i = start;
        let mut first_quote = None;
        let end = loop {
            match memchr::memchr2(b';', b'"', b.get(i..).unwrap_or_default()) {
                None => break b.len(),
                Some(o) if b[i + o] == b';' => break i + o,
                Some(o) => {
                    i += o;
                    first_quote.get_or_insert(i);
                    i += quoted_len(&b[i..]).unwrap_or(b.len() - i);
                }
            }
        };
        self.pos = end;
        let name_part = &b[start..first_quote.unwrap_or(end).min(end)];
        let text = |x: usize, y: usize| trim(self.s.get(x..y).unwrap_or(""));
        Some(match memchr::memchr(b'=', name_part) {
            Some(e) => (text(start, start + e), Some(text(start + e + 1, end))),
            None => (text(start, end), None),
        })
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
