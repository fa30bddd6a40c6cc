//! Assembling a running LB: the caller binds every socket ([`bind`]), then
//! [`run`] starts the workers, the stream accept loops, the admin server and
//! the housekeeping timers, and returns when `shutdown` is cancelled.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sipedge_shared::carrier::{CarrierConfig, CarrierMap};
use tokio_util::sync::CancellationToken;

use crate::admin::{FlowCountSource, FlowCounts, LbAdmin};
use crate::context::{Settings, Shared};
use crate::flood::{Flood, FloodSettings};
use crate::flow::FlowTable;
use crate::metrics::LbMetrics;
use crate::pipeline::Core;
use crate::proxy_set::{Proxy, ProxySet};
use crate::tls::TlsState;
use crate::worker::{self, Worker};

/// Everything `run` needs, validated and typed.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Pipeline settings.
    pub settings: Settings,
    /// Flood control.
    pub flood: FloodSettings,
    /// Proxies used until a monitor reports.
    pub static_proxies: Vec<Proxy>,
    /// How long a monitor's report counts.
    pub monitor_freshness: Duration,
    /// Bearer token for `PUT /v1/proxies`.
    pub admin_token: String,
    /// Source CIDR → carrier map.
    pub carriers: Vec<CarrierConfig>,
    /// TLS certificate and key (PEM), when TLS listeners are configured.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Addresses to bind.
#[derive(Debug, Clone)]
pub struct Listen {
    /// External UDP addresses.
    pub udp: Vec<SocketAddr>,
    /// External TCP addresses.
    pub tcp: Vec<SocketAddr>,
    /// External TLS addresses.
    pub tls: Vec<SocketAddr>,
    /// Internal unicast address (proxies send toward users here).
    pub internal: SocketAddr,
    /// Admin HTTP.
    pub admin: SocketAddr,
    /// Worker count (UDP sockets per external address).
    pub workers: usize,
}

/// Sockets bound by the caller.
#[derive(Debug)]
pub struct BoundSockets {
    /// Per external UDP address, one socket per worker (SO_REUSEPORT).
    pub udp: Vec<Vec<std::net::UdpSocket>>,
    /// TCP listeners.
    pub tcp: Vec<std::net::TcpListener>,
    /// TLS listeners.
    pub tls: Vec<std::net::TcpListener>,
    /// Internal sockets, one per worker; the first is the configured
    /// internal address, the others take ephemeral ports on its IP.
    pub internal: Vec<std::net::UdpSocket>,
    /// Admin HTTP listener.
    pub admin: std::net::TcpListener,
}

/// Binds everything in `listen`.
pub fn bind(listen: &Listen) -> std::io::Result<BoundSockets> {
    use sipedge_shared::net;
    let workers = listen.workers.max(1);
    let udp = listen
        .udp
        .iter()
        .map(|a| net::bind_udp_group(*a, workers))
        .collect::<Result<_, _>>()?;
    let tcp = listen
        .tcp
        .iter()
        .map(|a| net::bind_tcp(*a))
        .collect::<Result<_, _>>()?;
    let tls = listen
        .tls
        .iter()
        .map(|a| net::bind_tcp(*a))
        .collect::<Result<_, _>>()?;
    let mut internal = vec![net::bind_udp(listen.internal)?];
    for _ in 1..workers {
        internal.push(net::bind_udp(SocketAddr::new(listen.internal.ip(), 0))?);
    }
    let admin = net::bind_tcp(listen.admin)?;
    Ok(BoundSockets {
        udp,
        tcp,
        tls,
        internal,
        admin,
    })
}

impl FlowCountSource for FlowTable {
    fn flow_counts(&self) -> FlowCounts {
        let [udp, tcp, tls] = self.counts();
        FlowCounts {
            udp,
            tcp,
            tls,
            ws: 0,
            wss: 0,
            total: udp + tcp + tls,
        }
    }
}

/// Where a running LB can be reached (read back after binding port 0).
#[derive(Debug, Clone)]
pub struct Addresses {
    /// External UDP addresses.
    pub udp: Vec<SocketAddr>,
    /// External TCP addresses.
    pub tcp: Vec<SocketAddr>,
    /// External TLS addresses.
    pub tls: Vec<SocketAddr>,
    /// Internal address.
    pub internal: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
}

impl BoundSockets {
    /// The bound addresses.
    pub fn addresses(&self) -> std::io::Result<Addresses> {
        let first = |v: &Vec<std::net::UdpSocket>| v.first().map(|s| s.local_addr());
        Ok(Addresses {
            udp: self
                .udp
                .iter()
                .filter_map(first)
                .collect::<Result<_, _>>()?,
            tcp: self
                .tcp
                .iter()
                .map(|l| l.local_addr())
                .collect::<Result<_, _>>()?,
            tls: self
                .tls
                .iter()
                .map(|l| l.local_addr())
                .collect::<Result<_, _>>()?,
            internal: self
                .internal
                .first()
                .map(|s| s.local_addr())
                .transpose()?
                .ok_or_else(|| std::io::Error::other("no internal socket"))?,
            admin: self.admin.local_addr()?,
        })
    }
}

fn sent_by(addr: SocketAddr, advertise: &str) -> String {
    if addr.ip().is_unspecified() {
        let host = advertise.rsplit_once(':').map_or(advertise, |(h, _)| h);
        format!("{host}:{}", addr.port())
    } else {
        addr.to_string()
    }
}

impl Shared {
    /// What the workers share, without sockets (`run` adds them; the
    /// pipeline benchmark drives a [`Core`] with none). Metrics handles are
    /// no-ops unless the recorder was installed first.
    pub fn detached(cfg: &RunConfig) -> anyhow::Result<Shared> {
        let carriers = CarrierMap::new(&cfg.carriers).context("carrier map")?;
        let settings = cfg.settings.clone();
        Ok(Shared {
            metrics: LbMetrics::new(&settings.edge, carriers.names()),
            proxies: Arc::new(ProxySet::new(
                cfg.static_proxies.clone(),
                cfg.monitor_freshness,
                &settings.edge,
            )),
            flows: Arc::new(FlowTable::new()),
            ext_udp: Vec::new(),
            ext_sent_by: vec![settings.advertise.clone()],
            carriers,
            flood: Flood::new(cfg.flood.clone()),
            settings,
        })
    }
}

/// Runs the LB until `shutdown` is cancelled.
pub async fn run(
    cfg: RunConfig,
    sockets: BoundSockets,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addrs = sockets.addresses()?;
    let tls = match (&cfg.tls, sockets.tls.is_empty()) {
        (_, true) => None,
        (Some((cert, key)), false) => Some(TlsState::load(cert, key)?),
        (None, false) => anyhow::bail!("TLS listeners configured without [tls] cert and key"),
    };
    // The recorder must exist before the handles are registered, or they
    // are no-ops.
    sipedge_shared::metrics::install();
    let mut shared = Shared::detached(&cfg)?;
    shared.settings.internal = addrs.internal;
    let (proxies, flows) = (Arc::clone(&shared.proxies), Arc::clone(&shared.flows));

    // Listener indices: UDP addresses first, then TCP, then TLS.
    let mut ext_sent_by = Vec::new();
    let mut ext_udp = Vec::new();
    let mut per_worker_udp: Vec<Vec<(u16, Arc<std::net::UdpSocket>)>> = Vec::new();
    let workers = sockets.internal.len().max(1);
    per_worker_udp.resize_with(workers, Vec::new);
    for (li, group) in sockets.udp.into_iter().enumerate() {
        let li = u16::try_from(li).context("too many listeners")?;
        for (w, s) in group.into_iter().enumerate() {
            worker::prepare(&s)?;
            let s = Arc::new(s);
            if w == 0 {
                ext_sent_by.push(sent_by(s.local_addr()?, &shared.settings.advertise));
                ext_udp.push(Arc::clone(&s));
            }
            per_worker_udp[w % workers].push((li, s));
        }
    }
    let stream_base = ext_sent_by.len();
    for l in sockets.tcp.iter().chain(sockets.tls.iter()) {
        ext_sent_by.push(sent_by(l.local_addr()?, &shared.settings.advertise));
    }
    shared.ext_udp = ext_udp;
    shared.ext_sent_by = ext_sent_by;
    let shared = Arc::new(shared);

    let tasks = tokio_util::task::TaskTracker::new();
    let mut readers = Vec::new();
    let mut to_workers = Vec::with_capacity(workers);
    for (w, internal) in sockets.internal.into_iter().enumerate() {
        worker::prepare(&internal)?;
        let core = Core::new(Arc::clone(&shared), internal.local_addr()?);
        let handle = Arc::new(Worker::new(core, internal));
        let external = std::mem::take(&mut per_worker_udp[w]);
        readers.extend(worker::spawn_readers(&handle, w, external, &shutdown)?);
        to_workers.push(handle);
    }
    // The reader threads block in recvfrom and look at the shutdown token
    // every tick (itself, not a flag an async task would set: a runtime
    // being dropped runs no tasks, and its blocking pool waits for this join).
    tasks.spawn_blocking(move || {
        for t in readers {
            let _ = t.join();
        }
    });
    let to_workers = Arc::new(to_workers);
    let tcp_count = sockets.tcp.len();
    for (i, l) in sockets.tcp.into_iter().enumerate() {
        let idx = u16::try_from(stream_base + i).context("too many listeners")?;
        let l = tokio::net::TcpListener::from_std(l)?;
        tasks.spawn(crate::stream::accept_loop(
            l,
            idx,
            None,
            Arc::clone(&shared),
            Arc::clone(&to_workers),
            shutdown.clone(),
        ));
    }
    for (i, l) in sockets.tls.into_iter().enumerate() {
        let idx = u16::try_from(stream_base + tcp_count + i).context("too many listeners")?;
        let l = tokio::net::TcpListener::from_std(l)?;
        tasks.spawn(crate::stream::accept_loop(
            l,
            idx,
            tls.clone(),
            Arc::clone(&shared),
            Arc::clone(&to_workers),
            shutdown.clone(),
        ));
    }

    // SIGHUP reloads the TLS certificate without touching open flows.
    #[cfg(unix)]
    if let Some(tls) = tls.clone() {
        let shutdown = shutdown.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    Some(()) = hup.recv() => match tls.reload() {
                        Ok(()) => tracing::info!("TLS certificate reloaded"),
                        Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the old certificate"),
                    },
                }
            }
        });
    }

    // Housekeeping: flood state cleanup, monitor freshness.
    {
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                n += 1;
                shared.proxies.refresh(std::time::Instant::now());
                if n.is_multiple_of(crate::flood::Flood::CLEANUP_EVERY.as_secs().max(1)) {
                    shared.flood.cleanup();
                }
            }
        });
    }

    let bound = Arc::new(AtomicBool::new(true));
    let admin = LbAdmin::new(proxies, cfg.admin_token.clone(), flows, Arc::clone(&bound));
    let admin_listener = tokio::net::TcpListener::from_std(sockets.admin)?;
    let admin_task =
        sipedge_shared::admin::serve(admin_listener, Arc::new(admin), shutdown.clone());
    tracing::info!(?addrs, "sipedge-lb running");
    let r = admin_task.await;
    bound.store(false, Ordering::Relaxed);
    tasks.close();
    tasks.wait().await;
    r.context("admin server")
}
