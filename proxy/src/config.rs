//! The proxy's TOML configuration: `deny_unknown_fields` file structs, then
//! [`ProxyFile::validate`] into a typed [`ProxyConfig`]; errors name the key and the file.
//!
//! [`DEFAULT_CONFIG`] is the embedded configuration of the local stack
//! (loopback, demo users): never use it in production.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sipedge_shared::config::{self, ConfigError};

use crate::auth::{AuthConfig, AuthSettings};
use crate::churn::config::{PeersFile, PeersSettings};
use crate::registrar::{RegistrarConfig, RegistrarSettings};
use crate::server::routing::{GatewayGroup, GatewayTable, PstnPattern};
use crate::transaction::{Timers, TimersConfig};
use crate::users::config::{UsersConfig, UsersSource};

/// The embedded configuration of one local-stack proxy: UDP and TCP on
/// 127.0.0.1:5071, admin on 127.0.0.1:9071, the demo users, no gateways.
/// `sipedge-proxy run --udp/--tcp/--admin` move it to other ports.
pub const DEFAULT_CONFIG: &str = r#"# Embedded local-stack defaults (loopback only; the nonce secret is public).
id = "p1"
edge = "local"
domains = ["sipedge.local"]
pstn_pattern = "+?[0-9]{5,}"

[listen]
udp = "127.0.0.1:5071"
tcp = "127.0.0.1:5071"

[auth]
nonce_secret = "sipedge-local-demo-nonce-secret"

[admin]
listen = "127.0.0.1:9071"
"#;

/// The pseudo-path errors in [`DEFAULT_CONFIG`] are attributed to.
pub const DEFAULT_CONFIG_PATH: &str = "<embedded proxy.toml>";

/// The whole file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    /// Proxy id (what the LBs and sipmon call it; goes into logs).
    pub id: String,
    /// Site/region label of every metric.
    #[serde(default = "default_edge")]
    pub edge: String,
    /// Address (`host[:port]`) for our Via and Record-Route; default: the
    /// bound UDP address.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Local domains; each is also the digest realm of its users.
    pub domains: Vec<String>,
    /// Which Request-URI users are telephone numbers (`+?[0-9]{5,}`).
    #[serde(default)]
    pub pstn_pattern: Option<String>,
    /// Most live transactions before new requests get 503.
    #[serde(default = "default_max_transactions")]
    pub max_transactions: usize,
    /// Sockets.
    pub listen: ListenFile,
    /// Registrar.
    #[serde(default)]
    pub registrar: RegistrarConfig,
    /// Digest authentication.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Subscriber store.
    #[serde(default)]
    pub users: UsersConfig,
    /// PSTN gateway groups.
    #[serde(default)]
    pub gateway_group: Vec<GatewayGroupFile>,
    /// Transaction timers.
    #[serde(default)]
    pub timers: TimersConfig,
    /// Call detail records.
    #[serde(default)]
    pub cdr: CdrFile,
    /// Admin HTTP.
    #[serde(default)]
    pub admin: AdminFile,
    /// The other proxies of the tier (replicas and peer lookups).
    #[serde(default)]
    pub peers: PeersFile,
}

fn default_edge() -> String {
    "local".into()
}

fn default_max_transactions() -> usize {
    100_000
}

/// `[listen]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFile {
    /// UDP address (the LBs forward here).
    pub udp: String,
    /// TCP address (direct clients); absent: no TCP.
    #[serde(default)]
    pub tcp: Option<String>,
}

/// `[[gateway_group]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayGroupFile {
    /// Group name (CDRs, logs).
    pub name: String,
    /// Number prefixes (without `+`); `""` matches every number.
    pub prefixes: Vec<String>,
    /// Gateways, tried in order on 408/503.
    pub gateways: Vec<String>,
}

/// `[cdr]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrFile {
    /// JSON-lines file; absent: no CDRs.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// `[admin]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// Admin HTTP address; absent: no admin server.
    #[serde(default)]
    pub listen: Option<String>,
}

/// Where to listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// UDP.
    pub udp: SocketAddr,
    /// TCP.
    pub tcp: Option<SocketAddr>,
    /// Admin HTTP.
    pub admin: Option<SocketAddr>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Proxy id.
    pub id: String,
    /// Edge label.
    pub edge: String,
    /// Via/Record-Route address; `None`: the bound UDP address.
    pub advertise: Option<String>,
    /// Local domains, lowercase.
    pub domains: Vec<String>,
    /// The number pattern.
    pub pstn: Option<PstnPattern>,
    /// Transaction cap.
    pub max_transactions: usize,
    /// Sockets.
    pub listen: Listen,
    /// Registrar.
    pub registrar: RegistrarSettings,
    /// Authentication.
    pub auth: AuthSettings,
    /// Subscribers.
    pub users: UsersSource,
    /// Gateways.
    pub gateways: GatewayTable,
    /// Timers.
    pub timers: Timers,
    /// CDR file.
    pub cdr_file: Option<PathBuf>,
    /// Peers (churn handling); empty: off.
    pub peers: PeersSettings,
}

fn addr(file: &Path, key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse()
        .map_err(|_| ConfigError::invalid(file, key, format!("`{v}` is not an ip:port address")))
}

impl ProxyFile {
    /// Checks every value; errors name `file` and the dotted key.
    pub fn validate(&self, file: &Path) -> Result<ProxyConfig, ConfigError> {
        if self.id.trim().is_empty() {
            return Err(ConfigError::invalid(file, "id", "must not be empty"));
        }
        if self.domains.is_empty() {
            return Err(ConfigError::invalid(file, "domains", "give at least one"));
        }
        let mut domains = Vec::with_capacity(self.domains.len());
        for d in &self.domains {
            if d.is_empty() || d.contains(|c: char| c.is_whitespace() || c == '@') {
                return Err(ConfigError::invalid(
                    file,
                    "domains",
                    format!("`{d}` is not a domain"),
                ));
            }
            domains.push(d.to_ascii_lowercase());
        }
        let pstn = match &self.pstn_pattern {
            None => None,
            Some(p) => Some(
                PstnPattern::parse(p).map_err(|m| ConfigError::invalid(file, "pstn_pattern", m))?,
            ),
        };
        if self.max_transactions == 0 {
            return Err(ConfigError::invalid(
                file,
                "max_transactions",
                "must be > 0",
            ));
        }
        if let Some(a) = &self.advertise {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == ';' || c == '>') {
                return Err(ConfigError::invalid(file, "advertise", "not a host[:port]"));
            }
        }
        let listen = Listen {
            udp: addr(file, "listen.udp", &self.listen.udp)?,
            tcp: match &self.listen.tcp {
                Some(t) => Some(addr(file, "listen.tcp", t)?),
                None => None,
            },
            admin: match &self.admin.listen {
                Some(a) => Some(addr(file, "admin.listen", a)?),
                None => None,
            },
        };
        let mut groups = Vec::with_capacity(self.gateway_group.len());
        for (i, g) in self.gateway_group.iter().enumerate() {
            let key = |k: &str| format!("gateway_group[{i}].{k}");
            if g.name.is_empty() {
                return Err(ConfigError::invalid(file, key("name"), "must not be empty"));
            }
            if g.prefixes.is_empty() {
                return Err(ConfigError::invalid(
                    file,
                    key("prefixes"),
                    "give at least one",
                ));
            }
            if let Some(p) = g
                .prefixes
                .iter()
                .find(|p| !p.bytes().all(|c| c.is_ascii_digit()))
            {
                return Err(ConfigError::invalid(
                    file,
                    key("prefixes"),
                    format!("`{p}` is not a digit string"),
                ));
            }
            if g.gateways.is_empty() {
                return Err(ConfigError::invalid(
                    file,
                    key("gateways"),
                    "give at least one",
                ));
            }
            let mut gws = Vec::with_capacity(g.gateways.len());
            for gw in &g.gateways {
                gws.push(addr(file, &key("gateways"), gw)?);
            }
            groups.push(GatewayGroup {
                name: g.name.clone(),
                prefixes: g.prefixes.clone(),
                gateways: gws,
            });
        }
        Ok(ProxyConfig {
            id: self.id.clone(),
            edge: self.edge.clone(),
            advertise: self.advertise.clone(),
            domains,
            pstn,
            max_transactions: self.max_transactions,
            listen,
            registrar: self.registrar.validate(file, "registrar")?,
            auth: self.auth.validate(file)?,
            users: self.users.validate(file)?,
            gateways: GatewayTable::new(groups),
            timers: self.timers.validate(file, "timers")?,
            cdr_file: self.cdr.file.clone(),
            peers: self
                .peers
                .validate(file, self.id.trim(), listen.admin.is_some())?,
        })
    }
}

impl ProxyConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        config::load::<ProxyFile>(path)?.validate(path)
    }

    /// Parses and validates `text`, attributing errors to `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        config::parse::<ProxyFile>(path, text)?.validate(path)
    }

    /// The validated [`DEFAULT_CONFIG`].
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::parse(Path::new(DEFAULT_CONFIG_PATH), DEFAULT_CONFIG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<ProxyConfig, String> {
        ProxyConfig::parse(Path::new("t.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = ProxyConfig::embedded_default().expect("valid");
        assert_eq!(c.listen.udp, "127.0.0.1:5071".parse().expect("literal"));
        assert_eq!(c.domains, ["sipedge.local"]);
        assert!(c.pstn.is_some());
    }

    #[test]
    fn errors_name_key_and_file() {
        let base = "id = \"p\"\ndomains = [\"d\"]\n[listen]\nudp = \"127.0.0.1:1\"\n";
        let table: &[(&str, &str)] = &[
            ("id = \"p\"\ndomains = []\n[listen]\nudp = \"127.0.0.1:1\"\n", "domains"),
            ("id = \"p\"\ndomains = [\"d\"]\n[listen]\nudp = \"x\"\n", "listen.udp"),
            (
                &format!("{base}[[gateway_group]]\nname = \"g\"\nprefixes = [\"4a\"]\ngateways = [\"127.0.0.1:2\"]\n"),
                "gateway_group[0].prefixes",
            ),
            (
                &format!("{base}[[gateway_group]]\nname = \"g\"\nprefixes = [\"49\"]\ngateways = [\"gw\"]\n"),
                "gateway_group[0].gateways",
            ),
            (&format!("pstn_pattern = \"abc\"\n{base}"), "pstn_pattern"),
            (&format!("{base}[registrar]\nmin_expires = 0\n"), "registrar.min_expires"),
            (&format!("{base}[admin]\nlisten = \"nope\"\n"), "admin.listen"),
            (&format!("{base}bogus = 1\n"), "bogus"),
            (
                &format!("{base}[peers]\ntoken = \"t\"\n[[peers.proxy]]\nid = \"p2\"\nurl = \"http://h:1\"\n"),
                "admin.listen",
            ),
            (&format!("{base}[peers]\nqueue = 0\n"), "peers.queue"),
        ];
        for (text, key) in table {
            let e = p(text).expect_err(key);
            assert!(e.contains(key) && e.contains("t.toml"), "{key}: {e}");
        }
        assert!(p(base).is_ok());
    }

    #[test]
    fn example_config_parses_and_rejects_unknown_keys() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/proxy.example.toml");
        let text = std::fs::read_to_string(&path).expect("deploy/proxy.example.toml exists");
        let c = ProxyConfig::parse(&path, &text).expect("the example is valid");
        let peers: Vec<&str> = c.peers.peers.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(peers, ["p1", "p3"]);
        assert_eq!(
            c.peers.lookup_timeout,
            std::time::Duration::from_millis(300)
        );
        for section in ["[peers]", "[[peers.proxy]]", "[admin]", "[registrar]"] {
            let bad = text.replacen(section, &format!("{section}\nbogus_key = 1"), 1);
            let err = ProxyConfig::parse(&path, &bad)
                .expect_err(section)
                .to_string();
            assert!(
                err.contains("bogus_key") && err.contains("proxy.example.toml"),
                "{section}: {err}"
            );
        }
    }
}
