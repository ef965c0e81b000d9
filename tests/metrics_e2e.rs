//! `/metrics` of every role, and the Grafana dashboard against it: a deployment that has taken a
//! flight serves, on its `FLIGHTLINE_METRICS_ADDR`, every metric that a query of
//! `deploy/grafana/flightline.json` names; a `flightline process <group>` serves its group's
//! per-partition lag there too.

mod observed;

use std::collections::BTreeSet;
use std::time::Duration;

use observed::{free_addr, Setup, PARTITIONS, WAIT};
use serde_json::Value;

/// Every metric name the dashboard's queries use.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/flightline.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("dashboard JSON");
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("flightline_") {
                let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[at + name.len()..];
                names.insert(name);
            }
        }
    }
    assert!(names.len() >= 10, "the dashboard names too few metrics: {names:?}");
    names
}

/// The metric names (series names) of a Prometheus text exposition.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

async fn scrape(addr: &str) -> Option<String> {
    let response = reqwest::get(format!("http://{addr}/metrics")).await.ok()?;
    assert_eq!(response.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/plain; version=0.0.4"));
    response.text().await.ok()
}

/// Polls `/metrics` until every name is exported.
async fn wait_for_names(addr: &str, wanted: &BTreeSet<String>) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = scrape(addr).await.unwrap_or_default();
        let have = exported(&text);
        let missing: Vec<&String> = wanted.iter().filter(|name| !have.contains(*name)).collect();
        if missing.is_empty() {
            return text;
        }
        assert!(tokio::time::Instant::now() < deadline, "{addr}/metrics lacks {missing:?} after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_names_a_metric_the_deployment_exports() {
    let mut setup = Setup::new().await;
    let metrics = free_addr();
    setup.spawn(&["all"], &[("FLIGHTLINE_METRICS_ADDR", metrics.as_str())], None);
    setup.wait_ready().await;
    let (drone_id, api_key) = setup.drone("metered").await;
    assert_eq!(setup.post_flight(&api_key, None).await.status(), 201);
    assert_eq!(setup.post_flight("not-a-key", None).await.status(), 401);
    setup.wait_for_metrics(drone_id).await;
    let text = wait_for_names(&metrics, &dashboard_metrics()).await;
    // The same registry is on the HTTP address, and it counted the refused key.
    let on_http = scrape(&setup.addr).await.expect("/metrics on the HTTP address");
    assert!(exported(&on_http).contains("flightline_ingest_kafka_ack_seconds"));
    assert!(
        text.lines()
            .any(|l| l.starts_with("flightline_ingest_auth_failures_total{reason=\"unknown_key\"} ")
                && !l.ends_with(" 0")),
        "the 401 is counted"
    );
    setup.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_role_serves_its_lag_per_partition() {
    let mut setup = Setup::new().await;
    let metrics = free_addr();
    setup.spawn(&["process", "live"], &[("FLIGHTLINE_METRICS_ADDR", metrics.as_str())], None);
    let wanted: BTreeSet<String> =
        ["flightline_processor_lag_messages", "flightline_processor_dead_letters_total"].map(String::from).into();
    let text = wait_for_names(&metrics, &wanted).await;
    let partitions: BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("flightline_processor_lag_messages{"))
        .filter_map(|l| l.split("partition=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(partitions.len(), PARTITIONS as usize, "one lag series per partition: {partitions:?}");
    setup.assert_running();
    setup.finish().await;
}
