//! What `tracing_e2e.rs` and `metrics_e2e.rs` share: a deployment of `flightline` processes on a
//! database and topics of their own, and a flight that closes inside one request.

#![allow(dead_code)] // each suite uses its part

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::Row;
use testkit::{TestDb, Topics};
use uuid::Uuid;

pub const PARTITIONS: i32 = 3;
pub const WAIT: Duration = Duration::from_secs(90);

/// `flightline` processes on their own database and topics; `addr` is the HTTP roles' address.
pub struct Setup {
    pub db: TestDb,
    pub topics: Topics,
    pub addr: String,
    children: Vec<tokio::process::Child>,
}

impl Setup {
    pub async fn new() -> Self {
        let db = TestDb::new().await;
        let mut topics = Topics::new();
        topics.create(&["telemetry.v1", "flights.v1", "telemetry.dlq"], PARTITIONS).await;
        Setup { db, topics, addr: free_addr(), children: Vec::new() }
    }

    /// Starts `flightline ARGS…` (tracing off unless `env` says otherwise); its log (stderr) goes
    /// to `log` when given.
    pub fn spawn(&mut self, args: &[&str], env: &[(&str, &str)], log: Option<&std::path::Path>) {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"));
        command
            .args(args)
            .env("DATABASE_URL", &self.db.url)
            .env("FLIGHTLINE_HTTP_ADDR", &self.addr)
            .env("FLIGHTLINE_TOPIC_PREFIX", &self.topics.prefix)
            .env("RUST_LOG", "warn")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("OTEL_TRACES_SAMPLER")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(log) = log {
            command.stderr(std::fs::File::create(log).expect("log file"));
        }
        self.children.push(command.spawn().expect("spawn flightline"));
    }

    /// Waits until `/readyz` of the HTTP role answers 200.
    pub async fn wait_ready(&mut self) {
        let url = format!("http://{}/readyz", self.addr);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) {
                return;
            }
            self.assert_running();
            assert!(tokio::time::Instant::now() < deadline, "{url} not ready after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn assert_running(&mut self) {
        for child in &mut self.children {
            assert!(child.try_wait().unwrap().is_none(), "a flightline process exited");
        }
    }

    pub async fn drone(&self, name: &str) -> (Uuid, String) {
        credentials::create_drone(&self.db.pool, name, None).await.expect("create drone")
    }

    /// POSTs [`flight_batch`] as the drone of `api_key`, with `traceparent` when given.
    pub async fn post_flight(&self, api_key: &str, traceparent: Option<&str>) -> reqwest::Response {
        let start_ms = chrono::Utc::now().timestamp_millis() - 60_000;
        let mut request = reqwest::Client::new()
            .post(format!("http://{}/v1/telemetry", self.addr))
            .header("x-api-key", api_key)
            .json(&flight_batch(start_ms));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send().await.expect("POST /v1/telemetry")
    }

    /// Waits until a flight of the drone has its metrics.
    pub async fn wait_for_metrics(&self, drone_id: Uuid) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let rows = sqlx::query("SELECT analytics_status FROM flights WHERE drone_id = $1")
                .bind(drone_id)
                .fetch_all(&self.db.pool)
                .await
                .unwrap();
            if rows.iter().any(|row| row.get::<String, _>("analytics_status") == "done") {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "the flight was not analysed within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops the processes, drops the database and topics (only reached when the test passed).
    pub async fn finish(mut self) {
        for child in &mut self.children {
            let _ = child.kill().await;
        }
        self.db.drop().await;
        self.topics.delete().await;
    }
}

pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("127.0.0.1:{port}")
}

/// 20 s of flight at 10 Hz, then 12 s on the ground: the idle run (over W = 10 s) closes the
/// flight inside this one request.
pub fn flight_batch(start_ms: i64) -> Value {
    let packets: Vec<Value> = (0..320)
        .map(|i| {
            let flying = i < 200;
            json!({
                "ts": start_ms + i * 100, "throttle": if flying { 0.6 } else { 0.0 },
                "voltage": 22.5 - i as f64 * 0.001, "current": if flying { 12.0 } else { 0.5 },
                "mah_drawn": i, "position": [i as f64 * 0.5, 0.0, 10.0],
            })
        })
        .collect();
    Value::Array(packets)
}
