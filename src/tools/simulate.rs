//! `flightline simulate`: a fleet of simulated drones flying realistic flights through the
//! ingest API in real time — take-off, a cruise circuit with gentle manoeuvres, landing, then a
//! 12 s idle on the ground so each flight closes under the default flight rule.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::client::IngestClient;

/// `flightline simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateOptions {
    #[arg(long, default_value_t = 3)]
    pub drones: u32,
    #[arg(long, default_value_t = 50)]
    pub hz: u32,
    /// Flights per drone; omit to fly until interrupted.
    #[arg(long)]
    pub flights: Option<u32>,
    /// Seconds in the air per flight.
    #[arg(long = "duration", default_value_t = 60.0)]
    pub duration_s: f64,
    /// Base URL of the ingest API (default: http://FLIGHTLINE_HTTP_ADDR).
    #[arg(long)]
    pub target: Option<String>,
    /// Attach the simulated drones to this user (email).
    #[arg(long)]
    pub owner: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SimulateReport {
    pub drones: u32,
    pub packets: u64,
    pub flights: u64,
    pub seconds: f64,
}

pub async fn simulate(
    pool: &PgPool,
    options: &SimulateOptions,
    default_target: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<SimulateReport> {
    anyhow::ensure!((1..=1000).contains(&options.hz), "--hz must be between 1 and 1000");
    anyhow::ensure!(options.drones >= 1, "--drones must be at least 1");
    anyhow::ensure!(options.duration_s >= 10.0, "--duration must be at least 10 s");
    let owner_id = match &options.owner {
        Some(email) => Some(flightline::user_id_by_email(pool, email).await?),
        None => None,
    };
    let target = options.target.as_deref().unwrap_or(default_target);
    let packets = Arc::new(AtomicU64::new(0));
    let flights = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..options.drones {
        let (drone_id, key) = sim_drone(pool, index, owner_id).await?;
        eprintln!("simulate: drone sim-{:02} {drone_id}", index + 1);
        let client = IngestClient::new(target, &key)?;
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

/// One simulated drone: its airframe (the `sim` crate) flown in real time through the API.
struct SimDrone {
    hz: u32,
    airframe: sim::Airframe,
}

impl SimDrone {
    fn new(index: u32, hz: u32, flight_s: f64) -> Self {
        Self { hz, airframe: sim::Airframe::new(index, flight_s) }
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
        let cycle_s = self.airframe.cycle_s();
        let mut flight = 0u32;
        let (wall_start, instant_start) = (Utc::now().timestamp_micros(), Instant::now());
        let mut cycle_start = instant_start;
        let mut next = instant_start;
        let mut batch = Vec::with_capacity(per_batch);
        let mut body = Vec::new();
        while !shutdown.is_cancelled() {
            let t = next.duration_since(cycle_start).as_secs_f64();
            if t >= cycle_s {
                flight += 1;
                flights.fetch_add(1, Ordering::Relaxed);
                if max_flights.is_some_and(|max| flight >= max) {
                    break;
                }
                cycle_start = next;
                self.airframe.recharge();
                continue;
            }
            // Event time follows the schedule, not the moment of generation, so it is strictly
            // increasing at exactly 1/hz whatever the scheduling jitter.
            let ts_us = wall_start + next.duration_since(instant_start).as_micros() as i64;
            batch.push((ts_us, self.airframe.sample(t, step.as_secs_f64())));
            next += step;
            if batch.len() >= per_batch {
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                sim::Sample::write_batch(batch.iter().map(|(ts_us, sample)| (*ts_us, sample)), &mut body);
                // A drone whose requests keep being refused still stops at Ctrl-C.
                tokio::select! {
                    delivered = client.post_batch(body.clone()) => { delivered?; }
                    () = shutdown.cancelled() => break,
                }
                packets.fetch_add(batch.len() as u64, Ordering::Relaxed);
                batch.clear();
            }
        }
        Ok(())
    }
}
