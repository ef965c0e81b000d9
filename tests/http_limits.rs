//! Slow and greedy clients against the real `flightline all`: a client that never finishes its
//! request head is cut off (slowloris), one that trickles its body gets 408 with the contract's
//! error body, connections beyond the cap wait instead of exhausting the process, and a drone
//! cannot pile up WebSocket sessions.

mod common;

use std::time::Duration;

use common::Deployment;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Reads until the server closes the connection; what it sent before that.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(within, stream.read_to_end(&mut received)).await;
    closed.ok().map(|_| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_connections_are_capped() {
    let deployment = Deployment::new().await;
    let child = deployment
        .start_with(&[
            ("FLIGHTLINE_HTTP_HEADER_TIMEOUT_S", "1"),
            ("FLIGHTLINE_HTTP_REQUEST_TIMEOUT_S", "2"),
            ("FLIGHTLINE_HTTP_MAX_CONNECTIONS", "3"),
        ])
        .await;
    let addr = deployment.addr.clone();
    let user = deployment.api.user().await;
    let (_, key) = deployment.api.drone(&user, "slow").await;

    // Slowloris: half a request head, then silence. The server closes within the header timeout.
    let mut slow_head = TcpStream::connect(&addr).await.unwrap();
    slow_head.write_all(b"POST /v1/telemetry HTTP/1.1\r\nHost: flightline\r\nX-Api-Key: fl_").await.unwrap();
    assert!(
        read_to_close(&mut slow_head, Duration::from_secs(5)).await.is_some(),
        "a half request head held the connection"
    );

    // A trickled body: the head is complete, the body never arrives. 408 with the error body.
    let mut slow_body = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/telemetry HTTP/1.1\r\nHost: flightline\r\nX-Api-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n[{{\"ts\":"
    );
    slow_body.write_all(head.as_bytes()).await.unwrap();
    let answer =
        read_to_close(&mut slow_body, Duration::from_secs(10)).await.expect("the trickled request was never answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");

    // The cap: three idle connections (heads not sent yet) fill it; a fourth client waits …
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let waiting = tokio::spawn({
        let api = deployment.api.clone();
        async move { api.http.get(api.at("/healthz")).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a connection beyond the cap was served at once");
    // … and is served once the idle ones are cut off by the header timeout.
    let status =
        tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("the waiting client was never served");
    assert_eq!(status.unwrap().unwrap(), 200);
    drop(idle);

    drop(child);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drone_cannot_pile_up_websocket_sessions() {
    let deployment = Deployment::new().await;
    let child = deployment.start().await;
    let api = &deployment.api;
    let user = api.user().await;
    let (_, key) = api.drone(&user, "ws-sessions").await;
    let url = format!("{}/v1/telemetry/ws", api.url.replacen("http", "ws", 1));
    let connect = || {
        let mut request = url.as_str().into_client_request().unwrap();
        request.headers_mut().insert("x-api-key", key.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(connect().await.expect("a session within the limit").0);
    }
    match connect().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("too_many_sessions"), "{body}");
        }
        other => panic!("a fifth session was not refused: {:?}", other.map(|_| ())),
    }
    // Closing one frees its place.
    let mut closed = sessions.pop().unwrap();
    closed.close(None).await.unwrap();
    drop(closed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match connect().await {
            Ok((session, _)) => {
                sessions.push(session);
                break;
            }
            Err(error) => assert!(tokio::time::Instant::now() < deadline, "no session after one closed: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(sessions);
    drop(child);
    deployment.cleanup().await;
}
