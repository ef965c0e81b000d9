//! The hand-written binary decoder of the current schemas, for messages written with them (the
//! normal case); the tests compare it with apache-avro value for value.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{malformed, DecodeError, Tail};
use crate::record::{FlightClosed, FlightEvent, FlightRule, RecomputeRequested, TelemetryHead, TelemetryRecord};
use crate::values::{Attitude, ExtraValue, Gps, Vec3};

struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn error(&self, what: &str) -> DecodeError {
        malformed(format!("{what} at datum byte {}", self.position))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() - self.position < len {
            return Err(self.error("unexpected end of data"));
        }
        let taken = &self.bytes[self.position..self.position + len];
        self.position += len;
        Ok(taken)
    }

    fn long(&mut self) -> Result<i64, DecodeError> {
        let mut zigzag: u64 = 0;
        let mut shift = 0;
        loop {
            let Some(&byte) = self.bytes.get(self.position) else {
                return Err(self.error("unexpected end of data"));
            };
            self.position += 1;
            // The tenth byte may only carry the 64th bit.
            if shift == 63 && byte > 1 {
                return Err(self.error("varint overflows 64 bits"));
            }
            zigzag |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64));
            }
            shift += 7;
        }
    }

    fn int(&mut self) -> Result<i32, DecodeError> {
        let value = self.long()?;
        i32::try_from(value).map_err(|_| self.error("int out of range"))
    }

    fn double(&mut self) -> Result<f64, DecodeError> {
        let bytes = self.take(8)?;
        Ok(f64::from_le_bytes(bytes.try_into().expect("took 8 bytes")))
    }

    fn boolean(&mut self) -> Result<bool, DecodeError> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.error("invalid boolean")),
        }
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| self.error("negative string length"))?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| self.error("string is not utf-8"))
    }

    fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        let text = self.str()?;
        Uuid::parse_str(text).map_err(|_| self.error("string is not a uuid"))
    }

    /// Reads the branch of a `["null", T]` union: whether a value follows.
    fn present(&mut self) -> Result<bool, DecodeError> {
        match self.long()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.error("invalid union branch")),
        }
    }

    fn optional<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.present()? {
            read(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn vec3(&mut self) -> Result<Vec3, DecodeError> {
        Ok(Vec3 { x: self.double()?, y: self.double()?, z: self.double()? })
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }
}

pub(super) fn read_telemetry_datum(datum: &[u8]) -> Result<TelemetryRecord, DecodeError> {
    let mut cursor = Cursor { bytes: datum, position: 0 };
    let drone_id = cursor.uuid()?;
    let ts_us = cursor.long()?;
    let received_at_us = cursor.long()?;
    Ok(read_tail(cursor, Extra::Keep)?.into_record(drone_id, ts_us, received_at_us))
}

/// A `TelemetryRecord` datum checked whole like [`read_telemetry_datum`] (so exactly the same
/// messages are accepted), keeping only what the sessionizer needs: no allocation per message.
pub(super) fn read_telemetry_head_datum(datum: &[u8]) -> Result<TelemetryHead, DecodeError> {
    let mut cursor = Cursor { bytes: datum, position: 0 };
    let drone_id = cursor.uuid()?;
    let ts_us = cursor.long()?;
    let received_at_us = cursor.long()?;
    let throttle = read_tail(cursor, Extra::Skip)?.throttle;
    Ok(TelemetryHead { drone_id, ts_us, received_at_us, throttle })
}

/// Whether [`read_tail`] keeps the `extra` map or only checks it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Extra {
    Keep,
    Skip,
}

/// A `TelemetryPacket` datum: its `ts` and the rest.
pub(super) fn read_packet_datum(datum: &[u8]) -> Result<(i64, Tail), DecodeError> {
    let mut cursor = Cursor { bytes: datum, position: 0 };
    let ts_us = cursor.long()?;
    Ok((ts_us, read_tail(cursor, Extra::Keep)?))
}

/// Reads the fields from `position` to `extra` (see [`super::writer::write_telemetry_tail`]) and
/// checks that nothing follows; with [`Extra::Skip`] the map is checked but left empty.
fn read_tail(mut cursor: Cursor<'_>, keep: Extra) -> Result<Tail, DecodeError> {
    let position = cursor.optional(Cursor::vec3)?;
    let gps =
        cursor.optional(|cursor| Ok(Gps { lat: cursor.double()?, lon: cursor.double()?, alt_m: cursor.double()? }))?;
    let velocity = cursor.optional(Cursor::vec3)?;
    let attitude = cursor
        .optional(|cursor| Ok(Attitude { roll: cursor.double()?, pitch: cursor.double()?, yaw: cursor.double()? }))?;
    let throttle = cursor.double()?;
    let voltage = cursor.optional(Cursor::double)?;
    let current = cursor.optional(Cursor::double)?;
    let mah_drawn = cursor.optional(Cursor::long)?;
    let rssi = cursor.optional(Cursor::int)?;
    let mut extra = BTreeMap::new();
    loop {
        let mut count = cursor.long()?;
        if count == 0 {
            break;
        }
        if count < 0 {
            // A negative count is followed by the block's size in bytes.
            count = count.checked_neg().ok_or_else(|| cursor.error("invalid block count"))?;
            cursor.long()?;
        }
        // Each entry takes at least two bytes; this bounds the loop on garbage.
        if count as u64 > cursor.remaining() as u64 / 2 {
            return Err(cursor.error("map block count exceeds the data"));
        }
        for _ in 0..count {
            let key = cursor.str()?;
            let value = match cursor.long()? {
                0 => {
                    let text = cursor.str()?;
                    ExtraValue::String(if keep == Extra::Keep { text.to_owned() } else { String::new() })
                }
                1 => ExtraValue::Int(cursor.long()?),
                2 => ExtraValue::Float(cursor.double()?),
                3 => ExtraValue::Bool(cursor.boolean()?),
                _ => return Err(cursor.error("invalid union branch")),
            };
            if keep == Extra::Keep {
                extra.insert(key.to_owned(), value);
            }
        }
    }
    if cursor.remaining() > 0 {
        return Err(malformed(format!("{} trailing bytes", cursor.remaining())));
    }
    Ok(Tail { position, gps, velocity, attitude, throttle, voltage, current, mah_drawn, rssi, extra })
}

pub(super) fn read_flight_event_datum(datum: &[u8]) -> Result<FlightEvent, DecodeError> {
    let mut cursor = Cursor { bytes: datum, position: 0 };
    let event = match cursor.long()? {
        0 => FlightEvent::Closed(FlightClosed {
            flight_id: cursor.uuid()?,
            drone_id: cursor.uuid()?,
            start_ts_us: cursor.long()?,
            end_ts_us: cursor.long()?,
            packet_count: cursor.long()?,
            partition: cursor.int()?,
            last_offset: cursor.long()?,
            rule: FlightRule {
                throttle_threshold: cursor.double()?,
                idle_window_us: cursor.long()?,
                gap_us: cursor.long()?,
                min_duration_us: cursor.long()?,
            },
        }),
        1 => FlightEvent::RecomputeRequested(RecomputeRequested {
            flight_id: cursor.uuid()?,
            drone_id: cursor.uuid()?,
            requested_at_us: cursor.long()?,
            reason: cursor.optional(|cursor| cursor.str().map(str::to_owned))?,
        }),
        _ => return Err(cursor.error("invalid union branch")),
    };
    if cursor.remaining() > 0 {
        return Err(malformed(format!("{} trailing bytes", cursor.remaining())));
    }
    Ok(event)
}
