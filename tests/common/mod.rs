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
    let admin = PgPoolOptions::new().max_connections(1).connect(&settings.database_url).await.expect(
        "PostgreSQL of the local stack must be up (make stack-up)",
    );
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
    let settings = Settings::load().expect("settings");
    let suffix = Uuid::new_v4().simple().to_string();
    let (pool, db_name, _) = fresh_database(&settings).await;
    let kafka = runtime::kafka_base(&settings);
    let topic = format!("fltest.telemetry.{suffix}");
    let dlq_topic = format!("fltest.dlq.{suffix}");
    create_topics(&kafka, &[&topic, &dlq_topic]).await;

    let publisher = ingest::Publisher::new(&kafka, &topic, Duration::from_secs(5)).expect("producer");
    let app = ingest::router(ingest::AppState::new(pool.clone(), publisher));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await.expect("serve");
    });
    TestApp {
        url,
        pool,
        db_name,
        topic,
        dlq_topic,
        kafka,
        http: reqwest::Client::new(),
        shutdown,
    }
}

impl TestApp {
    pub async fn create_drone(&self, name: &str) -> (Uuid, String) {
        ingest::create_drone(&self.pool, name, None).await.expect("create drone")
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
        let store = processors::store::Store::new(self.pool.clone(), group_id).await.expect("store");
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
    let new: Vec<NewTopic> =
        topics.iter().map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1))).collect();
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
