//! RFC 3261 §17 timer values (T1, T2, T4 and the timers derived from them),
//! per transport; loaded from config and handed to every state machine.
//!
//! ```text
//! RFC 3261 §17.1.1.2 / Table 4 (Appendix A)
//!   T1  500ms default   RTT estimate
//!   T2  4s              maximum retransmit interval for non-INVITE
//!                       requests and INVITE responses
//!   T4  5s              maximum duration a message will remain in the network
//!   Timer A  initially T1                 INVITE request retransmit (UDP only)
//!   Timer B  64*T1                        INVITE transaction timeout
//!   Timer D  > 32s for UDP, 0s for TCP    wait time for response retransmits
//!   Timer E  initially T1                 non-INVITE request retransmit (UDP only)
//!   Timer F  64*T1                        non-INVITE transaction timeout
//!   Timer G  initially T1                 INVITE response retransmit (UDP only)
//!   Timer H  64*T1                        wait time for ACK receipt
//!   Timer I  T4 for UDP, 0s for TCP       wait time for ACK retransmits
//!   Timer J  64*T1 for UDP, 0s for TCP    wait time for non-INVITE request retransmits
//!   Timer K  T4 for UDP, 0s for TCP       wait time for response retransmits
//! ```

use std::time::Duration;

use serde::Deserialize;
use sipedge_shared::config::{serde_duration, ConfigError};

/// Whether the transport retransmits for us (TCP, TLS, WS, SCTP) or not (UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: the transaction layer retransmits and waits out stray copies.
    Unreliable,
    /// TCP/TLS/WS: no retransmission timers; the wait timers D, I, J, K are 0.
    Reliable,
}

impl Transport {
    /// True for UDP.
    pub fn is_unreliable(self) -> bool {
        self == Transport::Unreliable
    }
}

/// Validated timer values. `Default` is the RFC 3261 set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// T1, the RTT estimate (500 ms).
    pub t1: Duration,
    /// T2, the retransmit interval cap (4 s).
    pub t2: Duration,
    /// T4, how long a message may live in the network (5 s).
    pub t4: Duration,
    /// How long a server INVITE transaction waits for the TU's first
    /// response before sending 100 Trying itself (§17.2.1: 200 ms).
    pub trying_delay: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            trying_delay: Duration::from_millis(200),
        }
    }
}

impl Timers {
    /// 64·T1: timers B, F, H, J (UDP) and RFC 6026's L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// First interval of the retransmit timers A, E, G; `None` on reliable
    /// transports, which do not retransmit.
    pub fn retransmit(&self, transport: Transport) -> Option<Duration> {
        transport.is_unreliable().then_some(self.t1)
    }

    /// Timer D. The RFC asks for "at least 32 s" on UDP so that the server's
    /// final-response retransmissions (for 64·T1) are all absorbed; with a
    /// larger T1 we stretch D to match.
    pub fn d(&self, transport: Transport) -> Duration {
        match transport {
            Transport::Unreliable => Duration::from_secs(32).max(self.t1x64()),
            Transport::Reliable => Duration::ZERO,
        }
    }

    /// Timer I (T4 on UDP, 0 on reliable transports).
    pub fn i(&self, transport: Transport) -> Duration {
        self.t4_or_zero(transport)
    }

    /// Timer J (64·T1 on UDP, 0 on reliable transports).
    pub fn j(&self, transport: Transport) -> Duration {
        match transport {
            Transport::Unreliable => self.t1x64(),
            Transport::Reliable => Duration::ZERO,
        }
    }

    /// Timer K (T4 on UDP, 0 on reliable transports).
    pub fn k(&self, transport: Transport) -> Duration {
        self.t4_or_zero(transport)
    }

    fn t4_or_zero(&self, transport: Transport) -> Duration {
        match transport {
            Transport::Unreliable => self.t4,
            Transport::Reliable => Duration::ZERO,
        }
    }
}

/// `[transaction]` section of the proxy config; every key optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimersConfig {
    /// T1.
    #[serde(with = "serde_duration", default = "d_t1")]
    pub t1: Duration,
    /// T2.
    #[serde(with = "serde_duration", default = "d_t2")]
    pub t2: Duration,
    /// T4.
    #[serde(with = "serde_duration", default = "d_t4")]
    pub t4: Duration,
    /// Delay before the server INVITE transaction sends 100 Trying.
    #[serde(with = "serde_duration", default = "d_trying")]
    pub trying_delay: Duration,
}

fn d_t1() -> Duration {
    Timers::default().t1
}
fn d_t2() -> Duration {
    Timers::default().t2
}
fn d_t4() -> Duration {
    Timers::default().t4
}
fn d_trying() -> Duration {
    Timers::default().trying_delay
}

impl Default for TimersConfig {
    fn default() -> Self {
        let t = Timers::default();
        TimersConfig {
            t1: t.t1,
            t2: t.t2,
            t4: t.t4,
            trying_delay: t.trying_delay,
        }
    }
}

impl TimersConfig {
    /// Checks the values; `file` and `section` (e.g. `transaction`) name the
    /// key in errors.
    pub fn validate(&self, file: &std::path::Path, section: &str) -> Result<Timers, ConfigError> {
        if self.t1.is_zero() {
            return Err(ConfigError::invalid(
                file,
                format!("{section}.t1"),
                "must be > 0",
            ));
        }
        if self.t2 < self.t1 {
            return Err(ConfigError::invalid(
                file,
                format!("{section}.t2"),
                "must be >= t1",
            ));
        }
        if self.t4.is_zero() {
            return Err(ConfigError::invalid(
                file,
                format!("{section}.t4"),
                "must be > 0",
            ));
        }
        Ok(Timers {
            t1: self.t1,
            t2: self.t2,
            t4: self.t4,
            trying_delay: self.trying_delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn derived_values_per_transport() {
        let t = Timers::default();
        let s = Duration::from_secs;
        // (transport, A/E/G first, D, I, J, K)
        let table = [
            (
                Transport::Unreliable,
                Some(Duration::from_millis(500)),
                s(32),
                s(5),
                s(32),
                s(5),
            ),
            (Transport::Reliable, None, s(0), s(0), s(0), s(0)),
        ];
        for (tp, retx, d, i, j, k) in table {
            assert_eq!(t.retransmit(tp), retx, "{tp:?}");
            assert_eq!((t.d(tp), t.i(tp), t.j(tp), t.k(tp)), (d, i, j, k), "{tp:?}");
        }
        assert_eq!(t.t1x64(), s(32));
    }

    #[test]
    fn config_parses_and_validates() {
        let p = Path::new("proxy.toml");
        let table: [(&str, Result<Duration, &str>); 4] = [
            ("", Ok(Duration::from_millis(500))),
            ("t1 = '250ms'", Ok(Duration::from_millis(250))),
            ("t1 = '0ms'", Err("transaction.t1")),
            ("t1 = '5s'\nt2 = '4s'", Err("transaction.t2")),
        ];
        for (text, want) in table {
            let cfg: TimersConfig = sipedge_shared::config::parse(p, text).expect(text);
            match (cfg.validate(p, "transaction"), want) {
                (Ok(t), Ok(t1)) => assert_eq!(t.t1, t1, "{text}"),
                (Err(e), Err(key)) => assert!(e.to_string().contains(key), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        let bad = sipedge_shared::config::parse::<TimersConfig>(p, "t9 = 1");
        assert!(bad.is_err());
    }
}
