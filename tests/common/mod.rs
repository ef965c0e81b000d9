//! Test harness: a real ingest server and real processors against the real local stack, isolated
//! per test by a fresh database, fresh topics and fresh consumer groups (random names).
#![allow(dead_code)]

use std::time::Duration;

use flightline::{runtime, Settings};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const PARTITIONS: i32 = 3;

pub struct TestApp {
    /// Base URL of the ingest API, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    pub pool: PgPool,
    pub db_name: String,
    pub topic: String,
    pub dlq_topic: String,
    pub kafka: ClientConfig,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

/// A running processor in a test; `abort` simulates a crash, `stop` a graceful shutdown.
pub struct RunningProcessor {
    pub handle: JoinHandle<processors::Result<()>>,
    pub shutdown: CancellationToken,
}

impl RunningProcessor {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.expect("processor task").expect("processor ended cleanly");
    }

    pub async fn abort(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// A fresh, migrated database: `(pool, name, url)`.
pub async fn fresh_database(settings: &Settings) -> (PgPool, String, String) {
    let db_name = format!("fltest_{}", Uuid::new_v4().simple());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&settings.database_url)
        .await
        .expect("PostgreSQL of the local stack must be up (make stack-up)");
    sqlx::query(&format!(r#"CREATE DATABASE "{db_name}""#)).execute(&admin).await.expect("create test database");
    admin.close().await;
    let db_url = replace_db_name(&settings.database_url, &db_name);
    let pool = PgPoolOptions::new().max_connections(8).connect(&db_url).await.expect("connect test database");
    runtime::migrate(&pool).await.expect("migrations");
    (pool, db_name, db_url)
}

/// Drops a test database.
pub async fn drop_database(settings: &Settings, db_name: &str) {
    let admin = PgPoolOptions::new().max_connections(1).connect(&settings.database_url).await.expect("admin");
    let _ = sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)"#)).execute(&admin).await;
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(IngestOptions::default()).await
}

/// How a test's ingest server is built.
#[derive(Clone)]
pub struct IngestOptions {
    /// Keep `ts` order in the local Redis (as production does) rather than in-process only.
    pub redis: bool,
    pub config: ingest::IngestConfig,
    /// How long the producer waits for Kafka before the request gets 503.
    pub ack_timeout: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self { redis: false, config: ingest::IngestConfig::default(), ack_timeout: Duration::from_secs(5) }
    }
}

/// Serves an ingest router on a free local port, with client addresses (as `serve_http` does).
pub async fn serve_ingest(
    pool: &PgPool,
    kafka: &ClientConfig,
    topic: &str,
    options: &IngestOptions,
) -> (String, CancellationToken) {
    let publisher = ingest::Publisher::new(kafka, topic, options.ack_timeout).expect("producer");
    let order = if options.redis {
        let settings = Settings::load().expect("settings");
        let redis =
            runtime::connect_redis(&settings).await.expect("Redis of the local stack must be up (make stack-up)");
        ingest::TsOrder::with_redis(redis, options.ack_timeout + Duration::from_secs(5))
    } else {
        ingest::TsOrder::local_only()
    };
    let state = ingest::AppState::with_config(pool.clone(), publisher, order, options.config.clone());
    let app = ingest::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(token.cancelled_owned())
            .await
            .expect("serve");
    });
    (url, shutdown)
}

pub async fn spawn_app_with(options: IngestOptions) -> TestApp {
    let settings = Settings::load().expect("settings");
    let suffix = Uuid::new_v4().simple().to_string();
    let (pool, db_name, _) = fresh_database(&settings).await;
    let kafka = runtime::kafka_base(&settings);
    let topic = format!("fltest.telemetry.{suffix}");
    let dlq_topic = format!("fltest.dlq.{suffix}");
    create_topics(&kafka, &[&topic, &dlq_topic]).await;

    let (url, shutdown) = serve_ingest(&pool, &kafka, &topic, &options).await;
    TestApp { url, pool, db_name, topic, dlq_topic, kafka, http: reqwest::Client::new(), shutdown }
}

impl TestApp {
    pub async fn create_drone(&self, name: &str) -> (Uuid, String) {
        credentials::create_drone(&self.pool, name, None).await.expect("create drone")
    }

    pub async fn post_telemetry(&self, api_key: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/telemetry", self.url))
            .header("x-api-key", api_key)
            .json(body)
            .send()
            .await
            .expect("POST /v1/telemetry")
    }

    /// Starts the store group on this test's topic with its own consumer group id.
    pub async fn start_store(&self, group_id: &str, batch_max: usize) -> RunningProcessor {
        let store = processors::store::Store::new(self.pool.clone(), group_id, &self.topic).await.expect("store");
        let config = processors::RunnerConfig {
            group_id: group_id.to_owned(),
            topic: self.topic.clone(),
            dlq_topic: self.dlq_topic.clone(),
            batch_max,
            batch_wait: Duration::from_millis(20),
            kafka: self.kafka.clone(),
        };
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(processors::run(config, store, shutdown.clone()));
        RunningProcessor { handle, shutdown }
    }

    pub async fn row_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM telemetry_raw").fetch_one(&self.pool).await.expect("count")
    }

    /// Polls until `telemetry_raw` holds `expected` rows, or panics after `timeout`.
    pub async fn wait_for_rows(&self, expected: i64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let count = self.row_count().await;
            if count == expected {
                return;
            }
            assert!(count < expected, "more rows than packets: {count} > {expected}");
            assert!(tokio::time::Instant::now() < deadline, "only {count} of {expected} rows after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The end offset of every partition of `topic`.
    pub fn end_offsets(&self, topic: &str) -> Vec<(i32, i64)> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = self.kafka.clone().create().expect("consumer");
        (0..PARTITIONS)
            .map(|p| (p, consumer.fetch_watermarks(topic, p, Duration::from_secs(5)).expect("watermarks").1))
            .collect()
    }

    /// Drops the database and topics (only reached when the test passed).
    pub async fn cleanup(self) {
        self.shutdown.cancel();
        self.pool.close().await;
        drop_database(&Settings::load().expect("settings"), &self.db_name).await;
        delete_topics(&self.kafka, &[&self.topic, &self.dlq_topic]).await;
    }
}

pub async fn create_topics(kafka: &ClientConfig, topics: &[&str]) {
    let client: AdminClient<DefaultClientContext> = kafka.create().expect("admin client");
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1))).collect();
    let results = client
        .create_topics(&new, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
        .await
        .expect("Kafka of the local stack must be up (make stack-up)");
    for result in results {
        result.expect("create topic");
    }
}

pub async fn delete_topics(kafka: &ClientConfig, topics: &[&str]) {
    let client: AdminClient<DefaultClientContext> = kafka.create().expect("admin client");
    let _ = client.delete_topics(topics, &AdminOptions::new()).await;
}

fn replace_db_name(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Reads a recorded flight (`.jsonl.gz`) into JSON values.
pub fn read_recorded(name: &str) -> Vec<serde_json::Value> {
    use std::io::BufRead;
    let path = recorded_path(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|line| serde_json::from_str(&line.expect("line")).expect("json"))
        .collect()
}

pub fn recorded_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/flights").join(name)
}

/// A whole deployment as an operator runs it: the `flightline all` binary on a free port, with
/// its own database and its own prefixed topics on the shared broker.
pub struct Deployment {
    pub db_url: String,
    pub db_name: String,
    pub pool: PgPool,
    pub prefix: String,
    pub addr: String,
    pub kafka: ClientConfig,
}

impl Deployment {
    pub async fn new() -> Self {
        let settings = Settings::load().expect("settings");
        let (pool, db_name, db_url) = fresh_database(&settings).await;
        let prefix = format!("fltest.{}.", Uuid::new_v4().simple());
        let kafka = runtime::kafka_base(&settings);
        let topics: Vec<String> =
            ["telemetry.v1", "flights.v1", "telemetry.dlq"].iter().map(|t| format!("{prefix}{t}")).collect();
        create_topics(&kafka, &topics.iter().map(String::as_str).collect::<Vec<_>>()).await;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Deployment { db_url, db_name, pool, prefix, addr: format!("127.0.0.1:{port}"), kafka }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts `flightline all` and waits until `/readyz` answers 200.
    pub async fn start(&self) -> tokio::process::Child {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"))
            .arg("all")
            .env("DATABASE_URL", &self.db_url)
            .env("FLIGHTLINE_HTTP_ADDR", &self.addr)
            .env("FLIGHTLINE_TOPIC_PREFIX", &self.prefix)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn flightline all");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = reqwest::get(format!("{}/readyz", self.url())).await {
                if response.status() == 200 {
                    return child;
                }
            }
            assert!(child.try_wait().unwrap().is_none(), "flightline all exited during start-up");
            assert!(tokio::time::Instant::now() < deadline, "flightline all not ready after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn cleanup(self) {
        self.pool.close().await;
        drop_database(&Settings::load().expect("settings"), &self.db_name).await;
        let topics: Vec<String> =
            ["telemetry.v1", "flights.v1", "telemetry.dlq"].iter().map(|t| format!("{}{t}", self.prefix)).collect();
        delete_topics(&self.kafka, &topics.iter().map(String::as_str).collect::<Vec<_>>()).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Ingest test helpers

/// A minimal valid packet at `ts_ms` epoch milliseconds.
pub fn packet_at(ts_ms: i64, throttle: f64) -> serde_json::Value {
    serde_json::json!({ "ts": ts_ms, "throttle": throttle, "voltage": 22.5, "current": 10.0 })
}

/// `count` valid packets 5 ms apart starting at `start_ms`.
pub fn packets_from(start_ms: i64, count: usize) -> Vec<serde_json::Value> {
    (0..count).map(|i| packet_at(start_ms + 5 * i as i64, (i % 100) as f64 / 100.0)).collect()
}

/// A timestamp (epoch ms) comfortably in the past, so a test's packets are never "in the future".
pub fn past_ms() -> i64 {
    chrono::Utc::now().timestamp_millis() - 3_600_000
}

impl TestApp {
    /// Messages in this test's telemetry topic (sum of end offsets).
    pub fn messages_in_topic(&self) -> i64 {
        self.end_offsets(&self.topic).iter().map(|(_, end)| end).sum()
    }

    /// Every message of this test's telemetry topic: (key, decoded record).
    pub fn read_topic(&self) -> Vec<(String, schemas::TelemetryRecord)> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::{Message, Offset, TopicPartitionList};
        let ends = self.end_offsets(&self.topic);
        let total: i64 = ends.iter().map(|(_, end)| end).sum();
        let consumer: BaseConsumer = self
            .kafka
            .clone()
            .set("group.id", format!("fltest-reader-{}", Uuid::new_v4().simple()))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for (partition, _) in &ends {
            assignment.add_partition_offset(&self.topic, *partition, Offset::Beginning).expect("offset");
        }
        consumer.assign(&assignment).expect("assign");
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while (out.len() as i64) < total {
            assert!(std::time::Instant::now() < deadline, "read {} of {total} messages", out.len());
            let Some(message) = consumer.poll(Duration::from_millis(500)) else { continue };
            let message = message.expect("kafka message");
            let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8 key");
            let record = schemas::decode_telemetry(message.payload().expect("payload")).expect("decodable");
            out.push((key, record));
        }
        out
    }
}
