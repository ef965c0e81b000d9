//! The `sessionizer` group: flights out of the telemetry log (CONTRACT.md §3).
//!
//! [`machine`] is the rule as a pure state machine; this module is its Kafka shell. One machine
//! per owned partition (a drone's packets all live in one partition), fed in place. The flights a
//! step closes wait in an outbox until `flights.v1` acknowledges them; the state is snapshotted
//! into `consumer_offsets.state` with the offset it is valid at, in one transaction, after every
//! step that closed a flight and otherwise at most once a second (the snapshot is the whole
//! partition state: per batch it cost more than the flight rule itself). So:
//!
//! - after `kill -9` at any point, the restored snapshot plus the replay from its offset (at most
//!   about a second of the log) rebuild exactly the state an uninterrupted run would have: no
//!   flight lost, split or duplicated in effect, and ids equal (they depend only on drone and
//!   start ts). Only packets decide the flights of a replayed stretch: a silent close depends on
//!   the clock, and is snapshotted at once;
//! - a crash between the append and the snapshot appends the same `FlightClosed` again on
//!   replay; analytics is idempotent per flight id, so the effect is once;
//! - a failed step keeps its outbox and its advanced state; the runner retries the batch, whose
//!   records are then below `next_offset`, so only the commit is done again.
//!
//! Silent drones are closed on a wall clock that cannot run ahead of the log: the newest
//! `received_at` read on the partition, or the local clock once the partition has delivered
//! nothing for a while (it is caught up). A lagging consumer therefore never closes a flight
//! whose next packets are merely unread.

pub mod machine;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::{FlightClosed, FlightEvent, TelemetryHead};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::offsets::OffsetKey;
use crate::runner::{Batch, OffsetSeeds, Processor};
use crate::{Error, Result};
use machine::{ClosedFlight, FlightRule, Sessionizer};

pub const GROUP_ID: &str = "flightline-sessionizer";

/// A partition that delivered nothing for this long counts as caught up, and the silent-drone
/// rule may use the local clock for it.
const CAUGHT_UP_AFTER: Duration = Duration::from_secs(2);

/// A step (batch or tick) that failed or took at least this long kept the consumer from reading:
/// the quiet time of every partition starts again when it ends.
const STALL: Duration = Duration::from_millis(500);

/// A partition whose state changed without closing a flight is snapshotted at most this often:
/// the snapshot (the whole partition state, in PostgreSQL) is the costly part of a step, and
/// what a crash loses of it is replayed from the log.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// The machine of one partition plus what the silent-drone rule needs; this is the snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PartitionState {
    machine: Sessionizer,
    /// `received_at` of each drone's newest record.
    last_seen_us: BTreeMap<Uuid, i64>,
    /// Newest `received_at` read on the partition: the log's own clock.
    newest_received_us: i64,
    /// Next offset to read; records below it are already in this state.
    next_offset: i64,
    /// When the partition last delivered a record, or was loaded (local, not snapshotted).
    #[serde(skip)]
    last_read: Option<Instant>,
}

/// A closed flight not yet acknowledged by `flights.v1`, with the `traceparent` of the packet
/// that closed it (none for a silent close, or when tracing is off).
struct Pending {
    flight: ClosedFlight,
    context: Option<String>,
}

/// The topic the sessionizer reads and the one it appends flights to.
pub struct Topics {
    pub telemetry: String,
    pub flights: String,
}

pub struct SessionizerProcessor {
    pool: PgPool,
    offsets: OffsetKey,
    flights_topic: String,
    producer: FutureProducer,
    rule: FlightRule,
    partitions: HashMap<i32, PartitionState>,
    /// Closed flights still to append; kept across a failed step, so its retry sends them.
    outbox: Vec<Pending>,
    /// Partitions whose state changed since their last snapshot.
    dirty: BTreeSet<i32>,
    /// A step closed a flight: snapshot at its end, whatever the interval (a silent close
    /// depends on the clock, so it must not be decided again on replay).
    snapshot_now: bool,
    last_snapshot: Instant,
    /// The snapshotted offsets (never the in-memory ones: a partition restarts from its snapshot).
    seeds: OffsetSeeds,
    /// When the last stall (a failed or long step) ended: no partition counts as quiet for the
    /// time the consumer was not reading (a sink outage must not make every drone look silent).
    stalled_until: Option<Instant>,
    /// Whether the last step failed (the runner is retrying it).
    failing: bool,
}

impl SessionizerProcessor {
    pub async fn new(
        pool: PgPool,
        producer: FutureProducer,
        group_id: &str,
        topics: Topics,
        rule: FlightRule,
    ) -> Result<Self> {
        let offsets = OffsetKey::new(group_id, &topics.telemetry);
        let seeds = offsets.seeds(&pool).await?;
        Ok(Self {
            pool,
            offsets,
            flights_topic: topics.flights,
            producer,
            rule,
            partitions: HashMap::new(),
            outbox: Vec::new(),
            dirty: BTreeSet::new(),
            snapshot_now: false,
            last_snapshot: Instant::now(),
            seeds,
            stalled_until: None,
            failing: false,
        })
    }

    /// Makes sure the partition's state is in memory: else its snapshot, else empty.
    async fn load(&mut self, partition: i32) -> Result<()> {
        if self.partitions.contains_key(&partition) {
            return Ok(());
        }
        let row = self.offsets.snapshot(&self.pool, partition).await?;
        let state = match row {
            Some((next_offset, Some(snapshot))) => {
                let mut state: PartitionState = serde_json::from_value(snapshot).map_err(|e| {
                    Error::Fatal(format!("sessionizer snapshot of partition {partition} is unreadable: {e}"))
                })?;
                state.next_offset = next_offset;
                tracing::info!(partition, next_offset, "sessionizer state restored");
                state
            }
            _ => PartitionState { machine: Sessionizer::new(self.rule), ..PartitionState::default() },
        };
        // Counts as "just read" so the local clock is trusted only once the partition has been
        // quiet for a while: right after a restart there may be a backlog to catch up on.
        self.partitions.insert(partition, PartitionState { last_read: Some(Instant::now()), ..state });
        Ok(())
    }

    /// Ends a step: appends the pending flights (acknowledged), then snapshots the changed
    /// partitions if a flight closed or the interval is up. Whatever fails is kept
    /// (outbox, dirty set) for the retry.
    async fn commit(&mut self) -> Result<()> {
        if !self.outbox.is_empty() {
            self.append_flights().await?;
            self.snapshot_now = true;
        }
        if !self.dirty.is_empty() && (self.snapshot_now || self.last_snapshot.elapsed() >= SNAPSHOT_EVERY) {
            self.snapshot().await?;
        }
        Ok(())
    }

    async fn append_flights(&mut self) -> Result<()> {
        let rule = self.rule;
        let sends = self.outbox.iter().map(|Pending { flight, context }| {
            let event = FlightEvent::Closed(FlightClosed {
                flight_id: flight.flight_id,
                drone_id: flight.drone_id,
                start_ts_us: flight.start_ts_us,
                end_ts_us: flight.end_ts_us,
                packet_count: flight.packet_count as i64,
                partition: flight.partition,
                last_offset: flight.last_offset,
                rule,
            });
            let payload = schemas::encode_flight_event(&event);
            let key = flight.drone_id.to_string();
            let producer = self.producer.clone();
            let topic = self.flights_topic.clone();
            let traceparent = flight_context(flight, context.as_deref());
            async move {
                let mut record = FutureRecord::to(&topic).key(&key).payload(&payload);
                if let Some(value) = &traceparent {
                    record = record.headers(
                        OwnedHeaders::new_with_capacity(1)
                            .insert(Header { key: telemetry::context::HEADER, value: Some(value.as_str()) }),
                    );
                }
                producer.send(record, Duration::from_secs(30)).await.map_err(|(error, _)| Error::Kafka(error))
            }
        });
        try_join_all(sends).await?;
        for Pending { flight, .. } in self.outbox.drain(..) {
            tracing::info!(flight_id = %flight.flight_id, drone_id = %flight.drone_id, packets = flight.packet_count, "flight closed");
        }
        Ok(())
    }

    /// Each changed partition's state with the offset it is valid at, in one transaction; only
    /// then do the seeds move (a partition assigned again resumes from its snapshot).
    async fn snapshot(&mut self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for partition in &self.dirty {
            let state = &self.partitions[partition];
            let snapshot = serde_json::to_value(state).map_err(|e| Error::Fatal(format!("snapshot: {e}")))?;
            self.offsets.save_snapshot(&mut tx, *partition, state.next_offset, &snapshot).await?;
        }
        tx.commit().await?;
        for partition in std::mem::take(&mut self.dirty) {
            self.seeds.set(partition, self.partitions[&partition].next_offset);
        }
        self.snapshot_now = false;
        self.last_snapshot = Instant::now();
        Ok(())
    }
}

impl SessionizerProcessor {
    /// Notes a stall: a step that failed, the first success after failures (the runner was
    /// retrying with backoff, reading nothing meanwhile), or a step that took long.
    fn note_stall<T>(&mut self, started: Instant, result: &Result<T>) {
        if result.is_err() || self.failing || started.elapsed() >= STALL {
            self.stalled_until = Some(Instant::now());
        }
        self.failing = result.is_err();
    }

    /// Feeds the batch to the machines in place. A retried batch (the last commit failed) finds
    /// its records below `next_offset` and only commits again.
    async fn apply(&mut self, batch: &Batch<TelemetryHead>) -> Result<()> {
        for partition in batch.next_offsets.keys() {
            self.load(*partition).await?;
        }
        let now = Instant::now();
        let traced = telemetry::enabled();
        for message in &batch.messages {
            let state = self.partitions.get_mut(&message.partition).expect("state of every batch partition");
            if message.offset < state.next_offset {
                continue; // already in this state
            }
            let record = &message.record;
            state.last_seen_us.insert(record.drone_id, record.received_at_us);
            state.newest_received_us = state.newest_received_us.max(record.received_at_us);
            state.last_read = Some(now);
            let closed = state.machine.on_packet(
                record.drone_id,
                record.ts_us,
                record.throttle,
                message.partition,
                message.offset,
            );
            if let Some(flight) = closed {
                let context = if traced { message.traceparent.clone() } else { None };
                self.outbox.push(Pending { flight, context });
            }
        }
        // Moves past every record applied above (and those dead-lettered): a partition changed
        // exactly when its offset moved.
        for (partition, next) in &batch.next_offsets {
            let state = self.partitions.get_mut(partition).expect("state of every batch partition");
            if *next > state.next_offset {
                state.next_offset = *next;
                self.dirty.insert(*partition);
            }
        }
        self.commit().await
    }

    /// The silent-drone rule.
    async fn close_silent(&mut self) -> Result<()> {
        let local_now = chrono::Utc::now().timestamp_micros();
        // While steps fail the runner retries them with backoff and reads nothing, however long
        // the outage: the local clock may run ahead of packets waiting in the log, so only the
        // log's clock counts until a step succeeds (and the quiet time starts again then).
        let trust_local = !self.failing;
        for (partition, state) in &mut self.partitions {
            let clock = if trust_local && caught_up(state.last_read, self.stalled_until) {
                local_now.max(state.newest_received_us)
            } else {
                state.newest_received_us
            };
            let open_before = state.machine.open_flights().count();
            let PartitionState { machine, last_seen_us, .. } = state;
            let closed = machine.close_silent(clock, |drone| last_seen_us.get(drone).copied());
            if machine.open_flights().count() != open_before {
                self.dirty.insert(*partition);
                self.snapshot_now = true;
                // No packet closed these: their analytics start a trace of their own.
                self.outbox.extend(closed.into_iter().map(|flight| Pending { flight, context: None }));
            }
        }
        // Also snapshots what the last batches changed once the interval is up.
        self.commit().await
    }
}

/// Whether a partition last read at `last_read` has been quiet long enough, counting only the
/// time since the last stall, for the local clock to be trusted.
fn caught_up(last_read: Option<Instant>, stalled_until: Option<Instant>) -> bool {
    let quiet_since = last_read.max(stalled_until);
    quiet_since.is_some_and(|since| since.elapsed() >= CAUGHT_UP_AFTER)
}

/// The context a flight's `FlightClosed` carries: a `sessionizer.flight_closed` span in the
/// closing packet's trace (so the trace shows the close), or none when tracing is off.
fn flight_context(flight: &ClosedFlight, closing_packet: Option<&str>) -> Option<String> {
    if !telemetry::enabled() {
        return None;
    }
    let span = tracing::info_span!(
        "sessionizer.flight_closed",
        flight_id = %flight.flight_id,
        drone_id = %flight.drone_id,
        packets = flight.packet_count,
        messaging.kafka.partition = flight.partition,
        flightline.last_offset = flight.last_offset,
    );
    telemetry::context::set_parent(&span, closing_packet);
    telemetry::context::traceparent_of(&span)
}

impl Processor for SessionizerProcessor {
    type Record = TelemetryHead;

    async fn handle(&mut self, batch: &Batch<TelemetryHead>) -> Result<()> {
        let started = Instant::now();
        let result = self.apply(batch).await;
        self.note_stall(started, &result);
        result
    }

    async fn on_assign(&mut self, partitions: &[i32]) -> Result<()> {
        // Loaded now, not at the first record, so a drone that went silent while this group
        // was down still has its flight closed.
        for partition in partitions {
            self.load(*partition).await?;
        }
        Ok(())
    }

    async fn on_revoke(&mut self, partitions: &[i32]) -> Result<()> {
        // Not snapshotted now: the partition may already be another member's (a snapshot never
        // replaces a newer one anyway). What changed since the last snapshot is replayed by the
        // new owner (the seeds and Kafka's committed offset never pass it). The runner calls
        // this before any message fetched after the rebalance, so none meets the dropped state.
        for partition in partitions {
            self.partitions.remove(partition);
            self.dirty.remove(partition);
        }
        Ok(())
    }

    async fn on_shutdown(&mut self) -> Result<()> {
        // The partitions are still ours: snapshot what changed, so a restart replays nothing.
        self.snapshot_now = true;
        self.commit().await
    }

    async fn on_tick(&mut self) -> Result<()> {
        let started = Instant::now();
        let result = self.close_silent().await;
        self.note_stall(started, &result);
        result
    }

    fn tick_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn offset_seeds(&self) -> Option<OffsetSeeds> {
        Some(self.seeds.clone())
    }
}
