//! The consumer groups that turn the `telemetry.v1` log into what users see.
//!
//! Each group is an independent Kafka consumer group and process role (`flightline process
//! <group>`). They share one [`runner`] that owns the Kafka consumer, batching, the dead-letter
//! topic, offsets and shutdown; a processor is the thin I/O shell around its logic:
//!
//! - [`store`]: every packet into PostgreSQL `telemetry_raw`, exactly once, with the consumed
//!   offsets stored in the same transaction (they are also the watermark analytics waits for).
//! - [`live`]: the newest packet per drone in Redis and on its pub/sub channel, newest-wins.
//! - [`sessionizer`]: flights out of the log (a pure state machine in a snapshotting shell),
//!   appended to `flights.v1` as `FlightClosed`.
//! - [`analytics`]: on `flights.v1`, per-flight metrics with polars once the store watermark has
//!   passed the flight.
//! - [`archive`] (optional): every packet into a CQL time-series table (ScyllaDB, or Cassandra
//!   locally), idempotent by primary key, for fleets past one PostgreSQL.
//!
//! Processors talk to each other only through Kafka topics and the database. [`replay`] re-runs
//! a group's work over an event-time range of the log beside them (`flightline replay`).

pub mod analytics;
pub mod archive;
pub mod live;
pub mod offsets;
pub mod replay;
pub mod runner;
pub mod sessionizer;
pub mod store;

pub use runner::{run, Batch, Message, OffsetSeeds, Processor, Record, RunnerConfig};

/// A timestamp from µs since the epoch (validated packets are always in chrono's range).
pub(crate) fn timestamp(us: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros(us).unwrap_or(chrono::DateTime::UNIX_EPOCH)
}

/// Kafka topic names (DESIGN.md §3).
pub mod topics {
    pub const TELEMETRY: &str = "telemetry.v1";
    pub const FLIGHTS: &str = "flights.v1";
    pub const DLQ: &str = "telemetry.dlq";
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The CQL archive refused or could not take a request (retried: a node may be down).
    #[error("{0}")]
    Archive(String),
    /// A precondition is not met yet (e.g. the store watermark is behind): retried.
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("{0}")]
    Fatal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the runner does with a failed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryHint {
    /// An outage: try again with backoff, never move past the data.
    Retry,
    /// The sink refused the content of the batch: isolate the refused messages, dead-letter
    /// them, apply the rest.
    DeadLetter,
    /// Stop the role.
    Fatal,
}

impl Error {
    /// A sink that is down (PostgreSQL restarting, Kafka unreachable) is worth waiting for: the
    /// partition must not move past data it has not written. Everything else stops the role.
    pub fn retry_hint(&self) -> RetryHint {
        match self {
            Error::Database(sqlx::Error::Database(error)) if refuses_content(error.code().as_deref()) => {
                RetryHint::DeadLetter
            }
            Error::Database(_) | Error::Kafka(_) | Error::Redis(_) | Error::Archive(_) | Error::NotReady(_) => {
                RetryHint::Retry
            }
            Error::Fatal(_) => RetryHint::Fatal,
        }
    }
}

/// SQLSTATE classes 22 (data exception: a value the column cannot hold, e.g. U+0000 in text) and
/// 23 (integrity constraint violation) say the statement's data is at fault, not the server:
/// retrying the same rows can never succeed.
fn refuses_content(sqlstate: Option<&str>) -> bool {
    sqlstate.is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn data_exceptions_and_constraint_violations_refuse_content() {
        assert!(super::refuses_content(Some("22P05"))); // untranslatable character (U+0000 in jsonb)
        assert!(super::refuses_content(Some("22003"))); // numeric value out of range
        assert!(super::refuses_content(Some("23502"))); // not-null violation
        assert!(!super::refuses_content(Some("57P01"))); // admin shutdown: an outage
        assert!(!super::refuses_content(Some("40001"))); // serialization failure: retry
        assert!(!super::refuses_content(None));
    }
}
