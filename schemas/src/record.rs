//! The Rust types of the Kafka messages, mirroring `avro/telemetry_record.avsc` and
//! `avro/flight_event.avsc` field for field (Avro names in the field docs where they differ).

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::flight::format_ts;
use crate::packet::TelemetryPacket;

/// One accepted telemetry packet of one drone: the value of topic `telemetry.v1`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryRecord {
    /// The drone that sent it.
    pub drone_id: Uuid,
    /// Event time, µs since the Unix epoch (Avro `ts`).
    pub ts_us: i64,
    /// When ingest accepted the packet, µs since the Unix epoch (Avro `received_at`).
    pub received_at_us: i64,
    /// Metres, local ENU frame (z up).
    pub position: Option<Vec3>,
    /// WGS-84 fix.
    pub gps: Option<Gps>,
    /// m/s, same frame as `position`.
    pub velocity: Option<Vec3>,
    /// Degrees.
    pub attitude: Option<Attitude>,
    /// 0.0–1.0.
    pub throttle: f64,
    /// Volts.
    pub voltage: Option<f64>,
    /// Amperes, negative when charging.
    pub current: Option<f64>,
    /// mAh drawn so far, as reported by the drone.
    pub mah_drawn: Option<i64>,
    /// Link signal strength, unit as sent.
    pub rssi: Option<i32>,
    /// Free-form values, each keeping its JSON type.
    pub extra: BTreeMap<String, ExtraValue>,
}

/// A 3-vector (position in m, velocity in m/s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vec3 {
    /// East.
    pub x: f64,
    /// North.
    pub y: f64,
    /// Up.
    pub z: f64,
}

/// A WGS-84 position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gps {
    /// Degrees, -90 to 90.
    pub lat: f64,
    /// Degrees, -180 to 180.
    pub lon: f64,
    /// Metres above mean sea level.
    pub alt_m: f64,
}

/// Euler angles in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attitude {
    /// Roll, degrees.
    pub roll: f64,
    /// Pitch, degrees.
    pub pitch: f64,
    /// Yaw, degrees.
    pub yaw: f64,
}

/// A value of a packet's `extra` object. JSON integers that fit an `i64` become `Int`, every
/// other JSON number `Float` (so `12.0` stays a float and `12` an integer end to end).
#[derive(Debug, Clone, PartialEq)]
pub enum ExtraValue {
    /// A JSON string.
    String(String),
    /// A JSON integer (Avro `long`).
    Int(i64),
    /// Any other JSON number (Avro `double`).
    Float(f64),
    /// A JSON boolean.
    Bool(bool),
}

impl Serialize for ExtraValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ExtraValue::String(text) => serializer.serialize_str(text),
            ExtraValue::Int(number) => serializer.serialize_i64(*number),
            ExtraValue::Float(number) => serializer.serialize_f64(*number),
            ExtraValue::Bool(flag) => serializer.serialize_bool(*flag),
        }
    }
}

impl From<&ExtraValue> for Value {
    fn from(value: &ExtraValue) -> Self {
        match value {
            ExtraValue::String(text) => Value::String(text.clone()),
            ExtraValue::Int(number) => Value::from(*number),
            ExtraValue::Float(number) => Value::from(*number),
            ExtraValue::Bool(flag) => Value::Bool(*flag),
        }
    }
}

impl TelemetryRecord {
    /// The record ingest appends for a validated packet of `drone_id`, accepted at `received_at_us`.
    pub fn from_packet(drone_id: Uuid, received_at_us: i64, packet: TelemetryPacket) -> Self {
        TelemetryRecord {
            drone_id,
            ts_us: packet.ts_us,
            received_at_us,
            position: packet.position,
            gps: packet.gps,
            velocity: packet.velocity,
            attitude: packet.attitude,
            throttle: packet.throttle,
            voltage: packet.voltage,
            current: packet.current,
            mah_drawn: packet.mah_drawn,
            rssi: packet.rssi,
            extra: packet.extra,
        }
    }

    /// The packet JSON form served by the live view and the API: the fields of CONTRACT.md §1 plus
    /// `drone_id` and `received_at`, with `ts` and `received_at` as `2026-05-01T12:00:00.020000Z`.
    /// Absent optional fields are omitted, as in a packet (and `extra` when empty).
    pub fn to_json(&self) -> Value {
        let mut object = Map::with_capacity(14);
        object.insert("drone_id".into(), Value::String(self.drone_id.hyphenated().to_string()));
        object.insert("ts".into(), Value::String(format_ts(self.ts_us)));
        object.insert("received_at".into(), Value::String(format_ts(self.received_at_us)));
        object.insert("throttle".into(), Value::from(self.throttle));
        if let Some(voltage) = self.voltage {
            object.insert("voltage".into(), Value::from(voltage));
        }
        if let Some(current) = self.current {
            object.insert("current".into(), Value::from(current));
        }
        if let Some(mah_drawn) = self.mah_drawn {
            object.insert("mah_drawn".into(), Value::from(mah_drawn));
        }
        if let Some(rssi) = self.rssi {
            object.insert("rssi".into(), Value::from(rssi));
        }
        if let Some(position) = self.position {
            object.insert("position".into(), json!([position.x, position.y, position.z]));
        }
        if let Some(gps) = self.gps {
            object.insert("gps".into(), json!({"lat": gps.lat, "lon": gps.lon, "alt_m": gps.alt_m}));
        }
        if let Some(velocity) = self.velocity {
            object.insert("velocity".into(), json!([velocity.x, velocity.y, velocity.z]));
        }
        if let Some(attitude) = self.attitude {
            object.insert("attitude".into(), json!([attitude.roll, attitude.pitch, attitude.yaw]));
        }
        if !self.extra.is_empty() {
            let extra = self.extra.iter().map(|(key, value)| (key.clone(), Value::from(value))).collect();
            object.insert("extra".into(), Value::Object(extra));
        }
        Value::Object(object)
    }
}

/// A message of topic `flights.v1` (Avro record `FlightEvent` whose `event` field is a union;
/// new kinds of event are added as new variants).
#[derive(Debug, Clone, PartialEq)]
pub enum FlightEvent {
    /// The sessionizer closed a flight.
    Closed(FlightClosed),
    /// A user asked for a flight's analytics to be recomputed.
    RecomputeRequested(RecomputeRequested),
}

impl FlightEvent {
    /// The drone the event is about (the Kafka key).
    pub fn drone_id(&self) -> Uuid {
        match self {
            FlightEvent::Closed(closed) => closed.drone_id,
            FlightEvent::RecomputeRequested(request) => request.drone_id,
        }
    }

    /// The flight the event is about.
    pub fn flight_id(&self) -> Uuid {
        match self {
            FlightEvent::Closed(closed) => closed.flight_id,
            FlightEvent::RecomputeRequested(request) => request.flight_id,
        }
    }
}

/// A closed flight of at least the minimum duration.
#[derive(Debug, Clone, PartialEq)]
pub struct FlightClosed {
    /// [`crate::flight_id`] of (drone_id, start_ts_us).
    pub flight_id: Uuid,
    /// The drone that flew.
    pub drone_id: Uuid,
    /// ts of the first packet, µs (Avro `start_ts`).
    pub start_ts_us: i64,
    /// ts of the last packet, µs (Avro `end_ts`).
    pub end_ts_us: i64,
    /// Packets in the flight.
    pub packet_count: i64,
    /// Partition of `telemetry.v1` that carried the flight.
    pub partition: i32,
    /// Offset of the packet that closed the flight in that partition.
    pub last_offset: i64,
    /// The rule that produced the flight.
    pub rule: FlightRule,
}

/// The sessionizer rule's parameters (CONTRACT.md §3). Serde form (the sessionizer's snapshots,
/// configuration): missing keys take the contract's defaults, unknown keys are an error.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlightRule {
    /// T: throttle at or above which the drone is flying.
    pub throttle_threshold: f64,
    /// W: idle run that closes a flight, µs.
    pub idle_window_us: i64,
    /// G: gap between packets that closes a flight, µs.
    pub gap_us: i64,
    /// Shortest flight kept, µs.
    pub min_duration_us: i64,
}

impl Default for FlightRule {
    /// The contract's defaults: T = 0.05, W = 10 s, G = 10 s, minimum length 1 s.
    fn default() -> Self {
        FlightRule {
            throttle_threshold: 0.05,
            idle_window_us: 10_000_000,
            gap_us: 10_000_000,
            min_duration_us: 1_000_000,
        }
    }
}

/// A request to recompute a flight's analytics.
#[derive(Debug, Clone, PartialEq)]
pub struct RecomputeRequested {
    /// Flight to recompute.
    pub flight_id: Uuid,
    /// Its drone.
    pub drone_id: Uuid,
    /// When it was requested, µs (Avro `requested_at`).
    pub requested_at_us: i64,
    /// Free-text reason, if given.
    pub reason: Option<String>,
}
