//! Every LB example config in `deploy/` parses and validates, and an unknown
//! key injected anywhere in it is refused with an error naming the key and the file.

use std::path::{Path, PathBuf};

use sipedge_lb::config::{LbConfig, DEFAULT_CONFIG, DEFAULT_CONFIG_PATH};

const BOGUS: &str = "zz_not_a_real_key";

fn examples() -> Vec<PathBuf> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&deploy)
        .expect("deploy/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.contains("lb") && name.ends_with(".toml")
        })
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no deploy/*lb*.toml examples");
    found
}

/// Every place a key can go: `None` is the top level, `Some((table, index))`
/// a table (index for arrays of tables).
fn places(doc: &toml::Table) -> Vec<Option<(String, Option<usize>)>> {
    let mut v = vec![None];
    for (k, val) in doc {
        match val {
            toml::Value::Table(_) => v.push(Some((k.clone(), None))),
            toml::Value::Array(a) if a.iter().all(toml::Value::is_table) => {
                v.extend((0..a.len()).map(|i| Some((k.clone(), Some(i)))));
            }
            _ => {}
        }
    }
    v
}

fn inject(doc: &toml::Table, place: &Option<(String, Option<usize>)>) -> String {
    let mut doc = doc.clone();
    let bogus = toml::Value::Integer(1);
    let table = match place {
        None => &mut doc,
        Some((k, None)) => doc[k].as_table_mut().expect("table"),
        Some((k, Some(i))) => doc[k].as_array_mut().expect("array")[*i]
            .as_table_mut()
            .expect("table"),
    };
    table.insert(BOGUS.into(), bogus);
    toml::to_string(&doc).expect("serialises")
}

fn check(path: &Path, text: &str) -> usize {
    LbConfig::parse(path, text).unwrap_or_else(|e| panic!("{e}"));
    let doc: toml::Table = toml::from_str(text).expect("TOML");
    let places = places(&doc);
    for place in &places {
        let err = LbConfig::parse(path, &inject(&doc, place))
            .expect_err("an unknown key must be refused")
            .to_string();
        assert!(err.contains(BOGUS), "{place:?}: {err}");
        assert!(
            err.contains(&path.display().to_string()),
            "{place:?}: {err}"
        );
    }
    places.len()
}

#[test]
fn deploy_examples_parse_and_refuse_unknown_keys() {
    for path in examples() {
        let text = std::fs::read_to_string(&path).expect("readable");
        let n = check(&path, &text);
        // Top level plus at least listen, tls, flow, admin, proxies.
        assert!(n >= 6, "{}: only {n} places checked", path.display());
        println!("{}: {n} places", path.display());
    }
}

#[test]
fn embedded_default_refuses_unknown_keys() {
    let n = check(Path::new(DEFAULT_CONFIG_PATH), DEFAULT_CONFIG);
    assert!(n >= 6, "{n}");
}

#[test]
fn example_loads_from_disk() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/lb.example.toml");
    let c = LbConfig::load(&path).expect("valid");
    assert_eq!(c.edge, "fra1");
    assert_eq!(c.flow.keys.len(), 2);
    assert_eq!(c.proxies.len(), 3);
    assert_eq!(c.listen.udp.len(), 2);
    assert_eq!(
        c.carriers.lookup("198.19.1.1".parse().expect("ip")),
        "globex"
    );
}
