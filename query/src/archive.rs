//! The raw-telemetry archive as the query role sees it: a reader of a drone's records by time
//! range, for the flights whose `telemetry_raw` rows PostgreSQL's retention has dropped
//! (`store.raw_retention_days`).
//!
//! The archive itself (CQL, the `scylla` driver) is `processors::archive`; this crate knows only
//! [`RawArchive`], which the binary implements with it, so `query` links neither `processors`
//! nor the driver. The flight routes read the archive when PostgreSQL holds fewer rows in the
//! flight's range than its `packet_count` and the archive holds more, and answer from it
//! exactly what they would have answered from PostgreSQL.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use schemas::{ExtraValue, TelemetryRecord};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Why the archive could not be read (the node is down, a timeout, an unreadable row).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArchiveError(pub String);

/// What [`RawArchive::read`] returns: boxed, so the driver's deep future types stay behind the
/// trait object (and out of axum's `Send` checks).
pub type ReadFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<TelemetryRecord>, ArchiveError>> + Send + 'a>>;

/// A reader of the archive.
pub trait RawArchive: Send + Sync + 'static {
    /// The drone's records with `from_us <= ts <= to_us`, in `ts` order.
    fn read(&self, drone_id: Uuid, from_us: i64, to_us: i64) -> ReadFuture<'_>;
}

/// A record's `extra` as it comes back out of `telemetry_raw.extra`: the store writes the
/// values' JSON text into a `jsonb` column, and `jsonb` keeps numbers as `numeric`, which
/// prints them without an exponent (`1e16` comes back `10000000000000000`, an integer to
/// serde_json) and without a negative zero. `None` for an empty `extra` (the column is NULL).
pub fn stored_extra(extra: &BTreeMap<String, ExtraValue>) -> Option<Value> {
    if extra.is_empty() {
        return None;
    }
    let mut object = Map::new();
    for (key, value) in extra {
        let value = match value {
            ExtraValue::String(text) => Value::String(text.clone()),
            ExtraValue::Int(number) => Value::from(*number),
            ExtraValue::Bool(flag) => Value::Bool(*flag),
            ExtraValue::Float(number) => {
                let written = serde_json::to_string(&ExtraValue::Float(*number)).expect("a finite number serialises");
                serde_json::from_str(&numeric_text(&written)).expect("numeric text is a JSON number")
            }
        };
        object.insert(key.clone(), value);
    }
    Some(Value::Object(object))
}

/// A JSON number as PostgreSQL's `numeric` prints it: plain digits, as many fractional digits
/// as the input's scale (its fractional digits less its exponent, at least 0), no sign on zero.
fn numeric_text(number: &str) -> String {
    let (negative, unsigned) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => {
            let exponent = &unsigned[at + 1..];
            let exponent = exponent.strip_prefix('+').unwrap_or(exponent);
            (&unsigned[..at], exponent.parse::<i64>().expect("a JSON exponent"))
        }
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = format!("{int_part}{frac_part}");
    // Digits before the decimal point, and after it.
    let point = int_part.len() as i64 + exponent;
    let scale = (frac_part.len() as i64 - exponent).max(0);
    let (whole, fraction) = if point <= 0 {
        ("0".to_owned(), format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)))
    } else if point as usize >= digits.len() {
        (format!("{digits}{}", "0".repeat(point as usize - digits.len())), String::new())
    } else {
        (digits[..point as usize].to_owned(), digits[point as usize..].to_owned())
    };
    debug_assert_eq!(fraction.len() as i64, scale);
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let zero = whole == "0" && fraction.bytes().all(|digit| digit == b'0');
    let sign = if negative && !zero { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_numeric_does() {
        for (json, numeric) in [
            ("12.0", "12.0"),
            ("0.5", "0.5"),
            ("-3.25", "-3.25"),
            ("-0.0", "0.0"),
            ("1e16", "10000000000000000"),
            ("1.5e-7", "0.00000015"),
            ("-1.2345678901234567e19", "-12345678901234567000"),
            ("2.5E+3", "2500"),
            ("1.25e1", "12.5"),
            ("7", "7"),
        ] {
            assert_eq!(numeric_text(json), numeric, "{json}");
        }
    }

    #[test]
    fn extra_comes_back_as_the_jsonb_column_gives_it() {
        let extra = BTreeMap::from([
            ("big".to_owned(), ExtraValue::Float(1e16)),
            ("mode".to_owned(), ExtraValue::String("lo\"iter".into())),
            ("negative_zero".to_owned(), ExtraValue::Float(-0.0)),
            ("sats".to_owned(), ExtraValue::Int(-14)),
            ("small".to_owned(), ExtraValue::Float(1.5e-7)),
            ("whole".to_owned(), ExtraValue::Float(12.0)),
            ("armed".to_owned(), ExtraValue::Bool(true)),
        ]);
        let value = stored_extra(&extra).unwrap();
        assert_eq!(
            value.to_string(),
            r#"{"armed":true,"big":10000000000000000,"mode":"lo\"iter","negative_zero":0.0,"sats":-14,"small":1.5e-7,"whole":12.0}"#
        );
        assert_eq!(stored_extra(&BTreeMap::new()), None);
    }
}
