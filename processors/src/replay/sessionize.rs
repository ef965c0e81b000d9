//! `replay --group sessionizer`: the flights of an event-time range re-cut under the rule
//! configured now.
//!
//! [`Recut`] is the pure part: the log slice fed through one [`Sessionizer`] per partition (as
//! the live group does), plus, per drone, the point from which its flights are certainly those
//! an uninterrupted run from the beginning of the log would cut (*synced*). A machine that starts
//! in the middle of the log does not know whether a flight was open there; it agrees with the
//! true history from the first moment at which no flight can be open whatever came before:
//!
//! - the drone's first packet in the slice lies at least G after the slice's history start (every
//!   earlier packet has `ts` before that start, see [`super`]), or the slice is the partition's
//!   whole history;
//! - two consecutive packets more than G apart (event time), or more than G of wall-clock silence
//!   (`received_at`): any open flight closes there;
//! - consecutive packets with throttle below T spanning at least W: any open flight has closed.
//!
//! Flights that open at or after that point are trusted. [`run`] widens the history it reads
//! (doubling) until every flight that touches the range is trusted, then compares, per drone, the
//! re-cut flights with the stored ones over the range closed under overlap (a flight that sticks
//! out of the range pulls its whole extent in, so nothing is cut in half): flights with the same
//! id and boundaries are left untouched, stored ones the cut no longer produces move to
//! `flights_retired`, new ones are inserted (with the rule) and analysed. One transaction per
//! drone, so a replay killed midway leaves every drone either as it was or as the re-cut says, and
//! the next run finishes the rest.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use schemas::TelemetryHead;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    plan, read_slices, replay_consumer, share_out, wait_for_store, PartitionSlice, ReplayConfig, TS_TOLERANCE_US,
};
use crate::analytics::Analytics;
use crate::archive::LazyArchive;
use crate::offsets::OffsetKey;
use crate::sessionizer::machine::{rule_to_json, ClosedFlight, FlightRule, Sessionizer};
use crate::{timestamp, Error, Result};

/// How long one flight's analysis waits for the store watermark.
const STORE_PATIENCE: Duration = Duration::from_secs(60);

/// What the machine of one partition needs beyond the rule, per drone.
#[derive(Debug, Clone, Default)]
struct Tracker {
    last_ts_us: Option<i64>,
    last_received_us: Option<i64>,
    /// ts of the first packet of the current run of packets below T.
    idle_first_us: Option<i64>,
    /// From this ts on, flights that open are those of the true history.
    synced_from_us: Option<i64>,
}

impl Tracker {
    fn sync_at(&mut self, ts_us: i64) {
        self.synced_from_us.get_or_insert(ts_us);
    }
}

#[derive(Debug, Default)]
struct PartitionCut {
    machine: Sessionizer,
    drones: HashMap<Uuid, Tracker>,
    /// The slice holds the partition's whole history.
    whole_history: bool,
}

/// A re-cut flight and whether it certainly is the true history's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutFlight {
    pub flight: ClosedFlight,
    pub trusted: bool,
}

/// The log slice through the rule, per drone.
#[derive(Debug)]
pub struct Recut {
    rule: FlightRule,
    /// Every packet before the slices has `ts` before this.
    history_from_us: i64,
    drone: Option<Uuid>,
    partitions: HashMap<i32, PartitionCut>,
    closed: Vec<(ClosedFlight, Option<i64>)>,
    pub messages: u64,
    pub undecodable: u64,
}

/// What a [`Recut`] found, per drone.
#[derive(Debug, Default)]
pub struct RecutResult {
    pub flights: BTreeMap<Uuid, Vec<CutFlight>>,
    /// From when each drone's flights are trusted (drones seen in the slice).
    pub synced_from_us: HashMap<Uuid, Option<i64>>,
    /// Start of the flight still open at the end of the slice (the drone is still sending: the
    /// live sessionizer closes it).
    pub open_from_us: HashMap<Uuid, i64>,
}

impl Recut {
    pub fn new(rule: FlightRule, history_from_us: i64, slices: &[PartitionSlice], drone: Option<Uuid>) -> Self {
        let partitions = slices
            .iter()
            .map(|slice| {
                let cut = PartitionCut {
                    machine: Sessionizer::new(rule),
                    drones: HashMap::new(),
                    whole_history: slice.from_the_beginning(),
                };
                (slice.partition, cut)
            })
            .collect();
        Recut { rule, history_from_us, drone, partitions, closed: Vec::new(), messages: 0, undecodable: 0 }
    }

    /// Takes in what another reader cut from other partitions.
    pub fn absorb(&mut self, other: Recut) {
        self.partitions.extend(other.partitions);
        self.closed.extend(other.closed);
        self.messages += other.messages;
        self.undecodable += other.undecodable;
    }

    /// Feeds one message of the slice (log order per partition).
    pub fn feed_payload(&mut self, partition: i32, offset: i64, payload: &[u8]) {
        self.messages += 1;
        match schemas::decode_telemetry_head(payload) {
            Ok(record) => self.feed(partition, offset, &record),
            // The live groups dead-lettered it; it is in no flight.
            Err(_) => self.undecodable += 1,
        }
    }

    pub fn feed(&mut self, partition: i32, offset: i64, record: &TelemetryHead) {
        if self.drone.is_some_and(|only| only != record.drone_id) {
            return;
        }
        let rule = self.rule;
        let history_from_us = self.history_from_us;
        let cut = self.partitions.entry(partition).or_default();
        let drone = record.drone_id;
        let ts = record.ts_us;
        let tracker = cut.drones.entry(drone).or_insert_with(|| {
            let mut tracker = Tracker::default();
            if cut.whole_history {
                tracker.sync_at(i64::MIN);
            } else if ts.saturating_sub(history_from_us) >= rule.gap_us {
                // Any earlier packet of the drone is before history_from: more than G ago.
                tracker.sync_at(ts);
            }
            tracker
        });
        if tracker.last_ts_us.is_some_and(|last| ts <= last) {
            return; // a duplicate; the machine ignores it too
        }
        let synced_before = tracker.synced_from_us;
        if tracker.last_received_us.is_some_and(|last| record.received_at_us.saturating_sub(last) > rule.gap_us) {
            // The drone was silent for more than G of wall-clock time: the live group closed its
            // flight at its last packet, before this one arrived.
            if let Some(flight) = cut.machine.close_drone(&drone) {
                self.closed.push((flight, synced_before));
            }
            tracker.sync_at(ts);
        }
        if tracker.last_ts_us.is_some_and(|last| ts.saturating_sub(last) > rule.gap_us) {
            tracker.sync_at(ts);
        }
        if record.throttle < rule.throttle_threshold {
            let first = *tracker.idle_first_us.get_or_insert(ts);
            if ts.saturating_sub(first) >= rule.idle_window_us {
                tracker.sync_at(ts.saturating_add(1));
            }
        } else {
            tracker.idle_first_us = None;
        }
        tracker.last_ts_us = Some(ts);
        tracker.last_received_us = Some(record.received_at_us);
        let synced = tracker.synced_from_us;
        if let Some(flight) = cut.machine.on_packet(drone, ts, record.throttle, partition, offset) {
            self.closed.push((flight, synced));
        }
    }

    /// Ends the slice: a drone silent for more than G at `wall_now_us` has its flight closed (as
    /// the live group has done); a flight of a drone still sending stays open.
    pub fn finish(mut self, wall_now_us: i64) -> RecutResult {
        let gap_us = self.rule.gap_us;
        let mut result = RecutResult::default();
        for cut in self.partitions.values_mut() {
            let open: Vec<(Uuid, i64)> = cut.machine.open_flights().map(|(id, open)| (*id, open.start_ts_us)).collect();
            for (drone, start_us) in open {
                let tracker = &cut.drones[&drone];
                let silent = tracker.last_received_us.is_none_or(|last| wall_now_us.saturating_sub(last) > gap_us);
                if silent {
                    if let Some(flight) = cut.machine.close_drone(&drone) {
                        self.closed.push((flight, tracker.synced_from_us));
                    }
                } else {
                    result.open_from_us.insert(drone, start_us);
                }
            }
            for (drone, tracker) in &cut.drones {
                let entry = result.synced_from_us.entry(*drone).or_insert(tracker.synced_from_us);
                *entry = (*entry).max(tracker.synced_from_us);
            }
        }
        for (flight, synced) in self.closed {
            let trusted = synced.is_some_and(|from| flight.start_ts_us >= from);
            result.flights.entry(flight.drone_id).or_default().push(CutFlight { flight, trusted });
        }
        for flights in result.flights.values_mut() {
            flights.sort_by_key(|f| f.flight.start_ts_us);
        }
        result
    }
}

/// A stored, active flight.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredFlight {
    pub id: Uuid,
    pub drone_id: Uuid,
    pub start_ts: DateTime<Utc>,
    pub end_ts: DateTime<Utc>,
    pub source_partition: i32,
    pub last_offset: i64,
    pub analytics_status: String,
}

impl StoredFlight {
    fn bounds(&self) -> (Uuid, i64, i64) {
        (self.id, self.start_ts.timestamp_micros(), self.end_ts.timestamp_micros())
    }
}

/// One drone's change.
#[derive(Debug, Default)]
pub struct DroneChange {
    pub drone_id: Uuid,
    /// The range closed under overlap, `[lo, hi]`.
    pub lo_us: i64,
    pub hi_us: i64,
    pub added: Vec<ClosedFlight>,
    pub retired: Vec<StoredFlight>,
    pub unchanged: Vec<StoredFlight>,
}

/// Why a drone's flights cannot be compared yet.
#[derive(Debug, PartialEq, Eq)]
pub enum Compare {
    /// The slice did not reach far enough back for this drone.
    NeedsHistory,
    /// Stored flights in the range, yet no packet of the drone in the log: left alone (a topic
    /// that does not hold this deployment's packets must not retire its flights).
    NotInLog,
}

/// Compares one drone's re-cut flights with its stored ones over `[from, to]` closed under
/// overlap.
pub fn compare(
    drone_id: Uuid,
    range: (i64, i64),
    cut: &RecutResult,
    stored: &[StoredFlight],
) -> std::result::Result<DroneChange, Compare> {
    let new: &[CutFlight] = cut.flights.get(&drone_id).map_or(&[], Vec::as_slice);
    let seen = cut.synced_from_us.get(&drone_id);
    // A flight still open at the end of the slice belongs to the live sessionizer; nothing from
    // its start on is touched.
    let ceiling = cut.open_from_us.get(&drone_id).map_or(i64::MAX, |start| start - 1);
    let (mut lo, mut hi) = (range.0, range.1.min(ceiling));
    let spans = stored
        .iter()
        .map(|f| (f.start_ts.timestamp_micros(), f.end_ts.timestamp_micros()))
        .chain(new.iter().map(|f| (f.flight.start_ts_us, f.flight.end_ts_us)))
        .filter(|(_, end)| *end <= ceiling)
        .collect::<Vec<_>>();
    loop {
        let mut changed = false;
        for &(start, end) in &spans {
            if start <= hi && end >= lo {
                if start < lo {
                    lo = start;
                    changed = true;
                }
                if end > hi {
                    hi = end;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let overlaps = |start: i64, end: i64| start <= hi && end >= lo && end <= ceiling;
    let new_in: Vec<&CutFlight> = new.iter().filter(|f| overlaps(f.flight.start_ts_us, f.flight.end_ts_us)).collect();
    let stored_in: Vec<&StoredFlight> =
        stored.iter().filter(|f| overlaps(f.start_ts.timestamp_micros(), f.end_ts.timestamp_micros())).collect();
    if new_in.is_empty() && stored_in.is_empty() {
        return Ok(DroneChange { drone_id, lo_us: lo, hi_us: hi, ..DroneChange::default() });
    }
    let Some(synced) = seen else {
        return Err(Compare::NotInLog);
    };
    if !synced.is_some_and(|from| from <= lo) || new_in.iter().any(|f| !f.trusted) {
        return Err(Compare::NeedsHistory);
    }
    let new_keys: BTreeSet<(Uuid, i64, i64)> =
        new_in.iter().map(|f| (f.flight.flight_id, f.flight.start_ts_us, f.flight.end_ts_us)).collect();
    let stored_keys: BTreeSet<(Uuid, i64, i64)> = stored_in.iter().map(|f| f.bounds()).collect();
    let mut change = DroneChange { drone_id, lo_us: lo, hi_us: hi, ..DroneChange::default() };
    for flight in stored_in {
        if new_keys.contains(&flight.bounds()) {
            change.unchanged.push(flight.clone());
        } else {
            change.retired.push(flight.clone());
        }
    }
    for flight in new_in {
        if !stored_keys.contains(&(flight.flight.flight_id, flight.flight.start_ts_us, flight.flight.end_ts_us)) {
            change.added.push(flight.flight.clone());
        }
    }
    Ok(change)
}

/// The JSON summary of a sessionizer replay.
#[derive(Debug, Serialize)]
pub struct SessionizeSummary {
    pub group: &'static str,
    pub from: String,
    pub to: Option<String>,
    pub drone: Option<Uuid>,
    pub dry_run: bool,
    /// The rule the range was re-cut with, as CONTRACT.md §2 shows it.
    pub rule: serde_json::Value,
    /// Messages read (over every attempt).
    pub messages: u64,
    pub seconds: f64,
    pub messages_per_s: f64,
    /// Event time from which history was read (before `from`, to learn the state at `from`).
    pub history_from: String,
    /// How many times the history had to be widened.
    pub reads: u32,
    pub flights_added: usize,
    pub flights_retired: usize,
    pub flights_unchanged: usize,
    pub added: Vec<Uuid>,
    pub retired: Vec<Uuid>,
    /// Only with `--dry-run` (a whole fleet's unchanged flights are many).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchanged: Option<Vec<Uuid>>,
    /// Flights analysed after the change (added ones, and unchanged ones still pending).
    pub flights_analysed: usize,
    /// Drones whose stored flights in the range have no packet in the log: left alone.
    pub drones_not_in_log: Vec<Uuid>,
    pub undecodable_messages: u64,
}

/// Re-cuts the range under `rule` and applies the difference (unless `dry_run`).
pub async fn run(pool: &PgPool, config: &ReplayConfig, rule: FlightRule) -> Result<SessionizeSummary> {
    run_with_archive(pool, config, rule, None).await
}

/// [`run`], analysing the new flights from `archive` where `telemetry_raw` no longer holds all
/// of their rows (as the analytics group does).
pub async fn run_with_archive(
    pool: &PgPool,
    config: &ReplayConfig,
    rule: FlightRule,
    archive: Option<LazyArchive>,
) -> Result<SessionizeSummary> {
    let started = Instant::now();
    let wall_now_us = Utc::now().timestamp_micros();
    let window_us = 2 * rule.idle_window_us.max(rule.gap_us).max(FlightRule::default().gap_us);
    let to_us = config.to_or_max();
    // The stored flights that touch the range may start well before it.
    let earliest_stored: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT min(start_ts) FROM flights WHERE end_ts >= $1 AND start_ts <= $2 AND ($3::uuid IS NULL OR drone_id = $3)",
    )
    .bind(timestamp(config.from_us))
    .bind(timestamp(to_us))
    .bind(config.drone)
    .fetch_one(pool)
    .await?;
    let mut history_from_us =
        config.from_us.min(earliest_stored.map_or(i64::MAX, |t| t.timestamp_micros())).saturating_sub(window_us);
    let mut consumers =
        (0..config.readers.max(1)).map(|_| replay_consumer(&config.kafka)).collect::<Result<Vec<_>>>()?;
    let mut messages = 0;
    let mut undecodable = 0;
    let mut reads = 0;
    let mut previous_slices: Option<Vec<PartitionSlice>> = None;
    let (changes, not_in_log) = loop {
        reads += 1;
        config.progress.set_phase(format!("reading the log (history from {})", format_us(history_from_us)));
        let from_message_ms = history_from_us.saturating_sub(TS_TOLERANCE_US) / 1000 - 1000;
        let topic = config.telemetry_topic.clone();
        let progress = config.progress.clone();
        let drone = config.drone;
        let taken = std::mem::take(&mut consumers);
        let (returned, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = (|| {
                let slices = plan(&taken[0], &topic, from_message_ms)?;
                progress.total.fetch_add(slices.iter().map(PartitionSlice::len).sum(), Ordering::Relaxed);
                // Partitions are independent machines: each reader cuts its own, then they merge.
                let cuts = std::thread::scope(|scope| {
                    let readers: Vec<_> = share_out(&slices, taken.len())
                        .into_iter()
                        .zip(&taken)
                        .map(|(share, consumer)| {
                            let (topic, progress) = (&topic, &progress);
                            scope.spawn(move || {
                                let mut recut = Recut::new(rule, history_from_us, &share, drone);
                                read_slices(consumer, topic, &share, progress, |partition, offset, payload| {
                                    recut.feed_payload(partition, offset, payload);
                                    Ok(())
                                })?;
                                Ok::<_, Error>(recut)
                            })
                        })
                        .collect();
                    readers
                        .into_iter()
                        .map(|reader| reader.join().map_err(|_| Error::Fatal("replay reader panicked".into()))?)
                        .collect::<Result<Vec<_>>>()
                })?;
                let mut recut = Recut::new(rule, history_from_us, &[], drone);
                for cut in cuts {
                    recut.absorb(cut);
                }
                Ok::<_, Error>((slices, recut))
            })();
            (taken, outcome)
        })
        .await
        .map_err(|e| Error::Fatal(format!("replay reader panicked: {e}")))?;
        consumers = returned;
        let (slices, recut) = outcome?;
        messages += recut.messages;
        undecodable += recut.undecodable;
        let cut = recut.finish(wall_now_us);

        let stored: Vec<StoredFlight> = sqlx::query_as(
            "SELECT id, drone_id, start_ts, end_ts, source_partition, last_offset, analytics_status FROM flights
             WHERE end_ts >= $1 AND ($2::uuid IS NULL OR drone_id = $2) ORDER BY drone_id, start_ts",
        )
        .bind(timestamp(history_from_us))
        .bind(config.drone)
        .fetch_all(pool)
        .await?;
        let mut by_drone: BTreeMap<Uuid, Vec<StoredFlight>> = BTreeMap::new();
        for flight in stored {
            by_drone.entry(flight.drone_id).or_default().push(flight);
        }
        let mut drones: BTreeSet<Uuid> = by_drone.keys().copied().collect();
        drones.extend(cut.flights.keys().copied());
        let mut changes = Vec::new();
        let mut not_in_log = Vec::new();
        let mut needs_history = false;
        for drone_id in drones {
            let stored = by_drone.get(&drone_id).map_or(&[][..], Vec::as_slice);
            match compare(drone_id, (config.from_us, to_us), &cut, stored) {
                Ok(change) => changes.push(change),
                Err(Compare::NotInLog) => not_in_log.push(drone_id),
                Err(Compare::NeedsHistory) => {
                    needs_history = true;
                    break;
                }
            }
        }
        if !needs_history {
            break (changes, not_in_log);
        }
        if slices.iter().all(|s| s.start <= s.low) {
            return Err(Error::Fatal(format!(
                "the log no longer holds the history this range needs (retention has removed messages before \
                 offsets {:?}); replay a later range or raise the retention of {}",
                slices.iter().map(|s| (s.partition, s.low)).collect::<Vec<_>>(),
                config.telemetry_topic
            )));
        }
        // Twice as far back; straight to the beginning when that reads the same slices again.
        let distance = config.from_us.saturating_sub(history_from_us).max(window_us);
        history_from_us = config.from_us.saturating_sub(distance.saturating_mul(2));
        if previous_slices.as_ref() == Some(&slices) {
            history_from_us = 0;
        }
        previous_slices = Some(slices);
        tracing::info!(history_from = %format_us(history_from_us), "replay needs more history; reading again");
    };

    let mut summary = SessionizeSummary {
        group: "sessionizer",
        from: format_us(config.from_us),
        to: config.to_us.map(format_us),
        drone: config.drone,
        dry_run: config.dry_run,
        rule: rule_to_json(&rule),
        messages,
        seconds: 0.0,
        messages_per_s: 0.0,
        history_from: format_us(history_from_us),
        reads,
        flights_added: changes.iter().map(|c| c.added.len()).sum(),
        flights_retired: changes.iter().map(|c| c.retired.len()).sum(),
        flights_unchanged: changes.iter().map(|c| c.unchanged.len()).sum(),
        added: changes.iter().flat_map(|c| c.added.iter().map(|f| f.flight_id)).collect(),
        retired: changes.iter().flat_map(|c| c.retired.iter().map(|f| f.id)).collect(),
        unchanged: config.dry_run.then(|| changes.iter().flat_map(|c| c.unchanged.iter().map(|f| f.id)).collect()),
        flights_analysed: 0,
        drones_not_in_log: not_in_log,
        undecodable_messages: undecodable,
    };
    for drone_id in &summary.drones_not_in_log {
        tracing::warn!(%drone_id, "stored flights in the range but no packet of the drone in the log: left alone");
    }
    if !config.dry_run {
        let retired_by = format!("replay sessionizer {} rule {}", Utc::now().to_rfc3339(), summary.rule);
        config.progress.set_phase("writing flights");
        for change in &changes {
            if !change.added.is_empty() || !change.retired.is_empty() {
                apply(pool, change, &rule, &retired_by).await?;
            }
        }
        let mut analytics = Analytics::new(pool.clone(), &config.store_group, &config.telemetry_topic);
        if let Some(archive) = archive {
            analytics = analytics.with_archive(archive);
        }
        let store = OffsetKey::new(&config.store_group, &config.telemetry_topic);
        let to_analyse: Vec<(Uuid, i32, i64)> = changes
            .iter()
            .flat_map(|c| {
                let added = c.added.iter().map(|f| (f.flight_id, f.partition, f.last_offset));
                let pending = c
                    .unchanged
                    .iter()
                    .filter(|f| f.analytics_status == "pending")
                    .map(|f| (f.id, f.source_partition, f.last_offset));
                added.chain(pending).collect::<Vec<_>>()
            })
            .collect();
        for (done, (flight_id, partition, last_offset)) in to_analyse.iter().enumerate() {
            config.progress.set_phase(format!("analysing flights {}/{}", done + 1, to_analyse.len()));
            wait_for_store(pool, &store, *partition, *last_offset, STORE_PATIENCE).await?;
            analytics.analyse(*flight_id).await?;
        }
        summary.flights_analysed = to_analyse.len();
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.messages_per_s = if summary.seconds > 0.0 { messages as f64 / summary.seconds } else { 0.0 };
    Ok(summary)
}

/// One drone's change in one transaction: retired flights move to `flights_retired` (and their
/// rows lose the tag), new ones are inserted pending analysis, with the rule.
async fn apply(pool: &PgPool, change: &DroneChange, rule: &FlightRule, retired_by: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    // Serialises against another replay of the same drone.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('flightline-replay'), hashtext($1::text))")
        .bind(change.drone_id.to_string())
        .execute(&mut *tx)
        .await?;
    let retired_ids: Vec<Uuid> = change.retired.iter().map(|f| f.id).collect();
    if !retired_ids.is_empty() {
        sqlx::query(
            "WITH moved AS (
                 DELETE FROM flights WHERE drone_id = $1 AND id = ANY($2) RETURNING *
             )
             INSERT INTO flights_retired (retired_by, id, drone_id, start_ts, end_ts, packet_count, source_partition,
                 last_offset, duration_s, total_mah, energy_wh, min_voltage, max_current, distance_m, bbox,
                 computed_metrics, analytics_status, analytics_version, analytics_error, rule, created_at, updated_at)
             SELECT $3, id, drone_id, start_ts, end_ts, packet_count, source_partition,
                 last_offset, duration_s, total_mah, energy_wh, min_voltage, max_current, distance_m, bbox,
                 computed_metrics, analytics_status, analytics_version, analytics_error, rule, created_at, updated_at
             FROM moved",
        )
        .bind(change.drone_id)
        .bind(&retired_ids)
        .bind(retired_by)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE telemetry_raw SET flight_id = NULL
             WHERE drone_id = $1 AND ts >= $2 AND ts <= $3 AND flight_id = ANY($4)",
        )
        .bind(change.drone_id)
        .bind(timestamp(change.lo_us))
        .bind(timestamp(change.hi_us))
        .bind(&retired_ids)
        .execute(&mut *tx)
        .await?;
    }
    for flight in &change.added {
        sqlx::query(
            "INSERT INTO flights (id, drone_id, start_ts, end_ts, packet_count, source_partition, last_offset, rule)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM drones WHERE id = $2)
             ON CONFLICT (id) DO UPDATE
             SET start_ts = EXCLUDED.start_ts, end_ts = EXCLUDED.end_ts, packet_count = EXCLUDED.packet_count,
                 source_partition = EXCLUDED.source_partition, last_offset = EXCLUDED.last_offset,
                 rule = EXCLUDED.rule, analytics_status = 'pending', updated_at = now()",
        )
        .bind(flight.flight_id)
        .bind(flight.drone_id)
        .bind(timestamp(flight.start_ts_us))
        .bind(timestamp(flight.end_ts_us))
        .bind(flight.packet_count as i64)
        .bind(flight.partition)
        .bind(flight.last_offset)
        .bind(rule_to_json(rule))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// µs since the epoch as the contract writes timestamps.
pub fn format_us(ts_us: i64) -> String {
    schemas::format_ts(ts_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const T0: i64 = 1_777_636_800 * S;

    fn record(drone: Uuid, ts_us: i64, throttle: f64) -> TelemetryHead {
        TelemetryHead { drone_id: drone, ts_us, received_at_us: ts_us, throttle }
    }

    /// One drone: fly 0–30 s, idle 30–45 s, fly 45–80 s, idle 80–95 s, at 10 Hz.
    fn stream(drone: Uuid) -> Vec<TelemetryHead> {
        (0..950)
            .map(|i| {
                let ts = T0 + i * S / 10;
                let flying = (0..300).contains(&i) || (450..800).contains(&i);
                record(drone, ts, if flying { 0.5 } else { 0.0 })
            })
            .collect()
    }

    fn slice(start: i64) -> PartitionSlice {
        PartitionSlice { partition: 0, start, end: 950, low: 0 }
    }

    fn cut_from(first: usize, history_from_us: i64) -> RecutResult {
        let drone = Uuid::from_u128(7);
        let mut recut = Recut::new(FlightRule::default(), history_from_us, &[slice(first as i64)], None);
        for (offset, record) in stream(drone).iter().enumerate().skip(first) {
            recut.feed(0, offset as i64, record);
        }
        recut.finish(i64::MAX)
    }

    #[test]
    fn the_whole_history_is_trusted_and_cuts_the_contract_flights() {
        let cut = cut_from(0, T0);
        let flights = &cut.flights[&Uuid::from_u128(7)];
        let bounds: Vec<(i64, i64, bool)> =
            flights.iter().map(|f| (f.flight.start_ts_us - T0, f.flight.end_ts_us - T0, f.trusted)).collect();
        assert_eq!(bounds, vec![(0, 40 * S, true), (45 * S, 90 * S, true)]);
    }

    #[test]
    fn a_slice_starting_mid_flight_trusts_only_what_opens_after_the_idle_run() {
        // Starts at 10 s, inside the first flight: its start is unknown, the second is exact.
        let cut = cut_from(100, T0 + 10 * S);
        let flights = &cut.flights[&Uuid::from_u128(7)];
        let trusted: Vec<(i64, bool)> = flights.iter().map(|f| (f.flight.start_ts_us - T0, f.trusted)).collect();
        assert_eq!(trusted, vec![(10 * S, false), (45 * S, true)]);
        assert_eq!(cut.synced_from_us[&Uuid::from_u128(7)], Some(T0 + 40 * S + 1));
    }

    #[test]
    fn a_first_packet_g_after_the_history_start_is_synced() {
        // Nothing of the drone before 15 s in the slice, whose history starts at 0 s (not the
        // partition's beginning): any earlier packet is more than G before.
        let drone = Uuid::from_u128(7);
        let mut recut =
            Recut::new(FlightRule::default(), T0, &[PartitionSlice { partition: 0, start: 5, end: 950, low: 0 }], None);
        for (offset, record) in stream(drone).iter().enumerate().skip(450) {
            recut.feed(0, offset as i64, record);
        }
        let cut = recut.finish(i64::MAX);
        assert!(cut.flights[&drone].iter().all(|f| f.trusted));
    }

    fn stored(flight: &ClosedFlight) -> StoredFlight {
        StoredFlight {
            id: flight.flight_id,
            drone_id: flight.drone_id,
            start_ts: timestamp(flight.start_ts_us),
            end_ts: timestamp(flight.end_ts_us),
            source_partition: flight.partition,
            last_offset: flight.last_offset,
            analytics_status: "done".into(),
        }
    }

    #[test]
    fn the_same_cut_changes_nothing_and_a_changed_one_replaces_over_the_closed_range() {
        let drone = Uuid::from_u128(7);
        let cut = cut_from(0, T0);
        let old: Vec<StoredFlight> = cut.flights[&drone].iter().map(|f| stored(&f.flight)).collect();
        // The range touches only the second flight's end.
        let change = compare(drone, (T0 + 85 * S, T0 + 86 * S), &cut, &old).unwrap();
        assert_eq!((change.added.len(), change.retired.len(), change.unchanged.len()), (0, 0, 1));

        // A rule with W = 20 s: the 15 s idle no longer splits: one flight 0–90 s.
        let rule = FlightRule { idle_window_us: 20 * S, ..FlightRule::default() };
        let mut recut = Recut::new(rule, T0, &[slice(0)], None);
        for (offset, record) in stream(drone).iter().enumerate() {
            recut.feed(0, offset as i64, record);
        }
        let merged = recut.finish(i64::MAX);
        // Touching only the second stored flight pulls the first in through the merged one.
        let change = compare(drone, (T0 + 85 * S, T0 + 86 * S), &merged, &old).unwrap();
        assert_eq!(change.retired.len(), 2);
        assert_eq!(change.added.len(), 1);
        assert_eq!(change.added[0].flight_id, old[0].id); // same start, same id, new end
        assert_eq!(change.lo_us, T0);
    }

    #[test]
    fn an_untrusted_flight_in_the_range_asks_for_more_history() {
        let drone = Uuid::from_u128(7);
        let cut = cut_from(100, T0 + 10 * S);
        assert_eq!(compare(drone, (T0 + 20 * S, T0 + 21 * S), &cut, &[]).unwrap_err(), Compare::NeedsHistory);
        // The second flight alone is fine.
        assert!(compare(drone, (T0 + 50 * S, T0 + 51 * S), &cut, &[]).is_ok());
    }

    #[test]
    fn stored_flights_of_a_drone_absent_from_the_log_are_left_alone() {
        let drone = Uuid::from_u128(7);
        let flights = cut_from(0, T0);
        let old: Vec<StoredFlight> = flights.flights[&drone].iter().map(|f| stored(&f.flight)).collect();
        let empty = RecutResult::default();
        assert_eq!(compare(drone, (T0, T0 + 100 * S), &empty, &old).unwrap_err(), Compare::NotInLog);
    }
}
