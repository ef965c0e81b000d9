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
    let started = Instant::now();
    let consumer = replay_consumer(&config.kafka)?;
    let (sender, mut receiver) = mpsc::channel::<Vec<TelemetryRecord>>(BATCHES_IN_FLIGHT);
    let topic = config.telemetry_topic.clone();
    let progress = config.progress.clone();
    let filter = config.clone();
    config.progress.set_phase("restoring rows");
    let reader = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
        let from_message_ms = filter.from_us.saturating_sub(TS_TOLERANCE_US) / 1000 - 1000;
        let slices = plan(&consumer, &topic, from_message_ms)?;
        progress.total.fetch_add(slices.iter().map(PartitionSlice::len).sum(), Ordering::Relaxed);
        let mut batch = Vec::with_capacity(BATCH_ROWS);
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
            if batch.len() >= BATCH_ROWS {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                sender.blocking_send(full).map_err(|_| Error::Fatal("the row writer stopped".into()))?;
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            sender.blocking_send(batch).map_err(|_| Error::Fatal("the row writer stopped".into()))?;
        }
        Ok((messages, undecodable))
    });
    let mut rows_in_range = 0u64;
    let mut rows_restored = 0u64;
    let mut data = Vec::new();
    let mut write_error = None;
    while let Some(records) = receiver.recv().await {
        rows_in_range += records.len() as u64;
        match write_batch(pool, &records, &mut data, config.dry_run).await {
            Ok(inserted) => rows_restored += inserted,
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
    let seconds = started.elapsed().as_secs_f64();
    let per_s = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
    Ok(RestoreSummary {
        group: "store",
        from: format_us(config.from_us),
        to: config.to_us.map(format_us),
        drone: config.drone,
        dry_run: config.dry_run,
        messages,
        seconds,
        messages_per_s: per_s(messages),
        rows_in_range,
        rows_restored,
        rows_present: rows_in_range - rows_restored,
        rows_per_s: per_s(rows_in_range),
        undecodable_messages: undecodable,
    })
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
