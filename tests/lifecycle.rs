//! The `flightline` binary as an operator runs it: SIGTERM drains and exits 0, and `kill -9` at
//! any moment loses no acknowledged packet.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::Deployment;
use serde_json::json;
use testkit::Api;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(60);

async fn post(api: &Api, key: &str, from: i64, count: i64, start: chrono::DateTime<Utc>) {
    let packets: Vec<_> = (from..from + count)
        .map(|i| json!({"ts": (start + chrono::Duration::milliseconds(10 * i)).timestamp_millis(), "throttle": 0.5, "voltage": 22.0}))
        .collect();
    assert_eq!(api.post_telemetry(key, &json!(packets)).await.status(), 201);
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
    let deployment = Deployment::new().await;
    let pool = deployment.pool.clone();
    let (_, key) = credentials::create_drone(&pool, "lifecycle", None).await.unwrap();
    let start = Utc::now() - chrono::Duration::minutes(30);
    let count =
        || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM telemetry_raw").fetch_one(&pool).await.unwrap() };
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
        post(&deployment.api, &key, batch * 100, 100, start).await;
    }
    wait_for(1000).await;
    sigterm_and_wait(child).await;

    // kill -9 right after the acknowledgements: a restart still stores every packet once.
    let mut child = deployment.start().await;
    for batch in 10..20 {
        post(&deployment.api, &key, batch * 100, 100, start).await;
    }
    child.kill().await.expect("kill -9");
    let child = deployment.start().await;
    wait_for(2000).await;
    sigterm_and_wait(child).await;
    assert_eq!(count().await, 2000);

    deployment.cleanup().await;
}
