//! How long the polars analytics take for a long flight: 360 000 synthetic rows (two hours at
//! 50 Hz) with every signal present, computed several times; prints the median.
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

/// A deterministic, plausible 50 Hz flight: throttle wandering around hover, a sagging battery,
/// a slow circle with a climb, attitude noise and yaw turning through ±180.
fn synthetic_flight(count: usize) -> FlightRows {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let t0 = 1_777_636_800_000_000_i64;
    let mut rows = FlightRows::with_capacity(count);
    let mut throttle: f64 = 0.45;
    let mut mah = 0.0;
    for i in 0..count {
        let t = i as f64 * 0.02;
        throttle = (throttle + 0.01 * noise()).clamp(0.05, 1.0);
        let current = 5.0 + 40.0 * throttle + noise();
        let voltage = 25.2 - 0.0001 * t - 0.02 * current + 0.01 * noise();
        mah += current * 0.02 / 3.6;
        let angle = t / 60.0;
        let position = [50.0 * angle.cos(), 50.0 * angle.sin(), 10.0 + 0.001 * t];
        let gps = [47.0 + position[1] / 111_000.0, 8.0 + position[0] / 75_000.0, 400.0 + position[2]];
        let velocity = [-50.0 / 60.0 * angle.sin(), 50.0 / 60.0 * angle.cos(), 0.001];
        let yaw = ((t * 3.0) % 360.0) - 180.0;
        rows.push(FlightRow {
            ts_us: t0 + i as i64 * 20_000,
            throttle,
            voltage: Some(voltage),
            current: Some(current),
            mah_drawn: Some(mah as i64),
            position: Some(position),
            gps: Some(gps),
            velocity: Some(velocity),
            attitude: Some([2.0 * noise(), 2.0 * noise(), yaw]),
        });
    }
    rows
}
