//! The archive group end to end, against the real Cassandra node of the local stack
//! (`deploy/local/stack.sh up`, 127.0.0.1:9042; `FLIGHTLINE_ARCHIVE_NODES` for another): packets
//! POSTed to ingest are in the archive exactly once and equal to their `telemetry_raw` rows,
//! through a `kill -9` of the archive process and an outage of the node.
//!
//! Each test has a keyspace of its own. The outage test stops the shared node, so it takes the
//! suite's lock exclusively and the others share it.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{spawn_app, Deployment, TestApp};
use processors::archive::{day_of, ArchiveConfig, ArchiveRow, ArchiveTable, Replication, TABLE};
use reqwest::StatusCode;
use scylla::client::session::Session;
use scylla::statement::Consistency;
use scylla::value::CqlDate;
use serde_json::{json, Value};
use sqlx::Row;
use tokio::sync::RwLock;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(90);

/// Shared by every test; the outage test takes it alone.
static NODE: RwLock<()> = RwLock::const_new(());

fn archive_nodes() -> String {
    std::env::var("FLIGHTLINE_ARCHIVE_NODES").unwrap_or_else(|_| "127.0.0.1:9042".into())
}

/// One test's keyspace on the archive node.
struct TestArchive {
    config: ArchiveConfig,
    session: Arc<Session>,
    table: Option<ArchiveTable>,
}

impl TestArchive {
    fn config() -> ArchiveConfig {
        ArchiveConfig {
            nodes: ArchiveConfig::parse_nodes(&archive_nodes()),
            keyspace: format!("fltest_{}", Uuid::new_v4().simple()),
            consistency: Consistency::LocalQuorum,
            concurrency: 16,
            replication: Replication { strategy: "SimpleStrategy".into(), factor: 1 },
        }
    }

    async fn connect(config: ArchiveConfig) -> Self {
        let session = processors::archive::connect(&config)
            .await
            .expect("the Cassandra node of the local stack must be up on 127.0.0.1:9042 (deploy/local/stack.sh up)");
        Self { config, session: Arc::new(session), table: None }
    }

    /// A fresh keyspace, created as `flightline migrate` does.
    async fn migrated() -> Self {
        let archive = Self::connect(Self::config()).await;
        processors::archive::migrate(&archive.session, &archive.config).await.expect("archive migration");
        archive
    }

    /// The environment that points a `flightline` process at this keyspace.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FLIGHTLINE_ARCHIVE_NODES", archive_nodes()),
            ("FLIGHTLINE_ARCHIVE_KEYSPACE", self.config.keyspace.clone()),
        ]
    }

    async fn table(&mut self) -> &ArchiveTable {
        if self.table.is_none() {
            let table = ArchiveTable::new(self.session.clone(), &self.config).await.expect("archive table");
            self.table = Some(table);
        }
        self.table.as_ref().unwrap()
    }

    /// Rows of `drone` between `from_us` and `to_us`, counted by the node.
    async fn count(&self, drone: Uuid, from_us: i64, to_us: i64) -> anyhow::Result<i64> {
        let cql = format!("SELECT count(*) FROM {}.{TABLE} WHERE drone_id = ? AND day = ?", self.config.keyspace);
        let mut total = 0;
        for day in day_of(from_us).0..=day_of(to_us).0 {
            let result = self.session.query_unpaged(cql.clone(), (drone, CqlDate(day))).await?.into_rows_result()?;
            let (count,): (i64,) = result.single_row()?;
            total += count;
        }
        Ok(total)
    }

    /// Polls until the drones' rows add up to `expected` (never more), or panics after `timeout`.
    async fn wait_for(&self, drones: &[Uuid], from_us: i64, to_us: i64, expected: i64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut count = 0;
            for drone in drones {
                count += self.count(*drone, from_us, to_us).await.unwrap_or(-1_000_000);
            }
            if count == expected {
                return;
            }
            assert!(count < expected, "more archive rows than packets: {count} > {expected}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {count} of {expected} archive rows after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn drop(self) {
        let cql = format!("DROP KEYSPACE IF EXISTS {}", self.config.keyspace);
        self.session.query_unpaged(cql, &[]).await.expect("drop keyspace");
    }
}

/// testkit's packet with every field, less the optional fields `i` leaves out (so absence is
/// archived too), and values that vary with `i`.
fn packet(ts_ms: i64, i: usize) -> Value {
    let mut p = testkit::full_packet(ts_ms);
    let fields = p.as_object_mut().expect("an object");
    fields.insert("throttle".into(), json!((i % 100) as f64 / 100.0));
    fields.insert("voltage".into(), json!(22.0 + (i % 7) as f64 * 0.125));
    fields.insert("rssi".into(), json!(-90 + (i % 50) as i64));
    let absent: &[&str] = match i % 5 {
        0 => &[],
        1 => &["gps", "attitude", "extra"],
        2 => &["voltage", "current", "mah_drawn", "rssi"],
        3 => &["position", "velocity", "extra"],
        _ => &["gps", "position", "velocity", "attitude", "extra", "rssi"],
    };
    for field in absent {
        fields.remove(*field);
    }
    p
}

/// `count` packets 20 ms apart from `start_ms`, numbered from `from`.
fn packets(start_ms: i64, from: usize, count: usize) -> Vec<Value> {
    (from..from + count).map(|i| packet(start_ms + 20 * i as i64, i)).collect()
}

async fn post_all(api: &testkit::Api, key: &str, packets: &[Value]) {
    for chunk in packets.chunks(250) {
        let response = api.post_telemetry(key, &json!(chunk)).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{}", response.text().await.unwrap_or_default());
    }
}

/// `telemetry_raw` of the drones as archive rows (extra apart, compared as JSON).
async fn postgres_rows(pool: &sqlx::PgPool, drones: &[Uuid]) -> Vec<(ArchiveRow, Option<Value>)> {
    let rows = sqlx::query(
        "SELECT drone_id, ts, received_at, throttle, voltage, current, mah_drawn, rssi, x, y, z, lat, lon, alt_m,
                vx, vy, vz, roll, pitch, yaw, extra
         FROM telemetry_raw WHERE drone_id = ANY($1) ORDER BY drone_id, ts",
    )
    .bind(drones)
    .fetch_all(pool)
    .await
    .expect("telemetry_raw");
    rows.iter()
        .map(|r| {
            let ts_us = r.get::<chrono::DateTime<chrono::Utc>, _>("ts").timestamp_micros();
            let row = ArchiveRow {
                drone_id: r.get("drone_id"),
                day: day_of(ts_us),
                ts_us,
                received_at_us: r.get::<chrono::DateTime<chrono::Utc>, _>("received_at").timestamp_micros(),
                throttle: r.get("throttle"),
                voltage: r.get("voltage"),
                current: r.get("current"),
                mah_drawn: r.get("mah_drawn"),
                rssi: r.get("rssi"),
                x: r.get("x"),
                y: r.get("y"),
                z: r.get("z"),
                lat: r.get("lat"),
                lon: r.get("lon"),
                alt_m: r.get("alt_m"),
                vx: r.get("vx"),
                vy: r.get("vy"),
                vz: r.get("vz"),
                roll: r.get("roll"),
                pitch: r.get("pitch"),
                yaw: r.get("yaw"),
                extra: None,
            };
            (row, r.get::<Option<Value>, _>("extra"))
        })
        .collect()
}

/// The archive's rows of the drones, in the same order and shape as [`postgres_rows`].
async fn archive_rows(
    table: &ArchiveTable,
    drones: &[Uuid],
    from_us: i64,
    to_us: i64,
) -> Vec<(ArchiveRow, Option<Value>)> {
    let mut sorted = drones.to_vec();
    sorted.sort();
    let mut rows = Vec::new();
    for drone in sorted {
        for record in table.read(drone, from_us, to_us).await.expect("archive read") {
            let mut row = ArchiveRow::from_record(&record);
            let extra = row.extra.take().map(|json| serde_json::from_str::<Value>(&json).unwrap());
            rows.push((row, extra));
        }
    }
    rows
}

/// `flightline process archive` on this test's topics and keyspace, as its own process.
fn spawn_archive(app: &TestApp, archive: &TestArchive, batch_max: usize) -> tokio::process::Child {
    let prefix = app.topic.strip_suffix("telemetry.v1").expect("prefixed topic");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"))
        .args(["process", "archive"])
        .env("FLIGHTLINE_TOPIC_PREFIX", prefix)
        .env("FLIGHTLINE_ARCHIVE_BATCH_MAX", batch_max.to_string())
        .env("RUST_LOG", "warn")
        .envs(archive.env())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn flightline process archive")
}

/// Brings the node back when the outage test ends, whichever way it ends.
struct NodeBack;

impl NodeBack {
    fn stack(command: &str) {
        let status = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local/stack.sh"))
            .arg(command)
            .stdout(Stdio::null())
            .status()
            .expect("run deploy/local/stack.sh");
        assert!(status.success(), "deploy/local/stack.sh {command} failed");
    }
}

impl Drop for NodeBack {
    fn drop(&mut self) {
        Self::stack("start-cassandra");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_of_several_drones_are_archived_once_equal_to_their_telemetry_raw_rows() {
    let _node = NODE.read().await;
    let mut archive = TestArchive::connect(TestArchive::config()).await;
    let deployment = Deployment::new().await;
    // `flightline all` with an archive configured: migrates its keyspace and runs the group.
    let env = archive.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = deployment.start_with(&env).await;
    let user = deployment.api.user().await;
    let start_ms = testkit::past_ms();
    let mut drones = Vec::new();
    for n in 0..3 {
        let (drone, key) = deployment.api.drone(&user, &format!("archive-{n}")).await;
        let sent = packets(start_ms, 0, 600 + 100 * n);
        post_all(&deployment.api, &key, &sent).await;
        drones.push(drone);
    }
    let total = 600 + 700 + 800;
    let (from_us, to_us) = (start_ms * 1000, (start_ms + 20 * 800) * 1000);
    archive.wait_for(&drones, from_us, to_us, total, WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let stored = loop {
        let stored = postgres_rows(&deployment.pool, &drones).await;
        if stored.len() as i64 == total || tokio::time::Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let archived = archive_rows(archive.table().await, &drones, from_us, to_us).await;
    assert_eq!(archived.len(), stored.len());
    for (a, s) in archived.iter().zip(&stored) {
        assert_eq!(a, s, "archive row differs from telemetry_raw");
    }
    child.kill().await.unwrap();
    deployment.cleanup().await;
    archive.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_of_the_archive_process_mid_stream_loses_and_duplicates_nothing() {
    let _node = NODE.read().await;
    let archive = TestArchive::migrated().await;
    let app = spawn_app().await;
    let store = app.start_store("store-archive-kill", 500).await;
    let mut drones = Vec::new();
    let mut keys = Vec::new();
    for n in 0..3 {
        let (drone, key) = app.create_drone(&format!("kill-{n}")).await;
        drones.push(drone);
        keys.push(key);
    }
    let start_ms = testkit::past_ms();
    let per_drone = 3000;
    let (from_us, to_us) = (start_ms * 1000, (start_ms + 20 * per_drone as i64) * 1000);
    // Small batches, so the kill lands between acknowledged writes and uncommitted offsets.
    let mut child = spawn_archive(&app, &archive, 50);
    let sender = {
        let api = testkit::Api::new(app.url.clone());
        let keys = keys.clone();
        tokio::spawn(async move {
            for round in 0..(per_drone / 250) {
                for key in &keys {
                    post_all(&api, key, &packets(start_ms, round * 250, 250)).await;
                }
            }
        })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut count = 0;
        for drone in &drones {
            count += archive.count(*drone, from_us, to_us).await.unwrap_or(0);
        }
        if count >= 1500 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the archive group wrote only {count} rows");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.start_kill().expect("kill -9 the archive process");
    child.wait().await.unwrap();
    let mut child = spawn_archive(&app, &archive, 50);
    sender.await.expect("sender");
    let total = 3 * per_drone as i64;
    archive.wait_for(&drones, from_us, to_us, total, WAIT).await;
    // Every packet, once: each drone's archived ts are exactly the ones it sent.
    let mut archive = archive;
    let table = archive.table().await.clone();
    for drone in &drones {
        let ts: Vec<i64> = table.read(*drone, from_us, to_us).await.unwrap().iter().map(|r| r.ts_us).collect();
        let sent: Vec<i64> = (0..per_drone as i64).map(|i| (start_ms + 20 * i) * 1000).collect();
        assert_eq!(ts, sent);
    }
    child.kill().await.unwrap();
    app.wait_for_rows(total, WAIT).await;
    store.stop().await;
    app.cleanup().await;
    archive.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_archive_node_down_ingest_and_store_go_on_and_the_archive_catches_up() {
    let _node = NODE.write().await;
    let archive = TestArchive::migrated().await;
    let app = spawn_app().await;
    let store = app.start_store("store-archive-outage", 500).await;
    let (drone, key) = app.create_drone("outage").await;
    let start_ms = testkit::past_ms();
    let (from_us, to_us) = (start_ms * 1000, (start_ms + 20 * 2000) * 1000);
    let mut child = spawn_archive(&app, &archive, 500);
    post_all(&app, &key, &packets(start_ms, 0, 1000)).await;
    archive.wait_for(&[drone], from_us, to_us, 1000, WAIT).await;

    let back = NodeBack;
    NodeBack::stack("stop-cassandra");
    // Ingest answers 201 and the store group keeps writing while the archive is away.
    post_all(&app, &key, &packets(start_ms, 1000, 1000)).await;
    app.wait_for_rows(2000, WAIT).await;
    assert!(child.try_wait().unwrap().is_none(), "the archive group must wait for its node, not exit");
    drop(back); // start-cassandra
    let archive = TestArchive::connect(archive.config.clone()).await;
    archive.wait_for(&[drone], from_us, to_us, 2000, WAIT).await;
    assert!(child.try_wait().unwrap().is_none());
    child.kill().await.unwrap();
    store.stop().await;
    app.cleanup().await;
    archive.drop().await;
}

#[tokio::test]
async fn the_archive_group_without_an_archive_is_refused_with_a_clear_error() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"))
        .args(["process", "archive"])
        .env("FLIGHTLINE_ARCHIVE_NODES", "")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("archive_nodes"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_the_archive_group_rewrites_the_range_from_the_log_idempotently() {
    let _node = NODE.read().await;
    let archive = TestArchive::migrated().await;
    let app = spawn_app().await;
    let (drone, key) = app.create_drone("replayed").await;
    let start_ms = testkit::past_ms();
    let (from_us, to_us) = (start_ms * 1000, (start_ms + 20 * 1500) * 1000);
    // In the log only: no archive group ran.
    post_all(&app, &key, &packets(start_ms, 0, 1500)).await;
    let prefix = app.topic.strip_suffix("telemetry.v1").unwrap().to_owned();
    let replay = |args: Vec<String>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"));
        command
            .arg("replay")
            .args(args)
            .env("FLIGHTLINE_TOPIC_PREFIX", &prefix)
            .env("RUST_LOG", "warn")
            .envs(archive.env())
            .stderr(Stdio::null());
        async move {
            let output = command.output().await.expect("flightline replay");
            assert!(output.status.success(), "replay failed");
            serde_json::from_slice::<Value>(&output.stdout).expect("a JSON summary")
        }
    };
    let from = start_ms.to_string();
    let dry = replay(vec!["--group".into(), "archive".into(), "--from".into(), from.clone(), "--dry-run".into()]).await;
    assert_eq!((dry["rows_in_range"].as_u64(), dry["rows_written"].as_u64()), (Some(1500), Some(0)));
    assert_eq!(archive.count(drone, from_us, to_us).await.unwrap(), 0);
    // Only the second half of the range, then all of it twice: each packet is one row.
    let half = (start_ms + 20 * 750).to_string();
    let summary = replay(vec!["--group".into(), "archive".into(), "--from".into(), half]).await;
    assert_eq!(summary["rows_written"].as_u64(), Some(750), "{summary}");
    assert_eq!(archive.count(drone, from_us, to_us).await.unwrap(), 750);
    for _ in 0..2 {
        let summary = replay(vec!["--group".into(), "archive".into(), "--from".into(), from.clone()]).await;
        assert_eq!(summary["rows_written"].as_u64(), Some(1500), "{summary}");
        assert_eq!(archive.count(drone, from_us, to_us).await.unwrap(), 1500);
    }
    app.cleanup().await;
    archive.drop().await;
}

/// A flight of `seconds` s at 20 Hz from `start_ms` (throttle up, then 12 s idle, which closes it).
fn flight_packets(start_ms: i64, seconds: i64) -> Vec<Value> {
    let flying = seconds * 20;
    (0..flying + 12 * 20)
        .map(|i| {
            let t = i as f64 / 20.0;
            let throttle = if i < flying { 0.4 + 0.2 * (t / 3.0).sin().abs() } else { 0.0 };
            json!({
                "ts": start_ms + 50 * i, "throttle": throttle, "voltage": 16.8 - t * 0.01,
                "current": 5.0 + throttle * 20.0, "mah_drawn": (t * 10.0) as i64,
                "position": [t * 2.0, (t / 5.0).sin() * 10.0, 20.0 + (t / 7.0).cos()],
                "velocity": [2.0, (t / 5.0).cos() * 2.0, 0.0], "attitude": [(t).sin(), (t / 2.0).cos(), t % 360.0]
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flight_past_postgres_retention_is_recomputed_from_the_archive_with_the_same_metrics() {
    let _node = NODE.read().await;
    let archive = TestArchive::connect(TestArchive::config()).await;
    let deployment = Deployment::new().await;
    // Three days ago: a day whose partition the retention of one day drops.
    let day = (chrono::Utc::now() - chrono::Duration::days(3)).date_naive();
    let start_ms = day.and_hms_opt(10, 0, 0).unwrap().and_utc().timestamp_millis();
    sqlx::query("SELECT flightline_ensure_partitions($1, 1)").bind(day).execute(&deployment.pool).await.unwrap();
    let env = archive.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut child = deployment.start_with(&env).await;
    let user = deployment.api.user().await;
    let (drone, key) = deployment.api.drone(&user, "retained").await;
    let sent = flight_packets(start_ms, 60);
    post_all(&deployment.api, &key, &sent).await;
    // A later packet, so the sessionizer's event time passes the idle window and closes the flight.
    post_all(&deployment.api, &key, &[packet(start_ms + 50 * sent.len() as i64 + 30_000, 0)]).await;
    let (from_us, to_us) = (start_ms * 1000, (start_ms + 3_600_000) * 1000);
    archive.wait_for(&[drone], from_us, to_us, sent.len() as i64 + 1, WAIT).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let (flight_id, metrics, updated_at) = loop {
        let row: Option<(Uuid, Value, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "SELECT id, computed_metrics, updated_at FROM flights WHERE drone_id = $1 AND analytics_status = 'done'",
        )
        .bind(drone)
        .fetch_optional(&deployment.pool)
        .await
        .unwrap();
        if let Some(row) = row {
            break row;
        }
        assert!(tokio::time::Instant::now() < deadline, "the flight was not analysed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let dropped = processors::store::drop_expired_partitions(&deployment.pool, 1).await.unwrap();
    assert!(dropped.contains(&format!("telemetry_raw_{}", day.format("%Y%m%d"))), "{dropped:?}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry_raw WHERE drone_id = $1")
        .bind(drone)
        .fetch_one(&deployment.pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the flight's rows are gone from PostgreSQL");

    let response = deployment.api.post(&format!("/v1/flights/{flight_id}/recompute"), &user.token, &json!({})).await;
    assert!(response.status().is_success(), "recompute: {}", response.status());
    let deadline = tokio::time::Instant::now() + WAIT;
    let recomputed = loop {
        let (status, metrics, updated): (String, Option<Value>, chrono::DateTime<chrono::Utc>) =
            sqlx::query_as("SELECT analytics_status, computed_metrics, updated_at FROM flights WHERE id = $1")
                .bind(flight_id)
                .fetch_one(&deployment.pool)
                .await
                .unwrap();
        if updated > updated_at {
            assert_eq!(status, "done");
            break metrics.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "the recompute did not happen");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(recomputed, metrics, "metrics recomputed from the archive differ");
    child.kill().await.unwrap();
    deployment.cleanup().await;
    archive.drop().await;
}

/// [`flight_packets`] with the fields the raw endpoints render every way: `extra` on every third
/// packet, with numbers `jsonb` prints otherwise than JSON does (`1e16`, `1.5e-7`, `-0.0`), and
/// no `current` on every seventh (the downsampling then ranks it by throttle).
fn rich_flight_packets(start_ms: i64, seconds: i64) -> Vec<Value> {
    let mut sent = flight_packets(start_ms, seconds);
    for (i, packet) in sent.iter_mut().enumerate() {
        let fields = packet.as_object_mut().expect("an object");
        if i % 3 == 0 {
            fields.insert(
                "extra".into(),
                json!({
                    "mode": "loiter", "note": "a \"quoted\", comma", "sats": 14 + (i % 5) as i64, "armed": i % 2 == 0,
                    "big": 1e16, "tiny": 1.5e-7, "neg_zero": -0.0, "whole": 12.0, "ratio": i as f64 / 7.0
                }),
            );
        }
        if i % 7 == 0 {
            fields.remove("current");
        }
    }
    sent
}

/// A `flightline all` with an archive, one flight three days ago (a day the retention of one day
/// drops) and one an hour ago (kept), both analysed and archived.
struct RetainedFlights {
    archive: TestArchive,
    deployment: Deployment,
    child: tokio::process::Child,
    user: testkit::User,
    /// Drone, flight and first packet's time of the flight whose day is dropped …
    old: (Uuid, Uuid, i64),
    /// … and of the flight whose day is kept.
    recent: (Uuid, Uuid, i64),
    day: chrono::NaiveDate,
}

impl RetainedFlights {
    async fn start() -> Self {
        let archive = TestArchive::connect(TestArchive::config()).await;
        let deployment = Deployment::new().await;
        let day = (chrono::Utc::now() - chrono::Duration::days(3)).date_naive();
        sqlx::query("SELECT flightline_ensure_partitions($1, 1)").bind(day).execute(&deployment.pool).await.unwrap();
        let env = archive.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let child = deployment.start_with(&env).await;
        let user = deployment.api.user().await;
        let mut flights = Vec::new();
        let old_start_ms = day.and_hms_opt(10, 0, 0).unwrap().and_utc().timestamp_millis();
        for (name, start_ms) in [("dropped-day", old_start_ms), ("kept-day", testkit::past_ms())] {
            let (drone, key) = deployment.api.drone(&user, name).await;
            let sent = rich_flight_packets(start_ms, 60);
            post_all(&deployment.api, &key, &sent).await;
            // A later packet, so the sessionizer's event time passes the idle window.
            post_all(&deployment.api, &key, &[packet(start_ms + 50 * sent.len() as i64 + 30_000, 0)]).await;
            let (from_us, to_us) = (start_ms * 1000, (start_ms + 3_600_000) * 1000);
            archive.wait_for(&[drone], from_us, to_us, sent.len() as i64 + 1, WAIT).await;
            flights.push((drone, start_ms));
        }
        let mut ids = Vec::new();
        for (drone, _) in &flights {
            ids.push(analysed_flight(&deployment.pool, *drone).await.0);
        }
        Self {
            archive,
            deployment,
            child,
            user,
            old: (flights[0].0, ids[0], flights[0].1),
            recent: (flights[1].0, ids[1], flights[1].1),
            day,
        }
    }

    /// Drops the old flight's day from `telemetry_raw` (the store's retention of one day).
    async fn drop_old_day(&self) {
        let dropped = processors::store::drop_expired_partitions(&self.deployment.pool, 1).await.unwrap();
        assert!(dropped.contains(&format!("telemetry_raw_{}", self.day.format("%Y%m%d"))), "{dropped:?}");
        assert_eq!(postgres_count(&self.deployment.pool, self.old.0).await, 0, "the old flight's rows are gone");
        assert!(postgres_count(&self.deployment.pool, self.recent.0).await > 0, "the recent flight's rows are kept");
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
        self.deployment.cleanup().await;
        self.archive.drop().await;
    }
}

async fn postgres_count(pool: &sqlx::PgPool, drone: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM telemetry_raw WHERE drone_id = $1")
        .bind(drone)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The drone's one flight once analysed: id, metrics, status, last update.
async fn analysed_flight(pool: &sqlx::PgPool, drone: Uuid) -> (Uuid, Value, chrono::DateTime<chrono::Utc>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let row: Option<(Uuid, Value, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
            "SELECT id, computed_metrics, updated_at FROM flights WHERE drone_id = $1 AND analytics_status = 'done'",
        )
        .bind(drone)
        .fetch_optional(pool)
        .await
        .unwrap();
        if let Some(row) = row {
            return row;
        }
        assert!(tokio::time::Instant::now() < deadline, "the flight of {drone} was not analysed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The raw-point responses of a flight: CSV, and detail with the points whole, downsampled to 100
/// and to 2.
fn raw_paths(flight: Uuid) -> Vec<String> {
    vec![
        format!("/v1/flights/{flight}/telemetry.csv"),
        format!("/v1/flights/{flight}?include=telemetry"),
        format!("/v1/flights/{flight}?include=telemetry&max_points=100"),
        format!("/v1/flights/{flight}?include=telemetry&max_points=2"),
    ]
}

/// Status, content type and the whole body.
async fn fetch(api: &testkit::Api, path: &str, token: &str) -> (StatusCode, String, String) {
    let response = api.get(path, token).await;
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type, response.text().await.expect("a whole body"))
}

/// `flightline query` on the deployment's database with `archive_nodes` = `nodes`, ready.
async fn spawn_query(
    deployment: &Deployment,
    archive: &TestArchive,
    nodes: &str,
) -> (tokio::process::Child, testkit::Api) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let api = testkit::Api::new(format!("http://{addr}"));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"))
        .arg("query")
        .env("DATABASE_URL", testkit::database_url_of(&deployment.pool))
        .env("FLIGHTLINE_HTTP_ADDR", &addr)
        .env("FLIGHTLINE_TOPIC_PREFIX", &deployment.prefix)
        .env("FLIGHTLINE_ARCHIVE_NODES", nodes)
        .env("FLIGHTLINE_ARCHIVE_KEYSPACE", &archive.config.keyspace)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn flightline query");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = api.http.get(api.at("/readyz")).send().await {
            if response.status() == 200 {
                return (child, api);
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "flightline query exited during start-up");
        assert!(tokio::time::Instant::now() < deadline, "flightline query not ready after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_points_of_a_flight_past_postgres_retention_are_served_from_the_archive_byte_for_byte() {
    let _node = NODE.read().await;
    let mut flights = RetainedFlights::start().await;
    let (api, token) = (&flights.deployment.api, flights.user.token.clone());
    let (old_flight, recent_flight) = (flights.old.1, flights.recent.1);
    let mut before = Vec::new();
    for flight in [old_flight, recent_flight] {
        for path in raw_paths(flight) {
            let response = fetch(api, &path, &token).await;
            assert_eq!(response.0, StatusCode::OK, "{path}: {}", response.2);
            before.push((path, response));
        }
    }
    // The CSV has every row; the points are whole, then downsampled to at most 100 and to 2.
    let packets = rich_flight_packets(flights.old.2, 60).len();
    let bodies: Vec<&str> = before.iter().map(|(_, (_, _, body))| body.as_str()).collect();
    let csv_lines = bodies[0].lines().count();
    assert!(csv_lines > 1000 && csv_lines <= packets + 1, "{csv_lines} CSV lines");
    let points = |body: &str| serde_json::from_str::<Value>(body).unwrap()["telemetry"].as_array().unwrap().len();
    assert_eq!(points(bodies[1]), csv_lines - 1);
    assert!((50..=100).contains(&points(bodies[2])), "{}", points(bodies[2]));
    assert_eq!(points(bodies[3]), 2);
    assert!(bodies[0].contains(r#"""big"":10000000000000000"#), "extra as jsonb prints it");

    // One packet more in the archive than in PostgreSQL inside the kept flight: served from
    // PostgreSQL (which holds all of its packet_count), the answers must not show it.
    let (recent_drone, recent_start_ms) = (flights.recent.0, flights.recent.2);
    let extra_packet = testkit::full_packet(recent_start_ms + 25);
    let record = testkit::record_of(recent_drone, &extra_packet);
    flights.archive.table().await.write(std::iter::once(&record)).await.unwrap();

    flights.drop_old_day().await;
    for (path, expected) in &before {
        let response = fetch(api, path, &token).await;
        assert_eq!(response.0, StatusCode::OK, "{path}: {}", response.2);
        assert_eq!(response.1, expected.1, "{path}: content type");
        assert!(response.2 == expected.2, "{path}: the body differs from the one before the drop");
    }

    // With the archive unreachable, the flight PostgreSQL no longer holds is a 503 (not a short
    // 200); the flight it holds is served as before, and the detail without points needs no archive.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (mut query, unreachable) =
        spawn_query(&flights.deployment, &flights.archive, &format!("127.0.0.1:{closed}")).await;
    for path in &raw_paths(old_flight)[..2] {
        let body =
            testkit::expect_error(unreachable.get(path, &token).await, StatusCode::SERVICE_UNAVAILABLE, "unavailable")
                .await;
        assert!(body["message"].as_str().unwrap().contains("archive"), "{body}");
    }
    let response = unreachable.get(&format!("/v1/flights/{old_flight}"), &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    for (path, expected) in before.iter().filter(|(path, _)| path.contains(&recent_flight.to_string())) {
        let response = fetch(&unreachable, path, &token).await;
        assert_eq!(response.0, StatusCode::OK, "{path}: {}", response.2);
        assert!(response.2 == expected.2, "{path}: the body differs with the archive down");
    }
    query.kill().await.unwrap();
    flights.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_analytics_after_a_dropped_day_reads_the_archive_and_gives_the_same_metrics() {
    let _node = NODE.read().await;
    let flights = RetainedFlights::start().await;
    let (drone, flight_id, start_ms) = flights.old;
    let (_, metrics, _) = analysed_flight(&flights.deployment.pool, drone).await;
    flights.drop_old_day().await;
    let replay = |with_archive: bool| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"));
        command
            .args(["replay", "--group", "analytics", "--from", &start_ms.to_string(), "--drone", &drone.to_string()])
            .env("DATABASE_URL", testkit::database_url_of(&flights.deployment.pool))
            .env("FLIGHTLINE_TOPIC_PREFIX", &flights.deployment.prefix)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null());
        if with_archive {
            command.envs(flights.archive.env());
        } else {
            command.env("FLIGHTLINE_ARCHIVE_NODES", "");
        }
        async move {
            let output = command.output().await.expect("flightline replay");
            assert!(output.status.success(), "replay failed");
            serde_json::from_slice::<Value>(&output.stdout).expect("a JSON summary")
        }
    };
    let state = || async {
        let row: (String, Option<Value>) =
            sqlx::query_as("SELECT analytics_status, computed_metrics FROM flights WHERE id = $1")
                .bind(flight_id)
                .fetch_one(&flights.deployment.pool)
                .await
                .unwrap();
        row
    };
    // Without the archive the flight has no rows left: its analysis fails.
    let summary = replay(false).await;
    assert_eq!((summary["flights"].as_u64(), summary["flights_failed"].as_u64()), (Some(1), Some(1)), "{summary}");
    assert_eq!(state().await.0, "failed");
    // With it, the replay reads the archive and computes what PostgreSQL's rows gave.
    let summary = replay(true).await;
    assert_eq!(
        (summary["flights_recomputed"].as_u64(), summary["flights_failed"].as_u64()),
        (Some(1), Some(0)),
        "{summary}"
    );
    let (status, recomputed) = state().await;
    assert_eq!(status, "done");
    assert_eq!(recomputed, Some(metrics), "metrics recomputed from the archive differ");
    flights.stop().await;
}
