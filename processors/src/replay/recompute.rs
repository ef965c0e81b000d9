//! `replay --group analytics`: the metrics of every flight that starts in the range recomputed
//! with the current analytics code (and its `analytics_version`), each with the rule it was cut
//! with.
//!
//! The flights come from the `flights` table, not from re-reading `flights.v1`: the table is what
//! the sessionizer replays left active, while the topic also holds the `FlightClosed` of flights a
//! replay has since retired. Each flight waits for the store watermark like the analytics group
//! and goes through the same idempotent [`Analytics::analyse`], so running beside the live group
//! (or twice) computes the same document. With an archive, a flight whose rows PostgreSQL's
//! retention dropped is computed from the archive, as the analytics group does.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::sessionize::format_us;
use super::{wait_for_store, ReplayConfig};
use crate::analytics::metrics::ANALYTICS_VERSION;
use crate::analytics::Analytics;
use crate::archive::LazyArchive;
use crate::offsets::OffsetKey;
use crate::{timestamp, Result};

const STORE_PATIENCE: Duration = Duration::from_secs(60);

/// The JSON summary of an analytics replay.
#[derive(Debug, Serialize)]
pub struct RecomputeSummary {
    pub group: &'static str,
    pub from: String,
    pub to: Option<String>,
    pub drone: Option<Uuid>,
    pub dry_run: bool,
    /// Flights that start in the range.
    pub flights: usize,
    /// Of those, recomputed now (0 with `--dry-run`).
    pub flights_recomputed: usize,
    /// Of those, whose analysis failed (`analytics_status = failed`).
    pub flights_failed: usize,
    /// The version the metrics were computed with.
    pub analytics_version: i32,
    pub seconds: f64,
    pub flights_per_s: f64,
    /// Only with `--dry-run`: the flights that would be recomputed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<Uuid>>,
}

/// Recomputes the flights that start in the range (lists them only with `dry_run`), reading a
/// flight's rows from `archive` when `telemetry_raw` no longer holds all of them.
pub async fn run(pool: &PgPool, config: &ReplayConfig, archive: Option<LazyArchive>) -> Result<RecomputeSummary> {
    let started = Instant::now();
    let flights: Vec<(Uuid, i32, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, source_partition, last_offset, start_ts FROM flights
         WHERE start_ts >= $1 AND start_ts <= $2 AND ($3::uuid IS NULL OR drone_id = $3)
         ORDER BY start_ts, id",
    )
    .bind(timestamp(config.from_us))
    .bind(timestamp(config.to_or_max()))
    .bind(config.drone)
    .fetch_all(pool)
    .await?;
    config.progress.total.store(flights.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let mut recomputed = 0;
    let mut failed = 0;
    if !config.dry_run {
        let mut analytics = Analytics::new(pool.clone(), &config.store_group, &config.telemetry_topic);
        if let Some(archive) = archive {
            analytics = analytics.with_archive(archive);
        }
        let store = OffsetKey::new(&config.store_group, &config.telemetry_topic);
        for (done, (flight_id, partition, last_offset, _)) in flights.iter().enumerate() {
            config.progress.set_phase(format!("recomputing flight {}/{}", done + 1, flights.len()));
            wait_for_store(pool, &store, *partition, *last_offset, STORE_PATIENCE).await?;
            if analytics.analyse(*flight_id).await?.is_some() {
                recomputed += 1;
            }
            config.progress.read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let ids: Vec<Uuid> = flights.iter().map(|f| f.0).collect();
        failed = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM flights WHERE id = ANY($1) AND analytics_status = 'failed'",
        )
        .bind(&ids)
        .fetch_one(pool)
        .await? as usize;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(RecomputeSummary {
        group: "analytics",
        from: format_us(config.from_us),
        to: config.to_us.map(format_us),
        drone: config.drone,
        dry_run: config.dry_run,
        flights: flights.len(),
        flights_recomputed: recomputed,
        flights_failed: failed,
        analytics_version: ANALYTICS_VERSION,
        seconds,
        flights_per_s: if seconds > 0.0 { recomputed as f64 / seconds } else { 0.0 },
        ids: config.dry_run.then(|| flights.iter().map(|f| f.0).collect()),
    })
}
