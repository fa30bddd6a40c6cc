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
        let r = Sipp::new("register.xml", target, transport, "alice")
            .arg("-au")
            .arg("alice")
            .arg("-ap")
            .arg("alice-secret")
            .arg("-auth_uri")
            .arg("sipedge.local")
            .run(dir.path())
            .await
            .expect("sipp ran");
        assert_eq!(r.code, Some(0), "{transport}: {}", show(&r));
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    stack.stop().await.expect("stop");
}
