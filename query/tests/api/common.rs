//! What only the query suite needs, built on `testkit`: a real query server against the real
//! local stack, isolated per test by a fresh database, a fresh `flights` topic, and random drone
//! ids (so every Redis key and channel a test touches is its own). The [`Api`] it serves (users,
//! drones, requests) is a deref away.
#![allow(dead_code)]

use std::ops::Deref;
use std::time::Duration;

use query::{QuerySettings, QueryState};
use serde_json::Value;
use sqlx::PgPool;
use testkit::{Api, TestDb, Topics};
use tokio::sync::oneshot;
use uuid::Uuid;

pub use testkit::{assert_error, SseItem, SseReader, User};

pub const JWT_SECRET: &str = "test-secret-of-the-query-tests";

pub struct TestApp {
    api: Api,
    pub pool: PgPool,
    pub topic: String,
    pub redis: redis::Client,
    db: TestDb,
    topics: Topics,
    stop: Option<oneshot::Sender<()>>,
}

impl Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

pub struct Options {
    pub settings: QuerySettings,
    pub kafka_brokers: String,
}

impl Default for Options {
    fn default() -> Self {
        let settings = QuerySettings {
            jwt_secret: JWT_SECRET.to_owned(),
            token_lifetime: Duration::from_secs(600),
            signup_enabled: true,
            flights_topic: String::new(),
            kafka_ack_timeout: Duration::from_secs(5),
            sse_keepalive: Duration::from_secs(15),
            fleet_refresh: Duration::from_secs(10),
            ..QuerySettings::default()
        };
        Options { settings, kafka_brokers: testkit::env::kafka_brokers() }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(mut options: Options) -> TestApp {
    let db = TestDb::new().await;
    let mut topics = Topics::new();
    // A test pointing the app at a broker that is not there gets no topic.
    if options.kafka_brokers == testkit::env::kafka_brokers() {
        topics.create(&["flights.v1"], 1).await;
    }
    let topic = topics.name("flights.v1");
    options.settings.flights_topic = topic.clone();
    let mut kafka = testkit::kafka_config();
    kafka.set("bootstrap.servers", &options.kafka_brokers);
    let redis = testkit::env::redis_client();
    let state = QueryState::new(options.settings, db.pool.clone(), redis.clone(), &kafka)
        .await
        .expect("Redis of the local stack must be up");
    let app = query::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        // Client addresses reach the handlers, as in `flightline query` (per-address login budget).
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
    });
    TestApp { api: Api::new(url), pool: db.pool.clone(), topic, redis, db, topics, stop: Some(stop) }
}

impl TestApp {
    /// Inserts a `flights` row directly, as the sessionizer and analytics would.
    pub async fn insert_flight(&self, drone_id: Uuid, start_us: i64, end_us: i64, metrics: Option<Value>) -> Uuid {
        let id = schemas::flight_id(drone_id, start_us);
        let status = if metrics.is_some() { "done" } else { "pending" };
        sqlx::query(
            "INSERT INTO flights (id, drone_id, start_ts, end_ts, packet_count, source_partition, last_offset, \
                                  duration_s, total_mah, max_current, computed_metrics, analytics_status, analytics_version) \
             VALUES ($1, $2, to_timestamp($3 / 1e6), to_timestamp($4 / 1e6), 10, 0, 42, $5, 12.5, 30.0, $6, $7, $8)",
        )
        .bind(id)
        .bind(drone_id)
        .bind(start_us as f64)
        .bind(end_us as f64)
        .bind((end_us - start_us) as f64 / 1e6)
        .bind(&metrics)
        .bind(status)
        .bind(metrics.as_ref().map(|_| 1))
        .execute(&self.pool)
        .await
        .expect("insert flight");
        id
    }

    /// Inserts `count` raw rows of `drone_id`, `step_us` apart from `start_us`; the current of row
    /// i is `current(i)`.
    pub async fn insert_rows(
        &self,
        drone_id: Uuid,
        start_us: i64,
        step_us: i64,
        count: i64,
        current: impl Fn(i64) -> f64,
    ) {
        let mut ts = Vec::with_capacity(count as usize);
        let mut currents = Vec::with_capacity(count as usize);
        for i in 0..count {
            ts.push((start_us + i * step_us) as f64 / 1e6);
            currents.push(current(i));
        }
        sqlx::query(
            "INSERT INTO telemetry_raw (drone_id, ts, received_at, throttle, voltage, current, x, y, z, extra) \
             SELECT $1, to_timestamp(t), now(), 0.5, 22.0 - c / 100, c, 1.5, -2.0, 10.0, '{\"mode\": \"loiter, \\\"fast\\\"\"}'::jsonb \
             FROM unnest($2::float8[], $3::float8[]) AS u(t, c)",
        )
        .bind(drone_id)
        .bind(&ts)
        .bind(&currents)
        .execute(&self.pool)
        .await
        .expect("insert rows");
    }

    /// Stops the server, drops the database and topic (only reached when the test passed).
    pub async fn cleanup(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.db.drop().await;
        self.topics.delete().await;
    }
}
