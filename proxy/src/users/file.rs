//! The users file backend: TOML (`[[user]]` tables) or CSV, plaintext
//! passwords hashed to HA1 at load and dropped; reloaded when the file changes.
//!
//! A broken reload keeps the last good copy and logs the file and line.
//! Rewrites (the `users` CLI) go through a temporary file and a rename, so a
//! reader never sees half a file; comments and plaintext passwords are not kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::auth::digest::{ha1, is_ha1, Algorithm};
use crate::users::{normalize_domain, StoreFuture, Subscriber, SubscriberStore};

/// The embedded default users, for the local stack and a softphone test.
/// Passwords (hashed at load, realm = domain `sipedge.local`):
/// alice / `alice-secret`, bob / `bob-secret`, carol / `carol-secret`.
pub const DEMO_USERS: &str = r#"# sipedge demo users (realm = domain). Passwords are hashed at load.
[[user]]
user = "alice"
domain = "sipedge.local"
password = "alice-secret"

[[user]]
user = "bob"
domain = "sipedge.local"
password = "bob-secret"

[[user]]
user = "carol"
domain = "sipedge.local"
password = "carol-secret"
"#;

/// A users file problem; always names the file, and the line when known.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read or written.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The content is wrong at `line` (1-based; 0 when unknown).
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The line, 1-based, 0 when unknown.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// The two file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `[[user]]` tables.
    Toml,
    /// `user,domain,password` or `user,domain,ha1_md5,ha1_sha256[,enabled]`.
    Csv,
}

impl Format {
    /// CSV for `*.csv`, TOML otherwise.
    pub fn for_path(p: &Path) -> Self {
        match p.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Toml,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    user: Vec<TomlUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlUser {
    user: String,
    domain: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    ha1_md5: Option<String>,
    #[serde(default)]
    ha1_sha256: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

type Key = (String, String);
type Users = HashMap<Key, Subscriber>;

fn key(user: &str, domain: &str) -> Key {
    (user.to_string(), normalize_domain(domain))
}

/// Builds a subscriber from either a password or both HA1s.
fn entry(
    user: &str,
    domain: &str,
    password: Option<&str>,
    md5: Option<&str>,
    sha: Option<&str>,
    enabled: bool,
) -> Result<Subscriber, String> {
    if user.is_empty() || domain.is_empty() {
        return Err("user and domain must not be empty".into());
    }
    if user.contains(['@', ',', ' ', '"']) || domain.contains(['@', ',', ' ', '"']) {
        return Err(format!("invalid user or domain `{user}@{domain}`"));
    }
    let realm = normalize_domain(domain);
    let mut s = match (password, md5, sha) {
        (Some(p), None, None) => Subscriber::from_password(user, &realm, p),
        (None, Some(m), Some(h)) => {
            if !is_ha1(Algorithm::Md5, m) {
                return Err("ha1_md5 must be 32 hex digits".into());
            }
            if !is_ha1(Algorithm::Sha256, h) {
                return Err("ha1_sha256 must be 64 hex digits".into());
            }
            Subscriber {
                user: user.to_string(),
                domain: realm,
                ha1_md5: m.to_ascii_lowercase(),
                ha1_sha256: h.to_ascii_lowercase(),
                enabled: true,
            }
        }
        _ => return Err("give either `password` or both `ha1_md5` and `ha1_sha256`".into()),
    };
    s.enabled = enabled;
    Ok(s)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Parses a users file's text. `file` only names the source in errors.
pub fn parse(file: &Path, text: &str, format: Format) -> Result<Vec<Subscriber>, FileError> {
    let err = |line: usize, message: String| FileError::Syntax {
        file: file.to_path_buf(),
        line,
        message,
    };
    let mut out: Vec<Subscriber> = Vec::new();
    let mut lines: Vec<usize> = Vec::new();
    match format {
        Format::Toml => {
            let parsed: TomlFile = toml::from_str(text).map_err(|e| {
                let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
                err(line, e.message().to_string())
            })?;
            // Entries have no spans after deserialising: find each `[[user]]` header's line.
            let headers: Vec<usize> = text
                .lines()
                .enumerate()
                .filter(|(_, l)| l.trim_start().starts_with("[[user]]"))
                .map(|(i, _)| i + 1)
                .collect();
            for (i, u) in parsed.user.iter().enumerate() {
                let line = headers.get(i).copied().unwrap_or(0);
                let s = entry(
                    &u.user,
                    &u.domain,
                    u.password.as_deref(),
                    u.ha1_md5.as_deref(),
                    u.ha1_sha256.as_deref(),
                    u.enabled.unwrap_or(true),
                )
                .map_err(|m| err(line, format!("user[{i}]: {m}")))?;
                out.push(s);
                lines.push(line);
            }
        }
        Format::Csv => {
            let mut columns: Option<Vec<String>> = None;
            for (i, raw) in text.lines().enumerate() {
                let line = i + 1;
                let l = raw.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                let fields: Vec<&str> = l.split(',').map(str::trim).collect();
                if columns.is_none() && out.is_empty() && fields.first() == Some(&"user") {
                    columns = Some(fields.iter().map(|f| f.to_string()).collect());
                    continue;
                }
                let named = |name: &str| -> Option<&str> {
                    let cols = columns.as_ref()?;
                    let idx = cols.iter().position(|c| c == name)?;
                    fields.get(idx).copied().filter(|v| !v.is_empty())
                };
                let (user, domain, pw, md5, sha, enabled) = match &columns {
                    Some(cols) => {
                        if fields.len() != cols.len() {
                            return Err(err(line, format!("expected {} fields", cols.len())));
                        }
                        (
                            named("user").unwrap_or(""),
                            named("domain").unwrap_or(""),
                            named("password"),
                            named("ha1_md5"),
                            named("ha1_sha256"),
                            named("enabled"),
                        )
                    }
                    None => match fields.as_slice() {
                        [u, d, p] => (*u, *d, Some(*p), None, None, None),
                        [u, d, m, h] => (*u, *d, None, Some(*m), Some(*h), None),
                        [u, d, m, h, e] => (*u, *d, None, Some(*m), Some(*h), Some(*e)),
                        _ => {
                            return Err(err(
                                line,
                                "expected user,domain,password or user,domain,ha1_md5,ha1_sha256[,enabled]"
                                    .into(),
                            ))
                        }
                    },
                };
                let enabled = match enabled {
                    None | Some("true") | Some("1") => true,
                    Some("false") | Some("0") => false,
                    Some(o) => {
                        return Err(err(
                            line,
                            format!("enabled must be true or false, not `{o}`"),
                        ))
                    }
                };
                out.push(entry(user, domain, pw, md5, sha, enabled).map_err(|m| err(line, m))?);
                lines.push(line);
            }
        }
    }
    let mut seen: HashMap<Key, usize> = HashMap::new();
    for (s, line) in out.iter().zip(&lines) {
        if let Some(first) = seen.insert(key(&s.user, &s.domain), *line) {
            return Err(err(
                *line,
                format!("duplicate user {} (first on line {first})", s.aor()),
            ));
        }
    }
    Ok(out)
}

/// Renders subscribers as a users file (HA1 only, sorted by domain then user).
pub fn render(subs: &[Subscriber], format: Format) -> String {
    let mut subs: Vec<&Subscriber> = subs.iter().collect();
    subs.sort_by(|a, b| (&a.domain, &a.user).cmp(&(&b.domain, &b.user)));
    let mut o = String::new();
    match format {
        Format::Toml => {
            o.push_str("# sipedge users (HA1 only; written by `sipedge-proxy users`)\n");
            for s in subs {
                o.push_str(&format!(
                    "\n[[user]]\nuser = \"{}\"\ndomain = \"{}\"\nha1_md5 = \"{}\"\nha1_sha256 = \"{}\"\n",
                    s.user, s.domain, s.ha1_md5, s.ha1_sha256
                ));
                if !s.enabled {
                    o.push_str("enabled = false\n");
                }
            }
        }
        Format::Csv => {
            o.push_str("user,domain,ha1_md5,ha1_sha256,enabled\n");
            for s in subs {
                o.push_str(&format!(
                    "{},{},{},{},{}\n",
                    s.user, s.domain, s.ha1_md5, s.ha1_sha256, s.enabled
                ));
            }
        }
    }
    o
}

/// Writes `text` to `path` atomically (temporary file in the same folder, then rename).
pub fn write_atomic(path: &Path, text: &str) -> Result<(), FileError> {
    let io = |source| FileError::Io {
        file: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("users");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// The file-backed store; cheap lookups from an `ArcSwap`ped map.
pub struct FileStore {
    path: Option<PathBuf>,
    users: ArcSwap<Users>,
    /// (mtime, length) of the copy loaded last.
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .field("users", &self.users.load().len())
            .finish()
    }
}

fn to_map(subs: Vec<Subscriber>) -> Users {
    subs.into_iter()
        .map(|s| (key(&s.user, &s.domain), s))
        .collect()
}

fn stamp_of(path: &Path) -> Result<(SystemTime, u64), FileError> {
    let m = std::fs::metadata(path).map_err(|source| FileError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    let mtime = m.modified().map_err(|source| FileError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    Ok((mtime, m.len()))
}

impl FileStore {
    /// The embedded [`DEMO_USERS`]; never reloaded.
    pub fn demo() -> Self {
        let subs = parse(Path::new("<embedded users>"), DEMO_USERS, Format::Toml)
            .expect("the embedded demo users parse");
        Self::from_subscribers(subs)
    }

    /// A store over fixed subscribers (tests, embedded use).
    pub fn from_subscribers(subs: Vec<Subscriber>) -> Self {
        Self {
            path: None,
            users: ArcSwap::from_pointee(to_map(subs)),
            stamp: Mutex::new(None),
        }
    }

    /// Loads `path` (format from its extension); fails if it is broken.
    pub fn open(path: &Path) -> Result<Self, FileError> {
        let store = Self {
            path: Some(path.to_path_buf()),
            users: ArcSwap::from_pointee(Users::new()),
            stamp: Mutex::new(None),
        };
        store.load_now()?;
        Ok(store)
    }

    fn load_now(&self) -> Result<(), FileError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let stamp = stamp_of(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Io {
            file: path.clone(),
            source,
        })?;
        let subs = parse(path, &text, Format::for_path(path))?;
        let n = subs.len();
        self.users.store(Arc::new(to_map(subs)));
        *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = Some(stamp);
        tracing::info!(file = %path.display(), users = n, "users file loaded");
        Ok(())
    }

    /// Reloads if the file's mtime or size changed. `Ok(true)` when a new copy
    /// was loaded; on error the last good copy stays and the error is logged.
    pub fn reload(&self) -> Result<bool, FileError> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let result = stamp_of(path).and_then(|stamp| {
            let old = *self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if old == Some(stamp) {
                return Ok(false);
            }
            self.load_now().map(|()| true)
        });
        if let Err(e) = &result {
            // Remember the broken stamp so the same error is not logged every poll.
            if let Ok(stamp) = stamp_of(path) {
                *self.stamp.lock().unwrap_or_else(|p| p.into_inner()) = Some(stamp);
            }
            tracing::error!(error = %e, "users file reload failed; keeping the last good copy");
        }
        result
    }

    /// Polls the file every `every` until `shutdown`, reloading on change.
    pub fn spawn_watch(
        self: &Arc<Self>,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => { let _ = me.reload(); }
                }
            }
        })
    }

    /// Every subscriber, sorted by domain and user.
    pub fn all(&self) -> Vec<Subscriber> {
        let mut v: Vec<Subscriber> = self.users.load().values().cloned().collect();
        v.sort_by(|a, b| (&a.domain, &a.user).cmp(&(&b.domain, &b.user)));
        v
    }

    /// Synchronous lookup.
    pub fn get(&self, user: &str, domain: &str) -> Option<Subscriber> {
        self.users.load().get(&key(user, domain)).cloned()
    }
}

impl SubscriberStore for FileStore {
    fn lookup<'a>(&'a self, user: &'a str, domain: &'a str) -> StoreFuture<'a, Option<Subscriber>> {
        let found = self.get(user, domain);
        Box::pin(async move { Ok(found) })
    }
}

/// HA1s for a password, as stored (for the CLI).
pub fn hash_password(user: &str, domain: &str, password: &str) -> (String, String) {
    let realm = normalize_domain(domain);
    (
        ha1(Algorithm::Md5, user, &realm, password),
        ha1(Algorithm::Sha256, user, &realm, password),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_users() {
        let s = FileStore::demo();
        let alice = s.get("alice", "SIPEDGE.local").expect("alice");
        assert_eq!(
            alice.ha1_md5,
            ha1(Algorithm::Md5, "alice", "sipedge.local", "alice-secret")
        );
        assert!(s.get("bob", "sipedge.local").is_some());
        assert!(s.get("carol", "sipedge.local").is_some());
        assert!(s.get("Alice", "sipedge.local").is_none());
        assert_eq!(s.all().len(), 3);
    }

    #[test]
    fn parse_table() {
        let m = "0123456789abcdef0123456789abcdef";
        let h = "0123456789abcdef".repeat(4);
        let good: &[(&str, Format, usize)] = &[
            ("", Format::Toml, 0),
            ("[[user]]\nuser='a'\ndomain='d'\npassword='p'\n", Format::Toml, 1),
            (&format!("[[user]]\nuser='a'\ndomain='d'\nha1_md5='{m}'\nha1_sha256='{h}'\nenabled=false\n"), Format::Toml, 1),
            ("# c\n\na,d,p\nb,d,p\n", Format::Csv, 2),
            (&format!("a,d,{m},{h}\nb,d,{m},{h},false\n"), Format::Csv, 2),
            ("user,domain,password\na,d,p\n", Format::Csv, 1),
        ];
        for (text, f, n) in good {
            let v = parse(Path::new("u"), text, *f).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(v.len(), *n, "{text}");
        }
        let bad: &[(&str, Format, &str)] = &[
            ("[[user]]\nuser='a'\n", Format::Toml, "u:1:"),
            ("[[user]]\nuser='a'\ndomain='d'\n", Format::Toml, "u:1: user[0]"),
            ("\n[[user]]\nuser='a'\ndomain='d'\npassword='p'\nbogus=1\n", Format::Toml, "u:6:"),
            ("[[user]]\nuser='a'\ndomain='d'\nha1_md5='xx'\nha1_sha256='yy'\n", Format::Toml, "32 hex"),
            (
                "[[user]]\nuser='a'\ndomain='d'\npassword='p'\n[[user]]\nuser='a'\ndomain='D'\npassword='q'\n",
                Format::Toml,
                "u:5: duplicate user a@d (first on line 1)",
            ),
            ("a,d,p\nb,d\n", Format::Csv, "u:2:"),
            ("a,d,p,q\n", Format::Csv, "u:1: ha1_md5"),
            (&format!("a,d,{m},{h},maybe\n"), Format::Csv, "u:1: enabled"),
            ("a@x,d,p\n", Format::Csv, "u:1: invalid"),
            ("user,domain,password\na,d\n", Format::Csv, "u:2: expected 3"),
        ];
        for (text, f, want) in bad {
            let e = parse(Path::new("u"), text, *f).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn render_round_trips() {
        let subs = FileStore::demo().all();
        for f in [Format::Toml, Format::Csv] {
            let text = render(&subs, f);
            assert!(!text.contains("secret"), "no plaintext: {text}");
            assert_eq!(parse(Path::new("x"), &text, f).expect("round trip"), subs);
        }
    }

    #[test]
    fn reload_on_change_and_keep_last_good() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.csv");
        std::fs::write(&path, "alice,d,p\n").expect("write");
        let s = FileStore::open(&path).expect("open");
        assert!(s.get("alice", "d").is_some());
        assert!(!s.reload().expect("unchanged"));

        std::fs::write(&path, "alice,d,p\nbob,d,p2\n").expect("write");
        assert!(s.reload().expect("changed"));
        assert!(s.get("bob", "d").is_some());

        std::fs::write(&path, "alice,d,p\nbob,d,p2\nbroken line\n").expect("write");
        let e = s.reload().expect_err("broken").to_string();
        assert!(e.contains("users.csv:3:"), "{e}");
        assert!(s.get("bob", "d").is_some(), "last good copy kept");

        write_atomic(
            &path,
            &render(&[Subscriber::from_password("carol", "d", "x")], Format::Csv),
        )
        .expect("atomic");
        assert!(s.reload().expect("fixed"));
        assert!(s.get("carol", "d").is_some() && s.get("bob", "d").is_none());
    }

    #[tokio::test]
    async fn watch_task_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users.toml");
        std::fs::write(&path, "").expect("write");
        let s = Arc::new(FileStore::open(&path).expect("open"));
        let stop = CancellationToken::new();
        let task = s.spawn_watch(Duration::from_millis(20), stop.clone());
        std::fs::write(&path, "[[user]]\nuser='z'\ndomain='d'\npassword='p'\n").expect("write");
        let mut found = false;
        for _ in 0..200 {
            if s.lookup("z", "d").await.expect("lookup").is_some() {
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.expect("task ends");
        assert!(found, "watcher picked up the change");
    }
}
