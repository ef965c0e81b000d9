//! apache-avro's generic `Value` path: the tests' reference implementation of the hand-written
//! codec, and the baseline of `examples/bench.rs`. Not an API, and not in a production build: only
//! with `cfg(test)` or the `generic` feature.

use apache_avro::types::Value;

use super::registry::{FLIGHT_EVENT, TELEMETRY, TELEMETRY_PACKET};
use super::resolved::{flight_event_from_value, packet_from_value, telemetry_from_value};
use super::{packet_draft, split_header, DecodeError, PacketDecodeError, MARKER};
use crate::packet::TelemetryPacket;
use crate::record::{FlightEvent, TelemetryRecord};
use crate::values::{ExtraValue, Vec3};

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

/// Decodes a `TelemetryPacket` through apache-avro's decoder and schema resolution, even for the
/// current schema, then applies the rules as [`super::decode_telemetry_packet`] does.
pub fn decode_telemetry_packet(bytes: &[u8], now_us: i64) -> Result<TelemetryPacket, PacketDecodeError> {
    let (version, datum) = split_header(bytes)?;
    let (ts_us, tail) = packet_from_value(TELEMETRY_PACKET.resolve(version, datum)?)?;
    crate::packet::parse_draft(packet_draft(ts_us, tail), now_us).map_err(PacketDecodeError::Invalid)
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
