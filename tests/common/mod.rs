//! What only the end-to-end suites need, built on `testkit`: a real ingest server and real
//! processors of this test (its own database, topics and consumer groups), and a whole
//! `flightline all` deployment.
#![allow(dead_code)]

use std::ops::Deref;
use std::time::Duration;

use rdkafka::ClientConfig;
use sqlx::PgPool;
use testkit::{Api, TestDb, Topics};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const PARTITIONS: i32 = 3;

/// An ingest server on this test's database and topics; the [`Api`] it serves is a deref away.
pub struct TestApp {
    api: Api,
    pub pool: PgPool,
    pub topic: String,
    pub dlq_topic: String,
    pub kafka: ClientConfig,
    db: TestDb,
    topics: Topics,
    shutdown: CancellationToken,
}

impl Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// A running processor in a test, on database connections of its own (as its own process would
/// have); `abort` simulates a crash, `stop` a graceful shutdown.
pub struct RunningProcessor {
    pub handle: JoinHandle<processors::Result<()>>,
    pub shutdown: CancellationToken,
    pool: PgPool,
}

impl RunningProcessor {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.expect("processor task").expect("processor ended cleanly");
        self.pool.close().await;
    }

    /// Kills the task wherever it is, and with it its connections (the server rolls back what
    /// they had open), as a crash of its process would.
    pub async fn abort(self) {
        self.handle.abort();
        let _ = self.handle.await;
        self.pool.close().await;
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(IngestOptions::default()).await
}

/// How a test's ingest server is built.
#[derive(Clone)]
pub struct IngestOptions {
    /// Keep `ts` order in the local Redis (as production does) rather than in-process only.
    pub redis: bool,
    /// Another Redis than the local stack's for that (a test that stops it).
    pub redis_url: Option<String>,
    pub config: ingest::IngestConfig,
    /// How long the producer waits for Kafka before the request gets 503.
    pub ack_timeout: Duration,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            redis: false,
            redis_url: None,
            config: ingest::IngestConfig::default(),
            ack_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves an ingest router on a free local port, with client addresses (as `serve_http` does).
pub async fn serve_ingest(
    pool: &PgPool,
    kafka: &ClientConfig,
    topic: &str,
    options: &IngestOptions,
) -> (String, CancellationToken) {
    let publisher =
        ingest::Publisher::new(kafka, topic, options.ack_timeout, Duration::from_millis(2)).expect("producer");
    let order = if options.redis {
        let client = match &options.redis_url {
            Some(url) => redis::Client::open(url.as_str()).expect("redis url"),
            None => testkit::env::redis_client(),
        };
        let redis = client
            .get_connection_manager()
            .await
            .expect("Redis of the local stack must be up (deploy/local/stack.sh up)");
        ingest::TsOrder::with_redis(redis)
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
    let db = TestDb::new().await;
    let mut topics = Topics::new();
    topics.create(&["telemetry.v1", "telemetry.dlq"], PARTITIONS).await;
    let (topic, dlq_topic, kafka) = (topics.name("telemetry.v1"), topics.name("telemetry.dlq"), topics.kafka.clone());
    let (url, shutdown) = serve_ingest(&db.pool, &kafka, &topic, &options).await;
    TestApp { api: Api::new(url), pool: db.pool.clone(), topic, dlq_topic, kafka, db, topics, shutdown }
}

impl TestApp {
    pub async fn create_drone(&self, name: &str) -> (Uuid, String) {
        credentials::create_drone(&self.pool, name, None).await.expect("create drone")
    }

    /// Starts the store group on this test's topic with its own consumer group id.
    pub async fn start_store(&self, group_id: &str, batch_max: usize) -> RunningProcessor {
        let pool = self.db.connect().await;
        let store = processors::store::Store::new(pool.clone(), group_id, &self.topic).await.expect("store");
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
        RunningProcessor { handle, shutdown, pool }
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
        testkit::end_offsets(&self.kafka, topic)
    }

    /// Messages in this test's telemetry topic.
    pub fn messages_in_topic(&self) -> i64 {
        testkit::message_count(&self.kafka, &self.topic)
    }

    /// Every message of this test's telemetry topic: (key, decoded record).
    pub async fn read_topic(&self) -> Vec<(String, schemas::TelemetryRecord)> {
        testkit::read_telemetry(&self.kafka, &self.topic).await
    }

    /// Stops the server, drops the database and topics (only reached when the test passed).
    pub async fn cleanup(self) {
        self.shutdown.cancel();
        self.db.drop().await;
        self.topics.delete().await;
    }
}

/// A whole deployment as an operator runs it: the `flightline all` binary on a free port, with
/// its own database and its own prefixed topics on the shared broker.
pub struct Deployment {
    pub api: Api,
    pub pool: PgPool,
    pub prefix: String,
    pub addr: String,
    pub kafka: ClientConfig,
    db: TestDb,
    topics: Topics,
}

impl Deployment {
    pub async fn new() -> Self {
        let db = TestDb::new().await;
        let mut topics = Topics::new();
        topics.create(&["telemetry.v1", "flights.v1", "telemetry.dlq"], PARTITIONS).await;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        Deployment {
            api: Api::new(format!("http://{addr}")),
            pool: db.pool.clone(),
            prefix: topics.prefix.clone(),
            addr,
            kafka: topics.kafka.clone(),
            db,
            topics,
        }
    }

    pub fn url(&self) -> String {
        self.api.url.clone()
    }

    /// Starts `flightline all` and waits until `/readyz` answers 200.
    pub async fn start(&self) -> tokio::process::Child {
        self.start_with(&[]).await
    }

    /// [`Deployment::start`] with more environment (configuration) for the process.
    pub async fn start_with(&self, env: &[(&str, &str)]) -> tokio::process::Child {
        self.start_logged(env, None).await
    }

    /// [`Deployment::start_with`], the process's log (stderr) going to `log` when given.
    pub async fn start_logged(&self, env: &[(&str, &str)], log: Option<&std::path::Path>) -> tokio::process::Child {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"));
        command
            .arg("all")
            .env("DATABASE_URL", &self.db.url)
            .env("FLIGHTLINE_HTTP_ADDR", &self.addr)
            .env("FLIGHTLINE_TOPIC_PREFIX", &self.prefix)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(log) = log {
            command.stderr(std::fs::File::create(log).expect("log file"));
        }
        let mut child = command.spawn().expect("spawn flightline all");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = self.api.http.get(self.api.at("/readyz")).send().await {
                if response.status() == 200 {
                    return child;
                }
            }
            assert!(child.try_wait().unwrap().is_none(), "flightline all exited during start-up");
            assert!(tokio::time::Instant::now() < deadline, "flightline all not ready after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Drops the database and topics (only reached when the test passed).
    pub async fn cleanup(self) {
        self.db.drop().await;
        self.topics.delete().await;
    }
}

/// The analytics rows of a drone's packets as the API took them (JSON, `ts` RFC 3339).
pub fn rows_of(packets: &[serde_json::Value]) -> Vec<processors::analytics::metrics::FlightRow> {
    let triple = |v: &serde_json::Value| {
        v.as_array().map(|a| [a[0].as_f64().unwrap(), a[1].as_f64().unwrap(), a[2].as_f64().unwrap()])
    };
    packets
        .iter()
        .map(|p| processors::analytics::metrics::FlightRow {
            ts_us: chrono::DateTime::parse_from_rfc3339(p["ts"].as_str().unwrap()).unwrap().timestamp_micros(),
            throttle: p["throttle"].as_f64().unwrap(),
            voltage: p["voltage"].as_f64(),
            current: p["current"].as_f64(),
            mah_drawn: p["mah_drawn"].as_i64(),
            position: triple(&p["position"]),
            gps: p
                .get("gps")
                .map(|g| [g["lat"].as_f64().unwrap(), g["lon"].as_f64().unwrap(), g["alt_m"].as_f64().unwrap()]),
            velocity: triple(&p["velocity"]),
            attitude: triple(&p["attitude"]),
        })
        .collect()
}

/// The flights and metrics CONTRACT.md §3/§4 define for one drone's stream under `rule`,
/// computed without any service; the stream's end counts as the drone going silent.
pub fn expected(
    drone_id: Uuid,
    packets: &[serde_json::Value],
    rule: processors::sessionizer::machine::FlightRule,
) -> Vec<(processors::sessionizer::machine::ClosedFlight, serde_json::Value)> {
    let rows = rows_of(packets);
    let mut machine = processors::sessionizer::machine::Sessionizer::new(rule);
    let mut flights: Vec<processors::sessionizer::machine::ClosedFlight> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| machine.on_packet(drone_id, r.ts_us, r.throttle, 0, i as i64))
        .collect();
    flights.extend(machine.close_all());
    flights
        .into_iter()
        .map(|flight| {
            let mut frame = processors::analytics::metrics::FlightRows::with_capacity(0);
            for row in rows.iter().filter(|r| r.ts_us >= flight.start_ts_us && r.ts_us <= flight.end_ts_us) {
                frame.push(*row);
            }
            let metrics = processors::analytics::metrics::compute(
                &frame,
                flight.start_ts_us,
                flight.end_ts_us,
                rule.throttle_threshold,
            )
            .unwrap();
            (flight, serde_json::to_value(metrics).unwrap())
        })
        .collect()
}
