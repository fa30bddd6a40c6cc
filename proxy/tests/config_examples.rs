//! Every proxy example config in `deploy/` parses and validates, and an
//! unknown key injected in any table of it is refused with an error naming
//! the key and the file. The embedded default is checked the same way.

use std::path::{Path, PathBuf};

use sipedge_proxy::config::{ProxyConfig, DEFAULT_CONFIG, DEFAULT_CONFIG_PATH};

const BOGUS: &str = "zz_not_a_real_key";

fn examples() -> Vec<PathBuf> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&deploy)
        .expect("deploy/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.contains("proxy") && name.ends_with(".toml")
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no deploy/*proxy*.toml examples");
    found
}

/// Every table (nested too), as a path of keys and array indexes.
fn places(t: &toml::Table, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    for (k, v) in t {
        match v {
            toml::Value::Table(inner) => {
                let mut p = prefix.clone();
                p.push(k.clone());
                places(inner, p, out);
            }
            toml::Value::Array(a) if a.iter().all(toml::Value::is_table) => {
                for (i, item) in a.iter().enumerate() {
                    if let toml::Value::Table(inner) = item {
                        let mut p = prefix.clone();
                        p.push(format!("{k}[{i}]"));
                        places(inner, p, out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn table_at<'a>(doc: &'a mut toml::Table, place: &[String]) -> &'a mut toml::Table {
    let mut t = doc;
    for step in place {
        t = match step.split_once('[') {
            Some((k, idx)) => {
                let i: usize = idx.trim_end_matches(']').parse().expect("index");
                t[k].as_array_mut().expect("array")[i]
                    .as_table_mut()
                    .expect("table")
            }
            None => t[step.as_str()].as_table_mut().expect("table"),
        };
    }
    t
}

fn check(path: &Path, text: &str) -> usize {
    ProxyConfig::parse(path, text).unwrap_or_else(|e| panic!("{e}"));
    let doc: toml::Table = toml::from_str(text).expect("TOML");
    let mut all = Vec::new();
    places(&doc, vec![], &mut all);
    for place in &all {
        let mut d = doc.clone();
        table_at(&mut d, place).insert(BOGUS.into(), toml::Value::Integer(1));
        let text = toml::to_string(&d).expect("serialises");
        let err = ProxyConfig::parse(path, &text)
            .expect_err("an unknown key must be refused")
            .to_string();
        assert!(err.contains(BOGUS), "{place:?}: {err}");
        assert!(
            err.contains(&path.display().to_string()),
            "{place:?}: {err}"
        );
    }
    all.len()
}

#[test]
fn deploy_examples_parse_and_refuse_unknown_keys() {
    for path in examples() {
        let text = std::fs::read_to_string(&path).expect("readable");
        let n = check(&path, &text);
        // Top level, listen, registrar, auth, auth.ban, users, 2 gateway
        // groups, timers, cdr, admin.
        assert!(n >= 11, "{}: only {n} places checked", path.display());
    }
}

#[test]
fn embedded_default_parses_and_refuses_unknown_keys() {
    let n = check(Path::new(DEFAULT_CONFIG_PATH), DEFAULT_CONFIG);
    assert!(n >= 4, "only {n} places checked");
}
