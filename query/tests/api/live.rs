//! Live state from Redis and the SSE streams fed by Redis pub/sub.

use std::time::Duration;

use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{assert_error, spawn_app, spawn_app_with, Options, SseItem, SseReader, TestApp, User};

const WAIT: Duration = Duration::from_secs(5);

fn state(drone: Uuid, seq: i64) -> Value {
    json!({"drone_id": drone.to_string(), "ts": "2026-05-01T12:00:00.020000Z", "throttle": 0.5, "voltage": 22.8, "seq": seq})
}

async fn publish(app: &TestApp, drone: Uuid, payload: &Value) -> i64 {
    let mut redis = app.redis.get_multiplexed_async_connection().await.unwrap();
    redis.publish(format!("live:{drone}"), payload.to_string()).await.unwrap()
}

async fn open(app: &TestApp, path: &str, user: &User) -> SseReader {
    SseReader::new(app.get(path, &user.token).await)
}

#[tokio::test]
async fn latest_state_comes_from_redis_for_owner_and_drone_key() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (drone, key) = app.drone(&user, "live").await;
    let path = format!("/v1/drones/{drone}/live");

    let empty = app.get(&path, &user.token).await;
    assert_eq!(empty.status(), StatusCode::OK);
    assert_eq!(empty.json::<Value>().await.unwrap(), Value::Null);

    let stored = state(drone, 1);
    let mut redis = app.redis.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis.set_ex(format!("drone:{drone}:live"), stored.to_string(), 30).await.unwrap();
    assert_eq!(app.get(&path, &user.token).await.json::<Value>().await.unwrap(), stored);
    let by_key = app.http.get(app.at(&path)).header("x-api-key", &key).send().await.unwrap();
    assert_eq!(by_key.status(), StatusCode::OK);
    assert_eq!(by_key.json::<Value>().await.unwrap(), stored);

    let bad_key = app.http.get(app.at(&path)).header("x-api-key", "fl_000000000000_nope").send().await.unwrap();
    assert_error(bad_key, StatusCode::UNAUTHORIZED).await;
    assert_error(app.http.get(app.at(&path)).send().await.unwrap(), StatusCode::UNAUTHORIZED).await;
    let _: () = redis.del(format!("drone:{drone}:live")).await.unwrap();
    app.cleanup().await;
}

#[tokio::test]
async fn drone_stream_delivers_published_states() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (drone, _) = app.drone(&user, "streamer").await;
    let mut stream = open(&app, &format!("/v1/drones/{drone}/live/stream"), &user).await;
    // Subscribed before the headers were sent: the first publish already reaches it.
    assert_eq!(publish(&app, drone, &state(drone, 1)).await, 1);
    assert_eq!(stream.next_telemetry(WAIT).await, state(drone, 1));
    assert_eq!(publish(&app, drone, &state(drone, 2)).await, 1);
    assert_eq!(stream.next_telemetry(WAIT).await, state(drone, 2));

    // EventSource style: the token in the query string.
    let response = app
        .http
        .get(app.at(&format!("/v1/drones/{drone}/live/stream?access_token={}", user.token)))
        .send()
        .await
        .unwrap();
    let mut by_query = SseReader::new(response);
    assert_eq!(publish(&app, drone, &state(drone, 3)).await, 2);
    assert_eq!(by_query.next_telemetry(WAIT).await, state(drone, 3));
    assert_eq!(stream.next_telemetry(WAIT).await, state(drone, 3));

    // Dropping a client unsubscribes it.
    drop(by_query);
    drop(stream);
    let deadline = tokio::time::Instant::now() + WAIT;
    while publish(&app, drone, &state(drone, 4)).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "subscriptions outlive their clients");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.cleanup().await;
}

#[tokio::test]
async fn stream_errors() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (drone, _) = app.drone(&user, "streamer").await;
    assert_error(
        app.http.get(app.at(&format!("/v1/drones/{drone}/live/stream"))).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_error(
        app.http.get(app.at("/v1/live/stream?access_token=nope")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    for max_hz in ["0", "-1", "abc", "1001", "NaN"] {
        let path = format!("/v1/drones/{drone}/live/stream?max_hz={max_hz}");
        assert_error(app.get(&path, &user.token).await, StatusCode::BAD_REQUEST).await;
        assert_error(app.get(&format!("/v1/live/stream?max_hz={max_hz}"), &user.token).await, StatusCode::BAD_REQUEST)
            .await;
    }
    app.cleanup().await;
}

#[tokio::test]
async fn max_hz_conflates_to_the_newest_state() {
    let app = spawn_app().await;
    let user = app.user().await;
    let (drone, _) = app.drone(&user, "fast").await;
    let (other, _) = app.drone(&user, "other").await;
    let mut stream = open(&app, "/v1/live/stream?max_hz=2", &user).await;

    // The first event is sent after this instant, so the next one of this drone is due no
    // earlier than 500 ms after it, however late the client reads either.
    let first_published_at = tokio::time::Instant::now();
    assert_eq!(publish(&app, drone, &state(drone, 0)).await, 1);
    assert_eq!(stream.next_telemetry(WAIT).await["seq"], 0);
    // 50 states within the 500 ms this drone must now wait; another drone is not held back.
    for seq in 1..=50 {
        publish(&app, drone, &state(drone, seq)).await;
    }
    publish(&app, other, &state(other, 7)).await;
    let next = stream.next_telemetry(WAIT).await;
    assert_eq!(next, state(other, 7), "the other drone's state comes first, unthrottled");
    let next = stream.next_telemetry(WAIT).await;
    assert_eq!(next, state(drone, 50), "intermediate states are dropped, the newest is kept");
    let elapsed = first_published_at.elapsed();
    assert!(elapsed >= Duration::from_millis(500), "second event of the drone after {elapsed:?}");
    app.cleanup().await;
}

#[tokio::test]
async fn fleet_stream_carries_only_the_callers_drones_and_picks_up_new_ones() {
    let mut options = Options::default();
    options.settings.fleet_refresh = Duration::from_millis(200);
    let app = spawn_app_with(options).await;
    let user = app.user().await;
    let intruder = app.user().await;
    let (first, _) = app.drone(&user, "one").await;
    let (second, _) = app.drone(&user, "two").await;
    let (foreign, _) = app.drone(&intruder, "foreign").await;
    let mut stream = open(&app, "/v1/live/stream", &user).await;

    assert_eq!(publish(&app, foreign, &state(foreign, 1)).await, 0, "nobody listens to another owner's drone");
    publish(&app, first, &state(first, 1)).await;
    publish(&app, second, &state(second, 1)).await;
    assert_eq!(stream.next_telemetry(WAIT).await, state(first, 1));
    assert_eq!(stream.next_telemetry(WAIT).await, state(second, 1));

    // A drone created after the stream started is picked up by the refresh.
    let (third, _) = app.drone(&user, "three").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while publish(&app, third, &state(third, 1)).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "new drone never subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stream.next_telemetry(WAIT).await, state(third, 1));
    app.cleanup().await;
}

#[tokio::test]
async fn idle_streams_send_keepalive_comments() {
    let mut options = Options::default();
    options.settings.sse_keepalive = Duration::from_millis(200);
    let app = spawn_app_with(options).await;
    let user = app.user().await;
    let mut stream = open(&app, "/v1/live/stream", &user).await;
    assert_eq!(stream.next(WAIT).await, SseItem::Comment("keepalive".into()));
    app.cleanup().await;
}

#[tokio::test]
async fn a_tiny_max_hz_streams_instead_of_dropping_the_connection() {
    // Found by hostile-input testing: 1 / max_hz overflowed Duration::from_secs_f64, whose panic
    // dropped the connection without an answer. Such a stream sends each drone's state once.
    let app = spawn_app().await;
    let user = app.user().await;
    let (drone, _) = app.drone(&user, "patient").await;
    for path in [format!("/v1/drones/{drone}/live/stream?max_hz=1e-300"), "/v1/live/stream?max_hz=5e-324".to_owned()] {
        let response = app.get(&path, &user.token).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], "text/event-stream", "{path}");
        let mut stream = SseReader::new(response);
        assert_eq!(publish(&app, drone, &state(drone, 1)).await, 1);
        assert_eq!(stream.next_telemetry(WAIT).await, state(drone, 1), "{path}");
    }
    app.cleanup().await;
}
