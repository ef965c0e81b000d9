//! The `flightline` binary as an operator runs it: SIGTERM drains and exits 0, and `kill -9` at
//! any moment loses no acknowledged packet.

mod common;

use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use flightline::Settings;
use serde_json::json;
use tokio::process::{Child, Command};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

struct Deployment {
    db_url: String,
    prefix: String,
    addr: String,
}

impl Deployment {
    /// Starts `flightline all` and waits until `/readyz` answers 200.
    async fn start(&self) -> Child {
        let mut child = Command::new(env!("CARGO_BIN_EXE_flightline"))
            .arg("all")
            .env("DATABASE_URL", &self.db_url)
            .env("FLIGHTLINE_HTTP_ADDR", &self.addr)
            .env("FLIGHTLINE_TOPIC_PREFIX", &self.prefix)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn flightline all");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(response) = reqwest::get(format!("http://{}/readyz", self.addr)).await {
                if response.status() == 200 {
                    return child;
                }
            }
            assert!(child.try_wait().unwrap().is_none(), "flightline all exited during start-up");
            assert!(tokio::time::Instant::now() < deadline, "flightline all not ready after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn post(addr: &str, key: &str, from: i64, count: i64, start: chrono::DateTime<Utc>) {
    let packets: Vec<_> = (from..from + count)
        .map(|i| json!({"ts": (start + chrono::Duration::milliseconds(10 * i)).timestamp_millis(), "throttle": 0.5, "voltage": 22.0}))
        .collect();
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/telemetry"))
        .header("x-api-key", key)
        .json(&packets)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 201);
}

async fn sigterm_and_wait(mut child: Child) {
    let pid = child.id().expect("pid").to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().await.expect("kill -TERM");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("flightline did not exit within 30 s of SIGTERM")
        .expect("wait");
    assert!(exit.success(), "flightline exited with {exit} after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_kill_9_loses_nothing() {
    let settings = Settings::load().unwrap();
    let (pool, db_name, db_url) = common::fresh_database(&settings).await;
    let prefix = format!("fltest.{}.", Uuid::new_v4().simple());
    let kafka = flightline::runtime::kafka_base(&settings);
    let topics = [format!("{prefix}telemetry.v1"), format!("{prefix}telemetry.dlq")];
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    common::create_topics(&kafka, &topic_refs).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let deployment = Deployment { db_url, prefix, addr: format!("127.0.0.1:{port}") };
    let (_, key) = ingest::create_drone(&pool, "lifecycle", None).await.unwrap();
    let start = Utc::now() - chrono::Duration::minutes(30);
    let count = || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM telemetry_raw").fetch_one(&pool).await.unwrap() };
    let wait_for = |expected: i64| {
        let count = &count;
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            while count().await != expected {
                assert!(tokio::time::Instant::now() < deadline, "rows stuck at {} of {expected}", count().await);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    // Graceful: everything acknowledged is stored, and SIGTERM exits 0.
    let child = deployment.start().await;
    for batch in 0..10 {
        post(&deployment.addr, &key, batch * 100, 100, start).await;
    }
    wait_for(1000).await;
    sigterm_and_wait(child).await;

    // kill -9 right after the acknowledgements: a restart still stores every packet once.
    let mut child = deployment.start().await;
    for batch in 10..20 {
        post(&deployment.addr, &key, batch * 100, 100, start).await;
    }
    child.kill().await.expect("kill -9");
    let child = deployment.start().await;
    wait_for(2000).await;
    sigterm_and_wait(child).await;
    assert_eq!(count().await, 2000);

    pool.close().await;
    common::drop_database(&settings, &db_name).await;
    common::delete_topics(&kafka, &topic_refs).await;
}
