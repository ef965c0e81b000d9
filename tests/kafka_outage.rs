//! With the broker stopped, a valid batch gets 503 + Retry-After; after the restart the drone's
//! retry of the same batch is accepted (not refused as "ts not increasing") and lands exactly
//! once, through a store group that kept running across the outage. This test stops the shared local broker, so it must run alone:
//! `cargo test --workspace -- --skip kafka_outage`, then `cargo test --test kafka_outage`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{spawn_app_with, IngestOptions};
use reqwest::StatusCode;
use serde_json::json;
use testkit::{packets_from, past_ms};

fn stack(command: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/stack.sh");
    let status = Command::new("bash").arg(&script).arg(command).status().expect("run deploy/local/stack.sh");
    assert!(status.success(), "stack.sh {command} failed");
}

/// Restarts the broker even when the test fails half-way, so later tests find it up.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        stack("start-kafka");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outage_gives_503_and_the_retried_batch_lands_exactly_once() {
    // Production's ordering (Redis) so the reservation's release on failure is what is tested.
    let options = IngestOptions { redis: true, ack_timeout: Duration::from_secs(3), ..Default::default() };
    let app = spawn_app_with(options).await;
    let (drone_id, key) = app.create_drone("outage").await;
    let t = past_ms();
    // The producer is connected and warm before the outage.
    assert_eq!(app.post_telemetry(&key, &json!(packets_from(t, 10))).await.status(), StatusCode::CREATED);
    // The store group runs through the outage: a broker that goes away must not stop it.
    let store = app.start_store("outage", 1000).await;
    app.wait_for_rows(10, Duration::from_secs(60)).await;

    let restart = RestartOnDrop;
    stack("stop-kafka");
    let batch = json!(packets_from(t + 1000, 200));
    let response = app.post_telemetry(&key, &batch).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{}", response.text().await.unwrap());
    assert!(response.headers().contains_key("retry-after"));
    drop(restart);

    // The drone retries the same batch until it is acknowledged (the broker needs some seconds).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let response = app.post_telemetry(&key, &batch).await;
        match response.status() {
            StatusCode::CREATED => break,
            StatusCode::SERVICE_UNAVAILABLE => {}
            other => panic!("retry refused with {other}: {}", response.text().await.unwrap()),
        }
        assert!(Instant::now() < deadline, "the retried batch was not accepted within 120 s of the restart");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    app.wait_for_rows(210, Duration::from_secs(120)).await;
    assert!(!store.handle.is_finished(), "the store group stopped during the broker outage");
    store.stop().await;
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT ts) FROM telemetry_raw WHERE drone_id = $1")
        .bind(drone_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(distinct, 210);
    app.cleanup().await;
}
