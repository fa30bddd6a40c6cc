//! PromQL expressions of the deployment kit: the `expr:` values of rules files
//! and the panel targets of Grafana dashboards, for the deploy and live tests.

use std::path::Path;

use serde_json::Value;

/// One PromQL expression and where it came from, for messages.
#[derive(Debug)]
pub struct Expr {
    /// File and place (rule line, or panel and refId).
    pub origin: String,
    /// The PromQL text.
    pub expr: String,
}

/// The `expr:` values and `record:`/`alert:` names of a Prometheus rules file.
/// A line-based reader for the subset of YAML rule files use: inline values
/// (plain or quoted) and block scalars (`|`, `>`, `|-`, `>-`).
#[derive(Debug, Default)]
pub struct RulesFile {
    /// Every `expr:`, recording and alerting rules alike, in file order.
    pub exprs: Vec<Expr>,
    /// The `record:` names.
    pub records: Vec<String>,
    /// The `alert:` names.
    pub alerts: Vec<String>,
}

/// A YAML scalar without its surrounding quotes.
pub fn unquote(v: &str) -> String {
    let v = v.trim();
    if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

/// Reads the rules file at `path` (its text `text`, already read).
pub fn parse_rules(path: &Path, text: &str) -> RulesFile {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = RulesFile::default();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let body = line.trim_start().trim_start_matches("- ");
        let indent = line.len() - line.trim_start().len();
        i += 1;
        if let Some(v) = body.strip_prefix("record:") {
            out.records.push(unquote(v));
        } else if let Some(v) = body.strip_prefix("alert:") {
            out.alerts.push(unquote(v));
        } else if let Some(v) = body.strip_prefix("expr:") {
            let v = v.trim();
            let expr = if v.starts_with('|') || v.starts_with('>') {
                let mut block = Vec::new();
                while i < lines.len() {
                    let l = lines[i];
                    let li = l.len() - l.trim_start().len();
                    if !l.trim().is_empty() && li <= indent {
                        break;
                    }
                    block.push(l.trim());
                    i += 1;
                }
                block.join(" ")
            } else {
                unquote(v)
            };
            out.exprs.push(Expr {
                origin: format!("{}:{}", path.display(), i),
                expr: expr.trim().to_string(),
            });
        }
    }
    out
}

/// Every panel of a dashboard, rows' nested panels included.
pub fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut todo: Vec<&Value> = dash["panels"].as_array().into_iter().flatten().collect();
    while let Some(p) = todo.pop() {
        todo.extend(p["panels"].as_array().into_iter().flatten());
        out.push(p);
    }
    out
}

/// Every target expression of a dashboard, with its panel title and refId.
pub fn dashboard_exprs(path: &Path, dash: &Value) -> Vec<Expr> {
    let mut out = Vec::new();
    for p in panels(dash) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Expr {
                origin: format!(
                    "{} panel {:?} ref {}",
                    path.display(),
                    p["title"],
                    t["refId"]
                ),
                expr: t["expr"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    out
}
