//! The one Kafka consumer loop every processor runs inside.
//!
//! The runner owns the consumer, batching, the dead-letter topic, rebalances, offset commits and
//! shutdown, so a processor only sees decoded batches. Offsets are stored (and committed to
//! Kafka) only after [`Processor::handle`] returned `Ok`, so a crash re-delivers at most the
//! batch in flight; processors that need exactly-once effect fence those redeliveries with the
//! offsets they store in their own transaction (see [`OffsetSeeds`]); for those, what is
//! committed to Kafka never passes what they stored.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Message as _, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result, RetryHint};

/// A record type a runner can decode from a Kafka payload.
pub trait Record: Sized + Send + Sync + 'static {
    fn decode(payload: &[u8]) -> std::result::Result<Self, schemas::DecodeError>;
}

impl Record for schemas::TelemetryRecord {
    fn decode(payload: &[u8]) -> std::result::Result<Self, schemas::DecodeError> {
        schemas::decode_telemetry(payload)
    }
}

impl Record for schemas::TelemetryHead {
    fn decode(payload: &[u8]) -> std::result::Result<Self, schemas::DecodeError> {
        schemas::decode_telemetry_head(payload)
    }
}

impl Record for schemas::FlightEvent {
    fn decode(payload: &[u8]) -> std::result::Result<Self, schemas::DecodeError> {
        schemas::decode_flight_event(payload)
    }
}

/// One decoded message.
#[derive(Debug, Clone)]
pub struct Message<T> {
    pub partition: i32,
    pub offset: i64,
    pub record: T,
    /// W3C trace context carried from the ingest request.
    pub traceparent: Option<String>,
    /// The message's Kafka timestamp (when it was produced), ms since the epoch.
    pub timestamp_ms: Option<i64>,
}

/// Messages of one topic in log order per partition, and the offset to resume from for every
/// partition the batch touched (dead-lettered messages included).
#[derive(Debug)]
pub struct Batch<T> {
    pub topic: String,
    pub messages: Vec<Message<T>>,
    pub next_offsets: BTreeMap<i32, i64>,
}

impl<T> Batch<T> {
    /// The batch in two halves of its messages, in log order: the first half's offsets resume
    /// after its own messages, the second keeps the batch's (which also cover messages
    /// dead-lettered while decoding).
    fn split(self) -> (Self, Self) {
        let mut first = self.messages;
        let second = first.split_off(first.len() / 2);
        // Messages of a partition are in offset order, so the last one inserted is the newest.
        let first_offsets = first.iter().map(|m| (m.partition, m.offset + 1)).collect();
        (
            Batch { topic: self.topic.clone(), messages: first, next_offsets: first_offsets },
            Batch { topic: self.topic, messages: second, next_offsets: self.next_offsets },
        )
    }
}

/// A processor: one required method, the rest are hooks with no-op defaults.
pub trait Processor: Send + 'static {
    type Record: Record;

    /// Applies a batch. Returning `Ok` lets the runner move past it; an error is retried with
    /// backoff or stops the role, as its [`RetryHint`] says. Must be idempotent: after a crash
    /// the same batch (or a superset) is delivered again.
    fn handle(&mut self, batch: &Batch<Self::Record>) -> impl Future<Output = Result<()>> + Send;

    /// Partitions newly assigned to this instance.
    fn on_assign(&mut self, _partitions: &[i32]) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Partitions taken away from this instance.
    fn on_revoke(&mut self, _partitions: &[i32]) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Called every [`Processor::tick_interval`], between batches.
    fn on_tick(&mut self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Called once on shutdown, after the last batch and before the final offset commit, while
    /// the partitions are still assigned. A failure is logged; the restart replays what it left.
    fn on_shutdown(&mut self) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    fn tick_interval(&self) -> Duration {
        Duration::from_secs(3600)
    }

    /// Offsets the processor stores itself; the runner starts assigned partitions from them.
    fn offset_seeds(&self) -> Option<OffsetSeeds> {
        None
    }
}

/// Where a partition should resume, as last known from the processor's own offset store. Read
/// synchronously inside the rebalance callback, so it is a plain shared map kept up to date by
/// the processor; a stale entry only means a few redelivered messages, which the processor's
/// fence skips.
#[derive(Debug, Clone, Default)]
pub struct OffsetSeeds(Arc<Mutex<HashMap<i32, i64>>>);

impl OffsetSeeds {
    pub fn set(&self, partition: i32, next_offset: i64) {
        let mut map = self.0.lock().expect("offset seeds lock");
        let entry = map.entry(partition).or_insert(next_offset);
        *entry = (*entry).max(next_offset);
    }

    pub fn get(&self, partition: i32) -> Option<i64> {
        self.0.lock().expect("offset seeds lock").get(&partition).copied()
    }
}

/// Static settings of one runner.
#[derive(Clone)]
pub struct RunnerConfig {
    /// Consumer group id, e.g. `flightline-store`.
    pub group_id: String,
    pub topic: String,
    pub dlq_topic: String,
    /// Most messages handed to one `handle` call.
    pub batch_max: usize,
    /// How long to keep filling a batch after its first message arrived.
    pub batch_wait: Duration,
    /// Shared Kafka settings (bootstrap servers …).
    pub kafka: ClientConfig,
}

enum RebalanceEvent {
    Assign(Vec<i32>),
    Revoke(Vec<i32>),
}

struct RunnerContext {
    events: mpsc::UnboundedSender<RebalanceEvent>,
    seeds: Option<OffsetSeeds>,
    /// The consumer group, for the lag gauges.
    group: String,
}

impl ClientContext for RunnerContext {
    /// librdkafka's statistics (every [`STATS_EVERY`]): the lag of every partition this member
    /// fetches, in messages (the log end minus the position); a caught-up partition also has 0 s.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for topic in statistics.topics.values() {
            for partition in topic.partitions.values() {
                if partition.partition < 0 || !partition.desired {
                    continue;
                }
                // Without a position or a committed offset yet the group reads from the start of
                // the log (auto.offset.reset = earliest): all of it is lag.
                let lag = match partition.consumer_lag {
                    lag if lag >= 0 => lag,
                    _ if partition.hi_offset >= 0 && partition.lo_offset >= 0 => {
                        partition.hi_offset - partition.lo_offset
                    }
                    _ => continue,
                };
                let labels = [("group", self.group.clone()), ("partition", partition.partition.to_string())];
                metrics::gauge!("flightline_processor_lag_messages", &labels).set(lag as f64);
                if lag == 0 {
                    metrics::gauge!("flightline_processor_lag_seconds", &labels).set(0.0);
                }
            }
        }
    }
}

/// How often librdkafka reports the consumer lag.
const STATS_EVERY: Duration = Duration::from_secs(5);

impl ConsumerContext for RunnerContext {
    fn rebalance(&self, base_consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        // Start assigned partitions where the processor's own store says, not where Kafka's
        // (possibly older) committed offset is.
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS {
            if let Some(seeds) = &self.seeds {
                let seeded: Vec<(String, i32, i64)> = tpl
                    .elements()
                    .iter()
                    .filter_map(|e| seeds.get(e.partition()).map(|next| (e.topic().to_owned(), e.partition(), next)))
                    .collect();
                for (topic, partition, next) in seeded {
                    if let Err(error) = tpl.set_partition_offset(&topic, partition, Offset::Offset(next)) {
                        tracing::warn!(%error, partition, "cannot seed partition offset");
                    }
                }
            }
        }
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let event = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Some(RebalanceEvent::Assign(partitions)),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Some(RebalanceEvent::Revoke(partitions)),
            _ => None,
        };
        // The default implementation performs the (un)assignment and calls the hooks.
        assign_or_unassign(base_consumer, err, tpl);
        if let Some(event) = event {
            let _ = self.events.send(event);
        }
    }
}

/// What the library's default `rebalance` does: (un)assign, eagerly or cooperatively.
fn assign_or_unassign(base_consumer: &BaseConsumer<RunnerContext>, err: RDKafkaRespErr, tpl: &TopicPartitionList) {
    let cooperative = matches!(base_consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
    let result = match (err, cooperative) {
        (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, true) => base_consumer.incremental_assign(tpl),
        (RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, false) => base_consumer.assign(tpl),
        (_, true) => base_consumer.incremental_unassign(tpl),
        (_, false) => base_consumer.unassign(),
    };
    if let Err(error) = result {
        tracing::error!(%error, "rebalance failed");
    }
}

/// Runs `processor` until `shutdown` is cancelled (drains the batch in flight and commits) or a
/// fatal error happens.
pub async fn run<P: Processor>(config: RunnerConfig, mut processor: P, shutdown: CancellationToken) -> Result<()> {
    let seeds = processor.offset_seeds();
    let (mut consumer, mut events_rx) = subscribe(&config, &seeds)?;
    let mut watchdog = Watchdog::new();
    let mut watch = tokio::time::interval(WATCH_EVERY);
    let dlq: FutureProducer = config.kafka.clone().set("acks", "all").set("enable.idempotence", "true").create()?;
    let mut tick = tokio::time::interval(processor.tick_interval());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    tracing::info!(group = %config.group_id, topic = %config.topic, "processor started");
    register_counters(&config);

    // A message received by the poll that also ran a rebalance callback, held for the next
    // batch: it belongs to the new assignment, whose events must reach the processor first.
    let mut carried: Option<RawBatch> = None;
    loop {
        while let Ok(event) = events_rx.try_recv() {
            match event {
                RebalanceEvent::Assign(partitions) => {
                    tracing::info!(group = %config.group_id, ?partitions, "partitions assigned");
                    processor.on_assign(&partitions).await?;
                }
                RebalanceEvent::Revoke(partitions) => {
                    tracing::info!(group = %config.group_id, ?partitions, "partitions revoked");
                    processor.on_revoke(&partitions).await?;
                }
            }
        }
        let first = match carried.take() {
            Some(message) => Ok(message),
            None => tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let mut backoff = Backoff::default();
                    while let Err(error) = processor.on_tick().await {
                        backoff.wait_or_fail(error, &shutdown).await?;
                    }
                    continue;
                }
                _ = watch.tick() => {
                    if watchdog.stuck(&consumer, &config, &seeds).await {
                        metrics::counter!("flightline_processor_consumer_restarts_total", "group" => config.group_id.clone())
                            .increment(1);
                        // The processor gives up what the old member held (the new one is assigned
                        // afresh); the old member's own rebalance events go to a channel nobody reads.
                        let held = assigned_partitions(&consumer);
                        if !held.is_empty() {
                            processor.on_revoke(&held).await?;
                        }
                        let (fresh, fresh_events) = subscribe(&config, &seeds)?;
                        let old = std::mem::replace(&mut consumer, fresh);
                        events_rx = fresh_events;
                        // Closing a wedged client can block: never on an async worker.
                        tokio::task::spawn_blocking(move || {
                            old.unsubscribe();
                            drop(old);
                        });
                        watchdog = Watchdog::new();
                    }
                    continue;
                }
                message = consumer.recv() => message.map(RawBatch::of),
            },
        };
        let first = match first {
            Ok(message) => message,
            Err(error) => {
                consumer_error(&config, error)?;
                // The client reconnects by itself; do not spin on its error reports meanwhile.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        watchdog.progressed();
        // A batch never spans a rebalance: the processor sees the assignment change between the
        // messages fetched before it and those fetched after (which may repeat offsets the old
        // state already had, from the partition's restored position). Mixed in one batch, the
        // sessionizer applied the new messages to the state it was about to drop.
        if !events_rx.is_empty() {
            carried = Some(first);
            continue;
        }
        let mut raw = first;
        let deadline = tokio::time::Instant::now() + config.batch_wait;
        while raw.messages.len() < config.batch_max {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(message)) if !events_rx.is_empty() => {
                    carried = Some(RawBatch::of(message));
                    break;
                }
                Ok(Ok(message)) => raw.push(&message),
                Ok(Err(error)) => {
                    consumer_error(&config, error)?;
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        let batch = decode_batch::<P::Record>(&config, &dlq, &raw).await?;
        let next_offsets = batch.next_offsets.clone();
        if !batch.messages.is_empty() {
            let started = std::time::Instant::now();
            let handled = batch.messages.len();
            let span = batch_span(&config, &batch);
            let handling = handle_batch(&config, &dlq, &mut processor, batch, &raw, &shutdown);
            if !tracing::Instrument::instrument(handling, span).await? {
                // Shutdown during a retry: not handled, offsets stay, the batch comes again.
                return Ok(());
            }
            let group = config.group_id.clone();
            metrics::counter!("flightline_processor_messages_total", "group" => group.clone())
                .increment(handled as u64);
            metrics::histogram!("flightline_processor_batch_size", "group" => group.clone()).record(handled as f64);
            metrics::histogram!("flightline_processor_batch_seconds", "group" => group)
                .record(started.elapsed().as_secs_f64());
            record_lag_seconds(&config, &raw);
        }
        // A batch retried through an outage is progress too, however long it took.
        watchdog.progressed();
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in &next_offsets {
            // Kafka's committed offset never passes the processor's own store, which may move
            // later than its batches (the sessionizer snapshots at most once a second): a member
            // that starts a partition from it must not skip what that store lacks.
            let next = match &seeds {
                Some(seeds) => match seeds.get(*partition) {
                    Some(stored) => stored.min(*next),
                    None => continue,
                },
                None => *next,
            };
            offsets.add_partition_offset(&config.topic, *partition, Offset::Offset(next))?;
        }
        if let Err(error) = consumer.store_offsets(&offsets) {
            // Partitions revoked meanwhile refuse the store; their new owner resumes correctly.
            tracing::debug!(%error, "offsets not stored");
        }
    }

    if let Err(error) = processor.on_shutdown().await {
        tracing::warn!(group = %config.group_id, %error, "processor could not save its state on shutdown");
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => tracing::warn!(%error, "final offset commit failed"),
    }
    consumer.unsubscribe();
    tracing::info!(group = %config.group_id, "processor drained and stopped");
    Ok(())
}

type RunnerConsumer = Arc<StreamConsumer<RunnerContext>>;

/// A consumer of the runner's group, subscribed to its topic.
/// The receiver gets this consumer's rebalance events, and only this one's.
fn subscribe(
    config: &RunnerConfig,
    seeds: &Option<OffsetSeeds>,
) -> Result<(RunnerConsumer, mpsc::UnboundedReceiver<RebalanceEvent>)> {
    let (events, events_rx) = mpsc::unbounded_channel();
    let context = RunnerContext { events, seeds: seeds.clone(), group: config.group_id.clone() };
    let mut kafka = config.kafka.clone();
    kafka
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        // Offsets are stored by hand, only once a batch has been handled.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // A crashed instance's partitions move to the survivors within 10 s, not the default 45.
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "2000")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", STATS_EVERY.as_millis().to_string());
    if !config.batch_wait.is_zero() {
        // A group that waits to fill its batches lets the broker wait as long: a few large
        // fetches instead of one per trickle of messages (the broker serves four groups).
        kafka
            .set("fetch.wait.max.ms", config.batch_wait.as_millis().max(1).to_string())
            .set("fetch.min.bytes", "262144");
    }
    let consumer: StreamConsumer<RunnerContext> = kafka.create_with_context(context)?;
    consumer.subscribe(&[&config.topic])?;
    Ok((Arc::new(consumer), events_rx))
}

fn assigned_partitions(consumer: &RunnerConsumer) -> Vec<i32> {
    consumer.assignment().map(|tpl| tpl.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
}

/// How often the runner checks that its consumer still takes part in the group.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// How long a consumer may hold no partition before the group is asked whether that is right.
const UNASSIGNED_FOR: Duration = Duration::from_secs(20);

/// How long a consumer may hold partitions with messages waiting and receive none. A healthy
/// client resumes within seconds of a broker's return (or loses its partitions in a rebalance).
const STALLED_FOR: Duration = Duration::from_secs(15);

/// How long an unassigned consumer that cannot read its group's state waits before a new one.
const UNANSWERED_FOR: Duration = Duration::from_secs(30);

/// How long a group may stay in a rebalance before its unassigned member gives up on it.
const REBALANCE_STALLED: Duration = Duration::from_secs(60);

/// Finds a consumer that stopped consuming for good, in the two ways librdkafka has been seen to
/// after a broker pause longer than the session timeout:
/// - it revoked its partitions and never rejoined: the group is empty, or smaller than its
///   partition count, while this member waits with nothing assigned;
/// - it still holds its partitions but fetches nothing, though the log has messages past its
///   position (rust-rdkafka#597).
///
/// Either way those partitions would never be read again; the runner then starts a new member.
struct Watchdog {
    unassigned_since: Option<tokio::time::Instant>,
    /// The last message received or batch finished.
    progress_at: tokio::time::Instant,
}

impl Watchdog {
    fn new() -> Self {
        Self { unassigned_since: None, progress_at: tokio::time::Instant::now() }
    }

    fn progressed(&mut self) {
        self.progress_at = tokio::time::Instant::now();
    }

    async fn stuck(&mut self, consumer: &RunnerConsumer, config: &RunnerConfig, seeds: &Option<OffsetSeeds>) -> bool {
        let assigned = consumer.assignment().map(|tpl| tpl.count()).unwrap_or(0);
        if assigned > 0 {
            self.unassigned_since = None;
            return self.progress_at.elapsed() >= STALLED_FOR && self.data_waiting(consumer, config, seeds).await;
        }
        let since = *self.unassigned_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() < UNASSIGNED_FOR {
            return false;
        }
        // Metadata calls block: keep them off the async workers.
        let (consumer, group, topic) = (consumer.clone(), config.group_id.clone(), config.topic.clone());
        let view = tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(2);
            let partitions = consumer.fetch_metadata(Some(&topic), timeout).ok()?.topics().first()?.partitions().len();
            let groups = consumer.fetch_group_list(Some(&group), timeout).ok()?;
            let info = groups.groups().first()?;
            Some(GroupView { state: info.state().to_owned(), members: info.members().len(), partitions })
        })
        .await
        .ok()
        .flatten();
        // Unanswered, it is an outage or this client is the one wedged (seen on CI: revoked after
        // a broker pause, never rejoined, no answer through it either). A new client costs
        // nothing in an outage (it joins when the broker is back), so after a while try one.
        let Some(view) = view else {
            let give_up = since.elapsed() >= UNANSWERED_FOR;
            if give_up {
                tracing::warn!(
                    group = %config.group_id,
                    unassigned_s = since.elapsed().as_secs(),
                    "consumer holds no partition and the group cannot be read through it; joining again with a new consumer"
                );
            }
            return give_up;
        };
        let stuck = view.lost_member(since.elapsed());
        if stuck {
            tracing::warn!(
                group = %config.group_id,
                state = %view.state,
                members = view.members,
                partitions = view.partitions,
                unassigned_s = since.elapsed().as_secs(),
                "consumer holds no partition while the group lacks members; joining again with a new consumer"
            );
        }
        stuck
    }

    /// Whether an assigned partition has messages past where this consumer stands
    /// ([`stands_at`]).
    async fn data_waiting(
        &self,
        consumer: &RunnerConsumer,
        config: &RunnerConfig,
        seeds: &Option<OffsetSeeds>,
    ) -> bool {
        let (consumer, topic, seeds) = (consumer.clone(), config.topic.clone(), seeds.clone());
        let behind = tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_secs(2);
            let assignment = consumer.assignment().ok()?;
            let positions = consumer.position().ok()?;
            let committed = consumer.committed_offsets(assignment.clone(), timeout).ok()?;
            let offset =
                |tpl: &TopicPartitionList, partition: i32| match tpl.find_partition(&topic, partition)?.offset() {
                    Offset::Offset(n) => Some(n),
                    _ => None,
                };
            let mut behind = Vec::new();
            for element in assignment.elements() {
                let partition = element.partition();
                let (low, high) = consumer.fetch_watermarks(&topic, partition, timeout).ok()?;
                let seed = seeds.as_ref().and_then(|s| s.get(partition));
                let at = stands_at(offset(&positions, partition), seed, offset(&committed, partition), low);
                if high > at {
                    behind.push((partition, at, high));
                }
            }
            Some(behind)
        })
        .await
        .ok()
        .flatten();
        // A broker that does not answer is an outage: the client recovers from those itself.
        let Some(behind) = behind else { return false };
        if behind.is_empty() {
            return false;
        }
        tracing::warn!(
            group = %config.group_id,
            idle_s = self.progress_at.elapsed().as_secs(),
            ?behind,
            "consumer receives nothing though its partitions have messages waiting (partition, position, end); \
             joining again with a new consumer"
        );
        true
    }
}

/// The next offset a consumer reads in a partition: the position of what it received, else where
/// it was started (the processor's own offset or the group's committed one, the newer), else
/// the start of the log; never before the start of the log.
fn stands_at(position: Option<i64>, seed: Option<i64>, committed: Option<i64>, low: i64) -> i64 {
    position.or(seed).into_iter().chain(committed).max().unwrap_or(low).max(low)
}

/// What the group coordinator says about a group.
#[derive(Debug)]
struct GroupView {
    state: String,
    members: usize,
    partitions: usize,
}

impl GroupView {
    /// A member with nothing assigned is legitimately idle only in a settled group that has at
    /// least as many members as partitions (every assignor gives each member one otherwise). A
    /// group in the middle of a rebalance is left to finish it, unless that took over a minute:
    /// live members rejoin within seconds, so the coordinator waits for one that never will.
    fn lost_member(&self, unassigned_for: Duration) -> bool {
        self.partitions > 0
            && match self.state.as_str() {
                "Empty" | "Dead" => true,
                "Stable" => self.members < self.partitions,
                "PreparingRebalance" | "CompletingRebalance" => unassigned_for >= REBALANCE_STALLED,
                _ => false,
            }
    }
}

/// Hands `batch` to the processor until it is applied. An outage is retried with backoff (the
/// partition must not move past data it has not written). A batch the sink refuses for its
/// content is split in halves until the refused messages stand alone; those go to the
/// dead-letter topic and the rest is applied, so one bad message never wedges a partition.
/// Returns false when shutdown interrupted a retry (nothing of the batch is then acknowledged).
async fn handle_batch<P: Processor>(
    config: &RunnerConfig,
    dlq: &FutureProducer,
    processor: &mut P,
    batch: Batch<P::Record>,
    raw: &RawBatch,
    shutdown: &CancellationToken,
) -> Result<bool> {
    // Parts in log order; a part's offsets cover every message before it, so applying them in
    // order advances the stored offsets monotonically.
    let mut parts = std::collections::VecDeque::from([batch]);
    while let Some(part) = parts.pop_front() {
        let mut backoff = Backoff::default();
        loop {
            // A part in flight is finished even when shutdown is requested meanwhile: that is the
            // drain. Only the retry backoff gives way to shutdown.
            let error = match processor.handle(&part).await {
                Ok(()) => break,
                Err(error) => error,
            };
            if error.retry_hint() == RetryHint::DeadLetter && !part.messages.is_empty() {
                if part.messages.len() == 1 {
                    let message = &part.messages[0];
                    let source = raw
                        .messages
                        .iter()
                        .find(|r| r.partition == message.partition && r.offset == message.offset)
                        .expect("every decoded message has its raw message");
                    dead_letter(config, dlq, raw, source, DeadLetterKind::Rejected, &error.to_string()).await?;
                    // Still apply the part's offsets (the processor stores them), without the message.
                    parts.push_front(Batch {
                        topic: part.topic,
                        messages: Vec::new(),
                        next_offsets: part.next_offsets,
                    });
                } else {
                    let (first, second) = part.split();
                    parts.push_front(second);
                    parts.push_front(first);
                }
                break;
            }
            if let Err(error) = backoff.wait_or_fail(error, shutdown).await {
                if shutdown.is_cancelled() {
                    return Ok(false);
                }
                return Err(error);
            }
        }
    }
    Ok(true)
}

/// What the consumer reports instead of a message. A broker that went away (restart, network)
/// is reported as an error while the client reconnects by itself: the role must outlive it, so
/// only what librdkafka marks fatal stops it.
fn consumer_error(config: &RunnerConfig, error: KafkaError) -> Result<()> {
    if let KafkaError::MessageConsumptionFatal(_) = error {
        return Err(Error::Kafka(error));
    }
    metrics::counter!("flightline_processor_consumer_errors_total", "group" => config.group_id.clone()).increment(1);
    tracing::warn!(group = %config.group_id, %error, "kafka consumer error; the client reconnects by itself");
    Ok(())
}

/// The group's counters, at 0 from the start: a dashboard or an alert sees a series before its
/// first event (a dead letter should be rare).
fn register_counters(config: &RunnerConfig) {
    let group = config.group_id.clone();
    for kind in [DeadLetterKind::Undecodable, DeadLetterKind::Rejected] {
        metrics::counter!("flightline_processor_dead_letters_total", "group" => group.clone(), "kind" => kind.as_str())
            .increment(0);
    }
    metrics::counter!("flightline_processor_messages_total", "group" => group.clone()).increment(0);
    metrics::counter!("flightline_processor_consumer_errors_total", "group" => group.clone()).increment(0);
    metrics::counter!("flightline_processor_consumer_restarts_total", "group" => group).increment(0);
}

/// The span of one batch (`<group> batch`): rows, partitions and offsets as attributes, in the
/// trace of its first sampled message and linked to the others (see [`telemetry::context`]).
fn batch_span<T>(config: &RunnerConfig, batch: &Batch<T>) -> tracing::Span {
    let span = tracing::info_span!(
        "batch",
        otel.name = tracing::field::Empty,
        otel.kind = "consumer",
        messaging.system = "kafka",
        messaging.consumer.group.name = config.group_id.as_str(),
        messaging.destination.name = batch.topic.as_str(),
        messaging.batch.message_count = batch.messages.len(),
        flightline.offsets = tracing::field::Empty,
    );
    if telemetry::enabled() {
        let group = config.group_id.rsplit("flightline-").next().unwrap_or(&config.group_id);
        span.record("otel.name", format!("{group} batch"));
        span.record("flightline.offsets", offset_ranges(batch).as_str());
        telemetry::context::follow_batch(&span, batch.messages.iter().map(|m| m.traceparent.as_deref()));
    }
    span
}

/// `partition:first-last` for every partition of the batch, e.g. `0:120-184,3:77-90`.
fn offset_ranges<T>(batch: &Batch<T>) -> String {
    let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for message in &batch.messages {
        let range = ranges.entry(message.partition).or_insert((message.offset, message.offset));
        range.0 = range.0.min(message.offset);
        range.1 = range.1.max(message.offset);
    }
    ranges.iter().map(|(partition, (first, last))| format!("{partition}:{first}-{last}")).collect::<Vec<_>>().join(",")
}

/// How old the newest handled message of each partition was when its batch was done (its
/// Kafka timestamp to now): the lag in seconds while the group is behind.
fn record_lag_seconds(config: &RunnerConfig, raw: &RawBatch) {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut newest: BTreeMap<i32, i64> = BTreeMap::new();
    for message in &raw.messages {
        if let Some(at) = message.timestamp_ms {
            newest.insert(message.partition, at);
        }
    }
    for (partition, at) in newest {
        let labels = [("group", config.group_id.clone()), ("partition", partition.to_string())];
        metrics::gauge!("flightline_processor_lag_seconds", &labels).set((now_ms - at).max(0) as f64 / 1000.0);
    }
}

/// Messages detached from the consumer's buffer, their payloads and keys side by side in one
/// buffer: a batch costs a few allocations, not two per message (at 50 000 packets/s, three
/// groups copying each message were ~4 % of the process, BENCHMARKS.md, box H).
#[derive(Default)]
struct RawBatch {
    bytes: Vec<u8>,
    messages: Vec<RawMessage>,
}

struct RawMessage {
    partition: i32,
    offset: i64,
    /// The message's Kafka timestamp (the producer's create time), ms.
    timestamp_ms: Option<i64>,
    /// In [`RawBatch::bytes`].
    payload: std::ops::Range<usize>,
    key: Option<std::ops::Range<usize>>,
    traceparent: Option<String>,
}

impl RawBatch {
    fn of(message: BorrowedMessage<'_>) -> Self {
        let mut batch = RawBatch::default();
        batch.push(&message);
        batch
    }

    fn push(&mut self, message: &BorrowedMessage<'_>) {
        // Only spans use the context; with tracing off, librdkafka's header parse (an allocation
        // per header and message, ~5 % of the process at 50 000 packets/s) is skipped.
        let traceparent = if telemetry::enabled() {
            message.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == telemetry::context::HEADER)
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .map(str::to_owned)
            })
        } else {
            None
        };
        let payload = self.append(message.payload().unwrap_or_default());
        let key = message.key().map(|key| self.append(key));
        self.messages.push(RawMessage {
            partition: message.partition(),
            offset: message.offset(),
            timestamp_ms: message.timestamp().to_millis(),
            payload,
            key,
            traceparent,
        });
    }

    fn append(&mut self, bytes: &[u8]) -> std::ops::Range<usize> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        start..self.bytes.len()
    }

    fn payload(&self, message: &RawMessage) -> &[u8] {
        &self.bytes[message.payload.clone()]
    }

    fn key(&self, message: &RawMessage) -> Option<&[u8]> {
        message.key.clone().map(|key| &self.bytes[key])
    }
}

/// Decodes a batch; what cannot be decoded goes to the dead-letter topic (acknowledged before the
/// offset moves past it) and the partition moves on.
async fn decode_batch<T: Record>(config: &RunnerConfig, dlq: &FutureProducer, raw: &RawBatch) -> Result<Batch<T>> {
    let mut batch = Batch {
        topic: config.topic.clone(),
        messages: Vec::with_capacity(raw.messages.len()),
        next_offsets: BTreeMap::new(),
    };
    for message in &raw.messages {
        batch.next_offsets.insert(message.partition, message.offset + 1);
        match T::decode(raw.payload(message)) {
            Ok(record) => batch.messages.push(Message {
                partition: message.partition,
                offset: message.offset,
                record,
                traceparent: message.traceparent.clone(),
                timestamp_ms: message.timestamp_ms,
            }),
            Err(error) => {
                dead_letter(config, dlq, raw, message, DeadLetterKind::Undecodable, &error.to_string()).await?
            }
        }
    }
    Ok(batch)
}

/// Why a message went to the dead-letter topic.
#[derive(Debug, Clone, Copy)]
enum DeadLetterKind {
    /// Its payload is not a message of the topic's schema.
    Undecodable,
    /// The processor's sink refused its content (e.g. a value PostgreSQL cannot store).
    Rejected,
}

impl DeadLetterKind {
    fn as_str(self) -> &'static str {
        match self {
            DeadLetterKind::Undecodable => "undecodable",
            DeadLetterKind::Rejected => "rejected",
        }
    }
}

async fn dead_letter(
    config: &RunnerConfig,
    dlq: &FutureProducer,
    raw: &RawBatch,
    message: &RawMessage,
    kind: DeadLetterKind,
    reason: &str,
) -> Result<()> {
    metrics::counter!("flightline_processor_dead_letters_total", "group" => config.group_id.clone(), "kind" => kind.as_str())
        .increment(1);
    tracing::warn!(
        group = %config.group_id,
        topic = %config.topic,
        partition = message.partition,
        offset = message.offset,
        kind = kind.as_str(),
        %reason,
        "message sent to the dead-letter topic"
    );
    let partition = message.partition.to_string();
    let offset = message.offset.to_string();
    let headers = OwnedHeaders::new()
        .insert(Header { key: "error", value: Some(reason) })
        .insert(Header { key: "error.kind", value: Some(kind.as_str()) })
        .insert(Header { key: "source.topic", value: Some(&config.topic) })
        .insert(Header { key: "source.partition", value: Some(&partition) })
        .insert(Header { key: "source.offset", value: Some(&offset) })
        .insert(Header { key: "source.group", value: Some(&config.group_id) });
    let mut record = FutureRecord::to(&config.dlq_topic).payload(raw.payload(message)).headers(headers);
    if let Some(key) = raw.key(message) {
        record = record.key(key);
    }
    dlq.send(record, Duration::from_secs(30)).await.map_err(|(error, _)| Error::Kafka(error))?;
    Ok(())
}

/// Capped exponential backoff between attempts of a failed step.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(100))
    }
}

impl Backoff {
    /// Waits before the next attempt, or gives the error back when it is fatal or shutdown was
    /// requested meanwhile.
    async fn wait_or_fail(&mut self, error: Error, shutdown: &CancellationToken) -> Result<()> {
        if matches!(error.retry_hint(), RetryHint::Fatal | RetryHint::DeadLetter) {
            return Err(error);
        }
        tracing::warn!(%error, backoff = ?self.0, "processor step failed, retrying");
        tokio::select! {
            () = shutdown.cancelled() => return Err(error),
            () = tokio::time::sleep(self.0) => {}
        }
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{stands_at, GroupView};

    #[test]
    fn a_consumer_stands_where_it_read_or_where_it_was_started() {
        // It received messages: its position, even ahead of the last commit.
        assert_eq!(stands_at(Some(120), None, Some(100), 0), 120);
        // Nothing received since the assignment: where the processor's own store started it,
        // which a crash can leave ahead of Kafka's commit (no false alarm on an idle tail).
        assert_eq!(stands_at(None, Some(150), Some(100), 0), 150);
        assert_eq!(stands_at(None, None, Some(100), 0), 100);
        // Nothing committed either: the start of the log (auto.offset.reset = earliest).
        assert_eq!(stands_at(None, None, None, 40), 40);
        // Retention removed what it stood at: it resumes at the start of the log.
        assert_eq!(stands_at(None, None, Some(10), 40), 40);
    }

    fn view(state: &str, members: usize, partitions: usize) -> GroupView {
        GroupView { state: state.into(), members, partitions }
    }

    #[test]
    fn an_idle_member_is_lost_only_when_the_group_lacks_members() {
        let idle = Duration::from_secs(25);
        // The pause case: the coordinator dropped every member, ours never came back.
        assert!(view("Empty", 0, 12).lost_member(idle));
        // Another instance took everything while ours waits outside the group.
        assert!(view("Stable", 1, 12).lost_member(idle));
        // More instances than partitions: some are idle by design.
        assert!(!view("Stable", 13, 12).lost_member(idle));
        assert!(!view("Stable", 12, 12).lost_member(idle));
        // A rebalance in progress is left to finish, for a minute.
        assert!(!view("PreparingRebalance", 1, 12).lost_member(idle));
        assert!(!view("CompletingRebalance", 1, 12).lost_member(idle));
        assert!(view("PreparingRebalance", 1, 12).lost_member(Duration::from_secs(61)));
        // No topic metadata yet: nothing to judge.
        assert!(!view("Empty", 0, 0).lost_member(idle));
    }
}
