//! End-to-end tests of sipedge-lb over real loopback sockets: a UDP/TCP
//! client, the LB started in-process on port 0, and UDP stand-in proxies.

use std::net::SocketAddr;
use std::time::Duration;

use sipedge_lb::proxy_set::Proxy;
use sipedge_shared::hash;
use sipedge_shared::sip::{FrameEvent, HeaderName, Limits, Message, StreamFramer};
use sipedge_tests::lb_harness::{
    recv_final, recv_msg, request, Answer, LbOptions, TestLb, TestProxy, TEST_TOKEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(3);

async fn three(answers: [Answer; 3]) -> Vec<TestProxy> {
    let mut v = Vec::new();
    for (i, a) in answers.into_iter().enumerate() {
        v.push(
            TestProxy::start(&format!("p{}", i + 1), a)
                .await
                .expect("bind proxy"),
        );
    }
    v
}

fn opts(proxies: &[TestProxy]) -> LbOptions {
    LbOptions::new(proxies.iter().map(|p| (p.id.clone(), p.addr)).collect())
}

fn ids(proxies: &[TestProxy]) -> Vec<Proxy> {
    let mut v: Vec<Proxy> = proxies
        .iter()
        .map(|p| Proxy {
            id: p.id.clone(),
            addr: p.addr,
        })
        .collect();
    v.sort();
    v
}

async fn client() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    let a = s.local_addr().expect("bound");
    (s, a)
}

fn forwarded(proxies: &[TestProxy], call_id: &str) -> Option<Message> {
    proxies
        .iter()
        .flat_map(|p| p.received.lock().expect("lock").clone())
        .find(|m| m.call_id().ok() == Some(call_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_proxies_as_the_hash_says() {
    let proxies = three([Answer::Ok; 3]).await;
    let lb = TestLb::start(opts(&proxies)).await.expect("lb");
    let (c, ca) = client().await;
    let set = ids(&proxies);
    for i in 0..30 {
        let ruri = format!("sip:user{i}@example.com");
        let call_id = format!("spread{i}");
        let req = request("OPTIONS", &ruri, ca, &call_id, "");
        c.send_to(req.as_bytes(), lb.addrs.udp[0])
            .await
            .expect("send");
        let resp = recv_final(&c, WAIT).await.expect("answer");
        assert_eq!(resp.status(), Some(200));
        let want = &set[hash::best(&format!("user{i}@example.com"), &set).expect("non-empty")];
        let got = proxies.iter().find(|p| p.addr == want.addr).expect("proxy");
        let landed = got
            .received
            .lock()
            .expect("lock")
            .iter()
            .any(|m| m.call_id().ok() == Some(call_id.as_str()));
        assert!(landed, "user{i} should land on {}", want.id);
    }
    let counts: Vec<usize> = proxies.iter().map(|p| p.count("OPTIONS")).collect();
    assert_eq!(counts.iter().sum::<usize>(), 30);
    assert!(counts.iter().all(|n| *n > 0), "{counts:?}");
    lb.stop().await.expect("stop");
}

/// The proxies for `key` in rank order.
fn ranked<'a>(proxies: &'a [TestProxy], key: &str) -> Vec<&'a TestProxy> {
    let set = ids(proxies);
    hash::rank(key, &set)
        .map(|i| {
            proxies
                .iter()
                .find(|p| p.addr == set[i].addr)
                .expect("known")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_moves_the_request_to_the_next_proxy() {
    let proxies = three([Answer::Ok; 3]).await;
    let order = ranked(&proxies, "carol@example.com");
    order[0].set_answer(Answer::Status(503));
    let lb = TestLb::start(opts(&proxies)).await.expect("lb");
    let (c, ca) = client().await;
    let req = request("INVITE", "sip:carol@example.com", ca, "fo503", "");
    c.send_to(req.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    let resp = recv_final(&c, WAIT).await.expect("final");
    assert_eq!(resp.status(), Some(200));
    assert_eq!(order[0].count("INVITE"), 1);
    assert_eq!(order[1].count("INVITE"), 1);
    // The 503 was acknowledged hop by hop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(order[0].count("ACK"), 1);
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_proxy_fails_over_after_the_timer_and_other_errors_do_not() {
    let proxies = three([Answer::Ok; 3]).await;
    let order = ranked(&proxies, "dave@example.com");
    order[0].set_answer(Answer::Silent);
    let lb = TestLb::start(opts(&proxies)).await.expect("lb");
    let (c, ca) = client().await;
    let req = request("OPTIONS", "sip:dave@example.com", ca, "fotimer", "");
    c.send_to(req.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    let resp = recv_final(&c, WAIT).await.expect("final");
    assert_eq!(resp.status(), Some(200));
    assert_eq!(order[1].count("OPTIONS"), 1);

    // 486 is relayed as is: no failover.
    order[0].set_answer(Answer::Status(486));
    let req = request("OPTIONS", "sip:dave@example.com", ca, "no-fo", "");
    c.send_to(req.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    let resp = recv_final(&c, WAIT).await.expect("final");
    assert_eq!(resp.status(), Some(486));
    assert_eq!(order[1].count("OPTIONS"), 1);
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_proxies_503_gives_500() {
    let proxies = three([Answer::Status(503); 3]).await;
    let lb = TestLb::start(opts(&proxies)).await.expect("lb");
    let (c, ca) = client().await;
    let req = request("OPTIONS", "sip:erin@example.com", ca, "all503", "");
    c.send_to(req.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    let resp = recv_final(&c, WAIT).await.expect("final");
    assert_eq!(resp.status(), Some(500));
    let total: usize = proxies.iter().map(|p| p.count("OPTIONS")).sum();
    assert_eq!(total, 3);
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_forwards_zero_gets_483_and_missing_gets_70() {
    let proxies = three([Answer::Ok; 3]).await;
    let lb = TestLb::start(opts(&proxies)).await.expect("lb");
    let (c, ca) = client().await;
    let req = request("OPTIONS", "sip:f@example.com", ca, "mf0", "")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    c.send_to(req.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    let resp = recv_final(&c, WAIT).await.expect("final");
    assert_eq!(resp.status(), Some(483));
    let total: usize = proxies.iter().map(|p| p.count("OPTIONS")).sum();
    assert_eq!(total, 0);

    let req = request("OPTIONS", "sip:f@example.com", ca, "mfnone", "")
        .replace("Max-Forwards: 70\r\n", "");
    c.send_to(req.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    assert_eq!(
        recv_final(&c, WAIT).await.and_then(|m| m.status()),
        Some(200)
    );
    let fwd = forwarded(&proxies, "mfnone").expect("forwarded");
    assert_eq!(fwd.max_forwards().ok().flatten().map(|m| m.get()), Some(70));
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_route_never_reaches_the_sink() {
    let proxies = three([Answer::Ok; 3]).await;
    let lb = TestLb::start(opts(&proxies)).await.expect("lb");
    let sink = UdpSocket::bind("127.0.0.1:0").await.expect("sink");
    let sink_addr = sink.local_addr().expect("bound");
    let (c, ca) = client().await;
    let route = format!("Route: <sip:{sink_addr};lr>\r\nRoute: <sip:b2bua-14;lr>\r\n");
    let req = request("OPTIONS", "sip:g@example.com", ca, "spoof", &route);
    c.send_to(req.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    assert_eq!(
        recv_final(&c, WAIT).await.and_then(|m| m.status()),
        Some(200)
    );
    assert!(
        recv_msg(&sink, Duration::from_millis(300)).await.is_none(),
        "sink got a message"
    );
    let fwd = forwarded(&proxies, "spoof").expect("forwarded to a proxy");
    assert_eq!(fwd.count(HeaderName::Route), 0, "Routes stripped");
    lb.stop().await.expect("stop");
}

async fn read_event(
    tcp: &mut (impl AsyncReadExt + Unpin),
    framer: &mut StreamFramer,
    wait: Duration,
) -> Option<FrameEvent> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(ev) = framer.next() {
            return ev.ok();
        }
        let mut buf = [0u8; 4096];
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let n = tokio::time::timeout(left, tcp.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        framer.feed(&buf[..n]);
    }
}

fn response_status(proxy: &TestProxy, call_id: &str) -> Option<u16> {
    proxy
        .responses
        .lock()
        .expect("lock")
        .iter()
        .find(|m| m.call_id().ok() == Some(call_id))
        .and_then(Message::status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_register_gets_a_path_and_requests_follow_the_flow_then_430() {
    let proxies = three([Answer::Ok; 3]).await;
    let lb = TestLb::start(opts(&proxies)).await.expect("lb");
    let mut tcp = TcpStream::connect(lb.addrs.tcp[0]).await.expect("connect");
    let me = tcp.local_addr().expect("bound");
    let reg = request("REGISTER", "sip:example.com", me, "regtcp", "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    tcp.write_all(reg.as_bytes()).await.expect("write");
    let mut framer = StreamFramer::new(Limits::default());
    let ok = loop {
        match read_event(&mut tcp, &mut framer, WAIT).await {
            Some(FrameEvent::Message(m)) if m.status().is_some_and(|s| s >= 200) => break m,
            Some(_) => continue,
            None => panic!("no answer to REGISTER"),
        }
    };
    assert_eq!(ok.status(), Some(200));
    let fwd = forwarded(&proxies, "regtcp").expect("REGISTER forwarded");
    let path = fwd
        .header(HeaderName::Path)
        .expect("Path added")
        .to_string();
    assert!(path.contains(";lr;ob>"), "{path}");
    assert!(path.contains(&lb.addrs.internal.to_string()), "{path}");

    // The registrar (a test proxy) sends an INVITE through the Path.
    let proxy = &proxies[0];
    let invite = format!(
        "INVITE sip:bob@{me};transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKpx1\r\nRoute: {path}\r\nMax-Forwards: 69\r\nFrom: <sip:carol@example.com>;tag=c1\r\nTo: <sip:bob@example.com>\r\nCall-ID: toward-user\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        proxy.addr
    );
    proxy
        .socket
        .send_to(invite.as_bytes(), lb.addrs.internal)
        .await
        .expect("send");
    let got = loop {
        match read_event(&mut tcp, &mut framer, WAIT).await {
            Some(FrameEvent::Message(m)) if m.is_request() => break m,
            Some(_) => continue,
            None => panic!("INVITE did not reach the client over its TCP flow"),
        }
    };
    assert_eq!(got.call_id().ok(), Some("toward-user"));
    assert_eq!(got.count(HeaderName::Route), 0, "our Path entry popped");
    // The callee's route set starts at our outer face, then the inner one.
    let rrs: Vec<String> = got
        .values(HeaderName::RecordRoute)
        .map(|v| v.to_string())
        .collect();
    assert_eq!(rrs.len(), 2, "{rrs:?}");
    assert!(
        rrs[0].contains("transport=tcp"),
        "outer face on top: {rrs:?}"
    );
    assert!(rrs[1].contains(&lb.addrs.internal.to_string()), "{rrs:?}");

    // The client goes away: the next request through the Path gets 430.
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = invite
        .replace("toward-user", "toward-gone")
        .replace("z9hG4bKpx1", "z9hG4bKpx2");
    proxy
        .socket
        .send_to(again.as_bytes(), lb.addrs.internal)
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(response_status(proxy, "toward-gone"), Some(430));

    // A forged token gets 403.
    let forged = invite
        .replace("toward-user", "forged")
        .replace("z9hG4bKpx1", "z9hG4bKpx3")
        .replace("Route: <sip:", "Route: <sip:AAAA");
    proxy
        .socket
        .send_to(forged.as_bytes(), lb.addrs.internal)
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(response_status(proxy, "forged"), Some(403));
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tcp_flow_receives_double_crlf_and_a_ping_gets_a_pong() {
    let proxies = three([Answer::Ok; 3]).await;
    let mut o = opts(&proxies);
    o.keepalive = Duration::from_millis(200);
    let lb = TestLb::start(o).await.expect("lb");
    let mut tcp = TcpStream::connect(lb.addrs.tcp[0]).await.expect("connect");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .expect("ping in time")
        .expect("read");
    assert_eq!(&buf[..n], b"\r\n\r\n");
    tcp.write_all(b"\r\n\r\n").await.expect("write");
    let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .expect("pong in time")
        .expect("read");
    assert!(buf[..n].starts_with(b"\r\n"), "{:?}", &buf[..n]);
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_v1_proxies_changes_routing_and_refuses_stale_generations() {
    let proxies = three([Answer::Ok; 3]).await;
    let lb = TestLb::start(opts(&proxies)).await.expect("lb");
    let url = format!("http://{}/v1/proxies", lb.addrs.admin);
    let http = reqwest::Client::new();
    // Only p3 up.
    let reported: Vec<_> = proxies
        .iter()
        .map(|p| serde_json::json!({"id": p.id, "addr": p.addr.to_string(), "up": p.id == "p3"}))
        .collect();
    let body = serde_json::json!({ "monitor": "m1", "generation": 10, "proxies": reported });
    let r = http
        .put(&url)
        .bearer_auth(TEST_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 200);
    let (c, ca) = client().await;
    for i in 0..5 {
        let req = request(
            "OPTIONS",
            &format!("sip:h{i}@example.com"),
            ca,
            &format!("put{i}"),
            "",
        );
        c.send_to(req.as_bytes(), lb.addrs.udp[0])
            .await
            .expect("send");
        assert_eq!(
            recv_final(&c, WAIT).await.and_then(|m| m.status()),
            Some(200)
        );
    }
    assert_eq!(proxies[2].count("OPTIONS"), 5);
    let r = http
        .put(&url)
        .bearer_auth(TEST_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 409, "stale generation refused");
    let r = http
        .put(&url)
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 401);
    let admin = lb.addrs.admin;
    let ready = http
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .expect("get");
    assert_eq!(ready.status().as_u16(), 200);
    let text = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains("sipedge_lb_requests_total"),
        "metrics rendered"
    );
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_follows_its_invite_and_the_487_is_acked_hop_by_hop() {
    let proxies = three([Answer::Ring; 3]).await;
    let lb = TestLb::start(opts(&proxies)).await.expect("lb");
    let (c, ca) = client().await;
    let invite = request("INVITE", "sip:ivan@example.com", ca, "cancel1", "");
    c.send_to(invite.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    // Wait for the 180 before cancelling.
    let mut rang = false;
    while let Some(m) = recv_msg(&c, WAIT).await {
        if m.status() == Some(180) {
            rang = true;
            break;
        }
    }
    assert!(rang, "180 relayed");
    let cancel = invite
        .replace("INVITE sip:", "CANCEL sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    c.send_to(cancel.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    let mut statuses = Vec::new();
    while let Some(m) = recv_msg(&c, WAIT).await {
        if let (Some(s), Ok(cseq)) = (m.status(), m.cseq()) {
            statuses.push((s, cseq.method_str.to_string()));
        }
        if statuses.iter().any(|(s, _)| *s == 487) {
            break;
        }
    }
    assert!(
        statuses.contains(&(200, "CANCEL".to_string())),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&(487, "INVITE".to_string())),
        "{statuses:?}"
    );
    // Our ACK for the 487 went to the proxy; the client's ACK is absorbed.
    let ack = invite
        .replace("INVITE sip:", "ACK sip:")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    c.send_to(ack.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let acks: usize = proxies.iter().map(|p| p.count("ACK")).sum();
    let cancels: usize = proxies.iter().map(|p| p.count("CANCEL")).sum();
    assert_eq!((acks, cancels), (1, 1));
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_udp_request_gets_400_naming_the_fault() {
    let proxies = three([Answer::Ok; 3]).await;
    let lb = TestLb::start(opts(&proxies)).await.expect("lb");
    let (c, ca) = client().await;
    let req = request("OPTIONS", "sip:j@example.com", ca, "clerr", "")
        .replace("Content-Length: 0", "Content-Length: 9999");
    c.send_to(req.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    let resp = recv_final(&c, WAIT).await.expect("an answer");
    assert_eq!(resp.status(), Some(400));
    assert!(resp
        .reason()
        .is_some_and(|r| r.len() > "Bad Request".len() - 1));
    let total: usize = proxies.iter().map(|p| p.count("OPTIONS")).sum();
    assert_eq!(total, 0);
    // A SIP version other than 2.0 gets 505; an unknown URI scheme 416.
    let req = request("OPTIONS", "sip:j@example.com", ca, "v3", "").replace(
        "OPTIONS sip:j@example.com SIP/2.0",
        "OPTIONS sip:j@example.com SIP/3.0",
    );
    c.send_to(req.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    assert_eq!(
        recv_final(&c, WAIT).await.and_then(|m| m.status()),
        Some(505)
    );
    let req = request("OPTIONS", "foo:j@example.com", ca, "scheme", "");
    c.send_to(req.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    assert_eq!(
        recv_final(&c, WAIT).await.and_then(|m| m.status()),
        Some(416)
    );
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_comes_back_to_us_is_a_loop_482() {
    // The only "proxy" is the LB's own external address: the forwarded
    // request arrives again carrying our branch.
    let placeholder = TestProxy::start("self", Answer::Ok).await.expect("bind");
    let lb = TestLb::start(opts(std::slice::from_ref(&placeholder)))
        .await
        .expect("lb");
    let url = format!("http://{}/v1/proxies", lb.addrs.admin);
    let body = serde_json::json!({
        "monitor": "m1", "generation": 1,
        "proxies": [{"id": "self", "addr": lb.addrs.udp[0].to_string(), "up": true}]
    });
    let r = reqwest::Client::new()
        .put(&url)
        .bearer_auth(TEST_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 200);
    let (c, ca) = client().await;
    let req = request("OPTIONS", "sip:loop@example.com", ca, "loop1", "");
    c.send_to(req.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    assert_eq!(
        recv_final(&c, WAIT).await.and_then(|m| m.status()),
        Some(482)
    );
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_source_gets_503_with_a_randomised_retry_after() {
    let proxies = three([Answer::Ok; 3]).await;
    let mut o = opts(&proxies);
    let n = |v: u32| std::num::NonZeroU32::new(v).expect("non-zero");
    o.flood.requests_per_sec = n(1);
    o.flood.requests_burst = n(5);
    o.flood.retry_after = (10, 300);
    let lb = TestLb::start(o).await.expect("lb");
    let (c, ca) = client().await;
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for i in 0..12 {
        let req = request("OPTIONS", "sip:k@example.com", ca, &format!("flood{i}"), "");
        c.send_to(req.as_bytes(), lb.addrs.udp[0])
            .await
            .expect("send");
        let m = recv_final(&c, WAIT).await.expect("answer");
        statuses.push(m.status().unwrap_or(0));
        if let Some(v) = m.header(HeaderName::RetryAfter) {
            retry_after.push(v.trim().parse::<u32>().expect("seconds"));
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        7,
        "{statuses:?}"
    );
    assert!(
        retry_after.iter().all(|r| (10..=300).contains(r)),
        "{retry_after:?}"
    );
    let distinct: std::collections::HashSet<_> = retry_after.iter().collect();
    assert!(distinct.len() > 1, "randomised: {retry_after:?}");
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dialog_requests_follow_our_signed_record_route() {
    let proxies = three([Answer::Ok; 3]).await;
    let lb = TestLb::start(opts(&proxies)).await.expect("lb");
    let (c, ca) = client().await;
    let invite = request("INVITE", "sip:leo@example.com", ca, "dialog1", "");
    c.send_to(invite.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    assert_eq!(
        recv_final(&c, WAIT).await.and_then(|m| m.status()),
        Some(200)
    );
    let fwd = forwarded(&proxies, "dialog1").expect("INVITE forwarded");
    let rrs: Vec<String> = fwd
        .values(HeaderName::RecordRoute)
        .map(|v| v.to_string())
        .collect();
    assert_eq!(rrs.len(), 2, "double Record-Route: {rrs:?}");
    assert!(
        rrs[0].contains(&lb.addrs.internal.to_string()),
        "inner face first: {rrs:?}"
    );
    assert!(rrs
        .iter()
        .all(|r| r.contains("ftok=") && r.contains("px=") && r.contains("sig=")));
    let served_by = proxies
        .iter()
        .find(|p| p.count("INVITE") == 1)
        .expect("one proxy served")
        .id
        .clone();
    // The caller's route set is the Record-Route list reversed.
    let route = format!("Route: {}, {}\r\n", rrs[1], rrs[0]);
    let bye = request("BYE", "sip:uas@127.0.0.1:9", ca, "dialog1", &route)
        .replace("CSeq: 1 BYE", "CSeq: 2 BYE")
        .replace(
            "To: <sip:uas@127.0.0.1:9>",
            "To: <sip:leo@example.com>;tag=uas",
        )
        .replace("branch=z9hG4bKdialog1x", "branch=z9hG4bKdialog1bye");
    c.send_to(bye.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    assert_eq!(
        recv_final(&c, WAIT).await.and_then(|m| m.status()),
        Some(200)
    );
    let p = proxies.iter().find(|p| p.id == served_by).expect("proxy");
    assert_eq!(p.count("BYE"), 1, "BYE pinned to {served_by}");
    let fwd_bye = p
        .received
        .lock()
        .expect("lock")
        .iter()
        .find(|m| m.method_str() == "BYE")
        .cloned()
        .expect("BYE");
    assert_eq!(fwd_bye.count(HeaderName::Route), 0, "our entries popped");
    lb.stop().await.expect("stop");
}

async fn udp_flows(http: &reqwest::Client, lb: &TestLb) -> u64 {
    let v: serde_json::Value = http
        .get(format!("http://{}/v1/flows", lb.addrs.admin))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    v["udp"].as_u64().expect("udp count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_clients_count_as_flows_until_they_go_quiet() {
    let proxies = three([Answer::Ok; 3]).await;
    let mut o = opts(&proxies);
    // A UDP flow stays counted for two keepalive intervals of silence.
    o.keepalive = Duration::from_millis(200);
    let lb = TestLb::start(o).await.expect("lb");
    let http = reqwest::Client::new();
    assert_eq!(udp_flows(&http, &lb).await, 0);
    let (a, aa) = client().await;
    let (b, ba) = client().await;
    for (i, (c, ca)) in [(&a, aa), (&b, ba), (&a, aa)].into_iter().enumerate() {
        let req = request("OPTIONS", "sip:flows@example.com", ca, &format!("f{i}"), "");
        c.send_to(req.as_bytes(), lb.addrs.udp[0])
            .await
            .expect("send");
        assert_eq!(
            recv_final(c, WAIT).await.and_then(|m| m.status()),
            Some(200)
        );
    }
    assert_eq!(udp_flows(&http, &lb).await, 2, "two clients, two flows");
    let quiet = sipedge_tests::proxy_harness::eventually(Duration::from_secs(5), || async {
        udp_flows(&http, &lb).await == 0
    })
    .await;
    assert!(quiet, "silent UDP flows are no longer counted");
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmission_after_the_final_goes_to_the_proxy_that_answered() {
    // The LB keeps no copy of a relayed final: the retransmitted request is
    // relayed, with the same branch, to the proxy that answered (after a
    // failover, not the first-ranked one), and its answer reaches the client.
    let proxies = three([Answer::Ok; 3]).await;
    let order = ranked(&proxies, "fay@example.com");
    order[0].set_answer(Answer::Status(503));
    order[1].set_answer(Answer::Status(404));
    let lb = TestLb::start(opts(&proxies)).await.expect("lb");
    let (c, ca) = client().await;
    let req = request("OPTIONS", "sip:fay@example.com", ca, "retrans", "");
    for _ in 0..2 {
        c.send_to(req.as_bytes(), lb.addrs.udp[0])
            .await
            .expect("send");
        let resp = recv_final(&c, WAIT).await.expect("final");
        assert_eq!(resp.status(), Some(404));
    }
    assert_eq!(
        order[0].count("OPTIONS"),
        1,
        "the failed proxy is not asked again"
    );
    assert_eq!(order[1].count("OPTIONS"), 2);
    let branches: Vec<String> = order[1]
        .received
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|m| Some(m.top_via().ok()?.branch?.as_str().to_string()))
        .collect();
    assert_eq!(branches.len(), 2);
    assert_eq!(branches[0], branches[1], "same transaction at the proxy");
    lb.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_transaction_table_answers_503() {
    let proxies = three([Answer::Silent; 3]).await;
    let mut o = opts(&proxies);
    o.max_transactions = 2;
    o.timer = Duration::from_secs(30);
    let lb = TestLb::start(o).await.expect("lb");
    let (c, ca) = client().await;
    for i in 0..2 {
        let req = request(
            "OPTIONS",
            "sip:gus@example.com",
            ca,
            &format!("full{i}"),
            "",
        );
        c.send_to(req.as_bytes(), lb.addrs.udp[0])
            .await
            .expect("send");
    }
    let req = request("OPTIONS", "sip:gus@example.com", ca, "full2", "");
    c.send_to(req.as_bytes(), lb.addrs.udp[0])
        .await
        .expect("send");
    let resp = recv_final(&c, WAIT).await.expect("final");
    assert_eq!(resp.status(), Some(503));
    assert_eq!(resp.call_id().ok(), Some("full2"));
    assert!(resp.header(HeaderName::RetryAfter).is_some());
    // The proxies record what they receive in their own tasks: let them.
    let total = || proxies.iter().map(|p| p.count("OPTIONS")).sum::<usize>();
    sipedge_tests::proxy_harness::eventually(WAIT, || async { total() >= 2 }).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(total(), 2, "the refused request was not forwarded");
    lb.stop().await.expect("stop");
}
