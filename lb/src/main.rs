//! `sipedge-lb`: parses arguments and config, binds, then calls the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use sipedge_lb::config::LbConfig;
use tokio_util::sync::CancellationToken;

// mimalloc instead of glibc's malloc: every datagram is copied into its own
// allocation and freed on another thread's schedule; glibc's per-thread
// arenas grew and trimmed their heaps with mprotect under load (about 3 % of
// the LB's CPU in a profile), mimalloc's per-thread free lists do not.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The sipedge stateless edge load balancer.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Config file (TOML). Without it the embedded local-stack defaults run.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Only validate the config and exit.
    #[arg(long)]
    check: bool,
    /// Where a self-signed certificate is written when the config asks for one.
    #[arg(long, default_value = "target/sipedge-tls")]
    tls_dir: PathBuf,
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipedge-lb: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = match &args.config {
        Some(p) => LbConfig::load(p)?,
        None => LbConfig::embedded_default()?,
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| cfg.log.level.as_str().into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if cfg.log.json {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    if args.check {
        println!("config ok");
        return Ok(());
    }
    std::fs::create_dir_all(&args.tls_dir).ok();
    let (run_cfg, listen) = cfg.to_run(&args.tls_dir).context("TLS certificate")?;
    let sockets = sipedge_lb::run::bind(&listen).context("binding sockets")?;
    let workers = listen.workers.max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            stop.cancel();
        });
        sipedge_lb::run::run(run_cfg, sockets, shutdown).await
    })
}

/// Ctrl-C or SIGTERM (systemd's stop).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
