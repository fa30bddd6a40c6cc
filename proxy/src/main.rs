//! `sipedge-proxy`: parses arguments and config, binds, then calls the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sipedge_proxy::cli::{run_users, UsersCommand};
use sipedge_proxy::config::ProxyConfig;
use tokio_util::sync::CancellationToken;

/// The sipedge stateful proxy, registrar and router.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// Config file (TOML). Without it the embedded local-stack defaults run.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// UDP listen address (overrides `listen.udp`).
        #[arg(long)]
        udp: Option<SocketAddr>,
        /// TCP listen address (overrides `listen.tcp`).
        #[arg(long)]
        tcp: Option<SocketAddr>,
        /// Admin HTTP address (overrides `admin.listen`).
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Proxy id (overrides `id`).
        #[arg(long)]
        id: Option<String>,
        /// Only validate the config and exit.
        #[arg(long)]
        check: bool,
    },
    /// Provision subscribers.
    Users(UsersCommand),
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A config error already names file, key and cause in one line.
            match e.downcast_ref::<sipedge_shared::config::ConfigError>() {
                Some(c) => eprintln!("sipedge-proxy: {c}"),
                None => eprintln!("sipedge-proxy: {e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.command {
        Command::Users(cmd) => rt.block_on(run_users(cmd)),
        Command::Run {
            config,
            udp,
            tcp,
            admin,
            id,
            check,
        } => {
            let mut cfg = match &config {
                Some(p) => ProxyConfig::load(p)?,
                None => ProxyConfig::embedded_default()?,
            };
            if let Some(u) = udp {
                cfg.listen.udp = u;
            }
            if let Some(t) = tcp {
                cfg.listen.tcp = Some(t);
            }
            if let Some(a) = admin {
                cfg.listen.admin = Some(a);
            }
            if let Some(i) = id {
                cfg.id = i;
            }
            if check {
                println!("config ok");
                return Ok(());
            }
            let sockets = sipedge_proxy::run::bind(&cfg.listen).context("binding sockets")?;
            rt.block_on(async move {
                let shutdown = CancellationToken::new();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    let _ = tokio::signal::ctrl_c().await;
                    stop.cancel();
                });
                sipedge_proxy::run::run(cfg, sockets, shutdown).await?;
                Ok(())
            })
        }
    }
}
