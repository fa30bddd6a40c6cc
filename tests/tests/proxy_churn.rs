//! Churn in the proxy tier, end to end: 1 LB and 3 proxies that are each
//! other's peers (real sockets, port 0), SIPp UAs. A user stays reachable
//! when their home proxy leaves the live set, through the replica on the
//! next-ranked proxy, or through a peer lookup when no replica is there.

use std::time::Duration;

use sipedge_shared::hash;
use sipedge_tests::lb_harness::{LbOptions, TestLb, TEST_TOKEN};
use sipedge_tests::proxy_harness::{
    eventually, finish, sipp_or_skip, ProxyOptions, Sipp, SippResult, TestProxyServer,
};

const IDS: [&str; 3] = ["p1", "p2", "p3"];
const BOB: &str = "bob@sipedge.local";

fn show(r: &SippResult) -> String {
    format!("exit {:?}\n{}", r.code, r.log)
}

/// The tier, best first for `aor`, as indices into `IDS` (what every LB ranks).
fn ranking(aor: &str) -> Vec<usize> {
    hash::rank(aor, &IDS[..]).collect()
}

struct Tier {
    lb: TestLb,
    proxies: Vec<Option<TestProxyServer>>,
    edge: String,
    generation: u64,
}

impl Tier {
    async fn start(edge: &str) -> Tier {
        let opts = ProxyOptions {
            edge: edge.into(),
            ..ProxyOptions::default()
        };
        let proxies = TestProxyServer::start_tier(&IDS, &opts)
            .await
            .expect("proxies");
        let mut lb_opts = LbOptions::new(
            IDS.iter()
                .zip(&proxies)
                .map(|(id, p)| ((*id).to_string(), p.addrs.udp))
                .collect(),
        );
        lb_opts.timer = Duration::from_secs(1);
        let lb = TestLb::start(lb_opts).await.expect("lb");
        Tier {
            lb,
            proxies: proxies.into_iter().map(Some).collect(),
            edge: edge.into(),
            generation: 0,
        }
    }

    fn proxy(&self, i: usize) -> &TestProxyServer {
        self.proxies[i].as_ref().expect("proxy still running")
    }

    fn edge_of(&self, i: usize) -> String {
        format!("{}-{}", self.edge, IDS[i])
    }

    /// Tells the LB (as a monitor would) that only `live` are up.
    async fn set_live(&mut self, live: &[usize]) {
        self.generation += 1;
        let proxies: Vec<serde_json::Value> = IDS
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let addr = self.proxies[i]
                    .as_ref()
                    .map(|p| p.addrs.udp.to_string())
                    .unwrap_or_else(|| "127.0.0.1:9".into());
                serde_json::json!({ "id": id, "addr": addr, "up": live.contains(&i) })
            })
            .collect();
        let body = serde_json::json!({
            "monitor": "test-mon",
            "generation": self.generation,
            "proxies": proxies,
        });
        let r = reqwest::Client::new()
            .put(format!("http://{}/v1/proxies", self.lb.addrs.admin))
            .bearer_auth(TEST_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("PUT /v1/proxies");
        assert!(
            r.status().is_success(),
            "{}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Waits until proxy `i` holds `aor` itself (`origin == None`) or as a
    /// replica of `origin`.
    async fn wait_holds(&self, i: usize, aor: &str, origin: Option<&str>) -> bool {
        let p = self.proxy(i);
        eventually(Duration::from_secs(10), || async {
            p.bindings(aor)
                .await
                .is_ok_and(|b| b.bindings.iter().any(|w| w.origin.as_deref() == origin))
        })
        .await
    }

    async fn stop(mut self) {
        self.lb.stop().await.expect("lb stop");
        for p in self.proxies.iter_mut().filter_map(Option::take) {
            p.stop().await.expect("proxy stop");
        }
    }
}

/// Bob's SIPp: registers through the LB, then answers one call.
fn bob(tier: &Tier, cid: &str) -> Sipp {
    Sipp::new("call_uas_registered.xml", tier.lb.addrs.udp[0], "u1", "bob")
        .arg("-au")
        .arg("bob")
        .arg("-ap")
        .arg("bob-secret")
        .arg("-auth_uri")
        .arg("sipedge.local")
        .arg("-cid_str")
        .arg(cid)
}

/// Alice's SIPp: calls bob through the LB (digest), BYE after the answer.
fn alice(tier: &Tier, cid: &str) -> Sipp {
    Sipp::new("call_uac_auth.xml", tier.lb.addrs.udp[0], "u1", "bob")
        .arg("-au")
        .arg("alice")
        .arg("-ap")
        .arg("alice-secret")
        .arg("-auth_uri")
        .arg("bob@sipedge.local")
        .arg("-cid_str")
        .arg(cid)
}

/// Runs alice's call while bob's SIPp (already registered) waits; both must succeed.
async fn call_bob(
    tier: &Tier,
    dir: &std::path::Path,
    cid: &str,
    bob: (tokio::process::Child, u16),
) {
    let a = alice(tier, cid).run(dir).await.expect("alice ran");
    let b = finish(bob.0, bob.1, dir, Duration::from_secs(25))
        .await
        .expect("bob ran");
    assert!(
        a.code == Some(0) && b.code == Some(0),
        "alice: {}\n\nbob: {}",
        show(&a),
        show(&b)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_on_the_next_ranked_proxy_survives_the_home_proxys_death() {
    if !sipp_or_skip("replica_on_the_next_ranked_proxy_survives_the_home_proxys_death") {
        return;
    }
    home_dies("churn-replica", true).await;
}

/// Before any monitor notices: the LB's own failover (timer) goes to the
/// next-ranked proxy, which already holds the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_serves_the_lbs_failover_before_the_monitor_notices() {
    if !sipp_or_skip("replica_serves_the_lbs_failover_before_the_monitor_notices") {
        return;
    }
    home_dies("churn-failover", false).await;
}

/// Bob registers at his home, the home proxy stops (and, with
/// `tell_lb`, leaves the LB's live set), alice calls bob.
async fn home_dies(edge: &str, tell_lb: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tier = Tier::start(edge).await;
    let order = ranking(BOB);
    let (home, next) = (order[0], order[1]);
    let cid = format!("{edge}-%u@test");
    let cid = cid.as_str();
    let bob_child = bob(&tier, cid).spawn(dir.path()).expect("spawn bob");
    assert!(
        tier.wait_holds(home, BOB, None).await,
        "bob registered at his home {}",
        IDS[home]
    );
    assert!(
        tier.wait_holds(next, BOB, Some(IDS[home])).await,
        "{} holds bob's replica from {}",
        IDS[next],
        IDS[home]
    );
    let third = order[2];
    let third_view = tier.proxy(third).bindings(BOB).await.expect("GET");
    assert!(
        third_view.bindings.is_empty(),
        "only the next-ranked proxy: {third_view:?}"
    );
    let (home_proxy, home_edge) = (tier.proxy(home), tier.edge_of(home));
    assert!(
        eventually(Duration::from_secs(5), || async {
            home_proxy
                .metric("sipedge_proxy_replicas_sent_total", &home_edge, "")
                .await
                == 1.0
        })
        .await,
        "one replica set sent (the 401 changed nothing)"
    );

    // The home proxy dies; the monitor takes it out of the LB's set.
    tier.proxies[home]
        .take()
        .expect("home")
        .stop()
        .await
        .expect("stop home");
    if tell_lb {
        let live: Vec<usize> = (0..IDS.len()).filter(|i| *i != home).collect();
        tier.set_live(&live).await;
    }

    call_bob(&tier, dir.path(), cid, bob_child).await;
    let next_edge = tier.edge_of(next);
    let p = tier.proxy(next);
    assert_eq!(
        p.metric(
            "sipedge_proxy_calls_total",
            &next_edge,
            ",outcome=\"answered\""
        )
        .await,
        1.0,
        "{} routed the call",
        IDS[next]
    );
    assert_eq!(
        p.metric(
            "sipedge_proxy_peer_lookups_total",
            &next_edge,
            ",result=\"found\""
        )
        .await,
        0.0,
        "served from the replica, no lookup"
    );
    tier.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_without_a_replica_asks_its_peers() {
    if !sipp_or_skip("a_proxy_without_a_replica_asks_its_peers") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut tier = Tier::start("churn-lookup").await;
    let order = ranking(BOB);
    let (a, b, c) = (order[0], order[1], order[2]);
    // Bob registers while his home `a` is out of the LB's set: `b` takes the
    // REGISTER and replicates to its next-ranked proxy, `a` (alive).
    tier.set_live(&[b, c]).await;
    let cid = "churn-lookup-%u@test";
    let bob_child = bob(&tier, cid).spawn(dir.path()).expect("spawn bob");
    assert!(
        tier.wait_holds(b, BOB, None).await,
        "bob registered at {}",
        IDS[b]
    );
    assert!(
        tier.wait_holds(a, BOB, Some(IDS[b])).await,
        "{} holds the replica",
        IDS[a]
    );
    let before = tier.proxy(c).bindings(BOB).await.expect("GET");
    assert!(
        before.bindings.is_empty(),
        "{} has nothing: {before:?}",
        IDS[c]
    );

    // Now only `c` is live: it has no binding and no replica, so it asks.
    tier.set_live(&[c]).await;
    call_bob(&tier, dir.path(), cid, bob_child).await;
    let edge = tier.edge_of(c);
    let p = tier.proxy(c);
    assert_eq!(
        p.metric(
            "sipedge_proxy_peer_lookups_total",
            &edge,
            ",result=\"found\""
        )
        .await,
        1.0,
        "one lookup found bob (the ACK and BYE follow the dialog)"
    );
    assert_eq!(
        p.metric("sipedge_proxy_calls_total", &edge, ",outcome=\"answered\"")
            .await,
        1.0
    );
    // The answer is kept as a replica of the peer that gave it.
    let after = p.bindings(BOB).await.expect("GET");
    assert!(
        after
            .bindings
            .iter()
            .any(|w| w.origin.as_deref() == Some(IDS[a]) || w.origin.as_deref() == Some(IDS[b])),
        "{after:?}"
    );

    // A subscriber registered nowhere still gets 480, after one lookup.
    let carol = ask_invite(tier.lb.addrs.udp[0], "sip:carol@sipedge.local").await;
    assert_eq!(carol, Some(480));
    assert_eq!(
        p.metric(
            "sipedge_proxy_peer_lookups_total",
            &edge,
            ",result=\"not_found\""
        )
        .await,
        1.0
    );
    tier.stop().await;
}

/// An INVITE from a foreign caller (no authentication needed to reach a
/// local user); the final status.
async fn ask_invite(lb: std::net::SocketAddr, ruri: &str) -> Option<u16> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.ok()?;
    let me = sock.local_addr().ok()?;
    let id = format!("{:x}", me.port());
    let msg = format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKchurn{id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:dave@example.org>;tag=t{id}\r\nTo: <{ruri}>\r\n\
         Call-ID: churn-{id}@test\r\nCSeq: 1 INVITE\r\nContact: <sip:dave@{me}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), lb).await.ok()?;
    let m = sipedge_tests::lb_harness::recv_final(&sock, Duration::from_secs(5)).await?;
    m.status()
}

/// (admin base URL, method, path, bearer token, JSON body, want status).
type Row = (
    String,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<serde_json::Value>,
    u16,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_routes_check_token_origin_and_body() {
    use sipedge_tests::proxy_harness::PEER_TOKEN;
    let opts = ProxyOptions {
        edge: "churn-routes".into(),
        ..ProxyOptions::default()
    };
    let tier = TestProxyServer::start_tier(&IDS, &opts)
        .await
        .expect("tier");
    let lone = TestProxyServer::start(&ProxyOptions {
        edge: "churn-routes-lone".into(),
        ..ProxyOptions::default()
    })
    .await
    .expect("lone proxy");
    let base = |p: &TestProxyServer| format!("http://{}", p.addrs.admin.expect("admin"));
    let good = serde_json::json!({"origin": "p2", "bindings": [{
        "contact": "sip:bob@192.0.2.7:5060", "expires_in": 60, "age": 1,
        "call_id": "c1", "cseq": 2, "path": ["sip:TOK@127.0.0.1:5060;lr;ob"]}]});
    let client = reqwest::Client::new();
    let p1 = base(&tier[0]);
    let rows: Vec<Row> = vec![
        (
            p1.clone(),
            "GET",
            "/v1/bindings/bob@sipedge.local",
            None,
            None,
            401,
        ),
        (
            p1.clone(),
            "GET",
            "/v1/bindings/bob@sipedge.local",
            Some("wrong"),
            None,
            401,
        ),
        (
            p1.clone(),
            "GET",
            "/v1/bindings/bob@sipedge.local",
            Some(PEER_TOKEN),
            None,
            200,
        ),
        (
            p1.clone(),
            "GET",
            "/v1/bindings/%zz",
            Some(PEER_TOKEN),
            None,
            400,
        ),
        (
            p1.clone(),
            "PUT",
            "/v1/replicas/bob@sipedge.local",
            Some(PEER_TOKEN),
            Some(good.clone()),
            200,
        ),
        (
            p1.clone(),
            "PUT",
            "/v1/replicas/bob@sipedge.local",
            Some(PEER_TOKEN),
            Some(serde_json::json!({"origin": "p9", "bindings": []})),
            403,
        ),
        (
            p1.clone(),
            "PUT",
            "/v1/replicas/bob@sipedge.local",
            Some(PEER_TOKEN),
            Some(serde_json::json!({"origin": "p2"})),
            400,
        ),
        (
            p1.clone(),
            "DELETE",
            "/v1/replicas/bob@sipedge.local",
            Some(PEER_TOKEN),
            None,
            405,
        ),
        (p1.clone(), "GET", "/v1/other", Some(PEER_TOKEN), None, 404),
        // Without peers the routes do not exist.
        (
            base(&lone),
            "GET",
            "/v1/bindings/bob@sipedge.local",
            Some(PEER_TOKEN),
            None,
            404,
        ),
    ];
    for (base, method, path, token, body, want) in rows {
        let method: reqwest::Method = method.parse().expect("method");
        let mut req = client.request(method.clone(), format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &body {
            req = req.json(b);
        }
        let r = req.send().await.expect("sent");
        assert_eq!(r.status().as_u16(), want, "{method} {path} {token:?}");
    }
    // The accepted replica is what p1 now answers, marked with its origin.
    let view = tier[0].bindings(BOB).await.expect("GET");
    assert_eq!(view.proxy, "p1");
    let got: Vec<(&str, Option<&str>)> = view
        .bindings
        .iter()
        .map(|w| (w.contact.as_str(), w.origin.as_deref()))
        .collect();
    assert_eq!(got, [("sip:bob@192.0.2.7:5060", Some("p2"))]);
    // An empty set from the same origin removes it.
    let r = client
        .put(format!("{p1}/v1/replicas/bob@sipedge.local"))
        .bearer_auth(PEER_TOKEN)
        .json(&serde_json::json!({"origin": "p2", "bindings": []}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 200);
    assert!(tier[0]
        .bindings(BOB)
        .await
        .expect("GET")
        .bindings
        .is_empty());
    lone.stop().await.expect("stop");
    for p in tier {
        p.stop().await.expect("stop");
    }
}
