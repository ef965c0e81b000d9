//! `flightline simulate`: a fleet of simulated drones flying realistic flights through the
//! ingest API in real time — take-off, a cruise circuit with gentle manoeuvres, landing, then a
//! 12 s idle on the ground so each flight closes under the default flight rule.

use std::f64::consts::PI;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::IngestClient;

pub struct SimulateOptions {
    pub drones: u32,
    pub hz: u32,
    /// Flights per drone; `None` flies until interrupted.
    pub flights: Option<u32>,
    pub duration_s: f64,
    pub target: String,
    pub owner_id: Option<Uuid>,
}

#[derive(Debug, Serialize)]
pub struct SimulateReport {
    pub drones: u32,
    pub packets: u64,
    pub flights: u64,
    pub seconds: f64,
}

/// Seconds on the ground after each landing: longer than the 10 s idle window.
const IDLE_AFTER_LANDING_S: f64 = 12.0;

pub async fn simulate(
    pool: &PgPool,
    options: SimulateOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<SimulateReport> {
    anyhow::ensure!((1..=1000).contains(&options.hz), "--hz must be between 1 and 1000");
    anyhow::ensure!(options.drones >= 1, "--drones must be at least 1");
    anyhow::ensure!(options.duration_s >= 10.0, "--duration must be at least 10 s");
    let packets = Arc::new(AtomicU64::new(0));
    let flights = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..options.drones {
        let (drone_id, key) = sim_drone(pool, index, options.owner_id).await?;
        eprintln!("simulate: drone sim-{:02} {drone_id}", index + 1);
        let client = IngestClient::new(&options.target, &key)?;
        let drone = SimDrone::new(index, options.hz, options.duration_s);
        let (packets, flights, shutdown) = (packets.clone(), flights.clone(), shutdown.clone());
        let max_flights = options.flights;
        tasks.spawn(async move { drone.fly(client, max_flights, packets, flights, shutdown).await });
    }
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    progress.tick().await;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(result) => result.context("simulated drone panicked")??,
                None => break,
            },
            _ = progress.tick() => eprintln!(
                "simulate: {} packets, {} flights landed, {:.0} packets/s",
                packets.load(Ordering::Relaxed), flights.load(Ordering::Relaxed),
                packets.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()),
        }
    }
    Ok(SimulateReport {
        drones: options.drones,
        packets: packets.load(Ordering::Relaxed),
        flights: flights.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The simulated drone `sim-NN` (created on first use) with a freshly rotated key.
async fn sim_drone(pool: &PgPool, index: u32, owner_id: Option<Uuid>) -> anyhow::Result<(Uuid, String)> {
    let name = format!("sim-{:02}", index + 1);
    let existing: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM drones WHERE name = $1 AND owner_id IS NOT DISTINCT FROM $2 ORDER BY created_at LIMIT 1",
    )
    .bind(&name)
    .bind(owner_id)
    .fetch_optional(pool)
    .await?;
    if let Some(id) = existing {
        if let Some(key) = credentials::rotate(pool, id).await? {
            return Ok((id, key));
        }
    }
    Ok(credentials::create_drone(pool, &name, owner_id).await?)
}

/// The state of one simulated airframe: a 6S pack and a circuit around its home point.
struct SimDrone {
    hz: u32,
    flight_s: f64,
    home_lat: f64,
    home_lon: f64,
    radius_m: f64,
    cruise_alt_m: f64,
    capacity_mah: f64,
    mah: f64,
    seed: f64,
}

impl SimDrone {
    fn new(index: u32, hz: u32, flight_s: f64) -> Self {
        let i = f64::from(index);
        Self {
            hz,
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

    async fn fly(
        mut self,
        client: IngestClient,
        max_flights: Option<u32>,
        packets: Arc<AtomicU64>,
        flights: Arc<AtomicU64>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let step = Duration::from_secs_f64(1.0 / f64::from(self.hz));
        // Batches of ~100 ms, like a drone's uplink buffer.
        let per_batch = (self.hz / 10).max(1) as usize;
        let cycle_s = self.flight_s + IDLE_AFTER_LANDING_S;
        let mut flight = 0u32;
        let (wall_start, instant_start) = (Utc::now().timestamp_micros(), Instant::now());
        let mut cycle_start = instant_start;
        let mut next = instant_start;
        let mut batch = Vec::with_capacity(per_batch);
        while !shutdown.is_cancelled() {
            let t = next.duration_since(cycle_start).as_secs_f64();
            if t >= cycle_s {
                flight += 1;
                flights.fetch_add(1, Ordering::Relaxed);
                if max_flights.is_some_and(|max| flight >= max) {
                    break;
                }
                cycle_start = next;
                self.mah = self.mah.min(self.capacity_mah * 0.6);
                continue;
            }
            // Event time follows the schedule, not the moment of generation, so it is strictly
            // increasing at exactly 1/hz whatever the scheduling jitter.
            let ts_us = wall_start + next.duration_since(instant_start).as_micros() as i64;
            batch.push(self.packet(ts_us, t, step.as_secs_f64()));
            next += step;
            if batch.len() >= per_batch {
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                let body = serde_json::to_vec(&batch)?;
                // A drone whose requests keep being refused still stops at Ctrl-C.
                tokio::select! {
                    delivered = client.post_batch(body) => { delivered?; }
                    () = shutdown.cancelled() => break,
                }
                packets.fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
            }
        }
        Ok(())
    }

    /// The packet at `t` seconds into the current cycle.
    fn packet(&mut self, ts_us: i64, t: f64, dt: f64) -> serde_json::Value {
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
        json!({
            "ts": schemas::format_ts(ts_us),
            "throttle": (throttle * 1e4).round() / 1e4,
            "voltage": (voltage * 1e3).round() / 1e3,
            "current": (current * 1e3).round() / 1e3,
            "mah_drawn": self.mah.round() as i64,
            "rssi": 80 + ((t * 0.5 + self.seed).sin() * 10.0).round() as i64,
            "position": [x, y, z],
            "gps": {"lat": lat, "lon": lon, "alt_m": 488.0 + z},
            "velocity": [vx, vy, vz],
            "attitude": [roll + wobble * 20.0, -4.0 * speed / 12.0 + wobble * 10.0, yaw],
            "extra": {"mode": if t < d { "mission" } else { "landed" }, "sats": 14},
        })
    }
}
