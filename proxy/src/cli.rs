//! `sipedge-proxy users add|del|list|migrate`: provisioning subscribers in the
//! users file (rewritten atomically) or in PostgreSQL. Only HA1s are stored.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::users::file::{self, Format};
use crate::users::postgres::PgStore;
use crate::users::{normalize_domain, split_aor, Subscriber};

/// `sipedge-proxy users ...`: where the subscribers live, and what to do.
#[derive(Debug, Clone, clap::Args)]
pub struct UsersCommand {
    /// Users file (TOML, or CSV when it ends in `.csv`); created by `add` if missing.
    #[arg(long, global = true, conflicts_with = "db")]
    pub file: Option<PathBuf>,
    /// PostgreSQL URL, e.g. `postgres://sipedge@127.0.0.1:5432/sipedge`.
    #[arg(long, global = true)]
    pub db: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub action: UsersAction,
}

/// The `users` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UsersAction {
    /// Add a subscriber (stores HA1 values only).
    Add {
        /// `user@domain` (the domain is the digest realm).
        aor: String,
        /// The password; read from the first line of stdin when absent.
        #[arg(long)]
        password: Option<String>,
        /// Overwrite an existing subscriber instead of failing.
        #[arg(long)]
        replace: bool,
        /// Add the subscriber disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Delete a subscriber.
    Del {
        /// `user@domain`.
        aor: String,
    },
    /// List subscribers (never their HA1s).
    List {
        /// Only this domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Create the PostgreSQL schema if missing (`--db` only).
    Migrate,
}

/// Runs a `users` command, printing to stdout.
pub async fn run_users(cmd: UsersCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    run_users_with(cmd, &mut out).await
}

/// Runs a `users` command, printing to `out` (tests capture it).
pub async fn run_users_with(cmd: UsersCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let backend = match (&cmd.file, &cmd.db) {
        (Some(f), None) => Backend::File(f.clone()),
        (None, Some(url)) => Backend::Db(Box::new(PgStore::new(url).context("--db")?)),
        (Some(_), Some(_)) => bail!("give either --file or --db, not both"),
        (None, None) => bail!("give --file PATH or --db URL"),
    };
    match cmd.action {
        UsersAction::Add {
            aor,
            password,
            replace,
            disabled,
        } => {
            let (user, domain) = parse_aor(&aor)?;
            let password = match password {
                Some(p) => p,
                None => read_password()?,
            };
            if password.is_empty() {
                bail!("empty password");
            }
            let mut sub = Subscriber::from_password(user, &normalize_domain(domain), &password);
            sub.enabled = !disabled;
            backend.add(&sub, replace).await?;
            writeln!(out, "added {}", sub.aor())?;
        }
        UsersAction::Del { aor } => {
            let (user, domain) = parse_aor(&aor)?;
            if !backend.delete(user, domain).await? {
                bail!("no such subscriber {user}@{domain}");
            }
            writeln!(out, "deleted {user}@{}", normalize_domain(domain))?;
        }
        UsersAction::List { domain } => {
            for s in backend.list(domain.as_deref()).await? {
                let state = if s.enabled { "enabled" } else { "disabled" };
                writeln!(out, "{}\t{state}", s.aor())?;
            }
        }
        UsersAction::Migrate => match &backend {
            Backend::Db(db) => {
                db.migrate().await.context("migrate")?;
                writeln!(out, "schema ready")?;
            }
            Backend::File(_) => bail!("migrate applies to --db only"),
        },
    }
    Ok(())
}

fn parse_aor(aor: &str) -> anyhow::Result<(&str, &str)> {
    let (u, d) = split_aor(aor).with_context(|| format!("`{aor}` is not user@domain"))?;
    if u.contains([',', '"']) || d.contains([',', '"', '@']) {
        bail!("`{aor}`: user and domain may not contain `,`, `\"` or a second `@`");
    }
    Ok((u, d))
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

enum Backend {
    File(PathBuf),
    Db(Box<PgStore>),
}

fn read_file(path: &Path) -> anyhow::Result<Vec<Subscriber>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(file::parse(path, &text, Format::for_path(path))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("{}", path.display())),
    }
}

impl Backend {
    async fn add(&self, sub: &Subscriber, replace: bool) -> anyhow::Result<()> {
        match self {
            Backend::Db(db) => Ok(db.add(sub, replace).await?),
            Backend::File(path) => {
                let mut subs = read_file(path)?;
                let pos = subs
                    .iter()
                    .position(|s| s.user == sub.user && s.domain == sub.domain);
                match (pos, replace) {
                    (Some(_), false) => bail!("{} already exists (use --replace)", sub.aor()),
                    (Some(i), true) => subs[i] = sub.clone(),
                    (None, _) => subs.push(sub.clone()),
                }
                Ok(file::write_atomic(
                    path,
                    &file::render(&subs, Format::for_path(path)),
                )?)
            }
        }
    }

    async fn delete(&self, user: &str, domain: &str) -> anyhow::Result<bool> {
        match self {
            Backend::Db(db) => Ok(db.delete(user, domain).await?),
            Backend::File(path) => {
                let mut subs = read_file(path)?;
                let domain = normalize_domain(domain);
                let before = subs.len();
                subs.retain(|s| !(s.user == user && s.domain == domain));
                if subs.len() == before {
                    return Ok(false);
                }
                file::write_atomic(path, &file::render(&subs, Format::for_path(path)))?;
                Ok(true)
            }
        }
    }

    async fn list(&self, domain: Option<&str>) -> anyhow::Result<Vec<Subscriber>> {
        let domain = domain.map(normalize_domain);
        match self {
            Backend::Db(db) => Ok(db.list(domain.as_deref()).await?),
            Backend::File(path) => {
                let mut subs = read_file(path)?;
                subs.retain(|s| domain.as_ref().is_none_or(|d| &s.domain == d));
                subs.sort_by(|a, b| (&a.domain, &a.user).cmp(&(&b.domain, &b.user)));
                Ok(subs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::file::FileStore;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Users(UsersCommand),
    }

    fn parse(args: &[&str]) -> Result<UsersCommand, clap::Error> {
        let mut v = vec!["sipedge-proxy", "users"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| match c.cmd {
            Top::Users(u) => u,
        })
    }

    async fn run(args: &[&str]) -> anyhow::Result<String> {
        let mut out = Vec::new();
        run_users_with(parse(args)?, &mut out).await?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn argument_table() {
        assert!(parse(&["add", "a@d", "--password", "p", "--file", "u.toml"]).is_ok());
        assert!(parse(&["--db", "postgres://x", "list", "--domain", "d"]).is_ok());
        assert!(parse(&["del", "a@d", "--file", "f", "--db", "postgres://x"]).is_err());
        assert!(parse(&["frobnicate"]).is_err());
    }

    #[tokio::test]
    async fn file_backend_add_list_del() {
        for name in ["users.toml", "users.csv"] {
            let dir = tempfile::tempdir().expect("tempdir");
            let f = dir.path().join(name);
            let fs = f.to_str().expect("utf-8 path");
            let steps: &[(&[&str], Result<&str, &str>)] = &[
                (&["add", "alice@Example.COM", "--password", "pw"], Ok("added alice@example.com\n")),
                (&["add", "bob@example.com", "--password", "pw2", "--disabled"], Ok("added bob@example.com\n")),
                (&["add", "carol@other.org", "--password", "x"], Ok("added carol@other.org\n")),
                (&["add", "alice@example.com", "--password", "again"], Err("already exists")),
                (&["add", "alice@example.com", "--password", "new", "--replace"], Ok("added alice@example.com\n")),
                (&["list"], Ok("alice@example.com\tenabled\nbob@example.com\tdisabled\ncarol@other.org\tenabled\n")),
                (&["list", "--domain", "OTHER.org"], Ok("carol@other.org\tenabled\n")),
                (&["del", "bob@example.com"], Ok("deleted bob@example.com\n")),
                (&["del", "bob@example.com"], Err("no such subscriber")),
                (&["add", "nodomain", "--password", "x"], Err("not user@domain")),
                (&["migrate"], Err("--db only")),
            ];
            for (args, want) in steps {
                let mut a = args.to_vec();
                a.extend(["--file", fs]);
                match (run(&a).await, want) {
                    (Ok(out), Ok(w)) => assert_eq!(&out, w, "{name} {args:?}"),
                    (Err(e), Err(w)) => {
                        assert!(format!("{e:#}").contains(w), "{name} {args:?}: {e:#}")
                    }
                    (got, _) => panic!("{name} {args:?}: {got:?}"),
                }
            }
            let text = std::fs::read_to_string(&f).expect("file");
            assert!(
                !text.contains("new") && !text.contains("pw"),
                "no plaintext: {text}"
            );
            let store = FileStore::open(&f).expect("the proxy can load what the CLI wrote");
            let alice = store.get("alice", "example.com").expect("alice");
            assert_eq!(
                alice,
                Subscriber::from_password("alice", "example.com", "new")
            );
        }
    }

    #[tokio::test]
    async fn no_backend_is_an_error() {
        let e = run(&["list"]).await.expect_err("no backend");
        assert!(e.to_string().contains("--file"), "{e}");
    }
}
