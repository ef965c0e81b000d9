//! The rules of CONTRACT.md §1, applied to a [`PacketDraft`]. [`Validator::packet`] is the only
//! place a [`TelemetryPacket`] is made.

use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use super::{BatchError, FieldError, TelemetryPacket, MAX_EXTRA_BYTES, MAX_EXTRA_KEYS, MAX_FUTURE_US};
use crate::values::{Attitude, ExtraValue, Gps, Vec3};

/// Where a value was read in its packet: readers number the keys they meet, nested ones included,
/// and a packet's problems are listed in this order (body order for JSON).
pub(crate) type At = u32;

/// One field of a draft.
pub(crate) enum Slot<T> {
    /// Not in the packet, or `null`.
    Absent,
    /// In the packet, but not of a readable type; the reader has recorded the problem.
    Unreadable,
    /// Read at this position.
    Read(At, T),
}

/// A packet as a reader parsed it: each field of its type, none of its rules checked (ranges,
/// finiteness, `ts` bounds, required fields, sizes). Integers are `i128` so that every value a
/// reader can meet (a JSON integer up to `u64::MAX`, epoch milliseconds × 1000) is held exactly
/// and judged by the rules rather than by the reader.
pub(crate) struct PacketDraft<'a> {
    /// µs since the Unix epoch.
    pub(crate) ts_us: Slot<i128>,
    pub(crate) throttle: Slot<f64>,
    pub(crate) voltage: Slot<f64>,
    pub(crate) current: Slot<f64>,
    pub(crate) mah_drawn: Slot<i128>,
    pub(crate) rssi: Slot<i128>,
    pub(crate) position: Slot<[f64; 3]>,
    pub(crate) gps: Slot<GpsDraft>,
    pub(crate) velocity: Slot<[f64; 3]>,
    /// `[roll, pitch, yaw]`.
    pub(crate) attitude: Slot<[f64; 3]>,
    /// Entries in packet order, duplicates kept; `None` for a value that is not a string, number
    /// or boolean.
    pub(crate) extra: Slot<Vec<(Cow<'a, str>, Option<ExtraValue>)>>,
    /// What the reader could not read (unknown or duplicate keys, wrong types).
    problems: Vec<Problem>,
    next_at: At,
}

/// The `gps` object of a draft.
pub(crate) struct GpsDraft {
    pub(crate) lat: Slot<f64>,
    pub(crate) lon: Slot<f64>,
    pub(crate) alt_m: Slot<f64>,
    /// Position of the end of the object: where missing members are reported.
    pub(crate) end: At,
}

struct Problem {
    at: At,
    field: String,
    reason: &'static str,
}

impl<'a> PacketDraft<'a> {
    pub(crate) fn new() -> PacketDraft<'a> {
        PacketDraft {
            ts_us: Slot::Absent,
            throttle: Slot::Absent,
            voltage: Slot::Absent,
            current: Slot::Absent,
            mah_drawn: Slot::Absent,
            rssi: Slot::Absent,
            position: Slot::Absent,
            gps: Slot::Absent,
            velocity: Slot::Absent,
            attitude: Slot::Absent,
            extra: Slot::Absent,
            problems: Vec::new(),
            next_at: 0,
        }
    }

    /// The position of the next value read.
    pub(crate) fn next_at(&mut self) -> At {
        let at = self.next_at;
        self.next_at += 1;
        at
    }

    /// `value`, read at the next position.
    pub(crate) fn read<T>(&mut self, value: T) -> Slot<T> {
        Slot::Read(self.next_at(), value)
    }

    /// Records what a reader found wrong with the value at `at`.
    pub(crate) fn problem(&mut self, at: At, field: String, reason: &'static str) {
        self.problems.push(Problem { at, field, reason });
    }
}

/// Validates the packets of one body in order (`ts` must increase within it), collecting the valid
/// packets or every problem of every packet.
pub(super) struct Validator {
    now_us: i64,
    packets: Vec<TelemetryPacket>,
    errors: Vec<FieldError>,
    /// ts of the previous packet, if it had a valid one.
    previous_ts_us: Option<i64>,
}

/// A field after its rules.
enum Checked<T> {
    Absent,
    Invalid,
    Valid(T),
}

impl<T> Checked<T> {
    fn ok(self) -> Option<T> {
        match self {
            Checked::Valid(value) => Some(value),
            Checked::Absent | Checked::Invalid => None,
        }
    }
}

impl Validator {
    pub(super) fn new(now_us: i64) -> Validator {
        Validator { now_us, packets: Vec::new(), errors: Vec::new(), previous_ts_us: None }
    }

    /// An element of the body that is not a packet object.
    pub(super) fn not_an_object(&mut self, index: usize) {
        self.errors.push(FieldError { index, field: String::new(), reason: "must be a json object".into() });
        // A later packet is not compared with one that has no ts.
        self.previous_ts_us = None;
    }

    /// Applies every rule of CONTRACT.md §1 to the packet at `index` of the body, and keeps it if
    /// it breaks none.
    pub(super) fn packet(&mut self, index: usize, draft: PacketDraft<'_>) {
        let now_us = self.now_us;
        let mut found = Found(draft.problems);
        let ts_us = found.check(draft.ts_us, "ts", |ts_us| timestamp(ts_us, now_us));
        let throttle =
            found.check(draft.throttle, "throttle", |value| ranged(value, 0.0, 1.0, "must be between 0 and 1"));
        let voltage =
            found.check(draft.voltage, "voltage", |value| ranged(value, 0.0, 100.0, "must be between 0 and 100"));
        let current =
            found.check(draft.current, "current", |value| ranged(value, -50.0, 1000.0, "must be between -50 and 1000"));
        let mah_drawn = found.check(draft.mah_drawn, "mah_drawn", mah_drawn);
        let rssi = found.check(draft.rssi, "rssi", rssi);
        let position = found.triple(draft.position, "position").ok().map(|[x, y, z]| Vec3 { x, y, z });
        let gps = found.gps(draft.gps).ok();
        let velocity = found.triple(draft.velocity, "velocity").ok().map(|[x, y, z]| Vec3 { x, y, z });
        let attitude =
            found.triple(draft.attitude, "attitude").ok().map(|[roll, pitch, yaw]| Attitude { roll, pitch, yaw });
        let extra = found.extra(draft.extra);
        let mut found = found.0;
        found.sort_by_key(|problem| problem.at); // Stable: a field's own problems stay in order.

        // What only the whole packet (and the body) can tell, after every field's own problems.
        let mut whole = |field: &str, reason: &'static str| {
            found.push(Problem { at: At::MAX, field: field.to_owned(), reason });
        };
        let ts_us = match ts_us {
            Checked::Absent => {
                whole("ts", "required");
                None
            }
            Checked::Invalid => None,
            Checked::Valid(ts_us) => {
                if self.previous_ts_us.is_some_and(|previous| ts_us <= previous) {
                    whole("ts", "must be strictly greater than the previous packet's ts");
                }
                Some(ts_us)
            }
        };
        self.previous_ts_us = ts_us;
        if let Checked::Absent = throttle {
            whole("throttle", "required");
        }

        if !found.is_empty() {
            let errors = found.into_iter().map(|problem| FieldError {
                index,
                field: problem.field,
                reason: problem.reason.to_owned(),
            });
            self.errors.extend(errors);
            return;
        }
        let (Some(ts_us), Checked::Valid(throttle)) = (ts_us, throttle) else {
            unreachable!("a packet without a valid ts and throttle has errors");
        };
        self.packets.push(TelemetryPacket {
            ts_us,
            throttle,
            voltage: voltage.ok(),
            current: current.ok(),
            mah_drawn: mah_drawn.ok(),
            rssi: rssi.ok(),
            position,
            gps,
            velocity,
            attitude,
            extra: extra.ok().unwrap_or_default(),
        });
    }

    pub(super) fn into_result(self) -> Result<Vec<TelemetryPacket>, BatchError> {
        if self.errors.is_empty() {
            Ok(self.packets)
        } else {
            Err(BatchError::Invalid(self.errors))
        }
    }
}

/// The problems of one packet so far.
struct Found(Vec<Problem>);

impl Found {
    fn push(&mut self, at: At, field: String, reason: &'static str) {
        self.0.push(Problem { at, field, reason });
    }

    fn check<T, U>(
        &mut self,
        slot: Slot<T>,
        field: &str,
        rule: impl FnOnce(T) -> Result<U, &'static str>,
    ) -> Checked<U> {
        match slot {
            Slot::Absent => Checked::Absent,
            Slot::Unreadable => Checked::Invalid,
            Slot::Read(at, value) => match rule(value) {
                Ok(checked) => Checked::Valid(checked),
                Err(reason) => {
                    self.push(at, field.to_owned(), reason);
                    Checked::Invalid
                }
            },
        }
    }

    /// Three finite numbers; problems name the element (`position[2]`).
    fn triple(&mut self, slot: Slot<[f64; 3]>, field: &str) -> Checked<[f64; 3]> {
        let (at, values) = match slot {
            Slot::Absent => return Checked::Absent,
            Slot::Unreadable => return Checked::Invalid,
            Slot::Read(at, values) => (at, values),
        };
        let mut valid = true;
        for (position, value) in values.iter().enumerate() {
            if let Err(reason) = finite(*value) {
                self.push(at, format!("{field}[{position}]"), reason);
                valid = false;
            }
        }
        if valid {
            Checked::Valid(values)
        } else {
            Checked::Invalid
        }
    }

    fn gps(&mut self, slot: Slot<GpsDraft>) -> Checked<Gps> {
        let draft = match slot {
            Slot::Absent => return Checked::Absent,
            Slot::Unreadable => return Checked::Invalid,
            Slot::Read(_, draft) => draft,
        };
        let lat = self.check(draft.lat, "gps.lat", |lat| ranged(lat, -90.0, 90.0, "must be between -90 and 90"));
        let lon = self.check(draft.lon, "gps.lon", |lon| ranged(lon, -180.0, 180.0, "must be between -180 and 180"));
        let alt_m = self.check(draft.alt_m, "gps.alt_m", finite);
        for (member, checked) in [("gps.lat", &lat), ("gps.lon", &lon), ("gps.alt_m", &alt_m)] {
            if let Checked::Absent = checked {
                self.push(draft.end, member.to_owned(), "required");
            }
        }
        match (lat, lon, alt_m) {
            (Checked::Valid(lat), Checked::Valid(lon), Checked::Valid(alt_m)) => {
                Checked::Valid(Gps { lat, lon, alt_m })
            }
            _ => Checked::Invalid,
        }
    }

    fn extra(&mut self, slot: Slot<Vec<(Cow<'_, str>, Option<ExtraValue>)>>) -> Checked<BTreeMap<String, ExtraValue>> {
        let (at, entries) = match slot {
            Slot::Absent => return Checked::Absent,
            Slot::Unreadable => return Checked::Invalid,
            Slot::Read(at, entries) => (at, entries),
        };
        if entries.len() > MAX_EXTRA_KEYS {
            self.push(at, "extra".into(), "must have at most 32 keys");
            return Checked::Invalid;
        }
        let mut extra = BTreeMap::new();
        let mut valid = true;
        for (key, value) in entries {
            let value = match extra_value(&key, value) {
                Ok(value) => value,
                Err(reason) => {
                    self.push(at, format!("extra.{key}"), reason);
                    valid = false;
                    continue;
                }
            };
            match extra.entry(key.into_owned()) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(existing) => {
                    self.push(at, format!("extra.{}", existing.key()), "duplicate key");
                    valid = false;
                }
            }
        }
        if !valid {
            return Checked::Invalid;
        }
        if compact_json_len(&extra) > MAX_EXTRA_BYTES {
            self.push(at, "extra".into(), "must be at most 4096 bytes as compact json");
            return Checked::Invalid;
        }
        Checked::Valid(extra)
    }
}

/// One entry of `extra`: a string, a finite number or a boolean, and no U+0000 in the key or the
/// string (PostgreSQL's `jsonb` refuses it).
fn extra_value(key: &str, value: Option<ExtraValue>) -> Result<ExtraValue, &'static str> {
    if key.contains('\0') {
        return Err("key must not contain U+0000");
    }
    match value {
        None => Err("must be a string, number or boolean"),
        Some(ExtraValue::Float(number)) if !number.is_finite() => Err("must be finite"),
        Some(ExtraValue::String(text)) if text.contains('\0') => Err("must not contain U+0000"),
        Some(value) => Ok(value),
    }
}

fn finite(value: f64) -> Result<f64, &'static str> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err("must be finite")
    }
}

/// A finite number in `[min, max]`.
fn ranged(value: f64, min: f64, max: f64, reason: &'static str) -> Result<f64, &'static str> {
    let value = finite(value)?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(reason)
    }
}

fn timestamp(ts_us: i128, now_us: i64) -> Result<i64, &'static str> {
    if ts_us < 0 {
        return Err("must not be before 1970-01-01T00:00:00Z");
    }
    if ts_us > i128::from(now_us.saturating_add(MAX_FUTURE_US)) {
        return Err("more than 60 s in the future");
    }
    Ok(i64::try_from(ts_us).expect("between 0 and an i64"))
}

/// `bigint` in the database.
fn mah_drawn(value: i128) -> Result<i64, &'static str> {
    if value < 0 {
        return Err("must be at least 0");
    }
    i64::try_from(value).map_err(|_| "must be at most 9223372036854775807")
}

fn rssi(value: i128) -> Result<i32, &'static str> {
    if (-200..=1023).contains(&value) {
        Ok(value as i32)
    } else {
        Err("must be between -200 and 1023")
    }
}

/// Length of the compact JSON serialisation, without building it.
pub(super) fn compact_json_len(extra: &BTreeMap<String, ExtraValue>) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, extra).expect("serialising strings and numbers cannot fail");
    counter.0
}
