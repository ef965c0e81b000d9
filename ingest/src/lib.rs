//! The ingest role: the front door every drone talks to.
//!
//! `POST /v1/telemetry` and the WebSocket `/v1/telemetry/ws` resolve the drone's API key (hashed
//! keys, cached; failed attempts slow their address down), validate every packet with the
//! `schemas` contract, apply the drone's rate limit, keep `ts` strictly increasing per drone
//! across instances ([`order`]), append one Avro message per packet to `telemetry.v1` (key =
//! drone id) and acknowledge only after Kafka acknowledged all of them; anything it cannot append
//! is a 503 with `Retry-After`, so the drone retries and nothing acknowledged is ever lost.
//! Everything downstream reads the log, never this process.

pub mod auth;
pub mod error;
mod openapi;
pub mod order;
pub mod publish;
pub mod routes;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use rand::RngCore;
use schemas::{FieldError, TelemetryPacket, TelemetryRecord};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

pub use credentials::KeyResolver;
pub use openapi::openapi;
pub use order::TsOrder;
pub use publish::Publisher;

use credentials::limits::{AuthFailures, Buckets};
use error::ApiError;
use order::OrderError;

/// Tunables of the ingest role (the binary fills them from its settings).
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Sustained packets per second one drone may send.
    pub rate_per_drone_hz: f64,
    /// Packets one drone may send at once above the sustained rate (at least one full batch).
    pub rate_burst: u32,
    /// Failed authentications one client address may make at once …
    pub auth_failure_burst: u32,
    /// … and per second after that, before it gets 429.
    pub auth_failures_per_s: f64,
    /// How long a WebSocket may stay silent (no frame, no pong) before it is closed.
    pub ws_idle_timeout: Duration,
    /// How often the server pings an open WebSocket.
    pub ws_ping_interval: Duration,
    /// WebSocket sessions one drone may hold open at once on one instance (a drone needs one;
    /// a leaked or hostile client must not pile up sessions).
    pub ws_sessions_per_drone: usize,
    /// Packets this instance may have on their way to Kafka at once. A batch that would exceed it
    /// is answered 503 at once: under a burst beyond what the pipeline drains, drones are told to
    /// come back rather than queued for seconds (about one second of this box's capacity).
    pub max_in_flight_packets: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            // 200 Hz drones with 5x headroom, and 10 s of backlog after a link outage at once.
            rate_per_drone_hz: 1000.0,
            rate_burst: 10_000,
            auth_failure_burst: 20,
            auth_failures_per_s: 1.0,
            ws_idle_timeout: Duration::from_secs(60),
            ws_ping_interval: Duration::from_secs(20),
            ws_sessions_per_drone: 4,
            max_in_flight_packets: 50_000,
        }
    }
}

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keys: KeyResolver,
    pub publisher: Publisher,
    pub order: TsOrder,
    pub config: Arc<IngestConfig>,
    pub drone_rate: Arc<Buckets<Uuid>>,
    pub auth_failures: Arc<AuthFailures>,
    /// Cancelled when the process drains: WebSocket sessions then close after the frame in
    /// flight is answered, so the server's graceful shutdown is not held open by them.
    pub shutdown: CancellationToken,
    /// Open WebSocket sessions per drone.
    pub ws_sessions: Arc<std::sync::Mutex<HashMap<Uuid, usize>>>,
    /// Permits for [`IngestConfig::max_in_flight_packets`], one per packet being appended.
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

/// One open WebSocket session of a drone, counted until dropped.
pub struct WsSession {
    drone_id: Uuid,
    sessions: Arc<std::sync::Mutex<HashMap<Uuid, usize>>>,
}

impl Drop for WsSession {
    fn drop(&mut self) {
        let mut sessions = self.sessions.lock().expect("ws sessions lock");
        if let Some(open) = sessions.get_mut(&self.drone_id) {
            *open -= 1;
            if *open == 0 {
                sessions.remove(&self.drone_id);
            }
        }
    }
}

impl AppState {
    /// Counts a WebSocket session of `drone_id`, or refuses it when the drone already holds
    /// [`IngestConfig::ws_sessions_per_drone`].
    pub fn open_ws_session(&self, drone_id: Uuid) -> Result<WsSession, ApiError> {
        let mut sessions = self.ws_sessions.lock().expect("ws sessions lock");
        let open = sessions.entry(drone_id).or_insert(0);
        if *open >= self.config.ws_sessions_per_drone {
            return Err(ApiError::TooManySessions { limit: self.config.ws_sessions_per_drone });
        }
        *open += 1;
        Ok(WsSession { drone_id, sessions: self.ws_sessions.clone() })
    }

    /// Ends WebSocket sessions when `shutdown` is cancelled.
    pub fn with_shutdown(self, shutdown: CancellationToken) -> Self {
        Self { shutdown, ..self }
    }

    /// A single-instance ingest: `ts` order is checked in-process only. Use
    /// [`AppState::with_order`] with [`TsOrder::with_redis`] when several instances may run.
    pub fn new(pool: PgPool, publisher: Publisher) -> Self {
        Self::with_config(pool, publisher, TsOrder::local_only(), IngestConfig::default())
    }

    pub fn with_config(pool: PgPool, publisher: Publisher, order: TsOrder, config: IngestConfig) -> Self {
        // Rotated keys must stop working within 10 s (CONTRACT.md §2).
        let keys = KeyResolver::new(pool.clone(), Duration::from_secs(5));
        let burst = f64::from(config.rate_burst.max(schemas::MAX_PACKETS_PER_BATCH as u32));
        let drone_rate = Buckets::new(config.rate_per_drone_hz.max(1.0), burst, 1_000_000);
        let auth_failures =
            Buckets::new(config.auth_failures_per_s.max(0.001), f64::from(config.auth_failure_burst.max(1)), 100_000);
        let in_flight =
            Arc::new(tokio::sync::Semaphore::new(config.max_in_flight_packets.max(schemas::MAX_PACKETS_PER_BATCH)));
        Self {
            pool,
            keys,
            publisher,
            order,
            in_flight,
            config: Arc::new(config),
            drone_rate: Arc::new(drone_rate),
            auth_failures: Arc::new(auth_failures),
            shutdown: CancellationToken::new(),
            ws_sessions: Arc::default(),
        }
    }

    /// Replaces the `ts` order (e.g. with the Redis-backed one).
    pub fn with_order(mut self, order: TsOrder) -> Self {
        self.order = order;
        self
    }

    /// The drone of `api_key`, with the per-address failure budget applied (see [`auth`]).
    pub async fn authenticate(&self, api_key: Option<&str>, client: Option<IpAddr>) -> Result<Uuid, ApiError> {
        auth::authenticate(self, api_key, client).await
    }

    /// Rate limit, `ts` order, append, commit: what both the HTTP and the WebSocket route do with
    /// a validated batch. Returns the number of packets and the newest `ts` once Kafka
    /// acknowledged all of them; on error nothing was acknowledged (a 503 may have left part of
    /// the batch in the log, which the drone's retry re-appends and consumers deduplicate).
    pub async fn accept(
        &self,
        drone_id: Uuid,
        packets: Vec<TelemetryPacket>,
        traceparent: &str,
    ) -> Result<Accepted, ApiError> {
        let (Some(first), Some(last)) = (packets.first(), packets.last()) else {
            return Err(ApiError::InvalidBody("expected at least one packet".into()));
        };
        let (first_ts_us, last_ts_us) = (first.ts_us(), last.ts_us());
        // Shed before the rate limit is charged: a shed batch is retried and must not pay twice.
        let Ok(_in_flight) = self.in_flight.clone().try_acquire_many_owned(packets.len() as u32) else {
            metrics::counter!("flightline_ingest_shed_total").increment(1);
            return Err(ApiError::Unavailable { retry_after_s: 1 });
        };
        if let Err(wait) = self.drone_rate.take(drone_id, packets.len() as f64) {
            metrics::counter!("flightline_ingest_rate_limited_total").increment(1);
            return Err(ApiError::RateLimited { retry_after_s: credentials::limits::retry_after_secs(wait) });
        }
        let started = std::time::Instant::now();
        let order = telemetry::context::child(|| tracing::info_span!("ingest.order"));
        let turn = self.order.begin(drone_id, first_ts_us).instrument(order).await.map_err(|error| match error {
            OrderError::Stale { last_us } => ApiError::InvalidPackets(vec![FieldError {
                index: 0,
                field: "ts".into(),
                reason: format!(
                    "must be strictly greater than the drone's previous packet ts ({})",
                    schemas::format_ts(last_us)
                ),
            }]),
            OrderError::Busy => ApiError::Unavailable { retry_after_s: 1 },
            OrderError::Unavailable(reason) => {
                tracing::warn!(%reason, "ts order store unavailable");
                ApiError::Unavailable { retry_after_s: 1 }
            }
        })?;
        let reserved = started.elapsed();
        let received_at_us = chrono::Utc::now().timestamp_micros();
        let count = packets.len();
        let records: Vec<TelemetryRecord> =
            packets.into_iter().map(|packet| TelemetryRecord::from_packet(drone_id, received_at_us, packet)).collect();
        let append = telemetry::context::child(|| {
            tracing::info_span!(
                "ingest.append",
                otel.kind = "producer",
                messaging.system = "kafka",
                messaging.destination.name = self.publisher.topic(),
                messaging.batch.message_count = count,
            )
        });
        // With tracing on, every message carries the append span's context (a child of the
        // request's), so consumers continue from it — the request's own when it is not sampled
        // (then no append span is made); with tracing off the traceparent ingest derived.
        let own = telemetry::context::traceparent_of(&append)
            .or_else(|| telemetry::context::traceparent_of(&tracing::Span::current()));
        let traceparent = own.as_deref().unwrap_or(traceparent);
        match turn.hold(self.publisher.append(&records, traceparent).instrument(append)).await {
            Ok(()) => {
                let appended = started.elapsed();
                turn.commit(last_ts_us).await;
                let total = started.elapsed();
                if total > SLOW_BATCH {
                    tracing::debug!(?reserved, ?appended, ?total, count, "slow batch");
                }
                Ok(Accepted { count, last_ts_us })
            }
            Err(error) => {
                tracing::warn!(%error, %drone_id, "append failed");
                turn.abort().await;
                Err(ApiError::Unavailable { retry_after_s: 1 })
            }
        }
    }
}

/// A batch whose reserve → append → commit takes longer than this is logged with its timings.
pub(crate) const SLOW_BATCH: Duration = Duration::from_millis(50);

/// A batch Kafka acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub count: usize,
    pub last_ts_us: i64,
}

/// The ingest routes (health and `/openapi.json` are served once per process by the binary).
/// Serve with `into_make_service_with_connect_info::<SocketAddr>()` so failed authentications
/// are counted per client address.
pub fn router(state: AppState) -> Router {
    // The refusal counters, at 0 from the start (a dashboard sees them before the first one).
    metrics::counter!("flightline_ingest_shed_total").increment(0);
    metrics::counter!("flightline_ingest_rate_limited_total").increment(0);
    for reason in ["unknown_key", "throttled"] {
        metrics::counter!("flightline_ingest_auth_failures_total", "reason" => reason).increment(0);
    }
    Router::new()
        .route("/v1/telemetry", post(routes::telemetry::post))
        .route("/v1/telemetry/ws", get(routes::telemetry_ws::upgrade))
        .with_state(state)
}

/// W3C trace context for the messages of one request: the caller's trace id when it sent a
/// valid `traceparent`, else a new one; always a new span id.
pub fn traceparent(headers: &HeaderMap) -> String {
    let mut rng = rand::rng();
    let mut span = [0u8; 8];
    rng.fill_bytes(&mut span);
    let incoming_trace = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split('-').nth(1))
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase);
    let trace = incoming_trace.unwrap_or_else(|| {
        let mut trace = [0u8; 16];
        rng.fill_bytes(&mut trace);
        hex::encode(trace)
    });
    format!("00-{trace}-{}-01", hex::encode(span))
}
