//! sip2pstn routing tables, sans-IO: which Request-URI users are telephone
//! numbers (a hand-made pattern, no regex engine), and which gateway group
//! serves a number (longest matching prefix).
//!
//! ```text
//! RFC 3261 §16.5: the proxy MAY use any information ... to determine the
//! target set ... e.g. a table of number prefixes to gateways.
//! ```

use std::net::SocketAddr;

/// `+?[0-9]{N,}` or `+?[0-9]{N,M}` (also written `\+?…`): an optional plus,
/// then between N and M digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PstnPattern {
    /// A leading `+` is allowed.
    pub plus: bool,
    /// Fewest digits.
    pub min: usize,
    /// Most digits.
    pub max: usize,
}

impl PstnPattern {
    /// Parses the pattern; the error says what is accepted.
    pub fn parse(s: &str) -> Result<PstnPattern, String> {
        let bad = || format!("`{s}`: expected +?[0-9]{{N,}} or [0-9]{{N,M}}");
        let (plus, rest) = match s.strip_prefix("\\+?").or_else(|| s.strip_prefix("+?")) {
            Some(r) => (true, r),
            None => (false, s),
        };
        let inner = rest
            .strip_prefix("[0-9]{")
            .and_then(|r| r.strip_suffix('}'))
            .ok_or_else(bad)?;
        let (lo, hi) = inner.split_once(',').unwrap_or((inner, inner));
        let min: usize = lo.trim().parse().map_err(|_| bad())?;
        let max: usize = if hi.trim().is_empty() {
            usize::MAX
        } else {
            hi.trim().parse().map_err(|_| bad())?
        };
        if min == 0 || max < min {
            return Err(bad());
        }
        Ok(PstnPattern { plus, min, max })
    }

    /// The digits of `user` when it is a number by this pattern.
    pub fn matches<'a>(&self, user: &'a str) -> Option<&'a str> {
        let digits = match user.strip_prefix('+') {
            Some(d) if self.plus => d,
            Some(_) => return None,
            None => user,
        };
        let ok = (self.min..=self.max).contains(&digits.len())
            && digits.bytes().all(|c| c.is_ascii_digit());
        ok.then_some(digits)
    }
}

/// One group of equivalent gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayGroup {
    /// Name.
    pub name: String,
    /// Digit prefixes it serves.
    pub prefixes: Vec<String>,
    /// Gateways in failover order.
    pub gateways: Vec<SocketAddr>,
}

/// All groups, searched by longest prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayTable {
    groups: Vec<GatewayGroup>,
}

impl GatewayTable {
    /// A table over `groups`.
    pub fn new(groups: Vec<GatewayGroup>) -> Self {
        GatewayTable { groups }
    }

    /// True when no group is configured.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The group whose prefix is the longest prefix of `digits`; on a tie the
    /// group listed first wins.
    pub fn lookup(&self, digits: &str) -> Option<&GatewayGroup> {
        let mut best: Option<(usize, &GatewayGroup)> = None;
        for g in &self.groups {
            for p in &g.prefixes {
                let longer = match best {
                    None => true,
                    Some((l, _)) => p.len() > l,
                };
                if digits.starts_with(p.as_str()) && longer {
                    best = Some((p.len(), g));
                }
            }
        }
        best.map(|(_, g)| g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_parse_and_match() {
        let p = PstnPattern::parse("+?[0-9]{5,}").expect("valid");
        let table: &[(&str, Option<&str>)] = &[
            ("+4930123", Some("4930123")),
            ("4930123", Some("4930123")),
            ("1234", None),
            ("12345", Some("12345")),
            ("+1234", None),
            ("alice", None),
            ("12a45", None),
            ("++12345", None),
            ("", None),
        ];
        for (user, want) in table {
            assert_eq!(p.matches(user), *want, "{user}");
        }
        let strict = PstnPattern::parse("[0-9]{3,4}").expect("valid");
        assert_eq!(strict.matches("+123"), None);
        assert_eq!(strict.matches("123"), Some("123"));
        assert_eq!(strict.matches("12345"), None);
        assert!(PstnPattern::parse("\\+?[0-9]{7,}").expect("valid").plus);
        for bad in [
            "",
            "abc",
            "[0-9]{0,}",
            "[0-9]{5,3}",
            "+?[0-9]{x,}",
            "[a-z]{3,}",
        ] {
            assert!(PstnPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let gw = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let g = |name: &str, prefixes: &[&str], port: u16| GatewayGroup {
            name: name.into(),
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
            gateways: vec![gw(port)],
        };
        let t = GatewayTable::new(vec![
            g("default", &[""], 1),
            g("de", &["49"], 2),
            g("de-berlin", &["4930"], 3),
            g("us", &["1"], 4),
            g("dup-de", &["49"], 5),
        ]);
        let table: &[(&str, &str)] = &[
            ("4930123456", "de-berlin"),
            ("4989123456", "de"),
            ("12125551234", "us"),
            ("3312345", "default"),
        ];
        for (num, want) in table {
            assert_eq!(t.lookup(num).map(|g| g.name.as_str()), Some(*want), "{num}");
        }
        let none = GatewayTable::new(vec![g("us", &["1"], 4)]);
        assert!(none.lookup("49").is_none());
        assert!(GatewayTable::default().is_empty());
    }
}
