//! `GET /v1/status` (JSON) and the `sipmon status` table rendered from it.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::health::State;

/// The whole status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Monitor id.
    pub monitor: String,
    /// True while the safety gate holds the last pushed set.
    pub holding: bool,
    /// Why, while holding.
    pub hold_reason: Option<String>,
    /// Every known proxy.
    pub proxies: Vec<ProxyStatus>,
    /// Push state per LB.
    pub lbs: Vec<LbPushStatus>,
}

/// One proxy row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// Proxy id.
    pub id: String,
    /// Probe address.
    pub addr: String,
    /// Up or down.
    pub state: State,
    /// Median RTT of recent probes, in milliseconds.
    pub rtt_p50_ms: Option<f64>,
    /// Milliseconds since the last state change (or since first seen).
    pub last_change_ago_ms: u64,
    /// Consecutive failed probes.
    pub consecutive_fails: u32,
    /// Consecutive successful probes.
    pub consecutive_oks: u32,
    /// State changes so far.
    pub flaps: u64,
}

/// One LB row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LbPushStatus {
    /// LB admin URL.
    pub url: String,
    /// Last result, human readable (`200 ok`, `unreachable: …`).
    pub last_result: Option<String>,
    /// Milliseconds since the last accepted push.
    pub last_success_ago_ms: Option<u64>,
    /// Milliseconds since the last attempt.
    pub last_attempt_ago_ms: Option<u64>,
    /// Generation of the last accepted push.
    pub last_generation: Option<u64>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
}

/// `1.2s ago`, `3m ago`, `never`.
pub fn format_ago(ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return "never".into();
    };
    let d = Duration::from_millis(ms);
    if d < Duration::from_secs(60) {
        format!("{:.1}s ago", d.as_secs_f64())
    } else if d < Duration::from_secs(3600) {
        format!("{}m ago", d.as_secs() / 60)
    } else {
        format!("{}h{:02}m ago", d.as_secs() / 3600, d.as_secs() % 3600 / 60)
    }
}

/// The table `sipmon status` prints.
pub fn render_table(s: &StatusReport) -> String {
    let mut out = String::new();
    let hold = match (&s.holding, &s.hold_reason) {
        (true, Some(r)) => format!("  HOLDING LAST SET ({r})"),
        (true, None) => "  HOLDING LAST SET".into(),
        _ => String::new(),
    };
    let _ = writeln!(out, "monitor {}{hold}", s.monitor);
    let _ = writeln!(
        out,
        "{:<16} {:<24} {:<5} {:>9} {:>12} {:>5} {:>5} {:>5}",
        "PROXY", "ADDR", "STATE", "RTT p50", "CHANGED", "FAILS", "OKS", "FLAPS"
    );
    for p in &s.proxies {
        let state = match p.state {
            State::Up => "up",
            State::Down => "DOWN",
        };
        let rtt = p
            .rtt_p50_ms
            .map(|ms| format!("{ms:.1}ms"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<16} {:<24} {:<5} {:>9} {:>12} {:>5} {:>5} {:>5}",
            p.id,
            p.addr,
            state,
            rtt,
            format_ago(Some(p.last_change_ago_ms)),
            p.consecutive_fails,
            p.consecutive_oks,
            p.flaps
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<32} {:<36} {:>12} {:>5}",
        "LB", "LAST RESULT", "LAST OK", "FAILS"
    );
    for lb in &s.lbs {
        let mut result = lb.last_result.clone().unwrap_or_else(|| "-".into());
        if result.chars().count() > 36 {
            result = result.chars().take(35).collect::<String>() + "…";
        }
        let _ = writeln!(
            out,
            "{:<32} {:<36} {:>12} {:>5}",
            lb.url,
            result,
            format_ago(lb.last_success_ago_ms),
            lb.consecutive_failures
        );
    }
    out
}

/// Why the status could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No HTTP answer.
    #[error("cannot reach sipmon admin at {url}: {source}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The client error.
        source: reqwest::Error,
    },
    /// An answer that is not a status document.
    #[error("{url} answered {status}: not a sipmon status")]
    BadAnswer {
        /// The URL asked.
        url: String,
        /// HTTP status.
        status: u16,
    },
}

/// Reads `GET {admin}/v1/status`.
pub async fn fetch(client: &reqwest::Client, admin: &str) -> Result<StatusReport, StatusError> {
    let url = format!("{}/v1/status", admin.trim_end_matches('/'));
    let unreachable = |source| StatusError::Unreachable {
        url: url.clone(),
        source,
    };
    let resp = client.get(&url).send().await.map_err(unreachable)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(StatusError::BadAnswer { url, status });
    }
    resp.json()
        .await
        .map_err(|_| StatusError::BadAnswer { url, status })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ago() {
        let cases = [
            (None, "never"),
            (Some(1_260), "1.3s ago"),
            (Some(125_000), "2m ago"),
            (Some(3_720_000), "1h02m ago"),
        ];
        for (ms, want) in cases {
            assert_eq!(format_ago(ms), want);
        }
    }

    #[test]
    fn table() {
        let s = StatusReport {
            monitor: "mon-a".into(),
            holding: true,
            hold_reason: Some("2 of 3 went down at once".into()),
            proxies: vec![ProxyStatus {
                id: "p1".into(),
                addr: "127.0.0.1:5071".into(),
                state: State::Down,
                rtt_p50_ms: Some(1.26),
                last_change_ago_ms: 4_000,
                consecutive_fails: 4,
                consecutive_oks: 0,
                flaps: 1,
            }],
            lbs: vec![LbPushStatus {
                url: "http://127.0.0.1:9060".into(),
                last_result: Some("200 ok".into()),
                last_success_ago_ms: Some(500),
                last_attempt_ago_ms: Some(500),
                last_generation: Some(7),
                consecutive_failures: 0,
            }],
        };
        let t = render_table(&s);
        assert!(
            t.starts_with("monitor mon-a  HOLDING LAST SET (2 of 3 went down at once)\n"),
            "{t}"
        );
        let row = t.lines().find(|l| l.starts_with("p1")).expect("proxy row");
        for cell in ["127.0.0.1:5071", "DOWN", "1.3ms", "4.0s ago"] {
            assert!(row.contains(cell), "{cell}: {row}");
        }
        let lb = t
            .lines()
            .find(|l| l.starts_with("http://"))
            .expect("lb row");
        assert!(lb.contains("200 ok") && lb.contains("0.5s ago"), "{lb}");
        // The JSON round-trips (the CLI reads what the server writes).
        let json = serde_json::to_string(&s).expect("json");
        assert_eq!(
            serde_json::from_str::<StatusReport>(&json).expect("parse"),
            s
        );
    }
}
