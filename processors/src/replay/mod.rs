//! Replay: a consumer group's work re-run over an event-time range of the log, beside the running
//! pipeline (`flightline replay`, CONTRACT.md §5).
//!
//! A replay never disturbs the live groups:
//!
//! - it reads with its own consumer, which joins no group: a random `group.id` that is never
//!   subscribed, partitions assigned by hand, nothing committed or stored. Its start offsets come
//!   from `offsets_for_times`, its end offsets are the high watermarks when it starts, so it reads
//!   a fixed slice of the log and ends even while ingest keeps appending;
//! - it never touches `consumer_offsets` (no live group's fence, watermark or snapshot moves);
//! - its writes are idempotent and commute with the live groups' writes: rows are inserted with
//!   `ON CONFLICT DO NOTHING` ([`restore`]), flights are replaced per drone in one transaction and
//!   keyed by their deterministic id ([`sessionize`]), metrics are the same upsert the analytics
//!   group does ([`recompute`]), archive rows are rewritten by primary key ([`archive`]). A
//!   replay killed at any point and run again therefore ends in the same state as one
//!   uninterrupted run.
//!
//! The range is on event time (`ts`), while `offsets_for_times` works on the Kafka message
//! timestamp (when ingest appended the packet). Ingest refuses packets more than 60 s ahead of
//! its clock, so a packet's message timestamp is at least its `ts` − 60 s: reading from the first
//! message stamped `from` − 60 s (− whatever history the group needs) finds every packet with
//! `ts ≥ from`. The other way round there is no bound (a recorded log of 2021 sent today), so a
//! replay always reads up to the end offsets and filters on `ts`.

pub mod archive;
pub mod recompute;
pub mod restore;
pub mod sessionize;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use sqlx::PgPool;

use crate::offsets::OffsetKey;
use crate::{Error, Result};

/// How far ahead of the ingest clock a packet's `ts` may be (CONTRACT.md §1): the most a
/// message timestamp can lag behind the event time it carries.
pub const TS_TOLERANCE_US: i64 = 60_000_000;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// The slice of one partition a replay reads: `[start, end)`, fixed when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionSlice {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
    /// The partition's low watermark: `start == low == 0` means the replay reads the partition's
    /// whole history (nothing before it was ever dropped by retention).
    pub low: i64,
}

impl PartitionSlice {
    pub fn len(&self) -> u64 {
        (self.end - self.start).max(0) as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the slice starts at the first message the partition ever had.
    pub fn from_the_beginning(&self) -> bool {
        self.start <= self.low && self.low == 0
    }
}

/// What a replay has read so far, shared with whoever shows progress.
#[derive(Debug, Default)]
pub struct Progress {
    /// Messages read.
    pub read: AtomicU64,
    /// Messages the slices hold in all (set when the reading starts; a retry with a longer
    /// history adds its own).
    pub total: AtomicU64,
    /// What the replay is doing now, for the progress line.
    phase: std::sync::Mutex<String>,
    /// Set once the replay has finished.
    pub done: AtomicBool,
}

impl Progress {
    pub fn set_phase(&self, phase: impl Into<String>) {
        *self.phase.lock().expect("progress lock") = phase.into();
    }

    pub fn phase(&self) -> String {
        self.phase.lock().expect("progress lock").clone()
    }
}

/// Readers a sessionizer replay spreads the partitions over by default, each a client of its own
/// (its own fetch queue and threads): one reader spends most of its time in librdkafka's
/// per-message poll, so two keep both cores of a small box busy.
pub const DEFAULT_READERS: usize = 2;

/// The non-empty slices shared out over at most `readers` readers, about equal in messages
/// (largest first, each to the least loaded reader).
pub fn share_out(slices: &[PartitionSlice], readers: usize) -> Vec<Vec<PartitionSlice>> {
    let mut sorted: Vec<PartitionSlice> = slices.iter().copied().filter(|s| !s.is_empty()).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut shares: Vec<(u64, Vec<PartitionSlice>)> = vec![(0, Vec::new()); readers.clamp(1, sorted.len().max(1))];
    for slice in sorted {
        let least = shares.iter_mut().min_by_key(|(load, _)| *load).expect("at least one reader");
        least.0 += slice.len();
        least.1.push(slice);
    }
    shares.into_iter().map(|(_, share)| share).filter(|share| !share.is_empty()).collect()
}

/// A consumer of its own: never subscribed (so it joins no group), never commits.
pub fn replay_consumer(kafka: &ClientConfig) -> Result<BaseConsumer> {
    Ok(kafka
        .clone()
        .set("group.id", format!("flightline-replay-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        // Large fetches: a replay is a bulk read.
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.max.messages.kbytes", "262144")
        .create()?)
}

/// The slices of every partition of `topic` that start at the first message stamped at or after
/// `from_message_ms` (ms since the epoch) and end at the current high watermark.
pub fn plan(consumer: &BaseConsumer, topic: &str, from_message_ms: i64) -> Result<Vec<PartitionSlice>> {
    let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let topic_metadata = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| Error::Fatal(format!("topic {topic} not found")))?;
    if let Some(error) = topic_metadata.error() {
        return Err(Error::Fatal(format!("topic {topic}: {error:?}")));
    }
    let partitions: Vec<i32> = topic_metadata.partitions().iter().map(|p| p.id()).collect();
    let mut query = TopicPartitionList::new();
    for partition in &partitions {
        query.add_partition_offset(topic, *partition, Offset::Offset(from_message_ms.max(0)))?;
    }
    let found = consumer.offsets_for_times(query, METADATA_TIMEOUT)?;
    let mut slices = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?;
        let start = match found.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(offset)) => offset.clamp(low, high),
            // No message stamped that late: nothing to read.
            _ => high,
        };
        slices.push(PartitionSlice { partition, start, end: high, low });
    }
    Ok(slices)
}

/// Reads every slice to its end, handing each message's partition, offset and payload to
/// `on_message` in log order per partition (blocking: run it on a thread of its own). Returns
/// the messages read.
pub fn read_slices(
    consumer: &BaseConsumer,
    topic: &str,
    slices: &[PartitionSlice],
    progress: &Progress,
    mut on_message: impl FnMut(i32, i64, &[u8]) -> Result<()>,
) -> Result<u64> {
    let mut assignment = TopicPartitionList::new();
    let mut remaining: std::collections::HashMap<i32, i64> = std::collections::HashMap::new();
    for slice in slices.iter().filter(|s| !s.is_empty()) {
        assignment.add_partition_offset(topic, slice.partition, Offset::Offset(slice.start))?;
        remaining.insert(slice.partition, slice.end);
    }
    if remaining.is_empty() {
        return Ok(0);
    }
    consumer.assign(&assignment)?;
    let mut read = 0u64;
    let mut pending = 0u64;
    while !remaining.is_empty() {
        let Some(polled) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = match polled {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(partition)) => {
                // The end offsets were the high watermarks when the replay started, so EOF means
                // the slice is read (e.g. the last offsets were transaction markers).
                if let Some(end) = remaining.get(&partition).copied() {
                    let position = consumer.position()?;
                    let at = position.find_partition(topic, partition).map(|e| e.offset());
                    if matches!(at, Some(Offset::Offset(offset)) if offset >= end) {
                        remaining.remove(&partition);
                    }
                }
                continue;
            }
            Err(KafkaError::MessageConsumptionFatal(code)) => {
                return Err(KafkaError::MessageConsumptionFatal(code).into())
            }
            Err(error) => {
                tracing::warn!(%error, "kafka consumer error during replay; the client reconnects by itself");
                continue;
            }
        };
        let partition = message.partition();
        let Some(end) = remaining.get(&partition).copied() else {
            continue; // a slice already read to its end
        };
        let offset = message.offset();
        if offset >= end {
            remaining.remove(&partition);
            continue;
        }
        on_message(partition, offset, message.payload().unwrap_or_default())?;
        read += 1;
        pending += 1;
        if pending >= 1024 {
            progress.read.fetch_add(pending, Ordering::Relaxed);
            pending = 0;
        }
        if offset + 1 >= end {
            remaining.remove(&partition);
        }
    }
    progress.read.fetch_add(pending, Ordering::Relaxed);
    consumer.unassign()?;
    Ok(read)
}

/// Waits until the store group has stored the message at `last_offset` of `partition` (the
/// analytics group's rule: metrics only on complete data), for at most `patience`.
pub async fn wait_for_store(
    pool: &PgPool,
    store: &OffsetKey,
    partition: i32,
    last_offset: i64,
    patience: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let stored = store.next_offset(pool, partition).await?;
        if stored.is_some_and(|next| next > last_offset) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::NotReady(format!(
                "store watermark of partition {partition} is {stored:?}, the flight needs past {last_offset}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The settings every replay shares.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Kafka client settings (bootstrap servers …).
    pub kafka: ClientConfig,
    /// The telemetry topic (with the deployment's prefix).
    pub telemetry_topic: String,
    /// The store group's id (its offsets are the watermark analytics waits for).
    pub store_group: String,
    /// Event time range: `from_us <= ts`, and `ts <= to_us` when given.
    pub from_us: i64,
    pub to_us: Option<i64>,
    /// Only this drone.
    pub drone: Option<uuid::Uuid>,
    /// Report what would change, write nothing.
    pub dry_run: bool,
    pub progress: Arc<Progress>,
    /// Readers of the sessionizer replay ([`DEFAULT_READERS`]).
    pub readers: usize,
}

impl ReplayConfig {
    /// Whether `ts_us` is in the range.
    pub fn contains(&self, ts_us: i64) -> bool {
        ts_us >= self.from_us && ts_us <= self.to_or_max()
    }

    /// The end of the range, or the end of time (9999-12-31T23:59:59.999999Z, which PostgreSQL
    /// and chrono both hold).
    pub fn to_or_max(&self) -> i64 {
        const END_OF_TIME_US: i64 = 253_402_300_799_999_999;
        self.to_us.unwrap_or(END_OF_TIME_US).min(END_OF_TIME_US)
    }
}

#[cfg(test)]
mod tests {
    use super::{share_out, PartitionSlice};

    fn slice(partition: i32, len: i64) -> PartitionSlice {
        PartitionSlice { partition, start: 10, end: 10 + len, low: 0 }
    }

    #[test]
    fn partitions_are_shared_out_evenly_and_whole() {
        let slices = [slice(0, 500), slice(1, 300), slice(2, 0), slice(3, 250), slice(4, 200)];
        let shares = share_out(&slices, 2);
        let loads: Vec<u64> = shares.iter().map(|s| s.iter().map(PartitionSlice::len).sum()).collect();
        assert_eq!(loads, vec![700, 550]);
        let mut partitions: Vec<i32> = shares.iter().flatten().map(|s| s.partition).collect();
        partitions.sort_unstable();
        assert_eq!(partitions, vec![0, 1, 3, 4], "every non-empty slice once, the empty one in none");
        assert_eq!(share_out(&[slice(0, 5)], 2).len(), 1, "no idle reader");
        assert!(share_out(&[slice(0, 0)], 2).is_empty());
    }
}
