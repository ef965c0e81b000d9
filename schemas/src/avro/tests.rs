//! The codec's tests: the hand-written codec against apache-avro, schema evolution, corrupt input,
//! and binary packets against the rules of the JSON packet.

use std::collections::BTreeMap;

use apache_avro::schema::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use serde_json::Value as Json;
use uuid::Uuid;

use super::fingerprint::{fingerprint, schema_full_name};
use super::registry::history;
use super::writer::put_str;
use super::*;
use crate::packet::FieldError;
use crate::record::{FlightClosed, FlightRule, RecomputeRequested};

const TELEMETRY_V2: &str = include_str!("../../tests/fixtures/telemetry_record_v2.avsc");
const FLIGHT_EVENT_V2: &str = include_str!("../../tests/fixtures/flight_event_v2.avsc");

fn drone() -> Uuid {
    Uuid::parse_str("0b7c3f4e-2d1a-4c5b-9e8f-7a6b5c4d3e2f").unwrap()
}

fn full_record() -> TelemetryRecord {
    TelemetryRecord {
        drone_id: drone(),
        ts_us: 1_777_636_800_020_000,
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
            ("mode".to_owned(), ExtraValue::String("loiter".into())),
            ("sats".to_owned(), ExtraValue::Int(14)),
            ("hdop".to_owned(), ExtraValue::Float(0.9)),
            ("armed".to_owned(), ExtraValue::Bool(true)),
        ]),
    }
}

fn minimal_record() -> TelemetryRecord {
    TelemetryRecord {
        drone_id: drone(),
        ts_us: 0,
        received_at_us: 1,
        position: None,
        gps: None,
        velocity: None,
        attitude: None,
        throttle: 0.0,
        voltage: None,
        current: None,
        mah_drawn: None,
        rssi: None,
        extra: BTreeMap::new(),
    }
}

fn closed() -> FlightEvent {
    FlightEvent::Closed(FlightClosed {
        flight_id: crate::flight_id(drone(), 1_777_636_800_020_000),
        drone_id: drone(),
        start_ts_us: 1_777_636_800_020_000,
        end_ts_us: 1_777_637_100_000_000,
        packet_count: 15_000,
        partition: 7,
        last_offset: 123_456_789_012,
        rule: FlightRule::default(),
    })
}

fn recompute(reason: Option<&str>) -> FlightEvent {
    FlightEvent::RecomputeRequested(RecomputeRequested {
        flight_id: Uuid::from_u128(0x1234),
        drone_id: drone(),
        requested_at_us: 1_777_640_000_000_000,
        reason: reason.map(str::to_owned),
    })
}

/// A deterministic xorshift generator, enough to vary records.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self) -> bool {
        self.next() & 1 == 0
    }
    fn float(&mut self) -> f64 {
        match self.next() % 8 {
            0 => 0.0,
            1 => -0.0,
            2 => f64::MAX,
            3 => f64::MIN_POSITIVE,
            _ => (self.next() as i64) as f64 / 1e9,
        }
    }
    fn long(&mut self) -> i64 {
        match self.next() % 6 {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => (self.next() % 256) as i64 - 128,
            _ => self.next() as i64,
        }
    }
    fn vec3(&mut self) -> Option<Vec3> {
        self.chance().then(|| Vec3 { x: self.float(), y: self.float(), z: self.float() })
    }
    fn record(&mut self, max_extra: u64) -> TelemetryRecord {
        let mut extra = BTreeMap::new();
        for key in 0..self.next() % (max_extra + 1) {
            let value = match self.next() % 4 {
                0 => ExtraValue::String("é".repeat((self.next() % 70) as usize)),
                1 => ExtraValue::Int(self.long()),
                2 => ExtraValue::Float(self.float()),
                _ => ExtraValue::Bool(self.chance()),
            };
            extra.insert(format!("key{key}"), value);
        }
        TelemetryRecord {
            drone_id: Uuid::from_u128(u128::from(self.next()) << 64 | u128::from(self.next())),
            ts_us: self.long(),
            received_at_us: self.long(),
            position: self.vec3(),
            gps: self.chance().then(|| Gps { lat: self.float(), lon: self.float(), alt_m: self.float() }),
            velocity: self.vec3(),
            attitude: self.chance().then(|| Attitude { roll: self.float(), pitch: self.float(), yaw: self.float() }),
            throttle: self.float(),
            voltage: self.chance().then(|| self.float()),
            current: self.chance().then(|| self.float()),
            mah_drawn: self.chance().then(|| self.long()),
            rssi: self.chance().then(|| self.long() as i32),
            extra,
        }
    }
}

/// A single-object message of `value` written with `schema_json`, through apache-avro.
fn message_with(schema_json: &str, value: Value) -> Vec<u8> {
    let schema = Schema::parse_str(schema_json).unwrap();
    let mut out = MARKER.to_vec();
    out.extend_from_slice(&fingerprint(schema_json).unwrap());
    out.extend_from_slice(&apache_avro::to_avro_datum(&schema, value).unwrap());
    out
}

/// Inserts a field into a record value before `before`.
fn with_field(value: Value, name: &str, field: Value, before: &str) -> Value {
    let Value::Record(mut fields) = value else { panic!("not a record") };
    let position = fields.iter().position(|(existing, _)| existing == before).unwrap();
    fields.insert(position, (name.to_owned(), field));
    Value::Record(fields)
}

#[test]
fn current_fingerprints_are_pinned() {
    // Computed independently with fastavro:
    // fastavro.schema.fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO").
    // A change here means the schema changed: copy the previous version into avro/history/.
    assert_eq!(hex(&TELEMETRY.current), "83ec0f9696369bfe", "telemetry_record.avsc changed");
    assert_eq!(hex(&FLIGHT_EVENT.current), "c5275539057ea2e6", "flight_event.avsc changed");
}

#[test]
fn telemetry_round_trips() {
    let mut each_extra = Vec::new();
    for (key, value) in full_record().extra {
        let mut record = minimal_record();
        record.extra.insert(key, value);
        each_extra.push(record);
    }
    for record in [full_record(), minimal_record()].into_iter().chain(each_extra) {
        let bytes = encode_telemetry(&record);
        assert_eq!(bytes[..2], MARKER);
        assert_eq!(bytes[2..10], TELEMETRY.current);
        assert_eq!(decode_telemetry(&bytes).unwrap(), record);
        assert_eq!(generic::decode_telemetry(&bytes).unwrap(), record);
    }
}

#[test]
fn a_packet_record_round_trips() {
    use crate::packet::tests::{CONTRACT_EXAMPLE, NOW, TS};
    let packet = crate::parse_batch(format!("[{CONTRACT_EXAMPLE}]").as_bytes(), NOW).unwrap().remove(0);
    let record = TelemetryRecord::from_packet(drone(), TS + 11_415, packet);
    assert_eq!(decode_telemetry(&encode_telemetry(&record)).unwrap(), record);
}

#[test]
fn hand_written_telemetry_codec_agrees_with_apache_avro() {
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    for _ in 0..3000 {
        // apache-avro writes maps from a HashMap, so bytes are comparable with at most one entry.
        let record = random.record(1);
        let bytes = encode_telemetry(&record);
        assert_eq!(bytes, generic::encode_telemetry(&record), "{record:?}");
        assert_eq!(decode_telemetry(&bytes).unwrap(), record);
        assert_eq!(generic::decode_telemetry(&bytes).unwrap(), record);
    }
    for _ in 0..500 {
        let record = random.record(32);
        assert_eq!(decode_telemetry(&generic::encode_telemetry(&record)).unwrap(), record);
        assert_eq!(generic::decode_telemetry(&encode_telemetry(&record)).unwrap(), record);
    }
}

#[test]
fn hand_written_reader_accepts_negative_block_counts() {
    // Other writers may emit a map block as (-count, size in bytes, entries).
    let record = minimal_record();
    let mut bytes = encode_telemetry(&record);
    bytes.pop(); // The empty map.
    put_long(&mut bytes, -2);
    put_long(&mut bytes, 12);
    for (key, value) in [("a", 1), ("b", -1)] {
        put_str(&mut bytes, key);
        put_long(&mut bytes, 1);
        put_long(&mut bytes, value);
    }
    put_long(&mut bytes, 1);
    put_str(&mut bytes, "c");
    put_long(&mut bytes, 3);
    bytes.push(1);
    bytes.push(0);
    let decoded = decode_telemetry(&bytes).unwrap();
    let expected = BTreeMap::from([
        ("a".to_owned(), ExtraValue::Int(1)),
        ("b".to_owned(), ExtraValue::Int(-1)),
        ("c".to_owned(), ExtraValue::Bool(true)),
    ]);
    assert_eq!(decoded.extra, expected);
    assert_eq!(generic::decode_telemetry(&bytes).unwrap().extra, expected);
}

#[test]
fn flight_events_round_trip_and_match_apache_avro() {
    for event in [closed(), recompute(None), recompute(Some("new battery model"))] {
        let bytes = encode_flight_event(&event);
        assert_eq!(bytes, generic::encode_flight_event(&event));
        assert_eq!(bytes[2..10], FLIGHT_EVENT.current);
        assert_eq!(decode_flight_event(&bytes).unwrap(), event);
        assert_eq!(generic::decode_flight_event(&bytes).unwrap(), event);
    }
    assert_eq!(closed().drone_id(), drone());
    assert_eq!(recompute(None).flight_id(), Uuid::from_u128(0x1234));
}

#[test]
fn current_reader_reads_a_newer_writer() {
    let family = Family::load(TELEMETRY_NAME, TELEMETRY_RECORD_SCHEMA, &[("v2.avsc", TELEMETRY_V2)]);
    let record = full_record();
    let value = with_field(
        generic::telemetry_to_value(&record),
        "airspeed",
        Value::Union(1, Box::new(Value::Double(12.5))),
        "extra",
    );
    let bytes = message_with(TELEMETRY_V2, value);
    assert_eq!(decode_telemetry_with(&family, &bytes).unwrap(), record);
    // The compiled-in registry does not know the fixture.
    let fingerprint = hex(&bytes[2..10]);
    assert_eq!(decode_telemetry(&bytes), Err(DecodeError::UnknownSchema { fingerprint }));
}

#[test]
fn newer_reader_reads_the_current_writer() {
    let newer = Family::load(TELEMETRY_NAME, TELEMETRY_V2, &[("current.avsc", TELEMETRY_RECORD_SCHEMA)]);
    let record = full_record();
    let bytes = encode_telemetry(&record);
    let Value::Record(fields) = newer.resolve(TELEMETRY.current, &bytes[HEADER_LEN..]).unwrap() else {
        panic!("not a record")
    };
    let airspeed = &fields.iter().find(|(name, _)| name == "airspeed").unwrap().1;
    assert_eq!(*airspeed, Value::Union(0, Box::new(Value::Null)), "the default");
    // A later build of this crate with v2 as its reader still yields the same record.
    assert_eq!(decode_telemetry_with(&newer, &bytes).unwrap(), record);
}

#[test]
fn flight_event_schema_evolves_both_ways() {
    let family = Family::load(FLIGHT_EVENT_NAME, FLIGHT_EVENT_SCHEMA, &[("v2.avsc", FLIGHT_EVENT_V2)]);
    // A newer writer's RecomputeRequested, with its added field, reads fine.
    let request = Value::Record(vec![(
        "event".into(),
        Value::Union(
            1,
            Box::new(Value::Record(vec![
                ("flight_id".into(), Value::Uuid(Uuid::from_u128(0x1234))),
                ("drone_id".into(), Value::Uuid(drone())),
                ("requested_at".into(), Value::TimestampMicros(1_777_640_000_000_000)),
                ("reason".into(), Value::Union(0, Box::new(Value::Null))),
                ("requested_by".into(), Value::Union(1, Box::new(Value::String("a@b.c".into())))),
            ])),
        ),
    )]);
    let bytes = message_with(FLIGHT_EVENT_V2, request);
    assert_eq!(decode_flight_event_with(&family, &bytes).unwrap(), recompute(None));
    // Its new kind of event cannot be read by this reader: a clear error, not a panic.
    let done = Value::Record(vec![(
        "event".into(),
        Value::Union(
            2,
            Box::new(Value::Record(vec![
                ("flight_id".into(), Value::Uuid(Uuid::from_u128(0x1234))),
                ("analytics_version".into(), Value::Int(3)),
            ])),
        ),
    )]);
    let bytes = message_with(FLIGHT_EVENT_V2, done);
    assert!(matches!(decode_flight_event_with(&family, &bytes), Err(DecodeError::Incompatible { .. })));
    // A newer reader reads today's events.
    let newer = Family::load(FLIGHT_EVENT_NAME, FLIGHT_EVENT_V2, &[("current.avsc", FLIGHT_EVENT_SCHEMA)]);
    for event in [closed(), recompute(Some("why"))] {
        assert_eq!(decode_flight_event_with(&newer, &encode_flight_event(&event)).unwrap(), event);
    }
}

/// The union branches of a FlightEvent schema, by name.
fn event_branches(schema: &Schema) -> Vec<(String, Schema)> {
    let Schema::Record(record) = schema else { panic!("FlightEvent is a record") };
    let Schema::Union(union) = &record.fields[0].schema else { panic!("event is a union") };
    union
        .variants()
        .iter()
        .map(|variant| match variant {
            Schema::Record(inner) => (inner.name.fullname(None), variant.clone()),
            other => panic!("unexpected branch {other:?}"),
        })
        .collect()
}

/// The rule of avro/history/README.md: the current reader reads every old writer, and every old
/// reader reads the current writer, except for FlightEvent branches it does not know.
fn assert_evolvable(old_json: &str, current_json: &str) {
    let old = Schema::parse_str(old_json).unwrap();
    let current = Schema::parse_str(current_json).unwrap();
    SchemaCompatibility::can_read(&old, &current).expect("current reader reads the old writer");
    if schema_full_name(current_json).unwrap() == FLIGHT_EVENT_NAME {
        let old_branches = event_branches(&old);
        for (name, branch) in event_branches(&current) {
            if let Some((_, old_branch)) = old_branches.iter().find(|(old_name, _)| *old_name == name) {
                SchemaCompatibility::can_read(&branch, old_branch).expect("old reader reads the current branch");
            }
        }
    } else {
        SchemaCompatibility::can_read(&current, &old).expect("old reader reads the current writer");
    }
}

#[test]
fn every_schema_version_evolves_compatibly() {
    assert_evolvable(TELEMETRY_RECORD_SCHEMA, TELEMETRY_V2);
    assert_evolvable(FLIGHT_EVENT_SCHEMA, FLIGHT_EVENT_V2);
    for (file, text) in history::HISTORY {
        let current = match schema_full_name(text).unwrap().as_str() {
            TELEMETRY_NAME => TELEMETRY_RECORD_SCHEMA,
            FLIGHT_EVENT_NAME => FLIGHT_EVENT_SCHEMA,
            other => panic!("{file}: schema {other} is neither {TELEMETRY_NAME} nor {FLIGHT_EVENT_NAME}"),
        };
        assert_evolvable(text, current);
    }
    // Forces the registries, which panic on a history file that does not parse.
    assert!(TELEMETRY.writers.len() + FLIGHT_EVENT.writers.len() >= 2);
}

#[test]
fn header_errors_are_clear() {
    assert_eq!(decode_telemetry(&[]), Err(DecodeError::TooShort { len: 0 }));
    assert_eq!(decode_telemetry(&[0xC3, 0x01, 1]), Err(DecodeError::TooShort { len: 3 }));
    let mut bytes = encode_telemetry(&full_record());
    bytes[0] = b'{';
    assert_eq!(decode_telemetry(&bytes), Err(DecodeError::BadMarker { found: [b'{', 0x01] }));
    let mut bytes = encode_telemetry(&full_record());
    bytes[2..10].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
    let error = decode_telemetry(&bytes).unwrap_err();
    assert_eq!(error, DecodeError::UnknownSchema { fingerprint: "deadbeef00010203".into() });
    assert_eq!(error.to_string(), "unknown writer schema fingerprint deadbeef00010203");
    let expected = DecodeError::WrongSchema { expected: FLIGHT_EVENT_NAME, found: TELEMETRY_NAME };
    assert_eq!(decode_flight_event(&encode_telemetry(&full_record())), Err(expected));
    let expected = DecodeError::WrongSchema { expected: TELEMETRY_NAME, found: FLIGHT_EVENT_NAME };
    assert_eq!(decode_telemetry(&encode_flight_event(&closed())), Err(expected));
}

#[test]
fn truncated_and_extended_messages_are_errors() {
    for record in [full_record(), minimal_record()] {
        let bytes = encode_telemetry(&record);
        for len in 0..bytes.len() {
            assert!(decode_telemetry(&bytes[..len]).is_err(), "prefix of {len} bytes");
            assert!(generic::decode_telemetry(&bytes[..len]).is_err(), "prefix of {len} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_telemetry(&longer), Err(malformed("1 trailing bytes")));
        assert!(generic::decode_telemetry(&longer).is_err());
    }
    for event in [closed(), recompute(Some("x"))] {
        let bytes = encode_flight_event(&event);
        for len in 0..bytes.len() {
            assert!(decode_flight_event(&bytes[..len]).is_err(), "prefix of {len} bytes");
        }
    }
}

#[test]
fn corrupt_data_is_an_error_not_a_panic() {
    let datum_start = encode_telemetry(&minimal_record());
    let cases: [(&str, Vec<u8>); 5] = [
        ("not a uuid", [&datum_start[..10], &[72], &[b'x'; 36]].concat()),
        ("invalid union branch", [&datum_start[..58], &[4]].concat()),
        ("varint overflows 64 bits", [&datum_start[..47], &[0xff; 10]].concat()),
        ("not utf-8", [&datum_start[..10], &[4, 0xff, 0xfe]].concat()),
        ("map block count exceeds the data", [&datum_start[..datum_start.len() - 1], &[0x80, 0x80, 0x04]].concat()),
    ];
    for (what, bytes) in cases {
        let error = decode_telemetry(&bytes).unwrap_err();
        assert!(matches!(error, DecodeError::Malformed { .. }), "{what}: {error}");
        assert!(generic::decode_telemetry(&bytes).is_err(), "{what}");
    }
    // Random bytes after a valid header, and random flips of valid messages.
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let valid = encode_telemetry(&full_record());
    let event = encode_flight_event(&closed());
    for round in 0..20_000 {
        let len = (random.next() % 200) as usize;
        let noise: Vec<u8> = (0..len).map(|_| random.next() as u8).collect();
        let _ = decode_telemetry(&[&valid[..10], &noise].concat());
        let _ = decode_flight_event(&[&event[..10], &noise].concat());
        if round % 10 == 0 {
            let _ = generic::decode_telemetry(&[&valid[..10], &noise].concat());
            let _ = generic::decode_flight_event(&[&event[..10], &noise].concat());
        }
        let mut flipped = valid.clone();
        let at = 10 + (random.next() as usize) % (flipped.len() - 10);
        flipped[at] = random.next() as u8;
        let _ = decode_telemetry(&flipped);
    }
}

// Binary TelemetryPacket frames.

const NOW_US: i64 = 1_777_636_800_000_000;

fn full_packet() -> TelemetryPacket {
    let json = r#"{"ts": "2026-05-01T12:00:00.020Z", "throttle": 0.42, "voltage": 22.8,
        "current": -3.5, "mah_drawn": 812, "rssi": -87, "position": [12.1, -3.4, 25.0],
        "gps": {"lat": 47.397742, "lon": 8.545594, "alt_m": 488.1}, "velocity": [4.2, 0.1, -0.3],
        "attitude": [2.5, -8.1, 123.0], "extra": {"mode": "loiter", "sats": 14, "hdop": 0.75, "armed": true}}"#;
    crate::parse_frame(json, NOW_US).unwrap().remove(0)
}

fn minimal_packet() -> TelemetryPacket {
    crate::parse_frame(r#"{"ts": 1777636800020, "throttle": 0}"#, NOW_US).unwrap().remove(0)
}

#[test]
fn packets_round_trip_through_the_hand_written_and_the_generic_path() {
    for packet in [full_packet(), minimal_packet()] {
        let bytes = encode_telemetry_packet(&packet);
        assert_eq!(bytes[..2], MARKER);
        assert_eq!(decode_telemetry_packet(&bytes, NOW_US).unwrap(), packet);
        // apache-avro reads the same bytes with the .avsc, to the same packet.
        assert_eq!(generic::decode_telemetry_packet(&bytes, NOW_US).unwrap(), packet);
    }
}

#[test]
fn decoded_packets_obey_the_json_rules() {
    let mut record = TelemetryRecord::from_packet(Uuid::nil(), 0, full_packet());
    record.throttle = f64::NAN;
    record.voltage = Some(120.0);
    record.gps = Some(Gps { lat: 91.0, lon: 0.0, alt_m: f64::INFINITY });
    record.ts_us = NOW_US + 61_000_000;
    record.mah_drawn = Some(-1);
    let mut bytes = MARKER.to_vec();
    bytes.extend_from_slice(&TELEMETRY_PACKET.current);
    put_long(&mut bytes, record.ts_us);
    write_telemetry_tail(&record, &mut bytes);
    let Err(PacketDecodeError::Invalid(errors)) = decode_telemetry_packet(&bytes, NOW_US) else {
        panic!("accepted an invalid packet");
    };
    let found: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.reason.as_str())).collect();
    for expected in [
        ("ts", "more than 60 s in the future"),
        ("throttle", "must be finite"),
        ("voltage", "must be between 0 and 100"),
        ("mah_drawn", "must be at least 0"),
        ("gps.lat", "must be between -90 and 90"),
        ("gps.alt_m", "must be finite"),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }
}

#[test]
fn other_messages_and_garbage_are_refused() {
    let record = TelemetryRecord::from_packet(Uuid::new_v4(), 1, full_packet());
    assert!(matches!(
        decode_telemetry_packet(&encode_telemetry(&record), NOW_US),
        Err(PacketDecodeError::Decode(DecodeError::WrongSchema { .. }))
    ));
    let mut truncated = encode_telemetry_packet(&full_packet());
    truncated.pop();
    assert!(matches!(decode_telemetry_packet(&truncated, NOW_US), Err(PacketDecodeError::Decode(_))));
    assert!(matches!(decode_telemetry_packet(b"{}", NOW_US), Err(PacketDecodeError::Decode(_))));
}

#[test]
fn the_packet_schema_is_the_record_schema_without_the_fields_ingest_adds() {
    let packet: Json = serde_json::from_str(TELEMETRY_PACKET_SCHEMA).unwrap();
    let record: Json = serde_json::from_str(TELEMETRY_RECORD_SCHEMA).unwrap();
    let names = |schema: &Json| -> Vec<String> {
        schema["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_owned()).collect()
    };
    let mut expected = names(&record);
    expected.retain(|name| name != "drone_id" && name != "received_at");
    assert_eq!(names(&packet), expected);
}

/// A `TelemetryPacket` message of `record`'s packet fields, whatever their values.
fn packet_message(record: &TelemetryRecord) -> Vec<u8> {
    let mut bytes = MARKER.to_vec();
    bytes.extend_from_slice(&TELEMETRY_PACKET.current);
    put_long(&mut bytes, record.ts_us);
    write_telemetry_tail(record, &mut bytes);
    bytes
}

fn packet_errors(bytes: &[u8]) -> Vec<FieldError> {
    match decode_telemetry_packet(bytes, NOW_US) {
        Err(PacketDecodeError::Invalid(errors)) => errors,
        other => panic!("expected field errors, got {other:?}"),
    }
}

fn field_error(field: &str, reason: &str) -> FieldError {
    FieldError { index: 0, field: field.into(), reason: reason.into() }
}

#[test]
fn decoded_packet_errors_are_listed_in_a_fixed_order() {
    let mut record = TelemetryRecord::from_packet(Uuid::nil(), 0, full_packet());
    record.extra.insert("nan".into(), ExtraValue::Float(f64::NAN));
    record.gps = Some(Gps { lat: 91.0, lon: 0.0, alt_m: f64::INFINITY });
    record.attitude = Some(Attitude { roll: f64::NAN, pitch: 0.0, yaw: f64::NEG_INFINITY });
    record.rssi = Some(-201);
    record.current = Some(-50.5);
    record.ts_us = -1;
    let bytes = packet_message(&record);
    let expected = vec![
        field_error("ts", "must not be before 1970-01-01T00:00:00Z"),
        field_error("current", "must be between -50 and 1000"),
        field_error("rssi", "must be between -200 and 1023"),
        field_error("attitude[0]", "must be finite"),
        field_error("attitude[2]", "must be finite"),
        field_error("gps.lat", "must be between -90 and 90"),
        field_error("gps.alt_m", "must be finite"),
        field_error("extra.nan", "must be finite"),
    ];
    assert_eq!(packet_errors(&bytes), expected);
    assert_eq!(generic::decode_telemetry_packet(&bytes, NOW_US), Err(PacketDecodeError::Invalid(expected)));
}

#[test]
fn decoded_packets_must_not_carry_u0000() {
    // PostgreSQL cannot store U+0000 in jsonb (CONTRACT.md §1), in a value or in a key.
    let mut record = TelemetryRecord::from_packet(Uuid::nil(), 0, minimal_packet());
    record.extra.insert("m".into(), ExtraValue::String("a\0b".into()));
    record.extra.insert("k\0".into(), ExtraValue::Int(1));
    record.extra.insert("ok".into(), ExtraValue::String("a\u{1}b".into()));
    let bytes = packet_message(&record);
    let expected = vec![
        field_error("extra.k\0", "key must not contain U+0000"),
        field_error("extra.m", "must not contain U+0000"),
    ];
    assert_eq!(packet_errors(&bytes), expected);
    assert_eq!(generic::decode_telemetry_packet(&bytes, NOW_US), Err(PacketDecodeError::Invalid(expected)));
}

#[test]
fn decoded_packets_accept_whatever_their_columns_can_hold() {
    // mah_drawn is an Avro long and a bigint: every value from 0 up is stored; rssi an Avro int,
    // checked to -200..=1023 (an integer column); extra numbers go to jsonb as they are.
    let mut record = TelemetryRecord::from_packet(Uuid::nil(), 0, minimal_packet());
    record.mah_drawn = Some(i64::MAX);
    record.rssi = Some(1023);
    record.extra = BTreeMap::from([
        ("max".to_owned(), ExtraValue::Int(i64::MAX)),
        ("min".to_owned(), ExtraValue::Int(i64::MIN)),
        ("huge".to_owned(), ExtraValue::Float(f64::MAX)),
        ("tiny".to_owned(), ExtraValue::Float(5e-324)),
    ]);
    let packet = decode_telemetry_packet(&packet_message(&record), NOW_US).unwrap();
    assert_eq!((packet.mah_drawn(), packet.rssi()), (Some(i64::MAX), Some(1023)));
    assert_eq!(packet.extra(), &record.extra);
    record.rssi = Some(i32::MAX);
    record.mah_drawn = Some(i64::MIN);
    assert_eq!(
        packet_errors(&packet_message(&record)),
        vec![field_error("mah_drawn", "must be at least 0"), field_error("rssi", "must be between -200 and 1023")]
    );
}
