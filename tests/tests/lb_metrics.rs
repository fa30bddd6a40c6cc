//! The LB's hot-path counters are real in a fresh process: the Prometheus
//! recorder is installed before the pre-registered handles (handles taken
//! before it are silently no-ops). Its own test binary, so no other test has
//! installed the recorder first.

use std::time::Duration;

use sipedge_tests::lb_harness::{recv_final, request, Answer, LbOptions, TestLb, TestProxy};
use tokio::net::UdpSocket;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_count_in_a_fresh_process() {
    let p = TestProxy::start("p1", Answer::Ok).await.expect("proxy");
    let lb = TestLb::start(LbOptions::new(vec![(p.id.clone(), p.addr)]))
        .await
        .expect("lb");
    let c = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    let ca = c.local_addr().expect("bound");
    for i in 0..3 {
        let req = request(
            "OPTIONS",
            "sip:m@example.com",
            ca,
            &format!("metrics{i}"),
            "",
        );
        c.send_to(req.as_bytes(), lb.addrs.udp[0])
            .await
            .expect("send");
        assert_eq!(
            recv_final(&c, Duration::from_secs(3))
                .await
                .and_then(|m| m.status()),
            Some(200)
        );
    }
    let text = reqwest::get(format!("http://{}/metrics", lb.addrs.admin))
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    let line = text
        .lines()
        .find(|l| l.starts_with("sipedge_lb_requests_total") && l.contains("method=\"OPTIONS\""))
        .unwrap_or_else(|| panic!("no OPTIONS counter in:\n{text}"));
    assert!(line.ends_with(" 3"), "{line}");
    assert!(
        text.contains("sipedge_lb_transaction_seconds_bucket"),
        "{text}"
    );
    lb.stop().await.expect("stop");
}
