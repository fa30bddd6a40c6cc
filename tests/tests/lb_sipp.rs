//! End-to-end tests with real SIPp: a SIPp UAC → sipedge-lb in-process on
//! port 0 → three SIPp UAS standing in for the proxies, all on loopback.
//!
//! Skipped with a message when `sipp` is not installed, unless
//! `SIPEDGE_REQUIRE_SIPP=1`. Every SIPp run is bounded by `-m` and
//! `-timeout` and killed when the test ends.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use sipedge_shared::hash;
use sipedge_shared::sip::Uri;
use sipedge_tests::lb_harness::{LbOptions, TestLb};
use sipedge_tests::sipp::{free_udp_port, scenario, sipp_or_skip, Sipp};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How long a SIPp process may take to bind its port.
const READY: Duration = Duration::from_secs(10);
/// The built-in SIPp `[service]` value, the user-part prefix of every R-URI.
const SERVICE: &str = "service";

/// What one run looks like.
struct Case {
    /// UAC scenario file in `tests/sipp/`.
    uac: &'static str,
    /// UAS scenario file in `tests/sipp/`.
    uas: &'static str,
    /// Which of the three proxies run a UAS (a `false` one is never started).
    live: [bool; 3],
    /// Calls (or OPTIONS transactions) to place.
    calls: u64,
    /// Calls per second.
    rate: u64,
}

/// What came out of it.
struct Outcome {
    successful: u64,
    failed: u64,
    unexpected: u64,
    /// `IncomingCall(C)` of each UAS; `None` for a proxy without one.
    per_uas: [Option<u64>; 3],
    /// What the hash says each UAS should have received.
    expected: [u64; 3],
}

/// For call numbers `1..=calls`, the index of the first live proxy in the
/// rendezvous ranking of the R-URI's address of record, counted per proxy.
fn expected_spread(ids: &[String; 3], live: [bool; 3], calls: u64, lb: SocketAddr) -> [u64; 3] {
    let mut want = [0u64; 3];
    for n in 1..=calls {
        let ruri = format!("sip:{SERVICE}{n}@{}:{}", lb.ip(), lb.port());
        let key = Uri::parse(&ruri).expect("a valid test URI").aor_key();
        let first_live = hash::rank(&key, ids)
            .find(|&i| live[i])
            .expect("at least one live proxy");
        want[first_live] += 1;
    }
    want
}

async fn run_case(test: &str, case: Case) -> Option<Outcome> {
    let sipp = sipp_or_skip(test)?;
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = ["p1".to_string(), "p2".to_string(), "p3".to_string()];

    let mut ports = [0u16; 3];
    let mut uas: Vec<Option<Sipp>> = Vec::new();
    for (i, port) in ports.iter_mut().enumerate() {
        *port = free_udp_port(LO).expect("free port");
        if !case.live[i] {
            uas.push(None);
            continue;
        }
        let args = vec![
            "-sf".to_string(),
            path_arg(&scenario(case.uas)),
            "-timeout".into(),
            "60s".into(),
        ];
        let mut p =
            Sipp::spawn(&sipp, &format!("uas{}", i + 1), dir.path(), *port, &args).expect("uas");
        assert!(p.wait_bound(READY).await, "uas{} did not bind", i + 1);
        uas.push(Some(p));
    }

    let proxies = ids
        .iter()
        .zip(ports)
        .map(|(id, port)| (id.clone(), SocketAddr::new(LO, port)))
        .collect();
    let lb = TestLb::start(LbOptions::new(proxies)).await.expect("lb");
    let target = lb.addrs.udp[0];

    let uac_port = free_udp_port(LO).expect("free port");
    let args = vec![
        "-sf".to_string(),
        path_arg(&scenario(case.uac)),
        target.to_string(),
        "-r".into(),
        case.rate.to_string(),
        "-m".into(),
        case.calls.to_string(),
        "-d".into(),
        "0".into(),
        "-timeout".into(),
        "40s".into(),
    ];
    let mut uac = Sipp::spawn(&sipp, "uac", dir.path(), uac_port, &args).expect("uac");
    let status = uac.wait(Duration::from_secs(50)).await;
    if status.is_none() {
        uac.stop(Duration::from_secs(5)).await;
    }
    let stats = uac.last_stats().expect("uac statistics");
    let mut per_uas = [None; 3];
    for (i, p) in uas.iter_mut().enumerate() {
        if let Some(p) = p {
            p.stop(Duration::from_secs(5)).await;
            per_uas[i] = Some(
                p.last_stats()
                    .expect("uas statistics")
                    .counter("IncomingCall(C)"),
            );
        }
    }
    lb.stop().await.expect("lb stops cleanly");

    let out = Outcome {
        successful: stats.counter("SuccessfulCall(C)"),
        failed: stats.counter("FailedCall(C)"),
        unexpected: stats.counter("FailedUnexpectedMessage(C)"),
        per_uas,
        expected: expected_spread(&ids, case.live, case.calls, target),
    };
    eprintln!(
        "{test}: uac exit {status:?}, ok {}, failed {} (unexpected {}), per UAS {:?}, hash says {:?}",
        out.successful, out.failed, out.unexpected, out.per_uas, out.expected
    );
    if out.failed > 0 {
        eprintln!("uac errors:\n{}", uac.error_excerpt());
    }
    Some(out)
}

fn path_arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn assert_spread(out: &Outcome, live: [bool; 3]) {
    for (i, alive) in live.into_iter().enumerate() {
        if alive {
            assert_eq!(
                out.per_uas[i],
                Some(out.expected[i]),
                "UAS {} got a different share than the hash says",
                i + 1
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_bye_calls_spread_over_three_uas_as_the_hash_says() {
    let live = [true; 3];
    let case = Case {
        uac: "uac_invite_bye.xml",
        uas: "uas_invite_bye.xml",
        live,
        calls: 300,
        rate: 100,
    };
    let Some(out) = run_case("invite_bye_spread", case).await else {
        return;
    };
    assert_eq!(out.successful, 300);
    assert_eq!(out.failed, 0, "no failed call, and no 180 after the 200");
    assert_eq!(out.unexpected, 0);
    assert!(out.expected.iter().all(|&n| n > 0), "{:?}", out.expected);
    assert_spread(&out, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_hashed_to_a_dead_uas_fail_over_after_the_timer() {
    // p2 is never started: its INVITEs and BYEs wait for the LB's timer
    // (300 ms in the harness), then go to the next proxy in the ranking.
    let live = [true, false, true];
    let case = Case {
        uac: "uac_invite_bye.xml",
        uas: "uas_invite_bye.xml",
        live,
        calls: 90,
        rate: 30,
    };
    let Some(out) = run_case("dead_uas_failover", case).await else {
        return;
    };
    let on_dead = expected_spread(
        &["p1".into(), "p2".into(), "p3".into()],
        [true; 3],
        90,
        // Only the shape of the R-URI matters for the key: the host.
        SocketAddr::new(LO, 0),
    )[1];
    assert!(on_dead > 0, "some calls must hash to the dead proxy");
    assert_eq!(
        out.successful, 90,
        "every call succeeds, failed over or not"
    );
    assert_eq!(out.failed, 0);
    assert_spread(&out, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_through_the_lb() {
    let live = [true; 3];
    let case = Case {
        uac: "uac_options.xml",
        uas: "uas_options.xml",
        live,
        calls: 300,
        rate: 200,
    };
    let Some(out) = run_case("options", case).await else {
        return;
    };
    assert_eq!(out.successful, 300);
    assert_eq!(out.failed, 0);
    assert_spread(&out, live);
}
