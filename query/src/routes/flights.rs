//! Flights: `GET /v1/drones/{id}/flights` (pages, newest first), `GET /v1/flights/{id}` (detail,
//! optionally with downsampled raw points), `GET /v1/flights/{id}/telemetry.csv` (every raw row,
//! streamed) and `POST /v1/flights/{id}/recompute` (an event on `flights.v1`).
//!
//! A flight's rows are its drone's rows with start_ts ≤ ts ≤ end_ts (CONTRACT.md §3); they are
//! selected by time range, not by `telemetry_raw.flight_id`, which the analytics group fills in
//! only later. Flights a replay retired live in `flights_retired`, which no route reads.
//!
//! With an archive configured ([`QueryState::archive`]), a flight whose range PostgreSQL holds
//! fewer rows of than its `packet_count` (retention dropped its day partitions) is read from the
//! archive when the archive holds more, and both routes answer from it the same bytes as from
//! PostgreSQL: the same rows, `extra` as the `jsonb` column gives it back, the same downsampling.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use schemas::{Attitude, ExtraJson, FlightEvent, Gps, PacketJson, RecomputeRequested, TelemetryRecord, Vec3};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::archive::{stored_extra, ArchiveError};
use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody, Result};
use crate::extract::{ApiBytes, ApiPath, ApiQuery};
use crate::routes::drones::owned_drone;
use crate::{format_time, QueryState};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
const DEFAULT_MAX_POINTS: i64 = 2000;
const MAX_POINTS_RANGE: std::ops::RangeInclusive<i64> = 2..=20_000;
const MAX_REASON_CHARS: usize = 500;
/// Size at which a CSV chunk is handed to the response body.
const CSV_CHUNK_BYTES: usize = 64 * 1024;
/// Chunks buffered between the database reader and a slow client (bounded memory).
const CSV_CHUNKS_IN_FLIGHT: usize = 4;
/// Longest a read of a flight from the archive may take before the request is answered 503.
const ARCHIVE_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// `Retry-After` of a 503 for an unreachable archive.
const ARCHIVE_RETRY_AFTER_S: u64 = 5;

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct FlightSummary {
    pub id: Uuid,
    pub drone_id: Uuid,
    /// RFC 3339 UTC, 6 fractional digits.
    #[schema(format = DateTime, example = "2026-05-01T12:00:00.020000Z")]
    #[sqlx(skip)]
    pub start_ts: String,
    #[schema(format = DateTime, example = "2026-05-01T12:04:10.500000Z")]
    #[sqlx(skip)]
    pub end_ts: String,
    /// Seconds (null until analytics ran).
    pub duration_s: Option<f64>,
    /// mAh.
    pub total_mah: Option<f64>,
    /// Wh.
    pub energy_wh: Option<f64>,
    /// V.
    pub min_voltage: Option<f64>,
    /// A.
    pub max_current: Option<f64>,
    /// m.
    pub distance_m: Option<f64>,
    pub packet_count: i64,
    /// `pending` | `done` | `failed`.
    #[schema(example = "done")]
    pub analytics_status: String,
    /// The version of the metric definitions the metrics were computed with (null until
    /// analytics ran).
    pub analytics_version: Option<i32>,
    /// The flight rule the flight was cut with (CONTRACT.md §3).
    #[sqlx(json)]
    pub rule: FlightRule,
}

/// The parameters of the flight rule (CONTRACT.md §3) a flight was cut with.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlightRule {
    /// T: throttle (0–1) at or above which the drone flies.
    #[schema(example = 0.05)]
    pub throttle_threshold: f64,
    /// W: seconds of throttle below T that close a flight.
    #[schema(example = 10.0)]
    pub idle_s: f64,
    /// G: seconds between packets (or of silence) that close a flight.
    #[schema(example = 10.0)]
    pub gap_s: f64,
    /// Shortest flight kept, seconds.
    #[schema(example = 1.0)]
    pub min_s: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlightDetail {
    #[serde(flatten)]
    pub summary: FlightSummary,
    /// The metrics of CONTRACT.md §4, or null until analytics ran.
    pub computed_metrics: Option<Value>,
    /// With `?include=telemetry`: the flight's raw points, downsampled to at most `max_points`
    /// (packet JSON of CONTRACT.md §1, `ts` normalised), oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Vec<Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecomputeAccepted {
    pub flight_id: Uuid,
    /// Always `requested`.
    #[schema(example = "requested")]
    pub status: &'static str,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecomputeBody {
    /// Free text recorded with the request (≤ 500 characters).
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1–500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// ≥ 0, default 0.
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DetailParams {
    /// `telemetry` adds the downsampled raw points.
    pub include: Option<String>,
    /// 2–20000, default 2000: the most points `telemetry` holds.
    #[param(minimum = 2, maximum = 20000)]
    pub max_points: Option<i64>,
}

/// A `flights` row with the timestamps still typed.
#[derive(sqlx::FromRow)]
struct FlightRow {
    #[sqlx(flatten)]
    summary: FlightSummary,
    start_time: DateTime<Utc>,
    end_time: DateTime<Utc>,
}

impl FlightRow {
    fn into_summary(self) -> FlightSummary {
        FlightSummary { start_ts: format_time(self.start_time), end_ts: format_time(self.end_time), ..self.summary }
    }
}

const SUMMARY_COLUMNS: &str = "f.id, f.drone_id, f.start_ts AS start_time, f.end_ts AS end_time, f.duration_s, \
     f.total_mah, f.energy_wh, f.min_voltage, f.max_current, f.distance_m, f.packet_count, \
     f.analytics_status, f.analytics_version, f.rule";

/// The flight if its drone belongs to `user_id`; `NotFound` otherwise.
async fn owned_flight(pool: &PgPool, user_id: Uuid, flight_id: Uuid) -> Result<(FlightRow, Option<Value>)> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        flight: FlightRow,
        computed_metrics: Option<Value>,
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS}, f.computed_metrics FROM flights f JOIN drones d ON d.id = f.drone_id \
         WHERE f.id = $1 AND d.owner_id = $2"
    ))
    .bind(flight_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    row.map(|row| (row.flight, row.computed_metrics)).ok_or(ApiError::NotFound("flight"))
}

/// A drone's flights, newest first (start_ts, then id, descending: stable pages).
#[utoipa::path(
    get, path = "/v1/drones/{id}/flights", operation_id = "list_flights", tag = "flights", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "drone id"), PageParams),
    responses(
        (status = 200, description = "one page of flights", body = [FlightSummary]),
        (status = 400, description = "limit outside 1–500 or negative offset", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "not the caller's drone", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<QueryState>,
    user: AuthUser,
    ApiPath(drone_id): ApiPath<Uuid>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<Json<Vec<FlightSummary>>> {
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    let offset = page.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("offset must not be negative"));
    }
    owned_drone(&state.pool, user.user_id, drone_id).await?;
    let rows: Vec<FlightRow> = sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM flights f WHERE f.drone_id = $1 \
         ORDER BY f.start_ts DESC, f.id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(drone_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(rows.into_iter().map(FlightRow::into_summary).collect()))
}

/// A flight with its metrics and, with `?include=telemetry`, its raw points downsampled by
/// min/max per time bucket: the flight's time range is cut into `max_points / 2` equal buckets
/// and each bucket contributes the rows holding its lowest and highest `current` (`throttle` for
/// rows without current), so current peaks and voltage-sag moments survive. Flights with at most
/// `max_points` rows are returned whole.
#[utoipa::path(
    get, path = "/v1/flights/{id}", operation_id = "get_flight", tag = "flights", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "flight id"), DetailParams),
    responses(
        (status = 200, description = "the flight", body = FlightDetail),
        (status = 400, description = "unknown include or max_points outside 2–20000", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "not a flight of the caller's drones", body = ErrorBody),
        (status = 503, description = "with include=telemetry: the flight's points are only in the archive, which is unreachable; retry after Retry-After seconds", body = ErrorBody),
    )
)]
pub async fn detail(
    State(state): State<QueryState>,
    user: AuthUser,
    ApiPath(flight_id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<DetailParams>,
) -> Result<Json<FlightDetail>> {
    let mut with_telemetry = false;
    for part in params.include.as_deref().unwrap_or("").split(',').filter(|part| !part.is_empty()) {
        match part {
            "telemetry" => with_telemetry = true,
            other => return Err(ApiError::invalid(format!("unknown include {other:?}; known: telemetry"))),
        }
    }
    let max_points = params.max_points.unwrap_or(DEFAULT_MAX_POINTS);
    if !MAX_POINTS_RANGE.contains(&max_points) {
        return Err(ApiError::invalid(format!(
            "max_points must be between {} and {}",
            MAX_POINTS_RANGE.start(),
            MAX_POINTS_RANGE.end()
        )));
    }
    let (flight, computed_metrics) = owned_flight(&state.pool, user.user_id, flight_id).await?;
    let telemetry = if with_telemetry { Some(downsampled_points(&state, &flight, max_points).await?) } else { None };
    Ok(Json(FlightDetail { summary: flight.into_summary(), computed_metrics, telemetry }))
}

const RAW_COLUMNS: &str = "ts, received_at, throttle, voltage, current, mah_drawn, rssi, x, y, z, lat, lon, alt_m, \
     vx, vy, vz, roll, pitch, yaw, extra";

#[derive(sqlx::FromRow)]
struct RawRow {
    ts: DateTime<Utc>,
    received_at: DateTime<Utc>,
    throttle: f64,
    voltage: Option<f64>,
    current: Option<f64>,
    mah_drawn: Option<i64>,
    rssi: Option<i32>,
    x: Option<f64>,
    y: Option<f64>,
    z: Option<f64>,
    lat: Option<f64>,
    lon: Option<f64>,
    alt_m: Option<f64>,
    vx: Option<f64>,
    vy: Option<f64>,
    vz: Option<f64>,
    roll: Option<f64>,
    pitch: Option<f64>,
    yaw: Option<f64>,
    extra: Option<Value>,
}

fn triple(a: Option<f64>, b: Option<f64>, c: Option<f64>) -> Option<[f64; 3]> {
    Some([a?, b?, c?])
}

impl RawRow {
    /// The row the store wrote of an archived record: the record's fields in the columns the
    /// store puts them in, and `extra` as the `jsonb` column gives it back.
    fn from_record(r: &TelemetryRecord) -> Result<Self, ArchiveError> {
        let time = |us: i64| {
            DateTime::from_timestamp_micros(us).ok_or_else(|| {
                ArchiveError(format!("archived record of {} has a time out of range: {us} µs", r.drone_id))
            })
        };
        Ok(Self {
            ts: time(r.ts_us)?,
            received_at: time(r.received_at_us)?,
            throttle: r.throttle,
            voltage: r.voltage,
            current: r.current,
            mah_drawn: r.mah_drawn,
            rssi: r.rssi,
            x: r.position.as_ref().map(|p| p.x),
            y: r.position.as_ref().map(|p| p.y),
            z: r.position.as_ref().map(|p| p.z),
            lat: r.gps.as_ref().map(|g| g.lat),
            lon: r.gps.as_ref().map(|g| g.lon),
            alt_m: r.gps.as_ref().map(|g| g.alt_m),
            vx: r.velocity.as_ref().map(|v| v.x),
            vy: r.velocity.as_ref().map(|v| v.y),
            vz: r.velocity.as_ref().map(|v| v.z),
            roll: r.attitude.as_ref().map(|a| a.roll),
            pitch: r.attitude.as_ref().map(|a| a.pitch),
            yaw: r.attitude.as_ref().map(|a| a.yaw),
            extra: stored_extra(&r.extra),
        })
    }

    /// What the downsampling ranks a row by (`COALESCE(current, throttle)` in SQL).
    fn signal(&self) -> f64 {
        self.current.unwrap_or(self.throttle)
    }

    /// The packet shape of CONTRACT.md §1 (absent fields omitted), `ts` as the contract formats it:
    /// [`PacketJson`], the live view's JSON without `drone_id` and `received_at`.
    fn to_point(&self) -> Value {
        let gps = match (self.lat, self.lon, self.alt_m) {
            (Some(lat), Some(lon), Some(alt_m)) => Some(Gps { lat, lon, alt_m }),
            _ => None,
        };
        let point = PacketJson {
            attitude: triple(self.roll, self.pitch, self.yaw).map(|[roll, pitch, yaw]| Attitude { roll, pitch, yaw }),
            current: self.current,
            drone_id: None,
            extra: self
                .extra
                .as_ref()
                .and_then(Value::as_object)
                .filter(|extra| !extra.is_empty())
                .map(ExtraJson::Stored),
            gps,
            mah_drawn: self.mah_drawn,
            position: triple(self.x, self.y, self.z).map(|[x, y, z]| Vec3 { x, y, z }),
            received_at_us: None,
            rssi: self.rssi,
            throttle: self.throttle,
            ts_us: self.ts.timestamp_micros(),
            velocity: triple(self.vx, self.vy, self.vz).map(|[x, y, z]| Vec3 { x, y, z }),
            voltage: self.voltage,
        };
        serde_json::to_value(point).expect("a packet view has string keys only")
    }

    fn write_csv(&self, out: &mut String) {
        fn opt<T: std::fmt::Display>(out: &mut String, value: Option<T>) {
            out.push(',');
            if let Some(value) = value {
                write!(out, "{value}").expect("writing to a String cannot fail");
            }
        }
        out.push_str(&format_time(self.ts));
        out.push(',');
        out.push_str(&format_time(self.received_at));
        out.push(',');
        write!(out, "{}", self.throttle).expect("writing to a String cannot fail");
        opt(out, self.voltage);
        opt(out, self.current);
        opt(out, self.mah_drawn);
        opt(out, self.rssi);
        for value in [
            self.x, self.y, self.z, self.lat, self.lon, self.alt_m, self.vx, self.vy, self.vz, self.roll, self.pitch,
            self.yaw,
        ] {
            opt(out, value);
        }
        out.push(',');
        if let Some(extra) = &self.extra {
            // JSON text in one quoted CSV field (RFC 4180: quotes doubled).
            out.push('"');
            out.push_str(&extra.to_string().replace('"', "\"\""));
            out.push('"');
        }
        out.push_str("\r\n");
    }
}

const CSV_HEADER: &str =
    "ts,received_at,throttle,voltage,current,mah_drawn,rssi,x,y,z,lat,lon,alt_m,vx,vy,vz,roll,pitch,yaw,extra\r\n";

/// The bucket of a row for the downsampling: the flight's range (`$2`–`$3`) cut into `$4` equal
/// buckets; `width_bucket` puts ts = end into bucket n + 1, LEAST folds it into the last bucket.
const BUCKET: &str = "LEAST(width_bucket(extract(epoch FROM ts)::float8, extract(epoch FROM $2::timestamptz)::float8, \
     extract(epoch FROM $3::timestamptz)::float8, $4::int), $4::int)";

/// Per bucket, the rank of a row by lowest and by highest signal (earliest first among equals).
const EXTREMES: &str = "row_number() OVER (PARTITION BY bucket ORDER BY signal ASC, ts) AS low, \
     row_number() OVER (PARTITION BY bucket ORDER BY signal DESC, ts) AS high";

/// Rows of the drone's range in `telemetry_raw`.
async fn stored_count(pool: &PgPool, drone_id: Uuid, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<i64> {
    let count = sqlx::query_scalar("SELECT count(*) FROM telemetry_raw WHERE drone_id = $1 AND ts >= $2 AND ts <= $3")
        .bind(drone_id)
        .bind(start)
        .bind(end)
        .fetch_one(pool)
        .await?;
    Ok(count)
}

/// The flight's rows from the archive, when one is configured, PostgreSQL holds fewer than the
/// flight's `packet_count` (`stored`) and the archive holds more; `None`: PostgreSQL's rows are
/// the flight's (the same rule as the analytics' `LazyArchive::complete`).
///
/// An archive that cannot be read is a 503, not an answer from PostgreSQL's rows: those are
/// known to be short of the flight, and a short CSV or point list with a 200 would be taken for
/// the whole flight. (An archive that answers with no more rows than PostgreSQL is not an error:
/// PostgreSQL's rows are then the best there is, as for the analytics.)
async fn archived_rows(state: &QueryState, flight: &FlightRow, stored: i64) -> Result<Option<Vec<RawRow>>> {
    let Some(archive) = &state.archive else {
        return Ok(None);
    };
    if stored >= flight.summary.packet_count {
        return Ok(None);
    }
    let (drone_id, flight_id) = (flight.summary.drone_id, flight.summary.id);
    let read = archive.read(drone_id, flight.start_time.timestamp_micros(), flight.end_time.timestamp_micros());
    let records = match tokio::time::timeout(ARCHIVE_READ_TIMEOUT, read).await {
        Ok(Ok(records)) => records,
        Ok(Err(error)) => {
            tracing::warn!(%error, %flight_id, postgres = stored, "flight's raw points not in PostgreSQL, archive unreadable");
            return Err(ApiError::ArchiveUnavailable { retry_after_s: ARCHIVE_RETRY_AFTER_S });
        }
        Err(_elapsed) => {
            tracing::warn!(%flight_id, postgres = stored, timeout = ?ARCHIVE_READ_TIMEOUT, "archive read timed out");
            return Err(ApiError::ArchiveUnavailable { retry_after_s: ARCHIVE_RETRY_AFTER_S });
        }
    };
    if records.len() as i64 <= stored {
        return Ok(None);
    }
    tracing::info!(%flight_id, postgres = stored, archive = records.len(), "flight's raw points read from the archive");
    let rows = records.iter().map(RawRow::from_record).collect::<Result<Vec<_>, _>>().map_err(ApiError::internal)?;
    Ok(Some(rows))
}

async fn downsampled_points(state: &QueryState, flight: &FlightRow, max_points: i64) -> Result<Vec<Value>> {
    let pool = &state.pool;
    let (drone_id, start, end) = (flight.summary.drone_id, flight.start_time, flight.end_time);
    let count = stored_count(pool, drone_id, start, end).await?;
    if let Some(rows) = archived_rows(state, flight, count).await? {
        return downsampled_archive_points(pool, rows, (start, end), max_points).await;
    }
    let rows: Vec<RawRow> = if count <= max_points || end <= start {
        sqlx::query_as(&format!(
            "SELECT {RAW_COLUMNS} FROM telemetry_raw WHERE drone_id = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts LIMIT $4"
        ))
        .bind(drone_id)
        .bind(start)
        .bind(end)
        .bind(max_points)
        .fetch_all(pool)
        .await?
    } else {
        sqlx::query_as(&format!(
            "WITH r AS ( \
                 SELECT {RAW_COLUMNS}, COALESCE(current, throttle) AS signal, {BUCKET} AS bucket \
                 FROM telemetry_raw WHERE drone_id = $1 AND ts >= $2 AND ts <= $3), \
             ranked AS (SELECT r.*, {EXTREMES} FROM r) \
             SELECT {RAW_COLUMNS} FROM ranked WHERE low = 1 OR high = 1 ORDER BY ts"
        ))
        .bind(drone_id)
        .bind(start)
        .bind(end)
        .bind((max_points / 2) as i32)
        .fetch_all(pool)
        .await?
    };
    Ok(rows.iter().map(RawRow::to_point).collect())
}

/// [`downsampled_points`] of archived rows (in `ts` order). The buckets and ranks are computed by
/// PostgreSQL over the rows' `ts` and signal, with the same expressions as for `telemetry_raw`:
/// `width_bucket`'s floating-point arithmetic differs between PostgreSQL versions, so a copy of
/// it here could pick other rows at bucket edges than PostgreSQL did before the rows were dropped.
async fn downsampled_archive_points(
    pool: &PgPool,
    rows: Vec<RawRow>,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    max_points: i64,
) -> Result<Vec<Value>> {
    if rows.len() as i64 <= max_points || end <= start {
        return Ok(rows.iter().take(max_points as usize).map(RawRow::to_point).collect());
    }
    let ts: Vec<DateTime<Utc>> = rows.iter().map(|row| row.ts).collect();
    let signal: Vec<f64> = rows.iter().map(RawRow::signal).collect();
    let picked: Vec<i64> = sqlx::query_scalar(&format!(
        "WITH r AS ( \
             SELECT i, ts, signal, {BUCKET} AS bucket \
             FROM unnest($1::timestamptz[], $5::float8[]) WITH ORDINALITY AS a(ts, signal, i)), \
         ranked AS (SELECT r.*, {EXTREMES} FROM r) \
         SELECT i FROM ranked WHERE low = 1 OR high = 1 ORDER BY ts"
    ))
    .bind(ts)
    .bind(start)
    .bind(end)
    .bind((max_points / 2) as i32)
    .bind(signal)
    .fetch_all(pool)
    .await?;
    // WITH ORDINALITY counts from 1.
    Ok(picked.into_iter().filter_map(|i| rows.get((i - 1) as usize)).map(RawRow::to_point).collect())
}

/// Every raw row of the flight as CSV (header first, ordered by ts, timestamps RFC 3339 with µs,
/// `extra` as JSON text), streamed from the database: a slow client holds at most a few chunks.
/// A flight read from the archive is read whole first (the decision comes before the 200, and a
/// flight is bounded by its battery), then written out the same way.
#[utoipa::path(
    get, path = "/v1/flights/{id}/telemetry.csv", operation_id = "export_flight_csv", tag = "flights", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "flight id")),
    responses(
        (status = 200, description = "text/csv: ts,received_at,throttle,voltage,current,mah_drawn,rssi,x,y,z,lat,lon,alt_m,vx,vy,vz,roll,pitch,yaw,extra", content_type = "text/csv", body = String),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "not a flight of the caller's drones", body = ErrorBody),
        (status = 503, description = "the flight's rows are only in the archive, which is unreachable; retry after Retry-After seconds", body = ErrorBody),
    )
)]
pub async fn csv(
    State(state): State<QueryState>,
    user: AuthUser,
    ApiPath(flight_id): ApiPath<Uuid>,
) -> Result<Response> {
    let (flight, _) = owned_flight(&state.pool, user.user_id, flight_id).await?;
    let (drone_id, start, end) = (flight.summary.drone_id, flight.start_time, flight.end_time);
    // Counted only when there is an archive to fall back to; decided before the 200 is sent.
    let archived = match &state.archive {
        Some(_) => {
            let stored = stored_count(&state.pool, drone_id, start, end).await?;
            archived_rows(&state, &flight, stored).await?
        }
        None => None,
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, sqlx::Error>>(CSV_CHUNKS_IN_FLIGHT);
    let mut body = CsvBody::new(sender);
    match archived {
        Some(rows) => {
            tokio::spawn(async move {
                for row in &rows {
                    if !body.row(row).await {
                        return; // client gone
                    }
                }
                body.finish().await;
            });
        }
        None => {
            let pool = state.pool.clone();
            tokio::spawn(async move {
                let sql = format!(
                    "SELECT {RAW_COLUMNS} FROM telemetry_raw WHERE drone_id = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts"
                );
                let mut rows = sqlx::query_as::<_, RawRow>(&sql).bind(drone_id).bind(start).bind(end).fetch(&pool);
                while let Some(row) = rows.next().await {
                    match row {
                        Ok(row) => {
                            if !body.row(&row).await {
                                return; // client gone
                            }
                        }
                        Err(error) => {
                            tracing::error!(%error, %flight_id, "csv export failed mid-stream");
                            body.fail(error).await;
                            return;
                        }
                    }
                }
                body.finish().await;
            });
        }
    }
    let body =
        futures::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) },
        );
    let headers = [
        (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"flight-{flight_id}.csv\"")),
    ];
    Ok((headers, Body::from_stream(body)).into_response())
}

/// The CSV body being written: rows into chunks of [`CSV_CHUNK_BYTES`], handed to the response.
struct CsvBody {
    chunk: String,
    sender: tokio::sync::mpsc::Sender<Result<Bytes, sqlx::Error>>,
}

impl CsvBody {
    fn new(sender: tokio::sync::mpsc::Sender<Result<Bytes, sqlx::Error>>) -> Self {
        let mut chunk = String::with_capacity(CSV_CHUNK_BYTES + 1024);
        chunk.push_str(CSV_HEADER);
        Self { chunk, sender }
    }

    /// Adds a row; false once the client is gone.
    async fn row(&mut self, row: &RawRow) -> bool {
        row.write_csv(&mut self.chunk);
        if self.chunk.len() < CSV_CHUNK_BYTES {
            return true;
        }
        let full = std::mem::replace(&mut self.chunk, String::with_capacity(CSV_CHUNK_BYTES + 1024));
        self.sender.send(Ok(Bytes::from(full))).await.is_ok()
    }

    /// The status is already sent: an error item aborts the body, so the client sees a truncated
    /// transfer rather than a silently short file.
    async fn fail(self, error: sqlx::Error) {
        let _ = self.sender.send(Err(error)).await;
    }

    async fn finish(self) {
        let _ = self.sender.send(Ok(Bytes::from(self.chunk))).await;
    }
}

/// Asks the analytics group to recompute the flight: appends a `RecomputeRequested` event (key =
/// drone id) to `flights.v1` and answers once Kafka acknowledged it.
#[utoipa::path(
    post, path = "/v1/flights/{id}/recompute", operation_id = "recompute_flight", tag = "flights", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "flight id")),
    request_body(content = Option<RecomputeBody>, description = "optional; may be empty"),
    responses(
        (status = 202, description = "the request is on the log", body = RecomputeAccepted),
        (status = 400, description = "malformed body, or a body over 2 MiB", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "not a flight of the caller's drones", body = ErrorBody),
        (status = 503, description = "Kafka did not acknowledge; retry after Retry-After seconds", body = ErrorBody),
    )
)]
pub async fn recompute(
    State(state): State<QueryState>,
    user: AuthUser,
    ApiPath(flight_id): ApiPath<Uuid>,
    headers: axum::http::HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<(StatusCode, Json<RecomputeAccepted>)> {
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let parsed: RecomputeBody =
            serde_json::from_slice(&body).map_err(|error| ApiError::invalid(format!("invalid body: {error}")))?;
        parsed.reason
    };
    if reason.as_ref().is_some_and(|reason| reason.chars().count() > MAX_REASON_CHARS) {
        return Err(ApiError::invalid(format!("reason must have at most {MAX_REASON_CHARS} characters")));
    }
    let (flight, _) = owned_flight(&state.pool, user.user_id, flight_id).await?;
    let drone_id = flight.summary.drone_id;
    let requested_at_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_micros() as i64);
    let event = FlightEvent::RecomputeRequested(RecomputeRequested { flight_id, drone_id, requested_at_us, reason });
    let payload = schemas::encode_flight_event(&event);
    let key = drone_id.to_string();
    // The recompute continues the request's trace: analytics picks the context up from the event.
    let span = tracing::info_span!("query.recompute", otel.kind = "producer", %flight_id);
    telemetry::context::set_parent(
        &span,
        headers.get(telemetry::context::HEADER).and_then(|value| value.to_str().ok()),
    );
    let traceparent = telemetry::context::traceparent_of(&span);
    let mut record = FutureRecord::to(&state.flights_topic).key(&key).payload(&payload);
    if let Some(value) = &traceparent {
        record = record.headers(
            rdkafka::message::OwnedHeaders::new_with_capacity(1)
                .insert(rdkafka::message::Header { key: telemetry::context::HEADER, value: Some(value.as_str()) }),
        );
    }
    let unavailable = ApiError::Unavailable { what: "the recompute request", retry_after_s: 5 };
    let delivery = tracing::Instrument::instrument(
        tokio::time::timeout(
            state.kafka_ack_timeout + Duration::from_secs(1),
            state.producer.send(record, Timeout::After(state.kafka_ack_timeout)),
        ),
        span,
    )
    .await;
    match delivery {
        Ok(Ok(_)) => Ok((StatusCode::ACCEPTED, Json(RecomputeAccepted { flight_id, status: "requested" }))),
        Ok(Err((error, _))) => {
            tracing::warn!(%error, %flight_id, "recompute request not acknowledged");
            Err(unavailable)
        }
        Err(_elapsed) => {
            tracing::warn!(%flight_id, "recompute request not acknowledged in time");
            Err(unavailable)
        }
    }
}
