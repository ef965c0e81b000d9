//! Appending records to `telemetry.v1`: idempotent producer, `acks=all`, lz4, and an answer only
//! once every delivery report of a request is in.
//!
//! Delivery reports are counted per request rather than awaited one future per message: each
//! message carries a reference to its request's [`Pending`] count, the producer's delivery
//! callback decrements it, and the last report wakes the request once (a batch of 500 is one
//! wake-up, not 500).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use schemas::TelemetryRecord;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("kafka did not acknowledge {failed} of {total} records: {first}")]
    NotAcknowledged { failed: usize, total: usize, first: KafkaError },
    #[error("kafka did not acknowledge within {0:?}")]
    Timeout(Duration),
}

/// The delivery reports still expected for one request.
struct Pending {
    remaining: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<KafkaError>>,
    done: tokio::sync::Notify,
}

impl Pending {
    fn report(&self, error: Option<KafkaError>) {
        if let Some(error) = error {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.first_error.lock().expect("pending lock").get_or_insert(error);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // A stored permit: the request sees it even if it starts waiting after this.
            self.done.notify_one();
        }
    }
}

/// Routes each delivery report to its request's [`Pending`].
struct AckContext;

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Arc<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Arc<Pending>) {
        pending.report(result.as_ref().err().map(|(error, _)| error.clone()));
    }
}

#[derive(Clone)]
pub struct Publisher {
    producer: Arc<ThreadedProducer<AckContext>>,
    topic: Arc<str>,
    ack_timeout: Duration,
}

impl Publisher {
    /// `base` carries the bootstrap servers; durability settings are fixed here because the
    /// "no acknowledged packet lost" promise depends on them. `linger` is how long the producer
    /// gathers messages into one produce request per partition (`ingest.kafka_linger_ms`): longer
    /// saves broker CPU, but every request waits for its acknowledgement and a drone sends its
    /// next batch only then, so it also caps each drone's request rate (BENCHMARKS.md).
    pub fn new(base: &ClientConfig, topic: &str, ack_timeout: Duration, linger: Duration) -> Result<Self, KafkaError> {
        let producer = base
            .clone()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", linger.as_millis().to_string())
            .set("batch.num.messages", "10000")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "500000")
            .set("message.timeout.ms", ack_timeout.as_millis().to_string())
            .create_with_context(AckContext)?;
        Ok(Self { producer: Arc::new(producer), topic: topic.into(), ack_timeout })
    }

    /// Appends the records (key = drone id, so one drone's packets stay ordered in one
    /// partition) and resolves once Kafka acknowledged all of them.
    pub async fn append(&self, records: &[TelemetryRecord], traceparent: &str) -> Result<(), AppendError> {
        let total = records.len();
        if total == 0 {
            return Ok(());
        }
        let pending = Arc::new(Pending {
            remaining: AtomicUsize::new(total),
            failed: AtomicUsize::new(0),
            first_error: Mutex::new(None),
            done: tokio::sync::Notify::new(),
        });
        let queued_at = std::time::Instant::now();
        let mut payload = Vec::with_capacity(256);
        let mut key = [0u8; uuid::fmt::Hyphenated::LENGTH];
        for (queued, record) in records.iter().enumerate() {
            let key = record.drone_id.hyphenated().encode_lower(&mut key);
            payload.clear();
            schemas::encode_telemetry_into(record, &mut payload);
            let headers =
                OwnedHeaders::new_with_capacity(1).insert(Header { key: "traceparent", value: Some(traceparent) });
            let message = BaseRecord::with_opaque_to(&self.topic, pending.clone())
                .key(key.as_bytes())
                .payload(&payload)
                .headers(headers);
            if let Err((error, _)) = self.producer.send(message) {
                // Queue full or producer fenced: whatever was already queued may still land
                // (consumers dedupe on (drone_id, ts)); the client is told to retry.
                return Err(AppendError::NotAcknowledged { failed: total - queued, total, first: error });
            }
        }
        tokio::time::timeout(self.ack_timeout + Duration::from_secs(1), pending.done.notified())
            .instrument(telemetry::context::child(|| tracing::info_span!("kafka.ack_wait", messages = total)))
            .await
            .map_err(|_| AppendError::Timeout(self.ack_timeout))?;
        metrics::histogram!("flightline_ingest_kafka_ack_seconds").record(queued_at.elapsed().as_secs_f64());
        let first_error = pending.first_error.lock().expect("pending lock").take();
        match first_error {
            None => Ok(()),
            Some(first) => {
                Err(AppendError::NotAcknowledged { failed: pending.failed.load(Ordering::Relaxed), total, first })
            }
        }
    }

    /// The topic the records go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Waits for queued messages on shutdown.
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "producer flush on shutdown failed");
        }
    }
}
