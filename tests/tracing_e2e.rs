//! One packet followed through the real Jaeger of the local stack (`deploy/local/stack.sh up`
//! starts it): a batch POSTed with a known `traceparent` closes a flight; once its metrics are in
//! PostgreSQL, Jaeger's HTTP API (`/api/traces/{trace_id}`) must hold the whole chain — the
//! ingest request (auth, validate, append, the wait for Kafka's ack), the store, live and
//! sessionizer batches, the flight's close, and analytics (watermark wait, load, compute, write)
//! continuing that trace — with each span the child of the one before it. Once with every role
//! in one `flightline all`, once with every role its own process (each its own service name).

mod observed;

use std::collections::HashMap;
use std::time::Duration;

use observed::{free_addr, Setup};
use serde_json::Value;
use uuid::Uuid;

const JAEGER: &str = "http://127.0.0.1:16686";
const OTLP: &str = "http://127.0.0.1:4318";
/// Export as soon as possible (the default batch delay is 5 s).
const TRACED: &[(&str, &str)] = &[("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP), ("OTEL_BSP_SCHEDULE_DELAY", "200")];

async fn traced_setup() -> Setup {
    let jaeger = reqwest::get(format!("{JAEGER}/api/services")).await;
    assert!(
        jaeger.is_ok_and(|r| r.status().is_success()),
        "Jaeger does not answer on {JAEGER}: start it with `deploy/local/stack.sh up` (or `jaeger-up`)"
    );
    Setup::new().await
}

/// POSTs the flight with a sampled `traceparent` of a new trace; returns the trace id and the
/// span id the request named as its parent.
async fn post_traced_flight(setup: &Setup, api_key: &str) -> (String, String) {
    let trace_id = Uuid::new_v4().simple().to_string();
    let parent = Uuid::new_v4().simple().to_string()[..16].to_owned();
    let response = setup.post_flight(api_key, Some(&format!("00-{trace_id}-{parent}-01"))).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
    (trace_id, parent)
}

/// A span of the trace as Jaeger's API gives it.
#[derive(Debug, Clone)]
struct Span {
    id: String,
    name: String,
    service: String,
    /// The span id of its parent (`CHILD_OF` reference), if any.
    parent: Option<String>,
}

/// Every span name the chain needs, in the order of the data.
const CHAIN: &[&str] = &[
    "ingest.request",
    "ingest.auth",
    "ingest.validate",
    "ingest.append",
    "kafka.ack_wait",
    "store batch",
    "live batch",
    "sessionizer batch",
    "sessionizer.flight_closed",
    "analytics.flight",
    "analytics.watermark_wait",
    "analytics.load",
    "analytics.compute",
    "analytics.write",
];

/// Polls `/api/traces/{trace_id}` until every span of [`CHAIN`] is in it.
async fn trace_spans(trace_id: &str) -> Vec<Span> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let spans = fetch_trace(trace_id).await;
        let missing: Vec<&str> = CHAIN.iter().copied().filter(|name| !spans.iter().any(|s| s.name == *name)).collect();
        if missing.is_empty() {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "trace {trace_id} lacks {missing:?}; it has {:?}",
            spans.iter().map(|s| (&s.service, &s.name)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn fetch_trace(trace_id: &str) -> Vec<Span> {
    let Ok(response) = reqwest::get(format!("{JAEGER}/api/traces/{trace_id}")).await else { return Vec::new() };
    if !response.status().is_success() {
        return Vec::new(); // 404 until the first span is in
    }
    let body: Value = response.json().await.expect("Jaeger answers JSON");
    let Some(trace) = body["data"].as_array().and_then(|data| data.first()) else { return Vec::new() };
    let services: HashMap<&str, &str> = trace["processes"]
        .as_object()
        .map(|processes| {
            processes.iter().map(|(id, p)| (id.as_str(), p["serviceName"].as_str().unwrap_or_default())).collect()
        })
        .unwrap_or_default();
    trace["spans"]
        .as_array()
        .map(|spans| {
            spans
                .iter()
                .map(|span| Span {
                    id: span["spanID"].as_str().unwrap_or_default().to_owned(),
                    name: span["operationName"].as_str().unwrap_or_default().to_owned(),
                    service: services
                        .get(span["processID"].as_str().unwrap_or_default())
                        .copied()
                        .unwrap_or_default()
                        .to_owned(),
                    parent: span["references"].as_array().and_then(|refs| {
                        refs.iter()
                            .find(|r| r["refType"] == "CHILD_OF" && r["traceID"].as_str() == span["traceID"].as_str())
                            .and_then(|r| r["spanID"].as_str())
                            .map(str::to_owned)
                    }),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts the chain: every span the child of the one the data came through.
fn assert_chain(spans: &[Span], incoming_parent: &str, services: &HashMap<&str, &str>) {
    let one =
        |name: &str| -> &Span { spans.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no span {name}")) };
    let all = |name: &str| -> Vec<&Span> { spans.iter().filter(|s| s.name == name).collect() };
    let child_of = |name: &str, parent: &Span| {
        let children = all(name);
        assert!(
            children.iter().any(|s| s.parent.as_deref() == Some(parent.id.as_str())),
            "no {name} span is a child of {} ({}): {children:?}",
            parent.name,
            parent.id
        );
    };
    let request = one("ingest.request");
    assert_eq!(request.parent.as_deref(), Some(incoming_parent), "the request continues the drone's traceparent");
    child_of("ingest.auth", request);
    child_of("ingest.validate", request);
    child_of("ingest.append", request);
    let append = one("ingest.append");
    child_of("kafka.ack_wait", append);
    // The consumers continue from the context the messages carry: the append span's.
    child_of("store batch", append);
    child_of("live batch", append);
    child_of("sessionizer batch", append);
    child_of("sessionizer.flight_closed", append);
    let closed = one("sessionizer.flight_closed");
    child_of("analytics.flight", closed);
    let analysis = all("analytics.flight")
        .into_iter()
        .find(|s| s.parent.as_deref() == Some(closed.id.as_str()))
        .expect("analytics continues the close");
    for step in ["analytics.watermark_wait", "analytics.load", "analytics.compute", "analytics.write"] {
        let found = spans.iter().any(|s| {
            s.name == step
                && (s.parent.as_deref() == Some(analysis.id.as_str())
                    || spans.iter().any(|p| {
                        Some(p.id.as_str()) == s.parent.as_deref() && p.parent.as_deref() == Some(analysis.id.as_str())
                    }))
        });
        assert!(found, "{step} is not under analytics.flight");
    }
    for (name, service) in services {
        assert_eq!(one(name).service, *service, "service of {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_packet_is_followed_through_flightline_all() {
    let mut setup = traced_setup().await;
    let log = std::env::temp_dir().join(format!("tracing_e2e_{}.log", Uuid::new_v4().simple()));
    let env = [TRACED, &[("RUST_LOG", "warn,processors=info")]].concat();
    setup.spawn(&["all"], &env, Some(&log));
    setup.wait_ready().await;
    let (drone_id, api_key) = setup.drone("traced").await;
    let (trace_id, parent) = post_traced_flight(&setup, &api_key).await;
    setup.wait_for_metrics(drone_id).await;
    let spans = trace_spans(&trace_id).await;
    let services = HashMap::from([("ingest.request", "flightline"), ("analytics.write", "flightline")]);
    assert_chain(&spans, &parent, &services);
    // A log line written inside a span names its trace.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.lines().any(|line| line.contains("flight analysed") && line.ends_with(&format!("trace_id={trace_id}"))),
        "no 'flight analysed' line with trace_id={trace_id} in:\n{logged}"
    );
    let _ = std::fs::remove_file(&log);
    setup.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_packet_is_followed_across_role_processes() {
    let mut setup = traced_setup().await;
    setup.spawn(&["ingest"], TRACED, None);
    for group in ["store", "live", "sessionizer", "analytics"] {
        let metrics_addr = free_addr();
        let env = [TRACED, &[("FLIGHTLINE_METRICS_ADDR", metrics_addr.as_str())]].concat();
        setup.spawn(&["process", group], &env, None);
    }
    setup.wait_ready().await;
    let (drone_id, api_key) = setup.drone("traced").await;
    let (trace_id, parent) = post_traced_flight(&setup, &api_key).await;
    setup.wait_for_metrics(drone_id).await;
    let spans = trace_spans(&trace_id).await;
    let services = HashMap::from([
        ("ingest.request", "flightline-ingest"),
        ("store batch", "flightline-store"),
        ("live batch", "flightline-live"),
        ("sessionizer batch", "flightline-sessionizer"),
        ("sessionizer.flight_closed", "flightline-sessionizer"),
        ("analytics.write", "flightline-analytics"),
    ]);
    assert_chain(&spans, &parent, &services);
    setup.finish().await;
}

/// A collector that does not answer, or an endpoint that is no URL, costs ingest nothing: it
/// starts, and acknowledges batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_endpoint_does_not_stop_ingest() {
    for endpoint in ["http://127.0.0.1:9", "::not a url"] {
        let mut setup = Setup::new().await;
        let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint), ("OTEL_TRACES_SAMPLER", "always_on")];
        setup.spawn(&["ingest"], &env, None);
        setup.wait_ready().await;
        let (_, api_key) = setup.drone("untraced").await;
        let response = setup.post_flight(&api_key, None).await;
        assert_eq!(response.status(), 201, "endpoint {endpoint}");
        setup.assert_running();
        setup.finish().await;
    }
}
