//! The test kit every Flightline test uses (dev-only): isolation against the real local services,
//! the fixtures, and the clients that read what the product wrote.
//!
//! Tests run against the real PostgreSQL, Kafka and Redis of the local stack
//! (`deploy/local/stack.sh up`) and isolate themselves by random names, never by mocks
//! (`../shared/STYLE.md`, "Tests"):
//!
//! - [`env`]: where the services are: `DATABASE_URL`, `KAFKA_BROKERS`, `REDIS_URL`, defaulting to
//!   the local stack (the same defaults as `flightline`'s settings).
//! - [`TestDb`]: a database per test, randomly named, migrated from `migrations/`; dropped by
//!   [`TestDb::drop`] at the end of a passing test (a failing one leaves it to look at).
//!   [`TestDb::connect`] opens another pool on it, for a task that plays a process of its own.
//! - [`Topics`]: topics per test under a random prefix (`fltest.<uuid>.`), created and deleted with
//!   the admin client; [`end_offsets`], [`message_count`], [`read_messages`] and
//!   [`read_telemetry`] read a topic, [`append_records`] writes to it as ingest would.
//!   No test needs a Redis key prefix: every key and channel is named by a random drone id.
//! - [`Api`]: a client of the public HTTP API at a base URL (a test's query or ingest server, or a
//!   whole `flightline all`): users, drones, telemetry; [`assert_error`] / [`expect_error`] check
//!   the contract's error body.
//! - [`SseReader`]: Server-Sent Events out of a streaming response.
//! - Fixtures: [`packet_at`], [`packets_from`], [`past_ms`], [`full_packet`], [`record_of`],
//!   [`full_record`]; the recorded real flights: [`recorded_path`], [`recorded_streams`],
//!   [`read_recorded`], [`read_recorded_as`].
//!
//! What needs a crate under test (spawning the ingest router, the query app, the `flightline`
//! binary) stays in the suite's own `common` module, built on this crate: testkit depends only on
//! `schemas` and client libraries, so linking it never links the product.

pub mod env;

mod api;
mod db;
mod fixtures;
mod kafka;
mod recorded;
mod sse;

pub use api::{assert_error, expect_error, Api, User};
pub use db::{url_of as database_url_of, TestDb};
pub use fixtures::{full_packet, full_record, packet_at, packets_from, past_ms, record_of};
pub use kafka::{
    append_records, delete_topics, end_offsets, kafka_config, message_count, read_messages, read_telemetry, Topics,
};
pub use recorded::{flights_dir, read_recorded, read_recorded_as, recorded_path, recorded_streams};
pub use sse::{SseItem, SseReader};
