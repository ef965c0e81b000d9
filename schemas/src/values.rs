//! The value types of a packet's fields, shared by the packet, the Kafka record, the Avro codec
//! and the JSON view. A leaf: it imports nothing else of the crate.

use serde::{Serialize, Serializer};
use serde_json::Value;

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
