//! sipmon configuration: the TOML schema (`deny_unknown_fields`) and its
//! `validate()` into typed values; every error names the key and the file.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sipedge_shared::config::{self as shared_config, serde_duration, ConfigError};

/// Probe transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// One UDP socket bound to the source, responses matched by Via branch.
    Udp,
    /// One TCP connection per proxy, Content-Length framing.
    Tcp,
}

impl Transport {
    /// The token used in the Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_down_after() -> u32 {
    3
}
fn default_up_after() -> u32 {
    2
}
fn default_down_codes() -> Vec<u16> {
    vec![503]
}
fn default_transport() -> Transport {
    Transport::Udp
}
fn default_refresh() -> Duration {
    Duration::from_secs(60)
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(5)
}
fn default_push_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_retry_min() -> Duration {
    Duration::from_millis(200)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(5)
}
fn default_max_down_share() -> f64 {
    0.5
}

/// The file as written (serde view). Use [`Config::load`] for typed values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Monitor id, sent with every report.
    pub id: String,
    /// Anycast VIPs of the edge: the probe source must not be one of them.
    #[serde(default)]
    pub anycast_vips: Vec<IpAddr>,
    /// `[probe]`.
    pub probe: RawProbe,
    /// `[[proxies]]`: the static proxy list.
    #[serde(default)]
    pub proxies: Vec<RawProxy>,
    /// `[[srv]]`: DNS SRV names resolved periodically.
    #[serde(default)]
    pub srv: Vec<RawSrv>,
    /// `[push]`.
    pub push: RawPush,
    /// `[safety]`.
    #[serde(default)]
    pub safety: RawSafety,
    /// `[admin]`.
    pub admin: RawAdmin,
}

/// `[probe]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// Time between probe rounds.
    #[serde(with = "serde_duration", default = "default_interval")]
    pub interval: Duration,
    /// Probe timeout (default: the interval).
    #[serde(with = "opt_duration", default)]
    pub timeout: Option<Duration>,
    /// Consecutive failures before a proxy is down.
    #[serde(default = "default_down_after")]
    pub down_after: u32,
    /// Consecutive successes before a proxy is up again.
    #[serde(default = "default_up_after")]
    pub up_after: u32,
    /// Final response codes that count as down.
    #[serde(default = "default_down_codes")]
    pub down_codes: Vec<u16>,
    /// `udp` or `tcp`.
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// Unicast source address (`ip` or `ip:port`) the probes are sent from.
    pub source: String,
}

/// `[[proxies]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// Proxy id, as the LBs know it.
    pub id: String,
    /// `ip:port`.
    pub addr: String,
}

/// `[[srv]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSrv {
    /// e.g. `_sip._udp.example.com`.
    pub name: String,
    /// Re-resolution period.
    #[serde(with = "serde_duration", default = "default_refresh")]
    pub refresh: Duration,
}

/// `[push]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPush {
    /// LB admin base URLs, e.g. `http://127.0.0.1:9060`.
    pub lbs: Vec<String>,
    /// Bearer token.
    pub token: String,
    /// Period of the unconditional re-push.
    #[serde(with = "serde_duration", default = "default_heartbeat")]
    pub heartbeat: Duration,
    /// Per-request timeout.
    #[serde(with = "serde_duration", default = "default_push_timeout")]
    pub timeout: Duration,
    /// Retry backoff after a failed push.
    #[serde(default)]
    pub retry: RawRetry,
}

/// `[push.retry]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// First retry delay.
    #[serde(with = "serde_duration", default = "default_retry_min")]
    pub min: Duration,
    /// Delay cap (must not exceed the heartbeat).
    #[serde(with = "serde_duration", default = "default_retry_max")]
    pub max: Duration,
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            min: default_retry_min(),
            max: default_retry_max(),
        }
    }
}

/// `[safety]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSafety {
    /// Share of proxies that may go down at once before the set is held.
    #[serde(default = "default_max_down_share")]
    pub max_down_share: f64,
}

impl Default for RawSafety {
    fn default() -> Self {
        RawSafety {
            max_down_share: default_max_down_share(),
        }
    }
}

/// `[admin]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// sipmon's own HTTP listener (`/metrics`, `/healthz`, `/v1/status`).
    pub listen: SocketAddr,
}

/// Optional durations (`timeout` defaults to the interval).
mod opt_duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    struct Wrap(#[serde(with = "sipedge_shared::config::serde_duration")] Duration);

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Some(Wrap::deserialize(d)?.0))
    }
}

/// A statically configured proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    /// Proxy id.
    pub id: String,
    /// Where OPTIONS go.
    pub addr: SocketAddr,
}

/// A DNS SRV name to resolve into proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvSource {
    /// e.g. `_sip._udp.example.com`.
    pub name: String,
    /// Re-resolution period.
    pub refresh: Duration,
}

/// Validated probe settings.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Time between rounds.
    pub interval: Duration,
    /// Probe timeout, ≤ interval.
    pub timeout: Duration,
    /// N consecutive failures → down.
    pub down_after: NonZeroU32,
    /// M consecutive successes → up.
    pub up_after: NonZeroU32,
    /// Final codes that mean down.
    pub down_codes: Vec<u16>,
    /// UDP or TCP.
    pub transport: Transport,
    /// Unicast source (port 0 = any).
    pub source: SocketAddr,
}

/// Validated push settings.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// LB admin base URLs, without a trailing slash.
    pub lbs: Vec<String>,
    /// Bearer token.
    pub token: String,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// First retry delay.
    pub retry_min: Duration,
    /// Retry delay cap (≤ heartbeat).
    pub retry_max: Duration,
}

/// The validated configuration handed to [`crate::run`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Monitor id.
    pub id: String,
    /// Probing.
    pub probe: ProbeConfig,
    /// Static proxies.
    pub proxies: Vec<ProxyTarget>,
    /// SRV names.
    pub srv: Vec<SrvSource>,
    /// Pushing to the LBs.
    pub push: PushConfig,
    /// Hold the last set when more than this share goes down at once.
    pub max_down_share: f64,
    /// Admin listener address (the caller binds it).
    pub admin_listen: SocketAddr,
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = shared_config::load(path)?;
        raw.validate(path)
    }

    /// Parses and validates `text`, attributing errors to `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = shared_config::parse(path, text)?;
        raw.validate(path)
    }
}

/// Parses `ip` or `ip:port` (`[v6]:port`); a bare IP gets port 0.
fn parse_source(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0)))
}

impl RawConfig {
    /// Checks every value and converts to [`Config`].
    pub fn validate(self, file: &Path) -> Result<Config, ConfigError> {
        let bad = |key: &str, msg: String| ConfigError::invalid(file, key, msg);
        if self.id.trim().is_empty() {
            return Err(bad("id", "must not be empty".into()));
        }
        let p = self.probe;
        if p.interval.is_zero() {
            return Err(bad("probe.interval", "must be > 0".into()));
        }
        let timeout = p.timeout.unwrap_or(p.interval);
        if timeout.is_zero() || timeout > p.interval {
            return Err(bad(
                "probe.timeout",
                format!(
                    "must be > 0 and ≤ probe.interval ({}ms)",
                    p.interval.as_millis()
                ),
            ));
        }
        let down_after = NonZeroU32::new(p.down_after)
            .ok_or_else(|| bad("probe.down_after", "must be ≥ 1".into()))?;
        let up_after = NonZeroU32::new(p.up_after)
            .ok_or_else(|| bad("probe.up_after", "must be ≥ 1".into()))?;
        if let Some(c) = p.down_codes.iter().find(|c| !(200..=699).contains(*c)) {
            return Err(bad(
                "probe.down_codes",
                format!("{c} is not a final SIP response code (200–699)"),
            ));
        }
        let source = parse_source(&p.source).ok_or_else(|| {
            bad(
                "probe.source",
                format!("`{}` is not ip or ip:port", p.source),
            )
        })?;
        if source.ip().is_unspecified() || source.ip().is_multicast() {
            return Err(bad(
                "probe.source",
                format!(
                    "{} must be a unicast address of this host (it goes into the Via)",
                    source.ip()
                ),
            ));
        }
        if self.anycast_vips.contains(&source.ip()) {
            return Err(bad(
                "probe.source",
                format!(
                    "{} is an anycast VIP: replies to it would land on another node; use this host's unicast address",
                    source.ip()
                ),
            ));
        }

        let mut ids = HashSet::new();
        let mut proxies = Vec::with_capacity(self.proxies.len());
        for (i, px) in self.proxies.into_iter().enumerate() {
            if px.id.trim().is_empty() {
                return Err(bad(&format!("proxies[{i}].id"), "must not be empty".into()));
            }
            if !ids.insert(px.id.clone()) {
                return Err(bad(
                    &format!("proxies[{i}].id"),
                    format!("duplicate proxy id `{}`", px.id),
                ));
            }
            let addr = px.addr.parse::<SocketAddr>().map_err(|_| {
                bad(
                    &format!("proxies[{i}].addr"),
                    format!("`{}` is not ip:port", px.addr),
                )
            })?;
            proxies.push(ProxyTarget { id: px.id, addr });
        }
        let mut srv = Vec::with_capacity(self.srv.len());
        for (i, s) in self.srv.into_iter().enumerate() {
            if !s.name.starts_with('_') || !s.name.contains('.') {
                return Err(bad(
                    &format!("srv[{i}].name"),
                    format!("`{}` is not an SRV name like _sip._udp.example.com", s.name),
                ));
            }
            if s.refresh.is_zero() {
                return Err(bad(&format!("srv[{i}].refresh"), "must be > 0".into()));
            }
            srv.push(SrvSource {
                name: s.name,
                refresh: s.refresh,
            });
        }
        if proxies.is_empty() && srv.is_empty() {
            return Err(bad(
                "proxies",
                "configure at least one [[proxies]] or [[srv]] entry".into(),
            ));
        }

        let push = self.push;
        if push.lbs.is_empty() {
            return Err(bad("push.lbs", "list at least one LB admin URL".into()));
        }
        let mut lbs = Vec::with_capacity(push.lbs.len());
        for (i, lb) in push.lbs.iter().enumerate() {
            let url = reqwest::Url::parse(lb)
                .map_err(|e| bad(&format!("push.lbs[{i}]"), format!("`{lb}`: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(bad(
                    &format!("push.lbs[{i}]"),
                    format!("`{lb}` must be an http(s) URL with a host"),
                ));
            }
            lbs.push(lb.trim_end_matches('/').to_string());
        }
        if push.token.trim().is_empty() {
            return Err(bad("push.token", "must not be empty".into()));
        }
        if push.heartbeat.is_zero() {
            return Err(bad("push.heartbeat", "must be > 0".into()));
        }
        if push.timeout.is_zero() {
            return Err(bad("push.timeout", "must be > 0".into()));
        }
        if push.retry.min.is_zero() || push.retry.min > push.retry.max {
            return Err(bad(
                "push.retry.min",
                "must be > 0 and ≤ push.retry.max".into(),
            ));
        }
        // The heartbeat promise (a returning LB gets the set within one
        // heartbeat) only holds if retries are never further apart.
        if push.retry.max > push.heartbeat {
            return Err(bad(
                "push.retry.max",
                format!(
                    "must be ≤ push.heartbeat ({}ms)",
                    push.heartbeat.as_millis()
                ),
            ));
        }
        let share = self.safety.max_down_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(bad(
                "safety.max_down_share",
                format!("{share} must be in (0, 1]"),
            ));
        }
        Ok(Config {
            id: self.id,
            probe: ProbeConfig {
                interval: p.interval,
                timeout,
                down_after,
                up_after,
                down_codes: p.down_codes,
                transport: p.transport,
                source,
            },
            proxies,
            srv,
            push: PushConfig {
                lbs,
                token: push.token,
                heartbeat: push.heartbeat,
                timeout: push.timeout,
                retry_min: push.retry.min,
                retry_max: push.retry.max,
            },
            max_down_share: share,
            admin_listen: self.admin.listen,
        })
    }
}

/// The example shipped in `deploy/`, relative to this crate.
pub fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("deploy")
        .join("sipmon.example.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
id = "mon-a"
anycast_vips = ["203.0.113.10"]
[probe]
source = "127.0.0.1"
[[proxies]]
id = "p1"
addr = "127.0.0.1:5071"
[push]
lbs = ["http://127.0.0.1:9060/"]
token = "t"
[admin]
listen = "127.0.0.1:0"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("sipmon.toml"), text)
    }

    #[test]
    fn defaults() {
        let c = parse(BASE).expect("valid");
        assert_eq!(c.probe.interval, Duration::from_secs(1));
        assert_eq!(c.probe.timeout, c.probe.interval);
        assert_eq!(c.probe.down_after.get(), 3);
        assert_eq!(c.probe.up_after.get(), 2);
        assert_eq!(c.probe.down_codes, vec![503]);
        assert_eq!(c.probe.transport, Transport::Udp);
        assert_eq!(c.probe.source, "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(c.push.heartbeat, Duration::from_secs(5));
        assert_eq!(c.push.lbs, vec!["http://127.0.0.1:9060".to_string()]);
        assert_eq!(c.max_down_share, 0.5);
    }

    #[test]
    fn invalid_values_name_key_and_file() {
        // (replace this, with this, expected key in the message)
        let cases = [
            (
                "source = \"127.0.0.1\"",
                "source = \"203.0.113.10\"",
                "probe.source",
            ),
            (
                "source = \"127.0.0.1\"",
                "source = \"0.0.0.0\"",
                "probe.source",
            ),
            (
                "source = \"127.0.0.1\"",
                "source = \"nope\"",
                "probe.source",
            ),
            (
                "source = \"127.0.0.1\"",
                "source = \"127.0.0.1\"\ninterval = \"1s\"\ntimeout = \"2s\"",
                "probe.timeout",
            ),
            (
                "source = \"127.0.0.1\"",
                "source = \"127.0.0.1\"\ndown_after = 0",
                "probe.down_after",
            ),
            (
                "source = \"127.0.0.1\"",
                "source = \"127.0.0.1\"\ndown_codes = [180]",
                "probe.down_codes",
            ),
            (
                "addr = \"127.0.0.1:5071\"",
                "addr = \"localhost\"",
                "proxies[0].addr",
            ),
            ("token = \"t\"", "token = \"\"", "push.token"),
            (
                "token = \"t\"",
                "token = \"t\"\nretry = { min = \"1s\", max = \"10s\" }",
                "push.retry.max",
            ),
            (
                "lbs = [\"http://127.0.0.1:9060/\"]",
                "lbs = [\"ftp://x\"]",
                "push.lbs[0]",
            ),
            ("lbs = [\"http://127.0.0.1:9060/\"]", "lbs = []", "push.lbs"),
            (
                "[admin]",
                "[safety]\nmax_down_share = 1.5\n[admin]",
                "safety.max_down_share",
            ),
            ("id = \"mon-a\"", "id = \"\"", "id"),
        ];
        for (from, to, key) in cases {
            let text = BASE.replacen(from, to, 1);
            assert_ne!(text, BASE, "{from}");
            let err = parse(&text).expect_err(to).to_string();
            assert!(err.starts_with("sipmon.toml:"), "{err}");
            assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        }
    }

    #[test]
    fn duplicate_proxy_id_and_empty_list() {
        let dup = format!("{BASE}[[proxies]]\nid = \"p1\"\naddr = \"127.0.0.1:5072\"\n");
        let err = parse(&dup).expect_err("duplicate").to_string();
        assert!(err.contains("proxies[1].id"), "{err}");
        let none = BASE.replace("[[proxies]]\nid = \"p1\"\naddr = \"127.0.0.1:5071\"\n", "");
        let err = parse(&none).expect_err("no proxies").to_string();
        assert!(err.contains("`proxies`"), "{err}");
        let srv_only = format!("{none}[[srv]]\nname = \"_sip._udp.example.com\"\n");
        let c = parse(&srv_only).expect("srv only is enough");
        assert_eq!(c.srv[0].refresh, Duration::from_secs(60));
    }

    #[test]
    fn shipped_example_parses_and_unknown_keys_are_named() {
        let path = example_path();
        let text = std::fs::read_to_string(&path).expect("deploy/sipmon.example.toml exists");
        let c = Config::parse(&path, &text).expect("example is valid");
        assert_eq!(c.id, "mon-a");
        // An unknown key injected in each table must be refused by name.
        for table in ["[probe]", "[push]", "[safety]", "[admin]", "[[proxies]]"] {
            assert!(text.contains(table), "example has {table}");
            let bad = text.replacen(table, &format!("{table}\nbogus_key = 1"), 1);
            let err = Config::parse(&path, &bad).expect_err(table).to_string();
            assert!(err.contains("bogus_key"), "{table}: {err}");
            assert!(err.contains("sipmon.example.toml"), "{table}: {err}");
        }
        let err = Config::parse(&path, &format!("bogus_top = 1\n{text}"))
            .expect_err("top-level")
            .to_string();
        assert!(err.contains("bogus_top"), "{err}");
    }
}
