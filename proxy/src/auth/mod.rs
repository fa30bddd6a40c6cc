//! Digest authentication of REGISTER and initial requests: parse the
//! credentials, check the nonce, look up the HA1 and verify, with bans.
//!
//! ```text
//! RFC 3261 §22.1: the server ... MUST NOT accept credentials without a
//!   matching realm; a failed check gets a new challenge (401/407), and
//!   a server MAY answer 403 Forbidden to a client that keeps failing.
//! ```

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use sipedge_shared::config::{serde_duration, ConfigError};

use crate::users::SubscriberStore;

pub mod ban;
pub mod challenge;
pub mod digest;
pub mod nonce;

use ban::{BanList, BanPolicy, Banned};
use challenge::{challenge_values_for, ChallengeKind};
use digest::{parse_credentials, Algorithm};
use nonce::{NcCheck, NonceKey, NonceStatus, ReplayGuard};

/// `[auth]` config as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Secret for the nonce HMAC; share it between proxies so a nonce issued
    /// by one is accepted by another after failover. Absent: random per start.
    #[serde(default)]
    pub nonce_secret: Option<String>,
    /// Nonce lifetime (`"300s"`); an older nonce gets `stale=true`.
    #[serde(default = "default_nonce_lifetime", with = "serde_duration")]
    pub nonce_lifetime: Duration,
    /// Bind nonces to the client IP passed in [`AuthInput::source_ip`].
    #[serde(default)]
    pub bind_nonce_to_ip: bool,
    /// Accept RFC 2069 responses without qop (MD5 only; no nc replay check).
    #[serde(default = "yes")]
    pub allow_no_qop: bool,
    /// Require the digest `uri` to equal the Request-URI (RFC 3261 §22.4).
    #[serde(default = "yes")]
    pub check_uri: bool,
    /// Most nonces remembered for nc replay protection.
    #[serde(default = "default_replay_table")]
    pub replay_table_size: usize,
    /// Brute-force protection.
    #[serde(default)]
    pub ban: BanConfig,
    /// Algorithms offered in challenges, most preferred first (RFC 8760
    /// §2.4). Default `["SHA-256", "MD5"]`.
    #[serde(default = "default_challenge_order")]
    pub challenge_order: Vec<String>,
}

fn default_challenge_order() -> Vec<String> {
    vec!["SHA-256".into(), "MD5".into()]
}

/// `[auth.ban]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanConfig {
    /// Failures from one IP within `window` before a ban (0 = off).
    #[serde(default = "default_ip_failures")]
    pub ip_max_failures: u32,
    /// Failures for one username within `window` before a ban (0 = off).
    #[serde(default = "default_user_failures")]
    pub user_max_failures: u32,
    /// Counting window.
    #[serde(default = "default_window", with = "serde_duration")]
    pub window: Duration,
    /// Ban duration.
    #[serde(default = "default_ban_for", with = "serde_duration")]
    pub ban_for: Duration,
    /// Most IPs/usernames tracked per table.
    #[serde(default = "default_max_tracked")]
    pub max_tracked: usize,
}

fn yes() -> bool {
    true
}
fn default_nonce_lifetime() -> Duration {
    Duration::from_secs(300)
}
fn default_replay_table() -> usize {
    100_000
}
fn default_ip_failures() -> u32 {
    BanPolicy::default().ip_max_failures
}
fn default_user_failures() -> u32 {
    BanPolicy::default().user_max_failures
}
fn default_window() -> Duration {
    BanPolicy::default().window
}
fn default_ban_for() -> Duration {
    BanPolicy::default().ban_for
}
fn default_max_tracked() -> usize {
    BanPolicy::default().max_tracked
}

impl Default for BanConfig {
    fn default() -> Self {
        let p = BanPolicy::default();
        Self {
            ip_max_failures: p.ip_max_failures,
            user_max_failures: p.user_max_failures,
            window: p.window,
            ban_for: p.ban_for,
            max_tracked: p.max_tracked,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            nonce_secret: None,
            nonce_lifetime: default_nonce_lifetime(),
            bind_nonce_to_ip: false,
            allow_no_qop: true,
            check_uri: true,
            replay_table_size: default_replay_table(),
            ban: BanConfig::default(),
            challenge_order: default_challenge_order(),
        }
    }
}

/// Validated authentication settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Nonce secret; `None` means random at start.
    pub nonce_secret: Option<Vec<u8>>,
    /// Nonce lifetime.
    pub nonce_lifetime: Duration,
    /// See [`AuthConfig::bind_nonce_to_ip`].
    pub bind_nonce_to_ip: bool,
    /// See [`AuthConfig::allow_no_qop`].
    pub allow_no_qop: bool,
    /// See [`AuthConfig::check_uri`].
    pub check_uri: bool,
    /// See [`AuthConfig::replay_table_size`].
    pub replay_table_size: usize,
    /// Ban thresholds.
    pub ban: BanPolicy,
    /// Algorithms offered in challenges, in order.
    pub challenge_order: Vec<Algorithm>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthConfig::default()
            .validate(Path::new("<default>"))
            .expect("the defaults are valid")
    }
}

impl AuthConfig {
    /// Checks values; `file` and the `auth.` prefix name the culprit.
    pub fn validate(&self, file: &Path) -> Result<AuthSettings, ConfigError> {
        if let Some(s) = &self.nonce_secret {
            if s.len() < 16 {
                return Err(ConfigError::invalid(
                    file,
                    "auth.nonce_secret",
                    "must be at least 16 characters",
                ));
            }
        }
        if self.nonce_lifetime < Duration::from_secs(10) {
            return Err(ConfigError::invalid(
                file,
                "auth.nonce_lifetime",
                "must be at least 10s",
            ));
        }
        if self.replay_table_size == 0 {
            return Err(ConfigError::invalid(
                file,
                "auth.replay_table_size",
                "must be positive",
            ));
        }
        if self.ban.window.is_zero() {
            return Err(ConfigError::invalid(
                file,
                "auth.ban.window",
                "must be positive",
            ));
        }
        if self.ban.max_tracked == 0 {
            return Err(ConfigError::invalid(
                file,
                "auth.ban.max_tracked",
                "must be positive",
            ));
        }
        let mut challenge_order = Vec::with_capacity(self.challenge_order.len());
        for a in &self.challenge_order {
            match Algorithm::parse(a) {
                Some(alg @ (Algorithm::Md5 | Algorithm::Sha256))
                    if !challenge_order.contains(&alg) =>
                {
                    challenge_order.push(alg)
                }
                _ => {
                    return Err(ConfigError::invalid(
                        file,
                        "auth.challenge_order",
                        format!("`{a}`: give MD5 and/or SHA-256, each once"),
                    ))
                }
            }
        }
        if challenge_order.is_empty() {
            return Err(ConfigError::invalid(
                file,
                "auth.challenge_order",
                "give at least one algorithm",
            ));
        }
        Ok(AuthSettings {
            challenge_order,
            nonce_secret: self.nonce_secret.as_ref().map(|s| s.as_bytes().to_vec()),
            nonce_lifetime: self.nonce_lifetime,
            bind_nonce_to_ip: self.bind_nonce_to_ip,
            allow_no_qop: self.allow_no_qop,
            check_uri: self.check_uri,
            replay_table_size: self.replay_table_size,
            ban: BanPolicy {
                ip_max_failures: self.ban.ip_max_failures,
                user_max_failures: self.ban.user_max_failures,
                window: self.ban.window,
                ban_for: self.ban.ban_for,
                max_tracked: self.ban.max_tracked,
            },
        })
    }
}

/// One request to authenticate.
#[derive(Debug, Clone, Copy)]
pub struct AuthInput<'a> {
    /// The SIP method (`REGISTER`, `INVITE`…): decides 401 vs 407 and enters A2.
    pub method: &'a str,
    /// The Request-URI as received.
    pub uri: &'a str,
    /// The `Authorization` (REGISTER) or `Proxy-Authorization` value for our
    /// realm, if the request carries one.
    pub header_value: Option<&'a str>,
    /// The client's address (from the LB's `received`, not the LB's own).
    pub source_ip: IpAddr,
    /// Our realm for this request: the local domain, lowercase (HA1s are
    /// computed with the lowercase domain as realm).
    pub realm: &'a str,
}

/// Why a request is refused with 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbiddenReason {
    /// The source IP is banned (no credential check was made).
    IpBanned,
    /// The username is banned.
    UserBanned,
    /// This failure reached the threshold and started a ban.
    TooManyFailures,
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Credentials verified for `user` in the request's realm.
    Authenticated {
        /// The authenticated user part.
        user: String,
    },
    /// Answer `status` (401 or 407) with one `header_name` header per value.
    Challenge {
        /// 401 for REGISTER, 407 otherwise.
        status: u16,
        /// `WWW-Authenticate` or `Proxy-Authenticate`.
        header_name: &'static str,
        /// SHA-256 challenge first, then MD5.
        header_values: Vec<String>,
        /// The credentials were right but the nonce expired.
        stale: bool,
    },
    /// Answer 403.
    Forbidden {
        /// Why.
        reason: ForbiddenReason,
    },
    /// The subscriber store failed: answer 503 so the LB tries another proxy.
    Unavailable {
        /// The store's error, for the log.
        reason: String,
    },
}

/// Ties nonces, the subscriber store, replay protection and bans together.
pub struct Authenticator {
    store: Arc<dyn SubscriberStore>,
    nonces: NonceKey,
    replay: ReplayGuard,
    bans: BanList,
    settings: AuthSettings,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("settings.nonce_lifetime", &self.settings.nonce_lifetime)
            .finish_non_exhaustive()
    }
}

fn fail_metric(reason: &'static str) {
    metrics::counter!("sipedge_auth_failures_total", "reason" => reason).increment(1);
}

impl Authenticator {
    /// An authenticator over `store` with `settings`.
    pub fn new(store: Arc<dyn SubscriberStore>, settings: AuthSettings) -> Self {
        let nonces = match &settings.nonce_secret {
            Some(s) => NonceKey::new(s, settings.nonce_lifetime),
            None => NonceKey::random(settings.nonce_lifetime),
        };
        Self {
            store,
            nonces,
            replay: ReplayGuard::new(settings.replay_table_size),
            bans: BanList::new(settings.ban),
            settings,
        }
    }

    /// The ban list (for tests and admin views).
    pub fn bans(&self) -> &BanList {
        &self.bans
    }

    fn nonce_ip(&self, ip: IpAddr) -> Option<IpAddr> {
        self.settings.bind_nonce_to_ip.then_some(ip)
    }

    /// A fresh challenge for `req`.
    pub fn challenge(&self, req: &AuthInput<'_>, stale: bool, now: SystemTime) -> AuthOutcome {
        let kind = ChallengeKind::for_method(req.method);
        let nonce = self
            .nonces
            .issue(req.realm, self.nonce_ip(req.source_ip), now);
        AuthOutcome::Challenge {
            status: kind.status(),
            header_name: kind.challenge_header(),
            header_values: challenge_values_for(
                &self.settings.challenge_order,
                req.realm,
                &nonce,
                stale,
            ),
            stale,
        }
    }

    fn failed(&self, req: &AuthInput<'_>, user: Option<&str>, now: SystemTime) -> AuthOutcome {
        match self.bans.record_failure(req.source_ip, user, now) {
            Some(_) => {
                fail_metric("banned_now");
                AuthOutcome::Forbidden {
                    reason: ForbiddenReason::TooManyFailures,
                }
            }
            None => self.challenge(req, false, now),
        }
    }

    /// Authenticates `req`. A wrong password gets a fresh challenge; the
    /// failure that crosses the ban threshold, and every request from a
    /// banned source, gets 403 without a credential check.
    pub async fn check(&self, req: AuthInput<'_>, now: SystemTime) -> AuthOutcome {
        if self.bans.check(req.source_ip, None, now).is_some() {
            fail_metric("ip_banned");
            return AuthOutcome::Forbidden {
                reason: ForbiddenReason::IpBanned,
            };
        }
        let Some(value) = req.header_value else {
            // The normal first step, not a failure.
            return self.challenge(&req, false, now);
        };
        let cred = match parse_credentials(value) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(ip = %req.source_ip, error = %e, "bad digest credentials");
                fail_metric("malformed");
                return self.failed(&req, None, now);
            }
        };
        if self.bans.check(req.source_ip, Some(&cred.username), now) == Some(Banned::User) {
            fail_metric("user_banned");
            return AuthOutcome::Forbidden {
                reason: ForbiddenReason::UserBanned,
            };
        }
        if cred.realm != req.realm {
            // Credentials for another realm (e.g. an outbound proxy's): ask for ours.
            fail_metric("realm");
            return self.challenge(&req, false, now);
        }
        if !cred.qop_auth && (!self.settings.allow_no_qop || cred.algorithm != Algorithm::Md5) {
            fail_metric("no_qop");
            return self.challenge(&req, false, now);
        }
        if self.settings.check_uri && cred.uri != req.uri {
            fail_metric("uri_mismatch");
            return self.challenge(&req, false, now);
        }
        let ip = self.nonce_ip(req.source_ip);
        let status = self.nonces.check(&cred.nonce, req.realm, ip, now);
        if status == NonceStatus::Invalid {
            // Another proxy's or a restarted proxy's nonce: not an attack signal.
            fail_metric("nonce_invalid");
            return self.challenge(&req, false, now);
        }
        let sub = match self.store.lookup(&cred.username, req.realm).await {
            Ok(s) => s,
            Err(e) if e.is_unavailable() => {
                fail_metric("store_unavailable");
                return AuthOutcome::Unavailable {
                    reason: e.to_string(),
                };
            }
            Err(e) => {
                tracing::warn!(error = %e, "subscriber lookup failed");
                fail_metric("store_error");
                return self.challenge(&req, false, now);
            }
        };
        let sub = match sub {
            Some(s) if s.enabled => s,
            other => {
                // Same work as a real check, so timing does not reveal valid usernames.
                let _ = digest::verify(&cred, req.method, &"0".repeat(64));
                fail_metric(if other.is_some() {
                    "disabled"
                } else {
                    "unknown_user"
                });
                return self.failed(&req, Some(&cred.username), now);
            }
        };
        let ha1 = match cred.algorithm.base() {
            Algorithm::Sha256 => &sub.ha1_sha256,
            _ => &sub.ha1_md5,
        };
        if !digest::verify(&cred, req.method, ha1) {
            fail_metric("wrong_password");
            return self.failed(&req, Some(&cred.username), now);
        }
        if status == NonceStatus::Stale {
            // RFC 7616 §3.3: stale=true only when the response itself was right.
            fail_metric("stale");
            return self.challenge(&req, true, now);
        }
        if let (true, Some(nc)) = (cred.qop_auth, cred.nc) {
            let expires = self
                .nonces
                .expires_at(&cred.nonce, req.realm, ip)
                .unwrap_or(now + self.settings.nonce_lifetime);
            if self.replay.accept(&cred.nonce, nc, expires, now) == NcCheck::Replay {
                fail_metric("replay");
                return self.challenge(&req, false, now);
            }
        }
        self.bans.record_success(&cred.username);
        metrics::counter!("sipedge_auth_successes_total").increment(1);
        AuthOutcome::Authenticated {
            user: sub.user.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::file::FileStore;
    use crate::users::{StoreError, StoreFuture, Subscriber};
    use std::time::UNIX_EPOCH;

    const REALM: &str = "sipedge.local";
    const URI: &str = "sip:sipedge.local";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn settings() -> AuthSettings {
        let mut s = AuthSettings {
            nonce_secret: Some(b"0123456789abcdef".to_vec()),
            ..AuthSettings::default()
        };
        s.ban.ip_max_failures = 3;
        s.ban.window = Duration::from_secs(60);
        s.ban.ban_for = Duration::from_secs(120);
        s
    }

    fn auth() -> Authenticator {
        Authenticator::new(Arc::new(FileStore::demo()), settings())
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn input<'a>(method: &'a str, header: Option<&'a str>, src: IpAddr) -> AuthInput<'a> {
        AuthInput {
            method,
            uri: URI,
            header_value: header,
            source_ip: src,
            realm: REALM,
        }
    }

    /// Pulls `name="value"` or `name=value` out of a challenge.
    fn param(ch: &str, name: &str) -> String {
        let start = ch.find(&format!("{name}=")).expect("param present") + name.len() + 1;
        let rest = &ch[start..];
        match rest.strip_prefix('"') {
            Some(q) => q[..q.find('"').expect("closing quote")].to_string(),
            None => rest.split(',').next().unwrap_or("").trim().to_string(),
        }
    }

    /// What a UA answers to `challenge` (one header value).
    fn answer(challenge: &str, method: &str, user: &str, pw: &str, nc: u32) -> String {
        let alg = Algorithm::parse(&param(challenge, "algorithm")).expect("alg");
        let nonce = param(challenge, "nonce");
        let ha1 = digest::ha1(alg, user, REALM, pw);
        let ha2 = alg.hash_hex(&[method, URI]);
        let nc = format!("{nc:08x}");
        let resp = alg.hash_hex(&[&ha1, &nonce, &nc, "c0ffee", "auth", &ha2]);
        format!(
            "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{URI}\", \
             response=\"{resp}\", algorithm={}, cnonce=\"c0ffee\", nc={nc}, qop=auth",
            alg.as_str()
        )
    }

    fn challenges(o: &AuthOutcome) -> Vec<String> {
        match o {
            AuthOutcome::Challenge { header_values, .. } => header_values.clone(),
            other => panic!("expected a challenge, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn register_and_invite_round_trip() {
        let a = auth();
        for (method, status, header) in [
            ("REGISTER", 401, "WWW-Authenticate"),
            ("INVITE", 407, "Proxy-Authenticate"),
        ] {
            let first = a.check(input(method, None, ip(1)), at(0)).await;
            match &first {
                AuthOutcome::Challenge {
                    status: s,
                    header_name,
                    header_values,
                    stale,
                } => {
                    assert_eq!((*s, *header_name, *stale), (status, header, false));
                    assert!(header_values[0].contains("algorithm=SHA-256"));
                    assert!(header_values[1].contains("algorithm=MD5"));
                }
                other => panic!("{other:?}"),
            }
            // Both values carry the same nonce, so each answer needs its own nc.
            for (nc, ch) in (1..).zip(challenges(&first)) {
                let h = answer(&ch, method, "alice", "alice-secret", nc);
                let out = a.check(input(method, Some(&h), ip(1)), at(1)).await;
                assert_eq!(
                    out,
                    AuthOutcome::Authenticated {
                        user: "alice".into()
                    },
                    "{ch}"
                );
            }
        }
    }

    #[tokio::test]
    async fn nc_replay_is_refused() {
        let a = auth();
        let ch = challenges(&a.check(input("REGISTER", None, ip(1)), at(0)).await);
        let h1 = answer(&ch[0], "REGISTER", "bob", "bob-secret", 1);
        let h2 = answer(&ch[0], "REGISTER", "bob", "bob-secret", 2);
        let ok = AuthOutcome::Authenticated { user: "bob".into() };
        assert_eq!(
            a.check(input("REGISTER", Some(&h1), ip(1)), at(1)).await,
            ok
        );
        let replay = a.check(input("REGISTER", Some(&h1), ip(1)), at(2)).await;
        assert!(
            matches!(replay, AuthOutcome::Challenge { stale: false, .. }),
            "{replay:?}"
        );
        assert_eq!(
            a.check(input("REGISTER", Some(&h2), ip(1)), at(3)).await,
            ok
        );
    }

    #[tokio::test]
    async fn stale_nonce_only_with_right_password() {
        let a = auth();
        let ch = challenges(&a.check(input("REGISTER", None, ip(1)), at(0)).await);
        let good = answer(&ch[0], "REGISTER", "carol", "carol-secret", 1);
        let bad = answer(&ch[0], "REGISTER", "carol", "wrong", 1);
        let later = at(301);
        let out = a.check(input("REGISTER", Some(&good), ip(1)), later).await;
        assert!(
            matches!(&out, AuthOutcome::Challenge { stale: true, .. }),
            "{out:?}"
        );
        assert!(challenges(&out).iter().all(|v| v.ends_with("stale=true")));
        let out = a.check(input("REGISTER", Some(&bad), ip(1)), later).await;
        assert!(
            matches!(out, AuthOutcome::Challenge { stale: false, .. }),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn wrong_password_then_ban_then_expiry() {
        let a = auth();
        let ch = challenges(&a.check(input("REGISTER", None, ip(9)), at(0)).await);
        let bad = answer(&ch[0], "REGISTER", "alice", "guess", 1);
        let good = answer(&ch[0], "REGISTER", "alice", "alice-secret", 1);
        // (time, header, expected kind)
        let steps: [(u64, &str, &str); 5] = [
            (1, &bad, "challenge"),
            (2, &bad, "challenge"),
            (3, &bad, "forbidden"),
            // Banned: even the right password gets 403 without a check.
            (4, &good, "forbidden"),
            (124, &good, "ok"),
        ];
        for (t, h, want) in steps {
            let out = a.check(input("REGISTER", Some(h), ip(9)), at(t)).await;
            let kind = match out {
                AuthOutcome::Challenge { .. } => "challenge",
                AuthOutcome::Forbidden { .. } => "forbidden",
                AuthOutcome::Authenticated { .. } => "ok",
                AuthOutcome::Unavailable { .. } => "unavailable",
            };
            assert_eq!(kind, want, "t={t}");
        }
        // Another source is unaffected.
        let other = a.check(input("REGISTER", None, ip(10)), at(5)).await;
        assert!(matches!(other, AuthOutcome::Challenge { .. }));
    }

    #[tokio::test]
    async fn refusals_table() {
        let a = auth();
        let ch = challenges(&a.check(input("INVITE", None, ip(1)), at(0)).await);
        let good = answer(&ch[0], "INVITE", "alice", "alice-secret", 1);
        let cases: Vec<(String, &str, &str)> = vec![
            ("Basic YWxpY2U6eA==".into(), URI, "malformed"),
            (good.replace(REALM, "other.realm"), URI, "realm"),
            (good.clone(), "sip:bob@sipedge.local", "uri"),
            (answer(&ch[0], "INVITE", "nobody", "x", 1), URI, "unknown"),
            (
                good.replace(
                    &param(&ch[0], "nonce"),
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                ),
                URI,
                "nonce",
            ),
        ];
        for (i, (h, uri, why)) in cases.iter().enumerate() {
            let req = AuthInput {
                uri,
                ..input("INVITE", Some(h), ip(50 + i as u8))
            };
            let out = a.check(req, at(1)).await;
            assert!(
                matches!(
                    out,
                    AuthOutcome::Challenge {
                        status: 407,
                        stale: false,
                        ..
                    }
                ),
                "{why}: {out:?}"
            );
        }
    }

    #[tokio::test]
    async fn disabled_user_and_store_down() {
        struct Down;
        impl SubscriberStore for Down {
            fn lookup<'a>(&'a self, _: &'a str, _: &'a str) -> StoreFuture<'a, Option<Subscriber>> {
                Box::pin(async { Err(StoreError::Unavailable("db down".into())) })
            }
        }
        let a = Authenticator::new(Arc::new(Down), settings());
        let ch = challenges(&a.check(input("REGISTER", None, ip(1)), at(0)).await);
        let h = answer(&ch[0], "REGISTER", "alice", "alice-secret", 1);
        let out = a.check(input("REGISTER", Some(&h), ip(1)), at(1)).await;
        assert!(matches!(out, AuthOutcome::Unavailable { .. }), "{out:?}");

        let mut dave = Subscriber::from_password("dave", REALM, "pw");
        dave.enabled = false;
        let a = Authenticator::new(
            Arc::new(FileStore::from_subscribers(vec![dave])),
            settings(),
        );
        let ch = challenges(&a.check(input("REGISTER", None, ip(1)), at(0)).await);
        let h = answer(&ch[1], "REGISTER", "dave", "pw", 1);
        let out = a.check(input("REGISTER", Some(&h), ip(1)), at(1)).await;
        assert!(matches!(out, AuthOutcome::Challenge { .. }), "{out:?}");
    }

    #[tokio::test]
    async fn legacy_no_qop_md5() {
        let a = auth();
        let ch = challenges(&a.check(input("REGISTER", None, ip(1)), at(0)).await);
        let nonce = param(&ch[1], "nonce");
        let ha1 = digest::ha1(Algorithm::Md5, "bob", REALM, "bob-secret");
        let ha2 = Algorithm::Md5.hash_hex(&["REGISTER", URI]);
        let resp = Algorithm::Md5.hash_hex(&[&ha1, &nonce, &ha2]);
        let h = format!(
            "Digest username=\"bob\",realm=\"{REALM}\",nonce=\"{nonce}\",uri=\"{URI}\",response=\"{resp}\""
        );
        let ok = AuthOutcome::Authenticated { user: "bob".into() };
        assert_eq!(a.check(input("REGISTER", Some(&h), ip(1)), at(1)).await, ok);
        let strict = Authenticator::new(
            Arc::new(FileStore::demo()),
            AuthSettings {
                allow_no_qop: false,
                ..settings()
            },
        );
        let out = strict
            .check(input("REGISTER", Some(&h), ip(1)), at(1))
            .await;
        assert!(matches!(out, AuthOutcome::Challenge { .. }), "{out:?}");
    }

    #[test]
    fn config_validation() {
        let ok: AuthConfig = sipedge_shared::config::parse(
            Path::new("proxy.toml"),
            "nonce_lifetime = '120s'\n[ban]\nip_max_failures = 4\nban_for = '10m'\n",
        )
        .expect("parses");
        let s = ok.validate(Path::new("proxy.toml")).expect("valid");
        assert_eq!(s.nonce_lifetime, Duration::from_secs(120));
        assert_eq!(s.ban.ban_for, Duration::from_secs(600));
        let bad = [
            ("nonce_secret = 'short'", "auth.nonce_secret"),
            ("nonce_lifetime = '1s'", "auth.nonce_lifetime"),
            ("replay_table_size = 0", "auth.replay_table_size"),
            ("[ban]\nwindow = 0", "auth.ban.window"),
        ];
        for (text, key) in bad {
            let c: AuthConfig =
                sipedge_shared::config::parse(Path::new("proxy.toml"), text).expect(text);
            let e = c
                .validate(Path::new("proxy.toml"))
                .expect_err(text)
                .to_string();
            assert!(e.contains(key) && e.starts_with("proxy.toml"), "{e}");
        }
        let e = sipedge_shared::config::parse::<AuthConfig>(Path::new("p.toml"), "bogus = 1")
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }
}
