//! The `store` group: every telemetry packet into `telemetry_raw`, exactly once.
//!
//! One transaction per batch locks the group's offset rows, skips messages below the stored
//! offsets (redeliveries after a crash or a rebalance), inserts the rest with one binary `COPY`,
//! and advances the offsets. Either all of it commits or none. A drone's retried request that
//! reached the log twice makes the `COPY` fail on the primary key; the batch then rolls back to a
//! savepoint and goes through a staging table with `INSERT … ON CONFLICT DO NOTHING` instead
//! (see [`insert_rows`]; `flightline bench store` and BENCHMARKS.md for why).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemas::{ExtraValue, TelemetryRecord};
use sqlx::PgPool;

use crate::offsets::OffsetKey;
use crate::runner::{Batch, Message, OffsetSeeds, Processor};
use crate::{timestamp, Result};

pub const GROUP_ID: &str = "flightline-store";

pub struct Store {
    pool: PgPool,
    offsets: OffsetKey,
    seeds: OffsetSeeds,
    /// Daily partitions older than this many days are dropped (`store.raw_retention_days`).
    retention_days: Option<u32>,
}

impl Store {
    /// Prepares the group: makes sure today's partitions exist and loads the stored offsets of
    /// `topic` that seed partition assignment.
    pub async fn new(pool: PgPool, group_id: &str, topic: &str) -> Result<Self> {
        ensure_partitions(&pool).await?;
        let offsets = OffsetKey::new(group_id, topic);
        let seeds = offsets.seeds(&pool).await?;
        Ok(Self { pool, offsets, seeds, retention_days: None })
    }

    /// Keeps `days` full UTC days of raw rows before today (`None`: all of them). Dropped at
    /// start and hourly.
    pub async fn with_retention(mut self, days: Option<u32>) -> Result<Self> {
        self.retention_days = days;
        if let Some(days) = days {
            drop_expired_partitions(&self.pool, days).await?;
        }
        Ok(self)
    }
}

impl Processor for Store {
    type Record = TelemetryRecord;

    async fn handle(&mut self, batch: &Batch<TelemetryRecord>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let partitions: Vec<i32> = batch.next_offsets.keys().copied().collect();
        let stored = self.offsets.fence(&mut tx, &partitions).await?;
        let fresh = batch.messages.iter().filter(|m| stored.get(&m.partition).is_none_or(|next| m.offset >= *next));
        let columns = Columns::from_messages(fresh);
        if !columns.drone_id.is_empty() {
            insert_rows(&mut tx, &columns).await?;
        }
        let next_offsets: Vec<(i32, i64)> = batch
            .next_offsets
            .iter()
            .map(|(partition, next)| (*partition, (*next).max(stored.get(partition).copied().unwrap_or(0))))
            .collect();
        self.offsets.advance(&mut tx, &next_offsets).await?;
        tx.commit().await?;
        for (partition, next) in next_offsets {
            self.seeds.set(partition, next);
        }
        Ok(())
    }

    async fn on_tick(&mut self) -> Result<()> {
        ensure_partitions(&self.pool).await?;
        if let Some(days) = self.retention_days {
            drop_expired_partitions(&self.pool, days).await?;
        }
        Ok(())
    }

    fn offset_seeds(&self) -> Option<OffsetSeeds> {
        Some(self.seeds.clone())
    }
}

/// Daily partitions from yesterday to three days ahead (UTC); see the migration's function.
pub async fn ensure_partitions(pool: &PgPool) -> Result<()> {
    let created: i32 =
        sqlx::query_scalar("SELECT flightline_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1, 5)")
            .fetch_one(pool)
            .await?;
    if created > 0 {
        tracing::info!(created, "telemetry_raw partitions created");
    }
    Ok(())
}

/// Drops the daily partitions of `telemetry_raw` whose day ended more than `days` days before
/// today (UTC); returns their names. A dropped partition is gone at once (no row-by-row
/// `DELETE`); reads of its flights fall back to the archive when one is configured.
pub async fn drop_expired_partitions(pool: &PgPool, days: u32) -> Result<Vec<String>> {
    let expired: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'telemetry_raw'::regclass AND c.relname ~ '^telemetry_raw_[0-9]{8}$'
           AND to_date(substring(c.relname FROM 15), 'YYYYMMDD') < (now() AT TIME ZONE 'UTC')::date - $1::int
         ORDER BY 1",
    )
    .bind(days as i32)
    .fetch_all(pool)
    .await?;
    for partition in &expired {
        // The name matched ^telemetry_raw_[0-9]{8}$ above: safe to splice.
        sqlx::query(&format!("DROP TABLE IF EXISTS {partition}")).persistent(false).execute(pool).await?;
        tracing::info!(partition, retention_days = days, "telemetry_raw partition past retention dropped");
    }
    Ok(expired)
}

/// A batch of records pivoted into one vector per column.
#[derive(Default)]
pub struct Columns {
    pub drone_id: Vec<uuid::Uuid>,
    pub ts: Vec<DateTime<Utc>>,
    pub received_at: Vec<DateTime<Utc>>,
    pub throttle: Vec<f64>,
    pub voltage: Vec<Option<f64>>,
    pub current: Vec<Option<f64>>,
    pub mah_drawn: Vec<Option<i64>>,
    pub rssi: Vec<Option<i32>>,
    pub x: Vec<Option<f64>>,
    pub y: Vec<Option<f64>>,
    pub z: Vec<Option<f64>>,
    pub lat: Vec<Option<f64>>,
    pub lon: Vec<Option<f64>>,
    pub alt_m: Vec<Option<f64>>,
    pub vx: Vec<Option<f64>>,
    pub vy: Vec<Option<f64>>,
    pub vz: Vec<Option<f64>>,
    pub roll: Vec<Option<f64>>,
    pub pitch: Vec<Option<f64>>,
    pub yaw: Vec<Option<f64>>,
    pub extra: Vec<Option<String>>,
}

impl Columns {
    pub fn from_messages<'a>(messages: impl Iterator<Item = &'a Message<TelemetryRecord>>) -> Self {
        Self::from_records(messages.map(|message| &message.record))
    }

    pub fn from_records<'a>(records: impl Iterator<Item = &'a TelemetryRecord>) -> Self {
        let mut c = Columns::default();
        for r in records {
            c.drone_id.push(r.drone_id);
            c.ts.push(timestamp(r.ts_us));
            c.received_at.push(timestamp(r.received_at_us));
            c.throttle.push(r.throttle);
            c.voltage.push(r.voltage);
            c.current.push(r.current);
            c.mah_drawn.push(r.mah_drawn);
            c.rssi.push(r.rssi);
            c.x.push(r.position.as_ref().map(|p| p.x));
            c.y.push(r.position.as_ref().map(|p| p.y));
            c.z.push(r.position.as_ref().map(|p| p.z));
            c.lat.push(r.gps.as_ref().map(|g| g.lat));
            c.lon.push(r.gps.as_ref().map(|g| g.lon));
            c.alt_m.push(r.gps.as_ref().map(|g| g.alt_m));
            c.vx.push(r.velocity.as_ref().map(|v| v.x));
            c.vy.push(r.velocity.as_ref().map(|v| v.y));
            c.vz.push(r.velocity.as_ref().map(|v| v.z));
            c.roll.push(r.attitude.as_ref().map(|a| a.roll));
            c.pitch.push(r.attitude.as_ref().map(|a| a.pitch));
            c.yaw.push(r.attitude.as_ref().map(|a| a.yaw));
            c.extra.push(extra_json(&r.extra));
        }
        c
    }
}

/// The batch into `telemetry_raw`, duplicates of stored rows skipped. Usually one binary `COPY`
/// straight into the table (multi-row inserts, several times cheaper than `INSERT … ON
/// CONFLICT`), inside a savepoint. If a row is already stored (a retried request that reached the
/// log twice, the only way a duplicate gets past the offsets fence), the `COPY` fails with a
/// unique violation: roll back to the savepoint, `COPY` into a temporary table and `INSERT … SELECT
/// … ON CONFLICT (drone_id, ts) DO NOTHING` from it. Returns whether the batch took that path.
pub async fn insert_rows(tx: &mut sqlx::PgConnection, c: &Columns) -> Result<bool> {
    let mut data = Vec::with_capacity(c.drone_id.len() * 200 + 32);
    encode_copy_binary(c, &mut data);
    sqlx::query("SAVEPOINT store_copy").execute(&mut *tx).await?;
    let mut copy = tx.copy_in_raw(&format!("COPY telemetry_raw ({COLUMNS}) FROM STDIN (FORMAT binary)")).await?;
    copy.send(data.as_slice()).await?;
    match copy.finish().await {
        Ok(_) => {
            sqlx::query("RELEASE SAVEPOINT store_copy").execute(&mut *tx).await?;
            return Ok(false);
        }
        Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
            sqlx::query("ROLLBACK TO SAVEPOINT store_copy").execute(&mut *tx).await?;
        }
        Err(error) => return Err(error.into()),
    }
    tracing::debug!(rows = c.drone_id.len(), "batch holds stored rows; deduplicating through a staging table");
    insert_rows_staged(tx, &data).await?;
    Ok(true)
}

/// `data` (binary `COPY` of [`COLUMNS`]) into a temporary table that lives until the commit, then
/// into `telemetry_raw` with `ON CONFLICT (drone_id, ts) DO NOTHING`.
pub async fn insert_rows_staged(tx: &mut sqlx::PgConnection, data: &[u8]) -> Result<()> {
    stage_rows(tx, data).await?;
    // Not kept prepared: the staging table is a new one in every transaction.
    sqlx::query(&format!(
        "INSERT INTO telemetry_raw ({COLUMNS}) SELECT {COLUMNS} FROM store_staging
         ON CONFLICT (drone_id, ts) DO NOTHING"
    ))
    .persistent(false)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// `data` (binary `COPY` of [`COLUMNS`]) into the temporary table `store_staging`, which lives until
/// the transaction ends: the staged path of the store group and of the store replay.
pub async fn stage_rows(tx: &mut sqlx::PgConnection, data: &[u8]) -> Result<()> {
    sqlx::query(
        "CREATE TEMP TABLE store_staging (
             drone_id uuid, ts timestamptz, received_at timestamptz, throttle float8, voltage float8,
             current float8, mah_drawn int8, rssi int4, x float8, y float8, z float8, lat float8,
             lon float8, alt_m float8, vx float8, vy float8, vz float8, roll float8, pitch float8,
             yaw float8, extra jsonb
         ) ON COMMIT DROP",
    )
    .persistent(false)
    .execute(&mut *tx)
    .await?;
    let mut copy = tx.copy_in_raw(&format!("COPY store_staging ({COLUMNS}) FROM STDIN (FORMAT binary)")).await?;
    copy.send(data).await?;
    copy.finish().await?;
    Ok(())
}

/// The columns the store writes, in the order of the `COPY` data.
pub const COLUMNS: &str = "drone_id, ts, received_at, throttle, voltage, current, mah_drawn, rssi, \
    x, y, z, lat, lon, alt_m, vx, vy, vz, roll, pitch, yaw, extra";

/// PostgreSQL's binary `COPY` format of the batch, one tuple of [`COLUMNS`] per row, into `out`.
pub fn encode_copy_binary(c: &Columns, out: &mut Vec<u8>) {
    /// µs between the Unix epoch and PostgreSQL's (2000-01-01).
    const PG_EPOCH_US: i64 = 946_684_800_000_000;
    fn field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => {
                out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                out.extend_from_slice(bytes);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    fn f8(out: &mut Vec<u8>, value: Option<f64>) {
        field(out, value.map(f64::to_be_bytes).as_ref().map(|b| &b[..]));
    }
    fn timestamptz(out: &mut Vec<u8>, value: &DateTime<Utc>) {
        field(out, Some(&(value.timestamp_micros() - PG_EPOCH_US).to_be_bytes()));
    }
    out.clear();
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for i in 0..c.drone_id.len() {
        out.extend_from_slice(&21i16.to_be_bytes());
        field(out, Some(c.drone_id[i].as_bytes()));
        timestamptz(out, &c.ts[i]);
        timestamptz(out, &c.received_at[i]);
        f8(out, Some(c.throttle[i]));
        f8(out, c.voltage[i]);
        f8(out, c.current[i]);
        field(out, c.mah_drawn[i].map(i64::to_be_bytes).as_ref().map(|b| &b[..]));
        field(out, c.rssi[i].map(i32::to_be_bytes).as_ref().map(|b| &b[..]));
        for column in [&c.x, &c.y, &c.z, &c.lat, &c.lon, &c.alt_m, &c.vx, &c.vy, &c.vz, &c.roll, &c.pitch, &c.yaw] {
            f8(out, column[i]);
        }
        match &c.extra[i] {
            // jsonb's binary form: a version byte (1), then the JSON text.
            Some(json) => {
                out.extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
                out.push(1);
                out.extend_from_slice(json.as_bytes());
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes()); // trailer
}

/// `extra` as JSON text, with its values' JSON types (the same object the packet view writes);
/// `None` when the packet had none.
fn extra_json(extra: &BTreeMap<String, ExtraValue>) -> Option<String> {
    (!extra.is_empty()).then(|| serde_json::to_string(extra).expect("extra values serialise"))
}
