//! The ingest role: the front door every drone talks to.
//!
//! `POST /v1/telemetry` resolves the `X-API-Key` to a drone (hashed keys, cached), validates the
//! whole batch with the `schemas` contract, appends one Avro message per packet to
//! `telemetry.v1` (key = drone id) and answers 201 only after Kafka acknowledged all of them;
//! anything it cannot append is a 503 with `Retry-After`, so the drone retries and nothing
//! acknowledged is ever lost. Everything downstream reads the log, never this process.

pub mod api_key;
pub mod error;
pub mod publish;
pub mod routes;

use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use rand::RngCore;
use sqlx::PgPool;

pub use api_key::{create_drone, KeyResolver};
pub use publish::Publisher;

/// What every request handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub keys: KeyResolver,
    pub publisher: Publisher,
    pub last_ts: routes::telemetry::LastTs,
}

impl AppState {
    pub fn new(pool: PgPool, publisher: Publisher) -> Self {
        // Rotated keys must stop working within 10 s (CONTRACT.md §2).
        let keys = KeyResolver::new(pool.clone(), Duration::from_secs(5));
        Self { pool, keys, publisher, last_ts: Default::default() }
    }
}

/// The ingest routes, including health endpoints.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/telemetry", post(routes::telemetry::post))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
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
