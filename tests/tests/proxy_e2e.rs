//! End-to-end tests of sipedge-proxy behind a real sipedge-lb over loopback,
//! driven by SIPp scenarios (`tests/sipp/`) and small tokio stand-ins.

use std::time::Duration;

use sipedge_tests::proxy_harness::{sipp_or_skip, ProxyOptions, Sipp, Stack};

fn show(r: &sipedge_tests::proxy_harness::SippResult) -> String {
    format!("exit {:?}\n{}", r.code, r.log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_digest_through_lb() {
    if !sipp_or_skip("register_with_digest_through_lb") {
        return;
    }
    let stack = Stack::start(&ProxyOptions::default()).await.expect("stack");
    let dir = tempfile::tempdir().expect("tempdir");
    for transport in ["u1", "t1"] {
        let target = if transport == "u1" {
            stack.udp()
        } else {
            stack.tcp()
        };
        let r = as_alice(
            Sipp::new("register.xml", target, transport, "alice"),
            "alice-secret",
            "sipedge.local",
        )
        .run(dir.path())
        .await
        .expect("sipp ran");
        assert_eq!(r.code, Some(0), "{transport}: {}", show(&r));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    stack.stop().await.expect("stop");
}

/// SIPp with alice's credentials (`-au/-ap`) and the digest `uri` SIPp
/// should use (it defaults to the remote address, not the Request-URI).
fn as_alice(s: Sipp, password: &str, auth_uri: &str) -> Sipp {
    s.arg("-au")
        .arg("alice")
        .arg("-ap")
        .arg(password)
        .arg("-auth_uri")
        .arg(auth_uri)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_gets_401_then_403() {
    if !sipp_or_skip("wrong_password_gets_401_then_403") {
        return;
    }
    let opts = ProxyOptions {
        ip_max_failures: 3,
        ..ProxyOptions::default()
    };
    let stack = Stack::start(&opts).await.expect("stack");
    let dir = tempfile::tempdir().expect("tempdir");
    let r = as_alice(
        Sipp::new("register_wrong.xml", stack.udp(), "u1", "alice"),
        "not-the-password",
        "sipedge.local",
    )
    .run(dir.path())
    .await
    .expect("sipp ran");
    assert_eq!(r.code, Some(0), "{}", show(&r));
    // Banned now: even the right password is refused.
    let r = as_alice(
        Sipp::new("register.xml", stack.udp(), "u1", "alice"),
        "alice-secret",
        "sipedge.local",
    )
    .run(dir.path())
    .await
    .expect("sipp ran");
    assert_ne!(r.code, Some(0), "a banned source must not register");
    assert!(r.log.contains("403"), "{}", show(&r));
    stack.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_nonce_gets_stale_true() {
    if !sipp_or_skip("expired_nonce_gets_stale_true") {
        return;
    }
    let opts = ProxyOptions {
        nonce_lifetime_s: 10,
        ..ProxyOptions::default()
    };
    let stack = Stack::start(&opts).await.expect("stack");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sipp = as_alice(
        Sipp::new("register_stale.xml", stack.udp(), "u1", "alice"),
        "alice-secret",
        "sipedge.local",
    );
    sipp.timeout = Duration::from_secs(30);
    let r = sipp.run(dir.path()).await.expect("sipp ran");
    assert_eq!(r.code, Some(0), "{}", show(&r));
    stack.stop().await.expect("stop");
}

/// Bob registers (SIPp `scenario`), waits for the call, alice calls him.
/// Both SIPp processes share one Call-ID pattern: SIPp maps an incoming
/// INVITE to a call by Call-ID.
async fn call_between_registered_uas(transport: &'static str, edge: &str) {
    call_scenarios(
        transport,
        edge,
        ("call_uas_registered.xml", "call_uac_auth.xml"),
        (200, Some(200)),
    )
    .await;
}

/// Runs `(callee, caller)` scenarios and checks the call's CDR line has
/// `(invite_status, bye_status)`.
async fn call_scenarios(
    transport: &'static str,
    edge: &str,
    (callee, caller): (&str, &str),
    (invite_status, bye_status): (u16, Option<u16>),
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cdr = dir.path().join("cdr.jsonl");
    let opts = ProxyOptions {
        edge: edge.into(),
        cdr: Some(cdr.clone()),
        ..ProxyOptions::default()
    };
    let stack = Stack::start(&opts).await.expect("stack");
    let target = if transport == "u1" {
        stack.udp()
    } else {
        stack.tcp()
    };
    let cid = format!("call-%u-{edge}@test");
    let bob = Sipp::new(callee, target, transport, "bob")
        .arg("-au")
        .arg("bob")
        .arg("-ap")
        .arg("bob-secret")
        .arg("-auth_uri")
        .arg("sipedge.local")
        .arg("-cid_str")
        .arg(&cid);
    let (bob_child, bob_port) = bob.spawn(dir.path()).expect("spawn bob");
    assert!(
        stack
            .wait_registrations(edge, 1, Duration::from_secs(10))
            .await,
        "bob did not register"
    );
    let alice = as_alice(
        Sipp::new(caller, target, transport, "bob"),
        "alice-secret",
        "bob@sipedge.local",
    )
    .arg("-cid_str")
    .arg(&cid)
    .run(dir.path())
    .await
    .expect("alice ran");
    let bob = sipedge_tests::proxy_harness::finish(
        bob_child,
        bob_port,
        dir.path(),
        Duration::from_secs(25),
    )
    .await
    .expect("bob ran");
    assert!(
        alice.code == Some(0) && bob.code == Some(0),
        "alice: {}\n\nbob: {}",
        show(&alice),
        show(&bob)
    );
    // One CDR line for the call, answered and ended by the BYE.
    let mut line = None;
    for _ in 0..100 {
        let text = std::fs::read_to_string(&cdr).unwrap_or_default();
        if let Some(l) = text.lines().next() {
            line = Some(l.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rec: serde_json::Value =
        serde_json::from_str(&line.expect("a CDR line")).expect("CDR is JSON");
    assert_eq!(rec["invite_status"], invite_status, "{rec}");
    assert_eq!(
        rec["bye_status"].as_u64(),
        bye_status.map(u64::from),
        "{rec}"
    );
    assert_eq!(rec["to"], "sip:bob@sipedge.local", "{rec}");
    assert_eq!(rec["route"], "sip2sip", "{rec}");
    assert_eq!(
        rec["answer_ms"].as_u64().is_some(),
        invite_status == 200,
        "{rec}"
    );
    stack.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_with_bye_over_udp() {
    if !sipp_or_skip("call_with_bye_over_udp") {
        return;
    }
    call_between_registered_uas("u1", "call-udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callee_hangs_up_over_udp() {
    if !sipp_or_skip("callee_hangs_up_over_udp") {
        return;
    }
    call_scenarios(
        "u1",
        "hangup",
        ("call_uas_registered_hangup.xml", "call_uac_auth_hungup.xml"),
        (200, Some(200)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_cancels_a_ringing_call() {
    if !sipp_or_skip("caller_cancels_a_ringing_call") {
        return;
    }
    // The callee's scenario expects the proxy's CANCEL; the caller gets 487.
    call_scenarios(
        "u1",
        "cancel",
        ("call_uas_ring_cancel.xml", "call_uac_auth_cancel.xml"),
        (487, None),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_with_bye_over_tcp() {
    if !sipp_or_skip("call_with_bye_over_tcp") {
        return;
    }
    call_between_registered_uas("t1", "call-tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forking_to_two_contacts() {
    if !sipp_or_skip("forking_to_two_contacts") {
        return;
    }
    let edge = "fork";
    let opts = ProxyOptions {
        edge: edge.into(),
        ..ProxyOptions::default()
    };
    let stack = Stack::start(&opts).await.expect("stack");
    let dir = tempfile::tempdir().expect("tempdir");
    let cid = format!("call-%u-{edge}@test");
    let bob = |scenario: &str| {
        Sipp::new(scenario, stack.udp(), "u1", "bob")
            .arg("-au")
            .arg("bob")
            .arg("-ap")
            .arg("bob-secret")
            .arg("-auth_uri")
            .arg("sipedge.local")
            .arg("-cid_str")
            .arg(&cid)
    };
    // Two contacts for bob: one answers after ringing, one only rings.
    let (answerer, a_port) = bob("call_uas_registered.xml")
        .spawn(dir.path())
        .expect("spawn");
    let (ringer, r_port) = bob("call_uas_ring_cancel.xml")
        .spawn(dir.path())
        .expect("spawn");
    assert!(
        stack
            .wait_registrations(edge, 2, Duration::from_secs(10))
            .await,
        "both contacts must register"
    );
    let alice = as_alice(
        Sipp::new("call_uac_auth.xml", stack.udp(), "u1", "bob"),
        "alice-secret",
        "bob@sipedge.local",
    )
    .arg("-cid_str")
    .arg(&cid)
    .run(dir.path())
    .await
    .expect("alice ran");
    let limit = Duration::from_secs(25);
    let harness = sipedge_tests::proxy_harness::finish;
    let answerer = harness(answerer, a_port, dir.path(), limit)
        .await
        .expect("ran");
    let ringer = harness(ringer, r_port, dir.path(), limit)
        .await
        .expect("ran");
    assert_eq!(alice.code, Some(0), "alice: {}", show(&alice));
    assert_eq!(answerer.code, Some(0), "answerer: {}", show(&answerer));
    // The ringing contact was CANCELled (its scenario expects the CANCEL).
    assert_eq!(ringer.code, Some(0), "ringer: {}", show(&ringer));
    stack.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pstn_prefix_routing_fails_over_on_503() {
    if !sipp_or_skip("pstn_prefix_routing_fails_over_on_503") {
        return;
    }
    use sipedge_tests::proxy_harness::{Gateway, GatewayMode};
    let down = Gateway::start(GatewayMode::Fail(503)).await.expect("gw");
    let up = Gateway::start(GatewayMode::Answer).await.expect("gw");
    let other = Gateway::start(GatewayMode::Answer).await.expect("gw");
    let opts = ProxyOptions {
        edge: "pstn".into(),
        gateway_groups: vec![
            ("de".into(), vec!["49".into()], vec![other.addr]),
            (
                "de-berlin".into(),
                vec!["4930".into()],
                vec![down.addr, up.addr],
            ),
        ],
        ..ProxyOptions::default()
    };
    let stack = Stack::start(&opts).await.expect("stack");
    let dir = tempfile::tempdir().expect("tempdir");
    let number = "+4930123456";
    let alice = as_alice(
        Sipp::new("call_uac_auth.xml", stack.udp(), "u1", number),
        "alice-secret",
        &format!("{number}@sipedge.local"),
    )
    .run(dir.path())
    .await
    .expect("alice ran");
    assert_eq!(alice.code, Some(0), "alice: {}", show(&alice));
    // Longest prefix (4930) chose the Berlin group; its first gateway's 503
    // moved the call to the second, which saw the whole dialog.
    assert_eq!(down.methods(), ["INVITE", "ACK"], "failed gateway");
    assert_eq!(up.methods(), ["INVITE", "ACK", "BYE"], "answering gateway");
    assert!(
        other.methods().is_empty(),
        "shorter prefix must not be used"
    );
    stack.stop().await.expect("stop");
}

/// A request from a fresh UDP socket; its final response (bounded wait).
async fn ask(
    to: std::net::SocketAddr,
    method: &str,
    ruri: &str,
    from: &str,
    extra: &str,
) -> Option<sipedge_shared::sip::Message> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
    let me = sock.local_addr().ok()?;
    let id = format!("{:016x}", rand_id());
    let msg = format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <{from}>;tag=t{id}\r\nTo: <{ruri}>\r\nCall-ID: {id}@test\r\n\
         CSeq: 1 {method}\r\nContact: <sip:u@{me}>\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), to).await.ok()?;
    sipedge_tests::lb_harness::recv_final(&sock, Duration::from_secs(3)).await
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_unregistered_and_no_open_relay() {
    use sipedge_tests::proxy_harness::{Gateway, GatewayMode};
    let gw = Gateway::start(GatewayMode::Answer).await.expect("gw");
    let opts = ProxyOptions {
        edge: "relay".into(),
        gateway_groups: vec![("all".into(), vec!["".into()], vec![gw.addr])],
        ..ProxyOptions::default()
    };
    let stack = Stack::start(&opts).await.expect("stack");
    let lb = stack.udp();
    let stranger = "sip:mallory@evil.example";
    let bogus = "Proxy-Authorization: Digest username=\"mallory\", realm=\"sipedge.local\", \
                 nonce=\"x\", uri=\"sip:x@other.example\", response=\"00000000000000000000000000000000\"\r\n";
    // (method, Request-URI, From, extra headers, expected final status)
    let table: &[(&str, &str, &str, &str, u16)] = &[
        // Calls from outside to our users need no credentials.
        ("INVITE", "sip:nobody@sipedge.local", stranger, "", 404),
        // carol exists but has no binding.
        ("INVITE", "sip:carol@sipedge.local", stranger, "", 480),
        // Beyond us: an INVITE is challenged once ...
        ("INVITE", "sip:x@other.example", stranger, "", 407),
        // ... and refused when the credentials are not ours.
        ("INVITE", "sip:x@other.example", stranger, bogus, 403),
        // Other methods are refused at once; so is the PSTN.
        ("MESSAGE", "sip:x@other.example", stranger, "", 403),
        ("MESSAGE", "sip:+4930123@sipedge.local", stranger, "", 403),
        // Our own users always authenticate.
        (
            "INVITE",
            "sip:bob@sipedge.local",
            "sip:alice@sipedge.local",
            "",
            407,
        ),
        // REGISTER for a foreign domain.
        ("REGISTER", "sip:other.example", stranger, "", 403),
    ];
    for (method, ruri, from, extra, want) in table {
        let r = ask(lb, method, ruri, from, extra).await;
        let got = r.as_ref().and_then(|m| m.status());
        assert_eq!(got, Some(*want), "{method} {ruri} from {from}");
    }
    // Straight to the proxy (the LB would strip it): a pre-loaded Route
    // is no way around authentication either.
    let steer = "Route: <sip:192.0.2.66:5060;lr>\r\n";
    for (method, want) in [("INVITE", 407), ("MESSAGE", 403)] {
        let r = ask(
            stack.proxy.addrs.udp,
            method,
            "sip:bob@sipedge.local",
            stranger,
            steer,
        )
        .await;
        assert_eq!(
            r.and_then(|m| m.status()),
            Some(want),
            "{method} with Route"
        );
    }
    // A CANCEL matching no INVITE.
    let r = ask(
        stack.proxy.addrs.udp,
        "CANCEL",
        "sip:bob@sipedge.local",
        stranger,
        "",
    )
    .await;
    assert_eq!(r.and_then(|m| m.status()), Some(481));
    // The proxy alone (no LB) answers OPTIONS pings (sipmon) with 200.
    let ping = ask(
        stack.proxy.addrs.udp,
        "OPTIONS",
        &format!("sip:{}", stack.proxy.addrs.udp),
        "sip:sipmon@monitor.local",
        "",
    )
    .await;
    assert_eq!(ping.and_then(|m| m.status()), Some(200));
    assert!(gw.methods().is_empty(), "nothing may reach the PSTN");
    stack.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenges_offer_sha256_first_then_md5() {
    let opts = ProxyOptions {
        edge: "sha".into(),
        md5_first: false,
        ..ProxyOptions::default()
    };
    let stack = Stack::start(&opts).await.expect("stack");
    let r = ask(
        stack.udp(),
        "REGISTER",
        "sip:sipedge.local",
        "sip:alice@sipedge.local",
        "",
    )
    .await
    .expect("a response");
    assert_eq!(r.status(), Some(401));
    let challenges: Vec<String> = r
        .headers()
        .filter(|(n, _, _)| *n == sipedge_shared::sip::HeaderName::WwwAuthenticate)
        .map(|(_, _, v)| v.to_string())
        .collect();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(
        challenges[0].contains("algorithm=SHA-256"),
        "{challenges:?}"
    );
    assert!(challenges[1].contains("algorithm=MD5"), "{challenges:?}");
    assert!(challenges
        .iter()
        .all(|c| c.contains("realm=\"sipedge.local\"")));
    stack.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_503_goes_upstream_as_500() {
    if !sipp_or_skip("downstream_503_goes_upstream_as_500") {
        return;
    }
    use sipedge_tests::proxy_harness::{Gateway, GatewayMode};
    let down = Gateway::start(GatewayMode::Fail(503)).await.expect("gw");
    let opts = ProxyOptions {
        edge: "five".into(),
        gateway_groups: vec![("all".into(), vec!["".into()], vec![down.addr])],
        ..ProxyOptions::default()
    };
    let stack = Stack::start(&opts).await.expect("stack");
    let dir = tempfile::tempdir().expect("tempdir");
    let number = "4930123456";
    let alice = as_alice(
        Sipp::new("call_uac_auth_500.xml", stack.udp(), "u1", number),
        "alice-secret",
        &format!("{number}@sipedge.local"),
    )
    .run(dir.path())
    .await
    .expect("alice ran");
    // 500, not 503: the LB must not fail over what we already tried.
    assert_eq!(alice.code, Some(0), "alice: {}", show(&alice));
    assert_eq!(down.methods(), ["INVITE", "ACK"]);
    stack.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_answers_503_so_the_lb_fails_over() {
    // Nothing listens on port 1: every lookup fails as "unavailable".
    let opts = ProxyOptions {
        edge: "storedown".into(),
        users_db_url: Some("postgres://sipedge@127.0.0.1:1/sipedge".into()),
        ..ProxyOptions::default()
    };
    let stack = Stack::start(&opts).await.expect("stack");
    let stranger = "sip:mallory@evil.example";
    let direct = ask(
        stack.proxy.addrs.udp,
        "INVITE",
        "sip:carol@sipedge.local",
        stranger,
        "",
    )
    .await
    .expect("a response");
    assert_eq!(direct.status(), Some(503));
    assert!(direct.find_str("Retry-After").is_some());
    // Through the LB: its only proxy said 503, so it answers 500 itself.
    let via_lb = ask(
        stack.udp(),
        "INVITE",
        "sip:carol@sipedge.local",
        stranger,
        "",
    )
    .await
    .expect("a response");
    assert_eq!(via_lb.status(), Some(500));
    stack.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_brief_registration_gets_423() {
    if !sipp_or_skip("too_brief_registration_gets_423") {
        return;
    }
    let stack = Stack::start(&ProxyOptions::default()).await.expect("stack");
    let dir = tempfile::tempdir().expect("tempdir");
    let r = as_alice(
        Sipp::new("register_brief.xml", stack.udp(), "u1", "alice"),
        "alice-secret",
        "sipedge.local",
    )
    .run(dir.path())
    .await
    .expect("sipp ran");
    assert_eq!(r.code, Some(0), "{}", show(&r));
    assert!(r.log.contains("Min-Expires: 60"), "{}", show(&r));
    stack.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_must_match_the_credentials() {
    if !sipp_or_skip("from_must_match_the_credentials") {
        return;
    }
    let stack = Stack::start(&ProxyOptions::default()).await.expect("stack");
    let dir = tempfile::tempdir().expect("tempdir");
    let r = as_alice(
        Sipp::new("call_uac_spoofed_from.xml", stack.udp(), "u1", "bob"),
        "alice-secret",
        "bob@sipedge.local",
    )
    .run(dir.path())
    .await
    .expect("sipp ran");
    assert_eq!(r.code, Some(0), "{}", show(&r));
    stack.stop().await.expect("stop");
}
