//! The one JSON form of a packet that the read side serves: the live view in Redis (written by the
//! `live` processor from a [`crate::TelemetryRecord`]) and the raw points of a flight (built by
//! the query role from database rows). Both go through [`PacketJson`], so the shape is defined
//! here only.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::flight::format_ts;
use crate::values::{Attitude, ExtraValue, Gps, Vec3};

/// A packet as JSON: the fields of CONTRACT.md §1, plus `drone_id` and `received_at` where the
/// reader has them; `ts` and `received_at` as [`format_ts`] writes them
/// (`2026-05-01T12:00:00.020000Z`); absent optional fields are omitted, as in a packet.
///
/// The fields are declared in alphabetical order of their JSON names on purpose: the JSON this
/// replaced was built as a `serde_json::Map`, which sorts its keys (the workspace does not enable
/// serde_json's `preserve_order`), and a struct serialises in declaration order, so this keeps
/// the bytes of the live view and of the API exactly as they were.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PacketJson<'a> {
    /// Degrees, as `[roll, pitch, yaw]`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "attitude")]
    pub attitude: Option<Attitude>,
    /// Amperes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<f64>,
    /// The drone that sent it, where the reader is not scoped to one drone already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drone_id: Option<Uuid>,
    /// Free-form values; leave it `None` rather than empty (an empty `extra` is omitted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<ExtraJson<'a>>,
    /// WGS-84, as `{"alt_m", "lat", "lon"}`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "gps")]
    pub gps: Option<Gps>,
    /// mAh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mah_drawn: Option<i64>,
    /// Metres, as `[x, y, z]`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "vec3")]
    pub position: Option<Vec3>,
    /// When ingest accepted the packet, µs since the Unix epoch (JSON `received_at`).
    #[serde(rename = "received_at", skip_serializing_if = "Option::is_none", serialize_with = "optional_ts")]
    pub received_at_us: Option<i64>,
    /// Link signal strength.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rssi: Option<i32>,
    /// 0.0–1.0.
    pub throttle: f64,
    /// Event time, µs since the Unix epoch (JSON `ts`).
    #[serde(rename = "ts", serialize_with = "ts")]
    pub ts_us: i64,
    /// m/s, as `[vx, vy, vz]`.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "vec3")]
    pub velocity: Option<Vec3>,
    /// Volts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voltage: Option<f64>,
}

/// The `extra` object of a [`PacketJson`], from either place it lives.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ExtraJson<'a> {
    /// A packet's or record's values.
    Values(&'a BTreeMap<String, ExtraValue>),
    /// A stored JSON object (the `jsonb` column of `telemetry_raw`), written as it is.
    Stored(&'a Map<String, Value>),
}

fn ts<S: Serializer>(ts_us: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_ts(*ts_us))
}

// The helpers below are only called for `Some` (the fields skip `None`); `None` is still written
// as null so that they are total.

fn optional_ts<S: Serializer>(ts_us: &Option<i64>, serializer: S) -> Result<S::Ok, S::Error> {
    match ts_us {
        Some(ts_us) => ts(ts_us, serializer),
        None => serializer.serialize_none(),
    }
}

fn vec3<S: Serializer>(value: &Option<Vec3>, serializer: S) -> Result<S::Ok, S::Error> {
    value.map(|v| [v.x, v.y, v.z]).serialize(serializer)
}

fn attitude<S: Serializer>(value: &Option<Attitude>, serializer: S) -> Result<S::Ok, S::Error> {
    value.map(|a| [a.roll, a.pitch, a.yaw]).serialize(serializer)
}

fn gps<S: Serializer>(value: &Option<Gps>, serializer: S) -> Result<S::Ok, S::Error> {
    /// Keys in alphabetical order, like the fields of [`PacketJson`].
    #[derive(Serialize)]
    struct GpsJson {
        alt_m: f64,
        lat: f64,
        lon: f64,
    }
    value.map(|gps| GpsJson { alt_m: gps.alt_m, lat: gps.lat, lon: gps.lon }).serialize(serializer)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn full<'a>(extra: Option<ExtraJson<'a>>) -> PacketJson<'a> {
        PacketJson {
            attitude: Some(Attitude { roll: 2.5, pitch: -8.1, yaw: 123.0 }),
            current: Some(31.5),
            drone_id: Some(Uuid::from_u128(0x0b7c3f4e_2d1a_4c5b_9e8f_7a6b5c4d3e2f)),
            extra,
            gps: Some(Gps { lat: 47.397742, lon: 8.545594, alt_m: 488.1 }),
            mah_drawn: Some(812),
            position: Some(Vec3 { x: 12.1, y: -3.4, z: 25.0 }),
            received_at_us: Some(1_777_636_800_031_415),
            rssi: Some(87),
            throttle: 0.42,
            ts_us: 1_777_636_800_020_000,
            velocity: Some(Vec3 { x: 4.2, y: 0.1, z: -0.3 }),
            voltage: Some(22.8),
        }
    }

    #[test]
    fn keys_come_out_sorted_like_a_json_map() {
        let values = BTreeMap::from([
            ("mode".to_owned(), ExtraValue::String("loiter".into())),
            ("sats".to_owned(), ExtraValue::Int(14)),
            ("whole".to_owned(), ExtraValue::Float(12.0)),
        ]);
        let stored: Map<String, Value> = values.iter().map(|(key, value)| (key.clone(), Value::from(value))).collect();
        let expected = r#"{"attitude":[2.5,-8.1,123.0],"current":31.5,"drone_id":"0b7c3f4e-2d1a-4c5b-9e8f-7a6b5c4d3e2f","extra":{"mode":"loiter","sats":14,"whole":12.0},"gps":{"alt_m":488.1,"lat":47.397742,"lon":8.545594},"mah_drawn":812,"position":[12.1,-3.4,25.0],"received_at":"2026-05-01T12:00:00.031415Z","rssi":87,"throttle":0.42,"ts":"2026-05-01T12:00:00.020000Z","velocity":[4.2,0.1,-0.3],"voltage":22.8}"#;
        for extra in [ExtraJson::Values(&values), ExtraJson::Stored(&stored)] {
            let view = full(Some(extra));
            assert_eq!(serde_json::to_string(&view).unwrap(), expected);
            // The same bytes as the serde_json::Value it replaced.
            let value = serde_json::to_value(&view).unwrap();
            assert_eq!(value.to_string(), expected);
        }
    }

    #[test]
    fn absent_fields_are_omitted() {
        let view = PacketJson {
            attitude: None,
            current: None,
            drone_id: None,
            extra: None,
            gps: None,
            mah_drawn: None,
            position: None,
            received_at_us: None,
            rssi: None,
            throttle: 0.5,
            ts_us: 0,
            velocity: None,
            voltage: None,
        };
        assert_eq!(serde_json::to_value(&view).unwrap(), json!({"throttle": 0.5, "ts": "1970-01-01T00:00:00.000000Z"}));
        assert_eq!(serde_json::to_string(&view).unwrap(), r#"{"throttle":0.5,"ts":"1970-01-01T00:00:00.000000Z"}"#);
    }
}
