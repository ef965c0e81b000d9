//! The sessionizer's shell against real PostgreSQL and Kafka. Its state is snapshotted at once
//! when a step closes a flight, otherwise at most once a second and on shutdown; the seeds the
//! runner starts a partition from are the snapshot's, never ahead of it; and a processor that
//! restores whatever snapshot is stored and reads the log again from its seed closes the same
//! flights an uninterrupted one would.

use std::collections::BTreeMap;
use std::time::Duration;

use processors::sessionizer::machine::FlightRule;
use processors::sessionizer::{SessionizerProcessor, Topics as SessionizerTopics};
use processors::{Batch, Message, Processor};
use rdkafka::producer::FutureProducer;
use rdkafka::Message as _;
use schemas::{FlightClosed, FlightEvent, TelemetryHead};
use sqlx::PgPool;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// One drone's log on partition 0: packet `i` at offset `i`, 10 ms apart, throttle 0.5, except
/// that from `gap_at` on the packets are 20 s later (a gap over G = 10 s closes the flight).
struct Log {
    drone_id: Uuid,
    start_us: i64,
    gap_at: i64,
}

impl Log {
    fn head(&self, offset: i64) -> TelemetryHead {
        let gap = if offset >= self.gap_at { 20_000_000 } else { 0 };
        let ts_us = self.start_us + offset * 10_000 + gap;
        TelemetryHead { drone_id: self.drone_id, ts_us, received_at_us: ts_us, throttle: 0.5 }
    }

    /// The records at `offsets`, as the runner hands them over.
    fn batch(&self, offsets: std::ops::Range<i64>) -> Batch<TelemetryHead> {
        let next = offsets.end;
        let messages = offsets
            .map(|offset| Message {
                partition: 0,
                offset,
                record: self.head(offset),
                traceparent: None,
                timestamp_ms: None,
            })
            .collect();
        Batch { topic: "telemetry.v1".into(), messages, next_offsets: BTreeMap::from([(0, next)]) }
    }
}

struct Setup {
    db: testkit::TestDb,
    topics: testkit::Topics,
    flights: String,
    group: String,
}

impl Setup {
    async fn new() -> Self {
        let db = testkit::TestDb::new().await;
        let mut topics = testkit::Topics::new();
        topics.create(&["flights.v1"], 1).await;
        let flights = topics.name("flights.v1");
        Setup { db, topics, flights, group: format!("sessionizer-{}", Uuid::new_v4().simple()) }
    }

    async fn processor(&self, pool: PgPool) -> SessionizerProcessor {
        let producer: FutureProducer = self.topics.kafka.create().expect("producer");
        let topics = SessionizerTopics { telemetry: "telemetry.v1".into(), flights: self.flights.clone() };
        let mut processor =
            SessionizerProcessor::new(pool, producer, &self.group, topics, FlightRule::default()).await.unwrap();
        processor.on_assign(&[0]).await.unwrap();
        processor
    }

    /// The offset partition 0's stored snapshot is valid at.
    async fn snapshot_offset(&self) -> Option<i64> {
        sqlx::query_scalar(
            "SELECT next_offset FROM consumer_offsets WHERE group_id = $1 AND partition = 0 AND state IS NOT NULL",
        )
        .bind(&self.group)
        .fetch_optional(&self.db.pool)
        .await
        .unwrap()
    }

    async fn flights(&self, count: usize) -> Vec<FlightClosed> {
        testkit::read_messages(&self.topics.kafka, &self.flights, count, WAIT)
            .await
            .iter()
            .map(|message| match schemas::decode_flight_event(message.payload().unwrap()).unwrap() {
                FlightEvent::Closed(closed) => closed,
                other => panic!("unexpected event {other:?}"),
            })
            .collect()
    }

    async fn cleanup(self) {
        self.topics.delete().await;
        self.db.drop().await;
    }
}

fn seed(processor: &SessionizerProcessor) -> Option<i64> {
    processor.offset_seeds().expect("the sessionizer stores its offsets").get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_is_snapshotted_at_once_and_shutdown_saves_the_rest() {
    let setup = Setup::new().await;
    let log = Log { drone_id: Uuid::new_v4(), start_us: testkit::past_ms() * 1000, gap_at: 200 };
    let mut processor = setup.processor(setup.db.connect().await).await;

    processor.handle(&log.batch(0..200)).await.unwrap();
    // Whether or not the interval was up, the seed is the snapshot's.
    assert_eq!(seed(&processor), setup.snapshot_offset().await);

    // Offset 200 comes after the gap: it closes the first flight, and the state after the close
    // is stored with it.
    processor.handle(&log.batch(200..201)).await.unwrap();
    assert_eq!(setup.snapshot_offset().await, Some(201));
    assert_eq!(seed(&processor), Some(201));
    let first = setup.flights(1).await;
    assert_eq!(first[0].packet_count, 200);
    assert_eq!(first[0].start_ts_us, log.head(0).ts_us);
    assert_eq!(first[0].end_ts_us, log.head(199).ts_us);

    processor.handle(&log.batch(201..300)).await.unwrap();
    assert_eq!(seed(&processor), setup.snapshot_offset().await);
    processor.on_shutdown().await.unwrap();
    assert_eq!(setup.snapshot_offset().await, Some(300), "shutdown snapshots what was read");
    drop(processor);

    // A restart resumes from the snapshot: the redelivered records are not counted twice, and
    // the flight open at shutdown goes on.
    let mut restarted = setup.processor(setup.db.connect().await).await;
    assert_eq!(seed(&restarted), Some(300));
    restarted.handle(&log.batch(250..400)).await.unwrap();
    let mut closing = log.batch(400..401);
    let record = &mut closing.messages[0].record;
    record.ts_us += 20_000_000;
    record.received_at_us = record.ts_us;
    restarted.handle(&closing).await.unwrap();
    let both = setup.flights(2).await;
    assert_eq!(both[1].packet_count, 200, "offsets 200..400: {:?}", both[1]);
    assert_eq!(both[1].start_ts_us, log.head(200).ts_us);
    assert_eq!(both[1].end_ts_us, log.head(399).ts_us);
    setup.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_snapshots_replays_from_the_seed_to_the_same_flight() {
    let setup = Setup::new().await;
    let log = Log { drone_id: Uuid::new_v4(), start_us: testkit::past_ms() * 1000, gap_at: 1000 };
    let pool = setup.db.connect().await;
    let mut processor = setup.processor(pool.clone()).await;
    for start in (0..600).step_by(50) {
        processor.handle(&log.batch(start..start + 50)).await.unwrap();
        assert_eq!(seed(&processor), setup.snapshot_offset().await, "after offset {}", start + 50);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Snapshotted at least once on the way (the interval is 1 s), and likely behind the end.
    let stored = setup.snapshot_offset().await.expect("a snapshot within 1.2 s of batches");
    assert!(stored <= 600);
    // A crash: no shutdown, the connections go away.
    drop(processor);
    pool.close().await;

    let mut restarted = setup.processor(setup.db.connect().await).await;
    let from = seed(&restarted).expect("a seed");
    assert_eq!(from, stored);
    restarted.handle(&log.batch(from..1001)).await.unwrap();
    let flight = setup.flights(1).await.remove(0);
    assert_eq!(flight.packet_count, 1000, "{flight:?}");
    assert_eq!(flight.start_ts_us, log.head(0).ts_us);
    assert_eq!(flight.end_ts_us, log.head(999).ts_us);
    assert_eq!(flight.flight_id, schemas::flight_id(log.drone_id, log.head(0).ts_us));
    setup.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_snapshot_never_replaces_a_newer_one() {
    let setup = Setup::new().await;
    let log = Log { drone_id: Uuid::new_v4(), start_us: testkit::past_ms() * 1000, gap_at: 1000 };
    // Both were assigned the partition when nothing was stored; the second has it now.
    let mut old = setup.processor(setup.db.connect().await).await;
    let mut owner = setup.processor(setup.db.connect().await).await;
    owner.handle(&log.batch(0..300)).await.unwrap();
    owner.on_shutdown().await.unwrap();
    assert_eq!(setup.snapshot_offset().await, Some(300));

    // The member that lost the partition in a rebalance finishes a batch it had fetched before.
    old.handle(&log.batch(0..200)).await.unwrap();
    old.on_shutdown().await.unwrap();
    assert_eq!(setup.snapshot_offset().await, Some(300), "the older state must not replace the newer");
    assert!(seed(&old) <= Some(300));

    // The next owner restores the newest state and resumes where it is valid.
    let mut next = setup.processor(setup.db.connect().await).await;
    assert_eq!(seed(&next), Some(300));
    next.handle(&log.batch(250..1001)).await.unwrap();
    let flight = setup.flights(1).await.remove(0);
    assert_eq!(flight.packet_count, 1000, "{flight:?}");
    assert_eq!(flight.end_ts_us, log.head(999).ts_us);
    setup.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_its_state_cannot_be_stored_no_flight_closes_on_the_local_clock() {
    // PostgreSQL goes away while a drone flies: every tick fails (its snapshot cannot be written)
    // and the runner retries it with backoff, reading nothing meanwhile, so the drone's next
    // packets may be waiting in the log however long that lasts.
    let setup = Setup::new().await;
    let now_us = chrono::Utc::now().timestamp_micros();
    let log = Log { drone_id: Uuid::new_v4(), start_us: now_us - 2_000_000, gap_at: 1000 };
    let pool = setup.db.connect().await;
    let mut processor = setup.processor(pool.clone()).await;
    processor.handle(&log.batch(0..200)).await.unwrap();
    pool.close().await;
    // Past the snapshot interval: the tick tries to store the state, and fails.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(processor.on_tick().await.is_err(), "the snapshot needs PostgreSQL");
    // The backoff grew past the quiet time (2 s) and the outage past G (10 s) since the last
    // packet was received.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert!(processor.on_tick().await.is_err());
    assert_eq!(
        testkit::message_count(&setup.topics.kafka, &setup.flights),
        0,
        "a flight was closed on the local clock while the consumer was not reading"
    );
    setup.cleanup().await;
}
