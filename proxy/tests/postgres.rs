//! The PostgreSQL subscriber store against a real server: migrate, the
//! `users` CLI (add, list, del), lookups through the cache, reconnects.
//! Needs `SIPEDGE_PG_URL` (see `scripts/pg-start.sh`); skips without it
//! unless `SIPEDGE_REQUIRE_PG=1`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Parser;
use sipedge_proxy::auth::digest::{ha1, Algorithm};
use sipedge_proxy::auth::{AuthInput, AuthOutcome, AuthSettings, Authenticator};
use sipedge_proxy::cli::{run_users_with, UsersCommand};
use sipedge_proxy::users::cache::{CachePolicy, CachedStore};
use sipedge_proxy::users::postgres::PgStore;
use sipedge_proxy::users::{Subscriber, SubscriberStore};

fn pg_url() -> Option<String> {
    match std::env::var("SIPEDGE_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("SIPEDGE_REQUIRE_PG").as_deref() == Ok("1") {
                panic!(
                    "SIPEDGE_REQUIRE_PG=1 but SIPEDGE_PG_URL is not set (run scripts/pg-start.sh)"
                );
            }
            eprintln!("skipping PostgreSQL tests: SIPEDGE_PG_URL is not set (eval \"$(scripts/pg-start.sh)\")");
            None
        }
    }
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Top,
}

#[derive(Debug, clap::Subcommand)]
enum Top {
    Users(UsersCommand),
}

/// Runs `sipedge-proxy users --db URL ARGS...` in-process and returns its output.
async fn users(url: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut v = vec!["sipedge-proxy", "users", "--db", url];
    v.extend_from_slice(args);
    let Top::Users(cmd) = Cli::try_parse_from(v)?.cmd;
    let mut out = Vec::new();
    run_users_with(cmd, &mut out).await?;
    Ok(String::from_utf8(out)?)
}

#[tokio::test]
async fn postgres_store_end_to_end() -> anyhow::Result<()> {
    let Some(url) = pg_url() else { return Ok(()) };
    // A domain of our own, so reruns and parallel runs do not see each other's rows.
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_nanos();
    let domain = format!("t{}-{nanos}.test", std::process::id());
    let alice = format!("alice@{domain}");
    let bob = format!("bob@{domain}");

    assert_eq!(users(&url, &["migrate"]).await?, "schema ready\n");
    assert_eq!(
        users(&url, &["migrate"]).await?,
        "schema ready\n",
        "idempotent"
    );

    users(&url, &["add", &alice, "--password", "wonderland"]).await?;
    users(&url, &["add", &bob, "--password", "builder", "--disabled"]).await?;
    let dup = users(&url, &["add", &alice, "--password", "x"]).await;
    assert!(format!("{:#}", dup.expect_err("duplicate")).contains("already exists"));
    users(
        &url,
        &["add", &alice, "--password", "looking-glass", "--replace"],
    )
    .await?;

    let listed = users(&url, &["list", "--domain", &domain.to_uppercase()]).await?;
    assert_eq!(listed, format!("{alice}\tenabled\n{bob}\tdisabled\n"));

    // Lookups through the cache, as the proxy does them.
    let pg = PgStore::new(&url)?;
    let cached = Arc::new(CachedStore::new(
        PgStore::new(&url)?,
        CachePolicy {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_millis(200),
            max_entries: 1000,
        },
    ));
    let got = cached.lookup("alice", &domain).await?.expect("alice");
    assert_eq!(
        got,
        Subscriber::from_password("alice", &domain, "looking-glass")
    );
    assert_eq!(
        got.ha1_sha256,
        ha1(Algorithm::Sha256, "alice", &domain, "looking-glass")
    );
    assert!(!cached.lookup("bob", &domain).await?.expect("bob").enabled);
    assert!(cached.lookup("mallory", &domain).await?.is_none());

    // The stored HA1s authenticate a digest response end to end.
    let auth = Authenticator::new(cached.clone(), AuthSettings::default());
    let ip = "127.0.0.1".parse()?;
    let uri = format!("sip:{domain}");
    let input = |header_value| AuthInput {
        method: "REGISTER",
        uri: &uri,
        header_value,
        source_ip: ip,
        realm: &domain,
    };
    let now = SystemTime::now();
    let AuthOutcome::Challenge { header_values, .. } = auth.check(input(None), now).await else {
        panic!("expected a challenge");
    };
    let nonce = header_values[0]
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("nonce");
    let ha1 = ha1(Algorithm::Sha256, "alice", &domain, "looking-glass");
    let ha2 = Algorithm::Sha256.hash_hex(&["REGISTER", &uri]);
    let resp = Algorithm::Sha256.hash_hex(&[&ha1, nonce, "00000001", "cn", "auth", &ha2]);
    let h = format!(
        "Digest username=\"alice\",realm=\"{domain}\",nonce=\"{nonce}\",uri=\"{uri}\",\
         response=\"{resp}\",algorithm=SHA-256,qop=auth,nc=00000001,cnonce=\"cn\""
    );
    assert_eq!(
        auth.check(input(Some(&h)), now).await,
        AuthOutcome::Authenticated {
            user: "alice".into()
        }
    );

    // Deleting: the cache still answers until its TTL, the store at once.
    assert_eq!(
        users(&url, &["del", &bob]).await?,
        format!("deleted {bob}\n")
    );
    assert!(pg.lookup("bob", &domain).await?.is_none());
    assert!(
        cached.lookup("bob", &domain).await?.is_some(),
        "cached for its TTL"
    );
    cached.invalidate("bob", &domain);
    assert!(cached.lookup("bob", &domain).await?.is_none());
    let e = users(&url, &["del", &bob]).await.expect_err("gone");
    assert!(format!("{e:#}").contains("no such subscriber"));

    // A negative entry expires after its short TTL.
    users(
        &url,
        &["add", &format!("mallory@{domain}"), "--password", "m"],
    )
    .await?;
    assert!(
        cached.lookup("mallory", &domain).await?.is_none(),
        "negative entry"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(cached.lookup("mallory", &domain).await?.is_some());

    // The store reconnects after the server drops its connection.
    assert!(pg.lookup("alice", &domain).await?.is_some());
    let killer = PgStore::new(&url)?;
    killer.migrate().await?;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    let conn_task = tokio::spawn(conn);
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE pid <> pg_backend_pid() AND datname = current_database() AND usename = current_user",
            &[],
        )
        .await?;
    let mut recovered = false;
    for _ in 0..3 {
        // The first call may see the dead connection (Unavailable); a later one reconnects.
        match pg.lookup("alice", &domain).await {
            Ok(Some(_)) => {
                recovered = true;
                break;
            }
            Ok(None) => panic!("alice vanished"),
            Err(e) => assert!(e.is_unavailable(), "{e}"),
        }
    }
    assert!(recovered, "reconnected after the backend was terminated");
    drop(client);
    let _ = conn_task.await;

    // Clean up our rows.
    for u in ["alice", "mallory"] {
        users(&url, &["del", &format!("{u}@{domain}")]).await?;
    }
    assert_eq!(users(&url, &["list", "--domain", &domain]).await?, "");
    Ok(())
}
