//! `Editor`: an edit list over a parsed message (insert, remove, replace spans),
//! serialised in one pass into a new buffer; untouched bytes are copied exactly.
//!
//! ```text
//! RFC 3261 §16.6  step 3: decrement Max-Forwards; step 4: Record-Route (inserted
//!                 above existing ones); step 8: add a Via header field value
//!                 "before the existing Via header field values".
//! RFC 3581 §4     the server MUST add a "received" parameter and set "rport" to
//!                 the source port of the request.
//! ```

use bytes::Bytes;
use smallvec::SmallVec;

use super::header_name::HeaderName;
use super::message::{Message, Span};
use super::scan::{is_lws, quoted_len, trim_bytes};

#[derive(Debug, Clone, Copy)]
struct Edit {
    start: u32,
    end: u32,
    text_start: u32,
    text_end: u32,
    /// A whole header line inserted (not an edit inside a line).
    line: bool,
}

/// A list of edits to apply to one message. Positions refer to the original
/// message, so edits can be added in any order. Two edits that overlap cannot
/// both apply: the one at the lower position wins and the other is skipped.
#[derive(Debug)]
pub struct Editor<'m> {
    msg: &'m Message,
    edits: SmallVec<[Edit; 8]>,
    arena: Arena,
}

/// Bytes of inserted text an editor holds without allocating: an LB's usual
/// edits (a Via, a Record-Route, Max-Forwards) take about 110.
const ARENA_INLINE: usize = 256;

/// The inserted text of every edit, back to back: inline while it fits, then
/// on the heap. (A `Vec` arena was an allocation and a free per rewrite; a
/// `SmallVec` cost more in its generic copy than the allocation saved.)
struct Arena {
    inline: [u8; ARENA_INLINE],
    /// Bytes used in `inline`; unused once the text moved to `heap`.
    len: usize,
    /// All the text once it outgrew `inline` (empty until then).
    heap: Vec<u8>,
}

impl Arena {
    fn new() -> Self {
        Arena {
            inline: [0; ARENA_INLINE],
            len: 0,
            heap: Vec::new(),
        }
    }

    fn as_slice(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Append the concatenation of `parts`; returns where it starts and ends.
    fn push(&mut self, parts: &[&[u8]]) -> (usize, usize) {
        let start = self.len();
        let need: usize = parts.iter().map(|p| p.len()).sum();
        if self.heap.is_empty() && need <= ARENA_INLINE - self.len {
            for p in parts {
                self.inline[self.len..self.len + p.len()].copy_from_slice(p);
                self.len += p.len();
            }
        } else {
            if self.heap.is_empty() {
                self.heap.reserve(start + need);
                self.heap.extend_from_slice(&self.inline[..self.len]);
            }
            for p in parts {
                self.heap.extend_from_slice(p);
            }
        }
        (start, start + need)
    }
}

impl std::fmt::Debug for Arena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arena").field("len", &self.len()).finish()
    }
}

impl<'m> Editor<'m> {
    /// Start an empty edit list over `msg`.
    pub fn new(msg: &'m Message) -> Self {
        Editor {
            msg,
            edits: SmallVec::new(),
            arena: Arena::new(),
        }
    }

    /// The message being edited.
    pub fn message(&self) -> &'m Message {
        self.msg
    }

    fn push(&mut self, span: Span, parts: &[&[u8]]) {
        self.push_edit(span, parts, false);
    }

    fn push_edit(&mut self, span: Span, parts: &[&[u8]], line: bool) {
        let (t0, t1) = self.arena.push(parts);
        let c = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        self.edits.push(Edit {
            start: span.start,
            end: span.end,
            text_start: c(t0),
            text_end: c(t1),
            line,
        });
    }

    fn at(pos: usize) -> Span {
        let p = u32::try_from(pos).unwrap_or(u32::MAX);
        Span { start: p, end: p }
    }

    /// Offset where a new header can go when there are none (after the start line).
    fn after_start_line(&self) -> usize {
        let b = self.msg.as_bytes();
        let s = self.msg.start_line_span().end as usize;
        b.get(s..)
            .and_then(|r| memchr::memchr(b'\n', r))
            .map_or(b.len(), |o| s + o + 1)
    }

    /// Offset of the empty line that ends the head (new headers appended here).
    fn end_of_headers(&self) -> usize {
        match self.msg.header_count().checked_sub(1) {
            Some(last) => self.msg.line_span(last).map_or(0, |s| s.end as usize),
            None => self.after_start_line(),
        }
    }

    fn insert_at(&mut self, pos: usize, name: &str, value: &str) {
        self.push_edit(
            Self::at(pos),
            &[name.as_bytes(), b": ", value.as_bytes(), b"\r\n"],
            true,
        );
    }

    /// Insert `name: value` above the first header of that name, or above the
    /// first header when there is none (RFC 3261 §16.6 Via and Record-Route).
    pub fn insert_top(&mut self, name: HeaderName, value: &str) {
        self.insert_top_raw(name.as_str(), name, value)
    }

    /// Like [`Editor::insert_top`] with a name spelled by the caller (for `Other`).
    pub fn insert_top_raw(&mut self, spelled: &str, name: HeaderName, value: &str) {
        let pos = match name {
            HeaderName::Other => self.msg.find_str(spelled),
            n => self.msg.find(n),
        }
        .or(if self.msg.header_count() > 0 {
            Some(0)
        } else {
            None
        })
        .and_then(|i| self.msg.header_entries().get(i))
        .map_or_else(|| self.after_start_line(), |h| h.name_span().start as usize);
        self.insert_at(pos, spelled, value);
    }

    /// Insert a header line above header `idx` (`idx == header_count()` appends).
    pub fn insert_before(&mut self, idx: usize, name: HeaderName, value: &str) {
        let pos = match self.msg.header_entries().get(idx) {
            Some(h) => h.name_span().start as usize,
            None => self.end_of_headers(),
        };
        self.insert_at(pos, name.as_str(), value);
    }

    /// Append a header line after the last header.
    pub fn append(&mut self, name: &str, value: &str) {
        let pos = self.end_of_headers();
        self.insert_at(pos, name, value);
    }

    /// Remove header line `idx` (with its continuation lines).
    pub fn remove_header(&mut self, idx: usize) {
        if let Some(span) = self.msg.line_span(idx) {
            self.push(span, &[]);
        }
    }

    /// Remove the `value_index`-th comma-separated value of header `idx`; the
    /// whole line goes when it was the only value.
    pub fn remove_value(&mut self, idx: usize, value_index: usize) {
        let spans: SmallVec<[Span; 8]> = self.msg.value_spans(idx).collect();
        if spans.len() <= 1 {
            if value_index == 0 {
                self.remove_header(idx);
            }
            return;
        }
        let Some(v) = spans.get(value_index) else {
            return;
        };
        let span = match spans.get(value_index + 1) {
            Some(next) => Span {
                start: v.start,
                end: next.start,
            },
            // The last value: remove from the end of the previous one (its comma).
            None => match value_index.checked_sub(1).and_then(|p| spans.get(p)) {
                Some(prev) => Span {
                    start: prev.end,
                    end: v.end,
                },
                None => return,
            },
        };
        self.push(span, &[]);
    }

    /// Replace the whole value of header `idx` (name and line end kept).
    pub fn replace_value(&mut self, idx: usize, value: &str) {
        if let Some(h) = self.msg.header_entries().get(idx) {
            let span = h.value_span();
            self.push(span, &[value.as_bytes()]);
        }
    }

    /// Replace one comma-separated value of header `idx`.
    pub fn replace_value_at(&mut self, idx: usize, value_index: usize, value: &str) {
        if let Some(span) = self.msg.value_spans(idx).nth(value_index) {
            self.push(span, &[value.as_bytes()]);
        }
    }

    /// Find parameter `name` in the first value of header `idx`: the span from its
    /// `;` to the end of its value, and the end of that first value.
    fn find_param(&self, idx: usize, name: &str) -> Option<(Option<Span>, Span)> {
        let first = self.msg.value_spans(idx).next()?;
        let b = self.msg.as_bytes().get(first.range())?;
        let mut i = 0;
        let mut in_angle = false;
        let mut found = None;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i += quoted_len(&b[i..]).unwrap_or(b.len() - i);
                    continue;
                }
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b';' if !in_angle => {
                    let seg_start = i;
                    let mut j = i + 1;
                    while j < b.len() && b[j] != b';' {
                        if b[j] == b'"' {
                            j += quoted_len(&b[j..]).unwrap_or(b.len() - j);
                            continue;
                        }
                        j += 1;
                    }
                    let j = j.min(b.len());
                    let seg = &b[seg_start + 1..j];
                    let name_end = seg.iter().position(|&c| c == b'=').unwrap_or(seg.len());
                    let n = trim_bytes(&seg[..name_end]);
                    let mut end = j;
                    while end > seg_start && is_lws(b[end - 1]) {
                        end -= 1;
                    }
                    if n.eq_ignore_ascii_case(name.as_bytes()) && found.is_none() {
                        found = Some(Span {
                            start: first.start + seg_start as u32,
                            end: first.start + end as u32,
                        });
                    }
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        Some((
            found,
            Span {
                start: first.end,
                end: first.end,
            },
        ))
    }

    /// Set parameter `name` (to `value`, or as a flag) on the first value of Via
    /// header `idx`, replacing it when present (RFC 3581 `received`/`rport`).
    pub fn set_via_param(&mut self, idx: usize, name: &str, value: Option<&str>) {
        self.set_param(idx, name, value)
    }

    /// Set a header parameter on the first value of header `idx` (any header).
    pub fn set_param(&mut self, idx: usize, name: &str, value: Option<&str>) {
        let Some((found, end)) = self.find_param(idx, name) else {
            return;
        };
        let span = found.unwrap_or(end);
        match value {
            Some(v) => self.push(span, &[b";", name.as_bytes(), b"=", v.as_bytes()]),
            None => self.push(span, &[b";", name.as_bytes()]),
        }
    }

    /// Remove parameter `name` from the first value of Via header `idx`.
    pub fn remove_via_param(&mut self, idx: usize, name: &str) {
        if let Some((Some(span), _)) = self.find_param(idx, name) {
            self.push(span, &[]);
        }
    }

    /// Replace the Request-URI (requests only; ignored for responses).
    pub fn set_request_uri(&mut self, uri: &str) {
        if let super::message::StartLine::Request { uri_span, .. } = self.msg.start_line() {
            let span = *uri_span;
            self.push(span, &[uri.as_bytes()]);
        }
    }

    /// Replace the whole start line (without its CRLF), e.g. to build a response.
    pub fn set_start_line(&mut self, line: &str) {
        let span = self.msg.start_line_span();
        self.push(span, &[line.as_bytes()]);
    }

    /// Replace the body and set Content-Length to its length (inserting the
    /// header when absent).
    pub fn set_body(&mut self, body: &[u8]) {
        let len = body.len().to_string();
        let mut any = false;
        for i in 0..self.msg.header_count() {
            if self.msg.header_entries()[i].name == HeaderName::ContentLength {
                self.replace_value(i, &len);
                any = true;
            }
        }
        if !any {
            self.append("Content-Length", &len);
        }
        let span = self.msg.body_span();
        self.push(span, &[body]);
    }

    /// Upper bound of the output length.
    pub fn output_len_hint(&self) -> usize {
        self.msg.len() + self.arena.len() + 2
    }

    /// The output length when no two edits overlap and none is at the open
    /// end of a head without final line end (the usual case).
    fn usual_len(&self) -> usize {
        let replaced: usize = self
            .edits
            .iter()
            .map(|e| e.end.saturating_sub(e.start) as usize)
            .sum();
        (self.msg.len() + self.arena.len()).saturating_sub(replaced)
    }

    /// Apply the edits, appending the new message to `out` (one pass).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.output_len_hint());
        self.write_edits(out);
    }

    /// [`Editor::write_to`] without reserving.
    fn write_edits(&self, out: &mut Vec<u8>) {
        let src = self.msg.as_bytes();
        let mut order: SmallVec<[usize; 8]> = (0..self.edits.len()).collect();
        // Stable: same-position insertions keep the order they were made in;
        // at one position, edits inside a line go before whole new lines.
        order.sort_by_key(|&i| (self.edits[i].start, self.edits[i].end, self.edits[i].line));
        let base = out.len();
        // The datagram parser accepts a head that ends with the packet, even
        // without a final line end; edits at that open end need care.
        let open_end = src.last().is_some_and(|&c| c != b'\n');
        let mut cursor = 0usize;
        for i in order {
            let e = self.edits[i];
            let (s, t) = (e.start as usize, e.end as usize);
            if s < cursor || t < s || t > src.len() {
                continue; // overlaps an edit already applied
            }
            out.extend_from_slice(&src[cursor..s]);
            if open_end && s == src.len() && out.len() > base {
                match (e.line, out.last()) {
                    // End the open last line, or the new header would join it.
                    (true, Some(b'\r')) => out.push(b'\n'),
                    (true, Some(&c)) if c != b'\n' => out.extend_from_slice(b"\r\n"),
                    // The open last line was removed: an edit inside it goes too.
                    (false, Some(b'\n')) if s == t => {
                        cursor = t;
                        continue;
                    }
                    _ => {}
                }
            }
            out.extend_from_slice(
                self.arena
                    .as_slice()
                    .get(e.text_start as usize..e.text_end as usize)
                    .unwrap_or_default(),
            );
            cursor = t;
        }
        out.extend_from_slice(src.get(cursor..).unwrap_or_default());
    }

    /// Apply the edits into a new buffer. With no edits the output equals the input.
    pub fn finish(&self) -> Bytes {
        if self.edits.is_empty() {
            return self.msg.bytes().clone();
        }
        // Exactly the usual length: a `Bytes` made from a `Vec` with spare
        // capacity allocates a shared header besides (and frees it on drop).
        // In the unusual cases the vector grows and that happens, correctly.
        let mut out = Vec::with_capacity(self.usual_len());
        self.write_edits(&mut out);
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Limits;

    const REQ: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport, SIP/2.0/UDP h2;branch=z9hG4bK2\r\n\
Max-Forwards: 70\r\n\
Route: <sip:a;lr>, <sip:b;lr>, <sip:c;lr>\r\n\
Call-ID: x\r\n\
Content-Length: 4\r\n\
\r\n\
body";

    fn msg(s: &str) -> Message {
        Message::parse_datagram(Bytes::copy_from_slice(s.as_bytes()), &Limits::default())
            .expect("valid")
    }

    fn apply(f: impl Fn(&mut Editor)) -> String {
        let m = msg(REQ);
        let mut e = Editor::new(&m);
        f(&mut e);
        // finish (exact allocation) and write_to (reserve a bound) agree.
        let mut written = b"prefix".to_vec();
        e.write_to(&mut written);
        let out = e.finish();
        assert_eq!(&written[6..], &out[..]);
        String::from_utf8(out.to_vec()).expect("utf8")
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn edit_table() {
        let table: &[(&str, fn(&mut Editor), &str, &str)] = &[
            ("no edits", |_| {}, "", ""),
            ("via on top", |e| e.insert_top(HeaderName::Via, "SIP/2.0/UDP lb;branch=z9hG4bKlb"), "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP lb;branch=z9hG4bKlb\r\nVia: SIP/2.0/UDP 192.0.2.1", ""),
            ("rr with none", |e| e.insert_top(HeaderName::RecordRoute, "<sip:lb;lr>"), "SIP/2.0\r\nRecord-Route: <sip:lb;lr>\r\nVia:", ""),
            ("mf", |e| e.replace_value(1, "69"), "Max-Forwards: 69\r\n", "Max-Forwards: 70"),
            ("remove route value 0", |e| e.remove_value(2, 0), "Route: <sip:b;lr>, <sip:c;lr>\r\n", "sip:a;lr"),
            ("remove route value 1", |e| e.remove_value(2, 1), "Route: <sip:a;lr>, <sip:c;lr>\r\n", "sip:b;lr"),
            ("remove route last", |e| e.remove_value(2, 2), "Route: <sip:a;lr>, <sip:b;lr>\r\n", "sip:c;lr"),
            ("remove header", |e| e.remove_header(2), "Max-Forwards: 70\r\nCall-ID", "Route"),
            ("received+rport", |e| { e.set_via_param(0, "received", Some("1.2.3.4")); e.set_via_param(0, "rport", Some("5060")); }, "branch=z9hG4bK1;rport=5060;received=1.2.3.4, SIP/2.0/UDP h2", ""),
            ("remove param", |e| e.remove_via_param(0, "rport"), "branch=z9hG4bK1, SIP", ";rport"),
            ("ruri", |e| e.set_request_uri("sip:bob@[2001:db8::1]"), "INVITE sip:bob@[2001:db8::1] SIP/2.0\r\n", ""),
            ("body", |e| e.set_body(b"hello"), "Content-Length: 5\r\n\r\nhello", "body"),
            ("start line", |e| e.set_start_line("SIP/2.0 200 OK"), "SIP/2.0 200 OK\r\nVia", "INVITE"),
            ("append", |e| e.append("X-Foo", "bar"), "Content-Length: 4\r\nX-Foo: bar\r\n\r\nbody", ""),
            ("insert before", |e| e.insert_before(1, HeaderName::Path, "<sip:p;lr>"), "Path: <sip:p;lr>\r\nMax-Forwards", ""),
        ];
        for (label, f, must, must_not) in table {
            let out = apply(f);
            assert!(out.contains(must), "{label}: {out}");
            if !must_not.is_empty() {
                assert!(!out.contains(must_not), "{label}: {out}");
            }
            let re = Message::parse_datagram(Bytes::from(out.clone()), &Limits::default());
            assert!(re.is_ok(), "{label}: {out}");
        }
        assert_eq!(apply(|_| {}), REQ);
    }

    #[test]
    fn arena_spills_to_the_heap() {
        // Text beyond the inline arena moves to the heap; edits before and
        // after the move keep their text.
        let long = "x".repeat(200);
        let out = apply(|e| {
            e.insert_top(HeaderName::Via, "SIP/2.0/UDP lb;branch=z9hG4bKlb");
            e.append("X-Long", &long);
            e.append("X-Longer", &long);
            e.replace_value(1, "69");
        });
        assert!(
            out.contains("Via: SIP/2.0/UDP lb;branch=z9hG4bKlb\r\nVia:"),
            "{out}"
        );
        assert!(
            out.contains(&format!("X-Long: {long}\r\nX-Longer: {long}\r\n")),
            "{out}"
        );
        assert!(out.contains("Max-Forwards: 69\r\n"), "{out}");
        let mut a = Arena::new();
        assert_eq!(a.push(&[b"ab", b"c"]), (0, 3));
        assert_eq!(a.push(&[&[b'y'; 300]]), (3, 303));
        assert_eq!(a.push(&[b"z"]), (303, 304));
        assert_eq!(&a.as_slice()[..4], b"abcy");
        assert_eq!(a.as_slice().len(), 304);
    }

    #[test]
    fn overlapping_edits_do_not_panic() {
        let out = apply(|e| {
            e.replace_value(0, "SIP/2.0/UDP x");
            e.set_via_param(0, "received", Some("1.1.1.1"));
            e.remove_header(0);
        });
        assert!(out.starts_with("INVITE"));
    }
}
