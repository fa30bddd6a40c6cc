//! The LB's TOML configuration: `deny_unknown_fields` file structs, then
//! [`LbFile::validate`] into a typed [`LbConfig`]; every error names the key and the file.
//!
//! [`DEFAULT_CONFIG`] is the embedded configuration of the local stack
//! (loopback, three proxies, a demo flow key): never use it in production.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sipedge_shared::carrier::{CarrierConfig, CarrierMap};
use sipedge_shared::config::{self, serde_duration, ConfigError};
use sipedge_shared::flow_token::FlowKey;
use sipedge_shared::sip::Limits as SipLimits;

use crate::context::Settings;
use crate::flood::FloodSettings;
use crate::proxy_set::Proxy;
use crate::run::{Listen as RunListen, RunConfig};
use crate::txn::Timers;

/// The embedded configuration for the local stack: UDP/TCP on
/// 127.0.0.1:5060, TLS on 5061 (self-signed), admin on 127.0.0.1:9060, proxies
/// on 127.0.0.1:5071..5073, and a demo flow key.
pub const DEFAULT_CONFIG: &str = r#"# Embedded local-stack defaults (loopback only; the flow key is public).
id = 1
edge = "local"

[listen]
udp = ["127.0.0.1:5060"]
tcp = ["127.0.0.1:5060"]
tls = ["127.0.0.1:5061"]
advertise = "127.0.0.1"
internal = "127.0.0.1:5080"
workers = 2

[tls]
self_signed = true

[flow]
keys = ["hex:73697065646765206c6f63616c2064656d6f206b657920303031"]
keepalive_interval = "30s"
keepalive_max_missed = 2

[transaction]
timer_non_invite = "2s"
timer_invite = "2s"

[[proxies]]
id = "p1"
addr = "127.0.0.1:5071"

[[proxies]]
id = "p2"
addr = "127.0.0.1:5072"

[[proxies]]
id = "p3"
addr = "127.0.0.1:5073"

[admin]
listen = "127.0.0.1:9060"
token = "local-stack-admin-token"
monitor_freshness = "10s"

[log]
level = "info"
"#;

/// The pseudo-path errors in [`DEFAULT_CONFIG`] are attributed to.
pub const DEFAULT_CONFIG_PATH: &str = "<embedded lb.toml>";

fn default_workers() -> usize {
    1
}
fn default_keepalive() -> Duration {
    Duration::from_secs(30)
}
fn default_max_missed() -> u32 {
    2
}
fn two_seconds() -> Duration {
    Duration::from_secs(2)
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

/// The file as written (see `deploy/lb.example.toml` for every key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbFile {
    /// LB id, carried in flow tokens.
    pub id: u16,
    /// Site or region label (`edge` metrics label).
    pub edge: String,
    /// Listening addresses.
    pub listen: ListenFile,
    /// TLS certificate source; required when `listen.tls` is not empty.
    #[serde(default)]
    pub tls: Option<TlsFile>,
    /// Flow tokens and keepalives.
    pub flow: FlowFile,
    /// Failover timers.
    #[serde(default)]
    pub transaction: TransactionFile,
    /// The static proxy list, used until a monitor reports.
    #[serde(default)]
    pub proxies: Vec<ProxyFile>,
    /// Admin HTTP server.
    pub admin: AdminFile,
    /// Flood control.
    #[serde(default)]
    pub flood: FloodFile,
    /// Message and connection limits.
    #[serde(default)]
    pub limits: LimitsFile,
    /// Source CIDR → carrier name, for metrics.
    #[serde(default)]
    pub carrier: Vec<CarrierConfig>,
    /// Logging.
    #[serde(default)]
    pub log: LogFile,
}

/// `[listen]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFile {
    /// External UDP addresses (IPv4 and IPv6).
    #[serde(default)]
    pub udp: Vec<String>,
    /// External TCP addresses.
    #[serde(default)]
    pub tcp: Vec<String>,
    /// External TLS addresses.
    #[serde(default)]
    pub tls: Vec<String>,
    /// Host (or host:port) put in the outside-facing Record-Route: the VIP.
    pub advertise: String,
    /// Unicast internal address facing the proxies (in Path/Record-Route).
    pub internal: String,
    /// Workers, each with its own internal UDP socket.
    #[serde(default = "default_workers")]
    pub workers: usize,
}

/// `[tls]`: either PEM files or a self-signed certificate (local stack only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// Certificate chain, PEM (relative paths are relative to the config file).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Private key, PEM.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Generate a self-signed certificate at start.
    #[serde(default)]
    pub self_signed: bool,
}

/// `[flow]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFile {
    /// Flow-token secrets (hex or base64, ≥ 16 bytes); the first signs.
    pub keys: Vec<String>,
    /// Idle time before a double-CRLF ping on a stream flow.
    #[serde(with = "serde_duration", default = "default_keepalive")]
    pub keepalive_interval: Duration,
    /// Missed pongs (after one was seen) before the flow is closed.
    #[serde(default = "default_max_missed")]
    pub keepalive_max_missed: u32,
}

/// `[transaction]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionFile {
    /// Failover timer for non-INVITE requests.
    #[serde(with = "serde_duration", default = "two_seconds")]
    pub timer_non_invite: Duration,
    /// Failover timer for an INVITE that has had no provisional response.
    #[serde(with = "serde_duration", default = "two_seconds")]
    pub timer_invite: Duration,
    /// How long an INVITE may stay in Proceeding (RFC 3261 Timer C, > 3 min).
    #[serde(with = "serde_duration", default = "default_proceeding")]
    pub timer_proceeding: Duration,
    /// How long a completed transaction is kept to absorb retransmissions.
    #[serde(with = "serde_duration", default = "default_linger")]
    pub linger: Duration,
    /// Transactions one worker may hold; a new request beyond it gets 503.
    #[serde(default = "default_max_per_worker")]
    pub max_per_worker: usize,
}

fn default_max_per_worker() -> usize {
    crate::txn::DEFAULT_CAPACITY
}

fn default_proceeding() -> Duration {
    Timers::default().proceeding
}
fn default_linger() -> Duration {
    Timers::default().linger
}

impl Default for TransactionFile {
    fn default() -> Self {
        let t = Timers::default();
        TransactionFile {
            timer_non_invite: t.non_invite,
            timer_invite: t.invite,
            timer_proceeding: t.proceeding,
            linger: t.linger,
            max_per_worker: default_max_per_worker(),
        }
    }
}

/// One `[[proxies]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    /// Identity for hashing (never changes when the proxy is re-addressed).
    pub id: String,
    /// `ip:port`.
    pub addr: String,
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Admin HTTP address.
    pub listen: String,
    /// Bearer token monitors must present (≥ 16 characters).
    pub token: String,
    /// How long a monitor's report counts.
    #[serde(with = "serde_duration", default = "ten_seconds")]
    pub monitor_freshness: Duration,
}

/// `[flood]`; rates are per second per source IP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FloodFile {
    /// Requests per second.
    pub request_rate: u32,
    /// Request burst.
    pub request_burst: u32,
    /// REGISTERs per second.
    pub register_rate: u32,
    /// REGISTER burst.
    pub register_burst: u32,
    /// Concurrent stream connections per source.
    pub max_conns_per_ip: u32,
    /// New connections per second (also the burst).
    pub conn_rate: u32,
    /// Lowest Retry-After (seconds).
    pub retry_after_min: u32,
    /// Highest Retry-After (seconds).
    pub retry_after_max: u32,
    /// After this many rejections in a row a source is dropped silently.
    pub drop_after: u32,
}

impl Default for FloodFile {
    fn default() -> Self {
        let d = FloodSettings::default();
        FloodFile {
            request_rate: d.requests_per_sec.get(),
            request_burst: d.requests_burst.get(),
            register_rate: d.registers_per_sec.get(),
            register_burst: d.registers_burst.get(),
            max_conns_per_ip: d.max_conns_per_ip,
            conn_rate: d.conns_per_sec.get(),
            retry_after_min: d.retry_after.0,
            retry_after_max: d.retry_after.1,
            drop_after: d.drop_after,
        }
    }
}

fn default_handshake() -> Duration {
    Duration::from_secs(5)
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsFile {
    /// Largest SIP message, bytes.
    pub max_message_bytes: usize,
    /// Most header fields in one message.
    pub max_headers: usize,
    /// Longest start or header line, bytes.
    pub max_line_bytes: usize,
    /// Time for a TCP/TLS handshake and the first message.
    #[serde(with = "serde_duration", default = "default_handshake")]
    pub handshake_timeout: Duration,
}

impl Default for LimitsFile {
    fn default() -> Self {
        let d = SipLimits::default();
        LimitsFile {
            max_message_bytes: d.max_message,
            max_headers: d.max_headers,
            max_line_bytes: d.max_line,
            handshake_timeout: default_handshake(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogFile {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// One JSON object per line (otherwise human-readable text).
    pub json: bool,
    /// Share of requests/responses logged, 0.0 to 1.0 (errors always are).
    pub sample: f64,
}

impl Default for LogFile {
    fn default() -> Self {
        LogFile {
            level: "info".into(),
            json: true,
            sample: 1.0,
        }
    }
}

/// Validated listening addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// External UDP.
    pub udp: Vec<SocketAddr>,
    /// External TCP.
    pub tcp: Vec<SocketAddr>,
    /// External TLS.
    pub tls: Vec<SocketAddr>,
    /// Outside-facing Record-Route host (or host:port).
    pub advertise: String,
    /// Internal unicast address (worker `i` may use port + `i`, or 0 for any).
    pub internal: SocketAddr,
    /// Worker count.
    pub workers: NonZeroUsize,
}

/// Where the TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// PEM files, resolved against the config file's folder.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// Generated at start (local stack and tests).
    SelfSigned,
}

/// Validated flow settings.
#[derive(Debug, Clone)]
pub struct FlowSettings {
    /// Signing keys; the first signs, all verify.
    pub keys: Vec<FlowKey>,
    /// Idle time before a keepalive ping.
    pub keepalive_interval: Duration,
    /// Missed pongs before closing a flow that answered once.
    pub keepalive_max_missed: NonZeroU32,
}

/// Validated admin settings (Debug hides the token).
#[derive(Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Admin HTTP address.
    pub listen: SocketAddr,
    /// Bearer token.
    pub token: String,
    /// Monitor report freshness window.
    pub monitor_freshness: Duration,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("listen", &self.listen)
            .field("token", &"<redacted>")
            .field("monitor_freshness", &self.monitor_freshness)
            .finish()
    }
}

/// Validated limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Message limits for the parser.
    pub sip: SipLimits,
    /// TCP/TLS handshake and first-message timeout.
    pub handshake_timeout: Duration,
}

/// Log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and up.
    Warn,
    /// Info and up.
    Info,
    /// Debug and up.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Validated log settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogSettings {
    /// Level.
    pub level: LogLevel,
    /// JSON lines.
    pub json: bool,
    /// Sampled share, 0.0..=1.0.
    pub sample: f64,
}

/// The validated LB configuration.
#[derive(Debug, Clone)]
pub struct LbConfig {
    /// LB id (in flow tokens).
    pub id: u16,
    /// `edge` label.
    pub edge: String,
    /// Listeners.
    pub listen: Listen,
    /// TLS source, present when there are TLS listeners.
    pub tls: Option<TlsSource>,
    /// Flow tokens and keepalives.
    pub flow: FlowSettings,
    /// Transaction timers.
    pub transaction: Timers,
    /// Transactions one worker may hold.
    pub max_transactions: usize,
    /// Static proxies, sorted by id.
    pub proxies: Vec<Proxy>,
    /// Admin server.
    pub admin: AdminSettings,
    /// Flood control.
    pub flood: FloodSettings,
    /// Limits.
    pub limits: Limits,
    /// Carrier map (validated).
    pub carriers: CarrierMap,
    /// The `[[carrier]]` tables as written (what `run` builds its map from).
    pub carrier_tables: Vec<CarrierConfig>,
    /// Logging.
    pub log: LogSettings,
}

impl LbConfig {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        config::load::<LbFile>(path)?.validate(path)
    }

    /// Parses and validates `text`, naming `path` in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        config::parse::<LbFile>(path, text)?.validate(path)
    }

    /// The validated [`DEFAULT_CONFIG`].
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::parse(Path::new(DEFAULT_CONFIG_PATH), DEFAULT_CONFIG)
    }
}

impl LbConfig {
    /// What [`crate::run::bind`] and [`crate::run::run`] take. A
    /// [`TlsSource::SelfSigned`] certificate is generated into `tls_dir`
    /// (only then is anything written).
    pub fn to_run(&self, tls_dir: &Path) -> std::io::Result<(RunConfig, RunListen)> {
        let tls = match &self.tls {
            None => None,
            Some(TlsSource::Files { cert, key }) => Some((cert.clone(), key.clone())),
            Some(TlsSource::SelfSigned) => Some(write_self_signed(tls_dir)?),
        };
        let settings = Settings {
            lb_id: self.id,
            edge: self.edge.clone(),
            advertise: self.listen.advertise.clone(),
            internal: self.listen.internal,
            flow_keys: self.flow.keys.clone(),
            timers: self.transaction,
            max_transactions: self.max_transactions,
            keepalive_interval: self.flow.keepalive_interval,
            keepalive_max_missed: self.flow.keepalive_max_missed.get(),
            limits: self.limits.sip,
            handshake_timeout: self.limits.handshake_timeout,
            log_sample: self.log.sample,
        };
        let run = RunConfig {
            settings,
            flood: self.flood.clone(),
            static_proxies: self.proxies.clone(),
            monitor_freshness: self.admin.monitor_freshness,
            admin_token: self.admin.token.clone(),
            carriers: self.carrier_tables.clone(),
            tls,
        };
        let listen = RunListen {
            udp: self.listen.udp.clone(),
            tcp: self.listen.tcp.clone(),
            tls: self.listen.tls.clone(),
            internal: self.listen.internal,
            admin: self.admin.listen,
            workers: self.listen.workers.get(),
        };
        Ok((run, listen))
    }
}

/// Writes a self-signed certificate for `localhost`/127.0.0.1/::1 as
/// `lb-self-signed.crt` and `.key` (PEM) into `dir`: local stack and tests only.
pub fn write_self_signed(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let ck = rcgen::generate_simple_self_signed(names).map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let cert = dir.join("lb-self-signed.crt");
    let key = dir.join("lb-self-signed.key");
    std::fs::write(&cert, ck.cert.pem())?;
    std::fs::write(&key, ck.key_pair.serialize_pem())?;
    Ok((cert, key))
}

/// Names the file in every validation error.
struct Check<'a> {
    file: &'a Path,
}

impl Check<'_> {
    fn err(&self, key: impl Into<String>, msg: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.file, key, msg)
    }

    fn addr(&self, key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
        text.trim().parse().map_err(|_| {
            self.err(
                key,
                format!("`{text}` is not an address like 192.0.2.1:5060 or [2001:db8::1]:5060"),
            )
        })
    }

    fn addrs(&self, key: &str, list: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, t)| self.addr(&format!("{key}[{i}]"), t))
            .collect()
    }

    fn nz32(&self, key: &str, n: u32) -> Result<NonZeroU32, ConfigError> {
        NonZeroU32::new(n).ok_or_else(|| self.err(key, "must be at least 1"))
    }

    fn nzu(&self, key: &str, n: usize) -> Result<NonZeroUsize, ConfigError> {
        NonZeroUsize::new(n).ok_or_else(|| self.err(key, "must be at least 1"))
    }

    fn positive(&self, key: &str, d: Duration) -> Result<Duration, ConfigError> {
        if d.is_zero() {
            Err(self.err(key, "must be longer than 0"))
        } else {
            Ok(d)
        }
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl LbFile {
    /// Checks every value and converts to typed settings; `file` is named in
    /// errors and anchors relative TLS paths.
    pub fn validate(self, file: &Path) -> Result<LbConfig, ConfigError> {
        let c = Check { file };
        if !is_label(&self.edge) {
            return Err(c.err("edge", "must be non-empty [A-Za-z0-9_.-]"));
        }

        let l = &self.listen;
        let listen = Listen {
            udp: c.addrs("listen.udp", &l.udp)?,
            tcp: c.addrs("listen.tcp", &l.tcp)?,
            tls: c.addrs("listen.tls", &l.tls)?,
            advertise: l.advertise.trim().to_owned(),
            internal: c.addr("listen.internal", &l.internal)?,
            workers: c.nzu("listen.workers", l.workers)?,
        };
        if listen.udp.is_empty() && listen.tcp.is_empty() && listen.tls.is_empty() {
            return Err(c.err("listen", "needs at least one udp, tcp or tls address"));
        }
        if listen.advertise.is_empty() || listen.advertise.contains(char::is_whitespace) {
            return Err(c.err("listen.advertise", "must be a host or host:port"));
        }
        if listen.internal.ip().is_unspecified() || listen.internal.ip().is_multicast() {
            return Err(c.err(
                "listen.internal",
                "must be a unicast address: it is written into Path and Record-Route",
            ));
        }

        let base = file.parent().unwrap_or(Path::new(""));
        let tls = match (&self.tls, listen.tls.is_empty()) {
            (None, true) => None,
            (None, false) => {
                return Err(c.err(
                    "tls",
                    "listen.tls is set, so [tls] needs cert and key (or self_signed = true)",
                ))
            }
            (Some(t), _) => Some(match (&t.cert, &t.key, t.self_signed) {
                (Some(cert), Some(key), false) => TlsSource::Files {
                    cert: base.join(cert),
                    key: base.join(key),
                },
                (None, None, true) => TlsSource::SelfSigned,
                (_, _, true) => {
                    return Err(c.err("tls.self_signed", "cannot be combined with cert/key"))
                }
                (None, _, false) => {
                    return Err(c.err("tls.cert", "missing (or set self_signed = true)"))
                }
                (_, None, false) => return Err(c.err("tls.key", "missing")),
            }),
        };

        if self.flow.keys.is_empty() {
            return Err(c.err(
                "flow.keys",
                "at least one key is required (shared by every LB)",
            ));
        }
        let keys = self
            .flow
            .keys
            .iter()
            .enumerate()
            // Never echo the secret in the error.
            .map(|(i, k)| {
                FlowKey::parse_secret(k)
                    .map_err(|e| c.err(format!("flow.keys[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let flow = FlowSettings {
            keys,
            keepalive_interval: c
                .positive("flow.keepalive_interval", self.flow.keepalive_interval)?,
            keepalive_max_missed: c
                .nz32("flow.keepalive_max_missed", self.flow.keepalive_max_missed)?,
        };

        let t = &self.transaction;
        let transaction = Timers {
            non_invite: c.positive("transaction.timer_non_invite", t.timer_non_invite)?,
            invite: c.positive("transaction.timer_invite", t.timer_invite)?,
            proceeding: c.positive("transaction.timer_proceeding", t.timer_proceeding)?,
            linger: c.positive("transaction.linger", t.linger)?,
        };
        let max_transactions = c.nzu("transaction.max_per_worker", t.max_per_worker)?.get();

        let mut proxies = Vec::with_capacity(self.proxies.len());
        for (i, p) in self.proxies.iter().enumerate() {
            if !is_label(&p.id) {
                return Err(c.err(
                    format!("proxies[{i}].id"),
                    "must be non-empty [A-Za-z0-9_.-]",
                ));
            }
            let addr = c.addr(&format!("proxies[{i}].addr"), &p.addr)?;
            if let Some(j) = proxies.iter().position(|q: &Proxy| q.id == p.id) {
                return Err(c.err(
                    format!("proxies[{i}].id"),
                    format!("duplicate id `{}` (also proxies[{j}])", p.id),
                ));
            }
            // Hash ties are only possible between ids with colliding FNV
            // hashes; refusing them keeps every ranking strict.
            let h = sipedge_shared::hash::id_hash(&p.id);
            if let Some(q) = proxies
                .iter()
                .find(|q: &&Proxy| sipedge_shared::hash::id_hash(&q.id) == h)
            {
                return Err(c.err(
                    format!("proxies[{i}].id"),
                    format!(
                        "`{}` collides in the hash with `{}`; rename one",
                        p.id, q.id
                    ),
                ));
            }
            proxies.push(Proxy {
                id: p.id.clone(),
                addr,
            });
        }
        proxies.sort();

        let admin = AdminSettings {
            listen: c.addr("admin.listen", &self.admin.listen)?,
            token: self.admin.token.clone(),
            monitor_freshness: c
                .positive("admin.monitor_freshness", self.admin.monitor_freshness)?,
        };
        if admin.token.chars().count() < 16 || admin.token.contains(char::is_whitespace) {
            return Err(c.err(
                "admin.token",
                "must be at least 16 characters without spaces",
            ));
        }

        let f = &self.flood;
        if f.retry_after_min > f.retry_after_max {
            return Err(c.err(
                "flood.retry_after_min",
                format!(
                    "{} is above flood.retry_after_max ({})",
                    f.retry_after_min, f.retry_after_max
                ),
            ));
        }
        let flood = FloodSettings {
            requests_per_sec: c.nz32("flood.request_rate", f.request_rate)?,
            requests_burst: c.nz32("flood.request_burst", f.request_burst)?,
            registers_per_sec: c.nz32("flood.register_rate", f.register_rate)?,
            registers_burst: c.nz32("flood.register_burst", f.register_burst)?,
            max_conns_per_ip: c.nz32("flood.max_conns_per_ip", f.max_conns_per_ip)?.get(),
            conns_per_sec: c.nz32("flood.conn_rate", f.conn_rate)?,
            retry_after: (f.retry_after_min, f.retry_after_max),
            drop_after: c.nz32("flood.drop_after", f.drop_after)?.get(),
        };

        let m = &self.limits;
        let limits = Limits {
            sip: SipLimits {
                max_message: c
                    .nzu("limits.max_message_bytes", m.max_message_bytes)?
                    .get(),
                max_headers: c.nzu("limits.max_headers", m.max_headers)?.get(),
                max_line: c.nzu("limits.max_line_bytes", m.max_line_bytes)?.get(),
            },
            handshake_timeout: c.positive("limits.handshake_timeout", m.handshake_timeout)?,
        };

        let carriers = CarrierMap::new(&self.carrier).map_err(|e| c.err(e.key(), e.to_string()))?;

        let level = match self.log.level.to_ascii_lowercase().as_str() {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            other => {
                return Err(c.err(
                    "log.level",
                    format!("`{other}` is not error, warn, info, debug or trace"),
                ))
            }
        };
        if !(0.0..=1.0).contains(&self.log.sample) {
            return Err(c.err("log.sample", "must be between 0.0 and 1.0"));
        }
        let log = LogSettings {
            level,
            json: self.log.json,
            sample: self.log.sample,
        };

        Ok(LbConfig {
            id: self.id,
            edge: self.edge,
            listen,
            tls,
            flow,
            transaction,
            max_transactions,
            proxies,
            admin,
            flood,
            limits,
            carriers,
            carrier_tables: self.carrier,
            log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = LbConfig::embedded_default().expect("valid");
        assert_eq!(
            c.listen.udp,
            ["127.0.0.1:5060".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(
            c.listen.tls,
            ["127.0.0.1:5061".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(
            c.admin.listen,
            "127.0.0.1:9060".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(
            c.proxies.iter().map(|p| p.addr.port()).collect::<Vec<_>>(),
            [5071, 5072, 5073]
        );
        assert_eq!(c.tls, Some(TlsSource::SelfSigned));
        assert_eq!(c.flow.keys.len(), 1);
        assert_eq!(c.flow.keepalive_interval, Duration::from_secs(30));
        assert_eq!(c.flow.keepalive_max_missed.get(), 2);
        assert_eq!(c.transaction.invite, Duration::from_secs(2));
        assert_eq!(c.admin.monitor_freshness, Duration::from_secs(10));
        assert_eq!(c.flood.retry_after, (10, 300));
        assert_eq!(c.limits.sip, SipLimits::default());
        assert_eq!(c.listen.workers.get(), 2);
    }

    /// Sets `path` (dotted; `name[0]` indexes an array) in the default config.
    fn with(path: &str, value: toml::Value) -> String {
        let mut doc: toml::Table = toml::from_str(DEFAULT_CONFIG).expect("default parses");
        let parts: Vec<&str> = path.split('.').collect();
        let mut t = &mut doc;
        for p in &parts[..parts.len() - 1] {
            let v = if let Some((name, idx)) = p.strip_suffix(']').and_then(|p| p.split_once('[')) {
                let arr = t.entry(name).or_insert_with(|| toml::Value::Array(vec![]));
                let arr = arr.as_array_mut().expect("array");
                let i: usize = idx.parse().expect("index");
                while arr.len() <= i {
                    arr.push(toml::Value::Table(toml::Table::new()));
                }
                &mut arr[i]
            } else {
                t.entry(*p)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            };
            t = v.as_table_mut().expect("table");
        }
        let last = parts[parts.len() - 1];
        if value.as_str() == Some("<remove>") {
            t.remove(last);
        } else {
            t.insert(last.into(), value);
        }
        toml::to_string(&doc).expect("serialises")
    }

    fn s(v: &str) -> toml::Value {
        toml::Value::String(v.into())
    }
    fn i(v: i64) -> toml::Value {
        toml::Value::Integer(v)
    }
    fn strs(v: &[&str]) -> toml::Value {
        toml::Value::Array(v.iter().map(|x| s(x)).collect())
    }

    #[test]
    fn invalid_values_name_key_and_file() {
        let cases: Vec<(&str, toml::Value, &str)> = vec![
            ("edge", s(""), "edge"),
            ("listen.udp", strs(&["127.0.0.1"]), "listen.udp[0]"),
            (
                "listen.tcp",
                strs(&["127.0.0.1:5060", "nope"]),
                "listen.tcp[1]",
            ),
            ("listen.internal", s("0.0.0.0:5080"), "listen.internal"),
            ("listen.workers", i(0), "listen.workers"),
            ("listen.advertise", s(" "), "listen.advertise"),
            ("tls.self_signed", toml::Value::Boolean(false), "tls.cert"),
            ("tls.cert", s("cert.pem"), "tls.self_signed"),
            ("tls", s("<remove>"), "tls"),
            ("flow.keys", strs(&[]), "flow.keys"),
            (
                "flow.keys",
                strs(&["hex:00112233445566778899aabbccddeeff", "0011"]),
                "flow.keys[1]",
            ),
            (
                "flow.keepalive_interval",
                s("0s"),
                "flow.keepalive_interval",
            ),
            (
                "flow.keepalive_max_missed",
                i(0),
                "flow.keepalive_max_missed",
            ),
            ("transaction.timer_invite", i(0), "transaction.timer_invite"),
            ("proxies[1].id", s("p1"), "proxies[1].id"),
            ("proxies[2].addr", s("127.0.0.1"), "proxies[2].addr"),
            ("proxies[0].id", s("has space"), "proxies[0].id"),
            ("admin.listen", s("localhost:9060"), "admin.listen"),
            ("admin.token", s("short"), "admin.token"),
            (
                "admin.monitor_freshness",
                s("0ms"),
                "admin.monitor_freshness",
            ),
            ("flood.retry_after_min", i(400), "flood.retry_after_min"),
            ("flood.request_rate", i(0), "flood.request_rate"),
            ("flood.drop_after", i(0), "flood.drop_after"),
            (
                "limits.handshake_timeout",
                s("0s"),
                "limits.handshake_timeout",
            ),
            ("transaction.linger", s("0s"), "transaction.linger"),
            (
                "transaction.max_per_worker",
                i(0),
                "transaction.max_per_worker",
            ),
            ("limits.max_headers", i(0), "limits.max_headers"),
            ("log.level", s("loud"), "log.level"),
            ("log.sample", toml::Value::Float(1.5), "log.sample"),
        ];
        for (path, value, key) in cases {
            let text = with(path, value.clone());
            let err = match LbConfig::parse(Path::new("lb-test.toml"), &text) {
                Ok(_) => panic!("{path} = {value} must be refused"),
                Err(e) => e,
            };
            match &err {
                ConfigError::Invalid { file, key: k, .. } => {
                    assert_eq!(
                        (file.as_path(), k.as_str()),
                        (Path::new("lb-test.toml"), key),
                        "{err}"
                    );
                }
                other => panic!("{path}: expected Invalid, got {other}"),
            }
            assert!(err.to_string().starts_with("lb-test.toml: key `"), "{err}");
        }
    }

    #[test]
    fn run_inputs() {
        let c = LbConfig::embedded_default().expect("valid");
        let dir = tempfile::tempdir().expect("tempdir");
        let (run, listen) = c.to_run(dir.path()).expect("to_run");
        let (cert, key) = run.tls.expect("self-signed written");
        assert!(std::fs::read_to_string(cert)
            .expect("cert")
            .contains("BEGIN CERTIFICATE"));
        assert!(std::fs::read_to_string(key)
            .expect("key")
            .contains("PRIVATE KEY"));
        assert_eq!(run.settings.lb_id, 1);
        assert_eq!(run.static_proxies.len(), 3);
        assert_eq!(listen.workers, 2);
        assert_eq!(listen.admin.port(), 9060);
        assert_eq!(run.settings.keepalive_max_missed, 2);
    }

    #[test]
    fn secrets_are_not_echoed() {
        let text = with("flow.keys", strs(&["hex:0badc0de"]));
        let err = LbConfig::parse(Path::new("f.toml"), &text).expect_err("too short");
        assert!(!err.to_string().contains("0badc0de"), "{err}");
    }

    #[test]
    fn tls_files_are_relative_to_the_config() {
        let text = with("tls.self_signed", toml::Value::Boolean(false));
        let text = text.replace(
            "[tls]",
            "[tls]\ncert = \"certs/lb.pem\"\nkey = \"/abs/lb.key\"",
        );
        let c = LbConfig::parse(Path::new("/etc/sipedge/lb.toml"), &text).expect("valid");
        assert_eq!(
            c.tls,
            Some(TlsSource::Files {
                cert: PathBuf::from("/etc/sipedge/certs/lb.pem"),
                key: PathBuf::from("/abs/lb.key"),
            })
        );
    }

    #[test]
    fn carriers() {
        let text = format!(
            "{DEFAULT_CONFIG}\n[[carrier]]\nname = \"acme\"\ncidrs = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n"
        );
        let c = LbConfig::parse(Path::new("x.toml"), &text).expect("valid");
        assert_eq!(c.carriers.lookup("10.2.3.4".parse().expect("ip")), "acme");
        assert_eq!(c.carrier_tables.len(), 1);
        let bad = text.replace("\"10.0.0.0/8\"", "\"10.0.0.0/99\"");
        match LbConfig::parse(Path::new("x.toml"), &bad) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "carrier[0].cidrs"),
            other => panic!("expected an invalid carrier, got {other:?}"),
        }
    }
}
