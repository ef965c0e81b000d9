//! The one synthetic-flight generator of Flightline: a simulated airframe (a 6S pack and a
//! circuit around its home point) whose every signal is a deterministic function of its index and
//! the time into its flight cycle. `flightline simulate` flies it through the API in real time;
//! every bench (`flightline bench …`) and the examples of `schemas` and `processors` take their
//! packets, records and rows from it, so all figures are measured on the same kind of flight.
//!
//! A cycle is take-off and climb (4 s), whole laps of the circuit at about 12 m/s, a descent
//! (6 s) back over the home point, then idle on the ground ([`IDLE_AFTER_LANDING_S`], longer
//! than the default flight rule's 10 s idle window, so each cycle is one flight). It does no I/O.

use std::collections::BTreeMap;
use std::f64::consts::PI;
use std::io::Write;

use schemas::{Attitude, ExtraValue, Gps, TelemetryRecord, Vec3};
use uuid::Uuid;

/// Seconds on the ground after each landing: longer than the 10 s idle window.
pub const IDLE_AFTER_LANDING_S: f64 = 12.0;

/// Every signal of one packet, before it becomes JSON, a record or a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub throttle: f64,
    pub voltage: f64,
    pub current: f64,
    pub mah_drawn: i64,
    pub rssi: i32,
    /// Local ENU frame, metres.
    pub position: [f64; 3],
    /// lat, lon (degrees), alt_m (metres above MSL).
    pub gps: [f64; 3],
    pub velocity: [f64; 3],
    /// roll, pitch, yaw in degrees, yaw in [-180, 180).
    pub attitude: [f64; 3],
    /// Whether the airframe is in the air (`extra.mode` = `mission`, else `landed`).
    pub airborne: bool,
}

/// One simulated airframe.
#[derive(Debug, Clone)]
pub struct Airframe {
    /// Seconds in the air per flight.
    pub flight_s: f64,
    home_lat: f64,
    home_lon: f64,
    radius_m: f64,
    cruise_alt_m: f64,
    capacity_mah: f64,
    mah: f64,
    seed: f64,
}

impl Airframe {
    /// The airframe `index` of a fleet (each has its own home, circuit and phase), flying
    /// `flight_s` seconds per flight.
    pub fn new(index: u32, flight_s: f64) -> Self {
        let i = f64::from(index);
        Self {
            flight_s,
            home_lat: 47.3977 + 0.002 * i,
            home_lon: 8.5456 + 0.003 * (i % 7.0),
            radius_m: 30.0 + 7.0 * (i % 5.0),
            cruise_alt_m: 25.0 + 3.0 * (i % 4.0),
            capacity_mah: 5000.0,
            mah: 0.0,
            seed: 1.7 * i + 0.3,
        }
    }

    /// Seconds of one cycle: the flight and the idle on the ground after it.
    pub fn cycle_s(&self) -> f64 {
        self.flight_s + IDLE_AFTER_LANDING_S
    }

    /// A new cycle begins: the pack was swapped for one at least 40 % full.
    pub fn recharge(&mut self) {
        self.mah = self.mah.min(self.capacity_mah * 0.6);
    }

    /// The signals at `t` seconds into the current cycle, `dt` seconds after the previous sample
    /// (it integrates the charge drawn).
    pub fn sample(&mut self, t: f64, dt: f64) -> Sample {
        let d = self.flight_s;
        let wobble = 0.03 * (t * 2.3 + self.seed).sin() + 0.015 * (t * 7.1 + 2.0 * self.seed).sin();
        // Phases: spool-up and climb (4 s), circuit, descent (6 s), then idle on the ground.
        let (throttle, z, vz, angle, speed) = if t < 4.0 {
            (0.15 + 0.1 * t, self.cruise_alt_m * t / 4.0, self.cruise_alt_m / 4.0, 0.0, 0.0)
        } else if t < d - 6.0 {
            // Whole laps at about 12 m/s, so the descent starts back over the home point.
            let cruise_s = d - 10.0;
            let laps = (12.0 * cruise_s / (2.0 * PI * self.radius_m)).round().max(1.0);
            let omega = 2.0 * PI * laps / cruise_s;
            (
                0.48 + wobble,
                self.cruise_alt_m + 2.0 * (t * 0.4).sin(),
                0.8 * (t * 0.4).cos(),
                omega * (t - 4.0),
                omega * self.radius_m,
            )
        } else if t < d {
            let left = (d - t) / 6.0;
            (0.36 + wobble, self.cruise_alt_m * left, -self.cruise_alt_m / 6.0, 0.0, 0.0)
        } else {
            (0.0, 0.0, 0.0, 0.0, 0.0)
        };
        let throttle: f64 = throttle.clamp(0.0, 1.0);
        let current = if throttle > 0.0 { 1.5 + 70.0 * throttle.powf(1.6) } else { 0.4 };
        self.mah += current * dt / 3.6;
        let soc = (1.0 - self.mah / self.capacity_mah).clamp(0.0, 1.0);
        let voltage = 6.0 * (3.5 + 0.7 * soc) - current * 0.018;
        // A circle through the home point (0, 0).
        let (x, y) = (self.radius_m * (angle.cos() - 1.0), self.radius_m * angle.sin());
        let heading = (angle + PI / 2.0).to_degrees();
        let (vx, vy) = if speed > 0.0 { (-speed * angle.sin(), speed * angle.cos()) } else { (0.0, 0.0) };
        let lat = self.home_lat + y / 111_320.0;
        let lon = self.home_lon + x / (111_320.0 * self.home_lat.to_radians().cos());
        let yaw = (90.0 - heading).rem_euclid(360.0) - 180.0;
        let roll = if speed > 0.0 { (speed * speed / self.radius_m / 9.81).atan().to_degrees() } else { 0.0 };
        Sample {
            throttle: (throttle * 1e4).round() / 1e4,
            voltage: (voltage * 1e3).round() / 1e3,
            current: (current * 1e3).round() / 1e3,
            mah_drawn: self.mah.round() as i64,
            rssi: 80 + ((t * 0.5 + self.seed).sin() * 10.0).round() as i32,
            position: [x, y, z],
            gps: [lat, lon, 488.0 + z],
            velocity: [vx, vy, vz],
            attitude: [roll + wobble * 20.0, -4.0 * speed / 12.0 + wobble * 10.0, yaw],
            airborne: t < d,
        }
    }
}

/// `count` samples of one flight at `hz` from take-off (the airframe `index`, a flight of
/// `count / hz` seconds plus nothing on the ground): what the benches and examples analyse.
pub fn flight(index: u32, hz: f64, count: usize) -> Vec<Sample> {
    let dt = 1.0 / hz;
    let mut airframe = Airframe::new(index, (count as f64 * dt).max(10.0));
    (0..count).map(|n| airframe.sample(n as f64 * dt, dt)).collect()
}

impl Sample {
    /// Appends the packet as CONTRACT.md §1 JSON, with `ts` formatted as RFC 3339. Written by
    /// hand: the fleet tools must not spend the CPU they measure.
    pub fn write_json(&self, ts_us: i64, out: &mut Vec<u8>) {
        let [x, y, z] = self.position;
        let [lat, lon, alt_m] = self.gps;
        let [vx, vy, vz] = self.velocity;
        let [roll, pitch, yaw] = self.attitude;
        let _ = write!(
            out,
            r#"{{"ts":"{}","throttle":{},"voltage":{},"current":{},"mah_drawn":{},"rssi":{},"position":[{x:.3},{y:.3},{z:.3}],"gps":{{"lat":{lat:.7},"lon":{lon:.7},"alt_m":{alt_m:.2}}},"velocity":[{vx:.3},{vy:.3},{vz:.3}],"attitude":[{roll:.2},{pitch:.2},{yaw:.2}],"extra":{{"mode":"{}","sats":14}}}}"#,
            schemas::format_ts(ts_us),
            self.throttle,
            self.voltage,
            self.current,
            self.mah_drawn,
            self.rssi,
            if self.airborne { "mission" } else { "landed" },
        );
    }

    /// A JSON array of packets `(ts_us, sample)` into `out` (cleared first).
    pub fn write_batch<'a>(samples: impl IntoIterator<Item = (i64, &'a Sample)>, out: &mut Vec<u8>) {
        out.clear();
        out.push(b'[');
        for (index, (ts_us, sample)) in samples.into_iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            sample.write_json(ts_us, out);
        }
        out.push(b']');
    }

    /// The record ingest would append for this packet.
    pub fn to_record(&self, drone_id: Uuid, ts_us: i64, received_at_us: i64) -> TelemetryRecord {
        let [x, y, z] = self.position;
        let [lat, lon, alt_m] = self.gps;
        let [vx, vy, vz] = self.velocity;
        let [roll, pitch, yaw] = self.attitude;
        let mut extra = BTreeMap::new();
        extra.insert("mode".to_owned(), ExtraValue::String(if self.airborne { "mission" } else { "landed" }.into()));
        extra.insert("sats".to_owned(), ExtraValue::Int(14));
        TelemetryRecord {
            drone_id,
            ts_us,
            received_at_us,
            position: Some(Vec3 { x, y, z }),
            gps: Some(Gps { lat, lon, alt_m }),
            velocity: Some(Vec3 { x: vx, y: vy, z: vz }),
            attitude: Some(Attitude { roll, pitch, yaw }),
            throttle: self.throttle,
            voltage: Some(self.voltage),
            current: Some(self.current),
            mah_drawn: Some(self.mah_drawn),
            rssi: Some(self.rssi),
            extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_US: i64 = 1_777_640_000_000_000;

    #[test]
    fn a_cycle_is_one_flight_then_ground_idle() {
        let mut airframe = Airframe::new(3, 60.0);
        let climb = airframe.sample(1.0, 0.02);
        let cruise = airframe.sample(30.0, 0.02);
        let landed = airframe.sample(65.0, 0.02);
        assert!(climb.airborne && cruise.airborne && !landed.airborne);
        assert!(cruise.throttle >= 0.4 && landed.throttle == 0.0);
        assert!(cruise.position[2] > 20.0 && landed.position[2] == 0.0);
        assert!(airframe.cycle_s() > 60.0 + 10.0);
    }

    #[test]
    fn generated_batches_are_valid_packets() {
        let samples = flight(1, 50.0, 500);
        let mut body = Vec::new();
        let start_us = NOW_US - 20_000_000;
        Sample::write_batch(samples.iter().enumerate().map(|(n, s)| (start_us + n as i64 * 20_000, s)), &mut body);
        let packets = schemas::parse_batch(&body, NOW_US).expect("valid packets");
        assert_eq!(packets.len(), 500);
        assert!((packets[100].throttle() - samples[100].throttle).abs() < 1e-12);
        assert_eq!(packets[100].mah_drawn(), Some(samples[100].mah_drawn));
        assert!(packets.windows(2).all(|pair| pair[0].ts_us() < pair[1].ts_us()));
    }

    #[test]
    fn the_same_index_and_time_give_the_same_flight() {
        assert_eq!(flight(7, 200.0, 1000), flight(7, 200.0, 1000));
        assert_ne!(flight(7, 200.0, 1000), flight(8, 200.0, 1000));
    }
}
