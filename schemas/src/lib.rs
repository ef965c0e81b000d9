//! The wire contract of Flightline: what crosses a process boundary, and nothing else.
//!
//! ```text
//! drone ──JSON packet──► ingest ──Avro TelemetryRecord──► telemetry.v1 ──► store / live / sessionizer
//!                                                              sessionizer ──Avro FlightEvent──► flights.v1 ──► analytics
//! ```
//!
//! - [`packet`]: the JSON telemetry packet of CONTRACT.md §1. [`parse_batch`] / [`parse_frame`]
//!   turn a request body into [`TelemetryPacket`]s that are valid by construction, or list every
//!   problem of every packet.
//! - [`record`]: the Rust types of the two Kafka messages, [`TelemetryRecord`] and
//!   [`FlightEvent`], and the JSON form the read side serves ([`TelemetryRecord::to_json`]).
//! - [`avro`]: their Avro single-object encoding ([`encode_telemetry`], [`decode_telemetry`],
//!   [`encode_flight_event`], [`decode_flight_event`]), and of the `TelemetryPacket` a drone may
//!   send in a binary WebSocket frame ([`encode_telemetry_packet`], [`decode_telemetry_packet`],
//!   which also applies every rule of the JSON packet). The `.avsc` files in `schemas/avro/` are
//!   the contract; every message names its writer schema by fingerprint and is resolved against
//!   the current reader schema, so old and new versions of the schemas interoperate.
//! - [`flight`]: the deterministic flight id of CONTRACT.md §3 and the timestamp format.
//!
//! Only this crate knows Avro: other crates see Rust types and `Vec<u8>`. It does no I/O.
//! Timestamps are `i64` microseconds since the Unix epoch (UTC) throughout.
#![warn(missing_docs)]

pub mod avro;
pub mod flight;
pub mod live;
pub mod packet;
pub mod record;

pub use avro::{
    decode_flight_event, decode_telemetry, decode_telemetry_packet, encode_flight_event, encode_telemetry,
    encode_telemetry_into, encode_telemetry_packet, DecodeError, PacketDecodeError, FLIGHT_EVENT_SCHEMA,
    TELEMETRY_PACKET_SCHEMA, TELEMETRY_RECORD_SCHEMA,
};
pub use flight::{flight_id, format_ts, FLIGHT_ID_NAMESPACE};
pub use live::{live_channel, live_key, LIVE_CHANNEL_PREFIX};
pub use packet::{
    parse_batch, parse_frame, parse_packet_value, BatchError, FieldError, TelemetryPacket, MAX_EXTRA_BYTES,
    MAX_EXTRA_KEYS, MAX_FUTURE_US, MAX_PACKETS_PER_BATCH,
};
pub use record::{
    Attitude, ExtraValue, FlightClosed, FlightEvent, FlightRule, Gps, RecomputeRequested, TelemetryRecord, Vec3,
};

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An Avro message could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A JSON request body or frame was rejected.
    #[error(transparent)]
    Batch(#[from] BatchError),
}

/// `Result` with this crate's [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;
