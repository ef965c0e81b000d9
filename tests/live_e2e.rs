//! Live view end to end: a packet POSTed to ingest is in Redis, on `GET …/live` and on the SSE
//! stream of its owner, and an older packet never replaces a newer one.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::Deployment;
use futures::StreamExt;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

async fn token(http: &reqwest::Client, url: &str) -> String {
    let email = format!("pilot-{}@example.com", uuid::Uuid::new_v4().simple());
    let credentials = json!({"email": email, "password": "correct horse battery"});
    let signup = http.post(format!("{url}/v1/auth/signup")).json(&credentials).send().await.unwrap();
    assert_eq!(signup.status(), 201);
    let token: Value =
        http.post(format!("{url}/v1/auth/token")).json(&credentials).send().await.unwrap().json().await.unwrap();
    token["access_token"].as_str().expect("access_token").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_packets_reach_redis_the_live_endpoint_and_sse_newest_first() {
    let deployment = Deployment::new().await;
    let child = deployment.start().await;
    let url = deployment.url();
    let http = reqwest::Client::new();
    let jwt = token(&http, &url).await;
    let drone: Value = http
        .post(format!("{url}/v1/drones"))
        .bearer_auth(&jwt)
        .json(&json!({"name": "live-quad"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (drone_id, key) = (drone["id"].as_str().unwrap().to_owned(), drone["api_key"].as_str().unwrap().to_owned());

    let mut events = http
        .get(format!("{url}/v1/drones/{drone_id}/live/stream"))
        .bearer_auth(&jwt)
        .send()
        .await
        .unwrap()
        .bytes_stream();

    let now = Utc::now();
    let newest = now.timestamp_millis();
    let packets = json!([
        {"ts": newest - 40, "throttle": 0.30, "voltage": 23.1},
        {"ts": newest - 20, "throttle": 0.40, "voltage": 23.0},
        {"ts": newest, "throttle": 0.50, "voltage": 22.9, "extra": {"mode": "loiter"}}
    ]);
    let post = http.post(format!("{url}/v1/telemetry")).header("x-api-key", &key).json(&packets).send().await.unwrap();
    assert_eq!(post.status(), 201);

    // SSE: the newest packet arrives as a `telemetry` event.
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    let newest_ts = schemas::format_ts(newest * 1000);
    while !buffer.contains(&newest_ts) {
        let chunk = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("no SSE event in time")
            .expect("stream ended")
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(buffer.contains("event: telemetry"), "{buffer}");

    // The live endpoint (by drone key) shows the newest packet.
    let live = loop {
        let live: Value = http
            .get(format!("{url}/v1/drones/{drone_id}/live"))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if live["ts"] == json!(newest_ts) {
            break live;
        }
        assert!(tokio::time::Instant::now() < deadline, "live never showed the newest packet: {live}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(live["drone_id"], json!(drone_id));
    assert_eq!(live["throttle"], json!(0.5));
    assert_eq!(live["extra"], json!({"mode": "loiter"}));

    // A replayed older packet (from the log, e.g. a redelivery) must not move the view back:
    // append it to the topic directly, as ingest would refuse its ts.
    let record = schemas::TelemetryRecord {
        drone_id: drone_id.parse().unwrap(),
        ts_us: (newest - 1000) * 1000,
        received_at_us: Utc::now().timestamp_micros(),
        position: None,
        gps: None,
        velocity: None,
        attitude: None,
        throttle: 0.99,
        voltage: None,
        current: None,
        mah_drawn: None,
        rssi: None,
        extra: Default::default(),
    };
    let producer: rdkafka::producer::FutureProducer = deployment.kafka.create().unwrap();
    let payload = schemas::encode_telemetry(&record);
    producer
        .send(
            rdkafka::producer::FutureRecord::to(&format!("{}telemetry.v1", deployment.prefix))
                .key(&drone_id)
                .payload(&payload),
            Duration::from_secs(5),
        )
        .await
        .expect("append old record");
    // Follow it with a newer marker packet through the API; once the marker is live, the old
    // record (earlier in the same partition) has been processed too.
    let marker = newest + 500;
    let post = http
        .post(format!("{url}/v1/telemetry"))
        .header("x-api-key", &key)
        .json(&json!([{"ts": marker, "throttle": 0.2}]))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 201);
    let marker_ts = schemas::format_ts(marker * 1000);
    loop {
        let live: Value = http
            .get(format!("{url}/v1/drones/{drone_id}/live"))
            .bearer_auth(&jwt)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_ne!(live["throttle"], json!(0.99), "an older packet overwrote the live view");
        if live["ts"] == json!(marker_ts) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "marker never became live: {live}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(child);
    deployment.cleanup().await;
}
