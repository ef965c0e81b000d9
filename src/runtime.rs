//! Shared runtime plumbing for every role: logging, shutdown on SIGINT/SIGTERM, and connections
//! built from [`Settings`]. Library crates receive ready clients and a cancellation token; they
//! never read configuration themselves.

use std::time::Duration;

use anyhow::Context;
use rdkafka::ClientConfig;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,rdkafka=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Logging and, when an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT` or
/// `otel_endpoint` in the settings file), span export as `service_name` (see [`telemetry::init`]).
/// Call before the async runtime starts; dropping the guard flushes the last spans.
pub fn init_telemetry(service_name: &str) -> telemetry::Guard {
    // A broken configuration is reported by the command itself, which loads it again.
    let endpoint = Settings::load().map(|settings| settings.otel_endpoint).unwrap_or_default();
    telemetry::init(&telemetry::TelemetryConfig { service_name, endpoint: &endpoint })
}

/// The process-wide Prometheus recorder (installed on first use) whose handle renders `/metrics`.
pub fn metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("the metrics recorder is installed once")
        })
        .clone()
}

/// The root token: cancelled on the first SIGINT or SIGTERM. Every task gets a child of it.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        #[cfg(unix)]
        let terminate = term.recv();
        #[cfg(not(unix))]
        let terminate = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received, draining"),
            _ = terminate => tracing::info!("SIGTERM received, draining"),
        }
        trigger.cancel();
    });
    token
}

/// A PostgreSQL pool; fails with a clear message when the database does not answer.
pub async fn connect_postgres(settings: &Settings, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions =
        settings.database_url.parse().context("DATABASE_URL is not a valid PostgreSQL URL")?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {} (is the stack up? try `make stack-up`)",
                settings.redacted()["database_url"].as_str().unwrap_or_default()
            )
        })
}

/// A Redis connection that reconnects by itself.
pub async fn connect_redis(settings: &Settings) -> anyhow::Result<redis::aio::ConnectionManager> {
    let client = redis::Client::open(settings.redis_url.as_str()).context("REDIS_URL is not a valid Redis URL")?;
    tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
        .await
        .map_err(|_| anyhow::anyhow!("timed out connecting to Redis"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| {
            format!(
                "cannot connect to Redis at {} (is the stack up? try `make stack-up`)",
                settings.redacted()["redis_url"].as_str().unwrap_or_default()
            )
        })
}

/// The Kafka client settings every client shares.
pub fn kafka_base(settings: &Settings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.kafka_brokers).set("client.id", "flightline").set("log_level", "4");
    config
}

/// Applies the migrations in `migrations/` (embedded at build time).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("./migrations").run(pool).await.context("applying database migrations")
}
