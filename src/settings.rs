//! Configuration: built-in defaults (the local stack of `make run`), then an optional TOML file,
//! then environment variables. Unknown TOML keys are an error; secrets never reach logs or
//! `flightline config`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use schemas::FlightRule;
use serde::{Deserialize, Serialize};

/// Every environment variable and the settings key it sets. CONTRACT.md §5 names the plain
/// ones; the rest are `FLIGHTLINE_` + the key, with the role's name before role keys (kept from
/// when the configuration was flat, so existing deployments keep working).
const ENV: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("KAFKA_BROKERS", "kafka_brokers"),
    ("REDIS_URL", "redis_url"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_endpoint"),
    ("FLIGHTLINE_HTTP_ADDR", "http_addr"),
    ("FLIGHTLINE_PARTITIONS", "partitions"),
    ("FLIGHTLINE_TOPIC_PREFIX", "topic_prefix"),
    ("FLIGHTLINE_SHUTDOWN_TIMEOUT_S", "shutdown_timeout_s"),
    ("FLIGHTLINE_HTTP_HEADER_TIMEOUT_S", "http_header_timeout_s"),
    ("FLIGHTLINE_HTTP_REQUEST_TIMEOUT_S", "http_request_timeout_s"),
    ("FLIGHTLINE_HTTP_MAX_CONNECTIONS", "http_max_connections"),
    ("FLIGHTLINE_METRICS_ADDR", "metrics_addr"),
    ("FLIGHTLINE_INGEST_POOL_SIZE", "ingest.pool_size"),
    ("FLIGHTLINE_INGEST_ACK_TIMEOUT_MS", "ingest.ack_timeout_ms"),
    ("FLIGHTLINE_INGEST_RATE_HZ", "ingest.rate_hz"),
    ("FLIGHTLINE_INGEST_RATE_BURST", "ingest.rate_burst"),
    ("FLIGHTLINE_INGEST_MAX_IN_FLIGHT_PACKETS", "ingest.max_in_flight_packets"),
    ("FLIGHTLINE_INGEST_KAFKA_LINGER_MS", "ingest.kafka_linger_ms"),
    ("FLIGHTLINE_JWT_SECRET", "query.jwt_secret"),
    ("FLIGHTLINE_JWT_TTL_S", "query.jwt_ttl_s"),
    ("FLIGHTLINE_SIGNUP_ENABLED", "query.signup_enabled"),
    ("FLIGHTLINE_QUERY_POOL_SIZE", "query.pool_size"),
    ("FLIGHTLINE_LOGIN_FAILURE_BURST", "query.login_failure_burst"),
    ("FLIGHTLINE_LOGIN_FAILURES_PER_S", "query.login_failures_per_s"),
    ("FLIGHTLINE_STORE_BATCH_MAX", "store.batch_max"),
    ("FLIGHTLINE_STORE_BATCH_WAIT_MS", "store.batch_wait_ms"),
    ("FLIGHTLINE_STORE_POOL_SIZE", "store.pool_size"),
    ("FLIGHTLINE_RAW_RETENTION_DAYS", "store.raw_retention_days"),
    ("FLIGHTLINE_LIVE_BATCH_MAX", "live.batch_max"),
    ("FLIGHTLINE_LIVE_BATCH_WAIT_MS", "live.batch_wait_ms"),
    ("FLIGHTLINE_SESSIONIZER_BATCH_MAX", "sessionizer.batch_max"),
    ("FLIGHTLINE_SESSIONIZER_BATCH_WAIT_MS", "sessionizer.batch_wait_ms"),
    ("FLIGHTLINE_FLIGHT_THROTTLE_THRESHOLD", "sessionizer.flight_throttle_threshold"),
    ("FLIGHTLINE_FLIGHT_IDLE_S", "sessionizer.flight_idle_s"),
    ("FLIGHTLINE_FLIGHT_GAP_S", "sessionizer.flight_gap_s"),
    ("FLIGHTLINE_FLIGHT_MIN_S", "sessionizer.flight_min_s"),
    ("FLIGHTLINE_ANALYTICS_BATCH_MAX", "analytics.batch_max"),
    ("FLIGHTLINE_ANALYTICS_POOL_SIZE", "analytics.pool_size"),
    ("FLIGHTLINE_ARCHIVE_NODES", "archive_nodes"),
    ("FLIGHTLINE_ARCHIVE_KEYSPACE", "archive_keyspace"),
    ("FLIGHTLINE_ARCHIVE_CONSISTENCY", "archive.consistency"),
    ("FLIGHTLINE_ARCHIVE_CONCURRENCY", "archive.concurrency"),
    ("FLIGHTLINE_ARCHIVE_BATCH_MAX", "archive.batch_max"),
    ("FLIGHTLINE_ARCHIVE_BATCH_WAIT_MS", "archive.batch_wait_ms"),
    ("FLIGHTLINE_ARCHIVE_REPLICATION_STRATEGY", "archive.replication_strategy"),
    ("FLIGHTLINE_ARCHIVE_REPLICATION_FACTOR", "archive.replication_factor"),
];

/// The whole configuration: what every role shares at the top, one section per role.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP roles (ingest, query) listen on.
    pub http_addr: String,
    pub database_url: String,
    /// Comma-separated bootstrap servers.
    pub kafka_brokers: String,
    pub redis_url: String,
    /// OTLP endpoint for traces; empty disables export.
    pub otel_endpoint: String,
    /// Partitions of the topics this deployment creates (used by `make stack-up` and tests).
    pub partitions: i32,
    /// Prepended to every topic and consumer group name, so several deployments (or test runs)
    /// can share one Kafka cluster.
    pub topic_prefix: String,
    /// After SIGTERM, how long the roles may drain (answer requests in flight, finish and commit
    /// the batch in flight) before what is left is cut off.
    pub shutdown_timeout_s: f64,
    /// A client must send a request's whole head within this many seconds (slowloris).
    pub http_header_timeout_s: f64,
    /// A request (its body read included) must be answered within this many seconds (408).
    pub http_request_timeout_s: f64,
    /// Connections one HTTP process serves at once; further clients wait to be accepted.
    pub http_max_connections: usize,
    /// Address of a separate `/metrics` listener (Prometheus text); empty: none. HTTP roles also
    /// serve `/metrics` on `http_addr`; a `process` role has only this one.
    pub metrics_addr: String,
    /// CQL contact points of the archive (`host[:port]`, comma-separated); empty: no archive
    /// (the `archive` group is then refused, `all` leaves it out and `migrate` skips it).
    pub archive_nodes: String,
    /// Keyspace of the archive table.
    pub archive_keyspace: String,
    pub ingest: IngestSettings,
    pub query: QuerySettings,
    pub store: StoreSettings,
    pub live: ConsumerSettings,
    pub sessionizer: SessionizerSettings,
    pub analytics: AnalyticsSettings,
    pub archive: ArchiveSettings,
}

/// `[archive]`: raw telemetry into the CQL archive (`archive_nodes`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveSettings {
    pub batch_max: usize,
    pub batch_wait_ms: u64,
    /// Level every write must reach before the batch's offsets are committed.
    pub consistency: String,
    /// Writes (unlogged batches of one partition) in flight at once.
    pub concurrency: usize,
    /// Used when `flightline migrate` creates the keyspace: `SimpleStrategy` or
    /// `NetworkTopologyStrategy`.
    pub replication_strategy: String,
    /// Replicas (per datacenter with `NetworkTopologyStrategy`).
    pub replication_factor: u32,
}

/// `[ingest]`: the telemetry API.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// PostgreSQL connections of the HTTP server (API key lookups).
    pub pool_size: u32,
    /// How long ingest waits for Kafka to acknowledge a request before answering 503.
    pub ack_timeout_ms: u64,
    /// Sustained packets per second one drone may send to one ingest instance (429 beyond).
    pub rate_hz: f64,
    /// Packets one drone may send at once above that rate (at least one full batch, 500).
    pub rate_burst: u32,
    /// Packets one instance may have on their way to Kafka at once; beyond, 503 at once.
    pub max_in_flight_packets: usize,
    /// How long the producer gathers messages into one produce request (librdkafka `linger.ms`).
    pub kafka_linger_ms: u64,
}

/// `[query]`: the read side and user accounts.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerySettings {
    /// HS256 secret for user tokens.
    pub jwt_secret: String,
    /// Lifetime of user access tokens, in seconds.
    pub jwt_ttl_s: u64,
    /// Whether `POST /v1/auth/signup` creates users.
    pub signup_enabled: bool,
    /// PostgreSQL connections of the HTTP server (shared with ingest in one process).
    pub pool_size: u32,
    /// Failed logins one client address may make at once before `POST /v1/auth/token` answers 429.
    pub login_failure_burst: u32,
    /// Failed logins per second an address regains after that.
    pub login_failures_per_s: f64,
}

/// How a consumer group batches: at most `batch_max` messages, filled for `batch_wait_ms`
/// after the first one arrived.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    pub batch_max: usize,
    pub batch_wait_ms: u64,
}

/// `[store]`: raw telemetry into PostgreSQL.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Most messages written in one transaction.
    pub batch_max: usize,
    /// How long to fill a batch once a first message is in.
    pub batch_wait_ms: u64,
    pub pool_size: u32,
    /// Full UTC days of raw telemetry kept in PostgreSQL before today; older daily partitions
    /// are dropped (reads then fall back to the archive). 0: unlimited.
    pub raw_retention_days: u32,
}

/// `[sessionizer]`: flights out of the log, and the flight rule of CONTRACT.md §3.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionizerSettings {
    pub batch_max: usize,
    pub batch_wait_ms: u64,
    /// T: throttle at or above which the drone is flying.
    pub flight_throttle_threshold: f64,
    /// W: seconds of throttle below T that close a flight.
    pub flight_idle_s: f64,
    /// G: seconds between packets (or of silence) that close a flight.
    pub flight_gap_s: f64,
    /// Shortest flight kept, seconds.
    pub flight_min_s: f64,
}

/// `[analytics]`: per-flight metrics.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsSettings {
    /// Flight events handed over at once.
    pub batch_max: usize,
    pub pool_size: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:8080".into(),
            database_url: "postgres://flightline:flightline@127.0.0.1:5432/flightline".into(),
            kafka_brokers: "127.0.0.1:9092".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            otel_endpoint: String::new(),
            partitions: 6,
            topic_prefix: String::new(),
            shutdown_timeout_s: 10.0,
            http_header_timeout_s: 10.0,
            http_request_timeout_s: 30.0,
            http_max_connections: 4096,
            metrics_addr: String::new(),
            ingest: IngestSettings::default(),
            query: QuerySettings::default(),
            store: StoreSettings::default(),
            // Live is latency-bound: hand over whatever has arrived, without waiting to fill.
            live: ConsumerSettings { batch_max: 2000, batch_wait_ms: 0 },
            sessionizer: SessionizerSettings::default(),
            analytics: AnalyticsSettings::default(),
            archive_nodes: String::new(),
            archive_keyspace: "flightline".into(),
            archive: ArchiveSettings::default(),
        }
    }
}

impl Default for ArchiveSettings {
    fn default() -> Self {
        Self {
            batch_max: 5000,
            batch_wait_ms: 20,
            consistency: "LOCAL_QUORUM".into(),
            concurrency: 64,
            replication_strategy: "SimpleStrategy".into(),
            replication_factor: 1,
        }
    }
}

impl ArchiveSettings {
    pub fn consumer(&self) -> ConsumerSettings {
        ConsumerSettings { batch_max: self.batch_max, batch_wait_ms: self.batch_wait_ms }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            pool_size: 16,
            ack_timeout_ms: 5000,
            rate_hz: 1000.0,
            rate_burst: 10_000,
            max_in_flight_packets: 50_000,
            kafka_linger_ms: 2,
        }
    }
}

impl Default for QuerySettings {
    fn default() -> Self {
        Self {
            jwt_secret: DEV_JWT_SECRET.into(),
            jwt_ttl_s: 3600,
            signup_enabled: true,
            pool_size: 16,
            login_failure_burst: 10,
            login_failures_per_s: 0.1,
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self { batch_max: 5000, batch_wait_ms: 20, pool_size: 4, raw_retention_days: 0 }
    }
}

impl Default for SessionizerSettings {
    fn default() -> Self {
        let rule = FlightRule::default();
        Self {
            batch_max: 5000,
            batch_wait_ms: 20,
            flight_throttle_threshold: rule.throttle_threshold,
            flight_idle_s: rule.idle_window_us as f64 / 1e6,
            flight_gap_s: rule.gap_us as f64 / 1e6,
            flight_min_s: rule.min_duration_us as f64 / 1e6,
        }
    }
}

impl SessionizerSettings {
    /// The configured flight rule, checked.
    pub fn flight_rule(&self) -> anyhow::Result<FlightRule> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.flight_throttle_threshold),
            "sessionizer.flight_throttle_threshold must be within 0–1, not {}",
            self.flight_throttle_threshold
        );
        let seconds = |name: &str, value: f64| -> anyhow::Result<i64> {
            anyhow::ensure!(
                value.is_finite() && value >= 0.0,
                "sessionizer.{name} must be a non-negative number of seconds, not {value}"
            );
            Ok((value * 1e6).round() as i64)
        };
        Ok(FlightRule {
            throttle_threshold: self.flight_throttle_threshold,
            idle_window_us: seconds("flight_idle_s", self.flight_idle_s)?,
            gap_us: seconds("flight_gap_s", self.flight_gap_s)?,
            min_duration_us: seconds("flight_min_s", self.flight_min_s)?,
        })
    }

    pub fn consumer(&self) -> ConsumerSettings {
        ConsumerSettings { batch_max: self.batch_max, batch_wait_ms: self.batch_wait_ms }
    }
}

impl StoreSettings {
    pub fn consumer(&self) -> ConsumerSettings {
        ConsumerSettings { batch_max: self.batch_max, batch_wait_ms: self.batch_wait_ms }
    }
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self { batch_max: 100, pool_size: 4 }
    }
}

/// The built-in development secret: refused off loopback (see [`Settings::check_jwt_secret`]).
const DEV_JWT_SECRET: &str = "flightline-local-dev-secret";

impl Settings {
    /// Loads the layered configuration. The TOML file is `FLIGHTLINE_CONFIG` when set (and must
    /// then exist), else `./flightline.toml` when present.
    pub fn load() -> anyhow::Result<Self> {
        let explicit = std::env::var_os("FLIGHTLINE_CONFIG").map(PathBuf::from);
        if let Some(path) = &explicit {
            anyhow::ensure!(path.is_file(), "config file {} does not exist", path.display());
        }
        let file = explicit.unwrap_or_else(|| PathBuf::from("flightline.toml"));
        // A dotted key (`store.batch_max`) lands in its role's section.
        let env = Env::raw().only(&ENV.iter().map(|(env, _)| *env).collect::<Vec<_>>()).map(|env| {
            let key = ENV
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(env.as_str()))
                .map_or(env.as_str(), |(_, key)| key);
            key.to_owned().into()
        });
        Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(&file))
            .merge(env)
            .extract()
            .with_context(|| format!("invalid configuration (file {})", file.display()))
    }

    /// Refuses the built-in development JWT secret anywhere but on a loopback address: a
    /// deployment reachable from elsewhere must not sign tokens with a published secret.
    pub fn check_jwt_secret(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.query.jwt_secret.is_empty(), "FLIGHTLINE_JWT_SECRET must not be empty");
        let loopback = self
            .http_addr
            .parse::<std::net::SocketAddr>()
            .map(|addr| addr.ip().is_loopback())
            .unwrap_or_else(|_| self.http_addr.starts_with("localhost:"));
        anyhow::ensure!(
            loopback || self.query.jwt_secret != DEV_JWT_SECRET,
            "FLIGHTLINE_JWT_SECRET is the built-in development secret; set your own before listening on {}",
            self.http_addr
        );
        Ok(())
    }

    /// The drain deadline after SIGTERM.
    pub fn shutdown_timeout(&self) -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(self.shutdown_timeout_s)
            .map_err(|_| anyhow::anyhow!("shutdown_timeout_s must be a non-negative number of seconds"))
    }

    /// The HTTP server's bounds.
    pub fn serve_limits(&self) -> anyhow::Result<crate::http::ServeLimits> {
        let seconds = |name: &str, value: f64| {
            Duration::try_from_secs_f64(value)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| anyhow::anyhow!("{name} must be a positive number of seconds, not {value}"))
        };
        anyhow::ensure!(self.http_max_connections >= 1, "http_max_connections must be at least 1");
        Ok(crate::http::ServeLimits {
            header_timeout: seconds("http_header_timeout_s", self.http_header_timeout_s)?,
            request_timeout: seconds("http_request_timeout_s", self.http_request_timeout_s)?,
            max_connections: self.http_max_connections,
            drain: self.shutdown_timeout()?,
        })
    }

    /// The archive's configuration, or `None` when `archive_nodes` is empty.
    pub fn archive(&self) -> anyhow::Result<Option<processors::archive::ArchiveConfig>> {
        use processors::archive::{ArchiveConfig, Replication};
        let nodes = ArchiveConfig::parse_nodes(&self.archive_nodes);
        if nodes.is_empty() {
            return Ok(None);
        }
        anyhow::ensure!(self.archive.concurrency >= 1, "archive.concurrency must be at least 1");
        Ok(Some(ArchiveConfig {
            nodes,
            keyspace: self.archive_keyspace.clone(),
            consistency: ArchiveConfig::parse_consistency(&self.archive.consistency)?,
            concurrency: self.archive.concurrency,
            replication: Replication {
                strategy: self.archive.replication_strategy.clone(),
                factor: self.archive.replication_factor,
            },
        }))
    }

    /// A topic or consumer group name with this deployment's prefix.
    pub fn kafka_name(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// The configuration as JSON with secrets replaced, for `flightline config`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("settings serialise");
        value["query"]["jwt_secret"] = "<redacted>".into();
        value["database_url"] = redact_url_password(&self.database_url).into();
        value["redis_url"] = redact_url_password(&self.redis_url).into();
        value
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:<redacted>@host/db`.
fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_secret_is_refused_off_loopback() {
        let local = Settings::default();
        assert!(local.check_jwt_secret().is_ok());
        let public = Settings { http_addr: "0.0.0.0:8080".into(), ..Settings::default() };
        assert!(public.check_jwt_secret().is_err());
        let mut configured = public;
        configured.query.jwt_secret = "a-real-secret".into();
        assert!(configured.check_jwt_secret().is_ok());
    }

    #[test]
    fn every_environment_variable_names_a_settings_key() {
        let defaults = serde_json::to_value(Settings::default()).unwrap();
        for (env, key) in ENV {
            let found = key.split('.').try_fold(&defaults, |value, part| value.get(part));
            assert!(found.is_some(), "{env} maps to {key}, which is not a settings key");
        }
    }

    #[test]
    fn the_default_flight_rule_is_the_contracts() {
        assert_eq!(SessionizerSettings::default().flight_rule().unwrap(), FlightRule::default());
        let bad = SessionizerSettings { flight_throttle_threshold: 1.5, ..SessionizerSettings::default() };
        assert!(bad.flight_rule().is_err());
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url_password("postgres://fl:pw@127.0.0.1:5432/db"),
            "postgres://fl:<redacted>@127.0.0.1:5432/db"
        );
        assert_eq!(redact_url_password("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn redacted_output_hides_the_jwt_secret() {
        let settings = Settings::default();
        let json = settings.redacted().to_string();
        assert!(!json.contains(&settings.query.jwt_secret));
        assert!(!json.contains(":flightline@"));
    }
}
