//! The hand-written binary encoder of the current schemas. It must match apache-avro byte for
//! byte; the tests compare the two.

use uuid::Uuid;

use super::HEADER_LEN;
use crate::record::{FlightEvent, TelemetryRecord};
use crate::values::{ExtraValue, Vec3};

pub(super) fn put_long(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push(zigzag as u8 | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

pub(super) fn put_double(out: &mut Vec<u8>, value: f64) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(super) fn put_str(out: &mut Vec<u8>, text: &str) {
    put_long(out, text.len() as i64);
    out.extend_from_slice(text.as_bytes());
}

pub(super) fn put_uuid(out: &mut Vec<u8>, id: Uuid) {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    put_str(out, id.hyphenated().encode_lower(&mut text));
}

/// A `["null", T]` union: branch 0 for null, else branch 1 followed by the value.
pub(super) fn put_optional<T>(out: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
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

pub(super) fn telemetry_size_hint(record: &TelemetryRecord) -> usize {
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

pub(super) fn write_telemetry_datum(record: &TelemetryRecord, out: &mut Vec<u8>) {
    put_uuid(out, record.drone_id);
    put_long(out, record.ts_us);
    put_long(out, record.received_at_us);
    write_telemetry_tail(record, out);
}

/// The fields a `TelemetryRecord` and a `TelemetryPacket` share, in that order, from `position`
/// to `extra`.
pub(super) fn write_telemetry_tail(record: &TelemetryRecord, out: &mut Vec<u8>) {
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

pub(super) fn write_flight_event_datum(event: &FlightEvent, out: &mut Vec<u8>) {
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
