//! Packets and records: the shapes every suite sends and expects.

use schemas::TelemetryRecord;
use serde_json::{json, Value};
use uuid::Uuid;

/// A minimal valid packet at `ts_ms` epoch milliseconds.
pub fn packet_at(ts_ms: i64, throttle: f64) -> Value {
    json!({ "ts": ts_ms, "throttle": throttle, "voltage": 22.5, "current": 10.0 })
}

/// `count` valid packets 5 ms apart starting at `start_ms`.
pub fn packets_from(start_ms: i64, count: usize) -> Vec<Value> {
    (0..count).map(|i| packet_at(start_ms + 5 * i as i64, (i % 100) as f64 / 100.0)).collect()
}

/// A timestamp (epoch ms) comfortably in the past, so a test's packets are never "in the future".
pub fn past_ms() -> i64 {
    chrono::Utc::now().timestamp_millis() - 3_600_000
}

/// A valid packet with every field of CONTRACT.md §1 at `ts_ms` epoch milliseconds.
pub fn full_packet(ts_ms: i64) -> Value {
    json!({
        "ts": ts_ms, "throttle": 0.42, "voltage": 22.8, "current": -3.5, "mah_drawn": 812, "rssi": 87,
        "position": [12.1, -3.4, 25.0], "gps": {"lat": 47.397742, "lon": 8.545594, "alt_m": 488.1},
        "velocity": [4.2, 0.1, -0.3], "attitude": [2.5, -8.1, 123.0], "extra": {"mode": "loiter", "sats": 14, "armed": true}
    })
}

/// The record ingest appends for the valid `packet` of `drone_id`, accepted now.
pub fn record_of(drone_id: Uuid, packet: &Value) -> TelemetryRecord {
    let now_us = chrono::Utc::now().timestamp_micros();
    let packet = schemas::parse_packet_value(packet, now_us).expect("a valid packet");
    TelemetryRecord::from_packet(drone_id, now_us, packet)
}

/// The record of [`full_packet`]: every optional field present.
pub fn full_record(drone_id: Uuid, ts_ms: i64) -> TelemetryRecord {
    record_of(drone_id, &full_packet(ts_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_record_has_every_field_of_the_full_packet() {
        let drone = Uuid::new_v4();
        let record = full_record(drone, past_ms());
        assert!(record.position.is_some() && record.gps.is_some());
        assert!(record.velocity.is_some() && record.attitude.is_some());
        assert!(record.voltage.is_some() && record.current.is_some());
        assert_eq!((record.mah_drawn, record.rssi, record.extra.len()), (Some(812), Some(87), 3));
    }

    #[test]
    fn packets_from_are_valid_and_strictly_increasing() {
        let body = serde_json::to_vec(&packets_from(past_ms(), 500)).unwrap();
        let packets = schemas::parse_batch(&body, chrono::Utc::now().timestamp_micros()).expect("valid");
        assert_eq!(packets.len(), 500);
    }
}
