//! `sipmon`: parses arguments and config, binds, then calls the library
//! (`sipmon run`), or prints the running monitor's table (`sipmon status`).
#![forbid(unsafe_code)]

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(name = "sipmon", about = "sipedge OPTIONS health monitor", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Probe the proxies and push the live set to every LB.
    Run {
        /// The TOML config (see deploy/sipmon.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the running monitor's proxy and push table.
    Status {
        /// The monitor's admin base URL.
        #[arg(long, default_value = "http://127.0.0.1:9070")]
        admin: String,
        /// Redraw every SECS seconds (default 2) until Ctrl-C.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<u64>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Cli::parse().command {
        Command::Run { config } => run(config).await,
        Command::Status { admin, watch } => status(&admin, watch).await,
    }
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = sipmon::Config::load(&path)?;
    let sockets = sipmon::BoundSockets::bind(&config).await.with_context(|| {
        format!(
            "binding probe source {} / admin {}",
            config.probe.source, config.admin_listen
        )
    })?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        trigger.cancel();
    });
    sipmon::run(config, sockets, shutdown).await
}

/// Ctrl-C or SIGTERM (systemd).
async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

async fn status(admin: &str, watch: Option<u64>) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .context("building the HTTP client")?;
    let Some(secs) = watch else {
        let report = sipmon::status::fetch(&client, admin).await?;
        // A closed pipe (`| head`) is a normal end, not an error.
        let _ = std::io::stdout().write_all(sipmon::status::render_table(&report).as_bytes());
        return Ok(());
    };
    loop {
        // Clear the screen and home the cursor, then draw.
        let body = match sipmon::status::fetch(&client, admin).await {
            Ok(report) => sipmon::status::render_table(&report),
            Err(e) => format!("{e}\n"),
        };
        let frame = format!("\x1b[2J\x1b[H{body}\n(every {secs}s, Ctrl-C to stop)\n");
        let mut out = std::io::stdout();
        if out
            .write_all(frame.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(()); // the reader went away
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(secs.max(1))) => {}
        }
    }
}
