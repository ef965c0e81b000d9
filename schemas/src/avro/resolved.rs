//! apache-avro values, after resolution to the reader schema, to the Rust types: the path of
//! messages written with a schema version other than the current one.

use std::collections::BTreeMap;

use apache_avro::types::Value;
use uuid::Uuid;

use super::{malformed, DecodeError, Tail};
use crate::record::{FlightClosed, FlightEvent, FlightRule, RecomputeRequested, TelemetryRecord};
use crate::values::{Attitude, ExtraValue, Gps, Vec3};

/// The fields of a resolved record; they are exactly the reader schema's, so a missing one is a
/// defect, reported rather than panicked on.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn of(value: Value, record: &str) -> Result<Fields, DecodeError> {
        match value {
            Value::Record(fields) => Ok(Fields(fields)),
            other => Err(unexpected(record, &other)),
        }
    }

    fn take(&mut self, name: &str) -> Result<Value, DecodeError> {
        let position = self
            .0
            .iter()
            .position(|(field, _)| field == name)
            .ok_or_else(|| malformed(format!("resolved record lacks field {name}")))?;
        Ok(self.0.swap_remove(position).1)
    }

    fn uuid(&mut self, name: &str) -> Result<Uuid, DecodeError> {
        match self.take(name)? {
            Value::Uuid(id) => Ok(id),
            Value::String(text) => Uuid::parse_str(&text).map_err(|_| malformed(format!("field {name} is not a uuid"))),
            other => Err(unexpected(name, &other)),
        }
    }

    fn long(&mut self, name: &str) -> Result<i64, DecodeError> {
        long_of(name, self.take(name)?)
    }

    fn int(&mut self, name: &str) -> Result<i32, DecodeError> {
        int_of(name, self.take(name)?)
    }

    fn double(&mut self, name: &str) -> Result<f64, DecodeError> {
        double_of(name, self.take(name)?)
    }

    fn optional<T>(
        &mut self,
        name: &str,
        convert: impl FnOnce(&str, Value) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.take(name)? {
            Value::Null => Ok(None),
            Value::Union(_, inner) => match *inner {
                Value::Null => Ok(None),
                value => convert(name, value).map(Some),
            },
            value => convert(name, value).map(Some),
        }
    }
}

fn unexpected(name: &str, value: &Value) -> DecodeError {
    malformed(format!("unexpected value for {name}: {value:?}"))
}

fn long_of(name: &str, value: Value) -> Result<i64, DecodeError> {
    match value {
        Value::Long(number) | Value::TimestampMicros(number) => Ok(number),
        Value::Int(number) => Ok(i64::from(number)),
        other => Err(unexpected(name, &other)),
    }
}

fn int_of(name: &str, value: Value) -> Result<i32, DecodeError> {
    match value {
        Value::Int(number) => Ok(number),
        other => Err(unexpected(name, &other)),
    }
}

fn double_of(name: &str, value: Value) -> Result<f64, DecodeError> {
    match value {
        Value::Double(number) => Ok(number),
        other => Err(unexpected(name, &other)),
    }
}

fn string_of(name: &str, value: Value) -> Result<String, DecodeError> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(unexpected(name, &other)),
    }
}

pub(super) fn telemetry_from_value(value: Value) -> Result<TelemetryRecord, DecodeError> {
    let mut fields = Fields::of(value, "TelemetryRecord")?;
    let tail = tail_of(&mut fields)?;
    Ok(tail.into_record(fields.uuid("drone_id")?, fields.long("ts")?, fields.long("received_at")?))
}

/// A resolved `TelemetryPacket`: its `ts` and the rest.
pub(super) fn packet_from_value(value: Value) -> Result<(i64, Tail), DecodeError> {
    let mut fields = Fields::of(value, "TelemetryPacket")?;
    let tail = tail_of(&mut fields)?;
    Ok((fields.long("ts")?, tail))
}

/// The fields a `TelemetryRecord` and a `TelemetryPacket` share.
fn tail_of(fields: &mut Fields) -> Result<Tail, DecodeError> {
    let vec3 = |name: &str, value: Value| {
        let mut inner = Fields::of(value, name)?;
        Ok(Vec3 { x: inner.double("x")?, y: inner.double("y")?, z: inner.double("z")? })
    };
    let extra = match fields.take("extra")? {
        Value::Map(entries) => {
            let mut extra = BTreeMap::new();
            for (key, value) in entries {
                let value = match value {
                    Value::Union(_, inner) => *inner,
                    other => other,
                };
                let value = match value {
                    Value::String(text) => ExtraValue::String(text),
                    Value::Long(number) => ExtraValue::Int(number),
                    Value::Double(number) => ExtraValue::Float(number),
                    Value::Boolean(flag) => ExtraValue::Bool(flag),
                    other => return Err(unexpected("extra", &other)),
                };
                extra.insert(key, value);
            }
            extra
        }
        other => return Err(unexpected("extra", &other)),
    };
    Ok(Tail {
        position: fields.optional("position", vec3)?,
        gps: fields.optional("gps", |name, value| {
            let mut inner = Fields::of(value, name)?;
            Ok(Gps { lat: inner.double("lat")?, lon: inner.double("lon")?, alt_m: inner.double("alt_m")? })
        })?,
        velocity: fields.optional("velocity", vec3)?,
        attitude: fields.optional("attitude", |name, value| {
            let mut inner = Fields::of(value, name)?;
            Ok(Attitude { roll: inner.double("roll")?, pitch: inner.double("pitch")?, yaw: inner.double("yaw")? })
        })?,
        throttle: fields.double("throttle")?,
        voltage: fields.optional("voltage", double_of)?,
        current: fields.optional("current", double_of)?,
        mah_drawn: fields.optional("mah_drawn", long_of)?,
        rssi: fields.optional("rssi", int_of)?,
        extra,
    })
}

pub(super) fn flight_event_from_value(value: Value) -> Result<FlightEvent, DecodeError> {
    let mut fields = Fields::of(value, "FlightEvent")?;
    let Value::Union(branch, inner) = fields.take("event")? else {
        return Err(malformed("field event is not a union"));
    };
    match branch {
        0 => {
            let mut closed = Fields::of(*inner, "FlightClosed")?;
            let mut rule = Fields::of(closed.take("rule")?, "FlightRule")?;
            Ok(FlightEvent::Closed(FlightClosed {
                flight_id: closed.uuid("flight_id")?,
                drone_id: closed.uuid("drone_id")?,
                start_ts_us: closed.long("start_ts")?,
                end_ts_us: closed.long("end_ts")?,
                packet_count: closed.long("packet_count")?,
                partition: closed.int("partition")?,
                last_offset: closed.long("last_offset")?,
                rule: FlightRule {
                    throttle_threshold: rule.double("throttle_threshold")?,
                    idle_window_us: rule.long("idle_window_us")?,
                    gap_us: rule.long("gap_us")?,
                    min_duration_us: rule.long("min_duration_us")?,
                },
            }))
        }
        1 => {
            let mut request = Fields::of(*inner, "RecomputeRequested")?;
            Ok(FlightEvent::RecomputeRequested(RecomputeRequested {
                flight_id: request.uuid("flight_id")?,
                drone_id: request.uuid("drone_id")?,
                requested_at_us: request.long("requested_at")?,
                reason: request.optional("reason", string_of)?,
            }))
        }
        other => Err(malformed(format!("unknown flight event branch {other}"))),
    }
}
