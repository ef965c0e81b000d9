//! Topics per test on the shared broker, and reading and writing them.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use schemas::TelemetryRecord;
use uuid::Uuid;

use crate::env::kafka_brokers;

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Client settings for the broker of `KAFKA_BROKERS`.
pub fn kafka_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka_brokers()).set("client.id", "fltest").set("log_level", "4");
    config
}

/// One test's topics: every name starts with a random prefix `fltest.<uuid>.`, so tests share the
/// broker without seeing each other's messages (`FLIGHTLINE_TOPIC_PREFIX` of a deployment).
pub struct Topics {
    /// `fltest.<uuid>.`
    pub prefix: String,
    /// Client settings of the broker they are on.
    pub kafka: ClientConfig,
    created: Vec<String>,
}

impl Default for Topics {
    fn default() -> Self {
        Self::new()
    }
}

impl Topics {
    /// A fresh prefix on the local broker; nothing is created yet.
    pub fn new() -> Self {
        Topics { prefix: format!("fltest.{}.", Uuid::new_v4().simple()), kafka: kafka_config(), created: Vec::new() }
    }

    /// The prefixed name of `base`, e.g. `fltest.<uuid>.telemetry.v1` for `telemetry.v1`.
    pub fn name(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    /// Creates the prefixed topics of `bases` with `partitions` partitions each (replication 1).
    pub async fn create(&mut self, bases: &[&str], partitions: i32) {
        let names: Vec<String> = bases.iter().map(|base| self.name(base)).collect();
        let client: AdminClient<DefaultClientContext> = self.kafka.create().expect("admin client");
        let new: Vec<NewTopic> =
            names.iter().map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1))).collect();
        let results = client
            .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
            .await
            .expect("Kafka of the local stack must be up (deploy/local/stack.sh up)");
        for result in results {
            result.expect("create topic");
        }
        self.created.extend(names);
    }

    /// Deletes every topic [`create`](Self::create) made (at the end of a passing test).
    pub async fn delete(self) {
        let names: Vec<&str> = self.created.iter().map(String::as_str).collect();
        delete_topics(&self.kafka, &names).await;
    }
}

/// Deletes `topics`, ignoring those that do not exist.
pub async fn delete_topics(kafka: &ClientConfig, topics: &[&str]) {
    if topics.is_empty() {
        return;
    }
    let client: AdminClient<DefaultClientContext> = kafka.create().expect("admin client");
    let _ = client.delete_topics(topics, &AdminOptions::new()).await;
}

fn partitions_of<C: Consumer>(consumer: &C, topic: &str) -> i32 {
    let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT).expect("topic metadata");
    let topic_metadata = metadata.topics().iter().find(|t| t.name() == topic).expect("topic in the metadata");
    assert!(topic_metadata.error().is_none(), "topic {topic}: {:?}", topic_metadata.error());
    topic_metadata.partitions().len() as i32
}

/// The end offset (next offset to be written) of every partition of `topic`, by partition.
pub fn end_offsets(kafka: &ClientConfig, topic: &str) -> Vec<(i32, i64)> {
    let consumer: BaseConsumer = kafka.create().expect("consumer");
    (0..partitions_of(&consumer, topic))
        .map(|p| (p, consumer.fetch_watermarks(topic, p, METADATA_TIMEOUT).expect("watermarks").1))
        .collect()
}

/// How many messages `topic` holds (the sum of its end offsets; test topics are never compacted
/// or truncated).
pub fn message_count(kafka: &ClientConfig, topic: &str) -> i64 {
    end_offsets(kafka, topic).iter().map(|(_, end)| end).sum()
}

/// The first `count` messages of `topic`, reading every partition from the beginning (in
/// offset order within a partition, interleaved across partitions); panics if fewer arrived
/// within `timeout`. Commits nothing.
pub async fn read_messages(kafka: &ClientConfig, topic: &str, count: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let consumer: StreamConsumer = kafka
        .clone()
        .set("group.id", format!("fltest-reader-{}", Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions_of(&consumer, topic) {
        assignment.add_partition_offset(topic, partition, Offset::Beginning).expect("offset");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("read {} of {count} messages of {topic} within {timeout:?}", out.len()));
        out.push(message.expect("kafka message").detach());
    }
    out
}

/// Every message now in the telemetry topic `topic`: (key, decoded record).
pub async fn read_telemetry(kafka: &ClientConfig, topic: &str) -> Vec<(String, TelemetryRecord)> {
    let total = message_count(kafka, topic) as usize;
    read_messages(kafka, topic, total, Duration::from_secs(60))
        .await
        .iter()
        .map(|message| {
            let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8 key");
            let record = schemas::decode_telemetry(message.payload().expect("payload")).expect("decodable");
            (key, record)
        })
        .collect()
}

/// Appends `records` to `topic` as ingest does (Avro, keyed by drone id), waiting for each
/// acknowledgement: a redelivery or a retried append, straight into the log.
pub async fn append_records(kafka: &ClientConfig, topic: &str, records: &[TelemetryRecord]) {
    let producer: FutureProducer = kafka.create().expect("producer");
    for record in records {
        let key = record.drone_id.to_string();
        let payload = schemas::encode_telemetry(record);
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&payload), Duration::from_secs(5))
            .await
            .expect("record appended");
    }
}
