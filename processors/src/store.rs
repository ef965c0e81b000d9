//! The `store` group: every telemetry packet into `telemetry_raw`, exactly once.
//!
//! One transaction per batch locks the group's offset rows, skips messages below the stored
//! offsets (redeliveries after a crash or a rebalance), inserts the rest with one
//! `INSERT … SELECT FROM UNNEST` (`ON CONFLICT DO NOTHING` also absorbs a drone's retried request
//! that reached the log twice), and advances the offsets. Either all of it commits or none.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use schemas::{ExtraValue, TelemetryRecord};
use sqlx::PgPool;

use crate::runner::{Batch, Message, OffsetSeeds, Processor};
use crate::{topics, Result};

pub const GROUP_ID: &str = "flightline-store";

pub struct Store {
    pool: PgPool,
    group_id: String,
    seeds: OffsetSeeds,
}

impl Store {
    /// Prepares the group: makes sure today's partitions exist and loads the stored offsets that
    /// seed partition assignment.
    pub async fn new(pool: PgPool, group_id: &str) -> Result<Self> {
        ensure_partitions(&pool).await?;
        let seeds = OffsetSeeds::default();
        for (partition, next_offset) in stored_offsets(&pool, group_id, topics::TELEMETRY).await? {
            seeds.set(partition, next_offset);
        }
        Ok(Self { pool, group_id: group_id.to_owned(), seeds })
    }
}

impl Processor for Store {
    type Record = TelemetryRecord;

    async fn handle(&mut self, batch: &Batch<TelemetryRecord>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let partitions: Vec<i32> = batch.next_offsets.keys().copied().collect();
        // FOR UPDATE serialises instances that briefly both own a partition during a rebalance.
        let stored: BTreeMap<i32, i64> = sqlx::query_as::<_, (i32, i64)>(
            "SELECT partition, next_offset FROM consumer_offsets
             WHERE group_id = $1 AND topic = $2 AND partition = ANY($3) FOR UPDATE",
        )
        .bind(&self.group_id)
        .bind(&batch.topic)
        .bind(&partitions)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let fresh = batch
            .messages
            .iter()
            .filter(|m| stored.get(&m.partition).is_none_or(|next| m.offset >= *next));
        let columns = Columns::from_messages(fresh);
        if !columns.drone_id.is_empty() {
            insert_rows(&mut tx, &columns).await?;
        }
        let (offset_partitions, offset_values): (Vec<i32>, Vec<i64>) = batch
            .next_offsets
            .iter()
            .map(|(partition, next)| (*partition, (*next).max(stored.get(partition).copied().unwrap_or(0))))
            .unzip();
        sqlx::query(
            "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
             SELECT $1, $2, p, o FROM UNNEST($3::int[], $4::bigint[]) AS u(p, o)
             ON CONFLICT (group_id, topic, partition) DO UPDATE
             SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset),
                 updated_at = now()",
        )
        .bind(&self.group_id)
        .bind(&batch.topic)
        .bind(&offset_partitions)
        .bind(&offset_values)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        for (partition, next) in offset_partitions.iter().zip(&offset_values) {
            self.seeds.set(*partition, *next);
        }
        Ok(())
    }

    async fn on_tick(&mut self) -> Result<()> {
        ensure_partitions(&self.pool).await
    }

    fn tick_interval(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn offset_seeds(&self) -> Option<OffsetSeeds> {
        Some(self.seeds.clone())
    }
}

/// Daily partitions from yesterday to three days ahead (UTC); see the migration's function.
pub async fn ensure_partitions(pool: &PgPool) -> Result<()> {
    let created: i32 = sqlx::query_scalar(
        "SELECT flightline_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1, 5)",
    )
    .fetch_one(pool)
    .await?;
    if created > 0 {
        tracing::info!(created, "telemetry_raw partitions created");
    }
    Ok(())
}

/// The offsets a group has stored for a topic: `(partition, next_offset)`.
pub async fn stored_offsets(pool: &PgPool, group_id: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
    Ok(sqlx::query_as(
        "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2",
    )
    .bind(group_id)
    .bind(topic)
    .fetch_all(pool)
    .await?)
}

/// A batch of records pivoted into one array per column, the shape `UNNEST` binds.
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
        let mut c = Columns::default();
        for message in messages {
            let r = &message.record;
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

pub async fn insert_rows(tx: &mut sqlx::PgConnection, c: &Columns) -> Result<()> {
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

fn timestamp(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::UNIX_EPOCH)
}

/// `extra` as JSON text, with its values' JSON types; `None` when the packet had none.
fn extra_json(extra: &BTreeMap<String, ExtraValue>) -> Option<String> {
    if extra.is_empty() {
        return None;
    }
    let object: serde_json::Map<String, serde_json::Value> = extra
        .iter()
        .map(|(key, value)| {
            let json = match value {
                ExtraValue::String(s) => serde_json::Value::from(s.as_str()),
                ExtraValue::Int(i) => serde_json::Value::from(*i),
                ExtraValue::Float(f) => serde_json::Value::from(*f),
                ExtraValue::Bool(b) => serde_json::Value::from(*b),
            };
            (key.clone(), json)
        })
        .collect();
    Some(serde_json::Value::Object(object).to_string())
}
