//! `flightline bench archive`: the archive group's write path into the CQL node, and a flight
//! read back from it into the analytics' input.
//!
//! Writes go through the group's own `ArchiveTable::write` (per-partition unlogged batches, the
//! configured concurrency and consistency) in batches as the runner hands them over, into a
//! scratch keyspace that is dropped afterwards. The records are generated up front (`sim`
//! drones interleaved as the log would deliver them, every column filled, `extra` on every row),
//! so the figure is the archive's, not the generator's. Then one drone's flight of
//! `--flight-rows` rows is written and read back with `ArchiveTable::read` into `FlightRows`
//! (what the analytics compute on), timed from the first query to the last column pushed.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use processors::archive::{self, ArchiveConfig, ArchiveTable, Replication};
use schemas::TelemetryRecord;
use serde::Serialize;
use uuid::Uuid;

use super::stats::{median, round};
use flightline::Settings;

/// `flightline bench archive`.
#[derive(Debug, Clone, clap::Args)]
pub struct ArchiveBenchOptions {
    /// Rows written per run.
    #[arg(long, default_value_t = 300_000)]
    pub rows: usize,
    /// Records handed to one write (the runner's batch).
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Drones interleaved in the written stream.
    #[arg(long, default_value_t = 50)]
    pub drones: usize,
    /// Writes in flight at once; default: archive.concurrency.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Rows of the flight read back (360 000: an hour at 100 Hz); 0 skips the read.
    #[arg(long, default_value_t = 360_000)]
    pub flight_rows: usize,
    /// CQL contact points when archive_nodes is not configured.
    #[arg(long, default_value = "127.0.0.1:9042")]
    pub nodes: String,
}

#[derive(Debug, Serialize)]
pub struct ArchiveBenchReport {
    pub rows: usize,
    pub batch: usize,
    pub runs: usize,
    pub concurrency: usize,
    pub consistency: String,
    pub rows_per_write: usize,
    /// Median over the runs of rows / wall time of the run.
    pub write_rows_per_s: f64,
    /// Median over the runs of each run's median batch (write call → every row acknowledged), ms.
    pub batch_ms_p50: f64,
    pub flight_rows: usize,
    /// The flight from the archive into `FlightRows`, median of 3 reads, s.
    pub flight_read_s: f64,
}

const HZ: i64 = 100;

pub async fn bench_archive(settings: &Settings, options: ArchiveBenchOptions) -> anyhow::Result<ArchiveBenchReport> {
    anyhow::ensure!(
        options.batch >= 1 && options.runs >= 1 && options.drones >= 1,
        "--batch, --runs and --drones must be at least 1"
    );
    let mut config = match settings.archive()? {
        Some(config) => config,
        None => ArchiveConfig {
            nodes: ArchiveConfig::parse_nodes(&options.nodes),
            keyspace: String::new(),
            consistency: ArchiveConfig::parse_consistency(&settings.archive.consistency)?,
            concurrency: settings.archive.concurrency,
            replication: Replication { strategy: "SimpleStrategy".into(), factor: 1 },
        },
    };
    config.keyspace = format!("flightline_bench_{}", &Uuid::new_v4().simple().to_string()[..12]);
    if let Some(concurrency) = options.concurrency {
        config.concurrency = concurrency.max(1);
    }
    let session = Arc::new(archive::connect(&config).await.context("is the archive node up? (make stack-up)")?);
    archive::migrate(&session, &config).await?;
    let result = run(&session, &config, &options).await;
    let dropped = session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", config.keyspace), &[]).await;
    let report = result?;
    dropped.context("dropping the bench keyspace")?;
    Ok(report)
}

async fn run(
    session: &Arc<archive::Session>,
    config: &ArchiveConfig,
    options: &ArchiveBenchOptions,
) -> anyhow::Result<ArchiveBenchReport> {
    let table = ArchiveTable::new(session.clone(), config).await?;
    let mut rates = Vec::new();
    let mut batch_p50s = Vec::new();
    for run in 0..options.runs {
        // Each run writes new rows (another hour), so no run rewrites the previous one's.
        let start_us = 1_700_000_000_000_000 + run as i64 * 3_600_000_000;
        let records = stream(options.drones, options.rows, start_us);
        let started = Instant::now();
        let mut batch_ms = Vec::new();
        for batch in records.chunks(options.batch) {
            let t = Instant::now();
            table.write(batch.iter()).await?;
            batch_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let rate = records.len() as f64 / started.elapsed().as_secs_f64();
        eprintln!("bench archive: run {} of {}: {:.0} rows/s", run + 1, options.runs, rate);
        rates.push(rate);
        batch_p50s.push(median(batch_ms));
    }
    let mut flight_read_s = 0.0;
    if options.flight_rows > 0 {
        let drone = Uuid::new_v4();
        let start_us = 1_690_000_000_000_000;
        let samples = sim::flight(7, HZ as f64, options.flight_rows);
        let records: Vec<TelemetryRecord> = samples
            .iter()
            .enumerate()
            .map(|(n, sample)| {
                let ts_us = start_us + n as i64 * 1_000_000 / HZ;
                sample.to_record(drone, ts_us, ts_us + 5_000)
            })
            .collect();
        for batch in records.chunks(options.batch) {
            table.write(batch.iter()).await?;
        }
        let end_us = records.last().map_or(start_us, |r| r.ts_us);
        // The narrow read analytics uses must give what the whole records give.
        let whole = archive::flight_rows(&table.read(drone, start_us, end_us).await?);
        let mut reads = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let rows = table.read_flight_rows(drone, start_us, end_us).await?;
            reads.push(t.elapsed().as_secs_f64());
            anyhow::ensure!(rows.len() == records.len(), "read {} of {} flight rows back", rows.len(), records.len());
            anyhow::ensure!(rows == whole, "the analytics read differs from the whole records' rows");
        }
        flight_read_s = round(median(reads), 3);
        eprintln!("bench archive: {} flight rows read into FlightRows in {flight_read_s} s", options.flight_rows);
    }
    Ok(ArchiveBenchReport {
        rows: options.rows,
        batch: options.batch,
        runs: options.runs,
        concurrency: config.concurrency,
        consistency: config.consistency.to_string(),
        rows_per_write: archive::ROWS_PER_WRITE,
        write_rows_per_s: round(median(rates), 0),
        batch_ms_p50: round(median(batch_p50s), 2),
        flight_rows: options.flight_rows,
        flight_read_s,
    })
}

/// `rows` records of `drones` sim drones at 100 Hz from `start_us`, interleaved by time.
fn stream(drones: usize, rows: usize, start_us: i64) -> Vec<TelemetryRecord> {
    let per_drone = rows.div_ceil(drones);
    let ids: Vec<Uuid> = (0..drones).map(|_| Uuid::new_v4()).collect();
    let flights: Vec<Vec<sim::Sample>> = (0..drones).map(|d| sim::flight(d as u32, HZ as f64, per_drone)).collect();
    let mut records = Vec::with_capacity(rows);
    'fill: for n in 0..per_drone {
        for (d, flight) in flights.iter().enumerate() {
            if records.len() == rows {
                break 'fill;
            }
            let ts_us = start_us + n as i64 * 1_000_000 / HZ;
            records.push(flight[n].to_record(ids[d], ts_us, ts_us + 5_000));
        }
    }
    records
}
