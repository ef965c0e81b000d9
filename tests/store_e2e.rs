//! Foundation end to end: packets POSTed to ingest land in Kafka and in PostgreSQL exactly once,
//! against the real local Kafka, PostgreSQL and Redis.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{spawn_app, TestApp};
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

/// A packet with a varying selection of optional fields, so absence is tested as well.
fn packet(ts: DateTime<Utc>, i: usize) -> Value {
    let mut p = json!({
        "ts": ts.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        "throttle": (i % 100) as f64 / 100.0,
    });
    if i % 2 == 0 {
        p["voltage"] = json!(22.0 + (i % 7) as f64 * 0.125);
        p["current"] = json!(-3.5 + (i % 11) as f64 * 1.75);
        p["mah_drawn"] = json!(i * 3);
        p["rssi"] = json!(-90 + (i % 50) as i64);
    }
    if i % 3 == 0 {
        p["position"] = json!([i as f64 * 0.5, -(i as f64) * 0.25, 10.0 + i as f64 * 0.01]);
        p["velocity"] = json!([1.5, -0.5, 0.125]);
    }
    if i % 5 != 1 {
        p["gps"] = json!({"lat": 47.397742 + i as f64 * 1e-6, "lon": 8.545594, "alt_m": 488.1});
        p["attitude"] = json!([2.5, -8.1, -179.5 + (i % 360) as f64]);
    }
    if i % 4 == 0 {
        p["extra"] = json!({"mode": "loiter", "sats": 14, "armed": true, "hdop": 0.75});
    }
    p
}

fn packets(start: DateTime<Utc>, from: usize, count: usize) -> Vec<Value> {
    (from..from + count).map(|i| packet(start + chrono::Duration::milliseconds(20 * i as i64), i)).collect()
}

fn ts_us(packet: &Value) -> i64 {
    match &packet["ts"] {
        Value::String(s) => DateTime::parse_from_rfc3339(s).expect("rfc3339").timestamp_micros(),
        Value::Number(n) => n.as_i64().expect("ms") * 1000,
        other => panic!("bad ts {other}"),
    }
}

fn opt_f64(value: &Value) -> Option<f64> {
    value.as_f64()
}

/// Compares a stored row with the packet that was sent, field by field.
fn assert_row_matches(row: &sqlx::postgres::PgRow, drone_id: Uuid, packet: &Value) {
    let context = format!("packet {packet}");
    assert_eq!(row.get::<Uuid, _>("drone_id"), drone_id, "{context}");
    assert_eq!(row.get::<DateTime<Utc>, _>("ts").timestamp_micros(), ts_us(packet), "{context}");
    assert_eq!(row.get::<f64, _>("throttle"), packet["throttle"].as_f64().unwrap(), "{context}");
    for field in ["voltage", "current"] {
        assert_eq!(row.get::<Option<f64>, _>(field), opt_f64(&packet[field]), "{field} of {context}");
    }
    assert_eq!(row.get::<Option<i64>, _>("mah_drawn"), packet["mah_drawn"].as_i64(), "{context}");
    assert_eq!(row.get::<Option<i32>, _>("rssi").map(i64::from), packet["rssi"].as_i64(), "{context}");
    for (array, columns) in
        [("position", ["x", "y", "z"]), ("velocity", ["vx", "vy", "vz"]), ("attitude", ["roll", "pitch", "yaw"])]
    {
        for (i, column) in columns.iter().enumerate() {
            assert_eq!(row.get::<Option<f64>, _>(*column), opt_f64(&packet[array][i]), "{column} of {context}");
        }
    }
    for field in ["lat", "lon", "alt_m"] {
        assert_eq!(row.get::<Option<f64>, _>(field), opt_f64(&packet["gps"][field]), "{field} of {context}");
    }
    let extra: Option<Value> = row.get("extra");
    match packet.get("extra") {
        Some(sent) => assert_eq!(extra.as_ref(), Some(sent), "{context}"),
        None => assert!(extra.is_none(), "{context}"),
    }
}

async fn rows_of(app: &TestApp, drone_id: Uuid) -> Vec<sqlx::postgres::PgRow> {
    sqlx::query("SELECT * FROM telemetry_raw WHERE drone_id = $1 ORDER BY ts")
        .bind(drone_id)
        .fetch_all(&app.pool)
        .await
        .expect("rows")
}

async fn stored_offsets(app: &TestApp, group: &str) -> Vec<(i32, i64)> {
    sqlx::query_as(
        "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2 ORDER BY partition",
    )
    .bind(group)
    .bind(&app.topic)
    .fetch_all(&app.pool)
    .await
    .expect("offsets")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_from_several_drones_are_stored_exactly_once_field_by_field() {
    let app = spawn_app().await;
    let start = Utc::now() - chrono::Duration::minutes(5);
    let mut sent = Vec::new();
    for d in 0..3 {
        let (drone_id, key) = app.create_drone(&format!("drone-{d}")).await;
        let mut all = Vec::new();
        for batch in 0..5 {
            let body = packets(start, batch * 40, 40);
            let response = app.post_telemetry(&key, &json!(body)).await;
            assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
            assert_eq!(response.json::<Value>().await.unwrap(), json!({"ingested": 40}));
            all.extend(body);
        }
        sent.push((drone_id, all));
    }
    let store = app.start_store("store-fields", 5000).await;
    app.wait_for_rows(600, WAIT).await;
    for (drone_id, packets) in &sent {
        let rows = rows_of(&app, *drone_id).await;
        assert_eq!(rows.len(), packets.len());
        for (row, packet) in rows.iter().zip(packets) {
            assert_row_matches(row, *drone_id, packet);
        }
    }
    // Every message consumed, and the offsets stored with the rows say so.
    let end: Vec<(i32, i64)> = app.end_offsets(&app.topic).into_iter().filter(|(_, end)| *end > 0).collect();
    assert_eq!(stored_offsets(&app, "store-fields").await, end);
    store.stop().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_aborted_mid_batch_and_restarted_stores_every_packet_once() {
    let app = spawn_app().await;
    let start = Utc::now() - chrono::Duration::minutes(10);
    let mut total = 0;
    for d in 0..4 {
        let (_, key) = app.create_drone(&format!("drone-{d}")).await;
        for batch in 0..10 {
            let response = app.post_telemetry(&key, &json!(packets(start, batch * 100, 100))).await;
            assert_eq!(response.status(), 201);
            total += 100;
        }
    }
    // Small batches, so the crash lands between (and inside) many transactions.
    let store = app.start_store("store-crash", 50).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.row_count().await < total / 4 {
        assert!(tokio::time::Instant::now() < deadline, "store made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    store.abort().await;
    let after_crash = app.row_count().await;
    assert!(after_crash < total, "the crash came too late to test anything ({after_crash} rows)");

    let store = app.start_store("store-crash", 50).await;
    app.wait_for_rows(total, WAIT).await;
    store.stop().await;
    let end: Vec<(i32, i64)> = app.end_offsets(&app.topic).into_iter().filter(|(_, end)| *end > 0).collect();
    assert_eq!(stored_offsets(&app, "store-crash").await, end);

    // A third run of the same group has nothing left to do and changes nothing.
    let store = app.start_store("store-crash", 50).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    store.stop().await;
    assert_eq!(app.row_count().await, total);
    assert_eq!(stored_offsets(&app, "store-crash").await, end);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_message_is_dead_lettered_and_the_partition_moves_on() {
    let app = spawn_app().await;
    let producer: FutureProducer = app.kafka.clone().create().expect("producer");
    let garbage = b"\xc3\x01not avro at all".to_vec();
    for partition in 0..common::PARTITIONS {
        producer
            .send(FutureRecord::<(), _>::to(&app.topic).partition(partition).payload(&garbage), Duration::from_secs(5))
            .await
            .expect("garbage appended");
    }
    let (drone_id, key) = app.create_drone("after-garbage").await;
    let sent = packets(Utc::now() - chrono::Duration::minutes(1), 0, 30);
    assert_eq!(app.post_telemetry(&key, &json!(sent)).await.status(), 201);

    let store = app.start_store("store-dlq", 1000).await;
    app.wait_for_rows(30, WAIT).await;
    store.stop().await;
    for (row, packet) in rows_of(&app, drone_id).await.iter().zip(&sent) {
        assert_row_matches(row, drone_id, packet);
    }

    let mut dead = Vec::new();
    for message in testkit::read_messages(&app.kafka, &app.dlq_topic, common::PARTITIONS as usize, WAIT).await {
        let headers = message.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(message.payload(), Some(&garbage[..]));
        assert!(header("error").is_some_and(|e| !e.is_empty()));
        assert_eq!(header("source.topic").as_deref(), Some(app.topic.as_str()));
        dead.push(header("source.partition").unwrap());
    }
    dead.sort();
    assert_eq!(dead, vec!["0", "1", "2"]);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_flight_streamed_with_flightline_send_matches_the_file() {
    let app = spawn_app().await;
    let (drone_id, key) = app.create_drone("spark404").await;
    let file = testkit::recorded_path("ap_spark404_copter.jsonl.gz");
    let recorded = testkit::read_recorded("ap_spark404_copter.jsonl.gz");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"))
        .args(["send", "--api-key", &key, "--target", &app.url, "--file"])
        .arg(&file)
        .output()
        .await
        .expect("run flightline send");
    assert!(output.status.success(), "send failed: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("send prints JSON");
    assert_eq!(report["packets"], json!(recorded.len()));

    let store = app.start_store("store-recorded", 5000).await;
    app.wait_for_rows(recorded.len() as i64, WAIT).await;
    store.stop().await;
    let rows = rows_of(&app, drone_id).await;
    assert_eq!(rows.len(), recorded.len());
    for (row, packet) in rows.iter().zip(&recorded) {
        assert_row_matches(row, drone_id, packet);
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_requests_reach_neither_kafka_nor_the_database() {
    let app = spawn_app().await;
    let (_, key) = app.create_drone("rejects").await;
    let start = Utc::now() - chrono::Duration::minutes(1);
    let ok = packets(start, 10, 5);
    assert_eq!(app.post_telemetry(&key, &json!(ok)).await.status(), 201);
    let before = app.end_offsets(&app.topic);

    // Unknown key, missing key.
    assert_eq!(app.post_telemetry("fl_000000000000_nope", &json!(ok)).await.status(), 401);
    let response = app.http.post(format!("{}/v1/telemetry", app.url)).json(&json!(ok)).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");
    // Wrong content type.
    let response = app
        .http
        .post(format!("{}/v1/telemetry", app.url))
        .header("x-api-key", &key)
        .header("content-type", "text/plain")
        .body(json!(ok).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // One bad packet among good ones rejects all, with details.
    let mut bad = packets(start, 100, 3);
    bad[1]["throttle"] = json!(1.5);
    let response = app.post_telemetry(&key, &json!(bad)).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["details"][0]["index"], 1);
    assert_eq!(body["details"][0]["field"], "throttle");
    // Not later than what this drone already sent.
    let response = app.post_telemetry(&key, &json!(packets(start, 0, 3))).await;
    assert_eq!(response.status(), 400);
    // Too many packets.
    let response = app.post_telemetry(&key, &json!(packets(start, 1000, 501))).await;
    assert_eq!(response.status(), 413);

    assert_eq!(app.end_offsets(&app.topic), before, "a rejected request reached Kafka");
    // And a valid follow-up still goes through.
    assert_eq!(app.post_telemetry(&key, &json!(packets(start, 200, 2))).await.status(), 201);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packet_that_reached_the_log_twice_is_stored_once() {
    // A drone's retried request can append the same packets again (the first attempt landed but
    // its answer was lost). The store's fast path (COPY) meets the duplicate key and must fall
    // back to the deduplicating insert, storing every packet exactly once.
    let app = spawn_app().await;
    let (drone_id, key) = app.create_drone("retried").await;
    let start = Utc::now() - chrono::Duration::minutes(3);
    let sent = packets(start, 0, 40);
    assert_eq!(app.post_telemetry(&key, &json!(sent)).await.status(), 201);
    // The same records once more, straight into the log as a retried append would put them.
    let duplicates: Vec<_> = sent[10..20].iter().map(|packet| testkit::record_of(drone_id, packet)).collect();
    testkit::append_records(&app.kafka, &app.topic, &duplicates).await;
    let more = packets(start, 40, 20);
    assert_eq!(app.post_telemetry(&key, &json!(more)).await.status(), 201);

    let store = app.start_store("store-duplicates", 5000).await;
    app.wait_for_rows(60, WAIT).await;
    // Every message consumed (duplicates included), nothing stored twice.
    let end: Vec<(i32, i64)> = app.end_offsets(&app.topic).into_iter().filter(|(_, end)| *end > 0).collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while stored_offsets(&app, "store-duplicates").await != end {
        assert!(tokio::time::Instant::now() < deadline, "offsets never reached the end of the log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.stop().await;
    assert_eq!(app.row_count().await, 60);
    for (row, packet) in rows_of(&app, drone_id).await.iter().zip(sent.iter().chain(&more)) {
        assert_row_matches(row, drone_id, packet);
    }
    app.cleanup().await;
}
