//! One bad packet must never stall the fleet. The API refuses what PostgreSQL cannot store; and
//! should such a record reach the log anyway (an older ingest, a bug), the store group sends it
//! to `telemetry.dlq` with the error and its source, writes every other row of the batch, and
//! moves the partition on, instead of retrying it forever.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::spawn_app;
use rdkafka::message::Headers;
use rdkafka::Message;
use reqwest::StatusCode;
use schemas::ExtraValue;
use serde_json::json;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_extra_is_refused_by_the_api() {
    let app = spawn_app().await;
    let (_, key) = app.create_drone("nul").await;
    let ts = testkit::past_ms();
    let body = json!([{"ts": ts, "throttle": 0.5, "extra": {"m": "a\u{0}b"}}]);
    let error =
        testkit::expect_error(app.post_telemetry(&key, &body).await, StatusCode::BAD_REQUEST, "invalid_packets").await;
    assert_eq!(error["details"][0]["field"], "extra.m", "{error}");
    assert_eq!(app.messages_in_topic(), 0, "a rejected request wrote to the log");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_postgresql_refuses_is_dead_lettered_and_the_partition_moves_on() {
    let app = spawn_app().await;
    let (good, bad) = (Uuid::new_v4(), Uuid::new_v4());
    let start_ms = testkit::past_ms();
    let mut records: Vec<_> = (0..40).map(|i| testkit::full_record(good, start_ms + 20 * i)).collect();
    let mut poison = testkit::full_record(bad, start_ms);
    poison.extra = BTreeMap::from([("m".to_owned(), ExtraValue::String("a\u{0}b".to_owned()))]);
    records.insert(17, poison);
    records.extend((40..80).map(|i| testkit::full_record(good, start_ms + 20 * i)));
    testkit::append_records(&app.kafka, &app.topic, &records).await;

    let store = app.start_store(&format!("store-{}", Uuid::new_v4()), 5000).await;
    app.wait_for_rows(80, WAIT).await;

    let dead = testkit::read_messages(&app.kafka, &app.dlq_topic, 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    let header = |name: &str| -> String {
        let headers = dead[0].headers().expect("dead letter headers");
        let value =
            headers.iter().find(|h| h.key == name).and_then(|h| h.value).unwrap_or_else(|| panic!("no {name} header"));
        String::from_utf8(value.to_vec()).unwrap()
    };
    assert_eq!(header("error.kind"), "rejected");
    assert!(header("error").contains("database"), "{}", header("error"));
    assert_eq!(header("source.topic"), app.topic);
    assert_eq!(dead[0].key(), Some(bad.to_string().as_bytes()));
    let decoded = schemas::decode_telemetry(dead[0].payload().unwrap()).unwrap();
    assert_eq!(decoded.drone_id, bad);

    // The store's offsets moved past every message, so a restart does not meet the poison again.
    let stored: BTreeMap<i32, i64> =
        sqlx::query_as::<_, (i32, i64)>("SELECT partition, next_offset FROM consumer_offsets WHERE topic = $1")
            .bind(&app.topic)
            .fetch_all(&app.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for (partition, end) in app.end_offsets(&app.topic) {
        if end > 0 {
            assert_eq!(stored.get(&partition), Some(&end), "partition {partition}");
        }
    }
    let bad_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry_raw WHERE drone_id = $1")
        .bind(bad)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(bad_rows, 0);
    store.stop().await;
    app.cleanup().await;
}
