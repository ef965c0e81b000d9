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

/// An instance killed with `kill -9` mid-append leaves its reservation behind: it blocks the
/// drone only for the lease (2 s), not for an ack timeout, so the drone's retries get through
/// before its flight would be split by silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_reservation_lapses_within_the_lease() {
    let options = IngestOptions { redis: true, ..Default::default() };
    let app = spawn_app_with(options).await;
    let (drone_id, key) = app.create_drone("dead-holder").await;
    let mut redis = testkit::env::redis_client().get_multiplexed_async_connection().await.unwrap();
    let lease_ms = ingest::order::RESERVATION_LEASE.as_millis() as u64;
    let _: () = redis::cmd("SET")
        .arg(ingest::order::reservation_key(drone_id))
        .arg("an-instance-killed-mid-append")
        .arg("PX")
        .arg(lease_ms)
        .query_async(&mut redis)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let t = past_ms();
    let first = app.post_telemetry(&key, &json!(packets_from(t, 5))).await;
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE, "the reservation is still held");
    let accepted_after = loop {
        let response = app.post_telemetry(&key, &json!(packets_from(t, 5))).await;
        match response.status() {
            StatusCode::CREATED => break started.elapsed(),
            StatusCode::SERVICE_UNAVAILABLE => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the dead reservation never lapsed");
    };
    assert!(accepted_after.as_millis() as u64 <= lease_ms + 1000, "accepted only after {accepted_after:?}");
    app.cleanup().await;
}

/// A live holder renews its lease while its append runs, however long Kafka takes: a second
/// instance stays refused ("busy") for the whole append, never only for the first 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_append_keeps_its_reservation() {
    let client = testkit::env::redis_client();
    let holder = ingest::TsOrder::with_redis(client.get_connection_manager().await.unwrap());
    let other = ingest::TsOrder::with_redis(client.get_connection_manager().await.unwrap());
    let drone_id = uuid::Uuid::new_v4();
    let turn = holder.begin(drone_id, 1_000).await.unwrap();
    let slow_append = tokio::time::sleep(ingest::order::RESERVATION_LEASE * 2);
    let probe = async {
        // Probe for most of the append (twice the lease), never past its end.
        let until =
            std::time::Instant::now() + ingest::order::RESERVATION_LEASE * 2 - std::time::Duration::from_millis(300);
        let mut refused = 0;
        while std::time::Instant::now() < until {
            match other.begin(drone_id, 2_000).await {
                Err(ingest::order::OrderError::Busy) => refused += 1,
                Err(error) => panic!("unexpected {error}"),
                Ok(_) => return Err(refused),
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        Ok(refused)
    };
    let ((), probed) = tokio::join!(turn.hold(slow_append), probe);
    assert!(probed.is_ok_and(|refused| refused >= 10), "the lease lapsed mid-append: {probed:?}");
    turn.commit(1_500).await;
    // Released on commit: the other instance may append at once.
    let next = other.begin(drone_id, 2_000).await.expect("free after commit");
    next.commit(2_000).await;
}
