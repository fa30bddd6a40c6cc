//! The PostgreSQL subscriber store (tokio-postgres): one connection, opened
//! lazily and reopened after it breaks; `migrate()` applies `sql/schema.sql`.
//!
//! Every failure to reach or use the database is `StoreError::Unavailable`
//! (the proxy answers 503 and the LB fails over). The connection is plain TCP
//! (`NoTls`): the database sits on the internal network beside the proxies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use crate::users::{normalize_domain, StoreError, StoreFuture, Subscriber, SubscriberStore};

/// The schema, applied by [`PgStore::migrate`].
pub const SCHEMA: &str = include_str!("../../sql/schema.sql");

/// How long a connect or a query may take before the store counts as unavailable.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failed connect, lookups fail fast for this long instead of each
/// waiting for its own connect attempt (a blackholed database would otherwise
/// hold every request for the whole timeout).
const CONNECT_BACKOFF: Duration = Duration::from_secs(1);

/// A PostgreSQL-backed subscriber store.
pub struct PgStore {
    config: Config,
    timeout: Duration,
    client: Mutex<Option<Arc<Client>>>,
    /// Serialises reconnects so a burst of lookups opens one connection.
    connecting: tokio::sync::Mutex<()>,
    /// No connect attempt before this instant.
    retry_at: Mutex<Option<tokio::time::Instant>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the config: it may hold a password.
        f.debug_struct("PgStore")
            .field("hosts", &self.config.get_hosts())
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl PgStore {
    /// A store for `url` (`postgres://user:pass@host:port/db`); connects on first use.
    pub fn new(url: &str) -> Result<Self, StoreError> {
        let config: Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("bad PostgreSQL URL: {e}")))?;
        Ok(Self {
            config,
            timeout: DEFAULT_TIMEOUT,
            client: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            retry_at: Mutex::new(None),
        })
    }

    /// Sets the connect and query timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn current(&self) -> Option<Arc<Client>> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|c| !c.is_closed())
            .cloned()
    }

    async fn client(&self) -> Result<Arc<Client>, StoreError> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _guard = self.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let now = tokio::time::Instant::now();
        let mut retry_at = self
            .retry_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .to_owned();
        if retry_at.is_some_and(|t| t > now) {
            return Err(unavailable(
                "database unreachable (waiting before reconnecting)",
            ));
        }
        let connected = match tokio::time::timeout(self.timeout, self.config.connect(NoTls)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("connect timed out")),
        };
        retry_at = connected
            .is_err()
            .then(|| tokio::time::Instant::now() + CONNECT_BACKOFF);
        *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) = retry_at;
        let (client, conn) = connected?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        let client = Arc::new(client);
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&client));
        tracing::info!("connected to PostgreSQL");
        Ok(client)
    }

    /// Runs `f` on a live client within the timeout; a broken connection is dropped
    /// so the next call reconnects.
    async fn with_client<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let client = self.client().await?;
        let result = tokio::time::timeout(self.timeout, f(Arc::clone(&client))).await;
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    return Err(StoreError::Invalid("subscriber already exists".into()));
                }
                if e.code() == Some(&SqlState::CHECK_VIOLATION) {
                    return Err(StoreError::Invalid(format!("rejected by schema: {e}")));
                }
                if e.is_closed() || e.as_db_error().is_none() {
                    self.drop_client(&client);
                }
                Err(unavailable(e))
            }
            Err(_) => {
                // The query may still be running on this connection: start afresh.
                self.drop_client(&client);
                Err(unavailable("query timed out"))
            }
        }
    }

    fn drop_client(&self, broken: &Arc<Client>) {
        let mut g = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if g.as_ref().is_some_and(|c| Arc::ptr_eq(c, broken)) {
            *g = None;
        }
    }

    /// Creates the schema if it is missing.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.with_client(|c| async move { c.batch_execute(SCHEMA).await })
            .await
    }

    /// Inserts `sub`; with `replace`, an existing row is updated instead of refused.
    pub async fn add(&self, sub: &Subscriber, replace: bool) -> Result<(), StoreError> {
        let sql = if replace {
            "INSERT INTO subscriber (username, domain, ha1_md5, ha1_sha256, enabled) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username, domain) DO UPDATE SET \
             ha1_md5 = EXCLUDED.ha1_md5, ha1_sha256 = EXCLUDED.ha1_sha256, enabled = EXCLUDED.enabled"
        } else {
            "INSERT INTO subscriber (username, domain, ha1_md5, ha1_sha256, enabled) \
             VALUES ($1, $2, $3, $4, $5)"
        };
        let domain = normalize_domain(&sub.domain);
        self.with_client(|c| async move {
            c.execute(
                sql,
                &[
                    &sub.user,
                    &domain,
                    &sub.ha1_md5,
                    &sub.ha1_sha256,
                    &sub.enabled,
                ],
            )
            .await
        })
        .await
        .map(|_| ())
    }

    /// Deletes `user@domain`; `Ok(false)` when there was no such row.
    pub async fn delete(&self, user: &str, domain: &str) -> Result<bool, StoreError> {
        let domain = normalize_domain(domain);
        let n = self
            .with_client(|c| async move {
                c.execute(
                    "DELETE FROM subscriber WHERE username = $1 AND domain = $2",
                    &[&user, &domain],
                )
                .await
            })
            .await?;
        Ok(n > 0)
    }

    /// Every subscriber (of `domain`, when given), sorted by domain and user.
    pub async fn list(&self, domain: Option<&str>) -> Result<Vec<Subscriber>, StoreError> {
        let domain = domain.map(normalize_domain);
        let rows = self
            .with_client(|c| async move {
                c.query(
                    "SELECT username, domain, ha1_md5, ha1_sha256, enabled FROM subscriber \
                     WHERE $1::text IS NULL OR domain = $1 ORDER BY domain, username",
                    &[&domain],
                )
                .await
            })
            .await?;
        rows.iter().map(row_to_sub).collect()
    }
}

fn row_to_sub(r: &tokio_postgres::Row) -> Result<Subscriber, StoreError> {
    Ok(Subscriber {
        user: r.try_get(0).map_err(unavailable)?,
        domain: r.try_get(1).map_err(unavailable)?,
        ha1_md5: r.try_get(2).map_err(unavailable)?,
        ha1_sha256: r.try_get(3).map_err(unavailable)?,
        enabled: r.try_get(4).map_err(unavailable)?,
    })
}

impl SubscriberStore for PgStore {
    fn lookup<'a>(&'a self, user: &'a str, domain: &'a str) -> StoreFuture<'a, Option<Subscriber>> {
        Box::pin(async move {
            let domain = normalize_domain(domain);
            let row = self
                .with_client(|c| async move {
                    c.query_opt(
                        "SELECT username, domain, ha1_md5, ha1_sha256, enabled FROM subscriber \
                         WHERE username = $1 AND domain = $2",
                        &[&user, &domain],
                    )
                    .await
                })
                .await?;
            row.as_ref().map(row_to_sub).transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_invalid_not_unavailable() {
        for url in ["postgres://[::1", "postgres://h:notaport/db"] {
            let e = PgStore::new(url).expect_err(url);
            assert!(!e.is_unavailable(), "{url}: {e}");
        }
        assert!(PgStore::new("postgres://u@127.0.0.1:1/db").is_ok());
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        // Port 1 on loopback: connection refused at once.
        let s = PgStore::new("postgres://u@127.0.0.1:1/db")
            .expect("url")
            .with_timeout(Duration::from_secs(2));
        let e = s.lookup("a", "d").await.expect_err("no server");
        assert!(e.is_unavailable(), "{e}");
        // Within the backoff the next call fails fast, without a connect attempt.
        let e = s.lookup("a", "d").await.expect_err("backoff");
        assert!(e.to_string().contains("waiting before reconnecting"), "{e}");
    }

    #[test]
    fn schema_has_the_table() {
        assert!(SCHEMA.contains("CREATE TABLE IF NOT EXISTS subscriber"));
        assert!(SCHEMA.contains("PRIMARY KEY (username, domain)"));
    }
}
