//! `GET /v1/telemetry/ws`: a drone streams packets over one WebSocket (CONTRACT.md §2).
//!
//! - Authentication: the `X-API-Key` header of the upgrade request, or else a first text message
//!   `{"api_key": "…"}` (answered `{"authenticated": true, "drone_id": …}`; a bad key gets an
//!   error frame and the connection is closed with 1008).
//! - Text frames hold one packet or an array of up to 500; binary frames hold one Avro
//!   single-object `TelemetryPacket` (`schemas/avro/telemetry_packet.avsc`).
//! - Every data frame is answered, in order: `{"ack": n, "last_ts": "…"}` once Kafka acknowledged
//!   its n packets, or the HTTP error body `{"error", "message", "details"}` (plus
//!   `retry_after_s` for rate limits and unavailability) — the connection stays open.
//! - Backpressure: one frame is processed at a time and the socket is not read meanwhile, so a
//!   slow Kafka slows the sender through TCP; a connection holds at most one frame (≤ 4 MiB).
//! - Keepalive: the server pings every `ws_ping_interval`; a connection silent (no frame, no
//!   pong) for `ws_idle_timeout` is closed with 1001.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{Extensions, HeaderMap};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{json, Value};
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::telemetry::{batch_error, MAX_BODY_BYTES};
use crate::{AppState, WsSession};

/// How long a connection may take to send its `{"api_key"}` message.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
const POLICY_VIOLATION: u16 = 1008;
const GOING_AWAY: u16 = 1001;

#[utoipa::path(
    get, path = "/v1/telemetry/ws", operation_id = "ingest_telemetry_ws", tag = "ingest",
    security(("api_key" = [])),
    params(("X-API-Key" = Option<String>, Header, description = "the drone's API key; or send `{\"api_key\": \"…\"}` as the first message")),
    description = "WebSocket upgrade. Text frames: one packet or an array of up to 500 (as POST /v1/telemetry). \
                   Binary frames: one Avro single-object `TelemetryPacket` (schemas/avro/telemetry_packet.avsc, `ts` in µs). \
                   Each frame is answered in order with `{\"ack\": n, \"last_ts\": \"…\"}` once Kafka acknowledged its packets, \
                   or `{\"error\", \"message\", \"details\", \"retry_after_s\"?}` without closing. \
                   The server pings every 20 s and closes a connection silent for 60 s.",
    responses(
        (status = 101, description = "switching protocols"),
        (status = 401, description = "the X-API-Key header is missing a valid key", body = crate::openapi::ErrorDoc),
        (status = 429, description = "too many failed authentications from this address, or the drone already holds its maximum of open sessions (4)", body = crate::openapi::ErrorDoc),
    )
)]
pub async fn upgrade(
    State(state): State<AppState>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    // A plain GET (no upgrade headers) gets the contract's error body, not axum's text.
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return ApiError::InvalidBody(format!("not a websocket upgrade: {rejection}")).into_response()
        }
    };
    let client = extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let drone_id = match headers.get("x-api-key") {
        Some(value) => match state.authenticate(value.to_str().ok(), client).await {
            Ok(drone_id) => Some(drone_id),
            Err(error) => return error.into_response(),
        },
        None => None,
    };
    // A drone known from its header is refused before the upgrade when it holds too many sessions.
    let session = match drone_id.map(|drone_id| state.open_ws_session(drone_id)).transpose() {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    let mut trace = HeaderMap::new();
    if let Some(value) = headers.get("traceparent") {
        trace.insert("traceparent", value.clone());
    }
    ws.max_message_size(MAX_BODY_BYTES).max_frame_size(MAX_BODY_BYTES).on_upgrade(move |socket| async move {
        let session_state = Session { state, trace, client };
        session_state.run(socket, drone_id, session).await;
    })
}

struct Session {
    state: AppState,
    /// The upgrade request's `traceparent`, continued by every frame's messages.
    trace: HeaderMap,
    client: Option<IpAddr>,
}

enum Next {
    Message(Message),
    Closed,
    IdleTimeout,
    ShuttingDown,
}

impl Session {
    async fn run(self, mut socket: WebSocket, drone_id: Option<Uuid>, counted: Option<WsSession>) {
        let (drone_id, _counted) = match (drone_id, counted) {
            (Some(drone_id), Some(counted)) => (drone_id, counted),
            _ => match self.authenticate_first_message(&mut socket).await {
                Some(authenticated) => authenticated,
                None => return,
            },
        };
        let idle_timeout = self.state.config.ws_idle_timeout;
        let mut ping = tokio::time::interval(self.state.config.ws_ping_interval);
        ping.reset();
        let mut last_heard = Instant::now();
        loop {
            let next = tokio::select! {
                message = socket.recv() => match message {
                    Some(Ok(message)) => Next::Message(message),
                    _ => Next::Closed,
                },
                _ = ping.tick() => {
                    if socket.send(Message::Ping(Default::default())).await.is_err() {
                        return;
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(last_heard + idle_timeout) => Next::IdleTimeout,
                // Between frames only: a frame being handled is answered first.
                () = self.state.shutdown.cancelled() => Next::ShuttingDown,
            };
            let message = match next {
                Next::Message(message) => message,
                Next::Closed => return,
                Next::IdleTimeout => {
                    close(&mut socket, GOING_AWAY, "idle timeout").await;
                    return;
                }
                Next::ShuttingDown => {
                    close(&mut socket, GOING_AWAY, "server shutting down").await;
                    return;
                }
            };
            last_heard = Instant::now();
            let reply = match message {
                Message::Text(text) => {
                    let parsed = schemas::parse_frame(text.as_str(), Utc::now().timestamp_micros());
                    self.frame(drone_id, parsed.map_err(batch_error)).await
                }
                Message::Binary(bytes) => {
                    let parsed = schemas::decode_telemetry_packet(&bytes, Utc::now().timestamp_micros());
                    self.frame(drone_id, parsed.map(|packet| vec![packet]).map_err(packet_error)).await
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(_) => return,
            };
            if socket.send(Message::Text(Utf8Bytes::from(reply.to_string()))).await.is_err() {
                return;
            }
        }
    }

    /// Reads `{"api_key": "…"}` and counts the session; on failure answers with an error frame
    /// and closes.
    async fn authenticate_first_message(&self, socket: &mut WebSocket) -> Option<(Uuid, WsSession)> {
        let first = tokio::time::timeout(AUTH_TIMEOUT, socket.recv()).await;
        let key = match first {
            Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Value>(text.as_str())
                .ok()
                .and_then(|value| value.get("api_key").and_then(Value::as_str).map(str::to_owned)),
            Ok(Some(Ok(_))) => None,
            Ok(_) => return None,
            Err(_) => {
                close(socket, POLICY_VIOLATION, "no api key within 10 s").await;
                return None;
            }
        };
        let authenticated = match self.state.authenticate(key.as_deref(), self.client).await {
            Ok(drone_id) => self.state.open_ws_session(drone_id).map(|counted| (drone_id, counted)),
            Err(error) => Err(error),
        };
        match authenticated {
            Ok((drone_id, counted)) => {
                let hello = json!({ "authenticated": true, "drone_id": drone_id });
                socket.send(Message::Text(Utf8Bytes::from(hello.to_string()))).await.ok()?;
                Some((drone_id, counted))
            }
            Err(error) => {
                let _ = socket.send(Message::Text(Utf8Bytes::from(error.body().to_string()))).await;
                close(socket, POLICY_VIOLATION, "authentication failed").await;
                None
            }
        }
    }

    async fn frame(&self, drone_id: Uuid, parsed: Result<Vec<schemas::TelemetryPacket>, ApiError>) -> Value {
        let packets = match parsed {
            Ok(packets) => packets,
            Err(error) => return error.body(),
        };
        // One span per frame, a child of the upgrade request's `traceparent` when it sent one.
        let span = tracing::info_span!("ingest.frame", otel.kind = "server", %drone_id, packets = packets.len());
        telemetry::context::set_parent(
            &span,
            self.trace.get(telemetry::context::HEADER).and_then(|value| value.to_str().ok()),
        );
        let traceparent = crate::traceparent(&self.trace);
        let accepted = tracing::Instrument::instrument(self.state.accept(drone_id, packets, &traceparent), span);
        match accepted.await {
            Ok(accepted) => json!({ "ack": accepted.count, "last_ts": schemas::format_ts(accepted.last_ts_us) }),
            Err(error) => error.body(),
        }
    }
}

fn packet_error(error: schemas::PacketDecodeError) -> ApiError {
    match error {
        schemas::PacketDecodeError::Invalid(errors) => ApiError::InvalidPackets(errors),
        schemas::PacketDecodeError::Decode(error) => ApiError::InvalidBody(format!("binary frame: {error}")),
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
