//! `[users]` config: where subscribers come from (embedded demo users, a
//! users file, or PostgreSQL) and the cache in front; builds the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sipedge_shared::config::{serde_duration, ConfigError};
use tokio_util::sync::CancellationToken;

use crate::users::cache::{CachePolicy, CachedStore};
use crate::users::file::{FileError, FileStore};
use crate::users::postgres::PgStore;
use crate::users::{StoreError, SubscriberStore};

/// `[users]` as written in TOML. Neither `file` nor `db_url`: the embedded demo users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersConfig {
    /// A users file (TOML, or CSV by extension), watched for changes.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// A PostgreSQL URL; lookups then go through the cache.
    #[serde(default)]
    pub db_url: Option<String>,
    /// Create the PostgreSQL schema at start if missing.
    #[serde(default)]
    pub migrate_on_start: bool,
    /// How often the users file's mtime is polled.
    #[serde(default = "default_reload", with = "serde_duration")]
    pub reload_interval: Duration,
    /// Cache lifetime of a found subscriber.
    #[serde(default = "default_ttl", with = "serde_duration")]
    pub cache_ttl: Duration,
    /// Cache lifetime of "no such subscriber".
    #[serde(default = "default_negative_ttl", with = "serde_duration")]
    pub negative_ttl: Duration,
    /// Most cache entries.
    #[serde(default = "default_max_entries")]
    pub cache_max_entries: usize,
}

fn default_reload() -> Duration {
    Duration::from_secs(5)
}
fn default_ttl() -> Duration {
    CachePolicy::default().ttl
}
fn default_negative_ttl() -> Duration {
    CachePolicy::default().negative_ttl
}
fn default_max_entries() -> usize {
    CachePolicy::default().max_entries
}

impl Default for UsersConfig {
    fn default() -> Self {
        Self {
            file: None,
            db_url: None,
            migrate_on_start: false,
            reload_interval: default_reload(),
            cache_ttl: default_ttl(),
            negative_ttl: default_negative_ttl(),
            cache_max_entries: default_max_entries(),
        }
    }
}

/// Where subscribers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsersSource {
    /// [`crate::users::file::DEMO_USERS`].
    Embedded,
    /// A users file, polled every `reload_interval`.
    File {
        /// The file.
        path: PathBuf,
        /// Poll interval.
        reload_interval: Duration,
    },
    /// PostgreSQL behind the cache.
    Postgres {
        /// Connection URL.
        url: String,
        /// Apply the schema at start.
        migrate: bool,
        /// The cache in front.
        cache: CachePolicy,
    },
}

impl UsersConfig {
    /// Checks values; errors name `file` and the `users.` key.
    pub fn validate(&self, file: &Path) -> Result<UsersSource, ConfigError> {
        match (&self.file, &self.db_url) {
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                file,
                "users.db_url",
                "give either users.file or users.db_url, not both",
            )),
            (Some(path), None) => {
                if self.reload_interval < Duration::from_millis(100) {
                    return Err(ConfigError::invalid(
                        file,
                        "users.reload_interval",
                        "must be at least 100ms",
                    ));
                }
                Ok(UsersSource::File {
                    path: path.clone(),
                    reload_interval: self.reload_interval,
                })
            }
            (None, Some(url)) => {
                PgStore::new(url)
                    .map_err(|e| ConfigError::invalid(file, "users.db_url", e.to_string()))?;
                if self.cache_max_entries == 0 {
                    return Err(ConfigError::invalid(
                        file,
                        "users.cache_max_entries",
                        "must be positive",
                    ));
                }
                Ok(UsersSource::Postgres {
                    url: url.clone(),
                    migrate: self.migrate_on_start,
                    cache: CachePolicy {
                        ttl: self.cache_ttl,
                        negative_ttl: self.negative_ttl,
                        max_entries: self.cache_max_entries,
                    },
                })
            }
            (None, None) => Ok(UsersSource::Embedded),
        }
    }
}

/// Why the store could not be opened at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The users file is missing or broken.
    #[error(transparent)]
    File(#[from] FileError),
    /// PostgreSQL rejected the URL or the migration failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the store for `source`. A users file gets a watch task (ended by
/// `shutdown`); it is already in memory, so only PostgreSQL gets the cache.
/// PostgreSQL need not be reachable at start unless `migrate` is set.
pub async fn open_store(
    source: &UsersSource,
    shutdown: CancellationToken,
) -> Result<Arc<dyn SubscriberStore>, OpenError> {
    Ok(match source {
        UsersSource::Embedded => Arc::new(FileStore::demo()),
        UsersSource::File {
            path,
            reload_interval,
        } => {
            let store = Arc::new(FileStore::open(path)?);
            store.spawn_watch(*reload_interval, shutdown);
            store
        }
        UsersSource::Postgres {
            url,
            migrate,
            cache,
        } => {
            let pg = PgStore::new(url)?;
            if *migrate {
                pg.migrate().await?;
            }
            Arc::new(CachedStore::new(pg, *cache))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str) -> Result<UsersSource, ConfigError> {
        let c: UsersConfig = sipedge_shared::config::parse(Path::new("proxy.toml"), text)?;
        c.validate(Path::new("proxy.toml"))
    }

    #[test]
    fn sources() {
        assert_eq!(validate("").expect("empty"), UsersSource::Embedded);
        assert!(matches!(
            validate("file = 'u.csv'\nreload_interval = '2s'").expect("file"),
            UsersSource::File { reload_interval, .. } if reload_interval == Duration::from_secs(2)
        ));
        assert!(matches!(
            validate("db_url = 'postgres://u@127.0.0.1/db'\ncache_ttl = '30s'").expect("db"),
            UsersSource::Postgres { cache, .. } if cache.ttl == Duration::from_secs(30)
        ));
        let bad = [
            ("file = 'a'\ndb_url = 'postgres://x'", "users.db_url"),
            (
                "file = 'a'\nreload_interval = '1ms'",
                "users.reload_interval",
            ),
            ("db_url = 'postgres://h:port/db'", "users.db_url"),
            (
                "db_url = 'postgres://h/db'\ncache_max_entries = 0",
                "users.cache_max_entries",
            ),
            ("bogus = 1", "bogus"),
        ];
        for (text, key) in bad {
            let e = validate(text).expect_err(text).to_string();
            assert!(
                e.starts_with("proxy.toml") && e.contains(key),
                "{text}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn open_embedded_and_file() {
        let stop = CancellationToken::new();
        let s = open_store(&UsersSource::Embedded, stop.clone())
            .await
            .expect("demo");
        assert!(s
            .lookup("alice", "sipedge.local")
            .await
            .expect("lookup")
            .is_some());
        let missing = UsersSource::File {
            path: PathBuf::from("/nonexistent/users.toml"),
            reload_interval: Duration::from_secs(1),
        };
        let e = open_store(&missing, stop.clone())
            .await
            .err()
            .expect("missing file");
        assert!(e.to_string().contains("/nonexistent/users.toml"), "{e}");
        stop.cancel();
    }
}
