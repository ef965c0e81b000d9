//! Flights end to end: recorded real flights streamed through the API with `flightline send`
//! become the flights of CONTRACT.md §3 with the metrics of §4 — the same flights and the same
//! numbers as the pure sessionizer and metrics computed straight from the file — also when the
//! whole process is killed with `kill -9` in the middle of the stream.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{expected, Deployment};
use processors::sessionizer::machine::{ClosedFlight, FlightRule};
use serde_json::Value;
use sqlx::Row;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(120);

async fn send(deployment: &Deployment, key: &str, file: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"))
        .args(["send", "--api-key", key, "--target", &deployment.url(), "--file"])
        .arg(testkit::recorded_path(file))
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("flightline send")
}

/// Waits until the drone has `count` flights, all analysed, and returns them ordered by start.
async fn analysed_flights(deployment: &Deployment, drone_id: Uuid, count: usize) -> Vec<sqlx::postgres::PgRow> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = sqlx::query("SELECT * FROM flights WHERE drone_id = $1 ORDER BY start_ts")
            .bind(drone_id)
            .fetch_all(&deployment.pool)
            .await
            .unwrap();
        let done = rows.iter().filter(|r| r.get::<String, _>("analytics_status") == "done").count();
        if rows.len() == count && done == count {
            return rows;
        }
        assert!(rows.len() <= count, "more flights than the rule yields: {}", rows.len());
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} flights ({done} analysed) of {count} after {WAIT:?}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_flights_match(name: &str, stored: &[sqlx::postgres::PgRow], expected: &[(ClosedFlight, Value)]) {
    assert_eq!(stored.len(), expected.len(), "{name}: flight count");
    for (row, (flight, metrics)) in stored.iter().zip(expected) {
        assert_eq!(row.get::<Uuid, _>("id"), flight.flight_id, "{name}: flight id");
        assert_eq!(row.get::<DateTime<Utc>, _>("start_ts").timestamp_micros(), flight.start_ts_us, "{name}: start");
        assert_eq!(row.get::<DateTime<Utc>, _>("end_ts").timestamp_micros(), flight.end_ts_us, "{name}: end");
        assert_eq!(row.get::<i64, _>("packet_count"), flight.packet_count as i64, "{name}: packets");
        let stored_metrics: Value = row.get("computed_metrics");
        assert_eq!(&stored_metrics, metrics, "{name}: metrics of flight {}", flight.flight_id);
        assert_eq!(row.get::<Option<f64>, _>("energy_wh"), metrics["energy_wh"].as_f64(), "{name}: energy_wh column");
        assert_eq!(
            row.get::<Option<i32>, _>("analytics_version"),
            Some(processors::analytics::metrics::ANALYTICS_VERSION)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_flights_become_contract_flights_with_contract_metrics() {
    let deployment = Deployment::new().await;
    let child = deployment.start().await;
    // Every recorded log but the Mini 2 (that one is the kill -9 test's).
    let files = [
        "px4_pyulog_sample_small.jsonl.gz",
        "px4_robologs_test.jsonl.gz",
        "px4_auterion_esc_status.jsonl.gz",
        "ap_spark404_copter.jsonl.gz",
        "bf_fcblackbox_log00037_50hz.jsonl.gz",
        "bf_fcblackbox_log00037_200hz.jsonl.gz",
        "dji_air2s_2021-09-05_19-48.jsonl.gz",
    ];
    let mut cases = Vec::new();
    for file in files {
        let (drone_id, key) = credentials::create_drone(&deployment.pool, file, None).await.unwrap();
        let status = send(&deployment, &key, file).await.wait().await.unwrap();
        assert!(status.success(), "send {file}");
        cases.push((file, drone_id, expected(drone_id, &testkit::read_recorded(file), FlightRule::default())));
    }
    for (file, drone_id, expected) in &cases {
        assert!(!expected.is_empty(), "{file} yields no flight at all");
        let stored = analysed_flights(&deployment, *drone_id, expected.len()).await;
        assert_flights_match(file, &stored, expected);
        for (flight, metrics) in expected {
            // Plausible, not just equal: real flights draw energy, at a real voltage.
            let energy = metrics["energy_wh"].as_f64().expect("energy_wh");
            assert!(energy.is_finite() && energy > 0.0, "{file}: energy_wh {energy} of {}", flight.flight_id);
            let (min_v, max_v) = (metrics["min_voltage"].as_f64().unwrap(), metrics["max_voltage"].as_f64().unwrap());
            assert!(0.0 < min_v && min_v <= max_v && max_v < 60.0, "{file}: voltage {min_v}..{max_v}");
            assert!(metrics["duration_s"].as_f64().unwrap() >= 1.0, "{file}: duration");
        }
        // The flight's rows are tagged with its id.
        let tagged: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry_raw WHERE flight_id = $1")
            .bind(expected[0].0.flight_id)
            .fetch_one(&deployment.pool)
            .await
            .unwrap();
        assert_eq!(tagged, expected[0].0.packet_count as i64, "{file}: rows tagged with the flight id");
    }
    drop(child);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_gives_the_same_flights_and_metrics() {
    let deployment = Deployment::new().await;
    let mut child = deployment.start().await;
    // Several flights, split by the recording's gaps of over 10 s.
    let file = "dji_mini2_2021-09-05_19-23.jsonl.gz";
    let (drone_id, key) = credentials::create_drone(&deployment.pool, "mini2", None).await.unwrap();
    let expected = expected(drone_id, &testkit::read_recorded(file), FlightRule::default());
    assert!(expected.len() > 1);
    let mut sender = send(&deployment, &key, file).await;
    // Kill everything once some, but not all, of the stream is in.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows: i64 =
            sqlx::query_scalar("SELECT count(*) FROM telemetry_raw").fetch_one(&deployment.pool).await.unwrap();
        if rows > 5000 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the stream never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().await.unwrap();
    let child = deployment.start().await;
    // `send` retries through the outage, so the whole file gets in.
    let status = tokio::time::timeout(WAIT, sender.wait()).await.expect("send finished").unwrap();
    assert!(status.success(), "send survived the restart");
    let stored = analysed_flights(&deployment, drone_id, expected.len()).await;
    assert_flights_match(file, &stored, &expected);
    drop(child);
    deployment.cleanup().await;
}
