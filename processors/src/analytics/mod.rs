//! The `analytics` group: per-flight metrics, seconds after landing (CONTRACT.md §4).
//!
//! For each `FlightClosed` on `flights.v1` it first waits until the `store` group's stored offset
//! of the flight's partition has passed the flight's last offset — so every row of the flight is
//! in `telemetry_raw` — then upserts the flight, loads its rows in one query (one array per
//! column), computes [`metrics`] with polars off the async runtime, writes the metrics document
//! and the denormalised columns in one statement, and finally tags the rows with the flight id. `RecomputeRequested` recomputes one
//! flight. Everything is an idempotent upsert keyed by the flight id, so redelivery and replay
//! change nothing.

pub mod metrics;

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemas::{FlightClosed, FlightEvent};
use sqlx::{PgPool, Row};
use tracing::Instrument;
use uuid::Uuid;

use crate::offsets::OffsetKey;
use crate::runner::{Batch, Processor};
use crate::sessionizer::machine::{rule_from_json, rule_to_json};
use crate::{timestamp, Error, Result};
use metrics::{FlightRows, Metrics, ANALYTICS_VERSION};

pub const GROUP_ID: &str = "flightline-analytics";

/// How long one `handle` waits for the store watermark before handing back to the runner (whose
/// backoff retries it, and which still answers shutdown meanwhile).
const WATERMARK_PATIENCE: Duration = Duration::from_secs(5);

/// Where the time of one flight's analysis went, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub rows: usize,
    /// Tagging the flight's rows with its id (after the metrics are committed).
    pub tag_ms: f64,
    /// Loading the rows in one query.
    pub load_ms: f64,
    /// The polars computation.
    pub compute_ms: f64,
    /// Writing the metrics document and columns.
    pub write_ms: f64,
}

pub struct Analytics {
    pool: PgPool,
    /// The store group's offsets on the telemetry topic: the watermark.
    store_offsets: OffsetKey,
    /// Where a flight's rows are read from once PostgreSQL's retention dropped them.
    archive: Option<crate::archive::LazyArchive>,
}

impl Analytics {
    pub fn new(pool: PgPool, store_group: &str, telemetry_topic: &str) -> Self {
        Self { pool, store_offsets: OffsetKey::new(store_group, telemetry_topic), archive: None }
    }

    /// Reads a flight's rows from the archive when `telemetry_raw` no longer holds all of them.
    pub fn with_archive(mut self, archive: crate::archive::LazyArchive) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Waits until the store group has stored the message at `last_offset` of `partition`.
    async fn wait_for_store(&self, partition: i32, last_offset: i64) -> Result<()> {
        let deadline = tokio::time::Instant::now() + WATERMARK_PATIENCE;
        loop {
            let stored = self.store_offsets.next_offset(&self.pool, partition).await?;
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
        self.wait_for_store(flight.partition, flight.last_offset)
            .instrument(tracing::info_span!(
                "analytics.watermark_wait",
                partition = flight.partition,
                last_offset = flight.last_offset
            ))
            .await?;
        // A `FlightClosed` of a flight a replay retired (redelivered, or read again by a new
        // group) must not bring it back: skipped unless the flight is active again.
        let inserted = sqlx::query(
            "INSERT INTO flights (id, drone_id, start_ts, end_ts, packet_count, source_partition, last_offset, rule)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM drones WHERE id = $2)
               AND (EXISTS (SELECT 1 FROM flights WHERE id = $1)
                    OR NOT EXISTS (SELECT 1 FROM flights_retired WHERE id = $1 AND start_ts = $3 AND end_ts = $4))
             ON CONFLICT (id) DO UPDATE
             SET end_ts = EXCLUDED.end_ts, packet_count = EXCLUDED.packet_count,
                 source_partition = EXCLUDED.source_partition, last_offset = EXCLUDED.last_offset,
                 rule = EXCLUDED.rule, updated_at = now()",
        )
        .bind(flight.flight_id)
        .bind(flight.drone_id)
        .bind(timestamp(flight.start_ts_us))
        .bind(timestamp(flight.end_ts_us))
        .bind(flight.packet_count)
        .bind(flight.partition)
        .bind(flight.last_offset)
        .bind(rule_to_json(&flight.rule))
        .execute(&self.pool)
        .instrument(tracing::info_span!("analytics.upsert_flight"))
        .await?;
        if inserted.rows_affected() == 0 {
            tracing::warn!(flight_id = %flight.flight_id, drone_id = %flight.drone_id, "flight of an unknown drone, or retired by a replay, skipped");
            return Ok(());
        }
        self.analyse(flight.flight_id).await?;
        Ok(())
    }

    /// (Re)computes one flight's metrics from its stored rows, with the flight rule the flight
    /// was cut with (its throttle threshold defines `hover_throttle`); `None` for an unknown
    /// flight.
    pub async fn analyse(&self, flight_id: Uuid) -> Result<Option<Timings>> {
        let Some(row) = sqlx::query("SELECT drone_id, start_ts, end_ts, rule, packet_count FROM flights WHERE id = $1")
            .bind(flight_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            tracing::warn!(%flight_id, "recompute of an unknown flight skipped");
            return Ok(None);
        };
        let (drone_id, start, end): (Uuid, DateTime<Utc>, DateTime<Utc>) = (row.get(0), row.get(1), row.get(2));
        let stored_rule: serde_json::Value = row.get(3);
        let packet_count: i64 = row.get(4);
        let Some(rule) = rule_from_json(&stored_rule) else {
            // Never computed with another rule than the flight's: a failure the API shows.
            tracing::warn!(%flight_id, rule = %stored_rule, "flight rule unreadable; analytics failed");
            sqlx::query(
                "UPDATE flights SET analytics_status = 'failed', analytics_error = $2, updated_at = now() WHERE id = $1",
            )
            .bind(flight_id)
            .bind(format!("unreadable flight rule {stored_rule}"))
            .execute(&self.pool)
            .await?;
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let lap = |since: &mut std::time::Instant| {
            let ms = since.elapsed().as_secs_f64() * 1000.0;
            *since = std::time::Instant::now();
            ms
        };
        let mut since = started;
        let stored =
            load_rows(&self.pool, drone_id, start, end).instrument(tracing::info_span!("analytics.load")).await?;
        let rows = match &self.archive {
            Some(archive) => archive.complete(stored, drone_id, start, end, packet_count).await?,
            None => stored,
        };
        let load_ms = lap(&mut since);
        let row_count = rows.len();
        let bbox = bounding_box(&rows);
        let (start_us, end_us) = (start.timestamp_micros(), end.timestamp_micros());
        let computed =
            tokio::task::spawn_blocking(move || metrics::compute(&rows, start_us, end_us, rule.throttle_threshold))
                .instrument(tracing::info_span!("analytics.compute", rows = row_count))
                .await
                .map_err(|e| Error::Fatal(format!("analytics task panicked: {e}")))?;
        let compute_ms = lap(&mut since);
        match computed {
            Ok(metrics) => {
                self.write_metrics(flight_id, &metrics, bbox).instrument(tracing::info_span!("analytics.write")).await?
            }
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
        let write_ms = lap(&mut since);
        // Tagging rewrites every row of the flight, the slowest step by far; it comes after the
        // metrics are committed so they are not held up by it (the rows are found by drone and
        // time range, CONTRACT.md §3, whether tagged yet or not).
        // Only while the flight is still active with these boundaries: a replay may have retired
        // it meanwhile (and untagged its rows).
        sqlx::query(
            "UPDATE telemetry_raw SET flight_id = $1
             WHERE drone_id = $2 AND ts BETWEEN $3 AND $4 AND flight_id IS DISTINCT FROM $1
               AND EXISTS (SELECT 1 FROM flights WHERE id = $1 AND start_ts = $3 AND end_ts = $4)",
        )
        .bind(flight_id)
        .bind(drone_id)
        .bind(start)
        .bind(end)
        .execute(&self.pool)
        .instrument(tracing::info_span!("analytics.tag_rows"))
        .await?;
        let tag_ms = lap(&mut since);
        tracing::info!(%flight_id, rows = row_count, ms = started.elapsed().as_millis() as u64, "flight analysed");
        Ok(Some(Timings { rows: row_count, tag_ms, load_ms, compute_ms, write_ms }))
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
            // Continues the trace the event carries: the packet that closed the flight, or the
            // recompute request.
            let span = tracing::info_span!(
                "analytics.flight",
                flight_id = %message.record.flight_id(),
                event = match &message.record {
                    FlightEvent::Closed(_) => "closed",
                    FlightEvent::RecomputeRequested(_) => "recompute",
                },
            );
            telemetry::context::set_parent(&span, message.traceparent.as_deref());
            match &message.record {
                FlightEvent::Closed(flight) => self.on_closed(flight).instrument(span).await?,
                FlightEvent::RecomputeRequested(request) => {
                    self.analyse(request.flight_id).instrument(span).await?;
                }
            }
            if let Some(produced_ms) = message.timestamp_ms {
                // From the event's append to its metrics committed (retries included).
                let seconds = (chrono::Utc::now().timestamp_millis() - produced_ms).max(0) as f64 / 1000.0;
                ::metrics::histogram!("flightline_analytics_event_to_commit_seconds").record(seconds);
            }
        }
        Ok(())
    }
}

/// The flight's rows, ordered by ts, in one query returning one array per column: decoding 17
/// arrays is far cheaper than decoding hundreds of thousands of rows. The rows are not sorted by
/// the database (that doubled the query time on a 360 000-row flight); they usually come in ts
/// order anyway, and are put in order here when they do not.
pub async fn load_rows(pool: &PgPool, drone_id: Uuid, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<FlightRows> {
    type Column = Vec<Option<f64>>;
    let row = sqlx::query(
        "SELECT array_agg(ts), array_agg(throttle), array_agg(voltage), array_agg(current), array_agg(mah_drawn),
                array_agg(x), array_agg(y), array_agg(z), array_agg(lat), array_agg(lon), array_agg(alt_m),
                array_agg(vx), array_agg(vy), array_agg(vz), array_agg(roll), array_agg(pitch), array_agg(yaw)
         FROM telemetry_raw WHERE drone_id = $1 AND ts BETWEEN $2 AND $3",
    )
    .bind(drone_id)
    .bind(start)
    .bind(end)
    .fetch_one(pool)
    .await?;
    let ts: Option<Vec<DateTime<Utc>>> = row.try_get(0)?;
    let Some(ts) = ts else {
        return Ok(FlightRows::with_capacity(0));
    };
    let column = |i: usize| -> Result<Column> { Ok(row.try_get::<Option<Column>, _>(i)?.unwrap_or_default()) };
    let mut rows = FlightRows {
        ts_us: ts.iter().map(DateTime::timestamp_micros).collect(),
        throttle: row.try_get::<Vec<f64>, _>(1)?,
        voltage: column(2)?,
        current: column(3)?,
        mah_drawn: row.try_get::<Vec<Option<i64>>, _>(4)?,
        x: column(5)?,
        y: column(6)?,
        z: column(7)?,
        lat: column(8)?,
        lon: column(9)?,
        alt_m: column(10)?,
        vx: column(11)?,
        vy: column(12)?,
        vz: column(13)?,
        roll: column(14)?,
        pitch: column(15)?,
        yaw: column(16)?,
    };
    if !rows.ts_us.is_sorted() {
        let mut order: Vec<usize> = (0..rows.ts_us.len()).collect();
        order.sort_by_key(|&i| rows.ts_us[i]);
        fn permute<T: Clone>(values: &mut Vec<T>, order: &[usize]) {
            *values = order.iter().map(|&i| values[i].clone()).collect();
        }
        permute(&mut rows.ts_us, &order);
        permute(&mut rows.throttle, &order);
        permute(&mut rows.mah_drawn, &order);
        for column in [
            &mut rows.voltage,
            &mut rows.current,
            &mut rows.x,
            &mut rows.y,
            &mut rows.z,
            &mut rows.lat,
            &mut rows.lon,
            &mut rows.alt_m,
            &mut rows.vx,
            &mut rows.vy,
            &mut rows.vz,
            &mut rows.roll,
            &mut rows.pitch,
            &mut rows.yaw,
        ] {
            permute(column, &order);
        }
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
        return Some(
            serde_json::json!({"min_x": x.0, "max_x": x.1, "min_y": y.0, "max_y": y.1, "min_z": z.0, "max_z": z.1}),
        );
    }
    let (lat, lon, alt) = (range(&rows.lat)?, range(&rows.lon)?, range(&rows.alt_m)?);
    Some(
        serde_json::json!({"min_lat": lat.0, "max_lat": lat.1, "min_lon": lon.0, "max_lon": lon.1, "min_alt_m": alt.0, "max_alt_m": alt.1}),
    )
}
