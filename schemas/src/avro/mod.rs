//! Avro single-object encoding of [`TelemetryRecord`] and [`FlightEvent`].
//!
//! A message is `C3 01`, then the 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint of the
//! writer schema's Parsing Canonical Form, then the Avro binary datum. The fingerprint is what
//! makes schema evolution work: a reader looks the writer schema up in a registry of every known
//! version of that schema (the current `.avsc` files plus the superseded ones kept in
//! `avro/history/`, embedded at build time) and resolves it against its current reader schema.
//!
//! Hot paths do not go through apache-avro's generic `Value`: records are encoded by a
//! hand-written writer, and decoded by a hand-written reader when the writer schema is the current
//! one (the normal case). Both are verified byte for byte and value for value against apache-avro
//! in the tests. Any other known writer schema goes through apache-avro's schema resolution.
//! (The hand-written reader is also stricter: apache-avro 0.21 reads a union at the end of the
//! input as its first branch, so it would accept a message cut just before a trailing optional
//! field.)
//!
//! The fingerprints are computed here, not with apache-avro 0.21's `Schema::fingerprint`: that
//! one keeps `{"type":"long"}` for a logical type where the specification (and Java, Python and
//! fastavro) reduce it to `"long"`, so its fingerprints would not match other implementations'.
//!
//! A binary `TelemetryPacket` is decoded into the same draft the JSON reader fills
//! (`crate::packet::PacketDraft`) and checked by the same rules, so it is refused with the same
//! field errors as the equivalent JSON.
//!
//! Layout: `mod.rs` holds the API and the message header; `registry.rs` the known schema versions
//! and apache-avro's resolution; `fingerprint.rs` the canonical form and its CRC-64; `writer.rs`
//! and `reader.rs` the hand-written codec; `resolved.rs` the conversion of resolved apache-avro
//! values to Rust types; `generic.rs` apache-avro's generic codec, compiled only for the tests and
//! with the `generic` feature (the bench example); `tests.rs` the codec's tests.

use std::borrow::Cow;
use std::collections::BTreeMap;

use uuid::Uuid;

use crate::packet::{FieldError, GpsDraft, PacketDraft, Slot, TelemetryPacket};
use crate::record::{FlightEvent, TelemetryHead, TelemetryRecord};
use crate::values::{Attitude, ExtraValue, Gps, Vec3};

mod fingerprint;
#[cfg(any(test, feature = "generic"))]
#[doc(hidden)]
pub mod generic;
mod reader;
mod registry;
mod resolved;
#[cfg(test)]
mod tests;
mod writer;

use reader::{read_flight_event_datum, read_telemetry_datum};
use registry::{Family, FLIGHT_EVENT, TELEMETRY, TELEMETRY_PACKET};
use resolved::{flight_event_from_value, telemetry_from_value};
use writer::{put_long, telemetry_size_hint, write_flight_event_datum, write_telemetry_datum, write_telemetry_tail};

/// The current `TelemetryRecord` schema (`avro/telemetry_record.avsc`).
pub const TELEMETRY_RECORD_SCHEMA: &str = include_str!("../../avro/telemetry_record.avsc");
/// The current `FlightEvent` schema (`avro/flight_event.avsc`).
pub const FLIGHT_EVENT_SCHEMA: &str = include_str!("../../avro/flight_event.avsc");
/// The current `TelemetryPacket` schema (`avro/telemetry_packet.avsc`): what a drone sends in a
/// binary WebSocket frame.
pub const TELEMETRY_PACKET_SCHEMA: &str = include_str!("../../avro/telemetry_packet.avsc");

const MARKER: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;
const TELEMETRY_NAME: &str = "flightline.TelemetryRecord";
const FLIGHT_EVENT_NAME: &str = "flightline.FlightEvent";
const TELEMETRY_PACKET_NAME: &str = "flightline.TelemetryPacket";

/// Why a message could not be decoded. Fingerprints are shown as the hex of the 8 bytes that
/// follow the marker, in message order (the form fastavro's `fingerprint()` prints).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the 10-byte header.
    #[error("message too short for an avro single-object header: {len} bytes")]
    TooShort {
        /// Length of the message.
        len: usize,
    },
    /// Does not start with `C3 01`.
    #[error("not an avro single-object message: starts with {found:02x?} instead of [c3, 01]")]
    BadMarker {
        /// The first two bytes.
        found: [u8; 2],
    },
    /// The writer schema is not in the registry (a newer writer this build does not know, or not
    /// a Flightline message).
    #[error("unknown writer schema fingerprint {fingerprint}")]
    UnknownSchema {
        /// The fingerprint in hex.
        fingerprint: String,
    },
    /// A message of the other type (e.g. a flight event given to [`decode_telemetry`]).
    #[error("message has schema {found}, expected {expected}")]
    WrongSchema {
        /// The schema the caller asked for.
        expected: &'static str,
        /// The schema the message was written with.
        found: &'static str,
    },
    /// The datum does not match its writer schema (truncated, corrupt, trailing bytes).
    #[error("malformed avro datum: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The datum is valid for its writer schema, but cannot be read with the current reader schema
    /// (e.g. a flight event variant this build does not know).
    #[error("cannot resolve writer schema {fingerprint} against the reader schema: {reason}")]
    Incompatible {
        /// The writer schema's fingerprint in hex.
        fingerprint: String,
        /// apache-avro's explanation.
        reason: String,
    },
}

/// Encodes a telemetry record as an Avro single-object message with the current schema.
pub fn encode_telemetry(record: &TelemetryRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(telemetry_size_hint(record));
    encode_telemetry_into(record, &mut out);
    out
}

/// Like [`encode_telemetry`], appending to `out`, so a caller can reuse one buffer.
pub fn encode_telemetry_into(record: &TelemetryRecord, out: &mut Vec<u8>) {
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&TELEMETRY.current);
    write_telemetry_datum(record, out);
}

/// Decodes a telemetry message written with any known version of the schema.
pub fn decode_telemetry(bytes: &[u8]) -> Result<TelemetryRecord, DecodeError> {
    decode_telemetry_with(&TELEMETRY, bytes)
}

/// What the flight rule needs of a telemetry message (drone, ts, received_at, throttle). It accepts
/// exactly the messages [`decode_telemetry`] accepts (the whole datum is checked) but builds
/// nothing else: the sessionizer and its replay read every packet, and the `extra` map's
/// allocations were most of their decode cost.
pub fn decode_telemetry_head(bytes: &[u8]) -> Result<TelemetryHead, DecodeError> {
    let (version, datum) = split_header(bytes)?;
    if version == TELEMETRY.current {
        return reader::read_telemetry_head_datum(datum);
    }
    let record = decode_telemetry(bytes)?;
    Ok(TelemetryHead {
        drone_id: record.drone_id,
        ts_us: record.ts_us,
        received_at_us: record.received_at_us,
        throttle: record.throttle,
    })
}

/// Encodes a packet as an Avro single-object `TelemetryPacket` message with the current schema
/// (what a drone sends in a binary WebSocket frame).
pub fn encode_telemetry_packet(packet: &TelemetryPacket) -> Vec<u8> {
    // The packet's fields are the record's tail; drone_id and received_at are not written.
    let record = TelemetryRecord::from_packet(Uuid::nil(), 0, packet.clone());
    let mut out = Vec::with_capacity(telemetry_size_hint(&record));
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&TELEMETRY_PACKET.current);
    put_long(&mut out, record.ts_us);
    write_telemetry_tail(&record, &mut out);
    out
}

/// Why a binary `TelemetryPacket` frame was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PacketDecodeError {
    /// Not a decodable `TelemetryPacket` message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Decoded, but breaks the rules of CONTRACT.md §1 (every problem listed, index 0).
    #[error("{} invalid field(s) in the packet", .0.len())]
    Invalid(Vec<FieldError>),
}

/// Decodes a `TelemetryPacket` message written with any known version of its schema and checks
/// it against every rule of CONTRACT.md §1, as [`crate::parse_frame`] does for JSON (`now_us`
/// bounds `ts` in the future).
pub fn decode_telemetry_packet(bytes: &[u8], now_us: i64) -> Result<TelemetryPacket, PacketDecodeError> {
    let (version, datum) = split_header(bytes)?;
    let (ts_us, tail) = if version == TELEMETRY_PACKET.current {
        reader::read_packet_datum(datum)?
    } else {
        resolved::packet_from_value(TELEMETRY_PACKET.resolve(version, datum)?)?
    };
    crate::packet::parse_draft(packet_draft(ts_us, tail), now_us).map_err(PacketDecodeError::Invalid)
}

/// Encodes a flight event as an Avro single-object message with the current schema.
pub fn encode_flight_event(event: &FlightEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(192);
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&FLIGHT_EVENT.current);
    write_flight_event_datum(event, &mut out);
    out
}

/// Decodes a flight event message written with any known version of the schema.
pub fn decode_flight_event(bytes: &[u8]) -> Result<FlightEvent, DecodeError> {
    decode_flight_event_with(&FLIGHT_EVENT, bytes)
}

/// Splits a single-object message into the writer fingerprint and the datum.
fn split_header(bytes: &[u8]) -> Result<([u8; 8], &[u8]), DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort { len: bytes.len() });
    }
    let (header, datum) = bytes.split_at(HEADER_LEN);
    if header[..2] != MARKER {
        return Err(DecodeError::BadMarker { found: [header[0], header[1]] });
    }
    let mut version = [0; 8];
    version.copy_from_slice(&header[2..]);
    Ok((version, datum))
}

fn decode_telemetry_with(family: &Family, bytes: &[u8]) -> Result<TelemetryRecord, DecodeError> {
    let (version, datum) = split_header(bytes)?;
    // The hand-written reader knows exactly the compiled-in schema, so it serves only messages
    // written with it, and only when that is also the reader schema.
    if version == family.current && version == TELEMETRY.current {
        return read_telemetry_datum(datum);
    }
    telemetry_from_value(family.resolve(version, datum)?)
}

fn decode_flight_event_with(family: &Family, bytes: &[u8]) -> Result<FlightEvent, DecodeError> {
    let (version, datum) = split_header(bytes)?;
    if version == family.current && version == FLIGHT_EVENT.current {
        return read_flight_event_datum(datum);
    }
    flight_event_from_value(family.resolve(version, datum)?)
}

fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::Malformed { reason: reason.into() }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The fields a `TelemetryRecord` and a `TelemetryPacket` share, from `position` to `extra`, as
/// decoded (by [`reader`] or from a resolved value).
struct Tail {
    position: Option<Vec3>,
    gps: Option<Gps>,
    velocity: Option<Vec3>,
    attitude: Option<Attitude>,
    throttle: f64,
    voltage: Option<f64>,
    current: Option<f64>,
    mah_drawn: Option<i64>,
    rssi: Option<i32>,
    extra: BTreeMap<String, ExtraValue>,
}

impl Tail {
    fn into_record(self, drone_id: Uuid, ts_us: i64, received_at_us: i64) -> TelemetryRecord {
        TelemetryRecord {
            drone_id,
            ts_us,
            received_at_us,
            position: self.position,
            gps: self.gps,
            velocity: self.velocity,
            attitude: self.attitude,
            throttle: self.throttle,
            voltage: self.voltage,
            current: self.current,
            mah_drawn: self.mah_drawn,
            rssi: self.rssi,
            extra: self.extra,
        }
    }
}

/// A decoded packet as a draft for the rules of CONTRACT.md §1. Its fields are numbered ts,
/// throttle, voltage, current, mah_drawn, rssi, position, velocity, attitude, gps, extra (not in
/// schema order): the order in which binary packets have always listed their problems.
fn packet_draft(ts_us: i64, tail: Tail) -> PacketDraft<'static> {
    fn optional<T>(draft: &mut PacketDraft<'_>, value: Option<T>) -> Slot<T> {
        value.map_or(Slot::Absent, |value| draft.read(value))
    }
    let mut draft = PacketDraft::new();
    draft.ts_us = draft.read(i128::from(ts_us));
    draft.throttle = draft.read(tail.throttle);
    draft.voltage = optional(&mut draft, tail.voltage);
    draft.current = optional(&mut draft, tail.current);
    draft.mah_drawn = optional(&mut draft, tail.mah_drawn.map(i128::from));
    draft.rssi = optional(&mut draft, tail.rssi.map(i128::from));
    draft.position = optional(&mut draft, tail.position.map(|v| [v.x, v.y, v.z]));
    draft.velocity = optional(&mut draft, tail.velocity.map(|v| [v.x, v.y, v.z]));
    draft.attitude = optional(&mut draft, tail.attitude.map(|a| [a.roll, a.pitch, a.yaw]));
    if let Some(gps) = tail.gps {
        let at = draft.next_at();
        let (lat, lon, alt_m) = (draft.read(gps.lat), draft.read(gps.lon), draft.read(gps.alt_m));
        let end = draft.next_at();
        draft.gps = Slot::Read(at, GpsDraft { lat, lon, alt_m, end });
    }
    if !tail.extra.is_empty() {
        let entries = tail.extra.into_iter().map(|(key, value)| (Cow::Owned(key), Some(value))).collect();
        draft.extra = draft.read(entries);
    }
    draft
}
