//! `replay --group archive`: the archive's rows of an event-time range written again from the
//! log (a keyspace restored from an old snapshot, a table truncated, an archive added to a
//! deployment whose log reaches further back than the group ran).
//!
//! The range is read like the store replay reads it ([`super::restore::rewrite_range`]),
//! and every record goes through the archive group's own write: an `INSERT` by primary key,
//! which rewrites a row already there with the same values and brings a missing one back, so the
//! replay commutes with the live group and a killed replay is simply run again. The archive
//! group's offsets (in Kafka) are not touched. With `--dry-run` nothing is written.

use schemas::TelemetryRecord;
use serde::Serialize;
use uuid::Uuid;

use super::restore::rewrite_range;
use super::sessionize::format_us;
use super::ReplayConfig;
use crate::archive::ArchiveTable;
use crate::Result;

/// Records handed to one archive write.
const BATCH_ROWS: usize = 5_000;

/// The JSON summary of an archive replay.
#[derive(Debug, Serialize)]
pub struct ArchiveReplaySummary {
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
    /// Rows written to the archive (0 with `--dry-run`).
    pub rows_written: u64,
    pub rows_per_s: f64,
    pub undecodable_messages: u64,
}

/// Writes the range's records into the archive (counts them only with `dry_run`).
pub async fn run(table: &ArchiveTable, config: &ReplayConfig) -> Result<ArchiveReplaySummary> {
    config.progress.set_phase("rewriting archive rows");
    let done = rewrite_range(config, BATCH_ROWS, async |records: &[TelemetryRecord]| {
        if config.dry_run {
            return Ok(0);
        }
        Ok(table.write(records.iter()).await? as u64)
    })
    .await?;
    Ok(ArchiveReplaySummary {
        group: "archive",
        from: format_us(config.from_us),
        to: config.to_us.map(format_us),
        drone: config.drone,
        dry_run: config.dry_run,
        messages: done.messages,
        seconds: done.seconds,
        messages_per_s: done.per_s(done.messages),
        rows_in_range: done.rows_in_range,
        rows_written: done.rows_written,
        rows_per_s: done.per_s(done.rows_in_range),
        undecodable_messages: done.undecodable,
    })
}
