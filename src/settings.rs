//! Configuration: built-in defaults (the local stack of `make run`), then an optional TOML file,
//! then environment variables. Unknown TOML keys are an error; secrets never reach logs or
//! `flightline config`.

use std::path::PathBuf;

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The environment variables CONTRACT.md §5 names, each mapped onto a settings key.
const PLAIN_ENV: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("KAFKA_BROKERS", "kafka_brokers"),
    ("REDIS_URL", "redis_url"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_endpoint"),
];

/// Keys that may also be set as `FLIGHTLINE_<KEY>`.
const PREFIXED_ENV: &[&str] = &[
    "http_addr",
    "jwt_secret",
    "partitions",
    "store_batch_max",
    "store_batch_wait_ms",
    "ingest_ack_timeout_ms",
    "ingest_rate_hz",
    "ingest_rate_burst",
    "topic_prefix",
    "signup_enabled",
    "jwt_ttl_s",
];

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP roles (ingest, query) listen on.
    pub http_addr: String,
    pub database_url: String,
    /// Comma-separated bootstrap servers.
    pub kafka_brokers: String,
    pub redis_url: String,
    /// HS256 secret for user tokens.
    pub jwt_secret: String,
    /// OTLP endpoint for traces; empty disables export.
    pub otel_endpoint: String,
    /// Partitions of the topics this deployment creates (used by `make stack-up` and tests).
    pub partitions: i32,
    /// Most messages the store group writes in one transaction.
    pub store_batch_max: usize,
    /// How long the store group waits to fill a batch once a first message is in.
    pub store_batch_wait_ms: u64,
    /// How long ingest waits for Kafka to acknowledge a request before answering 503.
    pub ingest_ack_timeout_ms: u64,
    /// Sustained packets per second one drone may send to one ingest instance (429 beyond).
    pub ingest_rate_hz: f64,
    /// Packets one drone may send at once above that rate (at least one full batch, 500).
    pub ingest_rate_burst: u32,
    /// Prepended to every topic and consumer group name, so several deployments (or test runs)
    /// can share one Kafka cluster.
    pub topic_prefix: String,
    /// Whether `POST /v1/auth/signup` creates users.
    pub signup_enabled: bool,
    /// Lifetime of user access tokens, in seconds.
    pub jwt_ttl_s: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:8080".into(),
            database_url: "postgres://flightline:flightline@127.0.0.1:5432/flightline".into(),
            kafka_brokers: "127.0.0.1:9092".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            jwt_secret: "flightline-local-dev-secret".into(),
            otel_endpoint: String::new(),
            partitions: 6,
            store_batch_max: 5000,
            store_batch_wait_ms: 20,
            ingest_ack_timeout_ms: 5000,
            ingest_rate_hz: 1000.0,
            ingest_rate_burst: 10_000,
            topic_prefix: String::new(),
            signup_enabled: true,
            jwt_ttl_s: 3600,
        }
    }
}

impl Settings {
    /// Loads the layered configuration. The TOML file is `FLIGHTLINE_CONFIG` when set (and must
    /// then exist), else `./flightline.toml` when present.
    pub fn load() -> anyhow::Result<Self> {
        let explicit = std::env::var_os("FLIGHTLINE_CONFIG").map(PathBuf::from);
        if let Some(path) = &explicit {
            anyhow::ensure!(path.is_file(), "config file {} does not exist", path.display());
        }
        let file = explicit.unwrap_or_else(|| PathBuf::from("flightline.toml"));
        let figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(&file))
            .merge(Env::raw().only(&PLAIN_ENV.iter().map(|(env, _)| *env).collect::<Vec<_>>()).map(|env| {
                let key = PLAIN_ENV
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(env.as_str()))
                    .map_or(env.as_str(), |(_, key)| key);
                key.to_owned().into()
            }))
            .merge(Env::prefixed("FLIGHTLINE_").only(PREFIXED_ENV));
        figment.extract().with_context(|| format!("invalid configuration (file {})", file.display()))
    }

    /// Refuses the built-in development JWT secret anywhere but on a loopback address: a
    /// deployment reachable from elsewhere must not sign tokens with a published secret.
    pub fn check_jwt_secret(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.jwt_secret.is_empty(), "FLIGHTLINE_JWT_SECRET must not be empty");
        let loopback = self
            .http_addr
            .parse::<std::net::SocketAddr>()
            .map(|addr| addr.ip().is_loopback())
            .unwrap_or_else(|_| self.http_addr.starts_with("localhost:"));
        anyhow::ensure!(
            loopback || self.jwt_secret != Settings::default().jwt_secret,
            "FLIGHTLINE_JWT_SECRET is the built-in development secret; set your own before listening on {}",
            self.http_addr
        );
        Ok(())
    }

    /// A topic or consumer group name with this deployment's prefix.
    pub fn kafka_name(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }

    /// The configuration as JSON with secrets replaced, for `flightline config`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("settings serialise");
        value["jwt_secret"] = "<redacted>".into();
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
        let configured = Settings { jwt_secret: "a-real-secret".into(), ..public };
        assert!(configured.check_jwt_secret().is_ok());
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
        assert!(!json.contains(&settings.jwt_secret));
        assert!(!json.contains(":flightline@"));
    }
}
