//! `flightline bench replay`: `flightline replay` over a scratch topic of millions of packets.
//!
//! A scratch database (migrated, dropped afterwards) and a scratch topic `telemetry.v1` under a
//! random prefix on the configured broker (deleted afterwards) are filled with a `sim` fleet
//! (`--drones` airframes at `--hz`, interleaved in time as the log would hold them, each flying
//! `--flight-s` s then idling on the ground), `--packets` in all. Then, timed on their own:
//!
//! - the sessionizer replay over the whole topic with `--dry-run`: reading, decoding and re-cutting
//!   every packet and comparing with the (empty) flights table — the re-sessionizing path, without
//!   the analysis of the flights it finds;
//! - the store replay over the whole topic into the empty `telemetry_raw`: every row restored.
//!
//! Prints one JSON object: packets, and messages/s of each replay.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde::Serialize;

use flightline::{runtime, Settings};
use processors::replay::{self, Progress, ReplayConfig};

use super::stats::round;

const PARTITIONS: i32 = 6;

/// `flightline bench replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayBenchOptions {
    /// Packets in the scratch topic.
    #[arg(long, default_value_t = 5_000_000)]
    pub packets: usize,
    #[arg(long, default_value_t = 100)]
    pub drones: u32,
    #[arg(long, default_value_t = 50)]
    pub hz: u32,
    /// Seconds in the air per flight (each followed by the sim's idle on the ground).
    #[arg(long, default_value_t = 60.0)]
    pub flight_s: f64,
    /// Kafka readers of the sessionizer replay (`flightline replay --readers`).
    #[arg(long, default_value_t = replay::DEFAULT_READERS)]
    pub readers: usize,
}

#[derive(Debug, Serialize)]
pub struct ReplayBenchReport {
    pub packets: usize,
    pub drones: u32,
    pub hz: u32,
    /// Appending the packets to the scratch topic (not part of either replay).
    pub produce_s: f64,
    pub sessionizer_messages: u64,
    pub sessionizer_s: f64,
    pub sessionizer_messages_per_s: f64,
    /// Flights the re-cut found (would add to the empty table).
    pub sessionizer_flights: usize,
    pub store_messages: u64,
    pub store_rows_restored: u64,
    pub store_s: f64,
    pub store_rows_per_s: f64,
}

pub async fn bench_replay(settings: &Settings, options: ReplayBenchOptions) -> anyhow::Result<ReplayBenchReport> {
    anyhow::ensure!(
        options.packets >= 1 && options.drones >= 1 && options.hz >= 1,
        "--packets, --drones, --hz must be positive"
    );
    let kafka = runtime::kafka_base(settings);
    let topic = format!("flbench.{}.telemetry.v1", uuid::Uuid::new_v4().simple());
    let kafka_admin: AdminClient<DefaultClientContext> = kafka.create().context("creating the Kafka admin client")?;
    let (admin, kafka_ref, topic_ref, options_ref) = (&kafka_admin, &kafka, &topic, &options);
    let result = super::with_scratch_database(&settings.database_url, "replay", 4, |pool| async move {
        let created = admin
            .create_topics(
                &[NewTopic::new(topic_ref, PARTITIONS, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await?;
        for outcome in created {
            outcome.map_err(|(name, code)| anyhow::anyhow!("creating topic {name}: {code}"))?;
        }
        run_bench(&pool, kafka_ref, topic_ref, options_ref).await
    })
    .await;
    let _ = kafka_admin.delete_topics(&[&topic], &AdminOptions::new()).await;
    result
}

async fn run_bench(
    pool: &sqlx::PgPool,
    kafka: &rdkafka::ClientConfig,
    topic: &str,
    options: &ReplayBenchOptions,
) -> anyhow::Result<ReplayBenchReport> {
    let started = Instant::now();
    produce(kafka, topic, options).await?;
    let produce_s = started.elapsed().as_secs_f64();
    eprintln!("bench replay: {} packets appended in {produce_s:.1} s", options.packets);

    let config = |dry_run: bool| ReplayConfig {
        kafka: kafka.clone(),
        telemetry_topic: topic.to_owned(),
        store_group: "bench-replay-store".into(),
        from_us: 0,
        to_us: None,
        drone: None,
        dry_run,
        progress: Arc::new(Progress::default()),
        readers: options.readers,
    };
    let sessionize = replay::sessionize::run(pool, &config(true), schemas::FlightRule::default()).await?;
    eprintln!("bench replay: sessionizer {:.0} messages/s", sessionize.messages_per_s);
    processors::store::ensure_partitions(pool).await?;
    let restore = replay::restore::run(pool, &config(false)).await?;
    eprintln!("bench replay: store {:.0} rows/s", restore.rows_per_s);
    anyhow::ensure!(
        restore.rows_restored == options.packets as u64,
        "store replay restored {} rows",
        restore.rows_restored
    );
    Ok(ReplayBenchReport {
        packets: options.packets,
        drones: options.drones,
        hz: options.hz,
        produce_s: round(produce_s, 2),
        sessionizer_messages: sessionize.messages,
        sessionizer_s: round(sessionize.seconds, 3),
        sessionizer_messages_per_s: round(sessionize.messages_per_s, 0),
        sessionizer_flights: sessionize.flights_added,
        store_messages: restore.messages,
        store_rows_restored: restore.rows_restored,
        store_s: round(restore.seconds, 3),
        store_rows_per_s: round(restore.rows_per_s, 0),
    })
}

/// The fleet into the topic, in time order (every drone's packet of one instant, then the next),
/// keyed by drone id, ending `packets / (drones × hz)` seconds before now.
async fn produce(kafka: &rdkafka::ClientConfig, topic: &str, options: &ReplayBenchOptions) -> anyhow::Result<()> {
    let kafka = kafka.clone();
    let topic = topic.to_owned();
    let options = options.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let producer: ThreadedProducer<_> = kafka
            .clone()
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("acks", "all")
            .create()
            .context("creating the Kafka producer")?;
        let drones: Vec<uuid::Uuid> = (0..options.drones).map(|_| uuid::Uuid::new_v4()).collect();
        let keys: Vec<String> = drones.iter().map(|d| d.to_string()).collect();
        let mut airframes: Vec<sim::Airframe> =
            (0..options.drones).map(|i| sim::Airframe::new(i, options.flight_s)).collect();
        let dt = 1.0 / f64::from(options.hz);
        let dt_us = 1_000_000 / i64::from(options.hz);
        let steps = options.packets.div_ceil(drones.len());
        let t0_us = chrono::Utc::now().timestamp_micros() - steps as i64 * dt_us;
        let mut sent = 0;
        'steps: for step in 0..steps {
            let ts_us = t0_us + step as i64 * dt_us;
            for (d, airframe) in airframes.iter_mut().enumerate() {
                if sent == options.packets {
                    break 'steps;
                }
                let t = step as f64 * dt;
                let cycle = airframe.cycle_s();
                if step > 0 && (t % cycle) < dt {
                    airframe.recharge();
                }
                let sample = airframe.sample(t % cycle, dt);
                let payload = schemas::encode_telemetry(&sample.to_record(drones[d], ts_us, ts_us));
                let mut record = BaseRecord::<String, Vec<u8>>::to(&topic).key(&keys[d]).payload(&payload);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                            record = returned;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err((error, _)) => return Err(error).context("appending a packet"),
                    }
                }
                sent += 1;
            }
        }
        producer.flush(Duration::from_secs(120)).context("flushing the producer")?;
        Ok(())
    })
    .await?
}
