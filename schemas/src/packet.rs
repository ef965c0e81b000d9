//! The JSON telemetry packet of CONTRACT.md §1. Parse, don't validate: a [`TelemetryPacket`]
//! exists only if it satisfies every rule, and a rejected body lists every problem of every packet.
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
//! - A field error's `field` is a JSON path into the packet (`voltage`, `gps.lat`, `position[2]`,
//!   `extra.mode`); an element of the array that is not an object is reported with field `""`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::record::{Attitude, ExtraValue, Gps, Vec3};

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
    parse_body(&mut deserializer, now_us, false)
}

/// Parses a WebSocket text frame: one packet object, or an array of packets as in [`parse_batch`].
pub fn parse_frame(text: &str, now_us: i64) -> Result<Vec<TelemetryPacket>, BatchError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    parse_body(&mut deserializer, now_us, true)
}

/// Parses one packet already held as a `serde_json::Value`; errors carry index 0.
pub fn parse_packet_value(value: &serde_json::Value, now_us: i64) -> Result<TelemetryPacket, BatchError> {
    let mut state = State::new(now_us);
    match value {
        serde_json::Value::Object(object) => {
            let mut draft = Draft::new(0, state.errors.len());
            for (key, field_value) in object {
                draft.field(key, &Json::from_value(field_value), &mut state);
            }
            state.finish(draft);
        }
        _ => state.error(0, String::new(), "must be a json object"),
    }
    state.into_result().map(|mut packets| packets.remove(0))
}

/// Applies the rules of CONTRACT.md §1 to a packet decoded from Avro (a binary WebSocket frame):
/// the same checks and messages as for JSON, with `ts` already in µs. Only `drone_id` and
/// `received_at` of `decoded` are ignored.
pub(crate) fn packet_from_decoded(
    decoded: crate::record::TelemetryRecord,
    now_us: i64,
) -> Result<TelemetryPacket, Vec<FieldError>> {
    let mut state = State::new(now_us);
    let mut draft = Draft::new(0, 0);
    draft.seen |= 1; // ts
    draft.ts_us = if decoded.ts_us < 0 {
        state.error(0, "ts".into(), "must not be before 1970-01-01T00:00:00Z");
        Slot::Invalid
    } else if decoded.ts_us > now_us.saturating_add(MAX_FUTURE_US) {
        state.error(0, "ts".into(), "more than 60 s in the future");
        Slot::Invalid
    } else {
        Slot::Valid(decoded.ts_us)
    };
    let triple = |v: Vec3| Json::Array(vec![Json::Float(v.x), Json::Float(v.y), Json::Float(v.z)]);
    draft.field("throttle", &Json::Float(decoded.throttle), &mut state);
    let mut optional = |key: &str, value: Option<Json<'_>>, state: &mut State| {
        if let Some(value) = value {
            draft.field(key, &value, state);
        }
    };
    optional("voltage", decoded.voltage.map(Json::Float), &mut state);
    optional("current", decoded.current.map(Json::Float), &mut state);
    optional("mah_drawn", decoded.mah_drawn.map(Json::Int), &mut state);
    optional("rssi", decoded.rssi.map(|rssi| Json::Int(i64::from(rssi))), &mut state);
    optional("position", decoded.position.map(triple), &mut state);
    optional("velocity", decoded.velocity.map(triple), &mut state);
    optional(
        "attitude",
        decoded.attitude.map(|a| Json::Array(vec![Json::Float(a.roll), Json::Float(a.pitch), Json::Float(a.yaw)])),
        &mut state,
    );
    optional(
        "gps",
        decoded.gps.map(|gps| {
            Json::Object(vec![
                (Cow::Borrowed("lat"), Json::Float(gps.lat)),
                (Cow::Borrowed("lon"), Json::Float(gps.lon)),
                (Cow::Borrowed("alt_m"), Json::Float(gps.alt_m)),
            ])
        }),
        &mut state,
    );
    let extra = (!decoded.extra.is_empty()).then(|| {
        Json::Object(
            decoded
                .extra
                .iter()
                .map(|(key, value)| {
                    let value = match value {
                        ExtraValue::String(text) => Json::Str(Cow::Borrowed(text.as_str())),
                        ExtraValue::Int(number) => Json::Int(*number),
                        ExtraValue::Float(number) => Json::Float(*number),
                        ExtraValue::Bool(flag) => Json::Bool(*flag),
                    };
                    (Cow::Borrowed(key.as_str()), value)
                })
                .collect(),
        )
    });
    optional("extra", extra, &mut state);
    state.finish(draft);
    match state.into_result() {
        Ok(mut packets) => Ok(packets.remove(0)),
        Err(BatchError::Invalid(errors)) => Err(errors),
        Err(other) => unreachable!("a single packet fails only with field errors: {other}"),
    }
}

fn parse_body<'de, R: serde_json::de::Read<'de>>(
    deserializer: &mut serde_json::Deserializer<R>,
    now_us: i64,
    accept_single: bool,
) -> Result<Vec<TelemetryPacket>, BatchError> {
    let mut state = State::new(now_us);
    let invalid_json = |error: serde_json::Error| BatchError::InvalidJson(error.to_string());
    let shape = BodySeed { state: &mut state, accept_single }.deserialize(&mut *deserializer).map_err(invalid_json)?;
    deserializer.end().map_err(invalid_json)?;
    match shape {
        Shape::Other => Err(BatchError::NotAnArray),
        Shape::Packets(0) => Err(BatchError::Empty),
        Shape::Packets(count) if count > MAX_PACKETS_PER_BATCH => {
            Err(BatchError::TooManyPackets { count, max: MAX_PACKETS_PER_BATCH })
        }
        Shape::Packets(_) => state.into_result(),
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

/// Everything learnt so far about a body.
struct State {
    now_us: i64,
    packets: Vec<TelemetryPacket>,
    errors: Vec<FieldError>,
    /// ts of the previous packet, if it had a valid one.
    previous_ts_us: Option<i64>,
}

impl State {
    fn new(now_us: i64) -> State {
        State { now_us, packets: Vec::new(), errors: Vec::new(), previous_ts_us: None }
    }

    fn error(&mut self, index: usize, field: String, reason: &str) {
        self.errors.push(FieldError { index, field, reason: reason.to_owned() });
    }

    /// Checks what only the whole packet can tell, and keeps the packet if it had no error.
    fn finish(&mut self, draft: Draft) {
        let index = draft.index;
        let ts_us = match draft.ts_us {
            Slot::Missing => {
                self.error(index, "ts".into(), "required");
                None
            }
            Slot::Invalid => None,
            Slot::Valid(ts_us) => {
                if self.previous_ts_us.is_some_and(|previous| ts_us <= previous) {
                    self.error(index, "ts".into(), "must be strictly greater than the previous packet's ts");
                }
                Some(ts_us)
            }
        };
        self.previous_ts_us = ts_us;
        let throttle = match draft.throttle {
            Slot::Missing => {
                self.error(index, "throttle".into(), "required");
                None
            }
            Slot::Invalid => None,
            Slot::Valid(throttle) => Some(throttle),
        };
        let (Some(ts_us), Some(throttle)) = (ts_us, throttle) else {
            return;
        };
        if self.errors.len() > draft.errors_before {
            return;
        }
        self.packets.push(TelemetryPacket {
            ts_us,
            throttle,
            voltage: draft.voltage,
            current: draft.current,
            mah_drawn: draft.mah_drawn,
            rssi: draft.rssi,
            position: draft.position,
            gps: draft.gps,
            velocity: draft.velocity,
            attitude: draft.attitude,
            extra: draft.extra,
        });
    }

    fn into_result(self) -> Result<Vec<TelemetryPacket>, BatchError> {
        if self.errors.is_empty() {
            Ok(self.packets)
        } else {
            Err(BatchError::Invalid(self.errors))
        }
    }
}

enum Slot<T> {
    Missing,
    Invalid,
    Valid(T),
}

/// A packet being parsed, field by field.
struct Draft {
    index: usize,
    /// Length of the error list when this packet started.
    errors_before: usize,
    /// Bit per known field, to reject duplicates.
    seen: u16,
    ts_us: Slot<i64>,
    throttle: Slot<f64>,
    voltage: Option<f64>,
    current: Option<f64>,
    mah_drawn: Option<i64>,
    rssi: Option<i32>,
    position: Option<Vec3>,
    gps: Option<Gps>,
    velocity: Option<Vec3>,
    attitude: Option<Attitude>,
    extra: BTreeMap<String, ExtraValue>,
}

const FIELDS: [&str; 11] =
    ["ts", "throttle", "voltage", "current", "mah_drawn", "rssi", "position", "gps", "velocity", "attitude", "extra"];

const TS_FORMAT: &str = "must be an rfc 3339 timestamp or integer epoch milliseconds";

impl Draft {
    fn new(index: usize, errors_before: usize) -> Draft {
        Draft {
            index,
            errors_before,
            seen: 0,
            ts_us: Slot::Missing,
            throttle: Slot::Missing,
            voltage: None,
            current: None,
            mah_drawn: None,
            rssi: None,
            position: None,
            gps: None,
            velocity: None,
            attitude: None,
            extra: BTreeMap::new(),
        }
    }

    fn field(&mut self, key: &str, value: &Json<'_>, state: &mut State) {
        let index = self.index;
        let Some(bit) = FIELDS.iter().position(|known| *known == key) else {
            state.error(index, key.to_owned(), "unknown field");
            return;
        };
        if self.seen & (1 << bit) != 0 {
            state.error(index, key.to_owned(), "duplicate field");
            return;
        }
        self.seen |= 1 << bit;
        if matches!(value, Json::Null) {
            return; // Absent (and `required` for ts and throttle, reported by State::finish).
        }
        let now_us = state.now_us;
        let mut fail = |reason: &str| state.error(index, key.to_owned(), reason);
        match key {
            "ts" => {
                self.ts_us = match timestamp(value, now_us) {
                    Ok(ts_us) => Slot::Valid(ts_us),
                    Err(reason) => {
                        fail(reason);
                        Slot::Invalid
                    }
                }
            }
            "throttle" => {
                self.throttle = match ranged(value, 0.0, 1.0, "must be between 0 and 1") {
                    Ok(throttle) => Slot::Valid(throttle),
                    Err(reason) => {
                        fail(reason);
                        Slot::Invalid
                    }
                }
            }
            "voltage" => self.voltage = ranged(value, 0.0, 100.0, "must be between 0 and 100").map_err(fail).ok(),
            "current" => self.current = ranged(value, -50.0, 1000.0, "must be between -50 and 1000").map_err(fail).ok(),
            "mah_drawn" => {
                self.mah_drawn = match integer(value) {
                    Ok(Some(mah)) if mah >= 0 => Some(mah),
                    Ok(Some(_)) => {
                        fail("must be at least 0");
                        None
                    }
                    Ok(None) => {
                        fail("must be at most 9223372036854775807");
                        None
                    }
                    Err(reason) => {
                        fail(reason);
                        None
                    }
                }
            }
            "rssi" => {
                self.rssi = match integer(value) {
                    Ok(Some(rssi)) if (-200..=1023).contains(&rssi) => Some(rssi as i32),
                    Ok(_) => {
                        fail("must be between -200 and 1023");
                        None
                    }
                    Err(reason) => {
                        fail(reason);
                        None
                    }
                }
            }
            "position" => self.position = triple(value, key, index, state).map(|[x, y, z]| Vec3 { x, y, z }),
            "velocity" => self.velocity = triple(value, key, index, state).map(|[x, y, z]| Vec3 { x, y, z }),
            "attitude" => {
                self.attitude = triple(value, key, index, state).map(|[roll, pitch, yaw]| Attitude { roll, pitch, yaw })
            }
            "gps" => self.gps = gps(value, index, state),
            "extra" => self.extra = extra(value, index, state).unwrap_or_default(),
            _ => unreachable!("every name of FIELDS has an arm"),
        }
    }
}

/// A JSON number as a finite `f64`.
fn number(value: &Json<'_>) -> Result<f64, &'static str> {
    match *value {
        Json::Int(number) => Ok(number as f64),
        Json::BigUint(number) => Ok(number as f64),
        Json::Float(number) if number.is_finite() => Ok(number),
        Json::Float(_) => Err("must be finite"),
        _ => Err("must be a number"),
    }
}

fn ranged(value: &Json<'_>, min: f64, max: f64, reason: &'static str) -> Result<f64, &'static str> {
    let number = number(value)?;
    if (min..=max).contains(&number) {
        Ok(number)
    } else {
        Err(reason)
    }
}

/// A JSON integer; `Ok(None)` when it is above `i64::MAX`.
fn integer(value: &Json<'_>) -> Result<Option<i64>, &'static str> {
    match *value {
        Json::Int(number) => Ok(Some(number)),
        Json::BigUint(_) => Ok(None),
        _ => Err("must be an integer"),
    }
}

fn timestamp(value: &Json<'_>, now_us: i64) -> Result<i64, &'static str> {
    const FUTURE: &str = "more than 60 s in the future";
    const PAST: &str = "must not be before 1970-01-01T00:00:00Z";
    let ts_us = match value {
        Json::Str(text) => parse_rfc3339(text).ok_or(TS_FORMAT)?,
        Json::Int(millis) => millis.checked_mul(1000).ok_or(if *millis < 0 { PAST } else { FUTURE })?,
        Json::BigUint(_) => return Err(FUTURE),
        Json::Float(_) => return Err("epoch milliseconds must be an integer"),
        _ => return Err(TS_FORMAT),
    };
    if ts_us < 0 {
        return Err(PAST);
    }
    if ts_us > now_us.saturating_add(MAX_FUTURE_US) {
        return Err(FUTURE);
    }
    Ok(ts_us)
}

/// RFC 3339 with any offset to µs since the epoch, sub-µs digits truncated.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(parsed.timestamp_micros())
}

/// `[a, b, c]` of finite numbers; errors name the element (`position[2]`).
fn triple(value: &Json<'_>, key: &str, index: usize, state: &mut State) -> Option<[f64; 3]> {
    let items = match value {
        Json::Array(items) if items.len() == 3 => items,
        _ => {
            state.error(index, key.to_owned(), "must be an array of 3 numbers");
            return None;
        }
    };
    let mut out = [0.0; 3];
    let mut valid = true;
    for (position, item) in items.iter().enumerate() {
        match number(item) {
            Ok(number) => out[position] = number,
            Err(reason) => {
                state.error(index, format!("{key}[{position}]"), reason);
                valid = false;
            }
        }
    }
    valid.then_some(out)
}

fn gps(value: &Json<'_>, index: usize, state: &mut State) -> Option<Gps> {
    let Json::Object(entries) = value else {
        state.error(index, "gps".into(), "must be an object with lat, lon and alt_m");
        return None;
    };
    let mut lat = Slot::Missing;
    let mut lon = Slot::Missing;
    let mut alt_m = Slot::Missing;
    for (key, item) in entries {
        let (slot, checked) = match key.as_ref() {
            "lat" => (&mut lat, ranged(item, -90.0, 90.0, "must be between -90 and 90")),
            "lon" => (&mut lon, ranged(item, -180.0, 180.0, "must be between -180 and 180")),
            "alt_m" => (&mut alt_m, number(item)),
            _ => {
                state.error(index, format!("gps.{key}"), "unknown field");
                continue;
            }
        };
        if !matches!(slot, Slot::Missing) {
            state.error(index, format!("gps.{key}"), "duplicate field");
            continue;
        }
        *slot = match checked {
            Ok(number) => Slot::Valid(number),
            Err(reason) => {
                state.error(index, format!("gps.{key}"), reason);
                Slot::Invalid
            }
        };
    }
    let mut take = |slot: Slot<f64>, name: &str| match slot {
        Slot::Valid(number) => Some(number),
        Slot::Invalid => None,
        Slot::Missing => {
            state.error(index, format!("gps.{name}"), "required");
            None
        }
    };
    let (lat, lon, alt_m) = (take(lat, "lat"), take(lon, "lon"), take(alt_m, "alt_m"));
    Some(Gps { lat: lat?, lon: lon?, alt_m: alt_m? })
}

fn extra(value: &Json<'_>, index: usize, state: &mut State) -> Option<BTreeMap<String, ExtraValue>> {
    let Json::Object(entries) = value else {
        state.error(index, "extra".into(), "must be an object");
        return None;
    };
    if entries.len() > MAX_EXTRA_KEYS {
        state.error(index, "extra".into(), "must have at most 32 keys");
        return None;
    }
    let mut extra = BTreeMap::new();
    let mut valid = true;
    for (key, item) in entries {
        let converted = match item {
            Json::Str(text) => ExtraValue::String(text.as_ref().to_owned()),
            Json::Bool(flag) => ExtraValue::Bool(*flag),
            Json::Int(number) => ExtraValue::Int(*number),
            Json::BigUint(number) => ExtraValue::Float(*number as f64),
            Json::Float(number) if number.is_finite() => ExtraValue::Float(*number),
            Json::Float(_) => {
                state.error(index, format!("extra.{key}"), "must be finite");
                valid = false;
                continue;
            }
            Json::Null | Json::Array(_) | Json::Object(_) => {
                state.error(index, format!("extra.{key}"), "must be a string, number or boolean");
                valid = false;
                continue;
            }
        };
        if extra.insert(key.as_ref().to_owned(), converted).is_some() {
            state.error(index, format!("extra.{key}"), "duplicate key");
            valid = false;
        }
    }
    if !valid {
        return None;
    }
    if compact_json_len(&extra) > MAX_EXTRA_BYTES {
        state.error(index, "extra".into(), "must be at most 4096 bytes as compact json");
        return None;
    }
    Some(extra)
}

/// Length of the compact JSON serialisation, without building it.
fn compact_json_len(extra: &BTreeMap<String, ExtraValue>) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, extra).expect("serialising strings and numbers cannot fail");
    counter.0
}

// ---------------------------------------------------------------------------------------------
// JSON reading: one streaming pass over the body, packets validated as they are read

/// A JSON value borrowing its strings from the body where it can (no escapes). Relies on
/// serde_json reporting numbers as i64/u64/f64, i.e. on its `arbitrary_precision` feature being off
/// in the workspace (the number tests fail if it is turned on).
enum Json<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer above `i64::MAX`.
    BigUint(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    /// Entries in body order, duplicates kept.
    Object(Vec<(Cow<'a, str>, Json<'a>)>),
}

impl<'a> Json<'a> {
    fn from_value(value: &'a serde_json::Value) -> Json<'a> {
        match value {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(flag) => Json::Bool(*flag),
            serde_json::Value::Number(number) => match (number.as_i64(), number.as_u64()) {
                (Some(int), _) => Json::Int(int),
                (None, Some(big)) => Json::BigUint(big),
                _ => Json::Float(number.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(text) => Json::Str(Cow::Borrowed(text)),
            serde_json::Value::Array(items) => Json::Array(items.iter().map(Json::from_value).collect()),
            serde_json::Value::Object(object) => Json::Object(
                object.iter().map(|(key, item)| (Cow::Borrowed(key.as_str()), Json::from_value(item))).collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any json value")
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, flag: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(flag))
    }
    fn visit_i64<E>(self, number: i64) -> Result<Json<'de>, E> {
        Ok(Json::Int(number))
    }
    fn visit_u64<E>(self, number: u64) -> Result<Json<'de>, E> {
        Ok(i64::try_from(number).map_or(Json::BigUint(number), Json::Int))
    }
    fn visit_f64<E>(self, number: f64) -> Result<Json<'de>, E> {
        Ok(Json::Float(number))
    }
    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(text)))
    }
    fn visit_str<E>(self, text: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(text.to_owned())))
    }
    fn visit_string<E>(self, text: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(text)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(3).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(4).min(64));
        while let Some(Key(key)) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Json::Object(entries))
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// What the body turned out to be.
enum Shape {
    /// An array of this many elements (or one packet object, for a frame).
    Packets(usize),
    /// Anything else.
    Other,
}

struct BodySeed<'s> {
    state: &'s mut State,
    accept_single: bool,
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Shape;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Shape, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Shape;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a json array of packets")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let mut count = 0;
        while count < MAX_PACKETS_PER_BATCH {
            let seed = PacketSeed { state: &mut *self.state, index: count };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(Shape::Packets(count));
            }
            count += 1;
        }
        // Over the limit: count the rest for the error message, without validating them.
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok(Shape::Packets(count))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Shape, A::Error> {
        if !self.accept_single {
            IgnoredAny.visit_map(map)?;
            return Ok(Shape::Other);
        }
        PacketSeed { state: self.state, index: 0 }.visit_map(map)?;
        Ok(Shape::Packets(1))
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
}

/// Reads one element of the array as a packet, straight into a [`Draft`].
struct PacketSeed<'s> {
    state: &'s mut State,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for PacketSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl PacketSeed<'_> {
    fn not_an_object(self) {
        self.state.error(self.index, String::new(), "must be a json object");
        // A later packet is not compared with one that has no ts.
        self.state.previous_ts_us = None;
    }
}

impl<'de> Visitor<'de> for PacketSeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a packet object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut draft = Draft::new(self.index, self.state.errors.len());
        while let Some(Key(key)) = map.next_key()? {
            let value: Json<'de> = map.next_value()?;
            draft.field(&key, &value, self.state);
        }
        self.state.finish(draft);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        IgnoredAny.visit_seq(seq)?;
        self.not_an_object();
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.not_an_object();
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.not_an_object();
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.not_an_object();
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.not_an_object();
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.not_an_object();
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.not_an_object();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::record::TelemetryRecord;

    /// 2026-05-01T12:00:10Z.
    const NOW: i64 = 1_777_636_810_000_000;
    /// 2026-05-01T12:00:00.020Z.
    const TS: i64 = 1_777_636_800_020_000;

    const CONTRACT_EXAMPLE: &str = r#"{
      "ts": "2026-05-01T12:00:00.020Z",
      "throttle": 0.42,
      "voltage": 22.8, "current": 31.5, "mah_drawn": 812, "rssi": 87,
      "position": [12.1, -3.4, 25.0],
      "gps": {"lat": 47.397742, "lon": 8.545594, "alt_m": 488.1},
      "velocity": [4.2, 0.1, -0.3],
      "attitude": [2.5, -8.1, 123.0],
      "extra": {"mode": "loiter", "sats": 14}
    }"#;

    fn parse_one(fields: &str) -> Result<TelemetryPacket, BatchError> {
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

    #[test]
    fn a_packet_becomes_a_record_and_its_json_form() {
        let packet = parse_batch(format!("[{CONTRACT_EXAMPLE}]").as_bytes(), NOW).unwrap().remove(0);
        let drone = Uuid::parse_str("0b7c3f4e-2d1a-4c5b-9e8f-7a6b5c4d3e2f").unwrap();
        let record = TelemetryRecord::from_packet(drone, TS + 11_415, packet.clone());
        assert_eq!((record.ts_us, record.received_at_us, record.drone_id), (TS, TS + 11_415, drone));
        assert_eq!(crate::decode_telemetry(&crate::encode_telemetry(&record)).unwrap(), record);
        let expected = json!({
            "drone_id": "0b7c3f4e-2d1a-4c5b-9e8f-7a6b5c4d3e2f",
            "ts": "2026-05-01T12:00:00.020000Z",
            "received_at": "2026-05-01T12:00:00.031415Z",
            "throttle": 0.42,
            "voltage": 22.8, "current": 31.5, "mah_drawn": 812, "rssi": 87,
            "position": [12.1, -3.4, 25.0],
            "gps": {"lat": 47.397742, "lon": 8.545594, "alt_m": 488.1},
            "velocity": [4.2, 0.1, -0.3],
            "attitude": [2.5, -8.1, 123.0],
            "extra": {"mode": "loiter", "sats": 14}
        });
        assert_eq!(record.to_json(), expected);
        // The JSON form minus the server's fields is a valid packet again.
        let mut again = record.to_json();
        let object = again.as_object_mut().unwrap();
        object.remove("drone_id");
        object.remove("received_at");
        assert_eq!(parse_packet_value(&again, NOW).unwrap(), packet);
        let minimal = TelemetryRecord::from_packet(drone, 0, parse_one("").unwrap());
        let expected = json!({
            "drone_id": "0b7c3f4e-2d1a-4c5b-9e8f-7a6b5c4d3e2f",
            "ts": "2026-05-01T12:00:00.020000Z",
            "received_at": "1970-01-01T00:00:00.000000Z",
            "throttle": 0.5
        });
        assert_eq!(minimal.to_json(), expected);
    }
}
