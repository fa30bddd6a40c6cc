//! Checks the deployment kit in `deploy/`: dashboards and rules use only
//! metric names the binaries export, promtool and BIRD accept the files, the
//! systemd units carry their hardening, and the anycast check withdraws.
//!
//! External tools are used when installed and skipped with a message
//! otherwise; `SIPEDGE_REQUIRE_PROMTOOL=1`, `SIPEDGE_REQUIRE_BIRD=1` and
//! `SIPEDGE_REQUIRE_SYSTEMD=1` turn a skip into a failure (for CI).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sipedge_tests::promql::{dashboard_exprs, panels, parse_rules, Expr};
use sipedge_tests::repo_root;
use Kind::{Counter, Gauge, Histogram};

/// How a metric is exported: histograms also appear as `_bucket`, `_sum`, `_count`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric name and its kind.
type Metric = (&'static str, Kind);

/// Every metric name the deployment files may use, grouped by the crate that
/// exports it and whether that crate has landed them (`false`: pending, the
/// names its issue asks for; not yet required in the source).
/// Renaming a metric in a binary fails `metric_names_exist_in_the_sources`;
/// using a name not listed here fails the dashboard and rule checks.
const METRICS: &[(&str, bool, &[Metric])] = &[
    (
        "lb", // lb/src/metrics.rs, lb/src/proxy_set.rs
        true,
        &[
            ("sipedge_lb_requests_total", Counter),
            ("sipedge_lb_responses_total", Counter),
            ("sipedge_lb_failovers_total", Counter),
            ("sipedge_lb_all_proxies_failed_total", Counter),
            ("sipedge_lb_transaction_table_full_total", Counter),
            ("sipedge_lb_loop_rejections_total", Counter),
            ("sipedge_lb_routes_stripped_total", Counter),
            ("sipedge_lb_flood_rejections_total", Counter),
            ("sipedge_lb_bad_messages_total", Counter),
            ("sipedge_lb_flow_failed_total", Counter),
            ("sipedge_lb_bad_flow_tokens_total", Counter),
            ("sipedge_lb_keepalive_pings_total", Counter),
            ("sipedge_lb_keepalive_pongs_total", Counter),
            ("sipedge_lb_keepalive_timeouts_total", Counter),
            ("sipedge_lb_client_pings_total", Counter),
            ("sipedge_lb_stun_requests_total", Counter),
            ("sipedge_lb_flows", Gauge),
            ("sipedge_lb_transaction_seconds", Histogram),
            ("sipedge_lb_live_proxies", Gauge),
            ("sipedge_lb_proxy_set_generation", Gauge),
            ("sipedge_lb_proxy_reports_total", Counter),
        ],
    ),
    (
        "proxy", // proxy/src/auth, proxy/src/users
        true,
        &[
            ("sipedge_auth_failures_total", Counter),
            ("sipedge_auth_successes_total", Counter),
            ("sipedge_auth_bans_total", Counter),
            ("sipedge_subscriber_cache_total", Counter),
        ],
    ),
    (
        "proxy", // proxy/src/server/metrics.rs
        true,
        &[
            ("sipedge_proxy_registrations_active", Gauge),
            ("sipedge_proxy_transactions", Gauge),
            ("sipedge_proxy_calls_total", Counter),
        ],
    ),
    (
        "sipmon", // sipmon/src/monitor.rs, push.rs
        true,
        &[
            ("sipmon_proxy_up", Gauge),
            ("sipmon_probe_rtt_seconds", Histogram),
            ("sipmon_pushes_total", Counter),
            ("sipmon_flaps_total", Counter),
            ("sipmon_holding_last_set", Gauge),
        ],
    ),
];

/// Series Prometheus itself makes for every target.
const SYNTHETIC: &[&str] = &["up", "scrape_duration_seconds", "scrape_samples_scraped"];

/// The alerts issue 6 asks for.
const REQUIRED_ALERTS: &[&str] = &[
    "SipedgeLbNotReady",
    "SipedgeProxyDown",
    "SipedgeFailoverRateHigh",
    "Sipedge5xxRatioHigh",
    "SipedgeKeepaliveTimeoutsHigh",
    "SipmonHoldingLastSet",
];

const UNITS: &[&str] = &[
    "systemd/sipedge-lb.service",
    "systemd/sipedge-proxy.service",
    "systemd/sipmon.service",
    "bird/sipedge-anycast-check.service",
];

fn deploy() -> PathBuf {
    repo_root().join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files under `dir` (recursively) whose name ends with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn known_names() -> BTreeSet<String> {
    let mut s: BTreeSet<String> = SYNTHETIC.iter().map(|n| n.to_string()).collect();
    for (name, kind) in METRICS.iter().flat_map(|(_, _, m)| m.iter()) {
        s.insert(name.to_string());
        if *kind == Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                s.insert(format!("{name}{suffix}"));
            }
        }
    }
    s
}

// ---------------------------------------------------------------- PromQL

/// Words of PromQL that look like identifiers but are not metric names.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "start",
    "end",
];

/// The metric names an expression selects: identifiers outside strings,
/// label matchers, ranges and grouping lists that are not function calls,
/// keywords or numbers. Grafana variables (`$edge`, `${x}`) are skipped.
fn metric_names(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Set after `by`/`on`/… so the following parenthesised label list is skipped.
    let mut skip_group = false;
    let ident_start = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c == b':';
    let ident_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'{' | b'[' => {
                let close = if c == b'{' { b'}' } else { b']' };
                while i < b.len() && b[i] != close {
                    i += 1;
                }
                i += 1;
            }
            b'(' if skip_group => {
                while i < b.len() && b[i] != b')' {
                    i += 1;
                }
                i += 1;
                skip_group = false;
            }
            b'$' => {
                i += 1;
                if b.get(i) == Some(&b'{') {
                    while i < b.len() && b[i] != b'}' {
                        i += 1;
                    }
                    i += 1;
                } else {
                    while i < b.len() && ident_char(b[i]) {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                // A number or duration, including 1e3 and 5m30s.
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            c if ident_start(c) => {
                let start = i;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                let lower = word.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    skip_group = b.get(j) == Some(&b'(');
                } else if b.get(j) == Some(&b'(')
                    || KEYWORDS.contains(&lower.as_str())
                    || next_is_grouping(&expr[j..])
                {
                    // A function or aggregation call (`sum by (l) (…)`), or a keyword.
                } else {
                    out.push(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Whether `rest` starts with `by` or `without` as a word: the identifier
/// before it is an aggregation operator (`sum by (edge) (…)`).
fn next_is_grouping(rest: &str) -> bool {
    let lower = rest.to_ascii_lowercase();
    ["by", "without"].iter().any(|k| {
        lower.starts_with(k)
            && lower[k.len()..]
                .chars()
                .next()
                .is_none_or(|c| c.is_whitespace() || c == '(')
    })
}

fn rules_files() -> Vec<PathBuf> {
    let v = files(&deploy().join("prometheus").join("rules"), ".yml");
    assert!(!v.is_empty(), "no rules under deploy/prometheus/rules");
    v
}

fn dashboards() -> Vec<(PathBuf, Value)> {
    let v: Vec<(PathBuf, Value)> = files(&deploy().join("grafana"), ".json")
        .into_iter()
        .map(|p| {
            let json: Value = serde_json::from_str(&read(&p))
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            (p, json)
        })
        .collect();
    assert!(!v.is_empty(), "no dashboards under deploy/grafana");
    v
}

/// Metric names in the template variables' `label_values(metric{…}, label)`.
fn template_metrics(dash: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_default();
        if let Some(rest) = q.trim().strip_prefix("label_values(") {
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(name);
        }
    }
    out
}

fn all_records() -> BTreeSet<String> {
    rules_files()
        .iter()
        .flat_map(|p| parse_rules(p, &read(p)).records)
        .collect()
}

fn check_names(exprs: &[Expr], allowed: &BTreeSet<String>) -> Vec<String> {
    let mut bad = Vec::new();
    for e in exprs {
        if e.expr.trim().is_empty() {
            bad.push(format!("{}: empty expression", e.origin));
            continue;
        }
        let names = metric_names(&e.expr);
        if names.is_empty() {
            bad.push(format!("{}: selects no metric: {}", e.origin, e.expr));
        }
        for n in names {
            if !allowed.contains(&n) {
                bad.push(format!("{}: unknown metric {n:?} in {}", e.origin, e.expr));
            }
        }
    }
    bad
}

#[test]
fn metric_name_extraction() {
    let cases: &[(&str, &[&str])] = &[
        ("up", &["up"]),
        (
            r#"sum by (edge, carrier) (rate(sipedge_lb_requests_total{edge=~"$edge"}[5m]))"#,
            &["sipedge_lb_requests_total"],
        ),
        (
            r#"sum(rate(a_total[$__rate_interval])) without (instance) / on (edge) group_left (carrier) b"#,
            &["a_total", "b"],
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) > bool 1e3",
            &["x_bucket"],
        ),
        (
            r#"x{l="a b (c)"} and on() y offset 5m unless z"#,
            &["x", "y", "z"],
        ),
        (
            "edge:sipedge_lb_failovers:rate5m * 300 / clamp_min(y, 100)",
            &["edge:sipedge_lb_failovers:rate5m", "y"],
        ),
        ("max(up) BY (job) OR vector(0)", &["up"]),
        ("${datasource} + 1", &[]),
    ];
    for (expr, want) in cases {
        assert_eq!(metric_names(expr), *want, "{expr}");
    }
}

#[test]
fn rules_use_only_exported_metrics_and_cover_the_alerts() {
    let mut allowed = known_names();
    let records = all_records();
    allowed.extend(records.iter().cloned());
    let mut bad = Vec::new();
    let mut alerts = BTreeSet::new();
    for p in rules_files() {
        let rf = parse_rules(&p, &read(&p));
        assert!(!rf.exprs.is_empty(), "{}: no expressions", p.display());
        assert_eq!(
            rf.exprs.len(),
            rf.records.len() + rf.alerts.len(),
            "{}: every rule has one expr",
            p.display()
        );
        bad.extend(check_names(&rf.exprs, &allowed));
        alerts.extend(rf.alerts);
    }
    for r in &records {
        assert!(
            r.split(':').count() == 3 && !known_names().contains(r),
            "recording rule {r:?} is not named level:metric:operations"
        );
    }
    for a in REQUIRED_ALERTS {
        assert!(alerts.contains(*a), "alert {a} missing from the rules");
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn dashboards_are_grafana_json_over_exported_metrics() {
    let mut allowed = known_names();
    allowed.extend(all_records());
    let mut uids = BTreeSet::new();
    for (path, dash) in dashboards() {
        let p = path.display();
        assert!(
            dash["schemaVersion"].as_u64().unwrap_or(0) >= 36,
            "{p}: schemaVersion < 36"
        );
        let uid = dash["uid"].as_str().unwrap_or_default();
        assert!(
            !uid.is_empty() && uid.len() <= 40,
            "{p}: uid missing or longer than 40"
        );
        assert!(uids.insert(uid.to_string()), "{p}: uid {uid} used twice");
        assert!(
            dash["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{p}: no title"
        );

        let vars: BTreeMap<&str, &Value> = dash["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?, v)))
            .collect();
        for v in ["edge", "carrier"] {
            assert!(vars.contains_key(v), "{p}: template variable ${v} missing");
        }

        let mut ids = BTreeSet::new();
        for panel in panels(&dash) {
            let id = panel["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{p}: panel without id"));
            assert!(ids.insert(id), "{p}: panel id {id} used twice");
            for k in ["h", "w", "x", "y"] {
                assert!(panel["gridPos"][k].is_u64(), "{p}: panel {id} gridPos.{k}");
            }
            assert!(panel["type"].is_string(), "{p}: panel {id} has no type");
        }

        let exprs = dashboard_exprs(&path, &dash);
        assert!(exprs.len() >= 10, "{p}: only {} queries", exprs.len());
        let mut bad = check_names(&exprs, &allowed);
        for name in template_metrics(&dash) {
            if !allowed.contains(&name) {
                bad.push(format!(
                    "{p}: template variable over unknown metric {name:?}"
                ));
            }
        }
        // The LB panels follow the edge picker; the traffic panels the carrier picker.
        for e in &exprs {
            if e.expr.contains("sipedge_lb_") && !e.expr.contains("$edge") {
                bad.push(format!("{}: LB query ignores $edge: {}", e.origin, e.expr));
            }
        }
        assert!(
            exprs.iter().any(|e| e.expr.contains("$carrier")),
            "{p}: $carrier unused"
        );
        // The panels issue 6 asks for, by the metric each one needs.
        let all: String = exprs
            .iter()
            .map(|e| e.expr.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        for needed in [
            "sipedge_lb_requests_total",
            "sipedge_lb_responses_total",
            "sipedge_lb_failovers_total",
            "sipedge_lb_flows",
            "sipedge_lb_live_proxies",
            "sipedge_lb_transaction_seconds_bucket",
            "sipedge_lb_keepalive_timeouts_total",
            "sipmon_proxy_up",
        ] {
            if !metric_names(&all).iter().any(|n| n == needed) {
                bad.push(format!("{p}: no panel over {needed}"));
            }
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}

/// Each listed name must appear as a string literal in its exporter's source,
/// so renaming a metric in a binary fails here until the kit follows.
#[test]
fn metric_names_exist_in_the_sources() {
    let mut missing = Vec::new();
    for (krate, landed, metrics) in METRICS {
        let source = files(&repo_root().join(krate).join("src"), ".rs")
            .iter()
            .map(|p| read(p))
            .collect::<Vec<_>>()
            .join("\n");
        for (name, _) in *metrics {
            match (source.contains(&format!("\"{name}\"")), landed) {
                (true, false) => eprintln!("note: {krate} now exports {name}: mark it landed"),
                (false, false) => eprintln!("note: {name} not in {krate}/src yet (pending)"),
                (false, true) => missing.push(format!("{name} not found in {krate}/src")),
                (true, true) => {}
            }
        }
    }
    assert!(
        missing.is_empty(),
        "renamed or removed metrics:\n{}",
        missing.join("\n")
    );
}

// ---------------------------------------------------------------- tools

/// `Some(path)` when `tool` runs; otherwise prints why the caller skips and
/// fails instead when `require_var` is `1`.
fn tool(name: &str, require_var: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var(require_var).as_deref() != Ok("1"),
            "{name} not installed and {require_var}=1"
        );
        eprintln!("skipped: {name} not installed (set {require_var}=1 to fail instead)");
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_config_rules_and_rule_tests() {
    let Some(promtool) = tool("promtool", "SIPEDGE_REQUIRE_PROMTOOL") else {
        return;
    };
    let dir = deploy().join("prometheus");
    let out = run(Command::new(&promtool)
        .arg("check")
        .arg("config")
        .arg(dir.join("prometheus.yml")));
    assert_ok(&out, "promtool check config");
    let out = run(Command::new(&promtool)
        .args(["check", "rules"])
        .args(rules_files()));
    assert_ok(&out, "promtool check rules");
    let tests = files(&dir.join("tests"), ".yml");
    assert!(
        !tests.is_empty(),
        "no rule unit tests in deploy/prometheus/tests"
    );
    let out = run(Command::new(&promtool).args(["test", "rules"]).args(&tests));
    assert_ok(&out, "promtool test rules");
}

/// promtool has no offline query check, so the dashboards' queries go
/// through it as recording rules, with Grafana's variables filled in.
#[test]
fn promtool_parses_every_dashboard_query() {
    let Some(promtool) = tool("promtool", "SIPEDGE_REQUIRE_PROMTOOL") else {
        return;
    };
    let mut yaml = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (path, dash) in dashboards() {
        for (i, e) in dashboard_exprs(&path, &dash).iter().enumerate() {
            let q = e
                .expr
                .replace("$__rate_interval", "5m")
                .replace("$__interval", "1m")
                .replace("$edge", ".*")
                .replace("$carrier", ".*");
            yaml.push_str(&format!(
                "      - record: dashboard:query{i}:check\n        expr: {}\n",
                serde_json::to_string(&q).expect("a string serialises")
            ));
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboards.rules.yml");
    std::fs::write(&file, yaml).expect("write");
    let out = run(Command::new(&promtool).args(["check", "rules"]).arg(&file));
    assert_ok(&out, "promtool check rules (dashboard queries)");
}

// ---------------------------------------------------------------- systemd

/// A unit file as section -> key -> values (keys may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            unit.entry(section.clone())
                .or_default()
                .entry(k.trim().to_string())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    unit
}

fn service(path: &str) -> BTreeMap<String, Vec<String>> {
    let unit = parse_unit(&read(&deploy().join(path)));
    unit.get("Service")
        .cloned()
        .unwrap_or_else(|| panic!("{path}: no [Service]"))
}

fn one<'a>(svc: &'a BTreeMap<String, Vec<String>>, key: &str, path: &str) -> &'a str {
    svc.get(key)
        .and_then(|v| v.last())
        .map(String::as_str)
        .unwrap_or_else(|| panic!("{path}: {key}= missing"))
}

#[test]
fn systemd_units_carry_the_hardening() {
    let common = [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("DynamicUser", "yes"),
    ];
    for path in UNITS {
        let svc = service(path);
        for (k, want) in common {
            assert_eq!(one(&svc, k, path), want, "{path}: {k}");
        }
        let restart = one(&svc, "Restart", path);
        assert!(
            matches!(restart, "on-failure" | "always"),
            "{path}: Restart={restart}"
        );
    }
    // (unit, binary and arguments, capability?, LimitNOFILE)
    let binaries = [
        (
            "systemd/sipedge-lb.service",
            "/usr/bin/sipedge-lb --config /etc/sipedge/lb.toml",
            true,
            "1048576",
        ),
        (
            "systemd/sipedge-proxy.service",
            "/usr/bin/sipedge-proxy run --config /etc/sipedge/proxy.toml",
            true,
            "65536",
        ),
        (
            "systemd/sipmon.service",
            "/usr/bin/sipmon run --config /etc/sipedge/sipmon.toml",
            false,
            "65536",
        ),
    ];
    for (path, exec, binds_sip_ports, nofile) in binaries {
        let svc = service(path);
        assert!(
            one(&svc, "ExecStart", path).starts_with(exec),
            "{path}: ExecStart is not {exec}"
        );
        assert_eq!(
            one(&svc, "LimitNOFILE", path),
            nofile,
            "{path}: LimitNOFILE"
        );
        if binds_sip_ports {
            assert_eq!(
                one(&svc, "AmbientCapabilities", path),
                "CAP_NET_BIND_SERVICE",
                "{path}"
            );
            assert_eq!(
                one(&svc, "CapabilityBoundingSet", path),
                "CAP_NET_BIND_SERVICE",
                "{path}"
            );
        } else {
            assert!(
                !svc.contains_key("AmbientCapabilities"),
                "{path}: no capability needed"
            );
            assert_eq!(
                one(&svc, "CapabilityBoundingSet", path),
                "",
                "{path}: empty bounding set"
            );
        }
        // The example config the unit expects, once its crate ships one.
        let toml = exec.rsplit('/').next().unwrap_or_default();
        let example = deploy().join(toml.replace(".toml", ".example.toml"));
        if !example.exists() {
            eprintln!("note: {} not in deploy/ yet", example.display());
        }
    }
    let lb = service("systemd/sipedge-lb.service");
    assert_eq!(
        one(&lb, "ExecReload", "lb"),
        "/bin/kill -HUP $MAINPID",
        "LB reloads TLS on SIGHUP"
    );
    assert_eq!(one(&lb, "StateDirectory", "lb"), "sipedge-lb");
    let check = service("bird/sipedge-anycast-check.service");
    assert_eq!(one(&check, "CapabilityBoundingSet", "check"), "");
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let Some(sa) = tool("systemd-analyze", "SIPEDGE_REQUIRE_SYSTEMD") else {
        return;
    };
    for path in UNITS {
        let out = run(Command::new(&sa)
            .args(["verify", "--man=no"])
            .arg(deploy().join(path)));
        // The binaries are not installed on a build machine; anything else is a finding.
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let findings: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("is not executable: No such file"))
            .collect();
        assert!(
            findings.is_empty(),
            "systemd-analyze verify {path}:\n{}",
            findings.join("\n")
        );
    }
}

// ---------------------------------------------------------------- BIRD

/// bird on PATH, installed with apt when missing and we are root (once per
/// process); `None` (a skip) when it cannot be had.
fn bird() -> Option<(PathBuf, PathBuf)> {
    static INSTALL: Mutex<bool> = Mutex::new(false);
    let mut tried = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let have = || {
        let b = ["/usr/sbin/bird", "/usr/bin/bird"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        let c = ["/usr/sbin/birdc", "/usr/bin/birdc"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        b.zip(c)
    };
    if have().is_none() && !*tried {
        *tried = true;
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if root && Path::new("/usr/bin/apt-get").exists() {
            eprintln!("bird missing: apt-get install -y bird2");
            let _ = Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", "bird2"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status();
        }
    }
    let found = have();
    if found.is_none() {
        assert!(
            std::env::var("SIPEDGE_REQUIRE_BIRD").as_deref() != Ok("1"),
            "bird not installed and SIPEDGE_REQUIRE_BIRD=1"
        );
        eprintln!("skipped: bird (Debian bird2) not installed (set SIPEDGE_REQUIRE_BIRD=1 to fail instead)");
    }
    found
}

#[test]
fn bird_parses_the_site_config() {
    let conf = deploy().join("bird").join("bird-lb-site.conf");
    let text = read(&conf);
    // Only the VIP leaves the box, and nothing is announced before the check runs.
    assert!(
        text.contains("export filter only_vip4"),
        "IPv4 export filter"
    );
    assert!(
        text.contains("export filter only_vip6"),
        "IPv6 export filter"
    );
    assert_eq!(
        text.matches("\tdisabled;").count(),
        2,
        "vip4/vip6 start disabled"
    );
    let Some((bird, _)) = bird() else {
        return;
    };
    let out = run(Command::new(bird).arg("-p").arg("-c").arg(&conf));
    assert_ok(&out, "bird -p -c bird-lb-site.conf");
}

// ---------------------------------------------------------------- anycast check

/// A tiny HTTP server standing in for the LB's `/readyz`: answers with the
/// next status from `script`, then with `status`.
struct Readyz {
    addr: SocketAddr,
    script: Arc<Mutex<VecDeque<u16>>>,
    status: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
}

impl Readyz {
    fn start(script: &[u16], status: u16) -> Readyz {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let r = Readyz {
            addr,
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            status: Arc::new(AtomicU16::new(status)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (script, status, stop) = (r.script.clone(), r.status.clone(), r.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let code = script
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pop_front()
                    .unwrap_or_else(|| status.load(Ordering::Relaxed));
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        r
    }

    fn url(&self) -> String {
        format!("http://{}/readyz", self.addr)
    }
}

impl Drop for Readyz {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn python3() -> Option<PathBuf> {
    tool("python3", "SIPEDGE_REQUIRE_PYTHON")
}

fn check_script() -> PathBuf {
    deploy().join("bird").join("sipedge-anycast-check")
}

/// The check's output lines, read on a thread so waits have deadlines.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                seen.push(l.clone());
                if l.contains(needle) {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {needle:?}; got:\n{}", seen.join("\n"));
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the check did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Hysteresis and the birdc calls, against a fake birdc that logs its
/// arguments: withdrawn at start, announce after 2 successes, withdraw after
/// 3 failures, announce again, withdraw on exit.
#[test]
fn anycast_check_announces_and_withdraws_with_hysteresis() {
    let Some(py) = python3() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("birdc.log");
    let fake = dir.path().join("birdc");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\necho \"$2: ok\"\n",
            log.display()
        ),
    )
    .expect("write fake birdc");
    let out = run(Command::new("chmod").arg("+x").arg(&fake));
    assert_ok(&out, "chmod");

    // A failure resets the success count; three failures in a row withdraw.
    let srv = Readyz::start(&[200, 503, 200, 200, 503, 503, 503, 200, 200], 503);
    let mut child = Command::new(py)
        .arg(check_script())
        .args(["--url", &srv.url(), "--interval", "0.02", "--timeout", "2"])
        .args(["--fail-after", "3", "--ok-after", "2", "--reassert", "3600"])
        .args(["--max-polls", "9", "--birdc"])
        .arg(&fake)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the check");
    let rx = lines_of(&mut child);
    let status = wait_exit(&mut child);
    let output: Vec<String> = rx.try_iter().collect();
    assert!(status.success(), "exit {status}:\n{}", output.join("\n"));
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    let want = [
        "disable vip4",
        "disable vip6", // start withdrawn
        "enable vip4",
        "enable vip6", // polls 3-4 ok
        "disable vip4",
        "disable vip6", // polls 5-7 fail
        "enable vip4",
        "enable vip6", // polls 8-9 ok
        "disable vip4",
        "disable vip6", // exit withdraws
    ];
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        want,
        "output:\n{}",
        output.join("\n")
    );
}

/// The same against a real BIRD on a private control socket: the VIP route
/// appears when /readyz is 200, goes when it fails, and goes when the check
/// is stopped with SIGTERM. No BGP: only the static protocol is exercised.
#[test]
fn anycast_check_drives_a_real_bird() {
    let Some(py) = python3() else {
        return;
    };
    let Some((bird, birdc)) = bird() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("bird.conf");
    let sock = dir.path().join("bird.ctl");
    std::fs::write(
        &conf,
        "router id 192.0.2.11;\n\
         protocol device { scan time 10; }\n\
         protocol static vip4 { disabled; ipv4; route 203.0.113.10/32 blackhole; }\n",
    )
    .expect("write bird.conf");
    let daemon = Command::new(&bird)
        .arg("-f")
        .arg("-c")
        .arg(&conf)
        .arg("-s")
        .arg(&sock)
        .arg("-P")
        .arg(dir.path().join("bird.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bird");
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let routes = |birdc: &Path| {
        let out = run(Command::new(birdc)
            .arg("-s")
            .arg(&sock)
            .args(["show", "route"]));
        String::from_utf8_lossy(&out.stdout).contains("203.0.113.10/32")
    };
    let mut daemon = KillOnDrop(daemon);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !run(Command::new(&birdc)
        .arg("-s")
        .arg(&sock)
        .args(["show", "status"]))
    .status
    .success()
    {
        if let Some(st) = daemon.0.try_wait().expect("try_wait") {
            panic!("bird exited: {st}");
        }
        assert!(Instant::now() < deadline, "bird did not open its socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!routes(&birdc), "the VIP starts withdrawn");

    let srv = Readyz::start(&[], 200);
    let mut child = Command::new(py)
        .arg(check_script())
        .args(["--url", &srv.url(), "--interval", "0.05", "--timeout", "2"])
        .args([
            "--fail-after",
            "2",
            "--ok-after",
            "2",
            "--protocols",
            "vip4",
        ])
        .arg("--birdc")
        .arg(&birdc)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the check");
    let rx = lines_of(&mut child);
    let mut check = KillOnDrop(child);
    let mut seen = Vec::new();
    wait_line(&rx, "VIP announced", &mut seen);
    assert!(routes(&birdc), "announced after /readyz 200");
    srv.status.store(503, Ordering::Relaxed);
    wait_line(&rx, "VIP withdrawn", &mut seen);
    assert!(!routes(&birdc), "withdrawn after /readyz 503");
    srv.status.store(200, Ordering::Relaxed);
    wait_line(&rx, "VIP announced", &mut seen);
    assert!(routes(&birdc), "announced again");

    let pid = check.0.id().to_string();
    assert_ok(
        &run(Command::new("kill").args(["-TERM", &pid])),
        "kill -TERM",
    );
    let status = wait_exit(&mut check.0);
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(!routes(&birdc), "withdrawn when the check stops");
}
