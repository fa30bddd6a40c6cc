//! `Message`: a received SIP request or response as the original `Bytes` plus an
//! index of the start line and every header (no copy); typed views parse on demand.
//!
//! ```text
//! RFC 3261 §7     generic-message = start-line *message-header CRLF [ message-body ]
//! RFC 3261 §7.3.1 header fields can be extended over multiple lines by preceding
//!                 each extra line with at least one SP or horizontal tab.
//! RFC 3261 §7.5   implementations processing SIP messages over stream-oriented
//!                 transports MUST ignore any CRLF appearing before the start-line
//! RFC 3261 §18.3  In the case of message-oriented transports (such as UDP), if the
//!                 message has a Content-Length header field, the message body is
//!                 assumed to contain that many bytes. Any bytes in the UDP packet
//!                 beyond the end of the body MUST be discarded. [...] If the
//!                 transport packet ends before the end of the message body, this is
//!                 considered an error.
//! ```

use std::borrow::Cow;

use bytes::{Buf, Bytes};
use smallvec::SmallVec;

use super::call_id::parse_call_id;
use super::contact::Contact;
use super::content_length::parse_content_length_bytes;
use super::cseq::CSeq;
use super::error::ParseError;
use super::header_name::HeaderName;
use super::limits::Limits;
use super::max_forwards::MaxForwards;
use super::method::{is_token, is_token_byte, Method};
use super::name_addr::NameAddr;
use super::route::NameAddrs;
use super::scan::CommaSplit;
use super::via::Via;

/// A byte range `[start, end)` in the message buffer (u32 keeps the index small).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Self {
        Span {
            start: offset(start),
            end: offset(end),
        }
    }
    /// As a `usize` range.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }
    /// Is the span empty?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A buffer offset as stored in the index. Messages are bounded by Limits
/// (far below 4 GiB); saturate anyway.
fn offset(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// One indexed header line (with its continuation lines). 16 bytes, so the
/// inline index of 32 entries stays small to build and move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderEntry {
    /// The resolved name (compact forms resolved, `Other` when unknown).
    pub name: HeaderName,
    /// The value spans more than one line (it holds CRLF + WSP folds).
    folded: bool,
    /// Length of the name as received (it starts the line).
    name_len: u16,
    /// First byte of the line (the name).
    line_start: u32,
    /// The value, trimmed of surrounding white space; may span folded lines.
    value_start: u32,
    value_end: u32,
}

impl HeaderEntry {
    /// The name as received.
    pub fn name_span(&self) -> Span {
        Span {
            start: self.line_start,
            end: self.line_start.saturating_add(u32::from(self.name_len)),
        }
    }
    /// The value, trimmed of surrounding white space; may span folded lines.
    pub fn value_span(&self) -> Span {
        Span {
            start: self.value_start,
            end: self.value_end,
        }
    }
    /// The value spans more than one line (it holds CRLF + WSP folds).
    pub fn is_folded(&self) -> bool {
        self.folded
    }
}

/// The start line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine {
    /// `Method SP Request-URI SP SIP-Version`
    Request {
        /// Known method, or `Other` (text in `method_span`).
        method: Method,
        /// The method token.
        method_span: Span,
        /// The Request-URI text.
        uri_span: Span,
        /// The SIP-Version text.
        version_span: Span,
    },
    /// `SIP-Version SP Status-Code SP Reason-Phrase`
    Response {
        /// The SIP-Version text.
        version_span: Span,
        /// The status code, 100..=699.
        status: u16,
        /// The reason phrase (may be empty).
        reason_span: Span,
    },
}

/// A parsed SIP message: the received bytes (exactly this message, nothing
/// trailing) and an index over them. Cloning is cheap only for the `Bytes`.
#[derive(Debug, Clone)]
pub struct Message {
    buf: Bytes,
    start: StartLine,
    start_span: Span,
    headers: SmallVec<[HeaderEntry; 32]>,
    /// Offset just after the last header line (the end of the last line span).
    headers_end: u32,
    body: Span,
}

impl PartialEq for Message {
    fn eq(&self, other: &Self) -> bool {
        self.buf == other.buf
            && self.start == other.start
            && self.start_span == other.start_span
            && self.headers[..] == other.headers[..]
            && self.body == other.body
    }
}

fn is_sp(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// `SIP/1*DIGIT.1*DIGIT`, "SIP" case-insensitive (RFC 3261 §25.1).
pub(crate) fn is_version_syntax(v: &[u8]) -> bool {
    if v == b"SIP/2.0" {
        return true;
    }
    let Some(rest) = v.get(4..) else { return false };
    if !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return false;
    }
    let mut parts = rest.split(|&c| c == b'.');
    let ok =
        |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

fn parse_start_line(line: &[u8], base: usize) -> Result<StartLine, ParseError> {
    let mk = |a: usize, b: usize| Span::new(base + a, base + b);
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        let v_end = line
            .iter()
            .position(|&c| c == b' ')
            .ok_or(ParseError::BadStartLine)?;
        if !is_version_syntax(&line[..v_end]) {
            return Err(ParseError::BadStartLine);
        }
        let mut i = v_end;
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        let code = line.get(i..i + 3).ok_or(ParseError::BadStatus)?;
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadStatus);
        }
        if line.get(i + 3).is_some_and(|&c| c != b' ') {
            return Err(ParseError::BadStatus);
        }
        let status = code.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&status) {
            return Err(ParseError::BadStatus);
        }
        let r_start = (i + 4).min(line.len());
        return Ok(StartLine::Response {
            version_span: mk(0, v_end),
            status,
            reason_span: mk(r_start, line.len()),
        });
    }
    let m_end = line
        .iter()
        .position(|&c| c == b' ')
        .ok_or(ParseError::BadStartLine)?;
    let method = &line[..m_end];
    if !is_token(method) {
        return Err(ParseError::BadMethod);
    }
    // Liberal with runs of SP and trailing SP (RFC 4475 lwsstart, trws).
    let mut end = line.len();
    while end > m_end && is_sp(line[end - 1]) {
        end -= 1;
    }
    let v_start = line[..end]
        .iter()
        .rposition(|&c| c == b' ')
        .map_or(end, |p| p + 1);
    if v_start <= m_end + 1 {
        return Err(ParseError::BadStartLine);
    }
    if !is_version_syntax(&line[v_start..end]) {
        return Err(ParseError::BadStartLine);
    }
    let mut u_start = m_end;
    while u_start < v_start && line[u_start] == b' ' {
        u_start += 1;
    }
    let mut u_end = v_start;
    while u_end > u_start && line[u_end - 1] == b' ' {
        u_end -= 1;
    }
    if u_start >= u_end {
        return Err(ParseError::BadStartLine);
    }
    Ok(StartLine::Request {
        method: Method::parse(method),
        method_span: mk(0, m_end),
        uri_span: mk(u_start, u_end),
        version_span: mk(v_start, end),
    })
}

/// All bytes below 0x80 (then also UTF-8). An OR over every byte without an
/// early exit: the compiler turns it into wide vector ORs, several times
/// faster than `from_utf8` on the usual all-ASCII head.
fn is_ascii(b: &[u8]) -> bool {
    b.iter().fold(0u8, |acc, &c| acc | c) < 0x80
}

/// Scan the head (start line and headers) of a message that starts at `buf[0]`
/// into `m` (whose buffer is attached afterwards, see [`Message::attach`]).
/// `at_eof_ok`: a head that ends at the end of `buf` without the empty line is
/// accepted (datagrams); otherwise it is `Incomplete`.
///
/// The index is written in place: a `Message` with its inline index is ~600
/// bytes, and building a separate head to move into it cost several copies
/// per parse.
pub(crate) fn scan_head(
    m: &mut Message,
    buf: &[u8],
    limits: &Limits,
    at_eof_ok: bool,
) -> Result<(), ParseError> {
    // The index holds u32 offsets; refusing larger buffers once lets every
    // offset below convert without a check of its own.
    if u32::try_from(buf.len()).is_err() {
        return Err(ParseError::MessageTooLarge);
    }
    let at = |v: usize| v as u32; // < buf.len(), checked above
    let lines = Lines {
        buf,
        max_line: limits.max_line,
        at_eof_ok,
        finder: LineFinder::new(),
    };
    let (line_end, next) = lines.next(0)?.ok_or(ParseError::Empty)?;
    let line = &buf[..line_end];
    if line.is_empty() {
        return Err(ParseError::BadStartLine);
    }
    m.start = parse_start_line(line, 0)?;
    m.start_span = Span::new(0, line_end);
    let mut headers_end = next;
    let mut pos = next;
    // End of datagram right after a complete line: treat as the empty line.
    while let Some((line_end, next)) = lines.next(pos)? {
        let line = &buf[pos..line_end];
        let Some(&c0) = line.first() else {
            pos = next;
            break;
        };
        if is_sp(c0) {
            // Continuation of the previous header (a fold).
            let h = m.headers.last_mut().ok_or(ParseError::BadFolding)?;
            let (a, b) = trim_sp(line, 0);
            if a < b {
                // The first non-empty piece starts the value; later ones extend it.
                if h.value_span().is_empty() {
                    h.value_start = at(pos + a);
                } else {
                    h.folded = true;
                }
                h.value_end = at(pos + b);
            }
        } else {
            if m.headers.len() >= limits.max_headers {
                return Err(ParseError::TooManyHeaders);
            }
            let (name, name_len, colon) = match HeaderName::parse_at_colon(line) {
                Some((name, len)) => (name, len, len),
                None => header_name_general(line)?,
            };
            let (a, b) = trim_sp(line, colon + 1);
            m.headers.push(HeaderEntry {
                name,
                folded: false,
                name_len: u16::try_from(name_len).map_err(|_| ParseError::BadHeaderLine)?,
                line_start: at(pos),
                value_start: at(pos + a),
                value_end: at(pos + b),
            });
        }
        headers_end = next;
        pos = next;
        if next >= buf.len() && at_eof_ok {
            break;
        }
    }
    if !is_ascii(&buf[..pos]) && std::str::from_utf8(&buf[..pos]).is_err() {
        return Err(ParseError::NotUtf8);
    }
    m.headers_end = at(headers_end.min(pos));
    m.body = Span::new(pos, pos);
    Ok(())
}

/// The lines of a head, one at a time.
struct Lines<'b> {
    buf: &'b [u8],
    max_line: usize,
    at_eof_ok: bool,
    finder: LineFinder,
}

impl Lines<'_> {
    /// The line that starts at `pos`: where its text ends (before CRLF or LF)
    /// and where the next line starts. `None` at the end of a datagram that
    /// ends right after a complete line.
    #[inline(always)]
    fn next(&self, pos: usize) -> Result<Option<(usize, usize)>, ParseError> {
        let buf = self.buf;
        let rest = buf.get(pos..).unwrap_or_default();
        let (line_end, next) = match self.finder.find(rest) {
            Some(off) => {
                let nl = pos + off;
                let cr = off > 0 && buf[nl - 1] == b'\r';
                (nl - usize::from(cr), nl + 1)
            }
            None if self.at_eof_ok => {
                if rest.is_empty() {
                    return Ok(None);
                }
                let cr = buf.last() == Some(&b'\r');
                (buf.len() - usize::from(cr), buf.len())
            }
            None => {
                if rest.len() > self.max_line {
                    return Err(ParseError::LineTooLong);
                }
                return Err(ParseError::Incomplete);
            }
        };
        if line_end - pos > self.max_line {
            return Err(ParseError::LineTooLong);
        }
        Ok(Some((line_end, next)))
    }
}

/// Finds the next LF. On x86-64 with AVX2 it keeps memchr's searcher, so a
/// line costs one search without the dispatch and setup of `memchr::memchr`
/// (a fifth of the scan went there: header lines are short).
#[derive(Clone, Copy)]
struct LineFinder {
    #[cfg(target_arch = "x86_64")]
    avx2: Option<memchr::arch::x86_64::avx2::memchr::One>,
}

impl LineFinder {
    fn new() -> Self {
        LineFinder {
            #[cfg(target_arch = "x86_64")]
            avx2: memchr::arch::x86_64::avx2::memchr::One::new(b'\n'),
        }
    }

    #[inline(always)]
    fn find(&self, hay: &[u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if let Some(one) = &self.avx2 {
            return one.find(hay);
        }
        memchr::memchr(b'\n', hay)
    }
}

/// `line[from..]` without SP/HTAB on either side, as offsets into `line`.
#[inline(always)]
fn trim_sp(line: &[u8], from: usize) -> (usize, usize) {
    let mut a = from;
    while a < line.len() && is_sp(line[a]) {
        a += 1;
    }
    let mut b = line.len();
    while b > a && is_sp(line[b - 1]) {
        b -= 1;
    }
    (a, b)
}

/// `field-name = token`, optional white space, then the colon: one walk.
/// Returns the name, its length and the colon's offset. The general path
/// behind [`HeaderName::parse_at_colon`].
fn header_name_general(line: &[u8]) -> Result<(HeaderName, usize, usize), ParseError> {
    let mut n_end = 0;
    while n_end < line.len() && is_token_byte(line[n_end]) {
        n_end += 1;
    }
    let mut colon = n_end;
    while colon < line.len() && is_sp(line[colon]) {
        colon += 1;
    }
    if n_end == 0 || line.get(colon) != Some(&b':') {
        return Err(ParseError::BadHeaderLine);
    }
    Ok((HeaderName::parse(&line[..n_end]), n_end, colon))
}

/// [`scan_head`] into a new message without a buffer (the stream framer keeps
/// it while the body arrives).
pub(crate) fn parse_head(
    buf: &[u8],
    limits: &Limits,
    at_eof_ok: bool,
) -> Result<Message, ParseError> {
    let mut m = Message::unscanned();
    scan_head(&mut m, buf, limits, at_eof_ok)?;
    Ok(m)
}

/// The Content-Length of the head: `None` when absent; an error when malformed
/// or when several headers disagree (RFC 4475 mcl01).
pub(crate) fn head_content_length(buf: &[u8], head: &Message) -> Result<Option<usize>, ParseError> {
    let mut found: Option<usize> = None;
    for h in head
        .headers
        .iter()
        .filter(|h| h.name == HeaderName::ContentLength)
    {
        let n = parse_content_length_bytes(buf.get(h.value_span().range()).unwrap_or_default())?;
        match found {
            Some(prev) if prev != n => return Err(ParseError::ConflictingContentLength),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

impl Message {
    /// Parse one datagram (UDP). Leading CRLFs are skipped; bytes after the body
    /// that Content-Length announces are ignored; without Content-Length the body
    /// is the rest of the datagram.
    pub fn parse_datagram(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
        if buf.len() > limits.max_message {
            return Err(ParseError::MessageTooLarge);
        }
        let skip = buf
            .iter()
            .position(|&c| c != b'\r' && c != b'\n')
            .ok_or(ParseError::Empty)?;
        let b = &buf[skip..];
        let mut m = Message::unscanned();
        scan_head(&mut m, b, limits, true)?;
        let head_end = m.body.start as usize;
        let cl = head_content_length(b, &m)?;
        let avail = b.len() - head_end;
        let body_len = match cl {
            Some(n) if n > avail => return Err(ParseError::ContentLengthTooLarge),
            Some(n) => n,
            None => avail,
        };
        let total = head_end + body_len;
        // advance/truncate instead of slice: a Vec-backed `Bytes` is not promoted
        // (no allocation) unless trailing octets really have to be cut off.
        let mut buf = buf;
        buf.advance(skip);
        if total < buf.len() {
            buf.truncate(total);
        }
        m.set_buf(buf);
        Ok(m)
    }

    /// A message with nothing scanned yet, for [`scan_head`] to fill in.
    fn unscanned() -> Message {
        Message {
            buf: Bytes::new(),
            // Overwritten by the scan (it fails without a start line).
            start: StartLine::Response {
                version_span: Span::default(),
                status: 0,
                reason_span: Span::default(),
            },
            start_span: Span::default(),
            headers: SmallVec::new(),
            headers_end: 0,
            body: Span::default(),
        }
    }

    /// Attach the buffer a head was scanned over: exactly this message.
    fn set_buf(&mut self, buf: Bytes) {
        self.body = Span::new((self.body.start as usize).min(buf.len()), buf.len());
        self.buf = buf;
    }

    /// The message of a head from [`parse_head`] over exactly `buf` (framer).
    pub(crate) fn attach(mut self, buf: Bytes) -> Message {
        self.set_buf(buf);
        self
    }

    /// Offset of the first body byte (the end of the head).
    pub(crate) fn head_end(&self) -> usize {
        self.body.start as usize
    }

    fn text(&self, span: Span) -> &str {
        // The head was checked to be UTF-8 at parse time and spans end on ASCII
        // delimiters, so this never fails; "" is a harmless fallback.
        self.buf
            .get(span.range())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The start line as parsed.
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }

    /// The start line text, without its line end.
    pub fn start_line_str(&self) -> &str {
        self.text(self.start_span)
    }

    /// The span of the start line (without CRLF).
    pub fn start_line_span(&self) -> Span {
        self.start_span
    }

    /// Is it a request?
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method of a request (`None` for a response).
    pub fn method(&self) -> Option<Method> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The method token as received ("" for a response).
    pub fn method_str(&self) -> &str {
        match self.start {
            StartLine::Request { method_span, .. } => self.text(method_span),
            StartLine::Response { .. } => "",
        }
    }

    /// The Request-URI text of a request.
    pub fn request_uri(&self) -> Option<&str> {
        match self.start {
            StartLine::Request { uri_span, .. } => Some(self.text(uri_span)),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response.
    pub fn reason(&self) -> Option<&str> {
        match self.start {
            StartLine::Response { reason_span, .. } => Some(self.text(reason_span)),
            StartLine::Request { .. } => None,
        }
    }

    /// The SIP-Version text of the start line (e.g. `SIP/2.0`).
    pub fn version(&self) -> &str {
        match self.start {
            StartLine::Request { version_span, .. } | StartLine::Response { version_span, .. } => {
                self.text(version_span)
            }
        }
    }

    /// The indexed headers, in received order.
    pub fn header_entries(&self) -> &[HeaderEntry] {
        &self.headers
    }

    /// The whole header `idx`, from its name to the end of its last line (line
    /// end included); `None` when out of range. Header lines are contiguous, so
    /// a line ends where the next one starts.
    pub fn line_span(&self, idx: usize) -> Option<Span> {
        let h = self.headers.get(idx)?;
        let end = self
            .headers
            .get(idx + 1)
            .map_or(self.headers_end, |n| n.line_start);
        Some(Span {
            start: h.line_start,
            end,
        })
    }

    /// Did the header index outgrow its inline storage (more than 32 headers)?
    /// Scanning a typical message allocates nothing; this lets tests check it.
    pub fn index_spilled(&self) -> bool {
        self.headers.spilled()
    }

    /// Number of header lines.
    pub fn header_count(&self) -> usize {
        self.headers.len()
    }

    /// Iterate `(name, name as received, raw value)` in received order.
    pub fn headers(&self) -> impl Iterator<Item = (HeaderName, &str, &str)> + '_ {
        self.headers
            .iter()
            .map(|h| (h.name, self.text(h.name_span()), self.text(h.value_span())))
    }

    /// The raw value of header `idx` (folds kept), `None` when out of range.
    pub fn header_raw(&self, idx: usize) -> Option<&str> {
        self.headers.get(idx).map(|h| self.text(h.value_span()))
    }

    /// The name, as received, of header `idx`.
    pub fn header_name_raw(&self, idx: usize) -> Option<&str> {
        self.headers.get(idx).map(|h| self.text(h.name_span()))
    }

    /// Index of the first header with this name.
    pub fn find(&self, name: HeaderName) -> Option<usize> {
        self.headers.iter().position(|h| h.name == name)
    }

    /// Index of the first header whose name equals `name` (any case; compact
    /// forms and unknown names work too).
    pub fn find_str(&self, name: &str) -> Option<usize> {
        let n = HeaderName::parse(name.as_bytes());
        if n != HeaderName::Other {
            return self.find(n);
        }
        self.headers.iter().position(|h| {
            h.name == HeaderName::Other && self.text(h.name_span()).eq_ignore_ascii_case(name)
        })
    }

    /// How many header lines carry this name.
    pub fn count(&self, name: HeaderName) -> usize {
        self.headers.iter().filter(|h| h.name == name).count()
    }

    /// The first header of this name, unfolded (borrowed unless it was folded).
    pub fn header(&self, name: HeaderName) -> Option<Cow<'_, str>> {
        self.find(name).map(|i| self.header_unfolded(i))
    }

    /// Header `idx`, unfolded: each CRLF + white space becomes one SP.
    pub fn header_unfolded(&self, idx: usize) -> Cow<'_, str> {
        let Some(h) = self.headers.get(idx) else {
            return Cow::Borrowed("");
        };
        let raw = self.text(h.value_span());
        if !h.folded {
            return Cow::Borrowed(raw);
        }
        Cow::Owned(unfold(raw))
    }

    /// Every comma-separated value of every header of this name, in order,
    /// trimmed, respecting quotes and `<...>`; lazy and allocation-free.
    pub fn values(&self, name: HeaderName) -> Values<'_> {
        Values {
            msg: self,
            name,
            idx: 0,
            cur: None,
        }
    }

    /// The comma-separated values of header `idx` as absolute spans.
    pub fn value_spans(&self, idx: usize) -> impl Iterator<Item = Span> + '_ {
        let (base, raw) = match self.headers.get(idx) {
            Some(h) => (h.value_start as usize, self.text(h.value_span())),
            None => (0, ""),
        };
        CommaSplit::new(raw).map(move |(a, b)| Span::new(base + a, base + b))
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        // The usual first Via is read straight from its header value.
        if let Some(v) = self
            .find(HeaderName::Via)
            .and_then(|i| Via::first_of_value(self.header_raw(i).unwrap_or("")))
        {
            return Ok(v);
        }
        let v = self
            .values(HeaderName::Via)
            .next()
            .ok_or(ParseError::MissingHeader("Via"))?;
        Via::parse(v)
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> + '_ {
        self.values(HeaderName::Via).map(Via::parse)
    }

    fn single(&self, name: HeaderName, label: &'static str) -> Result<&str, ParseError> {
        let i = self.find(name).ok_or(ParseError::MissingHeader(label))?;
        Ok(self.header_raw(i).unwrap_or(""))
    }

    /// The raw value bytes of header `idx` (no text view: views that need no
    /// `&str` skip its UTF-8 check).
    fn raw_bytes(&self, idx: usize) -> &[u8] {
        self.headers
            .get(idx)
            .and_then(|h| self.buf.get(h.value_span().range()))
            .unwrap_or_default()
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Result<CSeq<'_>, ParseError> {
        let i = self
            .find(HeaderName::CSeq)
            .ok_or(ParseError::MissingHeader("CSeq"))?;
        CSeq::parse_bytes(self.raw_bytes(i))
    }

    /// The Call-ID header.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        parse_call_id(self.single(HeaderName::CallId, "Call-ID")?)
    }

    /// Max-Forwards, `None` when absent.
    pub fn max_forwards(&self) -> Result<Option<MaxForwards>, ParseError> {
        match self.find(HeaderName::MaxForwards) {
            None => Ok(None),
            Some(i) => MaxForwards::parse_bytes(self.raw_bytes(i)).map(Some),
        }
    }

    /// Content-Length, `None` when absent.
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        match self.find(HeaderName::ContentLength) {
            None => Ok(None),
            Some(i) => parse_content_length_bytes(self.raw_bytes(i)).map(Some),
        }
    }

    /// The From header.
    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        NameAddr::parse(self.single(HeaderName::From, "From")?)
            .map_err(|_| ParseError::BadHeader("From"))
    }

    /// The To header.
    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        NameAddr::parse(self.single(HeaderName::To, "To")?).map_err(|_| ParseError::BadHeader("To"))
    }

    /// The Contact headers: `*` or the list of contacts.
    pub fn contacts(&self) -> Result<Contact<'_>, ParseError> {
        Contact::from_values(self.values(HeaderName::Contact))
    }

    /// Route values, top first.
    pub fn routes(&self) -> NameAddrs<'_> {
        NameAddrs::new(self.values(HeaderName::Route), "Route")
    }

    /// Record-Route values, top first.
    pub fn record_routes(&self) -> NameAddrs<'_> {
        NameAddrs::new(self.values(HeaderName::RecordRoute), "Record-Route")
    }

    /// Path values, top first.
    pub fn paths(&self) -> NameAddrs<'_> {
        NameAddrs::new(self.values(HeaderName::Path), "Path")
    }

    /// The whole message as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The underlying buffer (exactly this message).
    pub fn bytes(&self) -> &Bytes {
        &self.buf
    }

    /// The body (zero-copy).
    pub fn body(&self) -> &[u8] {
        self.buf.get(self.body.range()).unwrap_or_default()
    }

    /// The body span (its start is the end of the head).
    pub fn body_span(&self) -> Span {
        self.body
    }

    /// Length of the whole message in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Always false for a parsed message (kept for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Replace every fold (CRLF or LF followed by white space) with one SP.
pub fn unfold(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' || c == '\n' {
            while chars
                .peek()
                .is_some_and(|&n| matches!(n, '\r' | '\n' | ' ' | '\t'))
            {
                chars.next();
            }
            // The white space before the fold is already there; avoid doubling it.
            if !out.ends_with([' ', '\t']) {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Iterator over the comma-separated values of all headers of one name.
#[derive(Debug, Clone)]
pub struct Values<'m> {
    msg: &'m Message,
    name: HeaderName,
    idx: usize,
    cur: Option<(&'m str, CommaSplit<'m>)>,
}

impl<'m> Iterator for Values<'m> {
    type Item = &'m str;

    fn next(&mut self) -> Option<&'m str> {
        loop {
            if let Some((raw, split)) = &mut self.cur {
                if let Some((a, b)) = split.next() {
                    return Some(raw.get(a..b).unwrap_or(""));
                }
                self.cur = None;
            }
            let h = self
                .msg
                .headers
                .get(self.idx..)?
                .iter()
                .position(|h| h.name == self.name)?;
            let i = self.idx + h;
            self.idx = i + 1;
            let raw = self.msg.text(self.msg.headers[i].value_span());
            self.cur = Some((raw, CommaSplit::new(raw)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INV: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds, SIP/2.0/TCP [2001:db8::1]\r\n\
v: SIP/2.0/UDP host.example.com;branch=z9hG4bKx\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
f: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Subject: folded\r\n  across lines\r\n\
l: 4\r\n\
\r\n\
abcdEXTRA";

    fn parse(b: &[u8]) -> Result<Message, ParseError> {
        Message::parse_datagram(Bytes::copy_from_slice(b), &Limits::default())
    }

    #[test]
    fn parses_request_index() {
        let m = parse(INV).expect("valid");
        assert!(m.is_request());
        assert_eq!(m.method(), Some(Method::Invite));
        assert_eq!(m.request_uri(), Some("sip:bob@example.com"));
        assert_eq!(m.version(), "SIP/2.0");
        assert_eq!(m.body(), b"abcd");
        assert_eq!(m.len(), INV.len() - 5);
        assert_eq!(m.count(HeaderName::Via), 2);
        assert_eq!(m.values(HeaderName::Via).count(), 3);
        assert_eq!(m.call_id(), Ok("a84b4c76e66710@pc33.example.com"));
        assert_eq!(m.cseq().map(|c| c.seq), Ok(314159));
        assert_eq!(m.max_forwards().ok().flatten().map(|m| m.get()), Some(70));
        assert_eq!(
            m.header(HeaderName::Subject).as_deref(),
            Some("folded across lines")
        );
        assert!(matches!(m.header(HeaderName::To), Some(Cow::Borrowed(_))));
        assert_eq!(m.from().ok().and_then(|f| f.tag()), Some("1928301774"));
        assert_eq!(
            m.top_via().ok().and_then(|v| v.branch).map(|b| b.as_str()),
            Some("z9hG4bK776asdhds")
        );
        assert_eq!(m.find_str("subject"), Some(7));
        assert_eq!(m.headers().nth(4).map(|(_, n, _)| n), Some("f"));
        assert_eq!(m.header_entries().len(), 9);
        assert!(m.header_entries()[7].is_folded());
    }

    #[test]
    fn parses_response() {
        let m = parse(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n")
            .expect("valid");
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), Some("Ringing"));
        assert_eq!(m.method(), None);
    }

    #[test]
    fn datagram_errors() {
        let table: &[(&[u8], ParseError)] = &[
            (b"", ParseError::Empty),
            (b"\r\n\r\n", ParseError::Empty),
            (
                b"INVITE sip:a SIP/2.0\r\nContent-Length: 10\r\n\r\nabc",
                ParseError::ContentLengthTooLarge,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n",
                ParseError::BadContentLength,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\nl: 1\r\nl: 2\r\n\r\nab",
                ParseError::ConflictingContentLength,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\nNoColon\r\n\r\n",
                ParseError::BadHeaderLine,
            ),
            (
                b"INVITE sip:a SIP/2.0\r\n folded\r\n\r\n",
                ParseError::BadFolding,
            ),
            (b"INVITE  SIP/2.0\r\n\r\n", ParseError::BadStartLine),
            (b"INVITE sip:a HTTP/1.1\r\n\r\n", ParseError::BadStartLine),
            (b"SIP/2.0 99 Low\r\n\r\n", ParseError::BadStatus),
            (b"SIP/2.0 1000 Big\r\n\r\n", ParseError::BadStatus),
            (b"SIP/2.0 700 Big\r\n\r\n", ParseError::BadStatus),
            (b"IN VITE\r\n\r\n", ParseError::BadStartLine),
            (b"INV\xffITE sip:a SIP/2.0\r\n\r\n", ParseError::BadMethod),
            (
                b"INVITE sip:a SIP/2.0\r\nX: \xff\r\n\r\n",
                ParseError::NotUtf8,
            ),
        ];
        for (input, want) in table {
            assert_eq!(
                parse(input).err().as_ref(),
                Some(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn limits_apply() {
        let small = Limits {
            max_message: 40,
            max_headers: 1,
            max_line: 30,
        };
        let p = |b: &[u8]| Message::parse_datagram(Bytes::copy_from_slice(b), &small).err();
        assert_eq!(p(&[b'a'; 41]), Some(ParseError::MessageTooLarge));
        assert_eq!(
            p(b"OPTIONS sip:a SIP/2.0\r\nA: 1\r\nB: 2\r\n\r\n"),
            Some(ParseError::TooManyHeaders)
        );
        let long = Limits {
            max_message: 100,
            ..small
        };
        let r = Message::parse_datagram(
            Bytes::from_static(b"OPTIONS sip:aaaaaaaaaaaaaaaaaaaa SIP/2.0\r\n\r\n"),
            &long,
        );
        assert_eq!(r.err(), Some(ParseError::LineTooLong));
    }

    #[test]
    fn lenient_forms() {
        // Leading CRLFs, no final empty line, no Content-Length, LF-only line ends.
        let m = parse(b"\r\n\r\nOPTIONS sip:a SIP/2.0\r\nCall-ID: x").expect("ok");
        assert_eq!(m.call_id(), Ok("x"));
        let m = parse(b"OPTIONS sip:a SIP/2.0\nCall-ID: y\n\nbody").expect("ok");
        assert_eq!(m.body(), b"body");
        let m = parse(b"OPTIONS  sip:a   SIP/2.0  \r\n\r\n").expect("ok");
        assert_eq!(m.request_uri(), Some("sip:a"));
        let m = parse(b"SIP/2.0 200 \r\n\r\n").expect("ok");
        assert_eq!(m.reason(), Some(""));
        let m = parse(b"SIP/2.0 200\r\n\r\n").expect("ok");
        assert_eq!(m.reason(), Some(""));
    }

    #[test]
    fn header_name_paths_agree() {
        // The known-name fast path and the general token walk give the same
        // name, length and colon wherever the fast path answers.
        let lines: &[&[u8]] = &[
            b"Via: SIP/2.0/UDP h",
            b"v:x",
            b"VIA:x",
            b"Via : x",
            b"Via\t:x",
            b"X-Foo: y",
            b"call-id: a",
            b"Proxy-Authorization: Digest x",
            b"Content-Encoding: gzip",
            b"l: 0",
            b"To:",
            b"Subject:\r\n folded",
            b"Vi a: x",
        ];
        for line in lines {
            let general = header_name_general(line);
            if let Some((name, len)) = HeaderName::parse_at_colon(line) {
                assert_eq!(
                    general,
                    Ok((name, len, len)),
                    "{:?}",
                    String::from_utf8_lossy(line)
                );
            }
        }
        assert_eq!(
            header_name_general(b"Vi a: x"),
            Err(ParseError::BadHeaderLine)
        );
        assert_eq!(
            header_name_general(b"Via\t: x"),
            Ok((HeaderName::Via, 3, 4))
        );
    }

    #[test]
    fn line_finder_agrees_with_memchr() {
        let finder = LineFinder::new();
        let mut hay = Vec::new();
        for len in 0..200usize {
            hay.clear();
            hay.extend((0..len).map(|i| b'a' + (i % 26) as u8));
            assert_eq!(finder.find(&hay), None);
            for at in [0, len / 2, len.saturating_sub(1)] {
                if at < len {
                    hay[at] = b'\n';
                    assert_eq!(finder.find(&hay), memchr::memchr(b'\n', &hay), "{len} {at}");
                }
            }
        }
    }

    #[test]
    fn unfold_table() {
        let table = [
            ("a\r\n b", "a b"),
            ("a \r\n\tb", "a b"),
            ("a", "a"),
            ("a\r\n \r\n b", "a b"),
        ];
        for (i, o) in table {
            assert_eq!(unfold(i), o);
        }
    }
}
