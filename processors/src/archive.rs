//! The `archive` group: every telemetry packet into a CQL time-series table (ScyllaDB in
//! production, Apache Cassandra in the local stack), for fleets whose raw history outgrows one
//! PostgreSQL.
//!
//! The table is partitioned by (drone, UTC day) and clustered by `ts`, so a partition holds at
//! most one drone-day (8.6 M rows at 100 Hz) and a flight is a slice of one or two partitions. A
//! write is an `INSERT` by primary key, which CQL applies as an upsert: a redelivered or replayed
//! packet rewrites the same row with the same values, so the effect is exactly once without any
//! offset bookkeeping of our own. A batch is acknowledged to the runner (which then stores its
//! offsets) only after every write of it was acknowledged at the configured consistency level.
//!
//! Writes go as unlogged batches of at most [`ROWS_PER_WRITE`] rows ([`BYTES_PER_WRITE`]) of one
//! partition (one mutation for the replica, no batch log), [`ArchiveConfig::concurrency`] of them
//! in flight.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use schemas::{Attitude, ExtraValue, Gps, TelemetryRecord, Vec3};
pub use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::batch::{Batch as CqlBatch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::CqlDate;
use scylla::{DeserializeRow, SerializeRow};
use uuid::Uuid;

use crate::runner::{Batch, Processor};
use crate::{Error, Result};

pub const GROUP_ID: &str = "flightline-archive";

/// The archive table's name inside the configured keyspace.
pub const TABLE: &str = "telemetry_raw";

/// Most rows of one partition sent as one unlogged batch.
pub const ROWS_PER_WRITE: usize = 100;

/// Most bytes of row data (estimated) in one batch: below Cassandra's refusal threshold
/// (`batch_size_fail_threshold`, 50 KiB) with room to spare; ScyllaDB's is 1 MiB.
pub const BYTES_PER_WRITE: usize = 24 * 1024;

const DAY_US: i64 = 86_400_000_000;

/// Time slices of one day partition a read queries at once.
pub const READ_SLICES: usize = 4;

/// Where the archive is and how it is written.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// Level every write must reach before its batch counts as written.
    pub consistency: Consistency,
    /// Writes (batches of one partition) in flight at once.
    pub concurrency: usize,
    /// Keyspace replication, used when `migrate` creates it.
    pub replication: Replication,
}

/// How `migrate` creates the keyspace (an existing keyspace is left as it is: changing the
/// replication of a live keyspace needs a repair, an operator's decision).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// `SimpleStrategy` (one datacenter, development) or `NetworkTopologyStrategy`.
    pub strategy: String,
    /// Replicas per datacenter.
    pub factor: u32,
}

impl ArchiveConfig {
    /// `archive_nodes` as written in the configuration: comma-separated `host[:port]`.
    pub fn parse_nodes(nodes: &str) -> Vec<String> {
        nodes
            .split(',')
            .map(str::trim)
            .filter(|node| !node.is_empty())
            .map(|node| if node.contains(':') { node.to_owned() } else { format!("{node}:9042") })
            .collect()
    }

    /// A consistency level by its CQL name (`LOCAL_QUORUM`, `QUORUM`, `ONE`, …). `ANY` is refused:
    /// it acknowledges a write no replica has stored.
    pub fn parse_consistency(name: &str) -> Result<Consistency> {
        let level = match name.trim().to_ascii_uppercase().as_str() {
            "ONE" => Consistency::One,
            "TWO" => Consistency::Two,
            "THREE" => Consistency::Three,
            "QUORUM" => Consistency::Quorum,
            "ALL" => Consistency::All,
            "LOCAL_QUORUM" => Consistency::LocalQuorum,
            "EACH_QUORUM" => Consistency::EachQuorum,
            "LOCAL_ONE" => Consistency::LocalOne,
            other => {
                return Err(Error::Fatal(format!(
                    "archive consistency {other:?} is not a write consistency level \
                     (ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE)"
                )))
            }
        };
        Ok(level)
    }

    /// Keyspace names are CQL identifiers; checked because they are spliced into statements.
    fn checked_keyspace(&self) -> Result<&str> {
        let name = self.keyspace.as_str();
        let valid = !name.is_empty()
            && name.len() <= 48
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if valid {
            Ok(name)
        } else {
            Err(Error::Fatal(format!(
                "archive_keyspace {name:?} must be a letter then up to 47 letters, digits or underscores"
            )))
        }
    }
}

fn archive_error(context: &str, error: impl std::fmt::Display) -> Error {
    Error::Archive(format!("{context}: {error}"))
}

/// Opens a session to the archive cluster.
pub async fn connect(config: &ArchiveConfig) -> Result<Session> {
    if config.nodes.is_empty() {
        return Err(Error::Fatal("no archive configured (archive_nodes is empty)".into()));
    }
    SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(Duration::from_secs(5))
        .build()
        .await
        .map_err(|error| archive_error(&format!("cannot connect to the archive at {}", config.nodes.join(",")), error))
}

/// Creates the keyspace (if missing) and the table (if missing): part of `flightline migrate`
/// when an archive is configured.
pub async fn migrate(session: &Session, config: &ArchiveConfig) -> Result<()> {
    let keyspace = config.checked_keyspace()?;
    let strategy = match config.replication.strategy.as_str() {
        "SimpleStrategy" | "NetworkTopologyStrategy" => config.replication.strategy.as_str(),
        other => {
            return Err(Error::Fatal(format!(
                "archive replication strategy {other:?} must be SimpleStrategy or NetworkTopologyStrategy"
            )))
        }
    };
    if config.replication.factor == 0 {
        return Err(Error::Fatal("archive replication factor must be at least 1".into()));
    }
    let factor = config.replication.factor;
    let statements = [
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
             {{'class': '{strategy}', 'replication_factor': {factor}}}"
        ),
        // ts and received_at are µs since the epoch, as in the log (CQL's timestamp is ms).
        // Time-window compaction: rows arrive in time order and are never updated except by
        // an identical rewrite, so day windows compact once and then stay.
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.{TABLE} (
                 drone_id uuid, day date, ts_us bigint, received_at_us bigint,
                 throttle double, voltage double, current double, mah_drawn bigint, rssi int,
                 x double, y double, z double, lat double, lon double, alt_m double,
                 vx double, vy double, vz double, roll double, pitch double, yaw double,
                 extra text,
                 PRIMARY KEY ((drone_id, day), ts_us)
             ) WITH CLUSTERING ORDER BY (ts_us ASC)
               AND compaction = {{'class': 'TimeWindowCompactionStrategy',
                                  'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}}"
        ),
    ];
    for statement in statements {
        session.query_unpaged(statement, &[]).await.map_err(|error| archive_error("archive migration", error))?;
    }
    session.await_schema_agreement().await.map_err(|error| archive_error("archive schema agreement", error))?;
    Ok(())
}

/// The UTC day of a µs timestamp, as CQL `date`.
pub fn day_of(ts_us: i64) -> CqlDate {
    let days = ts_us.div_euclid(DAY_US);
    CqlDate(((1i64 << 31) + days) as u32)
}

/// One archive row: a `TelemetryRecord`, flattened.
#[derive(Debug, Clone, PartialEq, SerializeRow, DeserializeRow)]
pub struct ArchiveRow {
    pub drone_id: Uuid,
    pub day: CqlDate,
    pub ts_us: i64,
    pub received_at_us: i64,
    pub throttle: f64,
    pub voltage: Option<f64>,
    pub current: Option<f64>,
    pub mah_drawn: Option<i64>,
    pub rssi: Option<i32>,
    pub x: Option<f64>,
    pub y: Option<f64>,
    pub z: Option<f64>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub alt_m: Option<f64>,
    pub vx: Option<f64>,
    pub vy: Option<f64>,
    pub vz: Option<f64>,
    pub roll: Option<f64>,
    pub pitch: Option<f64>,
    pub yaw: Option<f64>,
    /// The same JSON object `telemetry_raw.extra` holds; `None` when the packet had none.
    pub extra: Option<String>,
}

/// The columns in [`ArchiveRow`]'s order.
const COLUMNS: &str = "drone_id, day, ts_us, received_at_us, throttle, voltage, current, mah_drawn, rssi, \
    x, y, z, lat, lon, alt_m, vx, vy, vz, roll, pitch, yaw, extra";

impl ArchiveRow {
    pub fn from_record(r: &TelemetryRecord) -> Self {
        Self {
            drone_id: r.drone_id,
            day: day_of(r.ts_us),
            ts_us: r.ts_us,
            received_at_us: r.received_at_us,
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
            extra: (!r.extra.is_empty()).then(|| serde_json::to_string(&r.extra).expect("extra values serialise")),
        }
    }

    /// Bytes of its values as the node counts them for the batch size thresholds: 8 per number
    /// (and the uuid's 16), plus the `extra` text.
    fn estimated_size(&self) -> usize {
        16 + 4 + 19 * 8 + self.extra.as_ref().map_or(0, String::len)
    }

    /// The record back.
    pub fn into_record(self) -> Result<TelemetryRecord> {
        // A group of fields is present when all of its columns are.
        let all = |a: Option<f64>, b: Option<f64>, c: Option<f64>| Some((a?, b?, c?));
        let vec3 = |x, y, z| all(x, y, z).map(|(x, y, z)| Vec3 { x, y, z });
        let extra = match &self.extra {
            Some(json) => extra_values(json)?,
            None => BTreeMap::new(),
        };
        Ok(TelemetryRecord {
            drone_id: self.drone_id,
            ts_us: self.ts_us,
            received_at_us: self.received_at_us,
            position: vec3(self.x, self.y, self.z),
            gps: all(self.lat, self.lon, self.alt_m).map(|(lat, lon, alt_m)| Gps { lat, lon, alt_m }),
            velocity: vec3(self.vx, self.vy, self.vz),
            attitude: all(self.roll, self.pitch, self.yaw).map(|(roll, pitch, yaw)| Attitude { roll, pitch, yaw }),
            throttle: self.throttle,
            voltage: self.voltage,
            current: self.current,
            mah_drawn: self.mah_drawn,
            rssi: self.rssi,
            extra,
        })
    }
}

/// The columns analytics reads: a [`FlightRow`](crate::analytics::metrics::FlightRow), no more
/// (no `extra` to carry and parse, no `received_at`).
#[derive(Debug, Clone, DeserializeRow)]
struct FlightArchiveRow {
    ts_us: i64,
    throttle: f64,
    voltage: Option<f64>,
    current: Option<f64>,
    mah_drawn: Option<i64>,
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
}

/// The columns in [`FlightArchiveRow`]'s order.
const FLIGHT_COLUMNS: &str =
    "ts_us, throttle, voltage, current, mah_drawn, x, y, z, lat, lon, alt_m, vx, vy, vz, roll, pitch, yaw";

impl FlightArchiveRow {
    /// As [`flight_rows`] makes it of the whole record: a group is present when all its columns are.
    fn into_flight_row(self) -> crate::analytics::metrics::FlightRow {
        let all = |a: Option<f64>, b: Option<f64>, c: Option<f64>| Some([a?, b?, c?]);
        crate::analytics::metrics::FlightRow {
            ts_us: self.ts_us,
            throttle: self.throttle,
            voltage: self.voltage,
            current: self.current,
            mah_drawn: self.mah_drawn,
            position: all(self.x, self.y, self.z),
            gps: all(self.lat, self.lon, self.alt_m),
            velocity: all(self.vx, self.vy, self.vz),
            attitude: all(self.roll, self.pitch, self.yaw),
        }
    }
}

/// The `extra` column back into values: the JSON types [`ExtraValue`] serialises to (an integer
/// that fits an `i64` is `Int`, every other number `Float`).
fn extra_values(json: &str) -> Result<BTreeMap<String, ExtraValue>> {
    let refused = |why: &str| Error::Fatal(format!("archive row extra {why}"));
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|error| refused(&format!("is not a JSON object: {error}")))?;
    let mut extra = BTreeMap::new();
    for (key, value) in object {
        let value = match value {
            serde_json::Value::String(text) => ExtraValue::String(text),
            serde_json::Value::Bool(flag) => ExtraValue::Bool(flag),
            serde_json::Value::Number(number) => match number.as_i64() {
                Some(int) => ExtraValue::Int(int),
                None => ExtraValue::Float(number.as_f64().ok_or_else(|| refused("holds a non-finite number"))?),
            },
            _ => return Err(refused("holds a value that is not a string, number or boolean")),
        };
        extra.insert(key, value);
    }
    Ok(extra)
}

/// The write and read side of the archive table.
#[derive(Clone)]
pub struct ArchiveTable {
    session: Arc<Session>,
    insert: PreparedStatement,
    select: PreparedStatement,
    select_flight: PreparedStatement,
    concurrency: usize,
}

impl ArchiveTable {
    /// Prepares the statements. The table must exist: `flightline migrate` creates it.
    pub async fn new(session: Arc<Session>, config: &ArchiveConfig) -> Result<Self> {
        let keyspace = config.checked_keyspace()?;
        let prepare = |cql: String| {
            let session = session.clone();
            async move {
                session.prepare(cql).await.map_err(|error| {
                    archive_error(
                        &format!("preparing archive statements (has `flightline migrate` created {keyspace}.{TABLE}?)"),
                        error,
                    )
                })
            }
        };
        let placeholders = vec!["?"; COLUMNS.split(',').count()].join(", ");
        let mut insert = prepare(format!("INSERT INTO {keyspace}.{TABLE} ({COLUMNS}) VALUES ({placeholders})")).await?;
        insert.set_consistency(config.consistency);
        insert.set_is_idempotent(true);
        // One drone-day's time range, paged, of the given columns.
        let range_select = |columns: &str| {
            let statement = prepare(format!(
                "SELECT {columns} FROM {keyspace}.{TABLE} WHERE drone_id = ? AND day = ? AND ts_us >= ? AND ts_us <= ?"
            ));
            async move {
                let mut statement = statement.await?;
                statement.set_consistency(config.consistency);
                statement.set_is_idempotent(true);
                statement.set_page_size(10_000);
                Ok::<_, Error>(statement)
            }
        };
        let select = range_select(COLUMNS).await?;
        let select_flight = range_select(FLIGHT_COLUMNS).await?;
        Ok(Self { session, insert, select, select_flight, concurrency: config.concurrency.max(1) })
    }

    /// Writes the records; returns once every row is acknowledged at the configured level.
    pub async fn write(&self, records: impl Iterator<Item = &TelemetryRecord>) -> Result<usize> {
        let mut partitions: BTreeMap<(Uuid, u32), Vec<ArchiveRow>> = BTreeMap::new();
        for record in records {
            let row = ArchiveRow::from_record(record);
            partitions.entry((row.drone_id, row.day.0)).or_default().push(row);
        }
        let mut chunks = Vec::new();
        for rows in partitions.into_values() {
            let mut chunk = Vec::new();
            let mut bytes = 0;
            for row in rows {
                let size = row.estimated_size();
                if !chunk.is_empty() && (chunk.len() == ROWS_PER_WRITE || bytes + size > BYTES_PER_WRITE) {
                    chunks.push(std::mem::take(&mut chunk));
                    bytes = 0;
                }
                bytes += size;
                chunk.push(row);
            }
            chunks.push(chunk);
        }
        let written = chunks.iter().map(Vec::len).sum();
        futures::stream::iter(chunks.into_iter().map(|rows| self.write_partition_rows(rows)))
            .buffer_unordered(self.concurrency)
            .try_collect::<()>()
            .await?;
        Ok(written)
    }

    async fn write_partition_rows(&self, rows: Vec<ArchiveRow>) -> Result<()> {
        if let [row] = rows.as_slice() {
            self.session
                .execute_unpaged(&self.insert, row)
                .await
                .map_err(|error| archive_error("archive write", error))?;
            return Ok(());
        }
        let mut batch = CqlBatch::new(BatchType::Unlogged);
        for _ in &rows {
            batch.append_statement(self.insert.clone());
        }
        batch.set_consistency(self.insert.get_consistency().unwrap_or(Consistency::LocalQuorum));
        batch.set_is_idempotent(true);
        self.session.batch(&batch, &rows).await.map_err(|error| archive_error("archive write", error))?;
        Ok(())
    }

    /// A drone's records with `from_us <= ts <= to_us`, in `ts` order. The range is read as
    /// [`READ_SLICES`] slices of time per day partition, in parallel (pages of one query come one
    /// after another), and put back together in order.
    pub async fn read(&self, drone_id: Uuid, from_us: i64, to_us: i64) -> Result<Vec<TelemetryRecord>> {
        let rows: Vec<ArchiveRow> = self.read_rows(&self.select, drone_id, from_us, to_us).await?;
        rows.into_iter().map(ArchiveRow::into_record).collect()
    }

    /// What [`flight_rows`] makes of [`ArchiveTable::read`], reading only the columns analytics
    /// uses.
    pub async fn read_flight_rows(
        &self,
        drone_id: Uuid,
        from_us: i64,
        to_us: i64,
    ) -> Result<crate::analytics::metrics::FlightRows> {
        let rows: Vec<FlightArchiveRow> = self.read_rows(&self.select_flight, drone_id, from_us, to_us).await?;
        let mut flight = crate::analytics::metrics::FlightRows::with_capacity(rows.len());
        for row in rows {
            flight.push(row.into_flight_row());
        }
        Ok(flight)
    }

    async fn read_rows<R>(
        &self,
        statement: &PreparedStatement,
        drone_id: Uuid,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<R>>
    where
        R: for<'frame, 'metadata> scylla::deserialize::row::DeserializeRow<'frame, 'metadata> + Send,
    {
        if from_us > to_us {
            return Ok(Vec::new());
        }
        let mut slices = Vec::new();
        for day in day_of(from_us).0..=day_of(to_us).0 {
            let day_start = (i64::from(day) - (1i64 << 31)) * DAY_US;
            let (lo, hi) = (from_us.max(day_start), to_us.min(day_start + DAY_US - 1));
            let step = ((hi - lo) / READ_SLICES as i64).max(1);
            let mut start = lo;
            while start <= hi {
                let end = if hi - start < 2 * step { hi } else { start + step - 1 };
                slices.push((CqlDate(day), start, end));
                start = end + 1;
            }
        }
        let parts = futures::future::try_join_all(
            slices.into_iter().map(|(day, lo, hi)| self.read_slice::<R>(statement, drone_id, day, lo, hi)),
        )
        .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    async fn read_slice<R>(
        &self,
        statement: &PreparedStatement,
        drone_id: Uuid,
        day: CqlDate,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<R>>
    where
        R: for<'frame, 'metadata> scylla::deserialize::row::DeserializeRow<'frame, 'metadata> + Send,
    {
        let pager = self
            .session
            .execute_iter(statement.clone(), (drone_id, day, from_us, to_us))
            .await
            .map_err(|error| archive_error("archive read", error))?;
        let mut rows = pager.rows_stream::<R>().map_err(|error| archive_error("archive read", error))?;
        let mut records = Vec::new();
        while let Some(row) = rows.next().await {
            records.push(row.map_err(|error| archive_error("archive read", error))?);
        }
        Ok(records)
    }
}

/// Archived records as the analytics' input columns (what `telemetry_raw` gives it otherwise).
pub fn flight_rows(records: &[TelemetryRecord]) -> crate::analytics::metrics::FlightRows {
    let mut rows = crate::analytics::metrics::FlightRows::with_capacity(records.len());
    for r in records {
        rows.push(crate::analytics::metrics::FlightRow {
            ts_us: r.ts_us,
            throttle: r.throttle,
            voltage: r.voltage,
            current: r.current,
            mah_drawn: r.mah_drawn,
            position: r.position.as_ref().map(|p| [p.x, p.y, p.z]),
            gps: r.gps.as_ref().map(|g| [g.lat, g.lon, g.alt_m]),
            velocity: r.velocity.as_ref().map(|v| [v.x, v.y, v.z]),
            attitude: r.attitude.as_ref().map(|a| [a.roll, a.pitch, a.yaw]),
        });
    }
    rows
}

/// The archive as a reader of last resort, connected on first use: a process whose archive is
/// down when it starts still runs, and only the reads that need the archive wait for it.
#[derive(Clone)]
pub struct LazyArchive {
    config: ArchiveConfig,
    table: Arc<tokio::sync::OnceCell<ArchiveTable>>,
}

impl LazyArchive {
    pub fn new(config: ArchiveConfig) -> Self {
        Self { config, table: Arc::new(tokio::sync::OnceCell::new()) }
    }

    pub async fn table(&self) -> Result<&ArchiveTable> {
        self.table
            .get_or_try_init(|| async {
                let session = Arc::new(connect(&self.config).await?);
                ArchiveTable::new(session, &self.config).await
            })
            .await
    }

    /// A flight's rows from PostgreSQL (`stored`), or from the archive when PostgreSQL holds
    /// fewer than the flight's `packet_count` (its day partitions were dropped by retention)
    /// and the archive holds more.
    pub async fn complete(
        &self,
        stored: crate::analytics::metrics::FlightRows,
        drone_id: Uuid,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
        packet_count: i64,
    ) -> Result<crate::analytics::metrics::FlightRows> {
        if stored.len() as i64 >= packet_count {
            return Ok(stored);
        }
        // Boxed: the driver's future types are deep enough to overflow the compiler's `Send`
        // check when nested in the analytics runner inside `flightline all`.
        type Read<'a> = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<crate::analytics::metrics::FlightRows>> + Send + 'a>,
        >;
        let read: Read<'_> = Box::pin(async move {
            self.table().await?.read_flight_rows(drone_id, start.timestamp_micros(), end.timestamp_micros()).await
        });
        let archived = read.await?;
        if archived.len() <= stored.len() {
            return Ok(stored);
        }
        tracing::info!(%drone_id, postgres = stored.len(), archive = archived.len(), "flight rows read from the archive");
        Ok(archived)
    }
}

/// The archive consumer group.
pub struct Archive {
    table: ArchiveTable,
}

impl Archive {
    pub fn new(table: ArchiveTable) -> Self {
        // Exported at 0 from the start, like every counter.
        metrics::counter!("flightline_archive_rows_written_total").increment(0);
        Self { table }
    }
}

impl Processor for Archive {
    type Record = TelemetryRecord;

    async fn handle(&mut self, batch: &Batch<TelemetryRecord>) -> Result<()> {
        let rows = self.table.write(batch.messages.iter().map(|message| &message.record)).await?;
        metrics::counter!("flightline_archive_rows_written_total").increment(rows as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_days_since_the_epoch() {
        assert_eq!(day_of(0).0, 1 << 31);
        assert_eq!(day_of(DAY_US - 1).0, 1 << 31);
        assert_eq!(day_of(DAY_US).0, (1 << 31) + 1);
        assert_eq!(day_of(-1).0, (1 << 31) - 1);
    }

    #[test]
    fn day_of_and_the_read_slices_agree_on_day_bounds() {
        let day = day_of(3 * DAY_US + 5);
        assert_eq!((i64::from(day.0) - (1i64 << 31)) * DAY_US, 3 * DAY_US);
    }

    #[test]
    fn nodes_get_the_cql_port_by_default() {
        assert_eq!(ArchiveConfig::parse_nodes(" a, b:9043 ,"), vec!["a:9042".to_owned(), "b:9043".to_owned()]);
        assert!(ArchiveConfig::parse_nodes("").is_empty());
    }

    #[test]
    fn any_is_not_a_write_consistency() {
        assert_eq!(ArchiveConfig::parse_consistency("local_quorum").unwrap(), Consistency::LocalQuorum);
        assert!(ArchiveConfig::parse_consistency("ANY").is_err());
    }

    #[test]
    fn a_row_gives_back_its_record() {
        let mut extra = BTreeMap::new();
        extra.insert("mode".to_owned(), ExtraValue::String("loiter".into()));
        extra.insert("sats".to_owned(), ExtraValue::Int(11));
        extra.insert("gain".to_owned(), ExtraValue::Float(12.0));
        extra.insert("armed".to_owned(), ExtraValue::Bool(true));
        let record = TelemetryRecord {
            drone_id: Uuid::from_u128(7),
            ts_us: 1_700_000_000_123_456,
            received_at_us: 1_700_000_000_200_000,
            position: Some(Vec3 { x: 1.0, y: -2.0, z: 3.5 }),
            gps: None,
            velocity: Some(Vec3 { x: 0.1, y: 0.2, z: 0.3 }),
            attitude: Some(Attitude { roll: 1.0, pitch: 2.0, yaw: 359.0 }),
            throttle: 0.42,
            voltage: Some(15.9),
            current: None,
            mah_drawn: Some(120),
            rssi: Some(-60),
            extra,
        };
        assert_eq!(ArchiveRow::from_record(&record).into_record().unwrap(), record);
    }
}
