//! Strictly increasing `ts` per drone across several ingest instances sharing Redis (as
//! production runs them): a batch accepted by one instance makes an overlapping one stale on the
//! other, and instances racing with the same batch accept it once.

mod common;

use common::{spawn_app_with, IngestOptions};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{packet_at, packets_from, past_ms, Api};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_order_holds_across_two_ingest_instances() {
    let options = IngestOptions { redis: true, ..Default::default() };
    let app = spawn_app_with(options.clone()).await;
    let (second_url, second_shutdown) = common::serve_ingest(&app.pool, &app.kafka, &app.topic, &options).await;
    let (first, second) = (Api::clone(&app), Api::new(second_url));
    let (_, key) = app.create_drone("two-instances").await;
    let t = past_ms();
    let post = |api: &Api, body: Value| {
        let (api, key) = (api.clone(), key.clone());
        async move { api.post_telemetry(&key, &body).await }
    };
    assert_eq!(post(&first, json!(packets_from(t, 10))).await.status(), StatusCode::CREATED);
    // The second instance has never seen this drone, yet knows the batch is stale.
    let response = post(&second, json!(packets_from(t + 20, 10))).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["details"][0]["field"], "ts");
    assert!(body["details"][0]["reason"].as_str().unwrap().contains(&schemas::format_ts((t + 45) * 1000)), "{body}");
    assert_eq!(post(&second, json!(packets_from(t + 50, 10))).await.status(), StatusCode::CREATED);
    // And the first instance learns of the second's batch through Redis.
    assert_eq!(post(&first, json!([packet_at(t + 60, 0.5)])).await.status(), StatusCode::BAD_REQUEST);

    // The same batch sent 8 times at once, half to each instance: accepted exactly once; the
    // others are stale (400) or found the other instance appending (503, retry later).
    let batch = json!(packets_from(t + 1000, 100));
    let racing: Vec<_> =
        (0..8).map(|i| tokio::spawn(post(if i % 2 == 0 { &first } else { &second }, batch.clone()))).collect();
    let mut statuses = Vec::new();
    for task in racing {
        statuses.push(task.await.unwrap().status());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| matches!(s.as_u16(), 201 | 400 | 503)), "{statuses:?}");
    assert_eq!(app.messages_in_topic(), 120);
    second_shutdown.cancel();
    app.cleanup().await;
}
