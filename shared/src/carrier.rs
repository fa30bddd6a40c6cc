//! Source address → carrier name, by longest-prefix match over CIDRs from
//! config; the `carrier` metrics label, with cardinality bounded by the config.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

/// The carrier name for addresses no configured prefix covers.
pub const UNKNOWN: &str = "unknown";

/// One `[[carrier]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    /// The label value, e.g. `acme-trunks`.
    pub name: String,
    /// Source prefixes, IPv4 or IPv6: `["10.0.0.0/8", "2001:db8::/32"]`; a
    /// bare address is a host prefix.
    pub cidrs: Vec<String>,
}

/// Why a carrier table was refused; `index` is the `[[carrier]]` position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// A name is empty, `unknown`, or not `[A-Za-z0-9_.-]`.
    #[error("carrier[{index}].name: `{name}` must be non-empty [A-Za-z0-9_.-] and not `unknown`")]
    BadName {
        /// Position of the table.
        index: usize,
        /// The name.
        name: String,
    },
    /// The same name appears twice.
    #[error("carrier[{index}].name: duplicate carrier `{name}`")]
    DuplicateName {
        /// Position of the second table.
        index: usize,
        /// The name.
        name: String,
    },
    /// A CIDR does not parse.
    #[error("carrier[{index}].cidrs: `{cidr}` is not a CIDR like 10.0.0.0/8")]
    BadCidr {
        /// Position of the table.
        index: usize,
        /// The text.
        cidr: String,
    },
    /// The same prefix is given to two carriers.
    #[error("carrier[{index}].cidrs: `{cidr}` is already assigned to carrier `{other}`")]
    SamePrefix {
        /// Position of the table.
        index: usize,
        /// The prefix.
        cidr: String,
        /// The carrier that has it already.
        other: String,
    },
}

impl CarrierError {
    /// The dotted config key the error is about (for `ConfigError::invalid`).
    pub fn key(&self) -> String {
        match self {
            CarrierError::BadName { index, .. } | CarrierError::DuplicateName { index, .. } => {
                format!("carrier[{index}].name")
            }
            CarrierError::BadCidr { index, .. } | CarrierError::SamePrefix { index, .. } => {
                format!("carrier[{index}].cidrs")
            }
        }
    }
}

/// One prefix length's table: masked networks sorted, with carrier indices.
#[derive(Debug, Clone, Default)]
struct Level<A> {
    len: u8,
    nets: Vec<(A, u16)>,
}

/// The longest-prefix-match table. Lookup masks the address once per distinct
/// prefix length (longest first) and binary-searches that length's sorted table.
#[derive(Debug, Clone, Default)]
pub struct CarrierMap {
    names: Vec<String>,
    v4: Vec<Level<u32>>,
    v6: Vec<Level<u128>>,
}

fn mask4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(len)))
    }
}

fn insert<A: Ord + Copy>(levels: &mut Vec<Level<A>>, len: u8, net: A, idx: u16) -> Option<u16> {
    let pos = match levels.iter().position(|l| l.len <= len) {
        Some(p) if levels[p].len == len => p,
        Some(p) => {
            levels.insert(
                p,
                Level {
                    len,
                    nets: Vec::new(),
                },
            );
            p
        }
        None => {
            levels.push(Level {
                len,
                nets: Vec::new(),
            });
            levels.len() - 1
        }
    };
    let nets = &mut levels[pos].nets;
    match nets.binary_search_by_key(&net, |(n, _)| *n) {
        Ok(i) => Some(nets[i].1),
        Err(i) => {
            nets.insert(i, (net, idx));
            None
        }
    }
}

fn find<A: Ord + Copy>(levels: &[Level<A>], addr: A, mask: fn(A, u8) -> A) -> Option<u16> {
    levels.iter().find_map(|l| {
        let m = mask(addr, l.len);
        l.nets
            .binary_search_by_key(&m, |(n, _)| *n)
            .ok()
            .map(|i| l.nets[i].1)
    })
}

impl CarrierMap {
    /// Builds the table; names must be unique, and one prefix belongs to one
    /// carrier (nested prefixes are fine: the longest wins).
    pub fn new(carriers: &[CarrierConfig]) -> Result<Self, CarrierError> {
        let mut map = CarrierMap::default();
        for (index, c) in carriers.iter().enumerate() {
            let ok_name = !c.name.is_empty()
                && c.name != UNKNOWN
                && c.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok_name {
                return Err(CarrierError::BadName {
                    index,
                    name: c.name.clone(),
                });
            }
            if map.names.contains(&c.name) {
                return Err(CarrierError::DuplicateName {
                    index,
                    name: c.name.clone(),
                });
            }
            // Bounded by the config file; u16 indices are plenty.
            let idx = u16::try_from(map.names.len()).map_err(|_| CarrierError::BadName {
                index,
                name: c.name.clone(),
            })?;
            map.names.push(c.name.clone());
            for cidr in &c.cidrs {
                let net = parse_net(cidr).ok_or_else(|| CarrierError::BadCidr {
                    index,
                    cidr: cidr.clone(),
                })?;
                let clash = match net {
                    IpNet::V4(n) => insert(
                        &mut map.v4,
                        n.prefix_len(),
                        mask4(u32::from(n.addr()), n.prefix_len()),
                        idx,
                    ),
                    IpNet::V6(n) => insert(
                        &mut map.v6,
                        n.prefix_len(),
                        mask6(u128::from(n.addr()), n.prefix_len()),
                        idx,
                    ),
                };
                if let Some(other) = clash {
                    if other != idx {
                        return Err(CarrierError::SamePrefix {
                            index,
                            cidr: cidr.clone(),
                            other: map.names[usize::from(other)].clone(),
                        });
                    }
                }
            }
        }
        Ok(map)
    }

    /// The carrier index for `ip` (an index into [`Self::names`]), or `None`.
    /// IPv4-mapped IPv6 addresses are looked up as IPv4.
    pub fn lookup_index(&self, ip: IpAddr) -> Option<usize> {
        let hit = match canonical(ip) {
            IpAddr::V4(a) => find(&self.v4, u32::from(a), mask4),
            IpAddr::V6(a) => find(&self.v6, u128::from(a), mask6),
        };
        hit.map(usize::from)
    }

    /// The carrier name for `ip`, or [`UNKNOWN`].
    pub fn lookup(&self, ip: IpAddr) -> &str {
        self.lookup_index(ip)
            .and_then(|i| self.names.get(i))
            .map_or(UNKNOWN, String::as_str)
    }

    /// The configured names, in config order (for pre-registering metric
    /// handles; add [`UNKNOWN`] for the default).
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        },
        v4 => v4,
    }
}

/// A CIDR, or a bare address as a host prefix (/32, /128).
fn parse_net(text: &str) -> Option<IpNet> {
    let t = text.trim();
    t.parse::<IpNet>()
        .ok()
        .or_else(|| t.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, cidrs: &[&str]) -> CarrierConfig {
        CarrierConfig {
            name: name.into(),
            cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn sample() -> CarrierMap {
        CarrierMap::new(&[
            cfg("big", &["10.0.0.0/8", "2001:db8::/32"]),
            cfg("small", &["10.1.0.0/16", "2001:db8:1::/48"]),
            cfg("host", &["10.1.2.3/32", "192.0.2.1"]),
            cfg("all6", &["::/0"]),
        ])
        .expect("valid")
    }

    #[test]
    fn longest_prefix_wins() {
        let m = sample();
        let cases = [
            ("10.9.9.9", "big"),
            ("10.1.9.9", "small"),
            ("10.1.2.3", "host"),
            ("10.1.2.4", "small"),
            ("192.0.2.1", "host"),
            ("192.0.2.2", UNKNOWN),
            ("11.0.0.0", UNKNOWN),
            ("2001:db8:2::1", "big"),
            ("2001:db8:1::1", "small"),
            ("2001:db9::1", "all6"),
            ("::ffff:10.1.2.3", "host"),
        ];
        for (ip, want) in cases {
            assert_eq!(m.lookup(ip.parse().expect("ip")), want, "{ip}");
        }
        assert_eq!(m.names(), ["big", "small", "host", "all6"]);
        assert_eq!(m.lookup_index("10.1.0.1".parse().expect("ip")), Some(1));
    }

    #[test]
    fn empty_map_is_unknown() {
        let m = CarrierMap::new(&[]).expect("empty is fine");
        assert_eq!(m.lookup("10.0.0.1".parse().expect("ip")), UNKNOWN);
    }

    #[test]
    fn refused_tables() {
        let cases: [(Vec<CarrierConfig>, &str); 6] = [
            (vec![cfg("", &[])], "carrier[0].name"),
            (vec![cfg("unknown", &[])], "carrier[0].name"),
            (vec![cfg("a b", &[])], "carrier[0].name"),
            (vec![cfg("a", &[]), cfg("a", &[])], "carrier[1].name"),
            (vec![cfg("a", &["10.0.0.0/33"])], "carrier[0].cidrs"),
            (
                vec![cfg("a", &["10.0.0.0/8"]), cfg("b", &["10.0.0.0/8"])],
                "carrier[1].cidrs",
            ),
        ];
        for (c, key) in cases {
            let err = CarrierMap::new(&c).expect_err("must refuse");
            assert_eq!(err.key(), key, "{err}");
        }
    }

    #[test]
    fn host_bits_are_masked() {
        let m = CarrierMap::new(&[cfg("a", &["10.1.2.3/8"])]).expect("valid");
        assert_eq!(m.lookup("10.200.0.1".parse().expect("ip")), "a");
    }
}
