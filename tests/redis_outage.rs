//! A Redis outage does not stop ingest: with the Redis that holds the cross-instance `ts` order
//! gone, drones keep getting 201 on the in-process order (which still refuses a resent batch),
//! and once Redis is back the shared order is used again. The test runs its own `redis-server`
//! (the Debian package the local stack installs) so it can stop it without disturbing others.

mod common;

use std::time::Duration;

use common::{spawn_app_with, IngestOptions};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::json;
use tokio::process::{Child, Command};

async fn start_redis(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.get_multiplexed_async_connection().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "redis-server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

fn batch(start_ms: i64, from: i64, count: i64) -> serde_json::Value {
    json!((from..from + count).map(|i| json!({"ts": start_ms + 20 * i, "throttle": 0.4})).collect::<Vec<_>>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_keeps_accepting_on_the_in_process_order_while_redis_is_down() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut redis_server = start_redis(port).await;
    let options = IngestOptions { redis: true, redis_url: Some(url.clone()), ..Default::default() };
    let app = spawn_app_with(options).await;
    let (drone_id, key) = app.create_drone("redis-outage").await;
    let start_ms = testkit::past_ms();
    assert_eq!(app.post_telemetry(&key, &batch(start_ms, 0, 10)).await.status(), StatusCode::CREATED);

    redis_server.kill().await.unwrap();
    let _ = redis_server.wait().await;
    for n in 1..5 {
        let response = app.post_telemetry(&key, &batch(start_ms, n * 10, 10)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "batch {n} while Redis is down");
    }
    // The in-process order still holds: a resent batch is refused.
    let resent = app.post_telemetry(&key, &batch(start_ms, 40, 10)).await;
    assert_eq!(testkit::assert_error(resent, StatusCode::BAD_REQUEST).await, "invalid_packets");

    // Redis returns (empty: its data was not persisted); after the pause the shared order is used
    // again, and it learns the drone's newest acknowledged ts.
    let _redis_server = start_redis(port).await;
    tokio::time::sleep(ingest::order::DEGRADED_FOR + Duration::from_millis(200)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut next = 5;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    loop {
        let response = app.post_telemetry(&key, &batch(start_ms, next * 10, 10)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "batch {next} after Redis returned");
        next += 1;
        let committed: Option<i64> = connection.get(ingest::order::last_ts_key(drone_id)).await.unwrap();
        if committed == Some((start_ms + 20 * (next * 10 - 1)) * 1000) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the shared order is not used again: {committed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.messages_in_topic(), next * 10);
    app.cleanup().await;
}
