//! Appending records to `telemetry.v1`: idempotent producer, `acks=all`, lz4, and an answer only
//! once every delivery report of a request is in.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use schemas::TelemetryRecord;

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("kafka did not acknowledge {failed} of {total} records: {first}")]
    NotAcknowledged { failed: usize, total: usize, first: KafkaError },
    #[error("kafka did not acknowledge within {0:?}")]
    Timeout(Duration),
}

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    ack_timeout: Duration,
}

impl Publisher {
    /// `base` carries the bootstrap servers; durability settings are fixed here because the
    /// "no acknowledged packet lost" promise depends on them.
    pub fn new(base: &ClientConfig, topic: &str, ack_timeout: Duration) -> Result<Self, KafkaError> {
        let producer = base
            .clone()
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("compression.type", "lz4")
            .set("linger.ms", "2")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "500000")
            .set("message.timeout.ms", ack_timeout.as_millis().to_string())
            .create()?;
        Ok(Self { producer, topic: topic.to_owned(), ack_timeout })
    }

    /// Appends the records (key = drone id, so one drone's packets stay ordered in one
    /// partition) and resolves once Kafka acknowledged all of them.
    pub async fn append(&self, records: &[TelemetryRecord], traceparent: &str) -> Result<(), AppendError> {
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            let key = record.drone_id.to_string();
            let payload = schemas::encode_telemetry(record);
            let headers = OwnedHeaders::new_with_capacity(1)
                .insert(Header { key: "traceparent", value: Some(traceparent) });
            let message = FutureRecord::to(&self.topic).key(&key).payload(&payload).headers(headers);
            match self.producer.send_result(message) {
                Ok(delivery) => deliveries.push(delivery),
                Err((error, _)) => {
                    // Queue full or producer fenced: whatever was already queued may still land
                    // (consumers dedupe on (drone_id, ts)); the client is told to retry.
                    return Err(AppendError::NotAcknowledged { failed: records.len() - deliveries.len(), total: records.len(), first: error });
                }
            }
        }
        let reports = tokio::time::timeout(self.ack_timeout + Duration::from_secs(1), join_all(deliveries))
            .await
            .map_err(|_| AppendError::Timeout(self.ack_timeout))?;
        let mut failed = 0;
        let mut first = None;
        for report in reports {
            match report {
                Ok(Ok(_delivery)) => {}
                Ok(Err((error, _))) => {
                    failed += 1;
                    first.get_or_insert(error);
                }
                Err(_canceled) => {
                    failed += 1;
                    first.get_or_insert(KafkaError::Canceled);
                }
            }
        }
        match first {
            None => Ok(()),
            Some(first) => Err(AppendError::NotAcknowledged { failed, total: records.len(), first }),
        }
    }

    /// Whether the cluster answers a metadata request (for `/readyz`).
    pub async fn is_reachable(&self) -> bool {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(Some(&topic), Duration::from_secs(2)).is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// Waits for queued messages on shutdown.
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.producer.flush(timeout) {
            tracing::warn!(%error, "producer flush on shutdown failed");
        }
    }
}
