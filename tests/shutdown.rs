//! SIGTERM while clients hold connections open: a dashboard's SSE stream, a drone's WebSocket and
//! POSTs in flight. The process must end the streams, close the WebSocket with a close frame after
//! answering the frame in flight, drain within `shutdown_timeout_s`, exit 0, and have lost nothing
//! it acknowledged.

mod common;

use std::time::{Duration, Instant};

use chrono::Utc;
use common::Deployment;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(60);

fn packets(start_ms: i64, from: i64, count: i64) -> serde_json::Value {
    json!((from..from + count)
        .map(|i| json!({"ts": start_ms + 10 * i, "throttle": 0.5, "voltage": 22.0}))
        .collect::<Vec<_>>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_and_drains_within_the_deadline() {
    let deployment = Deployment::new().await;
    let child = deployment.start().await;
    let api = &deployment.api;
    let user = api.user().await;
    let (_, key) = api.drone(&user, "shutdown").await;
    let (_, ws_key) = api.drone(&user, "shutdown-ws").await;
    let start_ms = (Utc::now() - chrono::Duration::minutes(10)).timestamp_millis();

    // A dashboard that never disconnects.
    let mut sse = api.http.get(api.at("/v1/live/stream")).bearer_auth(&user.token).send().await.expect("SSE");
    assert_eq!(sse.status(), 200);

    // A drone on the WebSocket, with one frame acknowledged.
    let url = format!("{}/v1/telemetry/ws", api.url.replacen("http", "ws", 1));
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("x-api-key", ws_key.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("websocket");
    socket.send(Message::text(packets(start_ms, 0, 50).to_string())).await.unwrap();
    let ack = socket.next().await.expect("ack").expect("ack frame");
    assert!(ack.to_text().unwrap().contains("\"ack\":50"), "{ack:?}");

    let mut acked = 50i64;
    for batch in 0..5 {
        assert_eq!(api.post_telemetry(&key, &packets(start_ms, batch * 100, 100)).await.status(), 201);
        acked += 100;
    }
    // Requests in flight when the signal arrives: each is either answered 201 (and must then be
    // stored) or refused, never lost after an acknowledgement.
    let in_flight: Vec<_> = (5..10)
        .map(|batch| {
            let (api, key) = (api.clone(), key.clone());
            tokio::spawn(async move {
                let response = api
                    .http
                    .post(api.at("/v1/telemetry"))
                    .header("x-api-key", &key)
                    .json(&packets(start_ms, batch * 100, 100))
                    .send()
                    .await;
                matches!(response, Ok(r) if r.status() == 201)
            })
        })
        .collect();

    let signalled = Instant::now();
    let pid = child.id().expect("pid").to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().await.unwrap().success());

    // The SSE stream ends (the body completes) instead of holding the server open.
    let ended =
        tokio::time::timeout(Duration::from_secs(10), async { while let Ok(Some(_)) = sse.chunk().await {} }).await;
    assert!(ended.is_ok(), "the SSE stream was still open 10 s after SIGTERM");

    // The WebSocket gets a close frame ("going away").
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("websocket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("no close frame within 10 s of SIGTERM");
    assert_eq!(close.map(|frame| frame.code), Some(CloseCode::Away));

    let mut child = child;
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("flightline did not exit within 20 s of SIGTERM (drain deadline 10 s)")
        .expect("wait");
    assert!(exit.success(), "flightline exited with {exit} after SIGTERM");
    assert!(signalled.elapsed() < Duration::from_secs(15), "drain took {:?}", signalled.elapsed());
    for request in in_flight {
        if request.await.unwrap() {
            acked += 100;
        }
    }

    // Everything acknowledged is stored once the deployment runs again.
    let child = deployment.start().await;
    let pool = deployment.pool.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry_raw").fetch_one(&pool).await.unwrap();
        // A request refused at shutdown may still have reached the log (its retry would be
        // deduplicated), so more than the acknowledged is possible, never less.
        if stored >= acked {
            assert!(stored <= 1050, "{stored} rows stored, only 1050 packets were sent");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stored} of {acked} acknowledged packets stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(child);
    deployment.cleanup().await;
}
