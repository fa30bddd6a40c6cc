//! Assembling a running proxy: the caller binds ([`bind`]), [`run`] opens the
//! subscriber store and the CDR file, then serves UDP, TCP, the timers and
//! the admin HTTP until the shutdown token is cancelled.

use std::net::SocketAddr;
use std::sync::Arc;

use sipedge_shared::admin;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::churn::admin::ProxyAdmin;
use crate::churn::Churn;
use crate::config::{Listen, ProxyConfig};
use crate::registrar::Registrar;
use crate::server::cdr::CdrSink;
use crate::server::metrics::Metrics;
use crate::server::state::Env;
use crate::server::transport::{self, Net};
use crate::server::Core;
use crate::users::config::{open_store, OpenError};

/// Why the proxy could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Binding or converting a socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The subscriber store could not be opened.
    #[error("subscriber store: {0}")]
    Store(#[from] OpenError),
    /// The HTTP client toward the peers could not be built.
    #[error("peer HTTP client: {0}")]
    PeerClient(#[from] reqwest::Error),
    /// The CDR file could not be opened.
    #[error("CDR file {file}: {source}")]
    Cdr {
        /// The file.
        file: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Sockets bound by the caller (port 0 in tests).
#[derive(Debug)]
pub struct BoundSockets {
    udp: std::net::UdpSocket,
    tcp: Option<std::net::TcpListener>,
    admin: Option<std::net::TcpListener>,
}

/// The addresses actually bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// UDP.
    pub udp: SocketAddr,
    /// TCP.
    pub tcp: Option<SocketAddr>,
    /// Admin HTTP.
    pub admin: Option<SocketAddr>,
}

impl BoundSockets {
    /// Where they are bound.
    pub fn addresses(&self) -> std::io::Result<Addresses> {
        Ok(Addresses {
            udp: self.udp.local_addr()?,
            tcp: self.tcp.as_ref().map(|t| t.local_addr()).transpose()?,
            admin: self.admin.as_ref().map(|t| t.local_addr()).transpose()?,
        })
    }
}

/// Binds every socket of `listen`.
pub fn bind(listen: &Listen) -> std::io::Result<BoundSockets> {
    let udp = sipedge_shared::net::bind_udp(listen.udp)?;
    let tcp = listen.tcp.map(sipedge_shared::net::bind_tcp).transpose()?;
    let admin = listen
        .admin
        .map(sipedge_shared::net::bind_tcp)
        .transpose()?;
    Ok(BoundSockets { udp, tcp, admin })
}

/// Serves until `shutdown` is cancelled.
pub async fn run(
    config: ProxyConfig,
    sockets: BoundSockets,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let addrs = sockets.addresses()?;
    let store = open_store(&config.users, shutdown.clone()).await?;
    let cdr = match &config.cdr_file {
        Some(f) => CdrSink::open(f.clone(), shutdown.clone())
            .await
            .map_err(|source| RunError::Cdr {
                file: f.clone(),
                source,
            })?,
        None => CdrSink::disabled(),
    };
    let advertise = config
        .advertise
        .clone()
        .unwrap_or_else(|| addrs.udp.to_string());
    // The recorder must exist before the handles are registered.
    sipedge_shared::metrics::install();
    let env = Env {
        advertise,
        timers: config.timers,
        metrics: Metrics::new(&config.edge),
        cdr,
        limits: transport::limits(),
    };
    let udp = Arc::new(tokio::net::UdpSocket::from_std(sockets.udp)?);
    let registrar = Registrar::new(&config.registrar);
    let auth = Authenticator::new(Arc::clone(&store), config.auth.clone());
    let churn = Churn::start(&config.id, config.peers.clone(), &config.edge, &shutdown)?;
    let mut local = vec![addrs.udp];
    local.extend(addrs.tcp);
    tracing::info!(id = %config.id, udp = %addrs.udp, tcp = ?addrs.tcp, admin = ?addrs.admin, "proxy running");
    let core = Arc::new(Core::new(
        config,
        env,
        registrar,
        auth,
        store,
        Net::new(Arc::clone(&udp)),
        local,
        churn,
    ));
    let tracker = tokio_util::task::TaskTracker::new();
    tracker.spawn(transport::udp_loop(
        Arc::clone(&core),
        udp,
        shutdown.clone(),
    ));
    if let Some(tcp) = sockets.tcp {
        let l = tokio::net::TcpListener::from_std(tcp)?;
        tracker.spawn(transport::tcp_loop(Arc::clone(&core), l, shutdown.clone()));
    }
    tracker.spawn(Arc::clone(&core).timer_loop(shutdown.clone()));
    if let Some(admin_l) = sockets.admin {
        let l = tokio::net::TcpListener::from_std(admin_l)?;
        let stop = shutdown.clone();
        let routes_core = Arc::clone(&core);
        tracker.spawn(async move {
            if let Err(e) = admin::serve(l, Arc::new(ProxyAdmin::new(routes_core)), stop).await {
                tracing::warn!(error = %e, "admin server stopped");
            }
        });
    }
    tracker.close();
    shutdown.cancelled().await;
    tracker.wait().await;
    Ok(())
}
