//! Test harness: a real query server against the real local stack, isolated per test by a fresh
//! database (migrated from `../migrations`), a fresh `flights` topic, and random drone ids (so
//! every Redis key and channel a test touches is its own).
#![allow(dead_code)]

use std::time::Duration;

use query::{QuerySettings, QueryState};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-of-the-query-tests";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub fn database_url() -> String {
    env_or("DATABASE_URL", "postgres://flightline:flightline@127.0.0.1:5432/flightline")
}

pub fn redis_url() -> String {
    env_or("REDIS_URL", "redis://127.0.0.1:6379")
}

pub fn kafka_brokers() -> String {
    env_or("KAFKA_BROKERS", "127.0.0.1:9092")
}

pub fn kafka_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

pub struct TestApp {
    pub url: String,
    pub pool: PgPool,
    pub db_name: String,
    pub topic: String,
    pub http: reqwest::Client,
    pub redis: redis::Client,
    stop: Option<oneshot::Sender<()>>,
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
        };
        Options { settings, kafka_brokers: kafka_brokers() }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(mut options: Options) -> TestApp {
    let suffix = Uuid::new_v4().simple().to_string();
    let db_name = format!("flqtest_{suffix}");
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&database_url())
        .await
        .expect("PostgreSQL of the local stack must be up (deploy/local/stack.sh up)");
    sqlx::query(&format!(r#"CREATE DATABASE "{db_name}""#)).execute(&admin).await.expect("create test database");
    admin.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&replace_db_name(&database_url(), &db_name))
        .await
        .expect("connect test database");
    sqlx::migrate!("../migrations").run(&pool).await.expect("migrations");

    let topic = format!("flqtest.flights.{suffix}");
    if options.kafka_brokers == kafka_brokers() {
        create_topic(&kafka_config(&options.kafka_brokers), &topic).await;
    }
    options.settings.flights_topic = topic.clone();
    let redis = redis::Client::open(redis_url()).expect("redis url");
    let state = QueryState::new(options.settings, pool.clone(), redis.clone(), &kafka_config(&options.kafka_brokers))
        .await
        .expect("Redis of the local stack must be up");
    let app = query::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
    });
    TestApp { url, pool, db_name, topic, http: reqwest::Client::new(), redis, stop: Some(stop) }
}

async fn create_topic(kafka: &ClientConfig, topic: &str) {
    let client: AdminClient<DefaultClientContext> = kafka.create().expect("admin client");
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let results = client
        .create_topics(&[new], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
        .await
        .expect("Kafka of the local stack must be up");
    for result in results {
        result.expect("create topic");
    }
}

fn replace_db_name(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// A signed-up, logged-in user.
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub token: String,
}

impl TestApp {
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.http
            .post(self.at("/v1/auth/signup"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("POST signup")
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.http
            .post(self.at("/v1/auth/token"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("POST token")
    }

    /// A new user with a random email, and its token.
    pub async fn user(&self) -> User {
        let email = format!("pilot-{}@example.com", Uuid::new_v4().simple());
        let response = self.signup(&email, "password123").await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        let id = Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();
        let response = self.login(&email, "password123").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        User { id, email, token: body["access_token"].as_str().unwrap().to_owned() }
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.http.get(self.at(path)).bearer_auth(token).send().await.expect("GET")
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Response {
        self.http.post(self.at(path)).bearer_auth(token).json(body).send().await.expect("POST")
    }

    /// Creates a drone through the API: (id, api key).
    pub async fn drone(&self, user: &User, name: &str) -> (Uuid, String) {
        let response = self.post("/v1/drones", &user.token, &json!({"name": name})).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        (Uuid::parse_str(body["id"].as_str().unwrap()).unwrap(), body["api_key"].as_str().unwrap().to_owned())
    }

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

    /// Drops the database and topic (only reached when the test passed).
    pub async fn cleanup(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.pool.close().await;
        if let Ok(admin) = PgPoolOptions::new().max_connections(1).connect(&database_url()).await {
            let _ = sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.db_name))
                .execute(&admin)
                .await;
        }
        let client: AdminClient<DefaultClientContext> = kafka_config(&kafka_brokers()).create().expect("admin client");
        let _ = client.delete_topics(&[&self.topic], &AdminOptions::new()).await;
    }
}

/// Asserts the status and the contract's error body; returns the `error` code.
pub async fn assert_error(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status, "unexpected status");
    let body: Value = response.json().await.expect("error body is JSON");
    assert!(body["message"].is_string(), "message missing: {body}");
    assert!(body["details"].is_array(), "details missing: {body}");
    body["error"].as_str().expect("error code").to_owned()
}

/// Reads Server-Sent Events from a streaming response.
pub struct SseReader {
    response: Response,
    buffer: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SseItem {
    Comment(String),
    Event { event: Option<String>, data: String },
}

impl SseReader {
    pub fn new(response: Response) -> Self {
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        SseReader { response, buffer: String::new() }
    }

    /// The next comment or event, or panics after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> SseItem {
        tokio::time::timeout(timeout, self.next_item()).await.expect("no SSE item in time")
    }

    async fn next_item(&mut self) -> SseItem {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = None;
                let mut data = Vec::new();
                let mut comment = None;
                for line in block.lines() {
                    if let Some(text) = line.strip_prefix(':') {
                        comment = Some(text.trim().to_owned());
                    } else if let Some(name) = line.strip_prefix("event:") {
                        event = Some(name.trim().to_owned());
                    } else if let Some(text) = line.strip_prefix("data:") {
                        data.push(text.strip_prefix(' ').unwrap_or(text).to_owned());
                    }
                }
                if data.is_empty() {
                    if let Some(comment) = comment {
                        return SseItem::Comment(comment);
                    }
                    continue;
                }
                return SseItem::Event { event, data: data.join("\n") };
            }
            let chunk = self.response.chunk().await.expect("SSE body").expect("SSE stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }

    /// The next `telemetry` event's data as JSON, skipping comments.
    pub async fn next_telemetry(&mut self, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                SseItem::Comment(_) => continue,
                SseItem::Event { event, data } => {
                    assert_eq!(event.as_deref(), Some("telemetry"));
                    return serde_json::from_str(&data).expect("event data is JSON");
                }
            }
        }
    }
}
