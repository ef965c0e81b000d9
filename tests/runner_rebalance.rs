//! The runner against a real broker while a second member of its group joins and leaves: a
//! batch never spans a rebalance. The processor hears of every assignment change before it sees
//! a message fetched after it, and each batch holds the messages of a partition in strictly
//! increasing offsets. (A batch that ran across one once mixed the old assignment's messages
//! with those the new one fetched again from its seed, and the sessionizer applied the latter to
//! the state it was about to drop: a flight lost packets in the two-instances chaos trial.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use processors::{Batch, OffsetSeeds, Processor, RunnerConfig};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::TelemetryHead;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PARTITIONS: i32 = 4;

/// Checks what the runner hands over against the assignment it announced.
struct Probe {
    assigned: BTreeSet<i32>,
    /// Every partition starts from offset 0 at each assignment: messages fetched again after a
    /// rebalance then repeat offsets, which shows if they share a batch with older ones.
    seeds: OffsetSeeds,
    violations: Arc<Mutex<Vec<String>>>,
    assignments: Arc<AtomicUsize>,
    handled: Arc<AtomicUsize>,
}

impl Probe {
    fn new() -> Self {
        let seeds = OffsetSeeds::default();
        for partition in 0..PARTITIONS {
            seeds.set(partition, 0);
        }
        Probe {
            assigned: BTreeSet::new(),
            seeds,
            violations: Arc::default(),
            assignments: Arc::default(),
            handled: Arc::default(),
        }
    }
}

impl Processor for Probe {
    type Record = TelemetryHead;

    async fn handle(&mut self, batch: &Batch<TelemetryHead>) -> processors::Result<()> {
        let mut newest: BTreeMap<i32, i64> = BTreeMap::new();
        let mut violations = self.violations.lock().unwrap();
        for message in &batch.messages {
            if !self.assigned.contains(&message.partition) {
                violations.push(format!(
                    "offset {} of partition {} before its assignment",
                    message.offset, message.partition
                ));
            }
            if let Some(last) = newest.insert(message.partition, message.offset) {
                if message.offset <= last {
                    violations.push(format!(
                        "partition {}: offset {} after {} in one batch",
                        message.partition, message.offset, last
                    ));
                }
            }
        }
        self.handled.fetch_add(batch.messages.len(), Ordering::Relaxed);
        Ok(())
    }

    async fn on_assign(&mut self, partitions: &[i32]) -> processors::Result<()> {
        self.assigned.extend(partitions);
        self.assignments.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn on_revoke(&mut self, partitions: &[i32]) -> processors::Result<()> {
        for partition in partitions {
            self.assigned.remove(partition);
        }
        Ok(())
    }

    fn offset_seeds(&self) -> Option<OffsetSeeds> {
        Some(self.seeds.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_never_spans_a_rebalance() {
    let mut topics = testkit::Topics::new();
    topics.create(&["telemetry.v1", "telemetry.dlq"], PARTITIONS).await;
    let config = RunnerConfig {
        group_id: format!("fltest-rebalance-{}", Uuid::new_v4().simple()),
        topic: topics.name("telemetry.v1"),
        dlq_topic: topics.name("telemetry.dlq"),
        batch_max: 20_000,
        // Long batches: most of the member's time is spent filling one, where rebalances land.
        batch_wait: Duration::from_millis(500),
        kafka: topics.kafka.clone(),
    };

    // ~2 000 records/s over 16 drones (every partition) for the whole test.
    let producing = Arc::new(AtomicBool::new(true));
    let producer_task = {
        let (kafka, topic, producing) = (topics.kafka.clone(), config.topic.clone(), producing.clone());
        tokio::spawn(async move {
            let producer: FutureProducer = kafka.create().expect("producer");
            let drones: Vec<Uuid> = (0..16).map(|_| Uuid::new_v4()).collect();
            let start_ms = testkit::past_ms();
            let mut i = 0i64;
            while producing.load(Ordering::Relaxed) {
                let sends = (0..100).map(|_| {
                    i += 1;
                    let drone = drones[(i % 16) as usize];
                    let record = testkit::full_record(drone, start_ms + i);
                    let (key, payload) = (drone.to_string(), schemas::encode_telemetry(&record));
                    let producer = producer.clone();
                    let topic = topic.clone();
                    async move {
                        producer
                            .send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(5))
                            .await
                            .expect("record appended");
                    }
                });
                futures::future::join_all(sends).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let probe = Probe::new();
    let (violations, assignments, handled) =
        (probe.violations.clone(), probe.assignments.clone(), probe.handled.clone());
    let shutdown = CancellationToken::new();
    let member = tokio::spawn(processors::run(config.clone(), probe, shutdown.clone()));

    // A second member joins and leaves, four times: each move revokes and reassigns the first
    // member's partitions while it is filling a batch.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let other = CancellationToken::new();
        let second = tokio::spawn(processors::run(config.clone(), Probe::new(), other.clone()));
        tokio::time::sleep(Duration::from_millis(3500)).await;
        other.cancel();
        second.await.unwrap().expect("second member stops cleanly");
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;

    producing.store(false, Ordering::Relaxed);
    producer_task.await.unwrap();
    shutdown.cancel();
    member.await.unwrap().expect("member stops cleanly");

    let violations = violations.lock().unwrap().clone();
    let assignments = assignments.load(Ordering::Relaxed);
    let handled = handled.load(Ordering::Relaxed);
    // The test only means something if the member was reassigned while it read.
    assert!(assignments >= 5, "only {assignments} assignments: the second member never took partitions");
    assert!(handled > 0, "nothing was handled");
    assert!(
        violations.is_empty(),
        "{} violations over {assignments} assignments, e.g. {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );
    topics.delete().await;
}
