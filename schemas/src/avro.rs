//! Avro single-object encoding of [`TelemetryRecord`] and [`FlightEvent`].
//!
//! A message is `C3 01`, then the 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint of the
//! writer schema's Parsing Canonical Form, then the Avro binary datum. The fingerprint is what
//! makes schema evolution work: a reader looks the writer schema up in a registry of every known
//! version of that schema (the current `.avsc` files plus the superseded ones kept in
//! `avro/history/`, embedded at build time) and resolves it against its current reader schema.
//!
//! Hot paths do not go through apache-avro's generic `Value`: telemetry records are encoded by a
//! hand-written writer, and decoded by a hand-written reader when the writer schema is the current
//! one (the normal case). Both are verified byte for byte and value for value against apache-avro
//! in the tests. Any other known writer schema goes through apache-avro's schema resolution.
//! Flight events are rare, so they are encoded by hand (it is short) and always decoded through
//! apache-avro.
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

use crate::record::{
    Attitude, ExtraValue, FlightClosed, FlightEvent, FlightRule, Gps, RecomputeRequested,
    TelemetryRecord, Vec3,
};

/// The current `TelemetryRecord` schema (`avro/telemetry_record.avsc`).
pub const TELEMETRY_RECORD_SCHEMA: &str = include_str!("../avro/telemetry_record.avsc");
/// The current `FlightEvent` schema (`avro/flight_event.avsc`).
pub const FLIGHT_EVENT_SCHEMA: &str = include_str!("../avro/flight_event.avsc");

mod history {
    include!(concat!(env!("OUT_DIR"), "/history.rs"));
}

const MARKER: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;
const TELEMETRY_NAME: &str = "flightline.TelemetryRecord";
const FLIGHT_EVENT_NAME: &str = "flightline.FlightEvent";

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

impl Family {
    /// Builds the family named `full_name` from its current schema and the files of `history`
    /// that carry the same full name. The schemas are embedded in the binary, so a schema that
    /// does not parse is a build defect: this panics, and the tests exercise it.
    fn load(full_name: &'static str, current_json: &str, history: &[(&str, &str)]) -> Family {
        let reader = Schema::parse_str(current_json)
            .unwrap_or_else(|error| panic!("schema {full_name} does not parse: {error}"));
        let current = fingerprint(current_json)
            .unwrap_or_else(|error| panic!("schema {full_name} has no canonical form: {error}"));
        let mut writers = HashMap::new();
        writers.insert(current, reader.clone());
        for (file, text) in history {
            let name = schema_full_name(text)
                .unwrap_or_else(|error| panic!("history schema {file}: {error}"));
            if name != full_name {
                continue;
            }
            let schema = Schema::parse_str(text)
                .unwrap_or_else(|error| panic!("history schema {file} does not parse: {error}"));
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
        let value = apache_avro::from_avro_datum(writer, &mut rest, None)
            .map_err(|error| malformed(error.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed(format!("{} trailing bytes", rest.len())));
        }
        value.resolve(&self.reader).map_err(|error| DecodeError::Incompatible {
            fingerprint: hex(&version),
            reason: error.to_string(),
        })
    }

    fn not_mine(&self, version: [u8; 8]) -> DecodeError {
        for other in [&*TELEMETRY, &*FLIGHT_EVENT] {
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
                            let symbols = object.get("symbols").and_then(Json::as_array).ok_or("enum without symbols")?;
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
                            let fields = object.get("fields").and_then(Json::as_array).ok_or("record without fields")?;
                            out.push_str(",\"fields\":[");
                            for (position, field) in fields.iter().enumerate() {
                                if position > 0 {
                                    out.push(',');
                                }
                                let field_name = field.get("name").and_then(Json::as_str).ok_or("field without a name")?;
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

    fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T, DecodeError>) -> Result<Option<T>, DecodeError> {
        if self.present()? { read(self).map(Some) } else { Ok(None) }
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
    let position = cursor.optional(Cursor::vec3)?;
    let gps = cursor.optional(|cursor| {
        Ok(Gps { lat: cursor.double()?, lon: cursor.double()?, alt_m: cursor.double()? })
    })?;
    let velocity = cursor.optional(Cursor::vec3)?;
    let attitude = cursor.optional(|cursor| {
        Ok(Attitude { roll: cursor.double()?, pitch: cursor.double()?, yaw: cursor.double()? })
    })?;
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
                    record(vec![("lat", Value::Double(gps.lat)), ("lon", Value::Double(gps.lon)), ("alt_m", Value::Double(gps.alt_m))])
                })),
            ),
            ("velocity", optional(r.velocity.map(vec3))),
            (
                "attitude",
                optional(r.attitude.map(|a| {
                    record(vec![("roll", Value::Double(a.roll)), ("pitch", Value::Double(a.pitch)), ("yaw", Value::Double(a.yaw))])
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
