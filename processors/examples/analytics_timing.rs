//! How long the polars analytics take for a long flight: 360 000 rows of a `sim` flight (two
//! hours at 50 Hz) with every signal present, computed several times; prints the median.
//!
//!     cargo run -p processors --release --example analytics_timing [-- ROWS RUNS]

use std::time::Instant;

use processors::analytics::metrics::{compute, FlightRow, FlightRows};

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args.next().map_or(360_000, |a| a.parse().expect("ROWS"));
    let runs: usize = args.next().map_or(9, |a| a.parse().expect("RUNS"));

    let flight = synthetic_flight(rows);
    let (start, end) = (flight.ts_us[0], flight.ts_us[rows - 1]);
    let mut times_ms = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let began = Instant::now();
        let metrics = compute(&flight, start, end, 0.05).expect("compute");
        times_ms.push(began.elapsed().as_secs_f64() * 1e3);
        last = Some(metrics);
    }
    times_ms.sort_by(f64::total_cmp);
    let median = times_ms[times_ms.len() / 2];
    let metrics = last.expect("at least one run");
    println!(
        "{{\"rows\": {rows}, \"runs\": {runs}, \"median_ms\": {median:.1}, \"min_ms\": {:.1}, \
         \"max_ms\": {:.1}, \"distance_m\": {}, \"energy_wh\": {}}}",
        times_ms[0],
        times_ms[times_ms.len() - 1],
        metrics.distance_m.unwrap_or(f64::NAN),
        metrics.energy_wh.unwrap_or(f64::NAN),
    );
}

/// A 50 Hz flight of the `sim` airframe (the generator every bench uses), every signal present.
fn synthetic_flight(count: usize) -> FlightRows {
    let t0 = 1_777_636_800_000_000_i64;
    let mut rows = FlightRows::with_capacity(count);
    for (i, sample) in sim::flight(0, 50.0, count).iter().enumerate() {
        rows.push(FlightRow {
            ts_us: t0 + i as i64 * 20_000,
            throttle: sample.throttle,
            voltage: Some(sample.voltage),
            current: Some(sample.current),
            mah_drawn: Some(sample.mah_drawn),
            position: Some(sample.position),
            gps: Some(sample.gps),
            velocity: Some(sample.velocity),
            attitude: Some(sample.attitude),
        });
    }
    rows
}
