//! Runs the multi-region anycast lab (`deploy/lab/lab.sh test`): SIPp users
//! register with digest auth and call each other through two LB sites and
//! three real `sipedge-proxy`; LB site A is killed, BIRD withdraws the VIP,
//! the users re-register through site B and their calls resume.
//!
//! Needs root, `ip`, `bird`, `birdc`, `sipp`, `curl` and `python3`; otherwise it prints
//! a skip message and passes, unless `SIPEDGE_REQUIRE_LAB=1`, then it fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};

/// Hard limit for the whole lab run (it takes about 30 s on 2 cores).
const HARD_TIMEOUT: Duration = Duration::from_secs(180);
/// Tools the lab runs, looked up in `PATH`.
const TOOLS: [&str; 6] = ["ip", "bird", "birdc", "sipp", "curl", "python3"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits one level below the repository root")
        .to_path_buf()
}

fn in_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn is_root() -> bool {
    // /proc/self/status: "Uid:\treal\teffective\t…".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Why the lab cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if !is_root() {
        return Some("not running as root (ip netns needs it)".into());
    }
    let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| !in_path(t)).collect();
    if !missing.is_empty() {
        return Some(format!("missing tools: {}", missing.join(", ")));
    }
    None
}

/// The newest modification time under `dir` (files only, recursively).
fn newest_mtime(dir: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(dir).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| newest_mtime(&e.path()))
        .max()
}

/// The binaries the lab runs.
const BINARIES: [&str; 3] = ["sipedge-lb", "sipedge-proxy", "sipmon"];

/// True when every binary exists and is newer than every source they are
/// built from (their crates, `shared` and `Cargo.lock`).
fn binaries_fresh(bins: &Path) -> bool {
    let root = repo_root();
    let sources = [
        "lb",
        "proxy",
        "sipmon",
        "shared",
        "Cargo.lock",
        "Cargo.toml",
    ]
    .iter()
    .filter_map(|p| newest_mtime(&root.join(p)))
    .max();
    let built = BINARIES
        .iter()
        .map(|b| {
            std::fs::metadata(bins.join(b))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().min());
    matches!((sources, built), (Some(s), Some(b)) if b >= s)
}

/// The folder with up-to-date [`BINARIES`] (dev profile). It builds them
/// only when they are missing or older than their sources: `cargo test
/// --workspace` has built them already, and a build with another feature
/// set would recompile them. Runs before the timed lab, so a cold
/// build does not eat into [`HARD_TIMEOUT`].
fn binaries() -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let bins = repo_root().join(target).join("debug");
    if binaries_fresh(&bins) {
        return Ok(bins);
    }
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "sipedge-lb",
            "-p",
            "sipedge-proxy",
            "-p",
            "sipmon",
        ])
        .current_dir(repo_root())
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build -p sipedge-lb -p sipedge-proxy -p sipmon failed: {status}");
    }
    Ok(bins)
}

fn lab_namespaces() -> anyhow::Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("ip netns list")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("sel-"))
        .map(str::to_owned)
        .collect())
}

/// Runs `lab.sh ARG` in its own process group, echoing its output; on
/// timeout the whole group is killed. Returns the output lines.
fn run_lab(arg: &str, bins: &Path, timeout: Duration) -> anyhow::Result<(bool, Vec<String>)> {
    use std::os::unix::process::CommandExt;
    let script = repo_root().join("deploy/lab/lab.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg(arg)
        .current_dir(repo_root())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("SIPEDGE_LAB_BIN_DIR", bins)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {script:?}"))?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // TERM first so the script's trap removes the namespaces.
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            std::thread::sleep(Duration::from_secs(3));
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = reader.join();
    let lines: Vec<String> = rx.try_iter().collect();
    Ok((status.is_some_and(|s| s.success()), lines))
}

#[test]
fn anycast_failover_moves_clients_to_site_b() -> anyhow::Result<()> {
    if let Some(why) = missing_prerequisite() {
        if std::env::var("SIPEDGE_REQUIRE_LAB").as_deref() == Ok("1") {
            bail!("SIPEDGE_REQUIRE_LAB=1 but the lab cannot run: {why}");
        }
        println!("skipping the anycast lab: {why} (set SIPEDGE_REQUIRE_LAB=1 to fail instead)");
        return Ok(());
    }
    if let Ok(left) = lab_namespaces() {
        if !left.is_empty() {
            bail!("lab namespaces exist before the test (another lab running?): {left:?}");
        }
    }

    let bins = binaries()?;
    let started = Instant::now();
    let (ok, lines) = run_lab("test", &bins, HARD_TIMEOUT)?;
    let timed_out = started.elapsed() >= HARD_TIMEOUT;
    if timed_out {
        // The trap may not have run: clean up explicitly before failing.
        let _ = run_lab("down", &bins, Duration::from_secs(30));
    }
    let left = lab_namespaces()?;

    let verdict = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("LAB VERDICT:"))
        .cloned();
    if timed_out {
        bail!("lab.sh test did not finish within {HARD_TIMEOUT:?}");
    }
    let verdict = verdict.context("lab.sh printed no `LAB VERDICT:` line")?;
    assert!(
        verdict.starts_with("LAB VERDICT: PASS"),
        "the lab failed: {verdict}"
    );
    assert!(ok, "lab.sh exited with failure despite: {verdict}");
    for key in [
        "lb_kill: detect_ms=",
        "outage_ms=",
        "calls_back_ms=",
        "silent_site_death: bgp_ms=",
        "link_loss: bgp_ms=",
        "ok_after_kill=",
    ] {
        assert!(verdict.contains(key), "verdict lacks {key}: {verdict}");
    }
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    Ok(())
}
