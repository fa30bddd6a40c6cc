//! Fuzz target: datagram parse, every typed accessor, then input-driven edits;
//! the edited output must parse again, and an edit-free print must be exact.
//!
//! Input layout: `data[0] % 16` = k control bytes `data[1..1 + k]` (two per
//! edit), the rest is the datagram. A seed with `data[0] = 0` is a plain message.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sipedge_shared::sip::{
    check_request, check_response, Editor, HeaderName, Limits, Message, Uri,
};

/// Header values the editor may write: valid for every header except
/// Content-Length, which the target never edits (its value is checked at parse).
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

/// Read every typed view; results are ignored, only panics matter.
fn read_all(m: &Message) {
    let _ = if m.is_request() {
        check_request(m).map(|_| ())
    } else {
        check_response(m)
    };
    if let Ok(v) = m.top_via() {
        let _ = v.param("branch");
    }
    for v in m.vias() {
        let _ = v.map(|v| (v.branch, v.rport, v.host.to_string()));
    }
    let _ = m.cseq();
    let _ = m.call_id();
    let _ = m.max_forwards().map(|mf| mf.map(|x| x.decrement()));
    let _ = m.content_length();
    for na in [m.from(), m.to()].into_iter().flatten() {
        let _ = (na.tag(), na.uri.aor_key(), na.uri.user_unescaped());
    }
    if let Ok(c) = m.contacts() {
        if let sipedge_shared::sip::Contact::List(list) = c {
            for v in list.flatten() {
                let _ = (v.expires(), v.q(), v.sip_instance(), v.reg_id());
            }
        }
    }
    for na in m
        .routes()
        .chain(m.record_routes())
        .chain(m.paths())
        .flatten()
    {
        let _ = na.uri.aor_key();
    }
    if let Some(ruri) = m.request_uri() {
        if let Ok(u) = Uri::parse(ruri) {
            let _ = (
                u.aor_key(),
                u.params().iter().count(),
                u.headers(),
                u.to_string(),
            );
        }
    }
    for i in 0..m.header_count() {
        let _ = m.header_unfolded(i);
        let _ = m.value_spans(i).count();
    }
}

/// Index of a header that the editor may change (not Content-Length).
fn editable(m: &Message, arg: u8) -> Option<usize> {
    let n = m.header_count();
    if n == 0 {
        return None;
    }
    let i = usize::from(arg) % n;
    (m.header_entries()[i].name != HeaderName::ContentLength).then_some(i)
}

fn apply(ed: &mut Editor<'_>, m: &Message, op: u8, arg: u8) {
    let pick = |k: u8| VALUES[usize::from(k) % VALUES.len()];
    match op % 7 {
        0 => {
            let (name, spelled) = INSERT[usize::from(arg) % INSERT.len()];
            ed.insert_top_raw(spelled, name, pick(arg >> 2));
        }
        1 => {
            if let Some(i) = editable(m, arg) {
                ed.remove_value(i, usize::from(arg >> 5));
            }
        }
        2 => {
            if let Some(i) = editable(m, arg) {
                ed.replace_value(i, pick(arg >> 4));
            }
        }
        3 => {
            if let Some(i) = editable(m, arg) {
                let value = (arg & 0x80 != 0).then_some("192.0.2.7");
                ed.set_via_param(i, PARAMS[usize::from(arg >> 4) % PARAMS.len()], value);
            }
        }
        4 => {
            if let Some(i) = editable(m, arg) {
                ed.remove_header(i);
            }
        }
        5 => {
            if let Some(i) = editable(m, arg) {
                ed.remove_via_param(i, PARAMS[usize::from(arg >> 4) % PARAMS.len()]);
            }
        }
        _ => {
            if let Some(i) = editable(m, arg) {
                ed.replace_value_at(i, usize::from(arg >> 6), pick(arg >> 4));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let k = usize::from(k % 16).min(rest.len());
    let (control, wire) = rest.split_at(k);
    let limits = Limits::default();
    let Ok(m) = Message::parse_datagram(Bytes::copy_from_slice(wire), &limits) else {
        return;
    };
    read_all(&m);

    // Print with no edits: the same bytes, and they parse to the same message.
    let plain = Editor::new(&m);
    assert_eq!(plain.finish(), m.bytes());
    let mut out = Vec::new();
    plain.write_to(&mut out);
    assert_eq!(&out[..], m.as_bytes());
    let again = Message::parse_datagram(Bytes::from(out), &limits).expect("reprint parses");
    assert_eq!(again, m, "print -> parse changed the message");

    let mut ed = Editor::new(&m);
    for c in control.chunks_exact(2) {
        apply(&mut ed, &m, c[0], c[1]);
    }
    let edited = ed.finish();
    // Edits add lines and bytes; allow for them so a limit is not mistaken for a bug.
    let roomy = Limits {
        max_message: limits.max_message + 4096,
        max_headers: limits.max_headers + 16,
        max_line: limits.max_line + 4096,
    };
    let e = match Message::parse_datagram(edited.clone(), &roomy) {
        Ok(e) => e,
        Err(err) => panic!(
            "edited output does not parse: {err:?}\nin:  {:?}\nout: {:?}",
            String::from_utf8_lossy(m.as_bytes()),
            String::from_utf8_lossy(&edited)
        ),
    };
    assert_eq!(
        e.as_bytes(),
        &edited[..],
        "edited output was trimmed on reparse"
    );
    assert_eq!(e.body(), m.body(), "edits changed the body");
    read_all(&e);
});
