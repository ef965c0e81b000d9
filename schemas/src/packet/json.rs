//! The JSON reader: one streaming pass over a body, each packet object read into a
//! [`PacketDraft`] and handed to the [`Validator`] as soon as it is complete.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::validate::{At, GpsDraft, PacketDraft, Slot, Validator};
use super::{BatchError, TelemetryPacket, MAX_PACKETS_PER_BATCH};
use crate::values::ExtraValue;

/// The top-level keys of a packet, one bit each in [`Reader::seen`].
const FIELDS: [&str; 11] =
    ["ts", "throttle", "voltage", "current", "mah_drawn", "rssi", "position", "gps", "velocity", "attitude", "extra"];

pub(super) const TS_FORMAT: &str = "must be an rfc 3339 timestamp or integer epoch milliseconds";

pub(super) fn parse_body<'de, R: serde_json::de::Read<'de>>(
    deserializer: &mut serde_json::Deserializer<R>,
    now_us: i64,
    accept_single: bool,
) -> Result<Vec<TelemetryPacket>, BatchError> {
    let mut validator = Validator::new(now_us);
    let invalid_json = |error: serde_json::Error| BatchError::InvalidJson(error.to_string());
    let shape =
        BodySeed { validator: &mut validator, accept_single }.deserialize(&mut *deserializer).map_err(invalid_json)?;
    deserializer.end().map_err(invalid_json)?;
    match shape {
        Shape::Other => Err(BatchError::NotAnArray),
        Shape::Packets(0) => Err(BatchError::Empty),
        Shape::Packets(count) if count > MAX_PACKETS_PER_BATCH => {
            Err(BatchError::TooManyPackets { count, max: MAX_PACKETS_PER_BATCH })
        }
        Shape::Packets(_) => validator.into_result(),
    }
}

pub(super) fn parse_value(value: &serde_json::Value, now_us: i64) -> Result<TelemetryPacket, BatchError> {
    let mut validator = Validator::new(now_us);
    match value {
        serde_json::Value::Object(object) => {
            let mut reader = Reader::new();
            for (key, field_value) in object {
                reader.field(key, Json::from_value(field_value));
            }
            validator.packet(0, reader.draft);
        }
        _ => validator.not_an_object(0),
    }
    validator.into_result().map(|mut packets| packets.remove(0))
}

/// Reads the entries of one packet object into a draft.
struct Reader<'a> {
    draft: PacketDraft<'a>,
    /// Bit per name of [`FIELDS`] met, to reject duplicates.
    seen: u16,
}

impl<'a> Reader<'a> {
    fn new() -> Reader<'a> {
        Reader { draft: PacketDraft::new(), seen: 0 }
    }

    fn field(&mut self, key: &str, value: Json<'a>) {
        let at = self.draft.next_at();
        let Some(bit) = FIELDS.iter().position(|known| *known == key) else {
            self.draft.problem(at, key.to_owned(), "unknown field");
            return;
        };
        if self.seen & (1 << bit) != 0 {
            self.draft.problem(at, key.to_owned(), "duplicate field");
            return;
        }
        self.seen |= 1 << bit;
        if matches!(value, Json::Null) {
            return; // Absent (and `required` for ts and throttle, as the rules say).
        }
        let draft = &mut self.draft;
        match key {
            "ts" => draft.ts_us = read(draft, at, key, timestamp(&value)),
            "throttle" => draft.throttle = read(draft, at, key, number(&value)),
            "voltage" => draft.voltage = read(draft, at, key, number(&value)),
            "current" => draft.current = read(draft, at, key, number(&value)),
            "mah_drawn" => draft.mah_drawn = read(draft, at, key, integer(&value)),
            "rssi" => draft.rssi = read(draft, at, key, integer(&value)),
            "position" => draft.position = triple(draft, at, key, &value),
            "velocity" => draft.velocity = triple(draft, at, key, &value),
            "attitude" => draft.attitude = triple(draft, at, key, &value),
            "gps" => draft.gps = gps(draft, at, value),
            "extra" => draft.extra = extra(draft, at, value),
            _ => unreachable!("every name of FIELDS has an arm"),
        }
    }
}

/// The slot of a value read at `at`, or the reader's problem with it.
fn read<T>(draft: &mut PacketDraft<'_>, at: At, field: &str, value: Result<T, &'static str>) -> Slot<T> {
    match value {
        Ok(value) => Slot::Read(at, value),
        Err(reason) => {
            draft.problem(at, field.to_owned(), reason);
            Slot::Unreadable
        }
    }
}

/// A JSON number as an `f64`.
fn number(value: &Json<'_>) -> Result<f64, &'static str> {
    match *value {
        Json::Int(number) => Ok(number as f64),
        Json::BigUint(number) => Ok(number as f64),
        Json::Float(number) => Ok(number),
        _ => Err("must be a number"),
    }
}

fn integer(value: &Json<'_>) -> Result<i128, &'static str> {
    match *value {
        Json::Int(number) => Ok(i128::from(number)),
        Json::BigUint(number) => Ok(i128::from(number)),
        _ => Err("must be an integer"),
    }
}

/// µs since the epoch, from RFC 3339 text or integer epoch milliseconds.
fn timestamp(value: &Json<'_>) -> Result<i128, &'static str> {
    match value {
        Json::Str(text) => parse_rfc3339(text).map(i128::from).ok_or(TS_FORMAT),
        Json::Int(millis) => Ok(i128::from(*millis) * 1000),
        Json::BigUint(millis) => Ok(i128::from(*millis) * 1000),
        Json::Float(_) => Err("epoch milliseconds must be an integer"),
        _ => Err(TS_FORMAT),
    }
}

/// RFC 3339 with any offset to µs since the epoch, sub-µs digits truncated.
fn parse_rfc3339(text: &str) -> Option<i64> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    Some(parsed.timestamp_micros())
}

/// `[a, b, c]` of numbers; problems name the element (`position[2]`).
fn triple(draft: &mut PacketDraft<'_>, at: At, key: &str, value: &Json<'_>) -> Slot<[f64; 3]> {
    let items = match value {
        Json::Array(items) if items.len() == 3 => items,
        _ => {
            draft.problem(at, key.to_owned(), "must be an array of 3 numbers");
            return Slot::Unreadable;
        }
    };
    let mut out = [0.0; 3];
    let mut readable = true;
    for (position, item) in items.iter().enumerate() {
        match number(item) {
            Ok(number) => out[position] = number,
            Err(reason) => {
                draft.problem(at, format!("{key}[{position}]"), reason);
                readable = false;
            }
        }
    }
    if readable {
        Slot::Read(at, out)
    } else {
        Slot::Unreadable
    }
}

fn gps(draft: &mut PacketDraft<'_>, at: At, value: Json<'_>) -> Slot<GpsDraft> {
    let Json::Object(entries) = value else {
        draft.problem(at, "gps".into(), "must be an object with lat, lon and alt_m");
        return Slot::Unreadable;
    };
    let mut lat = Slot::Absent;
    let mut lon = Slot::Absent;
    let mut alt_m = Slot::Absent;
    for (key, item) in entries {
        let member_at = draft.next_at();
        let slot = match key.as_ref() {
            "lat" => &mut lat,
            "lon" => &mut lon,
            "alt_m" => &mut alt_m,
            _ => {
                draft.problem(member_at, format!("gps.{key}"), "unknown field");
                continue;
            }
        };
        if !matches!(slot, Slot::Absent) {
            draft.problem(member_at, format!("gps.{key}"), "duplicate field");
            continue;
        }
        *slot = match number(&item) {
            Ok(number) => Slot::Read(member_at, number),
            Err(reason) => {
                draft.problem(member_at, format!("gps.{key}"), reason);
                Slot::Unreadable
            }
        };
    }
    let end = draft.next_at();
    Slot::Read(at, GpsDraft { lat, lon, alt_m, end })
}

fn extra<'a>(draft: &mut PacketDraft<'a>, at: At, value: Json<'a>) -> Slot<Vec<(Cow<'a, str>, Option<ExtraValue>)>> {
    let Json::Object(entries) = value else {
        draft.problem(at, "extra".into(), "must be an object");
        return Slot::Unreadable;
    };
    let entries = entries
        .into_iter()
        .map(|(key, item)| {
            let value = match item {
                Json::Str(text) => Some(ExtraValue::String(text.into_owned())),
                Json::Bool(flag) => Some(ExtraValue::Bool(flag)),
                Json::Int(number) => Some(ExtraValue::Int(number)),
                Json::BigUint(number) => Some(ExtraValue::Float(number as f64)),
                Json::Float(number) => Some(ExtraValue::Float(number)),
                Json::Null | Json::Array(_) | Json::Object(_) => None,
            };
            (key, value)
        })
        .collect();
    Slot::Read(at, entries)
}

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
    validator: &'s mut Validator,
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
            let seed = PacketSeed { validator: &mut *self.validator, index: count };
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
        PacketSeed { validator: self.validator, index: 0 }.visit_map(map)?;
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

/// Reads one element of the array as a packet, straight into a [`PacketDraft`].
struct PacketSeed<'s> {
    validator: &'s mut Validator,
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
        self.validator.not_an_object(self.index);
    }
}

impl<'de> Visitor<'de> for PacketSeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a packet object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut reader = Reader::new();
        while let Some(Key(key)) = map.next_key()? {
            let value: Json<'de> = map.next_value()?;
            reader.field(&key, value);
        }
        self.validator.packet(self.index, reader.draft);
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
