//! The Rust types of the Kafka messages, mirroring `avro/telemetry_record.avsc` and
//! `avro/flight_event.avsc` field for field (Avro names in the field docs where they differ).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::packet::TelemetryPacket;
use crate::values::{Attitude, ExtraValue, Gps, Vec3};
use crate::view::{ExtraJson, PacketJson};

/// The part of a `telemetry.v1` record the flight rule reads (CONTRACT.md §3), decoded without
/// the rest of the record: see [`crate::decode_telemetry_head`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TelemetryHead {
    /// The drone that sent it.
    pub drone_id: Uuid,
    /// Event time, µs since the Unix epoch.
    pub ts_us: i64,
    /// When ingest accepted the packet, µs since the Unix epoch.
    pub received_at_us: i64,
    /// 0.0–1.0.
    pub throttle: f64,
}

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
        serde_json::to_value(self.json_view()).expect("a packet view has string keys only")
    }

    /// The view [`TelemetryRecord::to_json`] is built from; serialise it directly to skip the
    /// intermediate `Value` (same bytes).
    pub fn json_view(&self) -> PacketJson<'_> {
        PacketJson {
            attitude: self.attitude,
            current: self.current,
            drone_id: Some(self.drone_id),
            extra: (!self.extra.is_empty()).then_some(ExtraJson::Values(&self.extra)),
            gps: self.gps,
            mah_drawn: self.mah_drawn,
            position: self.position,
            received_at_us: Some(self.received_at_us),
            rssi: self.rssi,
            throttle: self.throttle,
            ts_us: self.ts_us,
            velocity: self.velocity,
            voltage: self.voltage,
        }
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

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::packet::tests::{parse_one, CONTRACT_EXAMPLE, NOW, TS};
    use crate::{parse_batch, parse_packet_value};

    #[test]
    fn a_packet_becomes_a_record_and_its_json_form() {
        let packet = parse_batch(format!("[{CONTRACT_EXAMPLE}]").as_bytes(), NOW).unwrap().remove(0);
        let drone = Uuid::parse_str("0b7c3f4e-2d1a-4c5b-9e8f-7a6b5c4d3e2f").unwrap();
        let record = TelemetryRecord::from_packet(drone, TS + 11_415, packet.clone());
        assert_eq!((record.ts_us, record.received_at_us, record.drone_id), (TS, TS + 11_415, drone));
        // (Its Avro round trip: avro::tests::a_packet_record_round_trips.)
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

    #[test]
    fn the_json_view_serialises_to_the_bytes_of_the_json_value() {
        let drone = Uuid::parse_str("0b7c3f4e-2d1a-4c5b-9e8f-7a6b5c4d3e2f").unwrap();
        let full = parse_batch(format!("[{CONTRACT_EXAMPLE}]").as_bytes(), NOW).unwrap().remove(0);
        for packet in [full, parse_one("").unwrap()] {
            let record = TelemetryRecord::from_packet(drone, TS + 11_415, packet);
            let direct = serde_json::to_string(&record.json_view()).unwrap();
            assert_eq!(direct, record.to_json().to_string());
        }
        let record = TelemetryRecord::from_packet(drone, TS + 11_415, parse_one("").unwrap());
        assert_eq!(
            serde_json::to_string(&record.json_view()).unwrap(),
            r#"{"drone_id":"0b7c3f4e-2d1a-4c5b-9e8f-7a6b5c4d3e2f","received_at":"2026-05-01T12:00:00.031415Z","throttle":0.5,"ts":"2026-05-01T12:00:00.020000Z"}"#
        );
    }
}
