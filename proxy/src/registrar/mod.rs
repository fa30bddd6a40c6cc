//! The registrar (RFC 3261 §10, RFC 3327 Path, RFC 5626 outbound): the
//! decision API the SIP glue calls with a parsed REGISTER, and its config.
//!
//! ```text
//! RFC 3261 §10.3 step 6: The registrar checks whether the request contains
//! the Contact header field. If not, it skips to the last step. If the
//! Contact header field is present, the registrar checks if there is one
//! Contact field value that contains the special value "*" and an Expires
//! field. If the request has additional Contact fields or an expiration
//! time other than zero, the request is invalid, and the server MUST return
//! a 400 (Invalid Request) and skip the remaining steps.
//! RFC 3261 §10.3 step 8: The registrar returns a 200 (OK). The response
//! MUST contain Contact header field values enumerating all current
//! bindings. Each Contact value MUST feature an "expires" parameter
//! indicating its expiration interval chosen by the registrar.
//! RFC 3327 §5.3: the registrar [...] stores the Path header field values
//! [...] and copies them into the 200 (OK).
//! ```

pub mod binding;
pub mod expires;
pub mod location;
pub mod rate;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Deserialize;
use sipedge_shared::config::ConfigError;

pub use binding::{Binding, Q};
pub use expires::{ExpiresPolicy, Grant};
pub use location::{Change, ContactUpdate, Location, RegisterError, Updates};
pub use rate::{RegisterGuard, TokenBucket};

/// One Contact of a REGISTER, as the glue parsed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactInput {
    /// The contact URI as received (without the angle brackets).
    pub uri: String,
    /// The contact's `expires` parameter.
    pub expires: Option<u32>,
    /// The contact's `q` parameter.
    pub q: Option<Q>,
    /// `+sip.instance`.
    pub instance: Option<String>,
    /// `reg-id` (only meaningful with an instance).
    pub reg_id: Option<u32>,
}

/// A REGISTER, reduced to what the registrar decides on. The request is
/// already authenticated and addressed to a local domain.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterRequest {
    /// The address of record (the To URI, normalised by the glue).
    pub aor: String,
    /// The Contact values, unless `star`.
    pub contacts: Vec<ContactInput>,
    /// `Contact: *`.
    pub star: bool,
    /// The Expires header.
    pub header_expires: Option<u32>,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// Path header URIs in order (RFC 3327).
    pub path: Vec<String>,
    /// Where the REGISTER came from (the LB, or the UA when direct).
    pub source: SocketAddr,
    /// User-Agent header.
    pub user_agent: Option<String>,
    /// The current time.
    pub now: Instant,
}

/// A current binding and the expires value to echo for it.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantedBinding {
    /// The binding.
    pub binding: Binding,
    /// Seconds left (the Contact's `expires=` in the 200).
    pub expires: u32,
}

/// What to answer.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisterOutcome {
    /// 200: list every current binding; echo `path` (when the UA sent
    /// `Supported: path`, RFC 3327 §5.3).
    Ok {
        /// All current bindings of the AOR, highest q first.
        bindings: Vec<GrantedBinding>,
        /// The Path to echo.
        path: Vec<String>,
    },
    /// 423 with `Min-Expires`.
    IntervalTooBrief {
        /// The Min-Expires value.
        min_expires: u32,
    },
    /// 400 with this reason phrase.
    BadRequest(String),
    /// 503 with `Retry-After` (seconds).
    Overloaded {
        /// Retry-After value.
        retry_after: u32,
    },
    /// 500: the update was refused as a whole (out-of-order CSeq, too many
    /// bindings); nothing changed.
    ServerError(RegisterError),
}

impl RegisterOutcome {
    /// The SIP status code of the answer.
    pub fn status(&self) -> u16 {
        match self {
            RegisterOutcome::Ok { .. } => 200,
            RegisterOutcome::IntervalTooBrief { .. } => 423,
            RegisterOutcome::BadRequest(_) => 400,
            RegisterOutcome::Overloaded { .. } => 503,
            RegisterOutcome::ServerError(_) => 500,
        }
    }
}

/// `[registrar]` section of the proxy config; every key optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    /// Min-Expires, seconds.
    pub min_expires: u32,
    /// Longest lifetime granted, seconds.
    pub max_expires: u32,
    /// Lifetime when the REGISTER states none, seconds.
    pub default_expires: u32,
    /// Lower factor of the randomised grant (e.g. 0.7).
    pub spread_min: f64,
    /// Upper factor of the randomised grant (e.g. 1.0).
    pub spread_max: f64,
    /// Most bindings one AOR may hold.
    pub max_contacts_per_aor: usize,
    /// REGISTERs per second before answering 503.
    pub register_rate: f64,
    /// Burst allowance on top of the rate.
    pub register_burst: u32,
    /// Smallest Retry-After on 503, seconds.
    pub retry_after_min: u32,
    /// Largest Retry-After on 503, seconds.
    pub retry_after_max: u32,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            spread_min: 0.7,
            spread_max: 1.0,
            max_contacts_per_aor: 16,
            register_rate: 2000.0,
            register_burst: 4000,
            retry_after_min: 10,
            retry_after_max: 300,
        }
    }
}

/// Validated registrar settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrarSettings {
    /// Lifetime policy.
    pub expires: ExpiresPolicy,
    /// Most bindings per AOR.
    pub max_contacts_per_aor: usize,
    /// REGISTERs per second.
    pub register_rate: f64,
    /// Burst.
    pub register_burst: u32,
    /// Retry-After range for 503.
    pub retry_after: (u32, u32),
}

impl RegistrarConfig {
    /// Checks the values; errors name `file` and `section.key`.
    pub fn validate(&self, file: &Path, section: &str) -> Result<RegistrarSettings, ConfigError> {
        let bad =
            |key: &str, msg: &str| Err(ConfigError::invalid(file, format!("{section}.{key}"), msg));
        if self.min_expires == 0 {
            return bad("min_expires", "must be > 0");
        }
        if self.max_expires < self.min_expires {
            return bad("max_expires", "must be >= min_expires");
        }
        if !(self.min_expires..=self.max_expires).contains(&self.default_expires) {
            return bad(
                "default_expires",
                "must lie within [min_expires, max_expires]",
            );
        }
        if !(self.spread_min > 0.0 && self.spread_min <= 1.0) {
            return bad("spread_min", "must be in (0, 1]");
        }
        if !(self.spread_max >= self.spread_min && self.spread_max <= 1.0) {
            return bad("spread_max", "must be in [spread_min, 1]");
        }
        if self.max_contacts_per_aor == 0 {
            return bad("max_contacts_per_aor", "must be > 0");
        }
        if !(self.register_rate.is_finite() && self.register_rate > 0.0) {
            return bad("register_rate", "must be > 0");
        }
        if self.register_burst == 0 {
            return bad("register_burst", "must be > 0");
        }
        if self.retry_after_max < self.retry_after_min {
            return bad("retry_after_max", "must be >= retry_after_min");
        }
        Ok(RegistrarSettings {
            expires: ExpiresPolicy {
                min: self.min_expires,
                max: self.max_expires,
                default: self.default_expires,
                spread: (self.spread_min, self.spread_max),
            },
            max_contacts_per_aor: self.max_contacts_per_aor,
            register_rate: self.register_rate,
            register_burst: self.register_burst,
            retry_after: (self.retry_after_min, self.retry_after_max),
        })
    }
}

/// The registrar: location store, lifetime policy and overload guard.
#[derive(Debug)]
pub struct Registrar {
    location: Location,
    policy: ExpiresPolicy,
    guard: RegisterGuard,
}

impl Registrar {
    /// A registrar with an empty location store.
    pub fn new(settings: &RegistrarSettings) -> Self {
        Registrar {
            location: Location::new(settings.max_contacts_per_aor),
            policy: settings.expires,
            guard: RegisterGuard::new(
                settings.register_rate,
                settings.register_burst,
                settings.retry_after,
            ),
        }
    }

    /// The location store (lookups for routing, purge timer, gauge,
    /// replication).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Decides a REGISTER (§10.3 steps 6–8). `rng` draws the spread and the
    /// Retry-After; tests pass a seeded one.
    pub fn register<R: Rng + ?Sized>(&self, req: &RegisterRequest, rng: &mut R) -> RegisterOutcome {
        if let Err(retry_after) = self.guard.check(req.now, rng) {
            return RegisterOutcome::Overloaded { retry_after };
        }
        if req.aor.is_empty() {
            return RegisterOutcome::BadRequest("Missing Address Of Record".into());
        }
        if req.call_id.is_empty() {
            return RegisterOutcome::BadRequest("Missing Call-ID".into());
        }
        let change = if req.star {
            if !req.contacts.is_empty() || req.header_expires != Some(0) {
                return RegisterOutcome::BadRequest(
                    "Contact * needs Expires: 0 and no other Contact".into(),
                );
            }
            Some(Change::RemoveAll)
        } else if req.contacts.is_empty() {
            None // a query: list the bindings
        } else {
            let mut updates = Vec::with_capacity(req.contacts.len());
            for c in &req.contacts {
                if c.uri.is_empty() {
                    return RegisterOutcome::BadRequest("Empty Contact".into());
                }
                let expires = match self.policy.grant(c.expires.or(req.header_expires), rng) {
                    Grant::Remove => Duration::ZERO,
                    Grant::Seconds(s) => Duration::from_secs(u64::from(s)),
                    Grant::TooBrief { min_expires } => {
                        return RegisterOutcome::IntervalTooBrief { min_expires }
                    }
                };
                updates.push(ContactUpdate {
                    uri: c.uri.clone(),
                    expires,
                    q: c.q,
                    instance: c.instance.clone(),
                    reg_id: c.reg_id,
                });
            }
            Some(Change::Contacts(updates))
        };
        let bindings = match change {
            None => self.location.lookup(&req.aor, req.now),
            Some(change) => {
                let updates = Updates {
                    call_id: req.call_id.clone(),
                    cseq: req.cseq,
                    path: req.path.clone(),
                    received: Some(req.source),
                    user_agent: req.user_agent.clone(),
                    change,
                };
                match self.location.apply(&req.aor, &updates, req.now) {
                    Ok(b) => b,
                    Err(e) => return RegisterOutcome::ServerError(e),
                }
            }
        };
        let bindings = bindings
            .into_iter()
            .map(|binding| GrantedBinding {
                expires: binding.remaining_secs(req.now),
                binding,
            })
            .collect();
        RegisterOutcome::Ok {
            bindings,
            path: req.path.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn settings() -> RegistrarSettings {
        let mut s = RegistrarConfig::default()
            .validate(Path::new("t"), "registrar")
            .expect("defaults valid");
        s.expires.spread = (1.0, 1.0);
        s
    }

    fn contact(uri: &str, expires: Option<u32>) -> ContactInput {
        ContactInput {
            uri: uri.into(),
            expires,
            q: None,
            instance: None,
            reg_id: None,
        }
    }

    fn req(
        now: Instant,
        cseq: u32,
        contacts: Vec<ContactInput>,
        star: bool,
        header_expires: Option<u32>,
    ) -> RegisterRequest {
        RegisterRequest {
            aor: "sip:alice@example.com".into(),
            contacts,
            star,
            header_expires,
            call_id: "call-1".into(),
            cseq,
            path: vec!["<sip:TOKEN@10.0.1.1;lr;ob>".into()],
            source: "10.0.1.1:5060".parse().expect("addr"),
            user_agent: None,
            now,
        }
    }

    #[test]
    fn decision_table() {
        let now = Instant::now();
        let r = Registrar::new(&settings());
        let mut rng = StdRng::seed_from_u64(1);
        // (request, want status, want (contact, expires) list on 200)
        type Row = (RegisterRequest, u16, Vec<(&'static str, u32)>);
        let table: Vec<Row> = vec![
            (req(now, 1, vec![], false, None), 200, vec![]),
            (
                req(now, 2, vec![contact("sip:a@1", None)], false, Some(1800)),
                200,
                vec![("sip:a@1", 1800)],
            ),
            (
                req(now, 3, vec![contact("sip:a@2", Some(7200))], false, None),
                200,
                vec![("sip:a@1", 1800), ("sip:a@2", 3600)],
            ),
            (
                req(now, 4, vec![contact("sip:a@3", Some(30))], false, None),
                423,
                vec![],
            ),
            (
                req(now, 5, vec![contact("sip:a@3", None)], false, Some(30)),
                423,
                vec![],
            ),
            (req(now, 6, vec![], true, None), 400, vec![]),
            (req(now, 7, vec![], true, Some(60)), 400, vec![]),
            (
                req(now, 8, vec![contact("sip:a@1", None)], true, Some(0)),
                400,
                vec![],
            ),
            (
                req(now, 9, vec![contact("", None)], false, None),
                400,
                vec![],
            ),
            (
                req(now, 2, vec![contact("sip:a@1", Some(0))], false, None),
                500,
                vec![],
            ),
            (
                req(now, 10, vec![contact("sip:a@1", Some(0))], false, None),
                200,
                vec![("sip:a@2", 3600)],
            ),
            (
                req(now, 11, vec![], false, None),
                200,
                vec![("sip:a@2", 3600)],
            ),
            (req(now, 12, vec![], true, Some(0)), 200, vec![]),
        ];
        for (i, (request, status, want)) in table.into_iter().enumerate() {
            let out = r.register(&request, &mut rng);
            assert_eq!(out.status(), status, "row {i}: {out:?}");
            match out {
                RegisterOutcome::Ok { bindings, path } => {
                    let got: Vec<(&str, u32)> = bindings
                        .iter()
                        .map(|g| (g.binding.contact.as_str(), g.expires))
                        .collect();
                    assert_eq!(got, want, "row {i}");
                    assert_eq!(path, request.path, "row {i}: Path echoed");
                    assert!(bindings
                        .iter()
                        .all(|g| g.binding.received == Some(request.source)));
                }
                RegisterOutcome::IntervalTooBrief { min_expires } => assert_eq!(min_expires, 60),
                _ => {}
            }
        }
    }

    #[test]
    fn overload_answers_503_with_retry_after() {
        let now = Instant::now();
        let mut s = settings();
        s.register_rate = 1.0;
        s.register_burst = 1;
        let r = Registrar::new(&s);
        let mut rng = StdRng::seed_from_u64(9);
        assert_eq!(
            r.register(&req(now, 1, vec![], false, None), &mut rng)
                .status(),
            200
        );
        match r.register(&req(now, 2, vec![], false, None), &mut rng) {
            RegisterOutcome::Overloaded { retry_after } => {
                assert!((10..=300).contains(&retry_after))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.register(
                &req(now + Duration::from_secs(1), 3, vec![], false, None),
                &mut rng
            )
            .status(),
            200
        );
    }

    #[test]
    fn granted_expiry_is_spread_and_purged_in_simulated_time() {
        let now = Instant::now();
        let r = Registrar::new(
            &RegistrarConfig::default()
                .validate(Path::new("t"), "r")
                .expect("valid"),
        );
        let mut rng = StdRng::seed_from_u64(5);
        let mut grants = Vec::new();
        for i in 0..100u32 {
            let mut q = req(
                now,
                1,
                vec![contact(&format!("sip:u@{i}"), Some(3600))],
                false,
                None,
            );
            q.aor = format!("sip:u{i}@example.com");
            match r.register(&q, &mut rng) {
                RegisterOutcome::Ok { bindings, .. } => grants.push(bindings[0].expires),
                other => panic!("{other:?}"),
            }
        }
        assert!(
            grants.iter().all(|g| (2520..=3600).contains(g)),
            "{grants:?}"
        );
        assert!(grants.iter().min() < Some(&2700) && grants.iter().max() > Some(&3400));
        assert_eq!(r.location().count(), 100);
        let mid = now + Duration::from_secs(3060);
        let expected = grants.iter().filter(|&&g| u64::from(g) <= 3060).count();
        assert_eq!(r.location().purge_expired(mid), expected);
        assert_eq!(
            r.location().purge_expired(now + Duration::from_secs(3600)),
            100 - expected
        );
        assert_eq!(r.location().count(), 0);
    }

    #[test]
    fn config_validation_names_the_key() {
        let p = Path::new("proxy.toml");
        let table = [
            ("", None),
            ("min_expires = 0", Some("registrar.min_expires")),
            (
                "min_expires = 600\nmax_expires = 300",
                Some("registrar.max_expires"),
            ),
            ("default_expires = 10", Some("registrar.default_expires")),
            ("spread_min = 0.0", Some("registrar.spread_min")),
            (
                "spread_min = 0.9\nspread_max = 0.8",
                Some("registrar.spread_max"),
            ),
            ("register_rate = 0.0", Some("registrar.register_rate")),
            (
                "retry_after_min = 30\nretry_after_max = 20",
                Some("registrar.retry_after_max"),
            ),
        ];
        for (text, want) in table {
            let cfg: RegistrarConfig = sipedge_shared::config::parse(p, text).expect(text);
            match (cfg.validate(p, "registrar"), want) {
                (Ok(_), None) => {}
                (Err(e), Some(key)) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(key) && msg.starts_with("proxy.toml"),
                        "{text}: {msg}"
                    );
                }
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        assert!(sipedge_shared::config::parse::<RegistrarConfig>(p, "bogus = 1").is_err());
    }
}
