//! Fuzz target: feed a byte stream into `StreamFramer` in input-chosen chunks;
//! it must never panic, never buffer more than the limit plus one read, stay
//! lost after an error, and frame the same messages as one whole feed; at
//! the end `eof()` is called on both.
//!
//! Input layout: `data[0..4]` choose the limits, `data[4] % 32` = k chunk-size
//! bytes `data[5..5 + k]` (cycled), the rest is the stream.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sipedge_shared::sip::{FrameEvent, Limits, Message, ParseError, StreamFramer};

/// Messages framed before the first error, whether an error came, and what
/// `eof()` made of the rest.
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Bytes>,
    lost: bool,
    eof: Option<Result<Bytes, ParseError>>,
}

/// Close the stream: `eof()` must not panic, a message it returns must parse
/// as a datagram, and the framer is lost afterwards.
fn close(f: &mut StreamFramer, limits: &Limits, out: &mut Outcome) {
    out.eof = match f.eof() {
        None => None,
        Some(Ok(FrameEvent::Message(m))) => {
            let d = Message::parse_datagram(m.bytes().clone(), limits)
                .expect("a message framed at EOF parses as a datagram");
            assert_eq!(d.as_bytes(), m.as_bytes());
            Some(Ok(m.bytes().clone()))
        }
        Some(Ok(ev)) => panic!("eof() returned a keepalive: {ev:?}"),
        Some(Err(e)) => Some(Err(e)),
    };
    assert!(f.is_lost(), "framing is lost after eof()");
    assert!(f.next().is_none());
}

/// Drain every event, checking the framer's invariants after each one.
fn drain(f: &mut StreamFramer, limits: &Limits, out: &mut Outcome) {
    while let Some(ev) = f.next() {
        assert!(!out.lost, "an event after the stream was lost");
        match ev {
            Ok(FrameEvent::Message(m)) => {
                assert!(m.len() <= limits.max_message, "message over the limit");
                // A framed message is a whole datagram too, indexed the same way.
                let d = Message::parse_datagram(m.bytes().clone(), limits)
                    .expect("a framed message parses as a datagram");
                assert_eq!(d, m, "framer and datagram parser disagree");
                out.messages.push(m.bytes().clone());
            }
            Ok(FrameEvent::Ping | FrameEvent::Pong) => {}
            Err(_) => {
                assert!(f.is_lost(), "an error must lose framing");
                assert_eq!(f.buffered(), 0, "a lost stream keeps no bytes");
                out.lost = true;
            }
        }
    }
    // Between reads the framer holds at most one message's worth of bytes.
    assert!(
        f.buffered() <= limits.max_message,
        "buffered {} > limit {}",
        f.buffered(),
        limits.max_message
    );
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let limits = Limits {
        max_message: 64 + usize::from(u16::from_le_bytes([data[0], data[1]]) % 4096),
        max_headers: 1 + usize::from(data[2] % 64),
        max_line: 16 + usize::from(data[3]) * 4,
    };
    let k = usize::from(data[4] % 32).min(data.len() - 5);
    let (sizes, stream) = data[5..].split_at(k);

    let mut f = StreamFramer::new(limits);
    let mut chunked = Outcome {
        messages: Vec::new(),
        lost: false,
        eof: None,
    };
    let mut pos = 0;
    let mut n = 0;
    while pos < stream.len() {
        let size = sizes
            .get(n % sizes.len().max(1))
            .map_or(stream.len(), |&s| usize::from(s).max(1));
        n += 1;
        let end = (pos + size).min(stream.len());
        let before = f.buffered();
        f.feed(&stream[pos..end]);
        assert!(
            f.buffered() <= before + (end - pos),
            "feed grew past the read"
        );
        if chunked.lost {
            assert_eq!(f.buffered(), 0, "a lost stream buffers nothing");
            assert!(f.next().is_none());
        }
        pos = end;
        drain(&mut f, &limits, &mut chunked);
    }

    close(&mut f, &limits, &mut chunked);

    // Chunking must not change which messages are framed, whether framing
    // fails, nor what the end of the stream gives.
    let mut whole = StreamFramer::new(limits);
    let mut once = Outcome {
        messages: Vec::new(),
        lost: false,
        eof: None,
    };
    whole.feed(stream);
    drain(&mut whole, &limits, &mut once);
    close(&mut whole, &limits, &mut once);
    assert_eq!(chunked, once, "chunked and whole feeds disagree");
});
