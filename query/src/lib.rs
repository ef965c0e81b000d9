//! The query role: the read side everyone but the drones talks to.
//!
//! ```text
//!  PostgreSQL (users, drones, telemetry_raw, flights) ──┐
//!  Redis drone:{id}:live  +  pub/sub live:{id}  ────────┼──► query ──► REST, SSE, OpenAPI
//!  POST /v1/flights/{id}/recompute ──RecomputeRequested──┴──► Kafka flights.v1 ──► analytics
//! ```
//!
//! Users sign up and log in for an HS256 JWT ([`auth`]); with it they manage their drones
//! (creating one shows its API key once; ingest resolves that key), read the live state the live
//! processor keeps in Redis, follow it as Server-Sent Events fed by Redis pub/sub, page through
//! flights the sessionizer closed and the analytics group measured, export a flight's raw rows as
//! CSV streamed from PostgreSQL (or read from the [`archive`] once PostgreSQL's retention dropped
//! them), and ask for a flight's analytics to be recomputed, which is an
//! event on `flights.v1` like any other. The query role never writes telemetry or flights: every
//! change to history goes through the log.
//!
//! Tenancy: every drone- and flight-scoped route looks the resource up *with* the caller's user
//! id, so another owner's drone or flight is indistinguishable from a missing one (404).
//!
//! The crate is a library: [`router`] gives the routes (without `/healthz`, `/readyz`,
//! `/metrics`, served once by the binary for all roles) and [`openapi`] their OpenAPI 3.1
//! document.

pub mod archive;
pub mod auth;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use auth::JwtKeys;
pub use error::{ApiError, Result};
pub use openapi::openapi;

/// The settings of the query role that are not connections.
#[derive(Debug, Clone)]
pub struct QuerySettings {
    /// HS256 secret for access tokens (`FLIGHTLINE_JWT_SECRET`).
    pub jwt_secret: String,
    /// Lifetime of an access token.
    pub token_lifetime: Duration,
    /// Whether `POST /v1/auth/signup` creates users (403 `signup_disabled` otherwise).
    pub signup_enabled: bool,
    /// Topic of flight events, where recompute requests go (`flights.v1`).
    pub flights_topic: String,
    /// How long a recompute request waits for Kafka's acknowledgement before answering 503.
    pub kafka_ack_timeout: Duration,
    /// Silence after which an SSE stream sends a keepalive comment (15 s).
    pub sse_keepalive: Duration,
    /// How often `GET /v1/live/stream` looks for drones created after it started (10 s).
    pub fleet_refresh: Duration,
    /// Failed logins one client address may make at once (10) …
    pub login_failure_burst: u32,
    /// … and how many more per second after that (one every 10 s).
    pub login_failures_per_s: f64,
}

impl Default for QuerySettings {
    fn default() -> Self {
        Self {
            jwt_secret: String::new(),
            token_lifetime: Duration::from_secs(3600),
            signup_enabled: true,
            flights_topic: "flights.v1".to_owned(),
            kafka_ack_timeout: Duration::from_secs(5),
            sse_keepalive: Duration::from_secs(15),
            login_failure_burst: 10,
            login_failures_per_s: 0.1,
            fleet_refresh: Duration::from_secs(10),
        }
    }
}

/// What every request handler shares; cheap to clone.
#[derive(Clone)]
pub struct QueryState {
    pub pool: PgPool,
    /// Commands (GET of live state); reconnects by itself.
    pub redis: redis::aio::ConnectionManager,
    /// Opens one pub/sub connection per SSE stream.
    pub redis_client: redis::Client,
    /// Producer for `flights_topic` (acks=all, idempotent; see [`flights_producer`]).
    pub producer: FutureProducer,
    pub flights_topic: String,
    pub kafka_ack_timeout: Duration,
    pub jwt: JwtKeys,
    pub signup_enabled: bool,
    pub sse_keepalive: Duration,
    pub fleet_refresh: Duration,
    /// Drone API keys (for `GET /v1/drones/{id}/live`), cached like ingest does.
    pub keys: credentials::KeyResolver,
    /// Per client address: failed logins it may still make before `POST /v1/auth/token` answers
    /// 429 (password guessing).
    pub login_failures: Arc<credentials::limits::AuthFailures>,
    /// Cancelled when the process drains: SSE streams then end, so they do not hold the
    /// server's graceful shutdown open.
    pub shutdown: CancellationToken,
    /// Where a flight's raw points are read once PostgreSQL no longer holds all of them; `None`
    /// without an archive (`archive_nodes` empty).
    pub archive: Option<Arc<dyn archive::RawArchive>>,
}

impl QueryState {
    /// Connects to Redis (fails when it is unreachable) and assembles the state. `kafka` is the
    /// base client configuration (bootstrap servers); the producer is made from it.
    pub async fn new(
        settings: QuerySettings,
        pool: PgPool,
        redis_client: redis::Client,
        kafka: &ClientConfig,
    ) -> Result<Self, StateError> {
        let redis = redis::aio::ConnectionManager::new(redis_client.clone()).await?;
        let producer = flights_producer(kafka, settings.kafka_ack_timeout)?;
        Ok(Self {
            keys: credentials::KeyResolver::new(pool.clone(), Duration::from_secs(5)),
            pool,
            redis,
            redis_client,
            producer,
            flights_topic: settings.flights_topic,
            kafka_ack_timeout: settings.kafka_ack_timeout,
            jwt: JwtKeys::new(settings.jwt_secret.as_bytes(), settings.token_lifetime),
            signup_enabled: settings.signup_enabled,
            sse_keepalive: settings.sse_keepalive,
            fleet_refresh: settings.fleet_refresh,
            login_failures: Arc::new(credentials::limits::Buckets::new(
                settings.login_failures_per_s.max(0.001),
                f64::from(settings.login_failure_burst.max(1)),
                100_000,
            )),
            shutdown: CancellationToken::new(),
            archive: None,
        })
    }

    /// Ends SSE streams when `shutdown` is cancelled.
    pub fn with_shutdown(self, shutdown: CancellationToken) -> Self {
        Self { shutdown, ..self }
    }

    /// Flight detail and CSV read from `archive` the raw points PostgreSQL no longer holds.
    pub fn with_archive(self, archive: Arc<dyn archive::RawArchive>) -> Self {
        Self { archive: Some(archive), ..self }
    }
}

/// Why [`QueryState::new`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot connect to redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot create kafka producer: {0}")]
    Kafka(#[from] KafkaError),
}

/// The producer recompute requests use: durable like ingest's (`acks=all`, idempotent), with
/// the delivery timeout bounded so a request answers 503 rather than hanging.
pub fn flights_producer(base: &ClientConfig, ack_timeout: Duration) -> Result<FutureProducer, KafkaError> {
    base.clone()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", ack_timeout.as_millis().to_string())
        .create()
}

/// The query routes of CONTRACT.md §2 (users, drones, live, flights).
pub fn router(state: QueryState) -> Router {
    use routes::{auth, drones, flights, live};
    Router::new()
        .route("/v1/auth/signup", post(auth::signup))
        .route("/v1/auth/token", post(auth::token))
        .route("/v1/drones", get(drones::list).post(drones::create))
        .route("/v1/drones/{id}", get(drones::get))
        .route("/v1/drones/{id}/api-key", post(drones::rotate_key))
        .route("/v1/drones/{id}/live", get(live::latest))
        .route("/v1/drones/{id}/live/stream", get(live::drone_stream))
        .route("/v1/live/stream", get(live::fleet_stream))
        .route("/v1/drones/{id}/flights", get(flights::list))
        .route("/v1/flights/{id}", get(flights::detail))
        .route("/v1/flights/{id}/telemetry.csv", get(flights::csv))
        .route("/v1/flights/{id}/recompute", post(flights::recompute))
        .with_state(state)
        .merge(routes::dashboard::router())
}

/// RFC 3339 UTC with six fractional digits, the contract's one timestamp format.
pub(crate) fn format_time(time: chrono::DateTime<chrono::Utc>) -> String {
    schemas::format_ts(time.timestamp_micros())
}
