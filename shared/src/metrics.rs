//! The process-wide Prometheus recorder (installed once, shared by every server
//! in the process) and the label helpers every binary uses (`edge`, `carrier`).

use std::sync::OnceLock;

use metrics::Label;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets, in seconds, for every metric whose name ends in
/// `_seconds`: 10 µs to 10 s, roughly 1-2.5-5 per decade.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder on the first call and returns its handle;
/// later calls return the same handle, so tests may start many servers in one
/// process. If some other recorder was installed first (not by this
/// function), a detached recorder's handle is returned and a warning logged:
/// its output is then empty, but nothing fails.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            match builder().install_recorder() {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed; /metrics will be empty");
                    builder().build_recorder().handle()
                }
            }
        })
        .clone()
}

fn builder() -> PrometheusBuilder {
    let b = PrometheusBuilder::new();
    // Only fails for an empty bucket list, which LATENCY_BUCKETS is not.
    match b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS) {
        Ok(b) => b,
        Err(_) => PrometheusBuilder::new(),
    }
}

/// Renders the current metrics in the Prometheus text format (after draining
/// histogram samples, which the recorder otherwise keeps until rendered).
pub fn render(handle: &PrometheusHandle) -> String {
    handle.run_upkeep();
    handle.render()
}

/// The `edge` label (site or region from config) carried by every metric.
pub fn edge_label(edge: &str) -> Label {
    Label::new("edge", edge.to_owned())
}

/// `edge` plus `extra` labels, for registering a handle:
/// `metrics::counter!("sipedge_lb_requests_total", edge_labels(edge, &[("method", "INVITE")]))`.
pub fn edge_labels(edge: &str, extra: &[(&'static str, &str)]) -> Vec<Label> {
    let mut v = Vec::with_capacity(extra.len() + 1);
    v.push(edge_label(edge));
    v.extend(
        extra
            .iter()
            .map(|(k, val)| Label::new(*k, (*val).to_owned())),
    );
    v
}

/// `edge` and `carrier` (from [`crate::carrier::CarrierMap`]) plus `extra`.
pub fn edge_carrier_labels(
    edge: &str,
    carrier: &str,
    extra: &[(&'static str, &str)],
) -> Vec<Label> {
    let mut v = edge_labels(edge, extra);
    v.insert(1, Label::new("carrier", carrier.to_owned()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_idempotent_and_renders() {
        let a = install();
        let b = install();
        metrics::counter!(
            "sipedge_test_total",
            edge_labels("test-edge", &[("k", "v")])
        )
        .increment(3);
        metrics::histogram!(
            "sipedge_test_latency_seconds",
            edge_labels("test-edge", &[])
        )
        .record(0.000_3);
        let text = render(&a);
        assert!(
            text.contains(r#"sipedge_test_total{edge="test-edge",k="v"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sipedge_test_latency_seconds_bucket{edge="test-edge",le="0.0005"} 1"#),
            "{text}"
        );
        // Both handles read the one recorder (other tests may record in
        // between, so compare a line rather than the whole text).
        let via_b = render(&b);
        assert!(
            via_b.contains(r#"sipedge_test_total{edge="test-edge",k="v"} 3"#),
            "{via_b}"
        );
    }

    #[test]
    fn label_helpers() {
        type Case = (Vec<Label>, &'static [(&'static str, &'static str)]);
        let cases: [Case; 2] = [
            (
                edge_labels("fra", &[("method", "INVITE")]),
                &[("edge", "fra"), ("method", "INVITE")],
            ),
            (
                edge_carrier_labels("fra", "acme", &[("class", "2xx")]),
                &[("edge", "fra"), ("carrier", "acme"), ("class", "2xx")],
            ),
        ];
        for (got, want) in cases {
            let got: Vec<(&str, &str)> = got.iter().map(|l| (l.key(), l.value())).collect();
            assert_eq!(got, want);
        }
    }
}
