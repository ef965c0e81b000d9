//! The JSON telemetry packet of CONTRACT.md §1. Parse, don't validate: a [`TelemetryPacket`]
//! exists only if it satisfies every rule, and a rejected body lists every problem of every packet.
//!
//! Two readers fill a `PacketDraft` (the packet's fields as parsed, typed but not yet checked):
//! `json.rs` streams a request body or frame, and `crate::avro` decodes a binary frame. One
//! function, `Validator::packet` in `validate.rs`, then applies every rule to the draft and is the
//! only place a `TelemetryPacket` is made, so both encodings obey the same rules with the same
//! messages. A packet's problems are listed in the order its fields appear in it.
//!
//! A valid packet also fits the database (`telemetry_raw`): `mah_drawn` is at most `i64::MAX`
//! (`bigint`), `rssi` is far inside `integer`, `ts` lies between 1970 and a minute from now
//! (`timestamptz`), doubles are finite, and `extra` (`jsonb`) holds no U+0000, which PostgreSQL
//! refuses in a `jsonb` string or key (CONTRACT.md §1). Every finite double, written in shortest
//! round-trip form, is a valid `jsonb` number: its exponent is within -324..=308 and PostgreSQL
//! accepts up to ±1000 (it stores the exact decimal, and gives `-0.0` back as `0.0`).
//!
//! Decisions the contract leaves open:
//! - `null` for an optional field (`voltage`, `gps`, `extra`, …) means absent; `null` for `ts` or
//!   `throttle` is reported as `required`. Inside `gps`, the arrays and `extra`, `null` is an error.
//! - `mah_drawn`, `rssi` and epoch-millisecond `ts` must be JSON integers: `12` is accepted,
//!   `12.0` and `1.5` are rejected with `must be an integer`.
//! - `ts` must not be before 1970-01-01T00:00:00Z (timestamps are stored as µs since the epoch),
//!   and fractional seconds beyond the microsecond are truncated.
//! - A key that appears twice in a packet, in `gps` or in `extra` is rejected (`duplicate field`,
//!   `duplicate key`): JSON parsers disagree on which copy wins, so we keep neither.
//! - `extra` size is the length in bytes of its compact JSON serialisation as parsed (keys
//!   sorted, numbers in shortest round-trip form), e.g. `{"mode":"loiter","sats":14}` is 27 bytes.
//! - Numbers too large for a double (`1e400`) are rejected by the JSON parser itself, so such a
//!   body is `invalid_json` with the position of the number, not a field error.
//! - The keys of `extra` must not contain U+0000 either (`key must not contain U+0000`), like its
//!   strings (`must not contain U+0000`).
//! - A field error's `field` is a JSON path into the packet (`voltage`, `gps.lat`, `position[2]`,
//!   `extra.mode`); an element of the array that is not an object is reported with field `""`.

mod json;
mod validate;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::values::{Attitude, ExtraValue, Gps, Vec3};

pub(crate) use validate::{GpsDraft, PacketDraft, Slot};

/// Most packets in one request (more is 413 `too_many_packets`).
pub const MAX_PACKETS_PER_BATCH: usize = 500;
/// How far `ts` may be ahead of the server clock, µs.
pub const MAX_FUTURE_US: i64 = 60_000_000;
/// Most keys in `extra`.
pub const MAX_EXTRA_KEYS: usize = 32;
/// Largest `extra`, in bytes of compact JSON.
pub const MAX_EXTRA_BYTES: usize = 4096;

/// A telemetry packet that satisfies every rule of CONTRACT.md §1 except the cross-request `ts`
/// order, which the caller checks with [`TelemetryPacket::ts_us`].
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryPacket {
    pub(crate) ts_us: i64,
    pub(crate) throttle: f64,
    pub(crate) voltage: Option<f64>,
    pub(crate) current: Option<f64>,
    pub(crate) mah_drawn: Option<i64>,
    pub(crate) rssi: Option<i32>,
    pub(crate) position: Option<Vec3>,
    pub(crate) gps: Option<Gps>,
    pub(crate) velocity: Option<Vec3>,
    pub(crate) attitude: Option<Attitude>,
    pub(crate) extra: BTreeMap<String, ExtraValue>,
}

impl TelemetryPacket {
    /// Event time, µs since the Unix epoch.
    pub fn ts_us(&self) -> i64 {
        self.ts_us
    }
    /// 0.0–1.0.
    pub fn throttle(&self) -> f64 {
        self.throttle
    }
    /// Volts, 0–100.
    pub fn voltage(&self) -> Option<f64> {
        self.voltage
    }
    /// Amperes, -50–1000.
    pub fn current(&self) -> Option<f64> {
        self.current
    }
    /// mAh, ≥ 0.
    pub fn mah_drawn(&self) -> Option<i64> {
        self.mah_drawn
    }
    /// -200–1023.
    pub fn rssi(&self) -> Option<i32> {
        self.rssi
    }
    /// Metres, local ENU.
    pub fn position(&self) -> Option<Vec3> {
        self.position
    }
    /// WGS-84.
    pub fn gps(&self) -> Option<Gps> {
        self.gps
    }
    /// m/s.
    pub fn velocity(&self) -> Option<Vec3> {
        self.velocity
    }
    /// Degrees.
    pub fn attitude(&self) -> Option<Attitude> {
        self.attitude
    }
    /// Flat extra values.
    pub fn extra(&self) -> &BTreeMap<String, ExtraValue> {
        &self.extra
    }
}

/// One problem with one field of one packet; serialises as the API's `details` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Position of the packet in the request (0 for a single packet).
    pub index: usize,
    /// JSON path of the field in the packet, e.g. `gps.lat`, `position[2]`, `extra.mode`.
    pub field: String,
    /// Short lowercase explanation, e.g. `must be between 0 and 1`.
    pub reason: String,
}

/// Why a request body (or WebSocket frame) was rejected as a whole.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    /// Not JSON (HTTP 400 `invalid_json`).
    #[error("body is not valid json: {0}")]
    InvalidJson(String),
    /// JSON, but not an array of packets (nor, for a frame, a packet object) (400 `invalid_body`).
    #[error("expected a json array of packets")]
    NotAnArray,
    /// An empty array (400 `invalid_body`).
    #[error("expected at least one packet")]
    Empty,
    /// More than [`MAX_PACKETS_PER_BATCH`] packets (413 `too_many_packets`).
    #[error("too many packets: {count}, at most {max} per request")]
    TooManyPackets {
        /// Packets in the body.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Some packets break the rules; every problem is listed (400, `details`).
    #[error("{} invalid field(s) in the packets", .0.len())]
    Invalid(Vec<FieldError>),
}

/// Parses a POST /v1/telemetry body: a JSON array of 1 to [`MAX_PACKETS_PER_BATCH`] packets,
/// each valid, with `ts` strictly increasing and at most [`MAX_FUTURE_US`] after `now_us`.
pub fn parse_batch(body: &[u8], now_us: i64) -> Result<Vec<TelemetryPacket>, BatchError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    json::parse_body(&mut deserializer, now_us, false)
}

/// Parses a WebSocket text frame: one packet object, or an array of packets as in [`parse_batch`].
pub fn parse_frame(text: &str, now_us: i64) -> Result<Vec<TelemetryPacket>, BatchError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    json::parse_body(&mut deserializer, now_us, true)
}

/// Parses one packet already held as a `serde_json::Value`; errors carry index 0.
pub fn parse_packet_value(value: &serde_json::Value, now_us: i64) -> Result<TelemetryPacket, BatchError> {
    json::parse_value(value, now_us)
}

/// Applies the rules of CONTRACT.md §1 to one packet read from another encoding (a binary
/// WebSocket frame): the same checks and messages as for JSON; errors carry index 0.
pub(crate) fn parse_draft(draft: PacketDraft<'_>, now_us: i64) -> Result<TelemetryPacket, Vec<FieldError>> {
    let mut validator = validate::Validator::new(now_us);
    validator.packet(0, draft);
    match validator.into_result() {
        Ok(mut packets) => Ok(packets.remove(0)),
        Err(BatchError::Invalid(errors)) => Err(errors),
        Err(other) => unreachable!("a single packet fails only with field errors: {other}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fmt;

    use serde_json::json;

    use super::json::TS_FORMAT;
    use super::validate::compact_json_len;
    use super::*;

    /// 2026-05-01T12:00:10Z.
    pub(crate) const NOW: i64 = 1_777_636_810_000_000;
    /// 2026-05-01T12:00:00.020Z.
    pub(crate) const TS: i64 = 1_777_636_800_020_000;

    /// The example of CONTRACT.md §1.
    pub(crate) const CONTRACT_EXAMPLE: &str = r#"{
      "ts": "2026-05-01T12:00:00.020Z",
      "throttle": 0.42,
      "voltage": 22.8, "current": 31.5, "mah_drawn": 812, "rssi": 87,
      "position": [12.1, -3.4, 25.0],
      "gps": {"lat": 47.397742, "lon": 8.545594, "alt_m": 488.1},
      "velocity": [4.2, 0.1, -0.3],
      "attitude": [2.5, -8.1, 123.0],
      "extra": {"mode": "loiter", "sats": 14}
    }"#;

    /// A valid packet with `fields` appended.
    pub(crate) fn parse_one(fields: &str) -> Result<TelemetryPacket, BatchError> {
        let body = format!(r#"[{{"ts": "2026-05-01T12:00:00.020Z", "throttle": 0.5{fields}}}]"#);
        parse_batch(body.as_bytes(), NOW).map(|mut packets| packets.remove(0))
    }

    fn error(index: usize, field: &str, reason: &str) -> FieldError {
        FieldError { index, field: field.into(), reason: reason.into() }
    }

    fn errors_of(result: Result<impl fmt::Debug, BatchError>) -> Vec<FieldError> {
        match result {
            Err(BatchError::Invalid(errors)) => errors,
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    /// `fields` (appended to a valid packet) is rejected with exactly this one error.
    #[track_caller]
    fn rejects(fields: &str, field: &str, reason: &str) {
        assert_eq!(errors_of(parse_one(fields)), vec![error(0, field, reason)], "{fields}");
    }

    #[test]
    fn the_contract_example_parses() {
        let packets = parse_batch(format!("[{CONTRACT_EXAMPLE}]").as_bytes(), NOW).unwrap();
        let packet = &packets[0];
        assert_eq!(packet.ts_us(), TS);
        assert_eq!(packet.throttle(), 0.42);
        assert_eq!(packet.voltage(), Some(22.8));
        assert_eq!(packet.current(), Some(31.5));
        assert_eq!(packet.mah_drawn(), Some(812));
        assert_eq!(packet.rssi(), Some(87));
        assert_eq!(packet.position(), Some(Vec3 { x: 12.1, y: -3.4, z: 25.0 }));
        assert_eq!(packet.gps(), Some(Gps { lat: 47.397742, lon: 8.545594, alt_m: 488.1 }));
        assert_eq!(packet.velocity(), Some(Vec3 { x: 4.2, y: 0.1, z: -0.3 }));
        assert_eq!(packet.attitude(), Some(Attitude { roll: 2.5, pitch: -8.1, yaw: 123.0 }));
        let extra = BTreeMap::from([
            ("mode".to_owned(), ExtraValue::String("loiter".into())),
            ("sats".to_owned(), ExtraValue::Int(14)),
        ]);
        assert_eq!(packet.extra(), &extra);
    }

    #[test]
    fn optional_fields_may_be_absent_or_null() {
        let packet = parse_one("").unwrap();
        assert_eq!((packet.voltage(), packet.gps(), packet.extra().len()), (None, None, 0));
        let nulls = r#", "voltage": null, "current": null, "mah_drawn": null, "rssi": null, "position": null,
            "gps": null, "velocity": null, "attitude": null, "extra": null"#;
        assert_eq!(parse_one(nulls).unwrap(), packet);
    }

    #[test]
    fn ts_accepts_rfc3339_with_any_offset_and_epoch_milliseconds() {
        let cases = [
            (r#""2026-05-01T12:00:00.020Z""#, TS),
            (r#""2026-05-01T14:00:00.020+02:00""#, TS),
            (r#""2026-05-01T06:30:00.020-05:30""#, TS),
            (r#""2026-05-01T12:00:00Z""#, TS - 20_000),
            (r#""2026-05-01T12:00:00.0200009Z""#, TS), // Sub-µs digits are truncated.
            (r#""2026-05-01T12:00:00.123456789Z""#, TS - 20_000 + 123_456),
            ("1777636800020", TS),
            ("0", 0),
        ];
        for (ts, expected) in cases {
            let body = format!(r#"[{{"ts": {ts}, "throttle": 0}}]"#);
            assert_eq!(parse_batch(body.as_bytes(), NOW).unwrap()[0].ts_us(), expected, "{ts}");
        }
    }

    #[test]
    fn ts_rejections() {
        let cases = [
            (r#""2026-05-01T12:00:00.020""#, TS_FORMAT), // No offset.
            (r#""2026-05-01""#, TS_FORMAT),
            (r#""yesterday""#, TS_FORMAT),
            (r#""1777636800020""#, TS_FORMAT),
            ("true", TS_FORMAT),
            ("[1]", TS_FORMAT),
            ("1777636800020.0", "epoch milliseconds must be an integer"),
            ("1777636800020.5", "epoch milliseconds must be an integer"),
            ("-1", "must not be before 1970-01-01T00:00:00Z"),
            (r#""1969-12-31T23:59:59Z""#, "must not be before 1970-01-01T00:00:00Z"),
            ("-9223372036854775808", "must not be before 1970-01-01T00:00:00Z"),
            ("9223372036854775807", "more than 60 s in the future"),
            ("18446744073709551615", "more than 60 s in the future"),
            (r#""2026-05-01T12:01:10.000001Z""#, "more than 60 s in the future"),
        ];
        for (ts, reason) in cases {
            let body = format!(r#"[{{"ts": {ts}, "throttle": 0}}]"#);
            assert_eq!(errors_of(parse_batch(body.as_bytes(), NOW)), vec![error(0, "ts", reason)], "{ts}");
        }
        // Exactly 60 s ahead is accepted.
        let body = r#"[{"ts": "2026-05-01T12:01:10Z", "throttle": 0}]"#;
        assert_eq!(parse_batch(body.as_bytes(), NOW).unwrap()[0].ts_us(), NOW + MAX_FUTURE_US);
        for body in [r#"[{"throttle": 0}]"#, r#"[{"ts": null, "throttle": 0}]"#] {
            assert_eq!(errors_of(parse_batch(body.as_bytes(), NOW)), vec![error(0, "ts", "required")]);
        }
    }

    #[test]
    fn ts_must_increase_strictly_within_the_batch() {
        let batch = |stamps: &[i64]| {
            let packets: Vec<String> = stamps.iter().map(|ms| format!(r#"{{"ts": {ms}, "throttle": 0}}"#)).collect();
            parse_batch(format!("[{}]", packets.join(",")).as_bytes(), NOW)
        };
        assert_eq!(batch(&[1, 2, 3]).unwrap().len(), 3);
        let reason = "must be strictly greater than the previous packet's ts";
        assert_eq!(errors_of(batch(&[1, 1])), vec![error(1, "ts", reason)]);
        assert_eq!(errors_of(batch(&[10, 5, 7])), vec![error(1, "ts", reason)]);
        assert_eq!(errors_of(batch(&[10, 5, 4, 20])), vec![error(1, "ts", reason), error(2, "ts", reason)]);
        // The same instant written two ways.
        let body = r#"[{"ts": "2026-05-01T12:00:00.020Z", "throttle": 0}, {"ts": 1777636800020, "throttle": 0}]"#;
        assert_eq!(errors_of(parse_batch(body.as_bytes(), NOW)), vec![error(1, "ts", reason)]);
    }

    #[test]
    fn throttle_rules() {
        for throttle in ["0", "1", "0.0", "1.0", "0.05"] {
            let body = format!(r#"[{{"ts": 1, "throttle": {throttle}}}]"#);
            assert!(parse_batch(body.as_bytes(), NOW).is_ok(), "{throttle}");
        }
        for (throttle, reason) in [
            ("-0.01", "must be between 0 and 1"),
            ("1.01", "must be between 0 and 1"),
            (r#""0.5""#, "must be a number"),
            ("null", "required"),
        ] {
            let body = format!(r#"[{{"ts": 1, "throttle": {throttle}}}]"#);
            assert_eq!(errors_of(parse_batch(body.as_bytes(), NOW)), vec![error(0, "throttle", reason)], "{throttle}");
        }
        assert_eq!(errors_of(parse_batch(br#"[{"ts": 1}]"#, NOW)), vec![error(0, "throttle", "required")]);
    }

    #[test]
    fn electrical_rules() {
        for fields in [
            r#", "voltage": 0, "current": -50, "mah_drawn": 0, "rssi": -200"#,
            r#", "voltage": 100, "current": 1000, "mah_drawn": 9223372036854775807, "rssi": 1023"#,
            r#", "voltage": 22.8, "current": 0.0, "mah_drawn": 12, "rssi": 0"#,
        ] {
            assert!(parse_one(fields).is_ok(), "{fields}");
        }
        rejects(r#", "voltage": -0.001"#, "voltage", "must be between 0 and 100");
        rejects(r#", "voltage": 100.001"#, "voltage", "must be between 0 and 100");
        rejects(r#", "voltage": "22""#, "voltage", "must be a number");
        rejects(r#", "current": -50.001"#, "current", "must be between -50 and 1000");
        rejects(r#", "current": 1000.5"#, "current", "must be between -50 and 1000");
        rejects(r#", "current": true"#, "current", "must be a number");
        rejects(r#", "mah_drawn": 1.5"#, "mah_drawn", "must be an integer");
        rejects(r#", "mah_drawn": 12.0"#, "mah_drawn", "must be an integer");
        rejects(r#", "mah_drawn": "12""#, "mah_drawn", "must be an integer");
        rejects(r#", "mah_drawn": -1"#, "mah_drawn", "must be at least 0");
        rejects(r#", "mah_drawn": 9223372036854775808"#, "mah_drawn", "must be at most 9223372036854775807");
        rejects(r#", "rssi": -201"#, "rssi", "must be between -200 and 1023");
        rejects(r#", "rssi": 1024"#, "rssi", "must be between -200 and 1023");
        rejects(r#", "rssi": 18446744073709551615"#, "rssi", "must be between -200 and 1023");
        rejects(r#", "rssi": 87.5"#, "rssi", "must be an integer");
    }

    #[test]
    fn vector_rules() {
        let packet =
            parse_one(r#", "position": [0, -1.5, 1e300], "velocity": [1, 2, 3], "attitude": [-180, 0, 540]"#).unwrap();
        assert_eq!(packet.position(), Some(Vec3 { x: 0.0, y: -1.5, z: 1e300 }));
        assert_eq!(packet.attitude(), Some(Attitude { roll: -180.0, pitch: 0.0, yaw: 540.0 }));
        rejects(r#", "position": [1, 2]"#, "position", "must be an array of 3 numbers");
        rejects(r#", "position": [1, 2, 3, 4]"#, "position", "must be an array of 3 numbers");
        rejects(r#", "velocity": {"x": 1, "y": 2, "z": 3}"#, "velocity", "must be an array of 3 numbers");
        rejects(r#", "attitude": "1,2,3""#, "attitude", "must be an array of 3 numbers");
        rejects(r#", "position": [1, 2, "3"]"#, "position[2]", "must be a number");
        assert_eq!(
            errors_of(parse_one(r#", "attitude": [null, 2, [3]]"#)),
            vec![error(0, "attitude[0]", "must be a number"), error(0, "attitude[2]", "must be a number")]
        );
    }

    #[test]
    fn gps_rules() {
        let packet = parse_one(r#", "gps": {"alt_m": -430.5, "lon": -180, "lat": 90}"#).unwrap();
        assert_eq!(packet.gps(), Some(Gps { lat: 90.0, lon: -180.0, alt_m: -430.5 }));
        rejects(r#", "gps": {"lat": 90.0001, "lon": 0, "alt_m": 0}"#, "gps.lat", "must be between -90 and 90");
        rejects(r#", "gps": {"lat": 0, "lon": 180.5, "alt_m": 0}"#, "gps.lon", "must be between -180 and 180");
        rejects(r#", "gps": {"lat": 0, "lon": 0, "alt_m": "high"}"#, "gps.alt_m", "must be a number");
        rejects(r#", "gps": {"lat": 0, "lon": 0, "alt_m": null}"#, "gps.alt_m", "must be a number");
        rejects(r#", "gps": {"lat": 0, "alt_m": 0}"#, "gps.lon", "required");
        rejects(r#", "gps": {"lat": 0, "lon": 0, "alt_m": 0, "alt": 1}"#, "gps.alt", "unknown field");
        rejects(r#", "gps": {"lat": 0, "lat": 1, "lon": 0, "alt_m": 0}"#, "gps.lat", "duplicate field");
        rejects(r#", "gps": [47.3, 8.5, 488]"#, "gps", "must be an object with lat, lon and alt_m");
        assert_eq!(
            errors_of(parse_one(r#", "gps": {}"#)),
            vec![error(0, "gps.lat", "required"), error(0, "gps.lon", "required"), error(0, "gps.alt_m", "required")]
        );
    }

    #[test]
    fn extra_rules() {
        let packet =
            parse_one(r#", "extra": {"mode": "loiter", "sats": 14, "hdop": 0.9, "f": 12.0, "e": 1e2, "armed": false, "big": 18446744073709551615, "q\"k": "\u00e9"}"#)
                .unwrap();
        let expected = BTreeMap::from([
            ("mode".to_owned(), ExtraValue::String("loiter".into())),
            ("sats".to_owned(), ExtraValue::Int(14)),
            ("hdop".to_owned(), ExtraValue::Float(0.9)),
            ("f".to_owned(), ExtraValue::Float(12.0)),
            ("e".to_owned(), ExtraValue::Float(100.0)),
            ("armed".to_owned(), ExtraValue::Bool(false)),
            ("big".to_owned(), ExtraValue::Float(18446744073709551615.0)),
            ("q\"k".to_owned(), ExtraValue::String("é".into())),
        ]);
        assert_eq!(packet.extra(), &expected);
        let reason = "must be a string, number or boolean";
        rejects(r#", "extra": {"mode": null}"#, "extra.mode", reason);
        rejects(r#", "extra": {"nested": {"a": 1}}"#, "extra.nested", reason);
        rejects(r#", "extra": {"list": [1]}"#, "extra.list", reason);
        rejects(r#", "extra": {"a": 1, "a": 2}"#, "extra.a", "duplicate key");
        rejects(r#", "extra": "loiter""#, "extra", "must be an object");
        rejects(r#", "extra": [["mode", "loiter"]]"#, "extra", "must be an object");

        let keys = |count: usize| (0..count).map(|key| format!(r#""k{key}": {key}"#)).collect::<Vec<_>>().join(",");
        assert_eq!(parse_one(&format!(r#", "extra": {{{}}}"#, keys(32))).unwrap().extra().len(), 32);
        rejects(&format!(r#", "extra": {{{}}}"#, keys(33)), "extra", "must have at most 32 keys");

        // {"k":"xxx…"} is 8 bytes plus the string.
        let sized = |len: usize| format!(r#", "extra": {{ "k" : "{}" }}"#, "x".repeat(len));
        assert!(parse_one(&sized(MAX_EXTRA_BYTES - 8)).is_ok());
        rejects(&sized(MAX_EXTRA_BYTES - 7), "extra", "must be at most 4096 bytes as compact json");
        let mut extra = BTreeMap::new();
        extra.insert("mode".to_owned(), ExtraValue::String("loiter".into()));
        extra.insert("sats".to_owned(), ExtraValue::Int(14));
        assert_eq!(compact_json_len(&extra), r#"{"mode":"loiter","sats":14}"#.len());
    }

    #[test]
    fn extra_strings_and_keys_must_not_contain_u0000() {
        // PostgreSQL cannot store U+0000 in jsonb (CONTRACT.md §1): the whole batch would fail to store.
        let five_seconds_ago_ms = (NOW - 5_000_000) / 1000;
        let frame = format!(r#"{{"ts": {five_seconds_ago_ms}, "throttle": 0.5, "extra": {{"m": "a\u0000b"}}}}"#);
        assert_eq!(errors_of(parse_frame(&frame, NOW)), vec![error(0, "extra.m", "must not contain U+0000")]);
        rejects(r#", "extra": {"m": "\u0000"}"#, "extra.m", "must not contain U+0000");
        rejects(r#", "extra": {"a\u0000": 1}"#, "extra.a\0", "key must not contain U+0000");
        assert_eq!(
            errors_of(parse_one(r#", "extra": {"k\u0000": "\u0000", "ok": "x", "v": "\u0000", "w": null}"#)),
            vec![
                error(0, "extra.k\0", "key must not contain U+0000"),
                error(0, "extra.v", "must not contain U+0000"),
                error(0, "extra.w", "must be a string, number or boolean"),
            ]
        );
        let value = json!({"ts": 1, "throttle": 0.5, "extra": {"m": "a\u{0}b"}});
        assert_eq!(errors_of(parse_packet_value(&value, NOW)), vec![error(0, "extra.m", "must not contain U+0000")]);
        // A raw NUL byte in a JSON string is not JSON at all; other control characters are fine.
        let raw = b"[{\"ts\": 1, \"throttle\": 0, \"extra\": {\"m\": \"a\x00b\"}}]";
        assert!(matches!(parse_batch(raw, NOW), Err(BatchError::InvalidJson(_))));
        let packet = parse_one(r#", "extra": {"m": "a\u0001\n\u001f\u007f"}"#).unwrap();
        assert_eq!(packet.extra()["m"], ExtraValue::String("a\u{1}\n\u{1f}\u{7f}".into()));
    }

    #[test]
    fn accepted_values_fit_their_database_columns() {
        // mah_drawn is a bigint: up to i64::MAX (electrical_rules rejects one more); rssi an
        // integer, checked far inside it; ts a timestamptz, between 1970 and a minute from now.
        let packet = parse_one(r#", "mah_drawn": 9223372036854775807, "rssi": -200"#).unwrap();
        assert_eq!((packet.mah_drawn(), packet.rssi()), (Some(i64::MAX), Some(-200)));
        // extra is jsonb, whose numbers are decimals with exponents up to ±1000: integers beyond
        // i64 become doubles, and every finite double (exponents -324 to 308) is stored as sent.
        let packet = parse_one(
            r#", "extra": {"max": 9223372036854775807, "min": -9223372036854775808, "u64": 18446744073709551615,
                "wide": 100000000000000000000000000000, "big": 1.7976931348623157e308, "tiny": 5e-324, "neg0": -0.0}"#,
        )
        .unwrap();
        let expected = BTreeMap::from([
            ("max".to_owned(), ExtraValue::Int(i64::MAX)),
            ("min".to_owned(), ExtraValue::Int(i64::MIN)),
            ("u64".to_owned(), ExtraValue::Float(18446744073709551615.0)),
            ("wide".to_owned(), ExtraValue::Float(1e29)),
            ("big".to_owned(), ExtraValue::Float(f64::MAX)),
            ("tiny".to_owned(), ExtraValue::Float(5e-324)),
            ("neg0".to_owned(), ExtraValue::Float(-0.0)),
        ]);
        assert_eq!(packet.extra(), &expected);
        assert_eq!(
            serde_json::to_string(packet.extra()).unwrap(),
            r#"{"big":1.7976931348623157e+308,"max":9223372036854775807,"min":-9223372036854775808,"neg0":-0.0,"tiny":5e-324,"u64":1.8446744073709552e+19,"wide":1e+29}"#
        );
    }

    #[test]
    fn unknown_and_duplicate_keys_are_rejected() {
        rejects(r#", "voltge": 22.8"#, "voltge", "unknown field");
        rejects(r#", "drone_id": "x""#, "drone_id", "unknown field");
        rejects(r#", "voltage": 22.8, "voltage": 22.9"#, "voltage", "duplicate field");
        rejects(r#", "throttle": 0.6"#, "throttle", "duplicate field");
    }

    #[test]
    fn every_problem_of_every_packet_is_listed() {
        let body = r#"[
            {"ts": 1000, "throttle": 2, "voltage": -1, "gps": {"lat": 100, "lon": 0}, "extra": {"x": null}},
            {"ts": 2000, "throttle": 0.5},
            {"ts": 1500, "position": [1, "a", 3], "colour": "red"},
            7
        ]"#;
        let expected = vec![
            error(0, "throttle", "must be between 0 and 1"),
            error(0, "voltage", "must be between 0 and 100"),
            error(0, "gps.lat", "must be between -90 and 90"),
            error(0, "gps.alt_m", "required"),
            error(0, "extra.x", "must be a string, number or boolean"),
            error(2, "position[1]", "must be a number"),
            error(2, "colour", "unknown field"),
            error(2, "ts", "must be strictly greater than the previous packet's ts"),
            error(2, "throttle", "required"),
            error(3, "", "must be a json object"),
        ];
        assert_eq!(errors_of(parse_batch(body.as_bytes(), NOW)), expected);
        let message = BatchError::Invalid(expected).to_string();
        assert_eq!(message, "10 invalid field(s) in the packets");
    }

    #[test]
    fn body_shape_errors() {
        assert!(matches!(parse_batch(b"", NOW), Err(BatchError::InvalidJson(_))));
        assert!(matches!(parse_batch(b"[{\"ts\": 1,", NOW), Err(BatchError::InvalidJson(_))));
        assert!(matches!(parse_batch(b"[] []", NOW), Err(BatchError::InvalidJson(_))));
        assert!(matches!(parse_batch(b"\xff", NOW), Err(BatchError::InvalidJson(_))));
        assert!(matches!(parse_batch(b"[{\"ts\": NaN, \"throttle\": 0}]", NOW), Err(BatchError::InvalidJson(_))));
        // serde_json refuses numbers beyond f64 outright, with their position.
        let Err(BatchError::InvalidJson(message)) = parse_batch(b"[{\"ts\": 1, \"throttle\": 1e400}]", NOW) else {
            panic!("1e400 must be invalid json")
        };
        assert_eq!(message, "number out of range at line 1 column 28");
        for body in [&b"{}"[..], b"{\"ts\": 1, \"throttle\": 0}", b"null", b"1", b"\"[]\"", b"true"] {
            assert_eq!(parse_batch(body, NOW), Err(BatchError::NotAnArray), "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(parse_batch(b" [ ] ", NOW), Err(BatchError::Empty));
    }

    #[test]
    fn at_most_500_packets() {
        let batch = |count: usize| {
            let packets: Vec<String> = (1..=count).map(|ms| format!(r#"{{"ts": {ms}, "throttle": 0.5}}"#)).collect();
            parse_batch(format!("[{}]", packets.join(",")).as_bytes(), NOW)
        };
        assert_eq!(batch(1).unwrap().len(), 1);
        assert_eq!(batch(500).unwrap().len(), 500);
        assert_eq!(batch(501), Err(BatchError::TooManyPackets { count: 501, max: 500 }));
        // Beyond the limit packets are counted, not validated.
        let body = format!("[{}{}]", r#"{"ts": 1, "throttle": 0.5},"#.repeat(500), r#"1, {"bad": true}"#);
        assert_eq!(parse_batch(body.as_bytes(), NOW), Err(BatchError::TooManyPackets { count: 502, max: 500 }));
    }

    #[test]
    fn frames_carry_one_packet_or_an_array() {
        let single = parse_frame(r#"{"ts": 1, "throttle": 0.5}"#, NOW).unwrap();
        assert_eq!(single.len(), 1);
        let many = parse_frame(r#"[{"ts": 1, "throttle": 0.5}, {"ts": 2, "throttle": 0.5}]"#, NOW).unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(
            errors_of(parse_frame(r#"{"ts": 1, "throttle": 5}"#, NOW)),
            vec![error(0, "throttle", "must be between 0 and 1")]
        );
        assert_eq!(parse_frame("42", NOW), Err(BatchError::NotAnArray));
        assert_eq!(parse_frame("[]", NOW), Err(BatchError::Empty));
    }

    #[test]
    fn packet_values_parse_like_bodies() {
        let value: serde_json::Value = serde_json::from_str(CONTRACT_EXAMPLE).unwrap();
        let from_value = parse_packet_value(&value, NOW).unwrap();
        let from_body = parse_batch(format!("[{CONTRACT_EXAMPLE}]").as_bytes(), NOW).unwrap().remove(0);
        assert_eq!(from_value, from_body);
        let invalid = json!({"ts": 1, "throttle": 0.5, "gps": {"lat": 0}, "mah_drawn": 1.5});
        assert_eq!(
            errors_of(parse_packet_value(&invalid, NOW)),
            vec![
                error(0, "gps.lon", "required"),
                error(0, "gps.alt_m", "required"),
                error(0, "mah_drawn", "must be an integer")
            ]
        );
        assert_eq!(errors_of(parse_packet_value(&json!([1]), NOW)), vec![error(0, "", "must be a json object")]);
    }
}
