//! Interop with a non-Rust Avro implementation (driven by `schemas/interop/run.sh`).
//!
//! - `interop write <dir>`: writes `rust_*.bin` single-object messages and `rust_expected.json`
//!   with their values, for `interop/interop.py check` (fastavro) to decode and compare.
//! - `interop read <dir>`: decodes the `py_*.bin` messages fastavro wrote and compares them with
//!   `py_expected.json`.
//!
//! Values travel in a plain JSON form: timestamps as integer µs, uuids as strings, optional
//! values as null, records as objects, flight events with a `"type"` naming the union branch.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use schemas::{
    decode_flight_event, decode_telemetry, encode_flight_event, encode_telemetry, Attitude, ExtraValue, FlightClosed,
    FlightEvent, FlightRule, Gps, RecomputeRequested, TelemetryRecord, Vec3,
};
use serde_json::{json, Value};
use uuid::Uuid;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [command, dir] if command == "write" => write(Path::new(dir)),
        [command, dir] if command == "read" => read(Path::new(dir)),
        _ => {
            eprintln!("usage: interop <write|read> <dir>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(summary) => {
            println!("rust: {summary}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("rust: interop failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn drone() -> Uuid {
    Uuid::parse_str("0b7c3f4e-2d1a-4c5b-9e8f-7a6b5c4d3e2f").expect("valid uuid")
}

fn sample_records() -> Vec<TelemetryRecord> {
    let full = TelemetryRecord {
        drone_id: drone(),
        ts_us: 1_777_636_800_020_001,
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
            ("mode".to_owned(), ExtraValue::String("loiter ✈ é".into())),
            ("sats".to_owned(), ExtraValue::Int(14)),
            ("hdop".to_owned(), ExtraValue::Float(0.9)),
            ("whole".to_owned(), ExtraValue::Float(12.0)),
            ("armed".to_owned(), ExtraValue::Bool(true)),
        ]),
    };
    let minimal = TelemetryRecord {
        drone_id: Uuid::from_u128(1),
        ts_us: 0,
        received_at_us: 1,
        position: None,
        gps: None,
        velocity: None,
        attitude: None,
        throttle: 1.0,
        voltage: None,
        current: None,
        mah_drawn: None,
        rssi: None,
        extra: BTreeMap::new(),
    };
    let extremes = TelemetryRecord {
        drone_id: Uuid::from_u128(u128::MAX),
        ts_us: 253_402_300_799_999_999,
        received_at_us: -62_135_596_800_000_000,
        position: Some(Vec3 { x: f64::MAX, y: f64::MIN_POSITIVE, z: -0.0 }),
        gps: None,
        velocity: None,
        attitude: Some(Attitude { roll: 1e-300, pitch: 5e-324, yaw: -1e300 }),
        throttle: 0.0,
        voltage: Some(0.0),
        current: None,
        mah_drawn: Some(i64::MAX),
        rssi: Some(i32::MIN),
        extra: BTreeMap::from([
            ("min".to_owned(), ExtraValue::Int(i64::MIN)),
            ("false".to_owned(), ExtraValue::Bool(false)),
            ("".to_owned(), ExtraValue::String(String::new())),
        ]),
    };
    vec![full, minimal, extremes]
}

fn sample_events() -> Vec<FlightEvent> {
    vec![
        FlightEvent::Closed(FlightClosed {
            flight_id: schemas::flight_id(drone(), 1_777_636_800_020_000),
            drone_id: drone(),
            start_ts_us: 1_777_636_800_020_000,
            end_ts_us: 1_777_637_100_000_000,
            packet_count: 15_000,
            partition: 7,
            last_offset: 123_456_789_012,
            rule: FlightRule::default(),
        }),
        FlightEvent::RecomputeRequested(RecomputeRequested {
            flight_id: Uuid::from_u128(0x1234),
            drone_id: drone(),
            requested_at_us: 1_777_640_000_000_000,
            reason: Some("new battery model".into()),
        }),
        FlightEvent::RecomputeRequested(RecomputeRequested {
            flight_id: Uuid::from_u128(0x1234),
            drone_id: drone(),
            requested_at_us: 1_777_640_000_000_001,
            reason: None,
        }),
    ]
}

fn write(dir: &Path) -> anyhow::Result<String> {
    let mut telemetry = Vec::new();
    for (index, record) in sample_records().iter().enumerate() {
        let file = format!("rust_telemetry_{index}.bin");
        std::fs::write(dir.join(&file), encode_telemetry(record)).with_context(|| format!("writing {file}"))?;
        telemetry.push(json!({"file": file, "value": record_to_json(record)}));
    }
    let mut events = Vec::new();
    for (index, event) in sample_events().iter().enumerate() {
        let file = format!("rust_flight_event_{index}.bin");
        std::fs::write(dir.join(&file), encode_flight_event(event)).with_context(|| format!("writing {file}"))?;
        events.push(json!({"file": file, "value": event_to_json(event)}));
    }
    let expected = json!({"telemetry": telemetry, "flight_events": events});
    std::fs::write(dir.join("rust_expected.json"), serde_json::to_vec_pretty(&expected)?)?;
    Ok(format!("wrote {} telemetry records and {} flight events", telemetry.len(), events.len()))
}

fn read(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("py_expected.json");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)?;
    let mut checked = 0;
    for entry in array(&expected, "telemetry")? {
        let file = entry["file"].as_str().context("file name")?;
        let bytes = std::fs::read(dir.join(file)).with_context(|| format!("reading {file}"))?;
        let decoded = decode_telemetry(&bytes).with_context(|| format!("decoding {file}"))?;
        let wanted = record_from_json(&entry["value"]).with_context(|| format!("expected value of {file}"))?;
        if decoded != wanted {
            bail!("{file}: decoded {decoded:#?}\nbut python wrote {wanted:#?}");
        }
        // Our own encoding of the same value must be byte-identical to fastavro's when extra has
        // at most one entry (fastavro writes a map in one block, in dict order; we sort keys).
        if wanted.extra.len() <= 1 && encode_telemetry(&wanted) != bytes {
            bail!("{file}: fastavro's bytes differ from ours for the same value");
        }
        checked += 1;
    }
    for entry in array(&expected, "flight_events")? {
        let file = entry["file"].as_str().context("file name")?;
        let bytes = std::fs::read(dir.join(file)).with_context(|| format!("reading {file}"))?;
        let decoded = decode_flight_event(&bytes).with_context(|| format!("decoding {file}"))?;
        let wanted = event_from_json(&entry["value"]).with_context(|| format!("expected value of {file}"))?;
        if decoded != wanted {
            bail!("{file}: decoded {decoded:#?}\nbut python wrote {wanted:#?}");
        }
        if encode_flight_event(&wanted) != bytes {
            bail!("{file}: fastavro's bytes differ from ours for the same value");
        }
        checked += 1;
    }
    if checked == 0 {
        bail!("py_expected.json lists no messages");
    }
    Ok(format!("decoded and checked {checked} messages written by fastavro"))
}

fn array<'a>(value: &'a Value, key: &str) -> anyhow::Result<&'a Vec<Value>> {
    value[key].as_array().with_context(|| format!("{key} must be an array"))
}

// The plain JSON form shared with interop.py.

fn record_to_json(r: &TelemetryRecord) -> Value {
    let vec3 = |v: Vec3| json!({"x": v.x, "y": v.y, "z": v.z});
    let extra: serde_json::Map<String, Value> =
        r.extra.iter().map(|(key, value)| (key.clone(), Value::from(value))).collect();
    json!({
        "drone_id": r.drone_id.to_string(),
        "ts": r.ts_us,
        "received_at": r.received_at_us,
        "position": r.position.map(vec3),
        "gps": r.gps.map(|g| json!({"lat": g.lat, "lon": g.lon, "alt_m": g.alt_m})),
        "velocity": r.velocity.map(vec3),
        "attitude": r.attitude.map(|a| json!({"roll": a.roll, "pitch": a.pitch, "yaw": a.yaw})),
        "throttle": r.throttle,
        "voltage": r.voltage,
        "current": r.current,
        "mah_drawn": r.mah_drawn,
        "rssi": r.rssi,
        "extra": extra,
    })
}

fn event_to_json(event: &FlightEvent) -> Value {
    match event {
        FlightEvent::Closed(c) => json!({
            "type": "FlightClosed",
            "flight_id": c.flight_id.to_string(),
            "drone_id": c.drone_id.to_string(),
            "start_ts": c.start_ts_us,
            "end_ts": c.end_ts_us,
            "packet_count": c.packet_count,
            "partition": c.partition,
            "last_offset": c.last_offset,
            "rule": {
                "throttle_threshold": c.rule.throttle_threshold,
                "idle_window_us": c.rule.idle_window_us,
                "gap_us": c.rule.gap_us,
                "min_duration_us": c.rule.min_duration_us,
            },
        }),
        FlightEvent::RecomputeRequested(r) => json!({
            "type": "RecomputeRequested",
            "flight_id": r.flight_id.to_string(),
            "drone_id": r.drone_id.to_string(),
            "requested_at": r.requested_at_us,
            "reason": r.reason,
        }),
    }
}

fn uuid(value: &Value, key: &str) -> anyhow::Result<Uuid> {
    Ok(Uuid::parse_str(value[key].as_str().with_context(|| format!("{key} must be a string"))?)?)
}

fn long(value: &Value, key: &str) -> anyhow::Result<i64> {
    value[key].as_i64().with_context(|| format!("{key} must be an integer"))
}

fn double(value: &Value, key: &str) -> anyhow::Result<f64> {
    value[key].as_f64().with_context(|| format!("{key} must be a number"))
}

fn optional<T>(value: &Value, key: &str, read: impl FnOnce(&Value) -> anyhow::Result<T>) -> anyhow::Result<Option<T>> {
    match &value[key] {
        Value::Null => Ok(None),
        inner => read(inner).with_context(|| format!("field {key}")).map(Some),
    }
}

fn record_from_json(v: &Value) -> anyhow::Result<TelemetryRecord> {
    let vec3 = |inner: &Value| Ok(Vec3 { x: double(inner, "x")?, y: double(inner, "y")?, z: double(inner, "z")? });
    let mut extra = BTreeMap::new();
    for (key, value) in v["extra"].as_object().context("extra must be an object")? {
        let converted = match value {
            Value::String(text) => ExtraValue::String(text.clone()),
            Value::Bool(flag) => ExtraValue::Bool(*flag),
            Value::Number(number) if number.is_i64() => ExtraValue::Int(number.as_i64().unwrap_or_default()),
            Value::Number(number) if number.is_f64() => ExtraValue::Float(number.as_f64().unwrap_or_default()),
            other => bail!("extra.{key}: unexpected {other}"),
        };
        extra.insert(key.clone(), converted);
    }
    Ok(TelemetryRecord {
        drone_id: uuid(v, "drone_id")?,
        ts_us: long(v, "ts")?,
        received_at_us: long(v, "received_at")?,
        position: optional(v, "position", vec3)?,
        gps: optional(v, "gps", |g| {
            Ok(Gps { lat: double(g, "lat")?, lon: double(g, "lon")?, alt_m: double(g, "alt_m")? })
        })?,
        velocity: optional(v, "velocity", vec3)?,
        attitude: optional(v, "attitude", |a| {
            Ok(Attitude { roll: double(a, "roll")?, pitch: double(a, "pitch")?, yaw: double(a, "yaw")? })
        })?,
        throttle: double(v, "throttle")?,
        voltage: optional(v, "voltage", |x| x.as_f64().context("a number"))?,
        current: optional(v, "current", |x| x.as_f64().context("a number"))?,
        mah_drawn: optional(v, "mah_drawn", |x| x.as_i64().context("an integer"))?,
        rssi: optional(v, "rssi", |x| Ok(i32::try_from(x.as_i64().context("an integer")?)?))?,
        extra,
    })
}

fn event_from_json(v: &Value) -> anyhow::Result<FlightEvent> {
    match v["type"].as_str() {
        Some("FlightClosed") => {
            let rule = &v["rule"];
            Ok(FlightEvent::Closed(FlightClosed {
                flight_id: uuid(v, "flight_id")?,
                drone_id: uuid(v, "drone_id")?,
                start_ts_us: long(v, "start_ts")?,
                end_ts_us: long(v, "end_ts")?,
                packet_count: long(v, "packet_count")?,
                partition: i32::try_from(long(v, "partition")?)?,
                last_offset: long(v, "last_offset")?,
                rule: FlightRule {
                    throttle_threshold: double(rule, "throttle_threshold")?,
                    idle_window_us: long(rule, "idle_window_us")?,
                    gap_us: long(rule, "gap_us")?,
                    min_duration_us: long(rule, "min_duration_us")?,
                },
            }))
        }
        Some("RecomputeRequested") => Ok(FlightEvent::RecomputeRequested(RecomputeRequested {
            flight_id: uuid(v, "flight_id")?,
            drone_id: uuid(v, "drone_id")?,
            requested_at_us: long(v, "requested_at")?,
            reason: optional(v, "reason", |x| Ok(x.as_str().context("a string")?.to_owned()))?,
        })),
        other => bail!("unknown flight event type {other:?}"),
    }
}
