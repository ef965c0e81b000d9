//! `replay --group store`: the `telemetry_raw` rows of an event-time range restored from the log
//! (after a partition was dropped by mistake, a bad `DELETE`, a restore from an old backup).
//!
//! The slice from the first message stamped `from` − 60 s to the end offsets is read on a thread
//! of its own; the records in the range go, in batches, through a binary `COPY` into a staging
//! table and from there into `telemetry_raw` with `ON CONFLICT (drone_id, ts) DO NOTHING`: a row
//! already there stays exactly as it is, a missing one comes back as the store group wrote it,
//! and is tagged with the flight whose range holds it (as the analytics group tags rows). The
//! store group's offsets are not touched. With `--dry-run` each batch is rolled back after
//! counting what it would insert.

use std::sync::atomic::Ordering;
use std::time::Instant;

use schemas::TelemetryRecord;
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::sessionize::format_us;
use super::{plan, read_slices, replay_consumer, PartitionSlice, ReplayConfig, TS_TOLERANCE_US};
use crate::store::{encode_copy_binary, Columns, COLUMNS};
use crate::{Error, Result};

/// Rows per transaction.
const BATCH_ROWS: usize = 20_000;
/// Batches buffered between the reader and the writer.
const BATCHES_IN_FLIGHT: usize = 2;

/// The JSON summary of a store replay.
#[derive(Debug, Serialize)]
pub struct RestoreSummary {
    pub group: &'static str,
    pub from: String,
    pub to: Option<String>,
    pub drone: Option<Uuid>,
    pub dry_run: bool,
    /// Messages read.
    pub messages: u64,
    pub seconds: f64,
    pub messages_per_s: f64,
    /// Packets of the log in the range (and of the drone).
    pub rows_in_range: u64,
    /// Rows that were missing and are back (with `--dry-run`: would be).
    pub rows_restored: u64,
    /// Rows that were there already and are unchanged.
    pub rows_present: u64,
    pub rows_per_s: f64,
    pub undecodable_messages: u64,
}

/// Restores the range's rows (counts them only with `dry_run`).
pub async fn run(pool: &PgPool, config: &ReplayConfig) -> Result<RestoreSummary> {
    config.progress.set_phase("restoring rows");
    let mut data = Vec::new();
    let done = rewrite_range(config, BATCH_ROWS, async |records: &[TelemetryRecord]| {
        write_batch(pool, records, &mut data, config.dry_run).await
    })
    .await?;
    Ok(RestoreSummary {
        group: "store",
        from: format_us(config.from_us),
        to: config.to_us.map(format_us),
        drone: config.drone,
        dry_run: config.dry_run,
        messages: done.messages,
        seconds: done.seconds,
        messages_per_s: done.per_s(done.messages),
        rows_in_range: done.rows_in_range,
        rows_restored: done.rows_written,
        rows_present: done.rows_in_range - done.rows_written,
        rows_per_s: done.per_s(done.rows_in_range),
        undecodable_messages: done.undecodable,
    })
}

/// What a replay that rewrites raw rows did.
pub(super) struct RangeRewrite {
    /// Messages read, and those that could not be decoded.
    pub messages: u64,
    pub undecodable: u64,
    /// Records in the range (and of the drone), and what the writer said it wrote of them.
    pub rows_in_range: u64,
    pub rows_written: u64,
    pub seconds: f64,
}

impl RangeRewrite {
    pub fn per_s(&self, count: u64) -> f64 {
        if self.seconds > 0.0 {
            count as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Reads the range in batches of `batch_rows` ([`spawn_range_reader`]) and hands each to
/// `write`, which returns how many rows it wrote; the first write error stops the replay.
pub(super) async fn rewrite_range(
    config: &ReplayConfig,
    batch_rows: usize,
    mut write: impl AsyncFnMut(&[TelemetryRecord]) -> Result<u64>,
) -> Result<RangeRewrite> {
    let started = Instant::now();
    let (mut receiver, reader) = spawn_range_reader(config, batch_rows)?;
    let mut rows_in_range = 0u64;
    let mut rows_written = 0u64;
    let mut write_error = None;
    while let Some(records) = receiver.recv().await {
        rows_in_range += records.len() as u64;
        match write(&records).await {
            Ok(written) => rows_written += written,
            Err(error) => {
                write_error = Some(error);
                break;
            }
        }
    }
    drop(receiver);
    let read = reader.await.map_err(|e| Error::Fatal(format!("replay reader panicked: {e}")))?;
    if let Some(error) = write_error {
        return Err(error);
    }
    let (messages, undecodable) = read?;
    Ok(RangeRewrite { messages, undecodable, rows_in_range, rows_written, seconds: started.elapsed().as_secs_f64() })
}

/// The thread of [`spawn_range_reader`]: (messages read, undecodable messages).
pub(super) type RangeReader = tokio::task::JoinHandle<Result<(u64, u64)>>;

/// Reads the range's records (of the drone, when the replay has one) on a thread of its own and
/// sends them in batches of `batch_rows`; the thread returns (messages read, undecodable
/// messages). Shared by the replays that rewrite raw rows: the store's and the archive's.
pub(super) fn spawn_range_reader(
    config: &ReplayConfig,
    batch_rows: usize,
) -> Result<(mpsc::Receiver<Vec<TelemetryRecord>>, RangeReader)> {
    let consumer = replay_consumer(&config.kafka)?;
    let (sender, receiver) = mpsc::channel::<Vec<TelemetryRecord>>(BATCHES_IN_FLIGHT);
    let topic = config.telemetry_topic.clone();
    let progress = config.progress.clone();
    let filter = config.clone();
    let reader = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
        let from_message_ms = filter.from_us.saturating_sub(TS_TOLERANCE_US) / 1000 - 1000;
        let slices = plan(&consumer, &topic, from_message_ms)?;
        progress.total.fetch_add(slices.iter().map(PartitionSlice::len).sum(), Ordering::Relaxed);
        let mut batch = Vec::with_capacity(batch_rows);
        let mut undecodable = 0;
        let messages = read_slices(&consumer, &topic, &slices, &progress, |_, _, payload| {
            let Ok(record) = schemas::decode_telemetry(payload) else {
                undecodable += 1;
                return Ok(());
            };
            if !filter.contains(record.ts_us) || filter.drone.is_some_and(|only| only != record.drone_id) {
                return Ok(());
            }
            batch.push(record);
            if batch.len() >= batch_rows {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_rows));
                sender.blocking_send(full).map_err(|_| Error::Fatal("the row writer stopped".into()))?;
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            sender.blocking_send(batch).map_err(|_| Error::Fatal("the row writer stopped".into()))?;
        }
        Ok((messages, undecodable))
    });
    Ok((receiver, reader))
}

/// One batch through a staging table: the missing rows inserted and tagged with their flight;
/// returns how many were missing. Rolled back when `dry_run`.
async fn write_batch(pool: &PgPool, records: &[TelemetryRecord], data: &mut Vec<u8>, dry_run: bool) -> Result<u64> {
    let columns = Columns::from_records(records.iter());
    encode_copy_binary(&columns, data);
    let mut tx = pool.begin().await?;
    crate::store::stage_rows(&mut tx, data.as_slice()).await?;
    let inserted = sqlx::query(&format!(
        "INSERT INTO telemetry_raw ({COLUMNS}) SELECT {COLUMNS} FROM store_staging
         ON CONFLICT (drone_id, ts) DO NOTHING"
    ))
    .persistent(false)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted > 0 {
        // The tag the analytics group gave them: the flight whose range holds the row.
        sqlx::query(
            "UPDATE telemetry_raw t SET flight_id = f.id
             FROM store_staging s JOIN flights f ON f.drone_id = s.drone_id AND s.ts BETWEEN f.start_ts AND f.end_ts
             WHERE t.drone_id = s.drone_id AND t.ts = s.ts AND t.flight_id IS NULL",
        )
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    }
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(inserted)
}
