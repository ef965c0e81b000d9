//! Flights: pages, detail, downsampled points, CSV export and recompute.

use std::time::Duration;

use rdkafka::Message;
use reqwest::StatusCode;
use schemas::FlightEvent;
use serde_json::{json, Value};

use crate::common::{assert_error, spawn_app, spawn_app_with, Options};

const T0: i64 = 1_777_636_800_000_000; // 2026-05-01T12:00:00Z

#[tokio::test]
async fn pages_are_newest_first_and_stable() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (drone, _) = app.drone(&user, "pager").await;
    let (other, _) = app.drone(&user, "other").await;
    let mut expected = Vec::new();
    for i in 0..7 {
        let start = T0 + i * 60_000_000;
        expected.push((start, app.insert_flight(drone, start, start + 30_000_000, None).await));
    }
    // Two flights starting at the same instant (different drones would differ; here ids differ
    // by construction through a direct insert): the id breaks the tie.
    let tie = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO flights (id, drone_id, start_ts, end_ts, packet_count, source_partition, last_offset) \
         SELECT $1, drone_id, start_ts, end_ts, 1, 0, 0 FROM flights WHERE id = $2",
    )
    .bind(tie)
    .bind(expected[3].1)
    .execute(&app.pool)
    .await
    .unwrap();
    expected.push((T0 + 3 * 60_000_000, tie));
    app.insert_flight(other, T0, T0 + 30_000_000, None).await;
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let expected: Vec<String> = expected.iter().map(|(_, id)| id.to_string()).collect();

    let mut paged = Vec::new();
    for offset in (0..10).step_by(3) {
        let page: Value = app
            .get(&format!("/v1/drones/{drone}/flights?limit=3&offset={offset}"), &user.token)
            .await
            .json()
            .await
            .unwrap();
        paged.extend(page.as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(paged, expected);

    let all: Value = app.get(&format!("/v1/drones/{drone}/flights?limit=500"), &user.token).await.json().await.unwrap();
    let first = &all[0];
    assert_eq!(first["start_ts"], "2026-05-01T12:06:00.000000Z");
    assert_eq!(first["end_ts"], "2026-05-01T12:06:30.000000Z");
    assert_eq!(first["drone_id"], drone.to_string());
    assert_eq!(first["duration_s"], 30.0);
    assert_eq!(first["packet_count"], 10);
    assert_eq!(first["analytics_status"], "pending");
    assert_eq!(first["analytics_version"], Value::Null);
    // A flight inserted without naming its rule carries the contract's default one.
    assert_eq!(first["rule"], json!({"throttle_threshold": 0.05, "idle_s": 10.0, "gap_s": 10.0, "min_s": 1.0}));
    assert_eq!(first["energy_wh"], Value::Null);
    for key in ["id", "total_mah", "min_voltage", "max_current", "distance_m"] {
        assert!(first.get(key).is_some(), "{key} missing");
    }
    assert!(first.get("computed_metrics").is_none());
    let default: Value = app.get(&format!("/v1/drones/{drone}/flights"), &user.token).await.json().await.unwrap();
    assert_eq!(default.as_array().unwrap().len(), 8);

    for query in ["limit=0", "limit=501", "limit=-1", "offset=-1", "limit=ten"] {
        let response = app.get(&format!("/v1/drones/{drone}/flights?{query}"), &user.token).await;
        assert_eq!(assert_error(response, StatusCode::BAD_REQUEST).await, "invalid_request", "{query}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn detail_has_metrics_and_optional_points() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (drone, _) = app.drone(&user, "detail").await;
    let metrics = json!({"duration_s": 60.0, "power_curve": [], "gaps": {"count": 0, "seconds": 0.0}});
    let flight = app.insert_flight(drone, T0, T0 + 60_000_000, Some(metrics.clone())).await;
    app.insert_rows(drone, T0, 100_000, 601, |i| i as f64 / 10.0).await; // 60 s at 10 Hz, ends on end_ts
    app.insert_rows(drone, T0 + 60_100_000, 100_000, 5, |_| 1.0).await; // after the flight

    let detail: Value = app.get(&format!("/v1/flights/{flight}"), &user.token).await.json().await.unwrap();
    assert_eq!(detail["id"], flight.to_string());
    assert_eq!(detail["computed_metrics"], metrics);
    assert_eq!(detail["analytics_status"], "done");
    assert_eq!(detail["analytics_version"], 1);
    assert!(detail.get("telemetry").is_none());

    let pending = app.insert_flight(drone, T0 - 600_000_000, T0 - 500_000_000, None).await;
    let detail: Value = app.get(&format!("/v1/flights/{pending}"), &user.token).await.json().await.unwrap();
    assert_eq!(detail["computed_metrics"], Value::Null);

    // Few enough rows: all of them, in ts order, in the packet shape.
    let detail: Value =
        app.get(&format!("/v1/flights/{flight}?include=telemetry"), &user.token).await.json().await.unwrap();
    let points = detail["telemetry"].as_array().unwrap();
    assert_eq!(points.len(), 601);
    assert_eq!(points[0]["ts"], "2026-05-01T12:00:00.000000Z");
    assert_eq!(points[600]["ts"], "2026-05-01T12:01:00.000000Z");
    assert_eq!(points[0]["position"], json!([1.5, -2.0, 10.0]));
    assert_eq!(points[0]["extra"], json!({"mode": "loiter, \"fast\""}));
    assert!(points[0].get("gps").is_none());

    for query in
        ["include=telemetry&max_points=1", "include=telemetry&max_points=20001", "include=everything", "max_points=x"]
    {
        let response = app.get(&format!("/v1/flights/{flight}?{query}"), &user.token).await;
        assert_error(response, StatusCode::BAD_REQUEST).await;
    }
    app.cleanup().await;
}

#[tokio::test]
async fn downsampling_keeps_peaks() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (drone, _) = app.drone(&user, "peaky").await;
    let flight = app.insert_flight(drone, T0, T0 + 100_000_000, None).await;
    // 5001 rows over 100 s; a smooth current with one spike and one dip between bucket edges.
    app.insert_rows(drone, T0, 20_000, 5001, |i| match i {
        1234 => 250.0,
        3777 => -20.0,
        _ => 20.0 + (i as f64 / 300.0).sin(),
    })
    .await;
    let detail: Value = app
        .get(&format!("/v1/flights/{flight}?include=telemetry&max_points=100"), &user.token)
        .await
        .json()
        .await
        .unwrap();
    let points = detail["telemetry"].as_array().unwrap();
    assert!(points.len() <= 100 && points.len() >= 90, "{} points", points.len());
    let currents: Vec<f64> = points.iter().map(|p| p["current"].as_f64().unwrap()).collect();
    assert!(currents.contains(&250.0), "spike lost");
    assert!(currents.contains(&-20.0), "dip lost");
    let ts: Vec<&str> = points.iter().map(|p| p["ts"].as_str().unwrap()).collect();
    let mut sorted = ts.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ts, sorted, "points are in ts order, without duplicates");
    assert_eq!(ts[0], "2026-05-01T12:00:00.000000Z");
    assert_eq!(*ts.last().unwrap(), "2026-05-01T12:01:40.000000Z");
    app.cleanup().await;
}

#[tokio::test]
async fn csv_export_has_every_row_of_the_flight() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (drone, _) = app.drone(&user, "csv").await;
    let (other, _) = app.drone(&user, "other").await;
    let flight = app.insert_flight(drone, T0, T0 + 120_000_000, None).await;
    app.insert_rows(drone, T0 - 5_000_000, 1_000_000, 5, |_| 1.0).await; // before
    app.insert_rows(drone, T0, 10_000, 12_001, |i| i as f64).await; // 120 s at 100 Hz incl. both ends
    app.insert_rows(drone, T0 + 120_001_000, 1_000_000, 5, |_| 1.0).await; // after
    app.insert_rows(other, T0, 1_000_000, 50, |_| 1.0).await; // another drone, same time
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM telemetry_raw r JOIN flights f ON f.drone_id = r.drone_id AND r.ts BETWEEN f.start_ts AND f.end_ts WHERE f.id = $1",
    )
    .bind(flight)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, 12_001);

    let response = app.get(&format!("/v1/flights/{flight}/telemetry.csv"), &user.token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(response.headers().get("content-length").is_none(), "streamed, not buffered");
    let body = response.text().await.unwrap();
    let lines: Vec<&str> = body.split("\r\n").filter(|line| !line.is_empty()).collect();
    assert_eq!(
        lines[0],
        "ts,received_at,throttle,voltage,current,mah_drawn,rssi,x,y,z,lat,lon,alt_m,vx,vy,vz,roll,pitch,yaw,extra"
    );
    assert_eq!(lines.len() as i64 - 1, stored);
    let first: Vec<&str> = lines[1].splitn(20, ',').collect();
    assert_eq!(first[0], "2026-05-01T12:00:00.000000Z");
    assert_eq!(first[2], "0.5");
    assert_eq!(first[4], "0");
    assert_eq!(first[5], "", "absent mah_drawn is empty");
    assert_eq!(first[7], "1.5");
    assert_eq!(first[19], r#""{""mode"":""loiter, \""fast\""""}""#);
    assert!(lines.last().unwrap().starts_with("2026-05-01T12:02:00.000000Z,"));
    app.cleanup().await;
}

async fn consume_one(topic: &str) -> (String, FlightEvent) {
    let message = testkit::read_messages(&testkit::kafka_config(), topic, 1, Duration::from_secs(20)).await.remove(0);
    let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
    let event = schemas::decode_flight_event(message.payload().unwrap()).expect("decodable FlightEvent");
    (key, event)
}

#[tokio::test]
async fn recompute_appends_a_recompute_requested_event() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (drone, _) = app.drone(&user, "recompute").await;
    let flight = app.insert_flight(drone, T0, T0 + 60_000_000, None).await;
    let before = chrono::Utc::now().timestamp_micros();
    let response = app
        .post(&format!("/v1/flights/{flight}/recompute"), &user.token, &json!({"reason": "new battery model"}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"flight_id": flight.to_string(), "status": "requested"})
    );
    let (key, event) = consume_one(&app.topic).await;
    assert_eq!(key, drone.to_string());
    let FlightEvent::RecomputeRequested(request) = event else { panic!("not a RecomputeRequested: {event:?}") };
    assert_eq!(request.flight_id, flight);
    assert_eq!(request.drone_id, drone);
    assert_eq!(request.reason.as_deref(), Some("new battery model"));
    assert!(request.requested_at_us >= before && request.requested_at_us <= chrono::Utc::now().timestamp_micros());

    // An empty body is fine too; a malformed one is not.
    let empty = app
        .http
        .post(app.at(&format!("/v1/flights/{flight}/recompute")))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::ACCEPTED);
    let bad = app
        .http
        .post(app.at(&format!("/v1/flights/{flight}/recompute")))
        .bearer_auth(&user.token)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_error(bad, StatusCode::BAD_REQUEST).await;
    let anonymous = app.http.post(app.at(&format!("/v1/flights/{flight}/recompute"))).send().await.unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED).await;
    app.cleanup().await;
}

#[tokio::test]
async fn recompute_answers_503_when_kafka_cannot_acknowledge() {
    // Nothing listens on port 1.
    let mut options = Options { kafka_brokers: "127.0.0.1:1".to_owned(), ..Options::default() };
    options.settings.kafka_ack_timeout = Duration::from_millis(1500);
    let app = spawn_app_with(options).await;
    let user = app.user().await;
    let (drone, _) = app.drone(&user, "offline").await;
    let flight = app.insert_flight(drone, T0, T0 + 60_000_000, None).await;
    let response = app.post(&format!("/v1/flights/{flight}/recompute"), &user.token, &json!({})).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(assert_error(response, StatusCode::SERVICE_UNAVAILABLE).await, "unavailable");
    app.cleanup().await;
}

#[tokio::test]
async fn recompute_refuses_an_oversized_body_with_the_contract_error_body() {
    // Found by hostile-input testing (tests/api_fuzz): a body over axum's 2 MiB limit was
    // answered 413 text/plain, without the contract's error body.
    let app = spawn_app().await;
    let user = app.user().await;
    let (drone, _) = app.drone(&user, "oversized").await;
    let flight = app.insert_flight(drone, T0, T0 + 60_000_000, None).await;
    let response = app
        .http
        .post(app.at(&format!("/v1/flights/{flight}/recompute")))
        .bearer_auth(&user.token)
        .body(vec![b' '; 2 * 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(assert_error(response, StatusCode::BAD_REQUEST).await, "invalid_request");
    app.cleanup().await;
}
