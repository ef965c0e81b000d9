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

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use apache_avro::schema::Schema;
use apache_avro::types::Value;
use serde_json::Value as Json;
use uuid::Uuid;

use crate::packet::{FieldError, TelemetryPacket};
use crate::record::{
    Attitude, ExtraValue, FlightClosed, FlightEvent, FlightRule, Gps, RecomputeRequested, TelemetryRecord, Vec3,
};

/// The current `TelemetryRecord` schema (`avro/telemetry_record.avsc`).
pub const TELEMETRY_RECORD_SCHEMA: &str = include_str!("../avro/telemetry_record.avsc");
/// The current `FlightEvent` schema (`avro/flight_event.avsc`).
pub const FLIGHT_EVENT_SCHEMA: &str = include_str!("../avro/flight_event.avsc");
/// The current `TelemetryPacket` schema (`avro/telemetry_packet.avsc`): what a drone sends in a
/// binary WebSocket frame.
pub const TELEMETRY_PACKET_SCHEMA: &str = include_str!("../avro/telemetry_packet.avsc");

mod history {
    include!(concat!(env!("OUT_DIR"), "/history.rs"));
}

const MARKER: [u8; 2] = [0xC3, 0x01];
const MAX_AVRO_ALLOCATION: usize = 1 << 20;
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

/// Encodes a packet as an Avro single-object `TelemetryPacket` message with the current schema
/// (what a drone sends in a binary WebSocket frame).
pub fn encode_telemetry_packet(packet: &TelemetryPacket) -> Vec<u8> {
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
    let fields = if version == TELEMETRY_PACKET.current {
        let mut cursor = Cursor { bytes: datum, position: 0 };
        let ts_us = cursor.long()?;
        read_telemetry_tail(cursor, Uuid::nil(), ts_us, 0)?
    } else {
        let Value::Record(mut fields) = TELEMETRY_PACKET.resolve(version, datum)? else {
            return Err(malformed("resolved packet is not a record").into());
        };
        // Same shape as a TelemetryRecord but for the two fields ingest adds.
        fields.push(("drone_id".into(), Value::Uuid(Uuid::nil())));
        fields.push(("received_at".into(), Value::Long(0)));
        telemetry_from_value(Value::Record(fields))?
    };
    crate::packet::packet_from_decoded(fields, now_us).map_err(PacketDecodeError::Invalid)
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

// ---------------------------------------------------------------------------------------------
// Registry

/// Every known version of one schema.
struct Family {
    full_name: &'static str,
    /// The current schema: what every message is resolved to.
    reader: Schema,
    /// Fingerprint of the current schema.
    current: [u8; 8],
    /// Every known writer schema by fingerprint, the current one included.
    writers: HashMap<[u8; 8], Schema>,
}

static TELEMETRY: LazyLock<Family> =
    LazyLock::new(|| Family::load(TELEMETRY_NAME, TELEMETRY_RECORD_SCHEMA, history::HISTORY));
static FLIGHT_EVENT: LazyLock<Family> =
    LazyLock::new(|| Family::load(FLIGHT_EVENT_NAME, FLIGHT_EVENT_SCHEMA, history::HISTORY));
static TELEMETRY_PACKET: LazyLock<Family> =
    LazyLock::new(|| Family::load(TELEMETRY_PACKET_NAME, TELEMETRY_PACKET_SCHEMA, history::HISTORY));

impl Family {
    /// Builds the family named `full_name` from its current schema and the files of `history`
    /// that carry the same full name. The schemas are embedded in the binary, so a schema that
    /// does not parse is a build defect: this panics, and the tests exercise it.
    fn load(full_name: &'static str, current_json: &str, history: &[(&str, &str)]) -> Family {
        // apache-avro reserves as many entries as a map or array block claims, up to this global
        // limit (512 MiB by default), so one corrupt message could abort the process. No
        // Flightline message comes near Kafka's default 1 MiB message size; only this crate uses
        // apache-avro, and it sets the limit before decoding anything.
        apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
        let reader = Schema::parse_str(current_json)
            .unwrap_or_else(|error| panic!("schema {full_name} does not parse: {error}"));
        let current = fingerprint(current_json)
            .unwrap_or_else(|error| panic!("schema {full_name} has no canonical form: {error}"));
        let mut writers = HashMap::new();
        writers.insert(current, reader.clone());
        for (file, text) in history {
            let name = schema_full_name(text).unwrap_or_else(|error| panic!("history schema {file}: {error}"));
            if name != full_name {
                continue;
            }
            let schema =
                Schema::parse_str(text).unwrap_or_else(|error| panic!("history schema {file} does not parse: {error}"));
            let version = fingerprint(text)
                .unwrap_or_else(|error| panic!("history schema {file} has no canonical form: {error}"));
            writers.insert(version, schema);
        }
        Family { full_name, reader, current, writers }
    }

    /// Decodes `datum`, written with the schema of `version`, and resolves it to the reader schema.
    fn resolve(&self, version: [u8; 8], datum: &[u8]) -> Result<Value, DecodeError> {
        let Some(writer) = self.writers.get(&version) else {
            return Err(self.not_mine(version));
        };
        let mut rest = datum;
        // What apache_avro::from_avro_datum(writer, rest, Some(reader)) does, in two steps so a
        // corrupt datum and an incompatible schema are told apart.
        let value =
            apache_avro::from_avro_datum(writer, &mut rest, None).map_err(|error| malformed(error.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed(format!("{} trailing bytes", rest.len())));
        }
        value
            .resolve(&self.reader)
            .map_err(|error| DecodeError::Incompatible { fingerprint: hex(&version), reason: error.to_string() })
    }

    fn not_mine(&self, version: [u8; 8]) -> DecodeError {
        for other in [&*TELEMETRY, &*FLIGHT_EVENT, &*TELEMETRY_PACKET] {
            if other.full_name != self.full_name && other.writers.contains_key(&version) {
                return DecodeError::WrongSchema { expected: self.full_name, found: other.full_name };
            }
        }
        DecodeError::UnknownSchema { fingerprint: hex(&version) }
    }
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

// ---------------------------------------------------------------------------------------------
// Fingerprints

/// The CRC-64-AVRO fingerprint of a schema given as JSON text, in message byte order.
fn fingerprint(schema_json: &str) -> Result<[u8; 8], String> {
    Ok(rabin(parsing_canonical_form(schema_json)?.as_bytes()))
}

/// The full name of a named schema given as JSON text.
fn schema_full_name(schema_json: &str) -> Result<String, String> {
    let json: Json = serde_json::from_str(schema_json).map_err(|error| error.to_string())?;
    let name = json.get("name").and_then(Json::as_str).ok_or("schema has no name")?;
    let namespace = json.get("namespace").and_then(Json::as_str);
    Ok(full_name(name, namespace, ""))
}

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// The Parsing Canonical Form of the Avro specification: primitives in their simple form
/// (logical types dropped), full names, only the attributes that matter for parsing, in the
/// order name, type, fields, symbols, items, values, size, no whitespace.
fn parsing_canonical_form(schema_json: &str) -> Result<String, String> {
    let json: Json = serde_json::from_str(schema_json).map_err(|error| error.to_string())?;
    let mut out = String::with_capacity(schema_json.len());
    write_canonical(&json, "", &mut out)?;
    Ok(out)
}

fn write_canonical(schema: &Json, namespace: &str, out: &mut String) -> Result<(), String> {
    match schema {
        Json::String(name) if PRIMITIVES.contains(&name.as_str()) => push_quoted(out, name),
        Json::String(name) => push_quoted(out, &full_name(name, None, namespace)),
        Json::Array(branches) => {
            out.push('[');
            for (position, branch) in branches.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_canonical(branch, namespace, out)?;
            }
            out.push(']');
        }
        Json::Object(object) => {
            let kind = object.get("type").ok_or("schema object without a type")?;
            let Json::String(kind) = kind else {
                return write_canonical(kind, namespace, out);
            };
            match kind.as_str() {
                "record" | "error" | "enum" | "fixed" => {
                    let name = object.get("name").and_then(Json::as_str).ok_or("named schema without a name")?;
                    let qualified = full_name(name, object.get("namespace").and_then(Json::as_str), namespace);
                    let inner_namespace = qualified.rsplit_once('.').map_or("", |(space, _)| space);
                    out.push_str("{\"name\":");
                    push_quoted(out, &qualified);
                    out.push_str(",\"type\":");
                    push_quoted(out, kind);
                    match kind.as_str() {
                        "enum" => {
                            let symbols =
                                object.get("symbols").and_then(Json::as_array).ok_or("enum without symbols")?;
                            out.push_str(",\"symbols\":[");
                            for (position, symbol) in symbols.iter().enumerate() {
                                if position > 0 {
                                    out.push(',');
                                }
                                push_quoted(out, symbol.as_str().ok_or("enum symbol is not a string")?);
                            }
                            out.push(']');
                        }
                        "fixed" => {
                            let size = object.get("size").and_then(Json::as_u64).ok_or("fixed without a size")?;
                            out.push_str(&format!(",\"size\":{size}"));
                        }
                        _ => {
                            let fields =
                                object.get("fields").and_then(Json::as_array).ok_or("record without fields")?;
                            out.push_str(",\"fields\":[");
                            for (position, field) in fields.iter().enumerate() {
                                if position > 0 {
                                    out.push(',');
                                }
                                let field_name =
                                    field.get("name").and_then(Json::as_str).ok_or("field without a name")?;
                                let field_type = field.get("type").ok_or("field without a type")?;
                                out.push_str("{\"name\":");
                                push_quoted(out, field_name);
                                out.push_str(",\"type\":");
                                write_canonical(field_type, inner_namespace, out)?;
                                out.push('}');
                            }
                            out.push(']');
                        }
                    }
                    out.push('}');
                }
                "array" => {
                    out.push_str("{\"type\":\"array\",\"items\":");
                    write_canonical(object.get("items").ok_or("array without items")?, namespace, out)?;
                    out.push('}');
                }
                "map" => {
                    out.push_str("{\"type\":\"map\",\"values\":");
                    write_canonical(object.get("values").ok_or("map without values")?, namespace, out)?;
                    out.push('}');
                }
                // A primitive, possibly with a logical type: its simple form.
                primitive if PRIMITIVES.contains(&primitive) => push_quoted(out, primitive),
                // {"type": "SomeName"}: a reference to a named type.
                reference => push_quoted(out, &full_name(reference, None, namespace)),
            }
        }
        other => return Err(format!("not a schema: {other}")),
    }
    Ok(())
}

fn full_name(name: &str, namespace: Option<&str>, enclosing: &str) -> String {
    if name.contains('.') {
        return name.to_owned();
    }
    match namespace.unwrap_or(enclosing) {
        "" => name.to_owned(),
        space => format!("{space}.{name}"),
    }
}

/// Names and symbols are `[A-Za-z_][A-Za-z0-9_]*`, so nothing needs escaping.
fn push_quoted(out: &mut String, text: &str) {
    out.push('"');
    out.push_str(text);
    out.push('"');
}

const RABIN_EMPTY: u64 = 0xc15d_213a_a4d7_a795;

const RABIN_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut index = 0;
    while index < 256 {
        let mut fp = index as u64;
        let mut bit = 0;
        while bit < 8 {
            fp = (fp >> 1) ^ (RABIN_EMPTY & (fp & 1).wrapping_neg());
            bit += 1;
        }
        table[index] = fp;
        index += 1;
    }
    table
};

/// CRC-64-AVRO, as the 8 little-endian bytes single-object encoding uses.
fn rabin(data: &[u8]) -> [u8; 8] {
    let mut fp = RABIN_EMPTY;
    for byte in data {
        fp = (fp >> 8) ^ RABIN_TABLE[((fp ^ u64::from(*byte)) & 0xff) as usize];
    }
    fp.to_le_bytes()
}

// ---------------------------------------------------------------------------------------------
// Hand-written binary encoding (must match apache-avro byte for byte; see the tests)

fn put_long(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push(zigzag as u8 | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

fn put_double(out: &mut Vec<u8>, value: f64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    put_long(out, text.len() as i64);
    out.extend_from_slice(text.as_bytes());
}

fn put_uuid(out: &mut Vec<u8>, id: Uuid) {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    put_str(out, id.hyphenated().encode_lower(&mut text));
}

/// A `["null", T]` union: branch 0 for null, else branch 1 followed by the value.
fn put_optional<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => out.push(0),
        Some(inner) => {
            out.push(2);
            put(out, inner);
        }
    }
}

fn put_vec3(out: &mut Vec<u8>, value: Vec3) {
    put_double(out, value.x);
    put_double(out, value.y);
    put_double(out, value.z);
}

fn telemetry_size_hint(record: &TelemetryRecord) -> usize {
    let extra: usize = record
        .extra
        .iter()
        .map(|(key, value)| {
            key.len()
                + 12
                + match value {
                    ExtraValue::String(text) => text.len(),
                    _ => 0,
                }
        })
        .sum();
    HEADER_LEN + 37 + 20 + 4 * 25 + 9 + 2 * 9 + 10 + 5 + 2 + extra
}

fn write_telemetry_datum(record: &TelemetryRecord, out: &mut Vec<u8>) {
    put_uuid(out, record.drone_id);
    put_long(out, record.ts_us);
    put_long(out, record.received_at_us);
    write_telemetry_tail(record, out);
}

/// The fields a `TelemetryRecord` and a `TelemetryPacket` share, in that order, from `position`
/// to `extra`.
fn write_telemetry_tail(record: &TelemetryRecord, out: &mut Vec<u8>) {
    put_optional(out, record.position, put_vec3);
    put_optional(out, record.gps, |out, gps| {
        put_double(out, gps.lat);
        put_double(out, gps.lon);
        put_double(out, gps.alt_m);
    });
    put_optional(out, record.velocity, put_vec3);
    put_optional(out, record.attitude, |out, attitude| {
        put_double(out, attitude.roll);
        put_double(out, attitude.pitch);
        put_double(out, attitude.yaw);
    });
    put_double(out, record.throttle);
    put_optional(out, record.voltage, put_double);
    put_optional(out, record.current, put_double);
    put_optional(out, record.mah_drawn, put_long);
    put_optional(out, record.rssi, |out, rssi| put_long(out, i64::from(rssi)));
    // A map is blocks of (count, entries), ended by an empty block; one block suffices.
    if !record.extra.is_empty() {
        put_long(out, record.extra.len() as i64);
        for (key, value) in &record.extra {
            put_str(out, key);
            // Branches of ["string", "long", "double", "boolean"].
            match value {
                ExtraValue::String(text) => {
                    out.push(0);
                    put_str(out, text);
                }
                ExtraValue::Int(number) => {
                    out.push(2);
                    put_long(out, *number);
                }
                ExtraValue::Float(number) => {
                    out.push(4);
                    put_double(out, *number);
                }
                ExtraValue::Bool(flag) => {
                    out.push(6);
                    out.push(u8::from(*flag));
                }
            }
        }
    }
    out.push(0);
}

fn write_flight_event_datum(event: &FlightEvent, out: &mut Vec<u8>) {
    // Field `event`: branch 0 FlightClosed, branch 1 RecomputeRequested.
    match event {
        FlightEvent::Closed(closed) => {
            put_long(out, 0);
            put_uuid(out, closed.flight_id);
            put_uuid(out, closed.drone_id);
            put_long(out, closed.start_ts_us);
            put_long(out, closed.end_ts_us);
            put_long(out, closed.packet_count);
            put_long(out, i64::from(closed.partition));
            put_long(out, closed.last_offset);
            put_double(out, closed.rule.throttle_threshold);
            put_long(out, closed.rule.idle_window_us);
            put_long(out, closed.rule.gap_us);
            put_long(out, closed.rule.min_duration_us);
        }
        FlightEvent::RecomputeRequested(request) => {
            put_long(out, 1);
            put_uuid(out, request.flight_id);
            put_uuid(out, request.drone_id);
            put_long(out, request.requested_at_us);
            put_optional(out, request.reason.as_deref(), put_str);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-written binary decoding of the current telemetry schema

struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn error(&self, what: &str) -> DecodeError {
        malformed(format!("{what} at datum byte {}", self.position))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() - self.position < len {
            return Err(self.error("unexpected end of data"));
        }
        let taken = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(taken)
    }

    fn long(&mut self) -> Result<i64, DecodeError> {
        let mut zigzag: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&byte) = self.bytes.get(self.position) else {
                return Err(self.error("unexpected end of data"));
            };
            self.position += 1;
            // The tenth byte may only carry the 64th bit.
            if shift == 63 && byte > 1 {
                return Err(self.error("varint overflows 64 bits"));
            }
            zigzag |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64));
            }
            shift += 7;
        }
    }

    fn int(&mut self) -> Result<i32, DecodeError> {
        let value = self.long()?;
        i32::try_from(value).map_err(|_| self.error("int out of range"))
    }

    fn double(&mut self) -> Result<f64, DecodeError> {
        let bytes = self.take(8)?;
        Ok(f64::from_le_bytes(bytes.try_into().expect("took 8 bytes")))
    }

    fn boolean(&mut self) -> Result<bool, DecodeError> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.error("invalid boolean")),
        }
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| self.error("negative string length"))?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| self.error("string is not utf-8"))
    }

    fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        let text = self.str()?;
        Uuid::parse_str(text).map_err(|_| self.error("string is not a uuid"))
    }

    /// Reads the branch of a `["null", T]` union: whether a value follows.
    fn present(&mut self) -> Result<bool, DecodeError> {
        match self.long()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.error("invalid union branch")),
        }
    }

    fn optional<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.present()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn vec3(&mut self) -> Result<Vec3, DecodeError> {
        Ok(Vec3 { x: self.double()?, y: self.double()?, z: self.double()? })
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }
}

fn read_telemetry_datum(datum: &[u8]) -> Result<TelemetryRecord, DecodeError> {
    let mut cursor = Cursor { bytes: datum, position: 0 };
    let drone_id = cursor.uuid()?;
    let ts_us = cursor.long()?;
    let received_at_us = cursor.long()?;
    read_telemetry_tail(cursor, drone_id, ts_us, received_at_us)
}

/// Reads the fields from `position` to `extra` (see [`write_telemetry_tail`]) and checks that
/// nothing follows.
fn read_telemetry_tail(
    mut cursor: Cursor<'_>,
    drone_id: Uuid,
    ts_us: i64,
    received_at_us: i64,
) -> Result<TelemetryRecord, DecodeError> {
    let position = cursor.optional(Cursor::vec3)?;
    let gps =
        cursor.optional(|cursor| Ok(Gps { lat: cursor.double()?, lon: cursor.double()?, alt_m: cursor.double()? }))?;
    let velocity = cursor.optional(Cursor::vec3)?;
    let attitude = cursor
        .optional(|cursor| Ok(Attitude { roll: cursor.double()?, pitch: cursor.double()?, yaw: cursor.double()? }))?;
    let throttle = cursor.double()?;
    let voltage = cursor.optional(Cursor::double)?;
    let current = cursor.optional(Cursor::double)?;
    let mah_drawn = cursor.optional(Cursor::long)?;
    let rssi = cursor.optional(Cursor::int)?;
    let mut extra = BTreeMap::new();
    loop {
        let mut count = cursor.long()?;
        if count == 0 {
            break;
        }
        if count < 0 {
            // A negative count is followed by the block's size in bytes.
            count = count.checked_neg().ok_or_else(|| cursor.error("invalid block count"))?;
            cursor.long()?;
        }
        // Each entry takes at least two bytes; this bounds the loop on garbage.
        if count as u64 > cursor.remaining() as u64 / 2 {
            return Err(cursor.error("map block count exceeds the data"));
        }
        for _ in 0..count {
            let key = cursor.str()?.to_owned();
            let value = match cursor.long()? {
                0 => ExtraValue::String(cursor.str()?.to_owned()),
                1 => ExtraValue::Int(cursor.long()?),
                2 => ExtraValue::Float(cursor.double()?),
                3 => ExtraValue::Bool(cursor.boolean()?),
                _ => return Err(cursor.error("invalid union branch")),
            };
            extra.insert(key, value);
        }
    }
    if cursor.remaining() > 0 {
        return Err(malformed(format!("{} trailing bytes", cursor.remaining())));
    }
    Ok(TelemetryRecord {
        drone_id,
        ts_us,
        received_at_us,
        position,
        gps,
        velocity,
        attitude,
        throttle,
        voltage,
        current,
        mah_drawn,
        rssi,
        extra,
    })
}

fn read_flight_event_datum(datum: &[u8]) -> Result<FlightEvent, DecodeError> {
    let mut cursor = Cursor { bytes: datum, position: 0 };
    let event = match cursor.long()? {
        0 => FlightEvent::Closed(FlightClosed {
            flight_id: cursor.uuid()?,
            drone_id: cursor.uuid()?,
            start_ts_us: cursor.long()?,
            end_ts_us: cursor.long()?,
            packet_count: cursor.long()?,
            partition: cursor.int()?,
            last_offset: cursor.long()?,
            rule: FlightRule {
                throttle_threshold: cursor.double()?,
                idle_window_us: cursor.long()?,
                gap_us: cursor.long()?,
                min_duration_us: cursor.long()?,
            },
        }),
        1 => FlightEvent::RecomputeRequested(RecomputeRequested {
            flight_id: cursor.uuid()?,
            drone_id: cursor.uuid()?,
            requested_at_us: cursor.long()?,
            reason: cursor.optional(|cursor| cursor.str().map(str::to_owned))?,
        }),
        _ => return Err(cursor.error("invalid union branch")),
    };
    if cursor.remaining() > 0 {
        return Err(malformed(format!("{} trailing bytes", cursor.remaining())));
    }
    Ok(event)
}

// ---------------------------------------------------------------------------------------------
// apache-avro values (after resolution to the reader schema) to Rust types

/// The fields of a resolved record; they are exactly the reader schema's, so a missing one is a
/// defect, reported rather than panicked on.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn of(value: Value, record: &str) -> Result<Fields, DecodeError> {
        match value {
            Value::Record(fields) => Ok(Fields(fields)),
            other => Err(unexpected(record, &other)),
        }
    }

    fn take(&mut self, name: &str) -> Result<Value, DecodeError> {
        let position = self
            .0
            .iter()
            .position(|(field, _)| field == name)
            .ok_or_else(|| malformed(format!("resolved record lacks field {name}")))?;
        Ok(self.0.swap_remove(position).1)
    }

    fn uuid(&mut self, name: &str) -> Result<Uuid, DecodeError> {
        match self.take(name)? {
            Value::Uuid(id) => Ok(id),
            Value::String(text) => Uuid::parse_str(&text).map_err(|_| malformed(format!("field {name} is not a uuid"))),
            other => Err(unexpected(name, &other)),
        }
    }

    fn long(&mut self, name: &str) -> Result<i64, DecodeError> {
        long_of(name, self.take(name)?)
    }

    fn int(&mut self, name: &str) -> Result<i32, DecodeError> {
        int_of(name, self.take(name)?)
    }

    fn double(&mut self, name: &str) -> Result<f64, DecodeError> {
        double_of(name, self.take(name)?)
    }

    fn optional<T>(
        &mut self,
        name: &str,
        convert: impl FnOnce(&str, Value) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.take(name)? {
            Value::Null => Ok(None),
            Value::Union(_, inner) => match *inner {
                Value::Null => Ok(None),
                value => convert(name, value).map(Some),
            },
            value => convert(name, value).map(Some),
        }
    }
}

fn unexpected(name: &str, value: &Value) -> DecodeError {
    malformed(format!("unexpected value for {name}: {value:?}"))
}

fn long_of(name: &str, value: Value) -> Result<i64, DecodeError> {
    match value {
        Value::Long(number) | Value::TimestampMicros(number) => Ok(number),
        Value::Int(number) => Ok(i64::from(number)),
        other => Err(unexpected(name, &other)),
    }
}

fn int_of(name: &str, value: Value) -> Result<i32, DecodeError> {
    match value {
        Value::Int(number) => Ok(number),
        other => Err(unexpected(name, &other)),
    }
}

fn double_of(name: &str, value: Value) -> Result<f64, DecodeError> {
    match value {
        Value::Double(number) => Ok(number),
        other => Err(unexpected(name, &other)),
    }
}

fn string_of(name: &str, value: Value) -> Result<String, DecodeError> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(unexpected(name, &other)),
    }
}

fn telemetry_from_value(value: Value) -> Result<TelemetryRecord, DecodeError> {
    let mut fields = Fields::of(value, "TelemetryRecord")?;
    let vec3 = |name: &str, value: Value| {
        let mut inner = Fields::of(value, name)?;
        Ok(Vec3 { x: inner.double("x")?, y: inner.double("y")?, z: inner.double("z")? })
    };
    let extra = match fields.take("extra")? {
        Value::Map(entries) => {
            let mut extra = BTreeMap::new();
            for (key, value) in entries {
                let value = match value {
                    Value::Union(_, inner) => *inner,
                    other => other,
                };
                let value = match value {
                    Value::String(text) => ExtraValue::String(text),
                    Value::Long(number) => ExtraValue::Int(number),
                    Value::Double(number) => ExtraValue::Float(number),
                    Value::Boolean(flag) => ExtraValue::Bool(flag),
                    other => return Err(unexpected("extra", &other)),
                };
                extra.insert(key, value);
            }
            extra
        }
        other => return Err(unexpected("extra", &other)),
    };
    Ok(TelemetryRecord {
        drone_id: fields.uuid("drone_id")?,
        ts_us: fields.long("ts")?,
        received_at_us: fields.long("received_at")?,
        position: fields.optional("position", vec3)?,
        gps: fields.optional("gps", |name, value| {
            let mut inner = Fields::of(value, name)?;
            Ok(Gps { lat: inner.double("lat")?, lon: inner.double("lon")?, alt_m: inner.double("alt_m")? })
        })?,
        velocity: fields.optional("velocity", vec3)?,
        attitude: fields.optional("attitude", |name, value| {
            let mut inner = Fields::of(value, name)?;
            Ok(Attitude { roll: inner.double("roll")?, pitch: inner.double("pitch")?, yaw: inner.double("yaw")? })
        })?,
        throttle: fields.double("throttle")?,
        voltage: fields.optional("voltage", double_of)?,
        current: fields.optional("current", double_of)?,
        mah_drawn: fields.optional("mah_drawn", long_of)?,
        rssi: fields.optional("rssi", int_of)?,
        extra,
    })
}

fn flight_event_from_value(value: Value) -> Result<FlightEvent, DecodeError> {
    let mut fields = Fields::of(value, "FlightEvent")?;
    let Value::Union(branch, inner) = fields.take("event")? else {
        return Err(malformed("field event is not a union"));
    };
    match branch {
        0 => {
            let mut closed = Fields::of(*inner, "FlightClosed")?;
            let mut rule = Fields::of(closed.take("rule")?, "FlightRule")?;
            Ok(FlightEvent::Closed(FlightClosed {
                flight_id: closed.uuid("flight_id")?,
                drone_id: closed.uuid("drone_id")?,
                start_ts_us: closed.long("start_ts")?,
                end_ts_us: closed.long("end_ts")?,
                packet_count: closed.long("packet_count")?,
                partition: closed.int("partition")?,
                last_offset: closed.long("last_offset")?,
                rule: FlightRule {
                    throttle_threshold: rule.double("throttle_threshold")?,
                    idle_window_us: rule.long("idle_window_us")?,
                    gap_us: rule.long("gap_us")?,
                    min_duration_us: rule.long("min_duration_us")?,
                },
            }))
        }
        1 => {
            let mut request = Fields::of(*inner, "RecomputeRequested")?;
            Ok(FlightEvent::RecomputeRequested(RecomputeRequested {
                flight_id: request.uuid("flight_id")?,
                drone_id: request.uuid("drone_id")?,
                requested_at_us: request.long("requested_at")?,
                reason: request.optional("reason", string_of)?,
            }))
        }
        other => Err(malformed(format!("unknown flight event branch {other}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// apache-avro's generic path, kept for benchmarks and as the tests' reference implementation

/// apache-avro's generic `Value` path, for the `bench` example and the tests; not an API.
#[doc(hidden)]
pub mod generic {
    use super::*;

    /// Encodes through `apache_avro::types::Value` and `apache_avro::to_avro_datum`.
    pub fn encode_telemetry(record: &TelemetryRecord) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&MARKER);
        out.extend_from_slice(&TELEMETRY.current);
        let datum = apache_avro::to_avro_datum(&TELEMETRY.reader, telemetry_to_value(record))
            .expect("a TelemetryRecord value always matches its schema");
        out.extend_from_slice(&datum);
        out
    }

    /// Decodes through apache-avro's decoder and schema resolution, even for the current schema.
    pub fn decode_telemetry(bytes: &[u8]) -> Result<TelemetryRecord, DecodeError> {
        let (version, datum) = split_header(bytes)?;
        telemetry_from_value(TELEMETRY.resolve(version, datum)?)
    }

    /// Decodes through apache-avro's decoder and schema resolution, even for the current schema.
    pub fn decode_flight_event(bytes: &[u8]) -> Result<FlightEvent, DecodeError> {
        let (version, datum) = split_header(bytes)?;
        flight_event_from_value(FLIGHT_EVENT.resolve(version, datum)?)
    }

    /// Encodes through `apache_avro::types::Value`.
    pub fn encode_flight_event(event: &FlightEvent) -> Vec<u8> {
        let mut out = Vec::with_capacity(192);
        out.extend_from_slice(&MARKER);
        out.extend_from_slice(&FLIGHT_EVENT.current);
        let datum = apache_avro::to_avro_datum(&FLIGHT_EVENT.reader, flight_event_to_value(event))
            .expect("a FlightEvent value always matches its schema");
        out.extend_from_slice(&datum);
        out
    }

    fn optional(value: Option<Value>) -> Value {
        match value {
            None => Value::Union(0, Box::new(Value::Null)),
            Some(inner) => Value::Union(1, Box::new(inner)),
        }
    }

    fn record(fields: Vec<(&str, Value)>) -> Value {
        Value::Record(fields.into_iter().map(|(name, value)| (name.to_owned(), value)).collect())
    }

    fn vec3(value: Vec3) -> Value {
        record(vec![("x", Value::Double(value.x)), ("y", Value::Double(value.y)), ("z", Value::Double(value.z))])
    }

    pub(crate) fn telemetry_to_value(r: &TelemetryRecord) -> Value {
        let extra = r
            .extra
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    ExtraValue::String(text) => Value::Union(0, Box::new(Value::String(text.clone()))),
                    ExtraValue::Int(number) => Value::Union(1, Box::new(Value::Long(*number))),
                    ExtraValue::Float(number) => Value::Union(2, Box::new(Value::Double(*number))),
                    ExtraValue::Bool(flag) => Value::Union(3, Box::new(Value::Boolean(*flag))),
                };
                (key.clone(), value)
            })
            .collect();
        record(vec![
            ("drone_id", Value::Uuid(r.drone_id)),
            ("ts", Value::TimestampMicros(r.ts_us)),
            ("received_at", Value::TimestampMicros(r.received_at_us)),
            ("position", optional(r.position.map(vec3))),
            (
                "gps",
                optional(r.gps.map(|gps| {
                    record(vec![
                        ("lat", Value::Double(gps.lat)),
                        ("lon", Value::Double(gps.lon)),
                        ("alt_m", Value::Double(gps.alt_m)),
                    ])
                })),
            ),
            ("velocity", optional(r.velocity.map(vec3))),
            (
                "attitude",
                optional(r.attitude.map(|a| {
                    record(vec![
                        ("roll", Value::Double(a.roll)),
                        ("pitch", Value::Double(a.pitch)),
                        ("yaw", Value::Double(a.yaw)),
                    ])
                })),
            ),
            ("throttle", Value::Double(r.throttle)),
            ("voltage", optional(r.voltage.map(Value::Double))),
            ("current", optional(r.current.map(Value::Double))),
            ("mah_drawn", optional(r.mah_drawn.map(Value::Long))),
            ("rssi", optional(r.rssi.map(Value::Int))),
            ("extra", Value::Map(extra)),
        ])
    }

    pub(crate) fn flight_event_to_value(event: &FlightEvent) -> Value {
        let inner = match event {
            FlightEvent::Closed(c) => Value::Union(
                0,
                Box::new(record(vec![
                    ("flight_id", Value::Uuid(c.flight_id)),
                    ("drone_id", Value::Uuid(c.drone_id)),
                    ("start_ts", Value::TimestampMicros(c.start_ts_us)),
                    ("end_ts", Value::TimestampMicros(c.end_ts_us)),
                    ("packet_count", Value::Long(c.packet_count)),
                    ("partition", Value::Int(c.partition)),
                    ("last_offset", Value::Long(c.last_offset)),
                    (
                        "rule",
                        record(vec![
                            ("throttle_threshold", Value::Double(c.rule.throttle_threshold)),
                            ("idle_window_us", Value::Long(c.rule.idle_window_us)),
                            ("gap_us", Value::Long(c.rule.gap_us)),
                            ("min_duration_us", Value::Long(c.rule.min_duration_us)),
                        ]),
                    ),
                ])),
            ),
            FlightEvent::RecomputeRequested(r) => Value::Union(
                1,
                Box::new(record(vec![
                    ("flight_id", Value::Uuid(r.flight_id)),
                    ("drone_id", Value::Uuid(r.drone_id)),
                    ("requested_at", Value::TimestampMicros(r.requested_at_us)),
                    ("reason", optional(r.reason.clone().map(Value::String))),
                ])),
            ),
        };
        record(vec![("event", inner)])
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::schema_compatibility::SchemaCompatibility;

    use super::*;

    const TELEMETRY_V2: &str = include_str!("../tests/fixtures/telemetry_record_v2.avsc");
    const FLIGHT_EVENT_V2: &str = include_str!("../tests/fixtures/flight_event_v2.avsc");

    fn drone() -> Uuid {
        Uuid::parse_str("0b7c3f4e-2d1a-4c5b-9e8f-7a6b5c4d3e2f").unwrap()
    }

    fn full_record() -> TelemetryRecord {
        TelemetryRecord {
            drone_id: drone(),
            ts_us: 1_777_636_800_020_000,
            received_at_us: 1_777_636_800_031_415,
            position: Some(Vec3 { x: 12.1, y: -3.4, z: 25.0 }),
            gps: Some(Gps { lat: 47.397742, lon: 8.545594, alt_m: 488.1 }),
            velocity: Some(Vec3 { x: 4.2, y: 0.1, z: -0.3 }),
            attitude: Some(Attitude { roll: 2.5, pitch: -8.1, yaw: 123.0 }),
            throttle: 0.42,
            voltage: Some(22.8),
            current: Some(-31.5),
            mah_drawn: Some(812),
            rssi: Some(-87),
            extra: BTreeMap::from([
                ("mode".to_owned(), ExtraValue::String("loiter".into())),
                ("sats".to_owned(), ExtraValue::Int(14)),
                ("hdop".to_owned(), ExtraValue::Float(0.9)),
                ("armed".to_owned(), ExtraValue::Bool(true)),
            ]),
        }
    }

    fn minimal_record() -> TelemetryRecord {
        TelemetryRecord {
            drone_id: drone(),
            ts_us: 0,
            received_at_us: 1,
            position: None,
            gps: None,
            velocity: None,
            attitude: None,
            throttle: 0.0,
            voltage: None,
            current: None,
            mah_drawn: None,
            rssi: None,
            extra: BTreeMap::new(),
        }
    }

    fn closed() -> FlightEvent {
        FlightEvent::Closed(FlightClosed {
            flight_id: crate::flight_id(drone(), 1_777_636_800_020_000),
            drone_id: drone(),
            start_ts_us: 1_777_636_800_020_000,
            end_ts_us: 1_777_637_100_000_000,
            packet_count: 15_000,
            partition: 7,
            last_offset: 123_456_789_012,
            rule: FlightRule::default(),
        })
    }

    fn recompute(reason: Option<&str>) -> FlightEvent {
        FlightEvent::RecomputeRequested(RecomputeRequested {
            flight_id: Uuid::from_u128(0x1234),
            drone_id: drone(),
            requested_at_us: 1_777_640_000_000_000,
            reason: reason.map(str::to_owned),
        })
    }

    /// A deterministic xorshift generator, enough to vary records.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn chance(&mut self) -> bool {
            self.next() & 1 == 0
        }
        fn float(&mut self) -> f64 {
            match self.next() % 8 {
                0 => 0.0,
                1 => -0.0,
                2 => f64::MAX,
                3 => f64::MIN_POSITIVE,
                _ => (self.next() as i64) as f64 / 1e9,
            }
        }
        fn long(&mut self) -> i64 {
            match self.next() % 6 {
                0 => i64::MIN,
                1 => i64::MAX,
                2 => (self.next() % 256) as i64 - 128,
                _ => self.next() as i64,
            }
        }
        fn vec3(&mut self) -> Option<Vec3> {
            self.chance().then(|| Vec3 { x: self.float(), y: self.float(), z: self.float() })
        }
        fn record(&mut self, max_extra: u64) -> TelemetryRecord {
            let mut extra = BTreeMap::new();
            for key in 0..self.next() % (max_extra + 1) {
                let value = match self.next() % 4 {
                    0 => ExtraValue::String("é".repeat((self.next() % 70) as usize)),
                    1 => ExtraValue::Int(self.long()),
                    2 => ExtraValue::Float(self.float()),
                    _ => ExtraValue::Bool(self.chance()),
                };
                extra.insert(format!("key{key}"), value);
            }
            TelemetryRecord {
                drone_id: Uuid::from_u128(u128::from(self.next()) << 64 | u128::from(self.next())),
                ts_us: self.long(),
                received_at_us: self.long(),
                position: self.vec3(),
                gps: self.chance().then(|| Gps { lat: self.float(), lon: self.float(), alt_m: self.float() }),
                velocity: self.vec3(),
                attitude: self.chance().then(|| Attitude {
                    roll: self.float(),
                    pitch: self.float(),
                    yaw: self.float(),
                }),
                throttle: self.float(),
                voltage: self.chance().then(|| self.float()),
                current: self.chance().then(|| self.float()),
                mah_drawn: self.chance().then(|| self.long()),
                rssi: self.chance().then(|| self.long() as i32),
                extra,
            }
        }
    }

    /// A single-object message of `value` written with `schema_json`, through apache-avro.
    fn message_with(schema_json: &str, value: Value) -> Vec<u8> {
        let schema = Schema::parse_str(schema_json).unwrap();
        let mut out = MARKER.to_vec();
        out.extend_from_slice(&fingerprint(schema_json).unwrap());
        out.extend_from_slice(&apache_avro::to_avro_datum(&schema, value).unwrap());
        out
    }

    /// Inserts a field into a record value before `before`.
    fn with_field(value: Value, name: &str, field: Value, before: &str) -> Value {
        let Value::Record(mut fields) = value else { panic!("not a record") };
        let position = fields.iter().position(|(existing, _)| existing == before).unwrap();
        fields.insert(position, (name.to_owned(), field));
        Value::Record(fields)
    }

    #[test]
    fn current_fingerprints_are_pinned() {
        // Computed independently with fastavro:
        // fastavro.schema.fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO").
        // A change here means the schema changed: copy the previous version into avro/history/.
        assert_eq!(hex(&TELEMETRY.current), "83ec0f9696369bfe", "telemetry_record.avsc changed");
        assert_eq!(hex(&FLIGHT_EVENT.current), "c5275539057ea2e6", "flight_event.avsc changed");
    }

    #[test]
    fn rabin_matches_reference_values() {
        // From fastavro's CRC-64-AVRO; "int" is the spec's 0x7275d51a3f395c8f in little-endian.
        assert_eq!(hex(&rabin(b"")), "95a7d7a43a215dc1");
        assert_eq!(hex(&rabin(b"\"null\"")), "8a8f25cce724dd63");
        assert_eq!(hex(&rabin(b"\"int\"")), "8f5c393f1ad57572");
        assert_eq!(hex(&rabin(br#"{"type":"fixed","name":"x.y","size":4}"#)), "8674aacc6ccbb449");
    }

    #[test]
    fn canonical_form_follows_the_specification() {
        let cases = [
            (r#"{"type": "long", "logicalType": "timestamp-micros"}"#, r#""long""#),
            (r#"{"type": "string"}"#, r#""string""#),
            (r#"["null", {"type": "string", "logicalType": "uuid"}]"#, r#"["null","string"]"#),
            (r#"{"type": "map", "values": "int", "doc": "x"}"#, r#"{"type":"map","values":"int"}"#),
            (r#"{"type": "array", "items": "long"}"#, r#"{"type":"array","items":"long"}"#),
            (
                r#"{"type": "fixed", "size": 4, "name": "y", "namespace": "x"}"#,
                r#"{"name":"x.y","type":"fixed","size":4}"#,
            ),
            (
                r#"{"type": "enum", "name": "E", "symbols": ["A", "B"], "default": "A"}"#,
                r#"{"name":"E","type":"enum","symbols":["A","B"]}"#,
            ),
            (
                r#"{"namespace": "a", "type": "record", "name": "R", "aliases": ["Q"], "fields": [
                    {"name": "f", "doc": "d", "default": null, "type": ["null", {"type": "record", "name": "S", "fields": []}]},
                    {"name": "g", "type": "S"},
                    {"name": "h", "type": {"type": "record", "name": "b.T", "fields": [{"name": "i", "type": "U"}]}}
                ]}"#,
                r#"{"name":"a.R","type":"record","fields":[{"name":"f","type":["null",{"name":"a.S","type":"record","fields":[]}]},{"name":"g","type":"a.S"},{"name":"h","type":{"name":"b.T","type":"record","fields":[{"name":"i","type":"b.U"}]}}]}"#,
            ),
        ];
        for (schema, expected) in cases {
            assert_eq!(parsing_canonical_form(schema).unwrap(), expected, "{schema}");
        }
    }

    #[test]
    fn telemetry_round_trips() {
        let mut each_extra = Vec::new();
        for (key, value) in full_record().extra {
            let mut record = minimal_record();
            record.extra.insert(key, value);
            each_extra.push(record);
        }
        for record in [full_record(), minimal_record()].into_iter().chain(each_extra) {
            let bytes = encode_telemetry(&record);
            assert_eq!(bytes[..2], MARKER);
            assert_eq!(bytes[2..10], TELEMETRY.current);
            assert_eq!(decode_telemetry(&bytes).unwrap(), record);
            assert_eq!(generic::decode_telemetry(&bytes).unwrap(), record);
        }
    }

    #[test]
    fn hand_written_telemetry_codec_agrees_with_apache_avro() {
        let mut random = Random(0x2545_f491_4f6c_dd1d);
        for _ in 0..3000 {
            // apache-avro writes maps from a HashMap, so bytes are comparable with at most one entry.
            let record = random.record(1);
            let bytes = encode_telemetry(&record);
            assert_eq!(bytes, generic::encode_telemetry(&record), "{record:?}");
            assert_eq!(decode_telemetry(&bytes).unwrap(), record);
            assert_eq!(generic::decode_telemetry(&bytes).unwrap(), record);
        }
        for _ in 0..500 {
            let record = random.record(32);
            assert_eq!(decode_telemetry(&generic::encode_telemetry(&record)).unwrap(), record);
            assert_eq!(generic::decode_telemetry(&encode_telemetry(&record)).unwrap(), record);
        }
    }

    #[test]
    fn hand_written_reader_accepts_negative_block_counts() {
        // Other writers may emit a map block as (-count, size in bytes, entries).
        let record = minimal_record();
        let mut bytes = encode_telemetry(&record);
        bytes.pop(); // The empty map.
        put_long(&mut bytes, -2);
        put_long(&mut bytes, 12);
        for (key, value) in [("a", 1), ("b", -1)] {
            put_str(&mut bytes, key);
            put_long(&mut bytes, 1);
            put_long(&mut bytes, value);
        }
        put_long(&mut bytes, 1);
        put_str(&mut bytes, "c");
        put_long(&mut bytes, 3);
        bytes.push(1);
        bytes.push(0);
        let decoded = decode_telemetry(&bytes).unwrap();
        let expected = BTreeMap::from([
            ("a".to_owned(), ExtraValue::Int(1)),
            ("b".to_owned(), ExtraValue::Int(-1)),
            ("c".to_owned(), ExtraValue::Bool(true)),
        ]);
        assert_eq!(decoded.extra, expected);
        assert_eq!(generic::decode_telemetry(&bytes).unwrap().extra, expected);
    }

    #[test]
    fn flight_events_round_trip_and_match_apache_avro() {
        for event in [closed(), recompute(None), recompute(Some("new battery model"))] {
            let bytes = encode_flight_event(&event);
            assert_eq!(bytes, generic::encode_flight_event(&event));
            assert_eq!(bytes[2..10], FLIGHT_EVENT.current);
            assert_eq!(decode_flight_event(&bytes).unwrap(), event);
            assert_eq!(generic::decode_flight_event(&bytes).unwrap(), event);
        }
        assert_eq!(closed().drone_id(), drone());
        assert_eq!(recompute(None).flight_id(), Uuid::from_u128(0x1234));
    }

    #[test]
    fn current_reader_reads_a_newer_writer() {
        let family = Family::load(TELEMETRY_NAME, TELEMETRY_RECORD_SCHEMA, &[("v2.avsc", TELEMETRY_V2)]);
        let record = full_record();
        let value = with_field(
            generic::telemetry_to_value(&record),
            "airspeed",
            Value::Union(1, Box::new(Value::Double(12.5))),
            "extra",
        );
        let bytes = message_with(TELEMETRY_V2, value);
        assert_eq!(decode_telemetry_with(&family, &bytes).unwrap(), record);
        // The compiled-in registry does not know the fixture.
        let fingerprint = hex(&bytes[2..10]);
        assert_eq!(decode_telemetry(&bytes), Err(DecodeError::UnknownSchema { fingerprint }));
    }

    #[test]
    fn newer_reader_reads_the_current_writer() {
        let newer = Family::load(TELEMETRY_NAME, TELEMETRY_V2, &[("current.avsc", TELEMETRY_RECORD_SCHEMA)]);
        let record = full_record();
        let bytes = encode_telemetry(&record);
        let Value::Record(fields) = newer.resolve(TELEMETRY.current, &bytes[HEADER_LEN..]).unwrap() else {
            panic!("not a record")
        };
        let airspeed = &fields.iter().find(|(name, _)| name == "airspeed").unwrap().1;
        assert_eq!(*airspeed, Value::Union(0, Box::new(Value::Null)), "the default");
        // A later build of this crate with v2 as its reader still yields the same record.
        assert_eq!(decode_telemetry_with(&newer, &bytes).unwrap(), record);
    }

    #[test]
    fn flight_event_schema_evolves_both_ways() {
        let family = Family::load(FLIGHT_EVENT_NAME, FLIGHT_EVENT_SCHEMA, &[("v2.avsc", FLIGHT_EVENT_V2)]);
        // A newer writer's RecomputeRequested, with its added field, reads fine.
        let request = Value::Record(vec![(
            "event".into(),
            Value::Union(
                1,
                Box::new(Value::Record(vec![
                    ("flight_id".into(), Value::Uuid(Uuid::from_u128(0x1234))),
                    ("drone_id".into(), Value::Uuid(drone())),
                    ("requested_at".into(), Value::TimestampMicros(1_777_640_000_000_000)),
                    ("reason".into(), Value::Union(0, Box::new(Value::Null))),
                    ("requested_by".into(), Value::Union(1, Box::new(Value::String("a@b.c".into())))),
                ])),
            ),
        )]);
        let bytes = message_with(FLIGHT_EVENT_V2, request);
        assert_eq!(decode_flight_event_with(&family, &bytes).unwrap(), recompute(None));
        // Its new kind of event cannot be read by this reader: a clear error, not a panic.
        let done = Value::Record(vec![(
            "event".into(),
            Value::Union(
                2,
                Box::new(Value::Record(vec![
                    ("flight_id".into(), Value::Uuid(Uuid::from_u128(0x1234))),
                    ("analytics_version".into(), Value::Int(3)),
                ])),
            ),
        )]);
        let bytes = message_with(FLIGHT_EVENT_V2, done);
        assert!(matches!(decode_flight_event_with(&family, &bytes), Err(DecodeError::Incompatible { .. })));
        // A newer reader reads today's events.
        let newer = Family::load(FLIGHT_EVENT_NAME, FLIGHT_EVENT_V2, &[("current.avsc", FLIGHT_EVENT_SCHEMA)]);
        for event in [closed(), recompute(Some("why"))] {
            assert_eq!(decode_flight_event_with(&newer, &encode_flight_event(&event)).unwrap(), event);
        }
    }

    /// The union branches of a FlightEvent schema, by name.
    fn event_branches(schema: &Schema) -> Vec<(String, Schema)> {
        let Schema::Record(record) = schema else { panic!("FlightEvent is a record") };
        let Schema::Union(union) = &record.fields[0].schema else { panic!("event is a union") };
        union
            .variants()
            .iter()
            .map(|variant| match variant {
                Schema::Record(inner) => (inner.name.fullname(None), variant.clone()),
                other => panic!("unexpected branch {other:?}"),
            })
            .collect()
    }

    /// The rule of avro/history/README.md: the current reader reads every old writer, and every old
    /// reader reads the current writer, except for FlightEvent branches it does not know.
    fn assert_evolvable(old_json: &str, current_json: &str) {
        let old = Schema::parse_str(old_json).unwrap();
        let current = Schema::parse_str(current_json).unwrap();
        SchemaCompatibility::can_read(&old, &current).expect("current reader reads the old writer");
        if schema_full_name(current_json).unwrap() == FLIGHT_EVENT_NAME {
            let old_branches = event_branches(&old);
            for (name, branch) in event_branches(&current) {
                if let Some((_, old_branch)) = old_branches.iter().find(|(old_name, _)| *old_name == name) {
                    SchemaCompatibility::can_read(&branch, old_branch).expect("old reader reads the current branch");
                }
            }
        } else {
            SchemaCompatibility::can_read(&current, &old).expect("old reader reads the current writer");
        }
    }

    #[test]
    fn every_schema_version_evolves_compatibly() {
        assert_evolvable(TELEMETRY_RECORD_SCHEMA, TELEMETRY_V2);
        assert_evolvable(FLIGHT_EVENT_SCHEMA, FLIGHT_EVENT_V2);
        for (file, text) in history::HISTORY {
            let current = match schema_full_name(text).unwrap().as_str() {
                TELEMETRY_NAME => TELEMETRY_RECORD_SCHEMA,
                FLIGHT_EVENT_NAME => FLIGHT_EVENT_SCHEMA,
                other => panic!("{file}: schema {other} is neither {TELEMETRY_NAME} nor {FLIGHT_EVENT_NAME}"),
            };
            assert_evolvable(text, current);
        }
        // Forces the registries, which panic on a history file that does not parse.
        assert!(TELEMETRY.writers.len() + FLIGHT_EVENT.writers.len() >= 2);
    }

    #[test]
    fn header_errors_are_clear() {
        assert_eq!(decode_telemetry(&[]), Err(DecodeError::TooShort { len: 0 }));
        assert_eq!(decode_telemetry(&[0xC3, 0x01, 1]), Err(DecodeError::TooShort { len: 3 }));
        let mut bytes = encode_telemetry(&full_record());
        bytes[0] = b'{';
        assert_eq!(decode_telemetry(&bytes), Err(DecodeError::BadMarker { found: [b'{', 0x01] }));
        let mut bytes = encode_telemetry(&full_record());
        bytes[2..10].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
        let error = decode_telemetry(&bytes).unwrap_err();
        assert_eq!(error, DecodeError::UnknownSchema { fingerprint: "deadbeef00010203".into() });
        assert_eq!(error.to_string(), "unknown writer schema fingerprint deadbeef00010203");
        let expected = DecodeError::WrongSchema { expected: FLIGHT_EVENT_NAME, found: TELEMETRY_NAME };
        assert_eq!(decode_flight_event(&encode_telemetry(&full_record())), Err(expected));
        let expected = DecodeError::WrongSchema { expected: TELEMETRY_NAME, found: FLIGHT_EVENT_NAME };
        assert_eq!(decode_telemetry(&encode_flight_event(&closed())), Err(expected));
    }

    #[test]
    fn truncated_and_extended_messages_are_errors() {
        for record in [full_record(), minimal_record()] {
            let bytes = encode_telemetry(&record);
            for len in 0..bytes.len() {
                assert!(decode_telemetry(&bytes[..len]).is_err(), "prefix of {len} bytes");
                assert!(generic::decode_telemetry(&bytes[..len]).is_err(), "prefix of {len} bytes");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode_telemetry(&longer), Err(malformed("1 trailing bytes")));
            assert!(generic::decode_telemetry(&longer).is_err());
        }
        for event in [closed(), recompute(Some("x"))] {
            let bytes = encode_flight_event(&event);
            for len in 0..bytes.len() {
                assert!(decode_flight_event(&bytes[..len]).is_err(), "prefix of {len} bytes");
            }
        }
    }

    #[test]
    fn corrupt_data_is_an_error_not_a_panic() {
        let datum_start = encode_telemetry(&minimal_record());
        let cases: [(&str, Vec<u8>); 5] = [
            ("not a uuid", [&datum_start[..10], &[72], &[b'x'; 36]].concat()),
            ("invalid union branch", [&datum_start[..58], &[4]].concat()),
            ("varint overflows 64 bits", [&datum_start[..47], &[0xff; 10]].concat()),
            ("not utf-8", [&datum_start[..10], &[4, 0xff, 0xfe]].concat()),
            ("map block count exceeds the data", [&datum_start[..datum_start.len() - 1], &[0x80, 0x80, 0x04]].concat()),
        ];
        for (what, bytes) in cases {
            let error = decode_telemetry(&bytes).unwrap_err();
            assert!(matches!(error, DecodeError::Malformed { .. }), "{what}: {error}");
            assert!(generic::decode_telemetry(&bytes).is_err(), "{what}");
        }
        // Random bytes after a valid header, and random flips of valid messages.
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let valid = encode_telemetry(&full_record());
        let event = encode_flight_event(&closed());
        for round in 0..20_000 {
            let len = (random.next() % 200) as usize;
            let noise: Vec<u8> = (0..len).map(|_| random.next() as u8).collect();
            let _ = decode_telemetry(&[&valid[..10], &noise].concat());
            let _ = decode_flight_event(&[&event[..10], &noise].concat());
            if round % 10 == 0 {
                let _ = generic::decode_telemetry(&[&valid[..10], &noise].concat());
                let _ = generic::decode_flight_event(&[&event[..10], &noise].concat());
            }
            let mut flipped = valid.clone();
            let at = 10 + (random.next() as usize) % (flipped.len() - 10);
            flipped[at] = random.next() as u8;
            let _ = decode_telemetry(&flipped);
        }
    }
}

#[cfg(test)]
mod packet_tests {
    use super::*;

    const NOW_US: i64 = 1_777_636_800_000_000;

    fn full_packet() -> TelemetryPacket {
        let json = r#"{"ts": "2026-05-01T12:00:00.020Z", "throttle": 0.42, "voltage": 22.8,
            "current": -3.5, "mah_drawn": 812, "rssi": -87, "position": [12.1, -3.4, 25.0],
            "gps": {"lat": 47.397742, "lon": 8.545594, "alt_m": 488.1}, "velocity": [4.2, 0.1, -0.3],
            "attitude": [2.5, -8.1, 123.0], "extra": {"mode": "loiter", "sats": 14, "hdop": 0.75, "armed": true}}"#;
        crate::parse_frame(json, NOW_US).unwrap().remove(0)
    }

    fn minimal_packet() -> TelemetryPacket {
        crate::parse_frame(r#"{"ts": 1777636800020, "throttle": 0}"#, NOW_US).unwrap().remove(0)
    }

    #[test]
    fn packets_round_trip_through_the_hand_written_and_the_generic_path() {
        for packet in [full_packet(), minimal_packet()] {
            let bytes = encode_telemetry_packet(&packet);
            assert_eq!(bytes[..2], MARKER);
            assert_eq!(decode_telemetry_packet(&bytes, NOW_US).unwrap(), packet);
            // apache-avro reads the same bytes with the .avsc, to the same packet.
            let (version, datum) = split_header(&bytes).unwrap();
            let Value::Record(mut fields) = TELEMETRY_PACKET.resolve(version, datum).unwrap() else {
                panic!("not a record");
            };
            fields.push(("drone_id".into(), Value::Uuid(Uuid::nil())));
            fields.push(("received_at".into(), Value::Long(0)));
            let decoded = telemetry_from_value(Value::Record(fields)).unwrap();
            assert_eq!(crate::packet::packet_from_decoded(decoded, NOW_US).unwrap(), packet);
        }
    }

    #[test]
    fn decoded_packets_obey_the_json_rules() {
        let mut record = TelemetryRecord::from_packet(Uuid::nil(), 0, full_packet());
        record.throttle = f64::NAN;
        record.voltage = Some(120.0);
        record.gps = Some(Gps { lat: 91.0, lon: 0.0, alt_m: f64::INFINITY });
        record.ts_us = NOW_US + 61_000_000;
        record.mah_drawn = Some(-1);
        let mut bytes = MARKER.to_vec();
        bytes.extend_from_slice(&TELEMETRY_PACKET.current);
        put_long(&mut bytes, record.ts_us);
        write_telemetry_tail(&record, &mut bytes);
        let Err(PacketDecodeError::Invalid(errors)) = decode_telemetry_packet(&bytes, NOW_US) else {
            panic!("accepted an invalid packet");
        };
        let found: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.reason.as_str())).collect();
        for expected in [
            ("ts", "more than 60 s in the future"),
            ("throttle", "must be finite"),
            ("voltage", "must be between 0 and 100"),
            ("mah_drawn", "must be at least 0"),
            ("gps.lat", "must be between -90 and 90"),
            ("gps.alt_m", "must be finite"),
        ] {
            assert!(found.contains(&expected), "{expected:?} not in {found:?}");
        }
    }

    #[test]
    fn other_messages_and_garbage_are_refused() {
        let record = TelemetryRecord::from_packet(Uuid::new_v4(), 1, full_packet());
        assert!(matches!(
            decode_telemetry_packet(&encode_telemetry(&record), NOW_US),
            Err(PacketDecodeError::Decode(DecodeError::WrongSchema { .. }))
        ));
        let mut truncated = encode_telemetry_packet(&full_packet());
        truncated.pop();
        assert!(matches!(decode_telemetry_packet(&truncated, NOW_US), Err(PacketDecodeError::Decode(_))));
        assert!(matches!(decode_telemetry_packet(b"{}", NOW_US), Err(PacketDecodeError::Decode(_))));
    }

    #[test]
    fn the_packet_schema_is_the_record_schema_without_the_fields_ingest_adds() {
        let packet: Json = serde_json::from_str(TELEMETRY_PACKET_SCHEMA).unwrap();
        let record: Json = serde_json::from_str(TELEMETRY_RECORD_SCHEMA).unwrap();
        let names = |schema: &Json| -> Vec<String> {
            schema["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_owned()).collect()
        };
        let mut expected = names(&record);
        expected.retain(|name| name != "drone_id" && name != "received_at");
        assert_eq!(names(&packet), expected);
    }
}
