//! The `sessionizer` group: flights out of the telemetry log (CONTRACT.md §3).
//!
//! [`machine`] is the rule as a pure state machine; this module is its Kafka shell. One machine
//! per owned partition (a drone's packets all live in one partition). Each batch runs on a copy
//! of the touched partitions' state; the flights it closes are appended to `flights.v1` (and
//! acknowledged), then the new state is snapshotted into `consumer_offsets.state` with the
//! offset it is valid at, in one transaction, and only then replaces the old state. So:
//!
//! - after `kill -9` at any point, the restored snapshot plus the replay from its offset rebuild
//!   exactly the state an uninterrupted run would have: no flight lost, split or duplicated in
//!   effect, and ids equal (they depend only on drone and start ts);
//! - a crash between the append and the snapshot appends the same `FlightClosed` again on
//!   replay; analytics is idempotent per flight id, so the effect is once.
//!
//! Silent drones are closed on a wall clock that cannot run ahead of the log: the newest
//! `received_at` read on the partition, or the local clock once the partition has delivered
//! nothing for a while (it is caught up). A lagging consumer therefore never closes a flight
//! whose next packets are merely unread.

pub mod machine;

use std::collections::{BTreeMap, HashMap};
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
            seeds,
            stalled_until: None,
            failing: false,
        })
    }

    /// The partition's state: in memory, else its snapshot, else empty.
    async fn state(&mut self, partition: i32) -> Result<PartitionState> {
        if let Some(state) = self.partitions.get(&partition) {
            return Ok(state.clone());
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
        Ok(PartitionState { last_read: Some(Instant::now()), ..state })
    }

    /// Appends the flights, then snapshots the states, then adopts them. `contexts` holds the
    /// `traceparent` of the packet that closed a flight (by flight id), which its `FlightClosed`
    /// carries on so analytics continues that packet's trace (empty when tracing is off).
    async fn commit(
        &mut self,
        states: BTreeMap<i32, PartitionState>,
        closed: Vec<ClosedFlight>,
        contexts: &HashMap<Uuid, String>,
    ) -> Result<()> {
        let rule = self.rule;
        let sends = closed.iter().map(|flight| {
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
            let traceparent = flight_context(flight, contexts);
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
        for flight in &closed {
            tracing::info!(flight_id = %flight.flight_id, drone_id = %flight.drone_id, packets = flight.packet_count, "flight closed");
        }

        let mut tx = self.pool.begin().await?;
        for (partition, state) in &states {
            let snapshot = serde_json::to_value(state).map_err(|e| Error::Fatal(format!("snapshot: {e}")))?;
            self.offsets.save_snapshot(&mut tx, *partition, state.next_offset, &snapshot).await?;
        }
        tx.commit().await?;
        for (partition, state) in states {
            self.seeds.set(partition, state.next_offset);
            self.partitions.insert(partition, state);
        }
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

    /// Whether a partition last read at `last_read` has been quiet long enough, counting only
    /// the time since the last stall, for the local clock to be trusted.
    fn caught_up(&self, last_read: Option<Instant>) -> bool {
        let quiet_since = last_read.max(self.stalled_until);
        quiet_since.is_some_and(|since| since.elapsed() >= CAUGHT_UP_AFTER)
    }

    async fn apply(&mut self, batch: &Batch<TelemetryHead>) -> Result<()> {
        let mut states = BTreeMap::new();
        for partition in batch.next_offsets.keys() {
            states.insert(*partition, self.state(*partition).await?);
        }
        let mut closed = Vec::new();
        let mut contexts = HashMap::new();
        let now = Instant::now();
        for message in &batch.messages {
            let state = states.get_mut(&message.partition).expect("state of every batch partition");
            if message.offset < state.next_offset {
                continue; // already in the restored snapshot
            }
            let record = &message.record;
            state.last_seen_us.insert(record.drone_id, record.received_at_us);
            state.newest_received_us = state.newest_received_us.max(record.received_at_us);
            state.last_read = Some(now);
            let closed_before = closed.len();
            closed.extend(state.machine.on_packet(
                record.drone_id,
                record.ts_us,
                record.throttle,
                message.partition,
                message.offset,
            ));
            if telemetry::enabled() {
                if let Some(traceparent) = &message.traceparent {
                    for flight in &closed[closed_before..] {
                        contexts.insert(flight.flight_id, traceparent.clone());
                    }
                }
            }
        }
        for (partition, next) in &batch.next_offsets {
            let state = states.get_mut(partition).expect("state of every batch partition");
            state.next_offset = state.next_offset.max(*next);
        }
        self.commit(states, closed, &contexts).await
    }

    /// The silent-drone rule.
    async fn close_silent(&mut self) -> Result<()> {
        let local_now = chrono::Utc::now().timestamp_micros();
        let mut states = BTreeMap::new();
        let mut closed = Vec::new();
        for (partition, state) in &self.partitions {
            let caught_up = self.caught_up(state.last_read);
            let clock = if caught_up { local_now.max(state.newest_received_us) } else { state.newest_received_us };
            let mut next = state.clone();
            let silent = next.machine.close_silent(clock, |drone| state.last_seen_us.get(drone).copied());
            let had_open = state.machine.open_flights().count() != next.machine.open_flights().count();
            if had_open {
                closed.extend(silent);
                states.insert(*partition, next);
            }
        }
        if states.is_empty() {
            return Ok(());
        }
        // No packet closed these: their analytics start a trace of their own.
        self.commit(states, closed, &HashMap::new()).await
    }
}

/// The context a flight's `FlightClosed` carries: a `sessionizer.flight_closed` span in the
/// closing packet's trace (so the trace shows the close), or none when tracing is off.
fn flight_context(flight: &ClosedFlight, contexts: &HashMap<Uuid, String>) -> Option<String> {
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
    telemetry::context::set_parent(&span, contexts.get(&flight.flight_id).map(String::as_str));
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
            if !self.partitions.contains_key(partition) {
                let state = self.state(*partition).await?;
                self.partitions.insert(*partition, state);
            }
        }
        Ok(())
    }

    async fn on_revoke(&mut self, partitions: &[i32]) -> Result<()> {
        // Their snapshots are current; the new owner restores them.
        for partition in partitions {
            self.partitions.remove(partition);
        }
        Ok(())
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
