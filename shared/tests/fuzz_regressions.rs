//! Regression tests for inputs the fuzz targets (`fuzz/`) found: each crashing
//! input as a byte literal, replayed through the same checks as the target.
#![forbid(unsafe_code)]

use bytes::Bytes;
use sipedge_shared::sip::{Editor, HeaderName, Limits, Message};

fn parse(raw: &[u8]) -> Message {
    Message::parse_datagram(Bytes::copy_from_slice(raw), &Limits::default()).expect("input parses")
}

type Edit = fn(&mut Editor<'_>);

/// `message_roundtrip`: edits on a datagram whose last line has no line end.
///
/// Crash 1 (`crash-4d13373033059d802fe0835f88aa7e2175d9e120`): a header
/// inserted after a start line without CRLF joined that line
/// (`... SIP/2.0\rVia: ...`, `BadStartLine`). Crash 1b (its minimised form,
/// after the first fix): two headers inserted there gave a second line end, an
/// empty line that turned the second header into body. Crash 2
/// (`crash-95b59405f9574a0f17a51550d48a0a2f780bc655`): a parameter set on an
/// open last header that was also removed landed on a line of its own
/// (`BadHeaderLine`).
#[test]
fn edits_at_an_open_end() {
    let table: &[(&str, &[u8], Edit, &[u8])] = &[
        (
            "crash 1: insert after a start line ending in a lone CR",
            b"OPTIONS sip:user@exam\0m\0\0\0com SIP/2.0\r",
            |e| {
                e.insert_top(HeaderName::Via, "SIP/2.0/UDP h;branch=z9hG4bKa");
                e.insert_top_raw("X-Fuzz", HeaderName::Other, "1");
            },
            b"OPTIONS sip:user@exam\0m\0\0\0com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nX-Fuzz: 1\r\n",
        ),
        (
            "crash 1b: two inserts after a start line with no line end",
            b"S s SIP/2.0",
            |e| {
                e.insert_top(HeaderName::Via, "SIP/2.0/UDP h;branch=z9hG4bKa");
                e.insert_top(HeaderName::RecordRoute, "70");
            },
            b"S s SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nRecord-Route: 70\r\n",
        ),
        (
            "crash 2: set params on a removed open last header",
            b"S! N sIP/2.0\np:u/0u/0",
            |e| {
                e.remove_value(0, 0);
                e.replace_value(0, "x");
                e.set_via_param(0, "x-fuzz", Some("192.0.2.7"));
                e.set_via_param(0, "branch", None);
            },
            b"S! N sIP/2.0\n",
        ),
        (
            "param on an open last header that stays",
            b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h",
            |e| e.set_via_param(0, "rport", None),
            b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;rport",
        ),
        (
            "param and a new header at an open end",
            b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h",
            |e| {
                e.append("X-A", "1");
                e.set_via_param(0, "rport", None);
            },
            b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;rport\r\nX-A: 1\r\n",
        ),
        (
            "remove the open last header, then append",
            b"OPTIONS sip:a SIP/2.0\r\nA: 1\r\nB: 2",
            |e| {
                e.remove_header(1);
                e.append("C", "3");
            },
            b"OPTIONS sip:a SIP/2.0\r\nA: 1\r\nC: 3\r\n",
        ),
    ];
    for (label, input, edit, want) in table {
        let m = parse(input);
        let mut ed = Editor::new(&m);
        edit(&mut ed);
        let out = ed.finish();
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(want),
            "{label}"
        );
        let again = Message::parse_datagram(out.clone(), &Limits::default());
        let again = again.unwrap_or_else(|e| panic!("{label}: output does not parse: {e:?}"));
        assert_eq!(again.as_bytes(), &out[..], "{label}");
        assert_eq!(again.body(), m.body(), "{label}: body changed");
    }
}

/// The fuzz target's own input layout, replayed: `data[0] % 16` control bytes
/// (two per edit), then the datagram; the edited output must parse.
#[test]
fn raw_crash_inputs_replay() {
    let table: &[&[u8]] = &[
        b"\x08\x00\x80\x00\x03\x01!\x02\x13OPTIONS sip:user@exam\x00m\x00\x00\x00com SIP/2.0\r",
        b"\x08\x00\x80\x02\x13OPTIS s SIP/2.0",
        b"\xea\x08\x00\x80\x00\xff\xff\xff(4mS! N sIP/2.0\np:u/0u/0",
    ];
    for input in table {
        let k = usize::from(input[0] % 16).min(input.len() - 1);
        let (control, wire) = input[1..].split_at(k);
        let m = parse(wire);
        let mut ed = Editor::new(&m);
        for c in control.chunks_exact(2) {
            replay_op(&mut ed, &m, c[0], c[1]);
        }
        let out = ed.finish();
        let again = Message::parse_datagram(out.clone(), &Limits::default());
        assert!(
            again.is_ok(),
            "{:?} -> {:?}",
            input,
            String::from_utf8_lossy(&out)
        );
    }
}

/// The subset of `fuzz/fuzz_targets/message_roundtrip.rs::apply` these inputs use.
fn replay_op(ed: &mut Editor<'_>, m: &Message, op: u8, arg: u8) {
    const VALUES: [&str; 4] = [
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfuzz;rport",
        "<sip:lb.example.net;lr>",
        "70",
        "\"quoted, with comma\" <sip:a@[2001:db8::1]:5061;transport=tls>;tag=x",
    ];
    const PARAMS: [&str; 4] = ["received", "rport", "branch", "x-fuzz"];
    const INSERT: [(HeaderName, &str); 4] = [
        (HeaderName::Via, "Via"),
        (HeaderName::RecordRoute, "Record-Route"),
        (HeaderName::Route, "Route"),
        (HeaderName::Other, "X-Fuzz"),
    ];
    let pick = |k: u8| VALUES[usize::from(k) % VALUES.len()];
    let editable = || {
        let n = m.header_count();
        (n > 0)
            .then(|| usize::from(arg) % n)
            .filter(|&i| m.header_entries()[i].name != HeaderName::ContentLength)
    };
    match op % 7 {
        0 => {
            let (name, spelled) = INSERT[usize::from(arg) % INSERT.len()];
            ed.insert_top_raw(spelled, name, pick(arg >> 2));
        }
        1 => {
            if let Some(i) = editable() {
                ed.remove_value(i, usize::from(arg >> 5));
            }
        }
        2 => {
            if let Some(i) = editable() {
                ed.replace_value(i, pick(arg >> 4));
            }
        }
        3 => {
            if let Some(i) = editable() {
                let value = (arg & 0x80 != 0).then_some("192.0.2.7");
                ed.set_via_param(i, PARAMS[usize::from(arg >> 4) % PARAMS.len()], value);
            }
        }
        4 => {
            if let Some(i) = editable() {
                ed.remove_header(i);
            }
        }
        5 => {
            if let Some(i) = editable() {
                ed.remove_via_param(i, PARAMS[usize::from(arg >> 4) % PARAMS.len()]);
            }
        }
        _ => {
            if let Some(i) = editable() {
                ed.replace_value_at(i, usize::from(arg >> 6), pick(arg >> 4));
            }
        }
    }
}

/// `stream_framer` crash `crash-d4f6669dbf3873a1cc7ac1991c62385d1e67b8cc`
/// (minimised): a start line exactly `max_line` long, fed byte by byte, was
/// refused as `LineTooLong` once its CR arrived without the LF, although fed
/// whole it is accepted; the pending CR is half of the line end.
#[test]
fn line_at_the_limit_split_before_lf() {
    use sipedge_shared::sip::{FrameEvent, StreamFramer};
    // The fuzzer's limits for this input (max_line = 16 + 5 * 4).
    let limits = Limits {
        max_message: 4159,
        max_headers: 20,
        max_line: 36,
    };
    let crash: &[u8] = b"OPTIONS m: sip\xc6\xa6allnet;xramlpe@e.com\r\nFr";
    let ok: &[u8] = b"OPTIONS sip:a@example.com SIP/2.0 \r\nContent-Length: 0\r\n\r\n";
    assert_eq!(ok.iter().position(|&c| c == b'\r'), Some(34));
    // (label, stream, chunk size, framing lost, messages framed)
    let table: &[(&str, &[u8], usize, bool, usize)] = &[
        ("crash input, byte by byte", crash, 1, false, 0),
        ("crash input, whole", crash, crash.len(), false, 0),
        ("whole message, byte by byte", ok, 1, false, 1),
        (
            "36-byte line + CR, byte by byte",
            b"OPTIONS sip:ab@example.com SIP/2.0  \r",
            1,
            false,
            0,
        ),
        (
            "37-byte line, byte by byte",
            b"OPTIONS sip:abc@example.com SIP/2.0  ",
            1,
            true,
            0,
        ),
    ];
    for (label, input, chunk, want_lost, want_messages) in table {
        let mut f = StreamFramer::new(limits);
        let mut messages = 0;
        for c in input.chunks(*chunk) {
            f.feed(c);
            while let Some(ev) = f.next() {
                if let Ok(FrameEvent::Message(_)) = ev {
                    messages += 1;
                }
            }
        }
        assert_eq!(f.is_lost(), *want_lost, "{label}");
        assert_eq!(messages, *want_messages, "{label}");
    }
}
