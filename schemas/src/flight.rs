//! Flight identity (CONTRACT.md §3) and the one timestamp format of the contract.

use std::fmt::Write as _;

use uuid::Uuid;

/// Namespace of the UUIDv5 flight ids: `6f1c5a52-7a1e-4c63-9d7c-2b0e5d1f8a90`.
pub const FLIGHT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c5a52_7a1e_4c63_9d7c_2b0e5d1f8a90);

/// The deterministic id of the flight of `drone_id` that starts at `start_ts_us`: UUIDv5 in
/// [`FLIGHT_ID_NAMESPACE`] over the UTF-8 text `<drone_id>/<start_ts>`, with the drone id
/// lowercase hyphenated and start_ts as [`format_ts`] writes it. Replaying the log therefore
/// yields the same ids.
pub fn flight_id(drone_id: Uuid, start_ts_us: i64) -> Uuid {
    let mut name = String::with_capacity(64);
    write!(name, "{}/", drone_id.hyphenated()).expect("writing to a String cannot fail");
    write_ts(&mut name, start_ts_us);
    Uuid::new_v5(&FLIGHT_ID_NAMESPACE, name.as_bytes())
}

/// Formats µs since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, always six fractional
/// digits), e.g. `2026-05-01T12:00:00.020000Z`. Total over `i64`: years outside 0000–9999 (far
/// outside anything validation accepts) are written with a sign, as `+10000` or `-0001`.
pub fn format_ts(ts_us: i64) -> String {
    let mut out = String::with_capacity(27);
    write_ts(&mut out, ts_us);
    out
}

/// Appends [`format_ts`]'s text to `out`.
pub(crate) fn write_ts(out: &mut String, ts_us: i64) {
    let seconds = ts_us.div_euclid(1_000_000);
    let micros = ts_us.rem_euclid(1_000_000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let result = if (0..=9999).contains(&year) {
        write!(out, "{year:04}")
    } else if year < 0 {
        write!(out, "-{:04}", -year)
    } else {
        write!(out, "+{year}")
    };
    result.expect("writing to a String cannot fail");
    write!(
        out,
        "-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
    .expect("writing to a String cannot fail");
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), exact for every day an `i64` of microseconds can reach.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flight_id_matches_an_independent_implementation() {
        // Expected values computed with Python:
        // uuid.uuid5(uuid.UUID("6f1c5a52-7a1e-4c63-9d7c-2b0e5d1f8a90"),
        //            "0b7c3f4e-2d1a-4c5b-9e8f-7a6b5c4d3e2f/2026-05-01T12:00:00.020000Z")
        let drone = Uuid::parse_str("0b7c3f4e-2d1a-4c5b-9e8f-7a6b5c4d3e2f").unwrap();
        assert_eq!(flight_id(drone, 1_777_636_800_020_000).to_string(), "709b9bbd-866b-5153-8353-2873496b5cdb");
        assert_eq!(flight_id(drone, 0).to_string(), "3b44078b-2a57-5762-ab0a-306343bf06d8");
    }

    #[test]
    fn format_ts_always_has_six_fractional_digits() {
        assert_eq!(format_ts(1_777_636_800_020_000), "2026-05-01T12:00:00.020000Z");
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format_ts(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(format_ts(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(format_ts(253_402_300_799_999_999), "9999-12-31T23:59:59.999999Z");
        assert_eq!(format_ts(253_402_300_800_000_000), "+10000-01-01T00:00:00.000000Z");
        // Total: the extremes do not panic.
        assert!(format_ts(i64::MIN).starts_with('-'));
        assert!(format_ts(i64::MAX).starts_with('+'));
    }

    #[test]
    fn format_ts_agrees_with_chrono() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Years 0000..=9999.
            let ts_us = (state % 315_537_897_600_000_000) as i64 - 62_167_219_200_000_000;
            let expected =
                chrono::DateTime::from_timestamp_micros(ts_us).unwrap().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            assert_eq!(format_ts(ts_us), expected, "ts_us = {ts_us}");
        }
    }
}
