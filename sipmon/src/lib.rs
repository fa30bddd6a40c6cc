//! sipedge sipmon: pings every proxy with SIP OPTIONS and pushes the live set
//! to every LB; library code behind the thin `main.rs`.
//!
//! Sans-IO: [`health`] (N/M hysteresis), [`safety`] (never empty, hold on
//! mass failure), [`generation`], [`push::Backoff`]. I/O: [`probe`] (OPTIONS
//! over UDP/TCP), [`srv`] (DNS SRV), [`push`] (PUT to every LB), [`monitor`]
//! (the probe loop), [`admin`] (`GET /v1/status` on the shared admin server),
//! [`status`] (the document and the `sipmon status` table).
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod generation;
pub mod health;
pub mod monitor;
pub mod probe;
pub mod push;
pub mod safety;
pub mod srv;
pub mod status;

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use config::Config;

use crate::config::Transport;
use crate::generation::GenerationClock;
use crate::health::{HealthTable, Hysteresis};
use crate::monitor::{Monitor, ProbeLoop};
use crate::probe::{Prober, TcpProber, UdpProber};
use crate::push::{LbState, Pusher};
use crate::safety::Safety;

/// Sockets the caller binds (so tests can use port 0).
#[derive(Debug)]
pub struct BoundSockets {
    /// The UDP probe socket, bound to `probe.source`; required for
    /// `transport = "udp"` (TCP probes bind per connection to the source IP).
    pub probe_udp: Option<UdpSocket>,
    /// The admin HTTP listener.
    pub admin: TcpListener,
}

impl BoundSockets {
    /// Binds what `config` asks for.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let probe_udp = match config.probe.transport {
            Transport::Udp => Some(UdpSocket::bind(config.probe.source).await?),
            Transport::Tcp => None,
        };
        let admin = TcpListener::bind(config.admin_listen).await?;
        Ok(BoundSockets { probe_udp, admin })
    }
}

/// Runs the monitor until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    sockets: BoundSockets,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let p = &config.probe;
    let prober = match p.transport {
        Transport::Udp => {
            let socket = sockets
                .probe_udp
                .context("transport = \"udp\" needs a bound UDP probe socket")?;
            Prober::Udp(UdpProber::new(
                socket,
                p.timeout,
                p.down_codes.clone(),
                shutdown.clone(),
            )?)
        }
        Transport::Tcp => Prober::Tcp(TcpProber::new(p.source, p.timeout, p.down_codes.clone())),
    };
    let client = reqwest::Client::builder()
        .timeout(config.push.timeout)
        .connect_timeout(config.push.timeout)
        .build()
        .context("building the HTTP client")?;
    let pusher = Arc::new(Pusher {
        monitor: config.id.clone(),
        token: config.push.token.clone(),
        heartbeat: config.push.heartbeat,
        retry_min: config.push.retry_min,
        retry_max: config.push.retry_max,
        client,
        generations: Mutex::new(GenerationClock::new()),
        lbs: Mutex::new(config.push.lbs.iter().cloned().map(LbState::new).collect()),
    });
    let monitor = Arc::new(Monitor {
        id: config.id.clone(),
        health: Mutex::new(HealthTable::new(Hysteresis {
            down_after: p.down_after,
            up_after: p.up_after,
        })),
        hold: Mutex::new(None),
        pusher: pusher.clone(),
    });
    let mut tasks = tokio::task::JoinSet::new();

    let (report_tx, report_rx) = watch::channel(None);
    for index in 0..config.push.lbs.len() {
        tasks.spawn(
            pusher
                .clone()
                .run_lb(index, report_rx.clone(), shutdown.clone()),
        );
    }

    let mut srv_rx = Vec::new();
    if !config.srv.is_empty() {
        let resolver = hickory_resolver::TokioAsyncResolver::tokio_from_system_conf()
            .context("reading the system DNS configuration for [[srv]]")?;
        for source in config.srv.iter().cloned() {
            let (tx, rx) = watch::channel(Vec::new());
            srv_rx.push(rx);
            tasks.spawn(srv::run_srv(resolver.clone(), source, tx, shutdown.clone()));
        }
    }

    match sockets.admin.local_addr() {
        Ok(addr) => tracing::info!(%addr, "admin listening (/metrics, /healthz, /v1/status)"),
        Err(e) => tracing::warn!(error = %e, "admin listener has no local address"),
    }
    let routes = Arc::new(admin::StatusRoutes {
        monitor: monitor.clone(),
    });
    let admin_shutdown = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = sipedge_shared::admin::serve(sockets.admin, routes, admin_shutdown).await {
            tracing::error!(error = %e, "admin server failed");
        }
    });
    let probe_loop = ProbeLoop {
        monitor,
        prober: Arc::new(prober),
        interval: p.interval,
        static_targets: config
            .proxies
            .iter()
            .map(|t| (t.id.clone(), t.addr))
            .collect(),
        srv: srv_rx,
        reports: report_tx,
        safety: Safety::new(config.max_down_share),
    };
    tracing::info!(monitor = %config.id, proxies = config.proxies.len(), lbs = config.push.lbs.len(), "sipmon running");
    tasks.spawn(probe_loop.run(shutdown.clone()));

    shutdown.cancelled().await;
    while tasks.join_next().await.is_some() {}
    Ok(())
}
