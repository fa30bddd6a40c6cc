//! Driving real SIPp processes from the end-to-end tests: free loopback
//! ports, readiness read from `/proc/net/udp`, bounded runs killed on drop,
//! and the last row of SIPp's `-trace_stat` CSV.
//!
//! Every SIPp started here is bounded: the caller gives `-m` and every process
//! gets `-timeout`; [`Sipp`] kills its process when dropped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

/// `SIPEDGE_REQUIRE_SIPP=1` turns a missing `sipp` into a failure.
pub const REQUIRE_ENV: &str = "SIPEDGE_REQUIRE_SIPP";

/// The `sipp` binary on `PATH`, if any.
pub fn sipp_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("sipp"))
        .find(|p| p.is_file())
}

/// The `sipp` binary, or `None` after printing why `test` is skipped.
///
/// # Panics
/// When `sipp` is missing and [`REQUIRE_ENV`] is `1`: CI asked for the test.
pub fn sipp_or_skip(test: &str) -> Option<PathBuf> {
    match sipp_binary() {
        Some(p) => Some(p),
        None if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") => {
            panic!("{test}: sipp not found on PATH and {REQUIRE_ENV}=1")
        }
        None => {
            eprintln!("SKIP {test}: sipp not found on PATH (set {REQUIRE_ENV}=1 to fail instead)");
            None
        }
    }
}

/// A SIPp scenario file of this crate (`tests/sipp/NAME`).
pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sipp")
        .join(name)
}

/// A UDP port on `ip` that was free a moment ago: bind port 0, read it, release.
///
/// SIPp cannot take an already bound socket, so there is a small window in
/// which another process could take the port; [`Sipp::wait_bound`] notices.
pub fn free_udp_port(ip: IpAddr) -> std::io::Result<u16> {
    let s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
    Ok(s.local_addr()?.port())
}

/// Whether some socket is bound to UDP `port` (read from `/proc/net/udp{,6}`,
/// so that checking does not itself take the port).
pub fn udp_port_bound(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|text| {
            text.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|local| local.ends_with(&want))
            })
        })
    })
}

/// One running SIPp process.
#[derive(Debug)]
pub struct Sipp {
    /// A label for messages.
    pub name: String,
    /// Its `-trace_stat` file.
    pub stat: PathBuf,
    /// Its `-trace_err` file.
    pub errors: PathBuf,
    /// The UDP port it listens on.
    pub port: u16,
    child: Child,
}

impl Sipp {
    /// Starts `sipp` with `args` (scenario, addresses, bounds) plus the
    /// statistics options, in `dir`, on 127.0.0.1:`port`.
    pub fn spawn(
        sipp: &Path,
        name: &str,
        dir: &Path,
        port: u16,
        args: &[String],
    ) -> std::io::Result<Sipp> {
        let stat = dir.join(format!("{name}_stat.csv"));
        let errors = dir.join(format!("{name}_errors.log"));
        let screen = std::fs::File::create(dir.join(format!("{name}.screen")))?;
        let child = Command::new(sipp)
            .current_dir(dir)
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
            .args(args)
            .arg("-trace_stat")
            .arg("-stf")
            .arg(&stat)
            .args(["-fd", "1", "-trace_err", "-error_file"])
            .arg(&errors)
            .stdin(Stdio::null())
            .stdout(Stdio::from(screen.try_clone()?))
            .stderr(Stdio::from(screen))
            .kill_on_drop(true)
            .spawn()?;
        Ok(Sipp {
            name: name.to_string(),
            stat,
            errors,
            port,
            child,
        })
    }

    /// Waits (at most `limit`) until its UDP port is bound; false if it exited
    /// or the time ran out.
    pub async fn wait_bound(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            if udp_port_bound(self.port) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Waits at most `limit` for it to exit by itself.
    pub async fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()?
            .ok()
    }

    /// Asks it to stop with SIGTERM (SIPp then writes its final statistics
    /// row) and waits at most `limit`; kills it if it is still there.
    pub async fn stop(&mut self, limit: Duration) -> Option<ExitStatus> {
        if let Some(pid) = self.child.id() {
            // No libc in this crate: the `kill` utility sends the signal.
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match self.wait(limit).await {
            Some(s) => Some(s),
            None => {
                let _ = self.child.kill().await;
                None
            }
        }
    }

    /// The last row of its statistics CSV, by column name.
    pub fn last_stats(&self) -> std::io::Result<Stats> {
        Stats::read_last(&self.stat)
    }

    /// The first lines of its error log (empty when there is none).
    pub fn error_excerpt(&self) -> String {
        std::fs::read_to_string(&self.errors)
            .map(|t| t.lines().take(20).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

/// One row of SIPp's `-trace_stat` CSV (`;`-separated, header first).
#[derive(Debug, Clone, Default)]
pub struct Stats(pub HashMap<String, String>);

impl Stats {
    /// Parses the last row of `path`.
    pub fn read_last(path: &Path) -> std::io::Result<Stats> {
        let text = std::fs::read_to_string(path)?;
        Ok(Stats::parse_last(&text))
    }

    /// Parses the last non-empty row of CSV `text`.
    pub fn parse_last(text: &str) -> Stats {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let Some(head) = lines.next() else {
            return Stats::default();
        };
        let Some(last) = lines.next_back() else {
            return Stats::default();
        };
        Stats(
            head.split(';')
                .map(str::to_string)
                .zip(last.split(';').map(str::to_string))
                .collect(),
        )
    }

    /// A cumulative counter such as `SuccessfulCall(C)`; 0 when absent.
    pub fn counter(&self, column: &str) -> u64 {
        self.0
            .get(column)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_the_last_row() {
        let cases = [
            ("", "SuccessfulCall(C)", 0),
            ("A;SuccessfulCall(C);\n", "SuccessfulCall(C)", 0),
            (
                "A;SuccessfulCall(C);\nx;3;\ny;7;\n\n",
                "SuccessfulCall(C)",
                7,
            ),
            ("A;FailedCall(C);\nx; 2;\n", "FailedCall(C)", 2),
            ("A;B;\nx;y;\n", "Missing(C)", 0),
        ];
        for (text, col, want) in cases {
            assert_eq!(Stats::parse_last(text).counter(col), want, "{text:?}");
        }
    }

    #[test]
    fn a_bound_port_is_seen_and_a_free_one_is_not() {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = s.local_addr().expect("addr").port();
        assert!(udp_port_bound(port));
        drop(s);
        assert!(!udp_port_bound(port));
    }
}
