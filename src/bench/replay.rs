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
//! - the store replay over the whole topic into the empty `telemetry_raw`: every row restored;
//! - the store *group* draining the whole topic as a backlog into `telemetry_raw` (emptied
//!   again): the `flightline process store` role's own runner and `Store`, with its configured
//!   batch settings, hosted in the bench process. Timed from its first stored offset to its last
//!   (the group's join, a few seconds, is reported apart): the rows/s a store that fell behind
//!   catches up at.
//!
//! Prints one JSON object: packets, and messages/s of each replay and of the drain.

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
    /// The store group: from its start until it stored its first offset (joining the group).
    pub drain_join_s: f64,
    /// The store group: from its first stored offset to the last (all `packets`).
    pub drain_s: f64,
    pub drain_rows_per_s: f64,
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
        run_bench(settings, &pool, kafka_ref, topic_ref, options_ref).await
    })
    .await;
    let _ = kafka_admin.delete_topics(&[&topic], &AdminOptions::new()).await;
    result
}

async fn run_bench(
    settings: &Settings,
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
    let drain = drain(settings, pool, kafka, topic, options.packets as i64).await?;
    eprintln!("bench replay: store group drained {:.0} rows/s", drain.rows_per_s);
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
        drain_join_s: round(drain.join_s, 2),
        drain_s: round(drain.seconds, 3),
        drain_rows_per_s: round(drain.rows_per_s, 0),
    })
}

struct Drain {
    join_s: f64,
    seconds: f64,
    rows_per_s: f64,
}

/// The store group over the whole topic as a backlog, into an emptied `telemetry_raw`.
async fn drain(
    settings: &Settings,
    pool: &sqlx::PgPool,
    kafka: &rdkafka::ClientConfig,
    topic: &str,
    packets: i64,
) -> anyhow::Result<Drain> {
    sqlx::query("TRUNCATE telemetry_raw").execute(pool).await?;
    let group_id = "bench-drain-store";
    let store_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(settings.store.pool_size)
        .connect_with(pool.connect_options().as_ref().clone())
        .await?;
    let store = processors::store::Store::new(store_pool, group_id, topic).await?;
    let consumer = settings.store.consumer();
    let config = processors::RunnerConfig {
        group_id: group_id.into(),
        topic: topic.to_owned(),
        dlq_topic: format!("{topic}.dlq"),
        batch_max: consumer.batch_max,
        batch_wait: Duration::from_millis(consumer.batch_wait_ms),
        kafka: kafka.clone(),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let mut runner = tokio::spawn(processors::run(config, store, shutdown.clone()));
    let offsets = processors::offsets::OffsetKey::new(group_id, topic);
    let stored = || async {
        offsets.stored(pool).await.map(|stored| stored.iter().map(|(_, next_offset)| next_offset).sum::<i64>())
    };
    // When rows were first seen stored, and how many: the rate counts only what came after.
    let mut first: Option<(Instant, i64)> = None;
    let mut last_report = Instant::now();
    loop {
        let now = stored().await?;
        if now > 0 && first.is_none() {
            first = Some((Instant::now(), now));
        }
        if now >= packets {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!("bench replay: store group {now} of {packets} rows");
            last_report = Instant::now();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the store group stored {now} of {packets} rows in 600 s"
        );
        tokio::select! {
            result = &mut runner => anyhow::bail!("the store group stopped: {:?}", result?),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    let done = Instant::now();
    shutdown.cancel();
    runner.await??;
    let (first, at_first) = first.unwrap_or((done, 0));
    let seconds = (done - first).as_secs_f64();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry_raw").fetch_one(pool).await?;
    anyhow::ensure!(rows == packets, "the store group stored {rows} rows of {packets}");
    Ok(Drain {
        join_s: (first - started).as_secs_f64(),
        seconds,
        rows_per_s: (packets - at_first) as f64 / seconds.max(1e-9),
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
