//! `flightline bench store`: the store group's batched write into `telemetry_raw`, two ways.
//!
//! (a) UNNEST, the store's statement before it moved to COPY (kept here verbatim as the
//! baseline): one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT (drone_id, ts) DO NOTHING`.
//! (b) COPY, the store's own `processors::store::insert_rows`: binary `COPY` straight into
//! `telemetry_raw` inside a savepoint, and only when that hits a duplicate key, rollback to the
//! savepoint, binary `COPY` into a temporary table and `INSERT … SELECT … ON CONFLICT DO NOTHING`
//! (`--copy-path staged` always takes that second path). Each batch is one transaction shaped like
//! the store's: lock the group's offset rows (`FOR UPDATE`), write the rows, advance the offsets,
//! commit.
//!
//! Everything runs in a scratch database created for the bench and dropped afterwards. The rows
//! are generated up front (50 `sim` drones at 200 Hz, interleaved as the log would deliver them,
//! every column filled, `extra` JSON on every row) and pivoted with the store's own
//! `Columns::from_messages`, so both methods start from the same in-memory batch; encoding the
//! `COPY` stream is part of the COPY method's time. `--retried-every N` makes every Nth batch end
//! with a packet of the previous batch again (a retried request), the COPY method's worst case.
//! Before each method's run `telemetry_raw` is truncated, and the order of the methods alternates
//! between runs. The first run checks that both methods stored identical rows.

use std::time::Instant;

use chrono::Utc;
use processors::store::Columns;
use processors::Message;
use schemas::TelemetryRecord;
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool};

use super::stats::{median, round};

const DRONES: usize = 50;
const HZ: i64 = 200;
const PARTITIONS: i32 = 6;
const GROUP: &str = "bench-store";
const TOPIC: &str = "telemetry.v1";

#[derive(Debug, Serialize)]
pub struct StoreBenchReport {
    pub rows: usize,
    pub batch: usize,
    pub runs: usize,
    /// Medians over the runs: rows / wall time of the run (all batches, one transaction each).
    pub unnest_rows_per_s: f64,
    pub copy_rows_per_s: f64,
    /// Medians over the runs of each run's median batch transaction (begin → commit), ms.
    pub unnest_batch_ms_p50: f64,
    pub copy_batch_ms_p50: f64,
    /// copy_rows_per_s / unnest_rows_per_s: above 1 means COPY is faster.
    pub ratio: f64,
}

/// How the COPY method writes a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CopyPath {
    /// `COPY` straight into `telemetry_raw` in a savepoint; on a duplicate key, the staged path.
    Direct,
    /// Always `COPY` into a temporary table, then `INSERT … SELECT … ON CONFLICT DO NOTHING`.
    Staged,
}

/// `flightline bench store`.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreBenchOptions {
    #[arg(long, default_value_t = 200_000)]
    pub rows: usize,
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// How the COPY method writes: straight into telemetry_raw (staged only on a duplicate key),
    /// or always through a staging table.
    #[arg(long, value_enum, default_value_t = CopyPath::Direct)]
    pub copy_path: CopyPath,
    /// Every Nth batch also repeats the previous batch's last packet (a retried request that
    /// reached the log twice), at its end; 0: never.
    #[arg(long, default_value_t = 0)]
    pub retried_every: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Unnest,
    Copy,
}

struct RunFigures {
    rows_per_s: f64,
    batch_ms_p50: f64,
    /// Batches the COPY method wrote through the staging table.
    staged: usize,
}

/// Creates a scratch database next to the one `database_url` names, runs the bench in it, and
/// drops it again (also when the bench fails).
pub async fn bench_store(database_url: &str, options: StoreBenchOptions) -> anyhow::Result<StoreBenchReport> {
    anyhow::ensure!(
        options.rows >= 1 && options.batch >= 1 && options.runs >= 1,
        "--rows, --batch and --runs must be positive"
    );
    super::with_scratch_database(database_url, "store", 1, |pool| async move { run_bench(&pool, &options).await }).await
}

async fn run_bench(pool: &PgPool, options: &StoreBenchOptions) -> anyhow::Result<StoreBenchReport> {
    let StoreBenchOptions { rows, batch, runs, copy_path, retried_every } = *options;
    processors::store::ensure_partitions(pool).await?;
    let batches = synthetic_batches(rows, batch, retried_every);
    let mut unnest = Vec::with_capacity(runs);
    let mut copy = Vec::with_capacity(runs);
    for run in 0..runs {
        let order = if run % 2 == 0 { [Method::Unnest, Method::Copy] } else { [Method::Copy, Method::Unnest] };
        let mut digests = Vec::new();
        for method in order {
            let figures = run_method(pool, method, copy_path, &batches).await?;
            let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry_raw").fetch_one(pool).await?;
            anyhow::ensure!(stored as usize == rows, "{method:?} stored {stored} rows, expected {rows}");
            if run == 0 {
                digests.push(table_digest(pool).await?);
            }
            eprintln!(
                "bench store: run {}/{runs} {:?}: {:.0} rows/s, batch p50 {:.2} ms{}",
                run + 1,
                method,
                figures.rows_per_s,
                figures.batch_ms_p50,
                if method == Method::Copy {
                    format!(", {} batches took the staged path", figures.staged)
                } else {
                    String::new()
                }
            );
            match method {
                Method::Unnest => unnest.push(figures),
                Method::Copy => copy.push(figures),
            }
        }
        if run == 0 {
            anyhow::ensure!(digests[0] == digests[1], "UNNEST and COPY stored different rows");
        }
    }
    let median_of = |figures: &[RunFigures], f: fn(&RunFigures) -> f64| median(figures.iter().map(f).collect());
    let unnest_rows_per_s = median_of(&unnest, |f| f.rows_per_s);
    let copy_rows_per_s = median_of(&copy, |f| f.rows_per_s);
    Ok(StoreBenchReport {
        rows,
        batch,
        runs,
        unnest_rows_per_s: round(unnest_rows_per_s, 0),
        copy_rows_per_s: round(copy_rows_per_s, 0),
        unnest_batch_ms_p50: round(median_of(&unnest, |f| f.batch_ms_p50), 2),
        copy_batch_ms_p50: round(median_of(&copy, |f| f.batch_ms_p50), 2),
        ratio: round(copy_rows_per_s / unnest_rows_per_s, 3),
    })
}

/// Writes every batch with `method` into an emptied `telemetry_raw`, one store-shaped transaction
/// per batch.
async fn run_method(
    pool: &PgPool,
    method: Method,
    copy_path: CopyPath,
    batches: &[Columns],
) -> anyhow::Result<RunFigures> {
    sqlx::raw_sql("TRUNCATE telemetry_raw; DELETE FROM consumer_offsets").execute(pool).await?;
    let offsets = processors::offsets::OffsetKey::new(GROUP, TOPIC);
    let mut conn = pool.acquire().await?;
    let mut batch_ms = Vec::with_capacity(batches.len());
    let mut copy_buffer = Vec::new();
    let mut rows = 0usize;
    let mut staged = 0usize;
    let started = Instant::now();
    for (index, columns) in batches.iter().enumerate() {
        let begin = Instant::now();
        let mut tx = conn.begin().await?;
        let partitions: Vec<i32> = (0..PARTITIONS).collect();
        offsets.fence(&mut tx, &partitions).await?;
        match method {
            Method::Unnest => unnest_rows(&mut tx, columns).await?,
            Method::Copy => staged += usize::from(copy_rows(&mut tx, columns, &mut copy_buffer, copy_path).await?),
        }
        let next_offset = ((index + 1) * columns.drone_id.len()) as i64;
        let next_offsets: Vec<(i32, i64)> = partitions.iter().map(|partition| (*partition, next_offset)).collect();
        offsets.advance(&mut tx, &next_offsets).await?;
        tx.commit().await?;
        batch_ms.push(begin.elapsed().as_secs_f64() * 1000.0);
        rows += columns.drone_id.len();
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(RunFigures { rows_per_s: rows as f64 / seconds, batch_ms_p50: median(batch_ms), staged })
}

/// The COPY method: the store's own [`processors::store::insert_rows`] (direct `COPY`, staged on
/// a duplicate key), or with `--copy-path staged` always its staged path. Returns whether the
/// batch went through the staging table.
async fn copy_rows(tx: &mut PgConnection, c: &Columns, buffer: &mut Vec<u8>, path: CopyPath) -> anyhow::Result<bool> {
    match path {
        CopyPath::Direct => Ok(processors::store::insert_rows(tx, c).await?),
        CopyPath::Staged => {
            processors::store::encode_copy_binary(c, buffer);
            processors::store::insert_rows_staged(tx, buffer).await?;
            Ok(true)
        }
    }
}

/// The baseline: the store's statement before it moved to `COPY` (verbatim), one
/// `INSERT … SELECT FROM UNNEST(…) ON CONFLICT (drone_id, ts) DO NOTHING` binding one array per
/// column.
async fn unnest_rows(tx: &mut PgConnection, c: &Columns) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO telemetry_raw (drone_id, ts, received_at, throttle, voltage, current,
             mah_drawn, rssi, x, y, z, lat, lon, alt_m, vx, vy, vz, roll, pitch, yaw, extra)
         SELECT drone_id, ts, received_at, throttle, voltage, current, mah_drawn, rssi,
             x, y, z, lat, lon, alt_m, vx, vy, vz, roll, pitch, yaw, extra::jsonb
         FROM UNNEST($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::float8[],
             $5::float8[], $6::float8[], $7::int8[], $8::int4[], $9::float8[], $10::float8[],
             $11::float8[], $12::float8[], $13::float8[], $14::float8[], $15::float8[],
             $16::float8[], $17::float8[], $18::float8[], $19::float8[], $20::float8[],
             $21::text[])
             AS u(drone_id, ts, received_at, throttle, voltage, current, mah_drawn, rssi,
                  x, y, z, lat, lon, alt_m, vx, vy, vz, roll, pitch, yaw, extra)
         ON CONFLICT (drone_id, ts) DO NOTHING",
    )
    .bind(&c.drone_id)
    .bind(&c.ts)
    .bind(&c.received_at)
    .bind(&c.throttle)
    .bind(&c.voltage)
    .bind(&c.current)
    .bind(&c.mah_drawn)
    .bind(&c.rssi)
    .bind(&c.x)
    .bind(&c.y)
    .bind(&c.z)
    .bind(&c.lat)
    .bind(&c.lon)
    .bind(&c.alt_m)
    .bind(&c.vx)
    .bind(&c.vy)
    .bind(&c.vz)
    .bind(&c.roll)
    .bind(&c.pitch)
    .bind(&c.yaw)
    .bind(&c.extra)
    .execute(tx)
    .await?;
    Ok(())
}

/// An md5 over every stored row (in key order), to check both methods stored the same thing.
async fn table_digest(pool: &PgPool) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar("SELECT md5(string_agg(t::text, '|' ORDER BY drone_id, ts)) FROM telemetry_raw t")
        .fetch_one(pool)
        .await?)
}

/// `rows` packets of `DRONES` simulated drones (`sim`) flying at `HZ`, ending now, in log order
/// (the drones' packets interleaved), pivoted into batches of `batch` rows; every
/// `retried_every`-th batch (0: none) ends with a second copy of the previous batch's last packet.
fn synthetic_batches(rows: usize, batch: usize, retried_every: usize) -> Vec<Columns> {
    let drones: Vec<uuid::Uuid> = (0..DRONES).map(|_| uuid::Uuid::new_v4()).collect();
    let mut airframes: Vec<sim::Airframe> = (0..DRONES as u32).map(|index| sim::Airframe::new(index, 600.0)).collect();
    let per_drone = rows.div_ceil(DRONES) as i64;
    let start_us = Utc::now().timestamp_micros() - per_drone * 1_000_000 / HZ - 60_000_000;
    let dt = 1.0 / HZ as f64;
    let messages: Vec<Message<TelemetryRecord>> = (0..rows)
        .map(|n| {
            let drone = n % DRONES;
            let k = (n / DRONES) as i64;
            let airframe = &mut airframes[drone];
            let sample = airframe.sample((k as f64 * dt) % airframe.cycle_s(), dt);
            let ts_us = start_us + k * 1_000_000 / HZ + drone as i64 * 37;
            let record = sample.to_record(drones[drone], ts_us, ts_us + 35_000 + (k % 40) * 1_000);
            Message {
                partition: (drone as i32) % PARTITIONS,
                offset: n as i64,
                record,
                traceparent: None,
                timestamp_ms: None,
            }
        })
        .collect();
    let chunks: Vec<&[Message<TelemetryRecord>]> = messages.chunks(batch).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| {
            let retried = (retried_every > 0 && index > 0 && index % retried_every == 0)
                .then(|| chunks[index - 1].last())
                .flatten();
            Columns::from_messages(chunk.iter().chain(retried))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_binary_frames_every_row() {
        let batches = synthetic_batches(25, 10, 0);
        assert_eq!(batches.iter().map(|c| c.drone_id.len()).collect::<Vec<_>>(), vec![10, 10, 5]);
        let mut buffer = Vec::new();
        processors::store::encode_copy_binary(&batches[2], &mut buffer);
        assert!(buffer.starts_with(b"PGCOPY\n\xff\r\n\0"));
        assert!(buffer.ends_with(&(-1i16).to_be_bytes()));
        // Every simulated packet carries extra JSON.
        assert!(batches[2].extra.iter().all(Option::is_some));
        let retried = synthetic_batches(25, 10, 2);
        assert_eq!(retried.iter().map(|c| c.drone_id.len()).collect::<Vec<_>>(), vec![10, 10, 6]);
        assert_eq!((retried[2].drone_id[5], retried[2].ts[5]), (retried[1].drone_id[9], retried[1].ts[9]));
    }
}
