//! The `analytics` group: per-flight metrics, seconds after landing (CONTRACT.md §4).
//!
//! For each `FlightClosed` on `flights.v1` it first waits until the `store` group's stored offset
//! of the flight's partition has passed the flight's last offset — so every row of the flight is
//! in `telemetry_raw` — then upserts the flight, tags its rows with the flight id, loads them in
//! one query, computes [`metrics`] with polars off the async runtime, and writes the metrics
//! document and the denormalised columns in one transaction. `RecomputeRequested` recomputes one
//! flight. Everything is an idempotent upsert keyed by the flight id, so redelivery and replay
//! change nothing.

pub mod metrics;

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemas::{FlightClosed, FlightEvent};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::runner::{Batch, Processor};
use crate::{Error, Result};
use metrics::{FlightRow, FlightRows, Metrics, ANALYTICS_VERSION};

pub const GROUP_ID: &str = "flightline-analytics";

/// How long one `handle` waits for the store watermark before handing back to the runner (whose
/// backoff retries it, and which still answers shutdown meanwhile).
const WATERMARK_PATIENCE: Duration = Duration::from_secs(5);

pub struct Analytics {
    pool: PgPool,
    /// Consumer group id of the store group whose offsets are the watermark.
    store_group: String,
    telemetry_topic: String,
}

impl Analytics {
    pub fn new(pool: PgPool, store_group: &str, telemetry_topic: &str) -> Self {
        Self { pool, store_group: store_group.to_owned(), telemetry_topic: telemetry_topic.to_owned() }
    }

    /// Waits until the store group has stored the message at `last_offset` of `partition`.
    async fn wait_for_store(&self, partition: i32, last_offset: i64) -> Result<()> {
        let deadline = tokio::time::Instant::now() + WATERMARK_PATIENCE;
        loop {
            let stored: Option<i64> = sqlx::query_scalar(
                "SELECT next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3",
            )
            .bind(&self.store_group)
            .bind(&self.telemetry_topic)
            .bind(partition)
            .fetch_optional(&self.pool)
            .await?;
            if stored.is_some_and(|next| next > last_offset) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::NotReady(format!(
                    "store watermark of partition {partition} is {stored:?}, the flight needs past {last_offset}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn on_closed(&self, flight: &FlightClosed) -> Result<()> {
        self.wait_for_store(flight.partition, flight.last_offset).await?;
        let inserted = sqlx::query(
            "INSERT INTO flights (id, drone_id, start_ts, end_ts, packet_count, source_partition, last_offset)
             SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM drones WHERE id = $2)
             ON CONFLICT (id) DO UPDATE
             SET end_ts = EXCLUDED.end_ts, packet_count = EXCLUDED.packet_count,
                 source_partition = EXCLUDED.source_partition, last_offset = EXCLUDED.last_offset,
                 updated_at = now()",
        )
        .bind(flight.flight_id)
        .bind(flight.drone_id)
        .bind(timestamp(flight.start_ts_us))
        .bind(timestamp(flight.end_ts_us))
        .bind(flight.packet_count)
        .bind(flight.partition)
        .bind(flight.last_offset)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            tracing::warn!(flight_id = %flight.flight_id, drone_id = %flight.drone_id, "flight of an unknown drone skipped");
            return Ok(());
        }
        self.analyse(flight.flight_id).await
    }

    /// (Re)computes one flight's metrics from its stored rows.
    async fn analyse(&self, flight_id: Uuid) -> Result<()> {
        let Some(row) = sqlx::query("SELECT drone_id, start_ts, end_ts FROM flights WHERE id = $1")
            .bind(flight_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            tracing::warn!(%flight_id, "recompute of an unknown flight skipped");
            return Ok(());
        };
        let (drone_id, start, end): (Uuid, DateTime<Utc>, DateTime<Utc>) = (row.get(0), row.get(1), row.get(2));
        let started = std::time::Instant::now();
        sqlx::query(
            "UPDATE telemetry_raw SET flight_id = $1
             WHERE drone_id = $2 AND ts BETWEEN $3 AND $4 AND flight_id IS DISTINCT FROM $1",
        )
        .bind(flight_id)
        .bind(drone_id)
        .bind(start)
        .bind(end)
        .execute(&self.pool)
        .await?;
        let rows = load_rows(&self.pool, drone_id, start, end).await?;
        let row_count = rows.len();
        let bbox = bounding_box(&rows);
        let (start_us, end_us) = (start.timestamp_micros(), end.timestamp_micros());
        let computed = tokio::task::spawn_blocking(move || metrics::compute(&rows, start_us, end_us, schemas::FlightRule::default().throttle_threshold))
            .await
            .map_err(|e| Error::Fatal(format!("analytics task panicked: {e}")))?;
        match computed {
            Ok(metrics) => self.write_metrics(flight_id, &metrics, bbox).await?,
            Err(error) => {
                tracing::warn!(%flight_id, %error, "analytics failed");
                sqlx::query(
                    "UPDATE flights SET analytics_status = 'failed', analytics_error = $2, analytics_version = $3, updated_at = now() WHERE id = $1",
                )
                .bind(flight_id)
                .bind(error.to_string())
                .bind(ANALYTICS_VERSION)
                .execute(&self.pool)
                .await?;
            }
        }
        tracing::info!(%flight_id, rows = row_count, ms = started.elapsed().as_millis() as u64, "flight analysed");
        Ok(())
    }

    async fn write_metrics(&self, flight_id: Uuid, metrics: &Metrics, bbox: Option<serde_json::Value>) -> Result<()> {
        let document = serde_json::to_value(metrics).map_err(|e| Error::Fatal(format!("metrics json: {e}")))?;
        sqlx::query(
            "UPDATE flights SET computed_metrics = $2, duration_s = $3, total_mah = $4, energy_wh = $5,
                 min_voltage = $6, max_current = $7, distance_m = $8, bbox = $9,
                 analytics_status = 'done', analytics_version = $10, analytics_error = NULL, updated_at = now()
             WHERE id = $1",
        )
        .bind(flight_id)
        .bind(document)
        .bind(metrics.duration_s)
        .bind(metrics.total_mah)
        .bind(metrics.energy_wh)
        .bind(metrics.min_voltage)
        .bind(metrics.max_current)
        .bind(metrics.distance_m)
        .bind(bbox)
        .bind(ANALYTICS_VERSION)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Processor for Analytics {
    type Record = FlightEvent;

    async fn handle(&mut self, batch: &Batch<FlightEvent>) -> Result<()> {
        // In log order: a recompute after a close sees the flight.
        for message in &batch.messages {
            match &message.record {
                FlightEvent::Closed(flight) => self.on_closed(flight).await?,
                FlightEvent::RecomputeRequested(request) => self.analyse(request.flight_id).await?,
            }
        }
        Ok(())
    }
}

/// The flight's rows, ordered by ts, in one query.
pub async fn load_rows(pool: &PgPool, drone_id: Uuid, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<FlightRows> {
    let records = sqlx::query(
        "SELECT ts, throttle, voltage, current, mah_drawn, x, y, z, lat, lon, alt_m, vx, vy, vz, roll, pitch, yaw
         FROM telemetry_raw WHERE drone_id = $1 AND ts BETWEEN $2 AND $3 ORDER BY ts",
    )
    .bind(drone_id)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await?;
    let mut rows = FlightRows::with_capacity(records.len());
    let triple = |r: &sqlx::postgres::PgRow, a: &str, b: &str, c: &str| -> Option<[f64; 3]> {
        Some([r.get::<Option<f64>, _>(a)?, r.get::<Option<f64>, _>(b)?, r.get::<Option<f64>, _>(c)?])
    };
    for r in &records {
        rows.push(FlightRow {
            ts_us: r.get::<DateTime<Utc>, _>("ts").timestamp_micros(),
            throttle: r.get("throttle"),
            voltage: r.get("voltage"),
            current: r.get("current"),
            mah_drawn: r.get("mah_drawn"),
            position: triple(r, "x", "y", "z"),
            gps: triple(r, "lat", "lon", "alt_m"),
            velocity: triple(r, "vx", "vy", "vz"),
            attitude: triple(r, "roll", "pitch", "yaw"),
        });
    }
    Ok(rows)
}

/// `{min_x, max_x, min_y, max_y, min_z, max_z}` of the local positions, else
/// `{min_lat, max_lat, min_lon, max_lon, min_alt_m, max_alt_m}` of the fixes; null without either.
fn bounding_box(rows: &FlightRows) -> Option<serde_json::Value> {
    fn range(values: &[Option<f64>]) -> Option<(f64, f64)> {
        values.iter().flatten().fold(None, |acc, v| match acc {
            None => Some((*v, *v)),
            Some((lo, hi)) => Some((lo.min(*v), hi.max(*v))),
        })
    }
    if let (Some(x), Some(y), Some(z)) = (range(&rows.x), range(&rows.y), range(&rows.z)) {
        return Some(serde_json::json!({"min_x": x.0, "max_x": x.1, "min_y": y.0, "max_y": y.1, "min_z": z.0, "max_z": z.1}));
    }
    let (lat, lon, alt) = (range(&rows.lat)?, range(&rows.lon)?, range(&rows.alt_m)?);
    Some(serde_json::json!({"min_lat": lat.0, "max_lat": lat.1, "min_lon": lon.0, "max_lon": lon.1, "min_alt_m": alt.0, "max_alt_m": alt.1}))
}

fn timestamp(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::UNIX_EPOCH)
}
