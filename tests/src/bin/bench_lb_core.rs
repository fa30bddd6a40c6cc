//! LB pipeline benchmark without sockets: the user-space cost of one INVITE /
//! 180 / 200 / ACK / BYE / 200 call through `sipedge_lb::pipeline::Core`, the
//! sans-IO core each worker runs (parse, checks, routing, transaction state,
//! the forwarded copies). Kernel time (recvfrom/sendto/epoll) is not in it;
//! `tests/bench/lb_vs_kamailio.sh` measures the whole process.
//!
//! Run: `cargo run --release -p sipedge-tests --bin bench_lb_core [-- CALLS RUNS]`.
//! The calls are recorded once (requests from a UAC flow, answers built from the
//! copies the LB forwards), then replayed `RUNS` times (default 5) into a fresh
//! core each; the median on-CPU ns per call is printed, with allocations per call.
#![forbid(unsafe_code)]

use std::alloc::System;
use std::hint::black_box;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context};
use bytes::Bytes;
use sipedge_lb::config::LbConfig;
use sipedge_lb::context::Shared;
use sipedge_lb::flood::FloodSettings;
use sipedge_lb::flow::{FlowId, FlowTransport};
use sipedge_lb::pipeline::{Core, Dest};
use sipedge_shared::sip::{build_response, Limits, Message};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The LB's embedded default (one worker, proxies p1..p3 on 127.0.0.1:5071-5073)
/// as `tests/bench/lb_vs_kamailio.sh` runs it: flood limits above the load
/// (every call comes from one address), no request log, no TLS certificate.
fn bench_config() -> anyhow::Result<LbConfig> {
    let mut cfg = LbConfig::embedded_default()?;
    let high = NonZeroU32::new(10_000_000).context("non-zero")?;
    cfg.flood = FloodSettings {
        requests_per_sec: high,
        requests_burst: high,
        registers_per_sec: high,
        registers_burst: high,
        ..cfg.flood
    };
    cfg.log.sample = 0.0;
    cfg.tls = None;
    Ok(cfg)
}

const UAC: &str = "127.0.0.1:5090";

/// One message into the core: from the client flow, or from a proxy.
#[derive(Clone)]
enum Input {
    External(Bytes),
    Internal(Bytes, SocketAddr),
}

fn core(shared: &Arc<Shared>) -> Core {
    Core::new(Arc::clone(shared), shared.settings.internal)
}

fn uac_flow() -> anyhow::Result<FlowId> {
    Ok(FlowId {
        transport: FlowTransport::Udp,
        conn: 0,
        peer: UAC.parse()?,
        listener: 0,
    })
}

/// A request as SIPp's uac scenario sends it (with SDP on the INVITE).
fn request(method: &str, call: usize, cseq: u32, to_tag: Option<&str>) -> Bytes {
    let body = if method == "INVITE" {
        "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    } else {
        ""
    };
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    Bytes::from(format!(
        "{method} sip:service{n}@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {UAC};branch=z9hG4bK-{call}-{cseq}-{method}\r\n\
         From: sipp <sip:sipp@127.0.0.1:5090>;tag={call}SIPpTag00{call}\r\n\
         To: service <sip:service{n}@127.0.0.1:5060>{to_tag}\r\n\
         Call-ID: {call}-bench@127.0.0.1\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: sip:sipp@{UAC}\r\n\
         Max-Forwards: 70\r\n\
         Subject: Performance Test\r\n\
         {ctype}Content-Length: {len}\r\n\r\n{body}",
        n = call % 1000,
        len = body.len(),
    ))
}

/// Feeds one input; returns what the core sent toward proxies.
fn feed(core: &mut Core, input: &Input, flow: FlowId, limits: &Limits) -> Vec<(SocketAddr, Bytes)> {
    let now = Instant::now();
    match input {
        Input::External(b) => {
            if let Ok(m) = Message::parse_datagram(b.clone(), limits) {
                core.on_external(m, flow, now);
            }
        }
        Input::Internal(b, from) => {
            if let Ok(m) = Message::parse_datagram(b.clone(), limits) {
                core.on_internal(m, *from, now);
            }
        }
    }
    core.out
        .drain(..)
        .filter_map(|o| match o.dest {
            Dest::Internal(a) => Some((a, o.bytes)),
            Dest::Flow(_) => None,
        })
        .collect()
}

/// A proxy's answer to the copy it got (Vias, From, To, Call-ID, CSeq kept).
fn answer(copy: &Bytes, status: u16, reason: &str, limits: &Limits) -> anyhow::Result<Bytes> {
    let m = Message::parse_datagram(copy.clone(), limits).context("forwarded copy parses")?;
    Ok(build_response(&m, status, reason, Some("uas-tag"), &[]))
}

/// Records `calls` calls: every input in order, answers built from the copies.
fn record(shared: &Arc<Shared>, calls: usize, limits: &Limits) -> anyhow::Result<Vec<Input>> {
    let mut core = core(shared);
    let flow = uac_flow()?;
    let mut inputs = Vec::with_capacity(calls * 6);
    let mut push = |core: &mut Core, i: Input| {
        let sent = feed(core, &i, flow, limits);
        inputs.push(i);
        sent
    };
    for call in 0..calls {
        let sent = push(&mut core, Input::External(request("INVITE", call, 1, None)));
        let [(proxy, copy)] = sent.as_slice() else {
            anyhow::bail!("INVITE of call {call}: {} copies forwarded", sent.len());
        };
        for (status, reason) in [(180, "Ringing"), (200, "OK")] {
            let r = answer(copy, status, reason, limits)?;
            push(&mut core, Input::Internal(r, *proxy));
        }
        push(
            &mut core,
            Input::External(request("ACK", call, 1, Some("uas-tag"))),
        );
        let sent = push(
            &mut core,
            Input::External(request("BYE", call, 2, Some("uas-tag"))),
        );
        let [(proxy, copy)] = sent.as_slice() else {
            anyhow::bail!("BYE of call {call}: {} copies forwarded", sent.len());
        };
        let r = answer(copy, 200, "OK", limits)?;
        push(&mut core, Input::Internal(r, *proxy));
    }
    Ok(inputs)
}

/// On-CPU time of this thread in ns (`/proc/thread-self/schedstat`).
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let calls: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let runs: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5)
        .max(1);
    let (run, _) = bench_config()?.to_run(Path::new("."))?;
    let shared = Arc::new(Shared::detached(&run)?);
    let limits = shared.settings.limits;
    let flow = uac_flow()?;
    let inputs = record(&shared, calls, &limits)?;
    ensure!(inputs.len() == calls * 6);

    // Each replay gets a fresh core, so every call starts its transactions anew.
    let mut ns = Vec::with_capacity(runs);
    let mut allocs = 0.0;
    for r in 0..runs {
        let mut core = core(&shared);
        let region = Region::new(GLOBAL);
        let (t, c0) = (Instant::now(), cpu_ns());
        let mut forwarded = 0usize;
        for i in &inputs {
            let now = Instant::now();
            match i {
                Input::External(b) => {
                    if let Ok(m) = Message::parse_datagram(b.clone(), &limits) {
                        core.on_external(m, flow, now);
                    }
                }
                Input::Internal(b, from) => {
                    if let Ok(m) = Message::parse_datagram(b.clone(), &limits) {
                        core.on_internal(m, *from, now);
                    }
                }
            }
            forwarded += core.out.len();
            black_box(&core.out);
            core.out.clear();
        }
        let spent = match (c0, cpu_ns()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => t.elapsed().as_nanos() as u64,
        };
        ensure!(
            forwarded == calls * 6,
            "run {r}: {forwarded} messages sent for {calls} calls (want 6 per call)"
        );
        let s = region.change();
        allocs = (s.allocations + s.reallocations) as f64 / calls as f64;
        ns.push(spent as f64 / calls as f64);
    }
    ns.sort_by(f64::total_cmp);
    let median = ns[ns.len() / 2];
    println!("LB core, one worker: {calls} INVITE/180/200/ACK/BYE/200 calls, {runs} runs, median");
    println!(
        "per call: {median:8.0} ns on-CPU ({:6.0} ns per message), {allocs:.1} allocations",
        median / 6.0
    );
    Ok(())
}
