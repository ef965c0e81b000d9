//! The wire contract of Flightline: what crosses a process boundary, and nothing else.
//!
//! ```text
//! drone ──JSON packet──► ingest ──Avro TelemetryRecord──► telemetry.v1 ──► store / live / sessionizer
//!                                                              sessionizer ──Avro FlightEvent──► flights.v1 ──► analytics
//! ```
//!
//! Modules, each depending only on those listed before it (no cycles):
//!
//! - [`values`]: the value types of a packet's fields ([`Vec3`], [`Gps`], [`Attitude`],
//!   [`ExtraValue`]); a leaf.
//! - [`flight`]: the deterministic flight id of CONTRACT.md §3 and the one timestamp format
//!   ([`format_ts`]); a leaf.
//! - [`live`]: the names of the live view in Redis; a leaf.
//! - [`view`]: [`PacketJson`], the one JSON form of a packet the read side serves (the live view,
//!   a flight's raw points), so its shape is defined once.
//! - [`packet`]: the JSON telemetry packet of CONTRACT.md §1. [`parse_batch`] / [`parse_frame`]
//!   turn a request body into [`TelemetryPacket`]s that are valid by construction, or list every
//!   problem of every packet. Readers (the JSON one here, the Avro one in [`avro`]) fill a draft of
//!   the packet's fields as parsed, and one validation function applies every rule to it and is the
//!   only place a `TelemetryPacket` is made.
//! - [`record`]: the Rust types of the two Kafka messages, [`TelemetryRecord`] and
//!   [`FlightEvent`], and the record's JSON form ([`TelemetryRecord::to_json`], through [`view`]).
//! - [`avro`] (a folder: API, registry, fingerprints, hand-written writer and reader, resolution of
//!   other schema versions): their Avro single-object encoding ([`encode_telemetry`],
//!   [`decode_telemetry`], [`encode_flight_event`], [`decode_flight_event`]), and of the
//!   `TelemetryPacket` a drone may send in a binary WebSocket frame ([`encode_telemetry_packet`],
//!   [`decode_telemetry_packet`], which applies the packet's rules through the same validation as
//!   JSON). The `.avsc` files in `schemas/avro/` are the contract; every message names its writer
//!   schema by fingerprint and is resolved against the current reader schema, so old and new
//!   versions of the schemas interoperate. apache-avro's generic codec (`avro::generic`, the tests'
//!   reference and the bench's baseline) is compiled only for tests and with the `generic` feature.
//!
//! Only this crate knows Avro: other crates see Rust types and `Vec<u8>`. It does no I/O.
//! Timestamps are `i64` microseconds since the Unix epoch (UTC) throughout.
#![warn(missing_docs)]

pub mod avro;
pub mod flight;
pub mod live;
pub mod packet;
pub mod record;
pub mod values;
pub mod view;

pub use avro::{
    decode_flight_event, decode_telemetry, decode_telemetry_head, decode_telemetry_packet, encode_flight_event,
    encode_telemetry, encode_telemetry_into, encode_telemetry_packet, DecodeError, PacketDecodeError,
    FLIGHT_EVENT_SCHEMA, TELEMETRY_PACKET_SCHEMA, TELEMETRY_RECORD_SCHEMA,
};
pub use flight::{flight_id, format_ts, FLIGHT_ID_NAMESPACE};
pub use live::{live_channel, live_key, LIVE_CHANNEL_PREFIX};
pub use packet::{
    parse_batch, parse_frame, parse_packet_value, BatchError, FieldError, TelemetryPacket, MAX_EXTRA_BYTES,
    MAX_EXTRA_KEYS, MAX_FUTURE_US, MAX_PACKETS_PER_BATCH,
};
pub use record::{FlightClosed, FlightEvent, FlightRule, RecomputeRequested, TelemetryHead, TelemetryRecord};
pub use values::{Attitude, ExtraValue, Gps, Vec3};
pub use view::{ExtraJson, PacketJson};
