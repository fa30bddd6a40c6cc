//! `StreamFramer`: cuts a byte stream (TCP, TLS, WebSocket payloads) into SIP
//! messages by Content-Length, and reports CRLF keepalives as their own events.
//!
//! ```text
//! RFC 3261 §18.3  In the case of stream-oriented transports such as TCP, the
//!                 Content-Length header field indicates the size of the body.
//!                 The Content-Length header field MUST be used with stream
//!                 oriented transports.
//! RFC 5626 §3.5.1 the "ping" is a double-CRLF sequence and the "pong" a single CRLF.
//! ```
//! Sizes are checked while the head arrives and from Content-Length, so an
//! over-limit message is never buffered whole. After any error the stream's
//! framing is lost: the framer yields nothing more and the caller closes.

use bytes::{Buf, BytesMut};

use super::error::ParseError;
use super::limits::Limits;
use super::message::{head_content_length, parse_head, Message};

/// What the framer found next in the stream.
// A boxed Message would cost an allocation per message; the event is moved once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum FrameEvent {
    /// A whole message.
    Message(Message),
    /// A double CRLF before a start line: the peer pings; answer with a CRLF.
    Ping,
    /// A single CRLF before a start line: the peer answers our ping.
    Pong,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum State {
    /// Between messages.
    Idle,
    /// Reading a head; `scanned` bytes were already checked, the current line
    /// starts at `line_start`, `headers` header lines were seen.
    Head {
        scanned: usize,
        line_start: usize,
        headers: usize,
        first: bool,
    },
    /// Head parsed; waiting until `total` bytes are buffered.
    Body { head: Message, total: usize },
    /// Framing was lost.
    Lost,
}

/// Incremental stream framer; see the module docs.
#[derive(Debug)]
pub struct StreamFramer {
    limits: Limits,
    buf: BytesMut,
    state: State,
    /// The last event was a lone CRLF at the end of the buffer, reported as a Pong;
    /// a CRLF right behind it completes a ping that arrived split.
    lone_crlf: bool,
}

impl StreamFramer {
    /// A framer with these limits.
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            limits,
            buf: BytesMut::new(),
            state: State::Idle,
            lone_crlf: false,
        }
    }

    /// Append received bytes (ignored once framing is lost).
    pub fn feed(&mut self, data: &[u8]) {
        if !self.is_lost() {
            self.buf.extend_from_slice(data);
        }
    }

    /// The internal buffer, for reading into it directly (`read_buf`).
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes buffered but not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Has an error made the stream unusable? (The caller closes the connection.)
    pub fn is_lost(&self) -> bool {
        matches!(self.state, State::Lost)
    }

    fn fail(&mut self, e: ParseError) -> Option<Result<FrameEvent, ParseError>> {
        self.state = State::Lost;
        self.buf = BytesMut::new();
        Some(Err(e))
    }

    /// The peer closed its sending side. Returns the last event: a message whose
    /// head lacks only its final empty line (accepted as for datagrams, RFC 4475
    /// baddn ends so), or `Truncated` when part of a message is buffered. Nothing
    /// (`None`) when the stream ended between messages. Framing is lost afterwards.
    pub fn eof(&mut self) -> Option<Result<FrameEvent, ParseError>> {
        let state = std::mem::replace(&mut self.state, State::Lost);
        let rest = std::mem::take(&mut self.buf);
        if rest.iter().all(|&c| c == b'\r' || c == b'\n') {
            return None;
        }
        if let State::Body { .. } = state {
            return Some(Err(ParseError::Truncated));
        }
        let head = match parse_head(&rest, &self.limits, true) {
            Ok(h) => h,
            Err(_) => return Some(Err(ParseError::Truncated)),
        };
        match head_content_length(&rest, &head) {
            Ok(Some(n)) if head.head_end() == rest.len() && n == 0 => {
                Some(Ok(FrameEvent::Message(head.attach(rest.freeze()))))
            }
            Ok(None) => Some(Err(ParseError::MissingContentLength)),
            Err(e) => Some(Err(e)),
            Ok(Some(_)) => Some(Err(ParseError::Truncated)),
        }
    }

    /// The next event, `None` when more bytes are needed (or framing is lost).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Result<FrameEvent, ParseError>> {
        loop {
            match &mut self.state {
                State::Lost => return None,
                State::Idle => {
                    let b = &self.buf[..];
                    match b {
                        [] => return None,
                        [b'\r'] | [b'\r', b'\n', b'\r'] => return None,
                        [b'\r', b'\n', b'\r', b'\n', ..] => {
                            self.buf.advance(4);
                            self.lone_crlf = false;
                            return Some(Ok(FrameEvent::Ping));
                        }
                        [b'\r', b'\n', rest @ ..] => {
                            let at_end = rest.is_empty();
                            self.buf.advance(2);
                            let ev = if self.lone_crlf {
                                FrameEvent::Ping
                            } else {
                                FrameEvent::Pong
                            };
                            self.lone_crlf = at_end && ev == FrameEvent::Pong;
                            return Some(Ok(ev));
                        }
                        [b'\r', ..] | [b'\n', ..] => return self.fail(ParseError::FramingLost),
                        _ => {
                            self.lone_crlf = false;
                            self.state = State::Head {
                                scanned: 0,
                                line_start: 0,
                                headers: 0,
                                first: true,
                            };
                        }
                    }
                }
                State::Head {
                    scanned,
                    line_start,
                    headers,
                    first,
                } => {
                    let lim = self.limits;
                    let mut head_end = None;
                    while let Some(off) = memchr::memchr(b'\n', &self.buf[*scanned..]) {
                        let nl = *scanned + off;
                        *scanned = nl + 1;
                        let mut le = nl;
                        if le > *line_start && self.buf[le - 1] == b'\r' {
                            le -= 1;
                        }
                        let len = le - *line_start;
                        if len > lim.max_line {
                            return self.fail(ParseError::LineTooLong);
                        }
                        if nl + 1 > lim.max_message {
                            return self.fail(ParseError::MessageTooLarge);
                        }
                        let starts_ws = matches!(self.buf.get(*line_start), Some(b' ' | b'\t'));
                        if len == 0 {
                            head_end = Some(nl + 1);
                            break;
                        }
                        if !*first && !starts_ws {
                            *headers += 1;
                            if *headers > lim.max_headers {
                                return self.fail(ParseError::TooManyHeaders);
                            }
                        }
                        *first = false;
                        *line_start = nl + 1;
                    }
                    let Some(head_end) = head_end else {
                        // A CR at the end may be the first half of the line's CRLF,
                        // which the line length does not count.
                        let cr = usize::from(self.buf.last() == Some(&b'\r'));
                        if (self.buf.len() - *line_start).saturating_sub(cr) > lim.max_line {
                            return self.fail(ParseError::LineTooLong);
                        }
                        if self.buf.len() > lim.max_message {
                            return self.fail(ParseError::MessageTooLarge);
                        }
                        return None;
                    };
                    let head = match parse_head(&self.buf[..head_end], &lim, false) {
                        Ok(h) => h,
                        Err(e) => return self.fail(e),
                    };
                    let total = match head_content_length(&self.buf, &head) {
                        Ok(Some(n)) => match head.head_end().checked_add(n) {
                            Some(t) if t <= lim.max_message => t,
                            _ => return self.fail(ParseError::BodyTooLarge),
                        },
                        Ok(None) => return self.fail(ParseError::MissingContentLength),
                        Err(e) => return self.fail(e),
                    };
                    self.state = State::Body { head, total };
                }
                State::Body { total, .. } => {
                    if self.buf.len() < *total {
                        return None;
                    }
                    let total = *total;
                    let State::Body { head, .. } = std::mem::replace(&mut self.state, State::Idle)
                    else {
                        return None;
                    };
                    let bytes = self.buf.split_to(total).freeze();
                    return Some(Ok(FrameEvent::Message(head.attach(bytes))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nSubject: x\r\n y\r\nContent-Length: 3\r\n\r\nabc";

    fn drain(f: &mut StreamFramer) -> Vec<Result<FrameEvent, ParseError>> {
        std::iter::from_fn(|| f.next()).collect()
    }

    #[test]
    fn whole_and_byte_by_byte() {
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(MSG);
        let mut f = StreamFramer::new(Limits::default());
        f.feed(&stream);
        let ev = drain(&mut f);
        assert_eq!(ev.len(), 3, "{ev:?}");
        assert_eq!(ev[0], Ok(FrameEvent::Ping));
        for e in &ev[1..] {
            let Ok(FrameEvent::Message(m)) = e else {
                panic!("{e:?}")
            };
            assert_eq!(m.as_bytes(), MSG);
            assert_eq!(m.body(), b"abc");
        }
        // Every split point of two messages gives the same two messages.
        let two = [MSG, MSG].concat();
        for cut in 0..two.len() {
            let mut f = StreamFramer::new(Limits::default());
            f.feed(&two[..cut]);
            let mut ev = drain(&mut f);
            f.feed(&two[cut..]);
            ev.extend(drain(&mut f));
            assert_eq!(ev.len(), 2, "cut {cut}");
        }
        let mut f = StreamFramer::new(Limits::default());
        let mut ev = Vec::new();
        for b in &two {
            f.feed(&[*b]);
            ev.extend(drain(&mut f));
        }
        assert_eq!(ev.len(), 2);
    }

    #[test]
    fn keepalives() {
        let table: &[(&[&[u8]], &[FrameEvent])] = &[
            (&[b"\r\n\r\n"], &[FrameEvent::Ping]),
            (&[b"\r\n"], &[FrameEvent::Pong]),
            (&[b"\r\n", b"\r\n"], &[FrameEvent::Pong, FrameEvent::Ping]),
            (&[b"\r", b"\n\r\n"], &[FrameEvent::Ping]),
            (&[b"\r\nOPTIONS"], &[FrameEvent::Pong]),
            (&[b"\r\n\r\n\r\n"], &[FrameEvent::Ping, FrameEvent::Pong]),
        ];
        for (feeds, want) in table {
            let mut f = StreamFramer::new(Limits::default());
            let mut got = Vec::new();
            for chunk in *feeds {
                f.feed(chunk);
                got.extend(drain(&mut f).into_iter().map(|e| e.expect("ok")));
            }
            assert_eq!(&got[..], *want, "{feeds:?}");
        }
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn eof_table() {
        let table: &[(&[u8], Option<Result<(), ParseError>>)] = &[
            (b"", None),
            (b"\r\n", None),
            (b"OPTIONS sip:a SIP/2.0\r\nl: 0\r\n", Some(Ok(()))),
            (b"OPTIONS sip:a SIP/2.0\r\nl: 0", Some(Ok(()))),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: 5\r\n\r\nab",
                Some(Err(ParseError::Truncated)),
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: 5\r\n",
                Some(Err(ParseError::Truncated)),
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n",
                Some(Err(ParseError::MissingContentLength)),
            ),
            (b"OPTIONS", Some(Err(ParseError::Truncated))),
        ];
        for (input, want) in table {
            let mut f = StreamFramer::new(Limits::default());
            f.feed(input);
            while let Some(Ok(_)) = f.next() {}
            let got = f.eof().map(|r| r.map(|_| ()));
            assert_eq!(got, *want, "{:?}", String::from_utf8_lossy(input));
            assert!(f.is_lost());
        }
    }

    #[test]
    fn errors_lose_framing() {
        let small = Limits {
            max_message: 200,
            max_headers: 3,
            max_line: 60,
        };
        let table: &[(&[u8], ParseError)] = &[
            (
                b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n",
                ParseError::MissingContentLength,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: -1\r\n\r\n",
                ParseError::BadContentLength,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nl: 1000\r\n\r\n",
                ParseError::BodyTooLarge,
            ),
            (
                b"OPTIONS sip:a SIP/2.0\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n",
                ParseError::TooManyHeaders,
            ),
            (&[b'x'; 61], ParseError::LineTooLong),
            (b"\r\rx", ParseError::FramingLost),
            (
                b"OPTIONS sip:a SIP/2.0\r\nbad line\r\n\r\n",
                ParseError::BadHeaderLine,
            ),
        ];
        for (input, want) in table {
            let mut f = StreamFramer::new(small);
            f.feed(input);
            assert_eq!(
                f.next(),
                Some(Err(want.clone())),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert!(f.is_lost());
            assert_eq!(f.next(), None);
            f.feed(MSG);
            assert_eq!(f.next(), None);
        }
        // A head growing past max_message without an end is refused early.
        let mut f = StreamFramer::new(small);
        f.feed(b"OPTIONS sip:a SIP/2.0\r\n");
        for _ in 0..20 {
            f.feed(b"X: 1\r\n");
        }
        assert!(matches!(
            f.next(),
            Some(Err(ParseError::TooManyHeaders | ParseError::MessageTooLarge))
        ));
    }
}
