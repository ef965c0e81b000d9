//! The operational endpoints of a running `flightline all`: health, readiness, Prometheus
//! metrics, the OpenAPI document and its browsable reader.

mod common;

use common::Deployment;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_openapi_and_docs_are_served() {
    let deployment = Deployment::new().await;
    let child = deployment.start().await;
    let url = deployment.url();
    let http = reqwest::Client::new();

    assert_eq!(http.get(format!("{url}/healthz")).send().await.unwrap().status(), 200);
    let ready: Value = http.get(format!("{url}/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready, serde_json::json!({"kafka": "up", "postgres": "up", "redis": "up"}));

    // A refused request is counted under its route template, never its raw path.
    let refused = http.post(format!("{url}/v1/telemetry")).json(&serde_json::json!([])).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("flightline_http_requests_total{")
            && l.contains(r#"route="/v1/telemetry""#)
            && l.contains(r#"status="401""#)),
        "{text}"
    );

    let document: Value = http.get(format!("{url}/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "{}", document["openapi"]);
    for path in
        ["/v1/telemetry", "/v1/auth/token", "/v1/drones/{id}/live", "/v1/flights/{id}", "/v1/flights/{id}/recompute"]
    {
        assert!(document["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    let docs = http.get(format!("{url}/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("/openapi.json"));

    drop(child);
    deployment.cleanup().await;
}

/// Credentials in URLs (`?access_token=` for EventSource) and API keys never reach the process's
/// log, even at the most verbose level an operator would run (`debug`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_keys_never_appear_in_the_log() {
    let deployment = common::Deployment::new().await;
    let log = std::env::temp_dir().join(format!("flightline-log-{}.txt", uuid::Uuid::new_v4()));
    let child = deployment.start_logged(&[("RUST_LOG", "debug")], Some(&log)).await;
    let api = &deployment.api;
    let user = api.user().await;
    let (drone_id, key) = api.drone(&user, "log-hygiene").await;
    let stream = format!("/v1/drones/{drone_id}/live/stream?access_token={}", user.token);
    let response = api.http.get(api.at(&stream)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let bad = api.http.get(api.at("/v1/live/stream?access_token=not-a-real-token-abcdef")).send().await.unwrap();
    assert_eq!(bad.status(), 401);
    let body = serde_json::json!([testkit::packet_at(testkit::past_ms(), 0.5)]);
    assert_eq!(api.post_telemetry(&key, &body).await.status(), 201);
    assert_eq!(api.post_telemetry("fl_000000000000_wrong", &body).await.status(), 401);
    drop(child);
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.contains("DEBUG") || written.contains("INFO"), "the log was not captured: {written}");
    for secret in [user.token.as_str(), "not-a-real-token-abcdef", key.as_str(), "fl_000000000000_wrong"] {
        assert!(!written.contains(secret), "a credential is in the log");
    }
    let _ = std::fs::remove_file(&log);
    deployment.cleanup().await;
}

/// Unknown paths, wrong methods and a WebSocket route fetched without an upgrade answer with the
/// contract's error body too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_wrong_methods_and_plain_gets_of_the_websocket_get_the_error_body() {
    let deployment = common::Deployment::new().await;
    let child = deployment.start().await;
    let api = &deployment.api;
    let missing = api.http.get(api.at("/v1/no-such-thing")).send().await.unwrap();
    assert_eq!(testkit::assert_error(missing, reqwest::StatusCode::NOT_FOUND).await, "not_found");
    let wrong_method = api.http.delete(api.at("/v1/telemetry")).send().await.unwrap();
    assert_eq!(
        testkit::assert_error(wrong_method, reqwest::StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );
    let plain = api.http.get(api.at("/v1/telemetry/ws")).send().await.unwrap();
    assert_eq!(testkit::assert_error(plain, reqwest::StatusCode::BAD_REQUEST).await, "invalid_body");
    drop(child);
    deployment.cleanup().await;
}
