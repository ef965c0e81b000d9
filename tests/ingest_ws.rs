//! The WebSocket `/v1/telemetry/ws` against the real stack: authentication both ways, acks only
//! after Kafka, error frames that keep the connection open, Avro binary frames, and a 10 000
//! packet session that lands exactly once.

mod common;

use std::time::Duration;

use common::{spawn_app, TestApp};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use testkit::{packet_at, packets_from, past_ms};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(app: &TestApp, key: Option<&str>) -> Socket {
    let mut request = format!("{}/v1/telemetry/ws", app.url.replacen("http", "ws", 1)).into_client_request().unwrap();
    if let Some(key) = key {
        request.headers_mut().insert("x-api-key", key.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.expect("websocket upgrade").0
}

/// The next text frame as JSON (pings are answered by the library), with a deadline.
async fn next_json(socket: &mut Socket) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next()).await.expect("a frame within 30 s");
        match message.expect("connection open").expect("frame") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("json frame"),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

async fn send_json(socket: &mut Socket, value: &Value) {
    socket.send(Message::text(value.to_string())).await.expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_of_10_000_packets_lands_exactly_once_with_correct_acks() {
    let app = spawn_app().await;
    let (drone_id, key) = app.create_drone("ws-10k").await;
    let mut socket = connect(&app, Some(&key)).await;
    let t = past_ms();
    let all = packets_from(t, 10_000);
    let mut acked = 0;
    // Frames of varying shape: arrays of 1–500 and single objects.
    let mut position = 0;
    let mut frame_number = 0;
    while position < all.len() {
        let size = [500, 1, 137, 499, 250][frame_number % 5].min(all.len() - position);
        let frame = if size == 1 && frame_number % 2 == 1 {
            all[position].clone()
        } else {
            json!(all[position..position + size])
        };
        send_json(&mut socket, &frame).await;
        let reply = next_json(&mut socket).await;
        let last_ts = schemas::format_ts(all[position + size - 1]["ts"].as_i64().unwrap() * 1000);
        assert_eq!(reply, json!({ "ack": size, "last_ts": last_ts }), "frame {frame_number}");
        acked += size;
        position += size;
        frame_number += 1;
    }
    assert_eq!(acked, 10_000);
    // Acked means in Kafka: exactly 10 000 messages, and the store has every packet once.
    assert_eq!(app.messages_in_topic(), 10_000);
    let store = app.start_store("ws-10k", 5000).await;
    app.wait_for_rows(10_000, Duration::from_secs(120)).await;
    store.stop().await;
    let (distinct, first, last): (i64, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT count(DISTINCT ts), min(ts), max(ts) FROM telemetry_raw WHERE drone_id = $1")
            .bind(drone_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(distinct, 10_000);
    assert_eq!(first.timestamp_millis(), t);
    assert_eq!(last.timestamp_millis(), t + 5 * 9_999);
    socket.close(None).await.unwrap();
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_error_frames_and_the_connection_stays_open() {
    let app = spawn_app().await;
    let (_, key) = app.create_drone("ws-errors").await;
    let mut socket = connect(&app, Some(&key)).await;
    let t = past_ms();
    socket.send(Message::text("{not json")).await.unwrap();
    assert_eq!(next_json(&mut socket).await["error"], "invalid_json");
    send_json(&mut socket, &json!({ "ts": t, "throttle": 7 })).await;
    let reply = next_json(&mut socket).await;
    assert_eq!(reply["error"], "invalid_packets");
    assert_eq!(reply["details"], json!([{ "index": 0, "field": "throttle", "reason": "must be between 0 and 1" }]));
    send_json(&mut socket, &json!(packets_from(t, 501))).await;
    assert_eq!(next_json(&mut socket).await["error"], "too_many_packets");
    socket.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next_json(&mut socket).await["error"], "invalid_body");
    // Still open: a good frame is acknowledged, then a stale one is refused with the ts rule.
    send_json(&mut socket, &json!([packet_at(t, 0.5)])).await;
    assert_eq!(next_json(&mut socket).await["ack"], 1);
    send_json(&mut socket, &packet_at(t, 0.5)).await;
    let reply = next_json(&mut socket).await;
    assert_eq!(reply["details"][0]["field"], "ts");
    assert_eq!(app.messages_in_topic(), 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_may_come_in_the_first_message_and_a_bad_key_closes() {
    let app = spawn_app().await;
    let (drone_id, key) = app.create_drone("ws-auth").await;
    let mut socket = connect(&app, None).await;
    send_json(&mut socket, &json!({ "api_key": key })).await;
    assert_eq!(next_json(&mut socket).await, json!({ "authenticated": true, "drone_id": drone_id }));
    send_json(&mut socket, &json!([packet_at(past_ms(), 0.5)])).await;
    assert_eq!(next_json(&mut socket).await["ack"], 1);

    let mut socket = connect(&app, None).await;
    send_json(&mut socket, &json!({ "api_key": "fl_000000000000_nope" })).await;
    assert_eq!(next_json(&mut socket).await["error"], "unauthorized");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("closed within 10 s");
    assert_eq!(closed, Some(1008));

    // A bad key in the header is refused before the upgrade.
    let mut request = format!("{}/v1/telemetry/ws", app.url.replacen("http", "ws", 1)).into_client_request().unwrap();
    request.headers_mut().insert("x-api-key", "fl_000000000000_nope".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|(_, response)| response.status())),
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frames_carry_avro_telemetry_packets() {
    let app = spawn_app().await;
    let (drone_id, key) = app.create_drone("ws-avro").await;
    let mut socket = connect(&app, Some(&key)).await;
    let t = past_ms();
    let now_us = chrono::Utc::now().timestamp_micros();
    let packet = schemas::parse_frame(
        &json!({ "ts": t, "throttle": 0.25, "gps": {"lat": 47.5, "lon": 8.5, "alt_m": 400.0}, "extra": {"mode": "rtl"} }).to_string(),
        now_us,
    )
    .unwrap()
    .remove(0);
    socket.send(Message::binary(schemas::encode_telemetry_packet(&packet))).await.unwrap();
    assert_eq!(next_json(&mut socket).await, json!({ "ack": 1, "last_ts": schemas::format_ts(t * 1000) }));
    let records = app.read_topic().await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1.drone_id, drone_id);
    assert_eq!(records[0].1.gps.unwrap().lat, 47.5);
    assert_eq!(records[0].1.throttle, 0.25);
    app.cleanup().await;
}
