//! Live view end to end: a packet POSTed to ingest is in Redis, on `GET …/live` and on the SSE
//! stream of its owner, and an older packet never replaces a newer one.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::Deployment;
use serde_json::{json, Value};
use testkit::{Api, SseReader};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// The live view of `drone_id` (`GET …/live`), as its drone key or as its owner sees it.
async fn live_view(api: &Api, drone_id: Uuid, auth: Auth<'_>) -> Value {
    let request = api.http.get(api.at(&format!("/v1/drones/{drone_id}/live")));
    let request = match auth {
        Auth::Key(key) => request.header("x-api-key", key),
        Auth::Bearer(token) => request.bearer_auth(token),
    };
    request.send().await.unwrap().json().await.unwrap()
}

enum Auth<'a> {
    Key(&'a str),
    Bearer(&'a str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_packets_reach_redis_the_live_endpoint_and_sse_newest_first() {
    let deployment = Deployment::new().await;
    let child = deployment.start().await;
    let api = &deployment.api;
    let user = api.user().await;
    let (drone_id, key) = api.drone(&user, "live-quad").await;

    let mut events = SseReader::new(api.get(&format!("/v1/drones/{drone_id}/live/stream"), &user.token).await);

    let now = Utc::now();
    let newest = now.timestamp_millis();
    let packets = json!([
        {"ts": newest - 40, "throttle": 0.30, "voltage": 23.1},
        {"ts": newest - 20, "throttle": 0.40, "voltage": 23.0},
        {"ts": newest, "throttle": 0.50, "voltage": 22.9, "extra": {"mode": "loiter"}}
    ]);
    assert_eq!(api.post_telemetry(&key, &packets).await.status(), 201);

    // SSE: the newest packet arrives as a `telemetry` event.
    let deadline = tokio::time::Instant::now() + WAIT;
    let newest_ts = schemas::format_ts(newest * 1000);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if events.next_telemetry(left).await["ts"] == json!(newest_ts) {
            break;
        }
    }

    // The live endpoint (by drone key) shows the newest packet.
    let live = loop {
        let live = live_view(api, drone_id, Auth::Key(&key)).await;
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
    let old = testkit::record_of(drone_id, &json!({"ts": newest - 1000, "throttle": 0.99}));
    testkit::append_records(&deployment.kafka, &format!("{}telemetry.v1", deployment.prefix), &[old]).await;
    // Follow it with a newer marker packet through the API; once the marker is live, the old
    // record (earlier in the same partition) has been processed too.
    let marker = newest + 500;
    assert_eq!(api.post_telemetry(&key, &json!([{"ts": marker, "throttle": 0.2}])).await.status(), 201);
    let marker_ts = schemas::format_ts(marker * 1000);
    loop {
        let live = live_view(api, drone_id, Auth::Bearer(&user.token)).await;
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
