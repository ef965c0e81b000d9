//! `flightline replay` against a real deployment (`flightline all` on its own database and
//! topics): the recorded logs replay unchanged; a changed flight rule re-cuts a range and
//! changing it back restores the original flights; `--drone` and `--dry-run` keep to themselves;
//! `live` is refused; a replay killed with `kill -9` and run again ends where an uninterrupted
//! one would; a store replay restores exactly the rows deleted.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{expected, Deployment};
use processors::analytics::metrics::ANALYTICS_VERSION;
use processors::sessionizer::machine::{ClosedFlight, FlightRule};
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(180);
const S: i64 = 1_000_000;

fn ts_us(packet: &Value) -> i64 {
    DateTime::parse_from_rfc3339(packet["ts"].as_str().unwrap()).unwrap().timestamp_micros()
}

fn rule_json(rule: &FlightRule) -> Value {
    json!({
        "throttle_threshold": rule.throttle_threshold,
        "idle_s": rule.idle_window_us as f64 / 1e6,
        "gap_s": rule.gap_us as f64 / 1e6,
        "min_s": rule.min_duration_us as f64 / 1e6,
    })
}

fn replay_command(deployment: &Deployment, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"));
    command
        .arg("replay")
        .args(args)
        .env("DATABASE_URL", testkit::database_url_of(&deployment.pool))
        .env("FLIGHTLINE_TOPIC_PREFIX", &deployment.prefix)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs `flightline replay ARGS` to the end; its JSON summary.
async fn replay(deployment: &Deployment, args: &[&str], env: &[(&str, &str)]) -> Value {
    let output = tokio::time::timeout(WAIT, replay_command(deployment, args, env).output())
        .await
        .expect("replay finished in time")
        .expect("replay ran");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "replay {args:?} failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON summary on stdout, got {stdout:?}");
    serde_json::from_str(lines[0]).unwrap()
}

async fn send_file(deployment: &Deployment, key: &str, file: &Path) {
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"))
        .args(["send", "--api-key", key, "--target", &deployment.url(), "--file"])
        .arg(file)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .expect("flightline send");
    assert!(status.success(), "send {}", file.display());
}

/// A flight row as compared before and after a replay.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    id: Uuid,
    start_us: i64,
    end_us: i64,
    packet_count: i64,
    status: String,
    version: Option<i32>,
    rule: Value,
    metrics: Option<Value>,
    updated_at: DateTime<Utc>,
}

async fn flights_of(deployment: &Deployment, drone_id: Uuid) -> Vec<Stored> {
    sqlx::query("SELECT * FROM flights WHERE drone_id = $1 ORDER BY start_ts")
        .bind(drone_id)
        .fetch_all(&deployment.pool)
        .await
        .unwrap()
        .iter()
        .map(|row| Stored {
            id: row.get("id"),
            start_us: row.get::<DateTime<Utc>, _>("start_ts").timestamp_micros(),
            end_us: row.get::<DateTime<Utc>, _>("end_ts").timestamp_micros(),
            packet_count: row.get("packet_count"),
            status: row.get("analytics_status"),
            version: row.get("analytics_version"),
            rule: row.get("rule"),
            metrics: row.get("computed_metrics"),
            updated_at: row.get("updated_at"),
        })
        .collect()
}

/// Waits until the drone has exactly `count` flights, all analysed.
async fn analysed_flights(deployment: &Deployment, drone_id: Uuid, count: usize) -> Vec<Stored> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let flights = flights_of(deployment, drone_id).await;
        let done = flights.iter().filter(|f| f.status == "done").count();
        if flights.len() == count && done == count {
            return flights;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} flights ({done} analysed) of {count}", flights.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_matches(what: &str, stored: &[Stored], expected: &[(ClosedFlight, Value)], rule: &FlightRule) {
    assert_eq!(stored.len(), expected.len(), "{what}: flight count");
    for (flight, (closed, metrics)) in stored.iter().zip(expected) {
        assert_eq!(flight.id, closed.flight_id, "{what}: id");
        assert_eq!((flight.start_us, flight.end_us), (closed.start_ts_us, closed.end_ts_us), "{what}: boundaries");
        assert_eq!(flight.packet_count, closed.packet_count as i64, "{what}: packets");
        assert_eq!(flight.status, "done", "{what}: analysed");
        assert_eq!(flight.version, Some(ANALYTICS_VERSION), "{what}: analytics version");
        assert_eq!(flight.rule, rule_json(rule), "{what}: the rule the flight was cut with");
        assert_eq!(flight.metrics.as_ref(), Some(metrics), "{what}: metrics of {}", flight.id);
    }
}

fn ids(summary: &Value, key: &str) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> =
        summary[key].as_array().unwrap().iter().map(|v| Uuid::parse_str(v.as_str().unwrap()).unwrap()).collect();
    ids.sort();
    ids
}

/// A checksum of every column of every row in `[from, to]` (µs), in key order.
async fn rows_checksum(deployment: &Deployment, from_us: i64, to_us: i64) -> (i64, String) {
    let row = sqlx::query(
        "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY drone_id, ts)), '') FROM telemetry_raw t
         WHERE ts BETWEEN to_timestamp($1 / 1e6) AND to_timestamp($2 / 1e6)",
    )
    .bind(from_us as f64)
    .bind(to_us as f64)
    .fetch_one(&deployment.pool)
    .await
    .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_logs_replay_unchanged_and_store_replay_restores_deleted_rows() {
    let deployment = Deployment::new().await;
    let child = deployment.start().await;
    let user = deployment.api.user().await;
    let mut cases = Vec::new();
    for file in testkit::recorded_streams() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (drone_id, key) = deployment.api.drone(&user, &name).await;
        send_file(&deployment, &key, &file).await;
        let packets = testkit::read_recorded(&file);
        let expected = expected(drone_id, &packets, FlightRule::default());
        assert!(!expected.is_empty(), "{name} yields no flight");
        cases.push((name, drone_id, packets, expected));
    }
    assert_eq!(cases.len(), 8, "every recorded log of ../shared/data/flights");
    let mut before = BTreeMap::new();
    for (name, drone_id, _, expected) in &cases {
        let stored = analysed_flights(&deployment, *drone_id, expected.len()).await;
        assert_matches(name, &stored, expected, &FlightRule::default());
        before.insert(*drone_id, stored);
    }
    // The API shows each flight's rule and analytics version (CONTRACT.md §2).
    let (_, drone_id, _, _) = &cases[0];
    let listed: Value =
        deployment.api.get(&format!("/v1/drones/{drone_id}/flights"), &user.token).await.json().await.unwrap();
    assert_eq!(listed[0]["rule"], rule_json(&FlightRule::default()));
    assert_eq!(listed[0]["analytics_version"], ANALYTICS_VERSION);
    let id = listed[0]["id"].as_str().unwrap();
    let detail: Value = deployment.api.get(&format!("/v1/flights/{id}"), &user.token).await.json().await.unwrap();
    assert_eq!(detail["rule"], rule_json(&FlightRule::default()));

    // The whole range of every log, rule unchanged: nothing changes, not even updated_at.
    let first_us = cases.iter().map(|(_, _, packets, _)| ts_us(&packets[0])).min().unwrap();
    let last_us = cases.iter().map(|(_, _, packets, _)| ts_us(packets.last().unwrap())).max().unwrap();
    let from = (first_us / 1000).to_string();
    let to = (last_us / 1000 + 1).to_string();
    let total: usize = cases.iter().map(|(_, _, _, expected)| expected.len()).sum();
    let summary = replay(&deployment, &["--group", "sessionizer", "--from", &from, "--to", &to], &[]).await;
    assert_eq!(summary["group"], "sessionizer");
    assert_eq!((summary["flights_added"].as_u64(), summary["flights_retired"].as_u64()), (Some(0), Some(0)));
    assert_eq!(summary["flights_unchanged"], total);
    let total_packets: usize = cases.iter().map(|(_, _, packets, _)| packets.len()).sum();
    assert!(summary["messages"].as_u64().unwrap() >= total_packets as u64, "{summary}");
    for key in ["from", "to", "seconds", "messages_per_s"] {
        assert!(summary.get(key).is_some(), "summary has {key}: {summary}");
    }
    for (drone_id, stored) in &before {
        assert_eq!(&flights_of(&deployment, *drone_id).await, stored, "flights of {drone_id} untouched");
    }
    let retired: i64 =
        sqlx::query_scalar("SELECT count(*) FROM flights_retired").fetch_one(&deployment.pool).await.unwrap();
    assert_eq!(retired, 0);

    // The analytics replay of one drone recomputes its flights to the same documents.
    let (name, drone_id, packets, expected) = &cases[3];
    let summary = replay(
        &deployment,
        &["--group", "analytics", "--from", &(ts_us(&packets[0]) / 1000).to_string(), "--drone", &drone_id.to_string()],
        &[],
    )
    .await;
    assert_eq!(summary["flights_recomputed"], expected.len(), "{summary}");
    assert_eq!(summary["analytics_version"], ANALYTICS_VERSION);
    let after = flights_of(&deployment, *drone_id).await;
    assert_matches(name, &after, expected, &FlightRule::default());
    assert!(after.iter().zip(&before[drone_id]).all(|(a, b)| a.updated_at > b.updated_at), "recomputed");

    // `live` is refused with a reason, and `archive` without an archive configured
    // (tests/archive.rs replays it with one).
    for (group, reason) in [("live", "the live view is the present"), ("archive", "needs an archive")] {
        let output = replay_command(&deployment, &["--group", group, "--from", &from], &[]).output().await.unwrap();
        assert!(!output.status.success(), "--group {group} must be refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(reason), "--group {group}: {stderr}");
        assert!(output.stdout.is_empty());
    }

    // Store: rows of a range deleted by mistake come back exactly (flight tags included); the
    // rows around them and of other drones stay as they are.
    let (_, auterion, auterion_packets, _) = &cases.iter().find(|(name, ..)| name.starts_with("px4_auterion")).unwrap();
    let (lo, hi) = (ts_us(&auterion_packets[200]), ts_us(&auterion_packets[1500]));
    let (range_from, range_to) = (ts_us(&auterion_packets[100]), ts_us(&auterion_packets[1600]));
    let (count_before, checksum_before) = rows_checksum(&deployment, first_us, last_us).await;
    assert_eq!(count_before, total_packets as i64, "every packet stored");
    let deleted = sqlx::query(
        "DELETE FROM telemetry_raw WHERE drone_id = $1 AND ts BETWEEN to_timestamp($2 / 1e6) AND to_timestamp($3 / 1e6)",
    )
    .bind(auterion)
    .bind(lo as f64)
    .bind(hi as f64)
    .execute(&deployment.pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(deleted, 1301);
    // A range wider than the hole: the rows around it are there already.
    let (from_ms, to_ms) = ((range_from / 1000).to_string(), (range_to / 1000).to_string());
    let range = ["--group", "store", "--from", &from_ms, "--to", &to_ms];
    let dry = replay(&deployment, &[&range[..], &["--dry-run"]].concat(), &[]).await;
    assert_eq!(dry["rows_restored"], deleted, "{dry}");
    assert_eq!(rows_checksum(&deployment, first_us, last_us).await.0, count_before - deleted as i64, "dry run wrote");
    let summary = replay(&deployment, &range, &[]).await;
    assert_eq!(summary["rows_restored"], deleted, "{summary}");
    assert_eq!(summary["rows_in_range"], 1501, "{summary}");
    assert_eq!(summary["rows_present"], 1501 - deleted, "{summary}");
    assert_eq!(rows_checksum(&deployment, first_us, last_us).await, (count_before, checksum_before.clone()));
    // Again: nothing is missing any more, nothing changes.
    let again = replay(&deployment, &range, &[]).await;
    assert_eq!(again["rows_restored"], 0);
    assert_eq!(rows_checksum(&deployment, first_us, last_us).await, (count_before, checksum_before));

    drop(child);
    deployment.cleanup().await;
}

/// One drone's stream: the flying part of the Spark 404 log, 7 s on the ground, the flying part
/// of the Auterion log, 12 s on the ground (50 Hz, like both logs).
fn composed_stream() -> Vec<Value> {
    fn flying(file: &str) -> Vec<Value> {
        let packets = testkit::read_recorded(file);
        let first = packets.iter().position(|p| p["throttle"].as_f64().unwrap() >= 0.05).unwrap();
        let last = packets.iter().rposition(|p| p["throttle"].as_f64().unwrap() >= 0.05).unwrap();
        packets[first..=last].to_vec()
    }
    fn at(packet: &Value, ts_us: i64) -> Value {
        let mut packet = packet.clone();
        packet["ts"] = json!(schemas::format_ts(ts_us));
        packet
    }
    fn ground(from_us: i64, seconds: i64, last: &Value) -> Vec<Value> {
        (1..=seconds * 50)
            .map(|i| {
                json!({"ts": schemas::format_ts(from_us + i * 20_000), "throttle": 0.0,
                       "voltage": last["voltage"], "current": 0.4})
            })
            .collect()
    }
    let mut stream = flying("ap_spark404_copter.jsonl.gz");
    let mut end = ts_us(stream.last().unwrap());
    stream.extend(ground(end, 7, &stream.last().unwrap().clone()));
    end = ts_us(stream.last().unwrap());
    let second = flying("px4_auterion_esc_status.jsonl.gz");
    let shift = end + 20_000 - ts_us(&second[0]);
    stream.extend(second.iter().map(|p| at(p, ts_us(p) + shift)));
    end = ts_us(stream.last().unwrap());
    stream.extend(ground(end, 12, &stream.last().unwrap().clone()));
    stream
}

fn write_jsonl(dir: &Path, name: &str, packets: &[Value]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for packet in packets {
        writeln!(file, "{packet}").unwrap();
    }
    file.flush().unwrap();
    path
}

fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("flightline-replay-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_idle_window_recuts_the_range_and_changing_it_back_restores_the_flights() {
    let deployment = Deployment::new().await;
    let child = deployment.start().await;
    let user = deployment.api.user().await;
    let dir = scratch_dir();
    let stream = composed_stream();
    let file = write_jsonl(&dir, "composed.jsonl", &stream);
    let (drone, key) = deployment.api.drone(&user, "composed").await;
    let (other, other_key) = deployment.api.drone(&user, "other").await;
    send_file(&deployment, &key, &file).await;
    send_file(&deployment, &other_key, &file).await;

    let default = FlightRule::default();
    let idle5 = FlightRule { idle_window_us: 5 * S, ..default };
    let expected10 = expected(drone, &stream, default);
    let expected5 = expected(drone, &stream, idle5);
    // The rule defines it so: W = 10 s keeps the 7 s idle inside one flight, W = 5 s splits there.
    assert_eq!(expected10.len(), 1, "{:?}", expected10.iter().map(|f| &f.0).collect::<Vec<_>>());
    assert_eq!(expected5.len(), 2);
    assert_eq!(expected5[0].0.flight_id, expected10[0].0.flight_id, "the first flight keeps its start and id");
    let original = analysed_flights(&deployment, drone, 1).await;
    assert_matches("W = 10 s", &original, &expected10, &default);
    let other_before = analysed_flights(&deployment, other, 1).await;

    let from = (ts_us(&stream[0]) / 1000 + 60_000).to_string(); // inside the flight: read back to its start
    let to = (from.parse::<i64>().unwrap() + 1000).to_string();
    let args = ["--group", "sessionizer", "--from", &from, "--to", &to, "--drone", &drone.to_string()];
    let idle5_env = [("FLIGHTLINE_FLIGHT_IDLE_S", "5")];

    // Dry run: says what would change, changes nothing.
    let dry = replay(&deployment, &[&args[..], &["--dry-run"]].concat(), &idle5_env).await;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(ids(&dry, "retired"), vec![original[0].id]);
    let mut added5: Vec<Uuid> = expected5.iter().map(|f| f.0.flight_id).collect();
    added5.sort();
    assert_eq!(ids(&dry, "added"), added5);
    assert_eq!(dry["flights_unchanged"], 0);
    assert_eq!(dry["rule"], rule_json(&idle5));
    assert_eq!(flights_of(&deployment, drone).await, original, "a dry run writes nothing");

    // W = 5 s: the flights that rule defines, analysed, with their rule; the old one is history.
    let summary = replay(&deployment, &args, &idle5_env).await;
    assert_eq!((summary["flights_added"].as_u64(), summary["flights_retired"].as_u64()), (Some(2), Some(1)));
    assert_matches("W = 5 s", &flights_of(&deployment, drone).await, &expected5, &idle5);
    let history: Vec<(Uuid, DateTime<Utc>)> =
        sqlx::query_as("SELECT id, end_ts FROM flights_retired WHERE drone_id = $1")
            .bind(drone)
            .fetch_all(&deployment.pool)
            .await
            .unwrap();
    assert_eq!(history, vec![(original[0].id, DateTime::from_timestamp_micros(original[0].end_us).unwrap())]);
    // The API lists only active flights; every row is tagged with its new flight.
    let page: Value =
        deployment.api.get(&format!("/v1/drones/{drone}/flights"), &user.token).await.json().await.unwrap();
    let listed: Vec<&str> = page.as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    let mut active5: Vec<String> = expected5.iter().map(|f| f.0.flight_id.to_string()).collect();
    active5.reverse(); // newest first
    assert_eq!(listed, active5);
    assert!(page.as_array().unwrap().iter().all(|f| f["rule"] == rule_json(&idle5)));
    for (flight, _) in &expected5 {
        let tagged: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry_raw WHERE flight_id = $1")
            .bind(flight.flight_id)
            .fetch_one(&deployment.pool)
            .await
            .unwrap();
        assert_eq!(tagged, flight.packet_count as i64);
    }
    // --drone: the other drone, same stream, same range, is untouched.
    assert_eq!(flights_of(&deployment, other).await, other_before);
    // Recompute of a re-cut flight keeps its own rule (hover_throttle depends on T).
    let recompute = deployment
        .api
        .post(&format!("/v1/flights/{}/recompute", expected5[1].0.flight_id), &user.token, &json!({}))
        .await;
    assert_eq!(recompute.status(), 202);

    // Back to W = 10 s: the original flight, same id and boundaries, analysed again.
    let summary = replay(&deployment, &args, &[]).await;
    assert_eq!((summary["flights_added"].as_u64(), summary["flights_retired"].as_u64()), (Some(1), Some(2)));
    let restored = flights_of(&deployment, drone).await;
    assert_matches("W = 10 s again", &restored, &expected10, &default);
    let retired: i64 = sqlx::query_scalar("SELECT count(*) FROM flights_retired WHERE drone_id = $1")
        .bind(drone)
        .fetch_one(&deployment.pool)
        .await
        .unwrap();
    assert_eq!(retired, 3, "every retirement is kept");
    assert_eq!(flights_of(&deployment, other).await, other_before);

    let _ = std::fs::remove_dir_all(&dir);
    drop(child);
    deployment.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_with_kill_9_and_run_again_ends_as_an_uninterrupted_one() {
    let deployment = Deployment::new().await;
    let child = deployment.start().await;
    let user = deployment.api.user().await;
    let dir = scratch_dir();
    let stream = composed_stream();
    let file = write_jsonl(&dir, "composed.jsonl", &stream);
    let mut drones = Vec::new();
    for i in 0..4 {
        let (drone, key) = deployment.api.drone(&user, &format!("composed-{i}")).await;
        send_file(&deployment, &key, &file).await;
        drones.push(drone);
    }
    for drone in &drones {
        analysed_flights(&deployment, *drone, 1).await;
    }
    let idle5 = FlightRule { idle_window_us: 5 * S, ..FlightRule::default() };
    let from = (ts_us(&stream[0]) / 1000).to_string();
    let args = ["--group", "sessionizer", "--from", &from];
    let env = [("FLIGHTLINE_FLIGHT_IDLE_S", "5")];

    let mut first = replay_command(&deployment, &args, &env).spawn().expect("replay");
    // Killed once its first change is committed (one drone re-cut), long before every new
    // flight is analysed.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let retired: i64 =
            sqlx::query_scalar("SELECT count(*) FROM flights_retired").fetch_one(&deployment.pool).await.unwrap();
        if retired > 0 {
            break;
        }
        assert!(first.try_wait().unwrap().is_none(), "the replay ended before it changed anything");
        assert!(tokio::time::Instant::now() < deadline, "the replay never changed anything");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.start_kill().unwrap(); // SIGKILL
    let status = first.wait().await.unwrap();
    assert!(!status.success(), "killed, not finished: {status:?}");
    let done: i64 =
        sqlx::query_scalar("SELECT count(*) FROM flights WHERE analytics_status = 'done' AND rule->>'idle_s' = '5.0'")
            .fetch_one(&deployment.pool)
            .await
            .unwrap();
    assert!(done < 8, "the kill interrupted the replay ({done} of 8 new flights already analysed)");

    let summary = replay(&deployment, &args, &env).await;
    assert_eq!(summary["flights_added"].as_u64().unwrap() + summary["flights_unchanged"].as_u64().unwrap(), 8);
    for drone in &drones {
        let expected5 = expected(*drone, &stream, idle5);
        assert_matches("after kill -9 and a rerun", &flights_of(&deployment, *drone).await, &expected5, &idle5);
    }
    let retired: i64 =
        sqlx::query_scalar("SELECT count(*) FROM flights_retired").fetch_one(&deployment.pool).await.unwrap();
    assert_eq!(retired, 4, "each original flight retired once");
    // A third run changes nothing.
    let again = replay(&deployment, &args, &env).await;
    assert_eq!((again["flights_added"].as_u64(), again["flights_retired"].as_u64()), (Some(0), Some(0)));

    let _ = std::fs::remove_dir_all(&dir);
    drop(child);
    deployment.cleanup().await;
}

/// A replay beside a pipeline that keeps ingesting: the drone streaming meanwhile gets every row
/// once and the flights the running sessionizer cuts (its rule, not the replay's), while the
/// replayed drone ends with the flights of the replay's rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_beside_live_ingest_leaves_the_live_drones_complete() {
    let deployment = Deployment::new().await;
    let child = deployment.start().await;
    let user = deployment.api.user().await;
    let dir = scratch_dir();
    let stream = composed_stream();
    let file = write_jsonl(&dir, "composed.jsonl", &stream);
    let (replayed, replayed_key) = deployment.api.drone(&user, "replayed").await;
    let (live, live_key) = deployment.api.drone(&user, "live").await;
    send_file(&deployment, &replayed_key, &file).await;
    analysed_flights(&deployment, replayed, 1).await;

    let default = FlightRule::default();
    let idle5 = FlightRule { idle_window_us: 5 * S, ..default };
    let from = (ts_us(&stream[0]) / 1000).to_string();
    let drone = replayed.to_string();
    let args = ["--group", "sessionizer", "--from", &from, "--drone", &drone];
    // The live drone streams its whole flight while the replay reads and rewrites the other.
    let (summary, ()) = tokio::join!(
        replay(&deployment, &args, &[("FLIGHTLINE_FLIGHT_IDLE_S", "5")]),
        send_file(&deployment, &live_key, &file)
    );
    assert_eq!((summary["flights_added"].as_u64(), summary["flights_retired"].as_u64()), (Some(2), Some(1)));
    assert_matches(
        "the replayed drone",
        &flights_of(&deployment, replayed).await,
        &expected(replayed, &stream, idle5),
        &idle5,
    );

    // The live drone: every packet stored once, its flight cut by the running sessionizer.
    let expected_live = expected(live, &stream, default);
    let flights = analysed_flights(&deployment, live, expected_live.len()).await;
    assert_matches("the live drone", &flights, &expected_live, &default);
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT ts) FROM telemetry_raw WHERE drone_id = $1")
            .bind(live)
            .fetch_one(&deployment.pool)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (stream.len() as i64, stream.len() as i64));
    let retired: i64 = sqlx::query_scalar("SELECT count(*) FROM flights_retired WHERE drone_id = $1")
        .bind(live)
        .fetch_one(&deployment.pool)
        .await
        .unwrap();
    assert_eq!(retired, 0, "the replay touched only its drone");

    let _ = std::fs::remove_dir_all(&dir);
    drop(child);
    deployment.cleanup().await;
}
