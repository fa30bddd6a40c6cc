//! Property tests of the message core: generated valid messages survive
//! parse -> print -> parse unchanged, random edits give parseable output that
//! reflects them, and arbitrary or mutated bytes never panic any entry point.

use bytes::Bytes;
use proptest::prelude::*;
use sipedge_shared::sip::{
    check_request, check_response, Contact, Editor, FrameEvent, HeaderName, Limits, Message,
    StreamFramer,
};

/// A generated header: name as it will be written, its resolved name, the
/// value as written (may hold folds) and the value unfolded.
#[derive(Debug, Clone)]
struct GenHeader {
    name: String,
    resolved: HeaderName,
    written: String,
    unfolded: String,
}

#[derive(Debug, Clone)]
struct GenMsg {
    start: String,
    request: bool,
    method: String,
    ruri: String,
    headers: Vec<GenHeader>,
    body: Vec<u8>,
}

impl GenMsg {
    fn bytes(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start).into_bytes();
        for h in &self.headers {
            out.extend_from_slice(format!("{}: {}\r\n", h.name, h.written).as_bytes());
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9.!%*_+`'~-]{0,12}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9]{0,6}){0,3}",
        any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
    ]
}

fn port() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), (1u16..).prop_map(|p| format!(":{p}"))]
}

fn sip_uri() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("sip"), Just("sips")],
        proptest::option::of("[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,10}|[a-z]{1,4}%[0-9A-F]{2}[a-z]{0,3}"),
        host(),
        port(),
        proptest::collection::vec(("[a-z]{1,6}", proptest::option::of("[a-z0-9]{1,6}")), 0..3),
    )
        .prop_map(|(scheme, user, host, port, params)| {
            let mut s = format!("{scheme}:");
            if let Some(u) = user {
                s.push_str(&u);
                s.push('@');
            }
            s.push_str(&host);
            s.push_str(&port);
            for (n, v) in params {
                s.push(';');
                s.push_str(&n);
                if let Some(v) = v {
                    s.push('=');
                    s.push_str(&v);
                }
            }
            s
        })
}

fn name_addr() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just(String::new()),
            "[A-Za-z]{1,8}( [A-Za-z]{1,8})?".prop_map(|d| format!("{d} ")),
            "[A-Za-z ,]{0,10}".prop_map(|d| format!("\"{d}\" ")),
        ],
        sip_uri(),
        proptest::option::of("[a-z0-9]{1,10}"),
    )
        .prop_map(|(d, u, tag)| {
            let mut s = format!("{d}<{u}>");
            if let Some(t) = tag {
                s.push_str(";tag=");
                s.push_str(&t);
            }
            s
        })
}

fn via() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("UDP"),
            Just("TCP"),
            Just("TLS"),
            Just("WS"),
            Just("WSS"),
            Just("SCTP")
        ],
        host(),
        port(),
        "[a-zA-Z0-9]{1,12}",
        any::<bool>(),
    )
        .prop_map(|(t, h, p, b, rport)| {
            format!(
                "SIP/2.0/{t} {h}{p};branch=z9hG4bK{b}{}",
                if rport { ";rport" } else { "" }
            )
        })
}

/// Write `value` folded at its spaces when `fold` says so.
fn maybe_fold(value: &str, fold: bool) -> String {
    if fold {
        value.replacen(' ', "\r\n ", 1)
    } else {
        value.to_owned()
    }
}

fn spell(long: &str, compact: Option<&str>, style: u8) -> String {
    match (style % 4, compact) {
        (0, Some(c)) => c.to_owned(),
        (1, _) => long.to_ascii_lowercase(),
        (2, _) => long.to_ascii_uppercase(),
        _ => long.to_owned(),
    }
}

fn header(
    name: &str,
    compact: Option<&str>,
    style: u8,
    resolved: HeaderName,
    value: String,
    fold: bool,
) -> GenHeader {
    let written = maybe_fold(&value, fold);
    GenHeader {
        name: spell(name, compact, style),
        resolved,
        unfolded: value,
        written,
    }
}

prop_compose! {
    fn message_unboxed()(
        request in proptest::bool::weighted(0.8),
        method in prop_oneof![
            Just("INVITE".to_owned()), Just("REGISTER".to_owned()), Just("OPTIONS".to_owned()),
            Just("BYE".to_owned()), Just("MESSAGE".to_owned()), token()],
        ruri in sip_uri(),
        status in 100u16..700,
        vias in proptest::collection::vec(via(), 1..4),
        via_split in any::<bool>(),
        from in name_addr(),
        to in name_addr(),
        call_id in "[a-zA-Z0-9.-]{1,20}(@[a-z0-9.]{1,12})?",
        seq in any::<u32>(),
        mf in proptest::option::of(0u8..=255),
        routes in proptest::collection::vec(sip_uri(), 0..4),
        contact in proptest::option::of(name_addr()),
        extra in proptest::collection::vec(("X-[A-Za-z]{1,8}", "[a-zA-Z0-9]{1,8}( [a-zA-Z0-9]{1,8}){0,3}"), 0..4),
        styles in proptest::collection::vec(any::<u8>(), 12),
        folds in proptest::collection::vec(proptest::bool::weighted(0.2), 12),
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) -> GenMsg {
        let mut h = Vec::new();
        if via_split {
            for (i, v) in vias.iter().enumerate() {
                h.push(header("Via", Some("v"), styles[i % 12], HeaderName::Via, v.clone(), false));
            }
        } else {
            h.push(header("Via", Some("v"), styles[0], HeaderName::Via, vias.join(", "), folds[0]));
        }
        h.push(header("From", Some("f"), styles[1], HeaderName::From, from, false));
        h.push(header("To", Some("t"), styles[2], HeaderName::To, to, false));
        h.push(header("Call-ID", Some("i"), styles[3], HeaderName::CallId, call_id, false));
        let m = if request { method.clone() } else { "INVITE".to_owned() };
        h.push(header("CSeq", None, styles[4], HeaderName::CSeq, format!("{seq} {m}"), folds[4]));
        if let Some(mf) = mf {
            h.push(header("Max-Forwards", None, styles[5], HeaderName::MaxForwards, mf.to_string(), false));
        }
        if !routes.is_empty() {
            let v = routes.iter().map(|r| format!("<{r};lr>")).collect::<Vec<_>>().join(", ");
            h.push(header("Route", None, styles[6], HeaderName::Route, v, folds[6]));
        }
        if let Some(c) = contact {
            h.push(header("Contact", Some("m"), styles[7], HeaderName::Contact, c, false));
        }
        for (i, (n, v)) in extra.into_iter().enumerate() {
            h.push(header(&n, None, 3, HeaderName::Other, v, folds[8 + i % 4]));
        }
        let start = if request { format!("{method} {ruri} SIP/2.0") } else { format!("SIP/2.0 {status} Some Reason") };
        GenMsg { start, request, method, ruri, headers: h, body }
    }
}

/// Boxed, so the large generated tuple does not live on the test's stack frame.
fn message() -> BoxedStrategy<GenMsg> {
    message_unboxed().boxed()
}

/// One deferred edit.
type EditOp = Box<dyn Fn(&mut Editor)>;

fn parse(b: Vec<u8>) -> Message {
    Message::parse_datagram(Bytes::from(b), &Limits::default()).expect("generated message parses")
}

/// Exercise every accessor; none may panic whatever the input.
fn touch(m: &Message) {
    let _ = (
        m.method(),
        m.method_str(),
        m.request_uri(),
        m.status(),
        m.reason(),
        m.version(),
    );
    for (n, raw, v) in m.headers() {
        let _ = (n, raw, v);
    }
    for i in 0..m.header_count() {
        let _ = m.header_unfolded(i);
        let _ = m.value_spans(i).count();
    }
    let _ = m.top_via().map(|v| v.branch.map(|b| b.is_rfc3261()));
    let _ = m.vias().count();
    let _ = (
        m.cseq(),
        m.call_id(),
        m.max_forwards(),
        m.content_length(),
        m.from(),
        m.to(),
    );
    if let Ok(Contact::List(l)) = m.contacts() {
        for c in l.flatten() {
            let _ = (
                c.expires(),
                c.q(),
                c.sip_instance(),
                c.reg_id(),
                c.uri.aor_key(),
                c.uri.user_unescaped(),
            );
        }
    }
    let _ = (
        m.routes().count(),
        m.record_routes().count(),
        m.paths().count(),
    );
    let _ = (check_request(m), check_response(m), m.body());
    if let Some(Ok(u)) = m.request_uri().map(sipedge_shared::sip::Uri::parse) {
        let _ = (u.aor_key(), u.params().iter().count(), u.headers());
    }
    let mut e = Editor::new(m);
    e.insert_top(HeaderName::Via, "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx");
    e.set_via_param(0, "received", Some("192.0.2.1"));
    e.remove_value(0, 1);
    e.replace_value(1, "x");
    e.remove_header(2);
    e.set_request_uri("sip:x@y");
    let _ = e.finish();
}

fn frame_all(data: &[u8], chunk: usize) -> usize {
    let mut f = StreamFramer::new(Limits::default());
    let mut n = 0;
    for piece in data.chunks(chunk.max(1)) {
        f.feed(piece);
        while let Some(ev) = f.next() {
            if let Ok(FrameEvent::Message(m)) = ev {
                touch(&m);
            }
            n += 1;
        }
    }
    let _ = f.eof();
    n
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn parse_print_parse_is_identity(g in message()) {
        let raw = g.bytes();
        let m = parse(raw.clone());
        prop_assert_eq!(m.as_bytes(), &raw[..]);
        prop_assert_eq!(m.is_request(), g.request);
        if g.request {
            prop_assert_eq!(m.method_str(), g.method.as_str());
            prop_assert_eq!(m.request_uri(), Some(g.ruri.as_str()));
            prop_assert!(check_request(&m).is_ok(), "{:?}: {}", check_request(&m), String::from_utf8_lossy(&raw));
        } else {
            prop_assert!(check_response(&m).is_ok(), "{:?}", check_response(&m));
        }
        prop_assert_eq!(m.body(), &g.body[..]);
        prop_assert_eq!(m.header_count(), g.headers.len() + 1);
        for (i, h) in g.headers.iter().enumerate() {
            prop_assert_eq!(m.header_entries()[i].name, h.resolved);
            prop_assert_eq!(m.header_name_raw(i), Some(h.name.as_str()));
            let unfolded = m.header_unfolded(i);
            prop_assert_eq!(unfolded.as_ref(), h.unfolded.as_str());
        }
        // Print with no edits and parse again: same bytes, same index.
        let printed = Editor::new(&m).finish();
        let mut out = Vec::new();
        Editor::new(&m).write_to(&mut out);
        prop_assert_eq!(&out[..], &raw[..]);
        let again = Message::parse_datagram(printed, &Limits::default()).expect("reparse");
        prop_assert_eq!(&again, &m);
        // The stream framer sees the same message.
        let mut f = StreamFramer::new(Limits::default());
        f.feed(&raw);
        match f.next() {
            Some(Ok(FrameEvent::Message(s))) => prop_assert_eq!(&s, &m),
            other => prop_assert!(false, "framer gave {:?}", other),
        }
    }

    #[test]
    fn random_edits_reparse_and_show(
        g in message(),
        new_via in proptest::option::of(via()),
        new_mf in proptest::option::of(0u8..=255),
        received in proptest::option::of(any::<[u8; 4]>()),
        rport in proptest::option::of(1u16..),
        drop_route in proptest::option::of(0usize..4),
        drop_extra in any::<bool>(),
        new_ruri in proptest::option::of(sip_uri()),
        new_body in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
        order in Just(()).prop_perturb(|_, mut rng| rng.next_u32()),
    ) {
        let m = parse(g.bytes());
        let first_via = m.find(HeaderName::Via).expect("has Via");
        let old_top = m.top_via().map(|v| v.branch.map(|b| b.as_str().to_owned())).expect("via").expect("branch");
        let routes_before = m.routes().count();
        let extra_idx = (0..m.header_count()).find(|&i| m.header_entries()[i].name == HeaderName::Other);
        let others_before = m.header_entries().iter().filter(|h| h.name == HeaderName::Other).count();

        let mut ops: Vec<EditOp> = Vec::new();
        if let Some(v) = new_via.clone() { ops.push(Box::new(move |e| e.insert_top(HeaderName::Via, &v))); }
        if let (Some(mf), Some(i)) = (new_mf, m.find(HeaderName::MaxForwards)) {
            ops.push(Box::new(move |e| e.replace_value(i, &mf.to_string())));
        }
        let recv = received.map(|o| std::net::Ipv4Addr::from(o).to_string());
        if let Some(r) = recv.clone() { ops.push(Box::new(move |e| e.set_via_param(first_via, "received", Some(&r)))); }
        if let Some(p) = rport { ops.push(Box::new(move |e| e.set_via_param(first_via, "rport", Some(&p.to_string())))); }
        let route_idx = m.find(HeaderName::Route);
        let dropped = match (drop_route, route_idx) {
            (Some(k), Some(i)) if k < routes_before => { ops.push(Box::new(move |e| e.remove_value(i, k))); true }
            _ => false,
        };
        if let (true, Some(i)) = (drop_extra, extra_idx) { ops.push(Box::new(move |e| e.remove_header(i))); }
        if let (Some(u), true) = (new_ruri.clone(), g.request) { ops.push(Box::new(move |e| e.set_request_uri(&u))); }
        if let Some(b) = new_body.clone() { ops.push(Box::new(move |e| e.set_body(&b))); }
        // Apply in a random rotation: positions refer to the original message.
        let n = ops.len().max(1);
        ops.rotate_left(order as usize % n);
        let mut e = Editor::new(&m);
        for op in &ops { op(&mut e); }
        let out = e.finish();
        let r = Message::parse_datagram(out.clone(), &Limits::default());
        prop_assert!(r.is_ok(), "{:?}\n{}", r.err(), String::from_utf8_lossy(&out));
        let r = r.expect("checked");
        if let Some(v) = &new_via {
            prop_assert_eq!(r.values(HeaderName::Via).next(), Some(v.as_str()));
        }
        // The original top Via is first, or second below an inserted one. Found
        // by position, not branch: the generator may insert an identical Via.
        let old = r.vias().nth(usize::from(new_via.is_some())).and_then(Result::ok);
        let old = old.expect("original top via still present");
        prop_assert_eq!(old.branch.map(|b| b.as_str()), Some(old_top.as_str()));
        if let Some(rc) = &recv { prop_assert_eq!(old.received, Some(rc.as_str())); }
        if let Some(p) = rport { prop_assert_eq!(old.rport, Some(Some(p))); }
        if let (Some(mf), Some(_)) = (new_mf, m.find(HeaderName::MaxForwards)) {
            prop_assert_eq!(r.max_forwards().expect("mf").map(|x| x.get()), Some(mf));
        }
        if dropped { prop_assert_eq!(r.routes().count(), routes_before - 1); }
        if drop_extra && extra_idx.is_some() {
            prop_assert_eq!(r.header_entries().iter().filter(|h| h.name == HeaderName::Other).count(), others_before - 1);
        }
        if let (Some(u), true) = (&new_ruri, g.request) { prop_assert_eq!(r.request_uri(), Some(u.as_str())); }
        match &new_body {
            Some(b) => {
                prop_assert_eq!(r.body(), &b[..]);
                prop_assert_eq!(r.content_length(), Ok(Some(b.len())));
            }
            None => prop_assert_eq!(r.body(), m.body()),
        }
        if g.request {
            prop_assert!(check_request(&r).is_ok(), "{:?}", check_request(&r));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600), chunk in 1usize..64) {
        if let Ok(m) = Message::parse_datagram(Bytes::from(data.clone()), &Limits::default()) { touch(&m); }
        frame_all(&data, chunk);
    }

    #[test]
    fn mutated_messages_never_panic(
        g in message(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), prop_oneof![
            Just(b'\r'), Just(b'\n'), Just(b' '), Just(b':'), Just(b';'), Just(b','), Just(b'<'),
            Just(b'>'), Just(b'"'), Just(b'['), Just(b']'), Just(b'@'), Just(b'%'), Just(0u8), Just(0xffu8), any::<u8>()]), 1..8),
        cut in any::<prop::sample::Index>(),
        chunk in 1usize..40,
    ) {
        let mut raw = g.bytes();
        for (i, b) in flips {
            let i = i.index(raw.len());
            raw[i] = b;
        }
        if let Ok(m) = Message::parse_datagram(Bytes::from(raw.clone()), &Limits::default()) { touch(&m); }
        let n = cut.index(raw.len() + 1);
        frame_all(&raw[..n], chunk);
        frame_all(&raw, chunk);
        let tiny = Limits { max_message: 300, max_headers: 5, max_line: 60 };
        let _ = Message::parse_datagram(Bytes::from(raw.clone()), &tiny);
        let mut f = StreamFramer::new(tiny);
        f.feed(&raw);
        while f.next().is_some() {}
    }
}
