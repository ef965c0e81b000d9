//! POST /v1/telemetry against the real stack: every rule of CONTRACT.md §1 and every status code
//! of §2 for the ingest endpoint, with the exact `details`, and what reaches Kafka.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{spawn_app, spawn_app_with, IngestOptions, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{expect_error, full_packet, packet_at, packets_from, past_ms, Api};

async fn post_raw(
    app: &TestApp,
    key: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request =
        app.http.post(app.at("/v1/telemetry")).header("x-api-key", key).header("content-type", content_type);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.body(body).send().await.expect("POST /v1/telemetry")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_packet_rule_is_enforced_with_exact_details_and_nothing_reaches_kafka() {
    let app = spawn_app().await;
    let (_, key) = app.create_drone("rules").await;
    let t = past_ms();
    let ok = |extra: Value| {
        let mut packet = packet_at(t, 0.5);
        for (k, v) in extra.as_object().unwrap() {
            packet[k] = v.clone();
        }
        packet
    };
    let big_extra: serde_json::Map<String, Value> = (0..33).map(|i| (format!("k{i}"), json!(i))).collect();
    let long_extra = json!({ "note": "x".repeat(4100) });
    let future_ms = chrono::Utc::now().timestamp_millis() + 120_000;
    // (packets, expected details as (index, field, reason))
    type Detail<'a> = (usize, &'a str, &'a str);
    let cases: Vec<(Value, Vec<Detail>)> = vec![
        (json!([{ "throttle": 0.5 }]), vec![(0, "ts", "required")]),
        (
            json!([{ "ts": "yesterday", "throttle": 0.5 }]),
            vec![(0, "ts", "must be an rfc 3339 timestamp or integer epoch milliseconds")],
        ),
        (json!([{ "ts": t as f64 + 0.5, "throttle": 0.5 }]), vec![(0, "ts", "epoch milliseconds must be an integer")]),
        (json!([{ "ts": future_ms, "throttle": 0.5 }]), vec![(0, "ts", "more than 60 s in the future")]),
        (
            json!([packet_at(t, 0.1), packet_at(t, 0.2)]),
            vec![(1, "ts", "must be strictly greater than the previous packet's ts")],
        ),
        (json!([{ "ts": t }]), vec![(0, "throttle", "required")]),
        (json!([ok(json!({ "throttle": 1.01 }))]), vec![(0, "throttle", "must be between 0 and 1")]),
        (json!([ok(json!({ "throttle": -0.01 }))]), vec![(0, "throttle", "must be between 0 and 1")]),
        (json!([ok(json!({ "throttle": "full" }))]), vec![(0, "throttle", "must be a number")]),
        (json!([ok(json!({ "voltage": 100.5 }))]), vec![(0, "voltage", "must be between 0 and 100")]),
        (json!([ok(json!({ "voltage": -1 }))]), vec![(0, "voltage", "must be between 0 and 100")]),
        (json!([ok(json!({ "current": -50.5 }))]), vec![(0, "current", "must be between -50 and 1000")]),
        (json!([ok(json!({ "current": 1000.5 }))]), vec![(0, "current", "must be between -50 and 1000")]),
        (json!([ok(json!({ "mah_drawn": -1 }))]), vec![(0, "mah_drawn", "must be at least 0")]),
        (json!([ok(json!({ "mah_drawn": 1.5 }))]), vec![(0, "mah_drawn", "must be an integer")]),
        (json!([ok(json!({ "rssi": -201 }))]), vec![(0, "rssi", "must be between -200 and 1023")]),
        (json!([ok(json!({ "rssi": 1024 }))]), vec![(0, "rssi", "must be between -200 and 1023")]),
        (json!([ok(json!({ "position": [1.0, 2.0] }))]), vec![(0, "position", "must be an array of 3 numbers")]),
        (json!([ok(json!({ "position": [1.0, "a", 3.0] }))]), vec![(0, "position[1]", "must be a number")]),
        (
            json!([ok(json!({ "gps": { "lat": 90.5, "lon": 8.5, "alt_m": 400.0 } }))]),
            vec![(0, "gps.lat", "must be between -90 and 90")],
        ),
        (
            json!([ok(json!({ "gps": { "lat": 47.0, "lon": -180.5, "alt_m": 400.0 } }))]),
            vec![(0, "gps.lon", "must be between -180 and 180")],
        ),
        (json!([ok(json!({ "gps": { "lat": 47.0, "lon": 8.5 } }))]), vec![(0, "gps.alt_m", "required")]),
        (
            json!([ok(json!({ "gps": [47.0, 8.5, 400.0] }))]),
            vec![(0, "gps", "must be an object with lat, lon and alt_m")],
        ),
        (
            json!([ok(json!({ "velocity": [1.0, 2.0, 3.0, 4.0] }))]),
            vec![(0, "velocity", "must be an array of 3 numbers")],
        ),
        (json!([ok(json!({ "attitude": [1.0, 2.0, null] }))]), vec![(0, "attitude[2]", "must be a number")]),
        (json!([ok(json!({ "extra": Value::Object(big_extra) }))]), vec![(0, "extra", "must have at most 32 keys")]),
        (json!([ok(json!({ "extra": long_extra }))]), vec![(0, "extra", "must be at most 4096 bytes as compact json")]),
        (
            json!([ok(json!({ "extra": { "nested": { "a": 1 } } }))]),
            vec![(0, "extra.nested", "must be a string, number or boolean")],
        ),
        (json!([ok(json!({ "drone_id": "someone-else" }))]), vec![(0, "drone_id", "unknown field")]),
        (json!([ok(json!({ "thrttle": 0.5 }))]), vec![(0, "thrttle", "unknown field")]),
        // One bad packet among good ones rejects the whole request, and every problem is listed.
        (
            json!([packet_at(t, 0.1), ok(json!({ "ts": t + 5, "voltage": 101 })), { "ts": t + 10, "throttle": 2 }]),
            vec![(1, "voltage", "must be between 0 and 100"), (2, "throttle", "must be between 0 and 1")],
        ),
    ];
    for (body, expected) in cases {
        let response = app.post_telemetry(&key, &body).await;
        let error = expect_error(response, StatusCode::BAD_REQUEST, "invalid_packets").await;
        let expected: Vec<Value> = expected
            .iter()
            .map(|(index, field, reason)| json!({ "index": index, "field": field, "reason": reason }))
            .collect();
        assert_eq!(error["details"], json!(expected), "for body {body}");
    }
    // Not JSON, NaN/Infinity (not JSON either), not an array, empty.
    for body in [
        &b"[{\"ts\": 1, "[..],
        b"[{\"ts\": 1, \"throttle\": NaN}]",
        b"[{\"ts\": 1, \"throttle\": Infinity}]",
        b"[{\"ts\": 1, \"throttle\": 1e400}]",
    ] {
        let response = post_raw(&app, &key, "application/json", None, body.to_vec()).await;
        expect_error(response, StatusCode::BAD_REQUEST, "invalid_json").await;
    }
    for body in [json!({ "ts": t, "throttle": 0.5 }), json!([])] {
        expect_error(app.post_telemetry(&key, &body).await, StatusCode::BAD_REQUEST, "invalid_body").await;
    }
    assert_eq!(app.messages_in_topic(), 0, "a rejected request reached Kafka");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_batches_get_201_and_land_in_kafka_and_ts_must_increase_across_requests() {
    let app = spawn_app().await;
    let (drone_id, key) = app.create_drone("valid").await;
    let t = past_ms();
    // Every field, RFC 3339 with an offset, and epoch ms, in one batch.
    let mut full = full_packet(t);
    full["ts"] = json!(chrono::DateTime::from_timestamp_millis(t)
        .unwrap()
        .with_timezone(&chrono::FixedOffset::east_opt(7200).unwrap())
        .to_rfc3339());
    let body = json!([full, packet_at(t + 20, 0.0), packet_at(t + 40, 1.0)]);
    let response = app.post_telemetry(&key, &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "ingested": 3 }));
    // The same batch again, or one starting at the newest acknowledged ts, is refused.
    for stale in [body.clone(), json!([packet_at(t + 40, 0.5)])] {
        let error =
            expect_error(app.post_telemetry(&key, &stale).await, StatusCode::BAD_REQUEST, "invalid_packets").await;
        assert_eq!(error["details"][0]["index"], 0);
        assert_eq!(error["details"][0]["field"], "ts");
        let reason = error["details"][0]["reason"].as_str().unwrap();
        assert!(reason.starts_with("must be strictly greater than the drone's previous packet ts"), "{reason}");
        assert!(reason.contains(&schemas::format_ts((t + 40) * 1000)), "{reason}");
    }
    let response = app.post_telemetry(&key, &json!([packet_at(t + 41, 0.5)])).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let records = app.read_topic().await;
    assert_eq!(records.len(), 4);
    let mut ts: Vec<i64> = records.iter().map(|(_, r)| r.ts_us).collect();
    ts.sort();
    assert_eq!(ts, vec![t * 1000, (t + 20) * 1000, (t + 40) * 1000, (t + 41) * 1000]);
    assert!(records.iter().all(|(key, r)| r.drone_id == drone_id && *key == drone_id.to_string()));
    let first = records.iter().find(|(_, r)| r.ts_us == t * 1000).unwrap();
    assert_eq!(first.1.rssi, Some(87));
    assert_eq!(first.1.gps.unwrap().lat, 47.397742);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_zstd_bodies_are_accepted_and_bombs_and_bad_encodings_refused() {
    let app = spawn_app().await;
    let (_, key) = app.create_drone("encodings").await;
    let t = past_ms();
    let plain = serde_json::to_vec(&packets_from(t, 100)).unwrap();
    let response = post_raw(&app, &key, "application/json", Some("gzip"), gzip(&plain)).await;
    assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
    let plain = serde_json::to_vec(&packets_from(t + 1000, 100)).unwrap();
    let response =
        post_raw(&app, &key, "application/json", Some("zstd"), zstd::encode_all(&plain[..], 3).unwrap()).await;
    assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap());
    assert_eq!(app.messages_in_topic(), 200);

    // 64 MiB of spaces compress to a few KiB: refused once 4 MiB came out, nothing appended.
    let mut bomb = b"[".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 64 * 1024 * 1024));
    bomb.extend_from_slice(br#"{"ts": 1, "throttle": 0.5}]"#);
    let zbomb = zstd::encode_all(&bomb[..], 3).unwrap();
    assert!(zbomb.len() < 100_000);
    let response = post_raw(&app, &key, "application/json", Some("zstd"), zbomb).await;
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    let response = post_raw(&app, &key, "application/json", Some("gzip"), gzip(&bomb)).await;
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    // Not what the header says, and an encoding we do not speak.
    let response = post_raw(&app, &key, "application/json", Some("gzip"), plain.clone()).await;
    expect_error(response, StatusCode::BAD_REQUEST, "invalid_body").await;
    let response = post_raw(&app, &key, "application/json", Some("br"), plain.clone()).await;
    expect_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_content_encoding").await;
    assert_eq!(app.messages_in_topic(), 200);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_and_content_type_limits_are_413_and_415() {
    let app = spawn_app().await;
    let (_, key) = app.create_drone("limits").await;
    let t = past_ms();
    let response = app.post_telemetry(&key, &json!(packets_from(t, 501))).await;
    let error = expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "too_many_packets").await;
    assert!(error["message"].as_str().unwrap().contains("501"), "{error}");
    // 500 packets is fine.
    assert_eq!(app.post_telemetry(&key, &json!(packets_from(t, 500))).await.status(), StatusCode::CREATED);
    // Over 4 MiB: 400 packets with 12 KiB of padding each (the padding alone would be refused,
    // but the size is checked first).
    let mut huge = Vec::from(&b"["[..]);
    for i in 0..400 {
        if i > 0 {
            huge.push(b',');
        }
        huge.extend_from_slice(
            format!(r#"{{"ts": {}, "throttle": 0.5, "extra": {{"pad": "{}"}}}}"#, t + 10_000 + i, "x".repeat(12_000))
                .as_bytes(),
        );
    }
    huge.push(b']');
    assert!(huge.len() > 4 * 1024 * 1024);
    let response = post_raw(&app, &key, "application/json", None, huge).await;
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/jsonl"] {
        let body = serde_json::to_vec(&json!([packet_at(t + 20_000, 0.5)])).unwrap();
        let response = post_raw(&app, &key, content_type, None, body).await;
        expect_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    }
    // `application/json; charset=utf-8` is JSON.
    let body = serde_json::to_vec(&json!([packet_at(t + 20_000, 0.5)])).unwrap();
    let response = post_raw(&app, &key, "application/json; charset=utf-8", None, body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(app.messages_in_topic(), 501);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_are_401_and_a_rotated_key_stops_within_10_s() {
    let app = spawn_app().await;
    let (drone_id, key) = app.create_drone("auth").await;
    let t = past_ms();
    let body = json!([packet_at(t, 0.5)]);
    let response = app.http.post(app.at("/v1/telemetry")).json(&body).send().await.unwrap();
    expect_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let wrong = format!("{}0", &key[..key.len() - 1]);
    let wrong = if wrong == key { format!("{}1", &key[..key.len() - 1]) } else { wrong };
    expect_error(app.post_telemetry(&wrong, &body).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    expect_error(app.post_telemetry("fl_short", &body).await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // The good key works (and is now cached).
    assert_eq!(app.post_telemetry(&key, &body).await.status(), StatusCode::CREATED);

    let rotated_at = std::time::Instant::now();
    let new_key = credentials::rotate(&app.pool, drone_id).await.unwrap().expect("drone exists");
    let mut n = 1;
    loop {
        let response = app.post_telemetry(&key, &json!([packet_at(t + n, 0.5)])).await;
        if response.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(response.status(), StatusCode::CREATED);
        assert!(rotated_at.elapsed() < Duration::from_secs(10), "the old key still works 10 s after rotation");
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.post_telemetry(&new_key, &json!([packet_at(t + 10_000, 0.5)])).await.status(), StatusCode::CREATED);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_auth_failures_are_slowed_down_without_hurting_a_good_key() {
    let config = ingest::IngestConfig { auth_failure_burst: 5, auth_failures_per_s: 0.5, ..Default::default() };
    let app = spawn_app_with(IngestOptions { config, ..Default::default() }).await;
    let (_, key) = app.create_drone("guessing").await;
    let t = past_ms();
    assert_eq!(app.post_telemetry(&key, &json!([packet_at(t, 0.5)])).await.status(), StatusCode::CREATED);
    let guess = json!([packet_at(t + 1, 0.5)]);
    for attempt in 0..5 {
        let response = app.post_telemetry(&format!("fl_000000000000_guess{attempt}"), &guess).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let response = app.post_telemetry("fl_000000000000_guess-more", &guess).await;
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    expect_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures").await;
    // A missing key counts the same.
    let response = app.http.post(app.at("/v1/telemetry")).json(&guess).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // The good key, from the same address, still gets in.
    for n in 1..=3 {
        assert_eq!(app.post_telemetry(&key, &json!([packet_at(t + n, 0.5)])).await.status(), StatusCode::CREATED);
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drone_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected() {
    let config = ingest::IngestConfig { rate_per_drone_hz: 100.0, rate_burst: 600, ..Default::default() };
    let app = spawn_app_with(IngestOptions { config, ..Default::default() }).await;
    let (_, fast) = app.create_drone("fast").await;
    let (_, calm) = app.create_drone("calm").await;
    let t = past_ms();
    assert_eq!(app.post_telemetry(&fast, &json!(packets_from(t, 500))).await.status(), StatusCode::CREATED);
    let response = app.post_telemetry(&fast, &json!(packets_from(t + 10_000, 500))).await;
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    // 400 packets short at 100/s: about 4 s.
    assert!((3..=5).contains(&retry_after), "Retry-After {retry_after}");
    expect_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(app.post_telemetry(&calm, &json!(packets_from(t, 500))).await.status(), StatusCode::CREATED);
    // A small batch within the remaining budget still passes, and nothing refused was appended.
    assert_eq!(app.post_telemetry(&fast, &json!(packets_from(t + 10_000, 50))).await.status(), StatusCode::CREATED);
    assert_eq!(app.messages_in_topic(), 1050);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rate_limit_takes_a_200_hz_drone_with_bursts() {
    let app = spawn_app().await;
    let (_, key) = app.create_drone("200hz").await;
    let t = past_ms();
    // A link outage of 20 s at 200 Hz leaves 4 000 packets to catch up on: sent back to back
    // in 8 full batches, then one more, without a 429.
    for batch in 0..9 {
        let response = app.post_telemetry(&key, &json!(packets_from(t + batch * 2500, 500))).await;
        assert_eq!(response.status(), StatusCode::CREATED, "batch {batch}");
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_unreachable_is_503_with_retry_after() {
    // An ingest whose producer points at a port where no broker listens.
    let app = spawn_app().await;
    let (_, key) = app.create_drone("no-broker").await;
    let mut dead = rdkafka::ClientConfig::new();
    dead.set("bootstrap.servers", "127.0.0.1:9").set("log_level", "0");
    let options = IngestOptions { ack_timeout: Duration::from_millis(1500), ..Default::default() };
    let (url, shutdown) = common::serve_ingest(&app.pool, &dead, &app.topic, &options).await;
    let started = std::time::Instant::now();
    let response = Api::new(url).post_telemetry(&key, &json!([packet_at(past_ms(), 0.5)])).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(response.headers()["retry-after"], "1");
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    shutdown.cancel();
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drones_key_writes_only_that_drone() {
    let app = spawn_app().await;
    let (drone_a, key_a) = app.create_drone("a").await;
    let (drone_b, key_b) = app.create_drone("b").await;
    let t = past_ms();
    // A cannot name another drone in its packets …
    let mut forged = packet_at(t, 0.5);
    forged["drone_id"] = json!(drone_b);
    let error =
        expect_error(app.post_telemetry(&key_a, &json!([forged])).await, StatusCode::BAD_REQUEST, "invalid_packets")
            .await;
    assert_eq!(error["details"], json!([{ "index": 0, "field": "drone_id", "reason": "unknown field" }]));
    // … and the same ts from both drones are two drones' packets, not a conflict.
    assert_eq!(app.post_telemetry(&key_a, &json!(packets_from(t, 50))).await.status(), StatusCode::CREATED);
    assert_eq!(app.post_telemetry(&key_b, &json!(packets_from(t, 30))).await.status(), StatusCode::CREATED);
    let store = app.start_store("isolation", 1000).await;
    app.wait_for_rows(80, Duration::from_secs(60)).await;
    store.stop().await;
    let counts: Vec<(uuid::Uuid, i64)> =
        sqlx::query_as("SELECT drone_id, count(*) FROM telemetry_raw GROUP BY drone_id ORDER BY count(*) DESC")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(counts, vec![(drone_a, 50), (drone_b, 30)]);
    for (key, record) in app.read_topic().await {
        assert_eq!(key, record.drone_id.to_string());
    }
    app.cleanup().await;
}

/// Load shedding: with `max_in_flight_packets` on their way to Kafka already, a further batch is
/// answered 503 with Retry-After at once, instead of queueing behind a pipeline that cannot keep up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_beyond_the_in_flight_budget_is_shed_at_once() {
    let app = spawn_app().await;
    let (_, slow) = app.create_drone("slow").await;
    let (_, other) = app.create_drone("other").await;
    // An instance whose Kafka never answers: its appends stay in flight for the ack timeout.
    let mut unreachable = app.kafka.clone();
    unreachable.set("bootstrap.servers", "127.0.0.1:1");
    let options = IngestOptions {
        config: ingest::IngestConfig { max_in_flight_packets: 500, ..Default::default() },
        ack_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let (url, shutdown) = common::serve_ingest(&app.pool, &unreachable, &app.topic, &options).await;
    let api = Api::new(url);
    let t = past_ms();
    let in_flight = {
        let (api, slow) = (api.clone(), slow.clone());
        tokio::spawn(async move { api.post_telemetry(&slow, &json!(packets_from(t, 500))).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let shed = api.post_telemetry(&other, &json!([packet_at(t, 0.5)])).await;
    let answered_in = started.elapsed();
    assert_eq!(shed.headers()["retry-after"], "1");
    expect_error(shed, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(answered_in < Duration::from_millis(1000), "shed only after {answered_in:?}");
    // The batch in flight fails with Kafka, gives its budget back, and the next one is tried again
    // (it waits for Kafka rather than being shed).
    expect_error(in_flight.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let started = std::time::Instant::now();
    let retried = api.post_telemetry(&other, &json!([packet_at(t, 0.5)])).await;
    assert_eq!(retried.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() >= Duration::from_secs(2), "not appended: {:?}", started.elapsed());
    shutdown.cancel();
    app.cleanup().await;
}
