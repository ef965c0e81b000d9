//! `flightline bench analytics`: how long the analytics group takes from a closed flight to
//! committed metrics, on a simulated flight (`sim`) of N rows at 200 Hz in the configured database,
//! through the very code the processor runs (tag rows, load, polars, write). Several runs;
//! the medians are printed. The bench drone and its rows are deleted after each run.

use chrono::Utc;
use serde::Serialize;
use sqlx::PgPool;

use super::stats::{median, round};

#[derive(Debug, Serialize)]
pub struct AnalyticsBenchReport {
    pub rows: usize,
    pub runs: usize,
    /// Medians over the runs, in milliseconds.
    pub load_ms: f64,
    pub compute_ms: f64,
    /// Writing the metrics document and columns.
    pub write_ms: f64,
    /// From the start of the analysis to the metrics committed: load + compute + write.
    pub total_ms: f64,
    /// Tagging the rows with the flight id, which follows the commit of the metrics.
    pub tag_ms: f64,
}

/// `flightline bench analytics`.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyticsBenchOptions {
    #[arg(long, default_value_t = 360_000)]
    pub rows: usize,
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

pub async fn bench_analytics(pool: &PgPool, options: AnalyticsBenchOptions) -> anyhow::Result<AnalyticsBenchReport> {
    let AnalyticsBenchOptions { rows, runs } = options;
    anyhow::ensure!(rows >= 2, "--rows must be at least 2");
    anyhow::ensure!(runs >= 1, "--runs must be at least 1");
    let analytics = processors::analytics::Analytics::new(pool.clone(), "bench", "bench");
    let flight = sim::flight(0, 200.0, rows);
    let mut samples = Vec::with_capacity(runs);
    for run in 1..=runs {
        let (drone_id, _) = credentials::create_drone(pool, "bench-analytics", None).await?;
        let start = Utc::now() - chrono::Duration::hours(2);
        let start_us = start.timestamp_micros();
        let end_us = start_us + (rows as i64 - 1) * 5_000;
        // A 200 Hz flight of the `sim` airframe, every signal present, written as the store does.
        let records: Vec<_> = flight
            .iter()
            .enumerate()
            .map(|(n, sample)| sample.to_record(drone_id, start_us + n as i64 * 5_000, start_us))
            .collect();
        let mut tx = pool.begin().await?;
        processors::store::insert_rows(&mut tx, &processors::store::Columns::from_records(records.iter())).await?;
        tx.commit().await?;
        let flight_id = schemas::flight_id(drone_id, start_us);
        sqlx::query(
            "INSERT INTO flights (id, drone_id, start_ts, end_ts, packet_count, source_partition, last_offset)
             VALUES ($1, $2, $3, $4, $5, 0, 0)",
        )
        .bind(flight_id)
        .bind(drone_id)
        .bind(start)
        .bind(chrono::DateTime::from_timestamp_micros(end_us).expect("end ts"))
        .bind(rows as i64)
        .execute(pool)
        .await?;
        let timings = analytics.analyse(flight_id).await?.expect("the bench flight exists");
        anyhow::ensure!(timings.rows == rows, "analysed {} rows, expected {rows}", timings.rows);
        let status: String = sqlx::query_scalar("SELECT analytics_status FROM flights WHERE id = $1")
            .bind(flight_id)
            .fetch_one(pool)
            .await?;
        anyhow::ensure!(status == "done", "analytics status {status}");
        eprintln!(
            "bench analytics: run {run}/{runs}: tag {:.0} ms, load {:.0} ms, compute {:.0} ms, write {:.0} ms",
            timings.tag_ms, timings.load_ms, timings.compute_ms, timings.write_ms
        );
        samples.push(timings);
        sqlx::query("DELETE FROM telemetry_raw WHERE drone_id = $1").bind(drone_id).execute(pool).await?;
        sqlx::query("DELETE FROM drones WHERE id = $1").bind(drone_id).execute(pool).await?;
    }
    let median = |f: &dyn Fn(&processors::analytics::Timings) -> f64| round(median(samples.iter().map(f).collect()), 1);
    Ok(AnalyticsBenchReport {
        rows,
        runs,
        load_ms: median(&|t| t.load_ms),
        compute_ms: median(&|t| t.compute_ms),
        write_ms: median(&|t| t.write_ms),
        total_ms: median(&|t| t.load_ms + t.compute_ms + t.write_ms),
        tag_ms: median(&|t| t.tag_ms),
    })
}
