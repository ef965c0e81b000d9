//! `flightline bridge` end to end: a real recorded MAVLink telemetry log, bridged into a real
//! deployment (`flightline all`), becomes the rows an independent decoder computes from the same
//! log — pymavlink from PyPI, with the contract's unit conversions written again in Python
//! (tests/bridge/reference.py) — as a file, as live UDP datagrams, as two vehicles in one stream,
//! and across 30 s of the API being down.
//!
//! The log, tests/bridge/ardusub_bench.tlog, is the `mavlink` crate's own test log
//! (rust-mavlink, `mavlink/tests/log.tlog`, MIT OR Apache-2.0): 11.5 s recorded by a ground
//! station from a real ArduSub vehicle (MAV_TYPE_SUBMARINE, BlueROV-style) on the bench,
//! disarmed, in MANUAL, without a GPS fix, MAVLink 2 — system id 1 plus the ground station's
//! own messages (system 255) and messages of the ArduPilot dialect the common one does not know.
//! The two-vehicle log is derived from it by tests/bridge/mavtools.py (pymavlink re-encodes
//! system 1's messages as system 2).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::Deployment;
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

const HZ: f64 = 50.0;
const WAIT: Duration = Duration::from_secs(120);

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bridge").join(name)
}

fn log_path() -> PathBuf {
    data("ardusub_bench.tlog")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flightline-bridge-{name}-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn python(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let output = std::process::Command::new("python3")
        .args(args)
        .output()
        .expect("python3 with pymavlink (pip install pymavlink; deploy/local/setup.sh installs it)");
    assert!(output.status.success(), "python {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// One test's deployment (`flightline all`) and scratch folder.
struct Case {
    deployment: Deployment,
    child: tokio::process::Child,
    dir: PathBuf,
}

impl Case {
    async fn start(name: &str) -> Self {
        let deployment = Deployment::new().await;
        let child = deployment.start().await;
        Case { deployment, child, dir: temp_dir(name) }
    }

    async fn drone(&self, name: &str) -> (Uuid, String) {
        credentials::create_drone(&self.deployment.pool, name, None).await.unwrap()
    }

    /// Only reached when the test passed.
    async fn finish(self) {
        drop(self.child);
        std::fs::remove_dir_all(&self.dir).unwrap();
        self.deployment.cleanup().await;
    }
}

/// What pymavlink and the Python mapping make of the log: packets (with `system_id`, `ts_us`)
/// and each vehicle's field states after every message.
fn reference(log: &Path, system_ids: &[u8]) -> Value {
    let hz = HZ.to_string();
    let ids: Vec<String> = system_ids.iter().map(|id| id.to_string()).collect();
    let script = data("reference.py");
    let mut args: Vec<&std::ffi::OsStr> = vec![script.as_os_str(), log.as_os_str(), hz.as_ref()];
    args.extend(ids.iter().map(|id| std::ffi::OsStr::new(id.as_str())));
    serde_json::from_slice(&python(&args).stdout).expect("reference json")
}

/// The reference packets of one system id, without `system_id`.
fn reference_packets(reference: &Value, system_id: u8) -> Vec<Value> {
    reference["packets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["system_id"] == system_id)
        .map(|p| {
            let mut p = p.clone();
            p.as_object_mut().unwrap().remove("system_id");
            p
        })
        .collect()
}

fn bridge_command(args: &[&str], target: &str, buffer: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_flightline"));
    command
        .arg("bridge")
        .args(args)
        .args(["--target", target, "--hz", &HZ.to_string(), "--buffer-dir"])
        .arg(buffer)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs the bridge to its end and returns its JSON summary.
async fn run_bridge(args: &[&str], target: &str, buffer: &Path) -> Value {
    let output = bridge_command(args, target, buffer).output().await.expect("flightline bridge");
    assert!(output.status.success(), "flightline bridge {args:?} failed");
    serde_json::from_slice(&output.stdout).expect("summary json")
}

/// Stops a live bridge as an operator does (SIGTERM) and returns its summary.
async fn stop_bridge(child: tokio::process::Child) -> Value {
    let pid = child.id().expect("bridge pid").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "flightline bridge failed");
    serde_json::from_slice(&output.stdout).expect("summary json")
}

/// A free UDP port on loopback, and a wait until the bridge listens on it.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_until_bound(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the bridge does not listen on udp {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the socket bound to `port` has no datagram left unread (`rx_queue` of
/// /proc/net/udp).
async fn wait_until_read(port: u16) {
    let local = format!("0100007F:{port:04X}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let table = std::fs::read_to_string("/proc/net/udp").unwrap();
        let queued = table.lines().find_map(|line| {
            let columns: Vec<&str> = line.split_whitespace().collect();
            (columns.get(1) == Some(&local.as_str()))
                .then(|| u64::from_str_radix(columns[4].split(':').nth(1).unwrap_or("0"), 16).unwrap_or(0))
        });
        if queued == Some(0) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the bridge does not read udp {port}: {queued:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn send_udp(port: u16, log: &Path, seconds: Option<u64>) -> tokio::process::Child {
    let mut command = tokio::process::Command::new("python3");
    command.arg(data("mavtools.py")).arg("udp").arg(format!("127.0.0.1:{port}")).arg(log);
    if let Some(seconds) = seconds {
        command.arg(seconds.to_string());
    }
    command.stdout(Stdio::null()).kill_on_drop(true).spawn().expect("python3 mavtools.py udp")
}

/// The drone's stored rows, oldest first, in the reference's shape (`ts_us` and the packet
/// fields the row holds; a NULL column is an absent field).
async fn rows(deployment: &Deployment, drone_id: Uuid) -> Vec<Value> {
    let rows = sqlx::query("SELECT * FROM telemetry_raw WHERE drone_id = $1 ORDER BY ts")
        .bind(drone_id)
        .fetch_all(&deployment.pool)
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let mut packet = serde_json::Map::new();
            let ts: chrono::DateTime<chrono::Utc> = row.get("ts");
            packet.insert("ts_us".into(), json!(ts.timestamp_micros()));
            packet.insert("throttle".into(), json!(row.get::<f64, _>("throttle")));
            for column in ["voltage", "current"] {
                if let Some(v) = row.get::<Option<f64>, _>(column) {
                    packet.insert(column.into(), json!(v));
                }
            }
            if let Some(v) = row.get::<Option<i64>, _>("mah_drawn") {
                packet.insert("mah_drawn".into(), json!(v));
            }
            if let Some(v) = row.get::<Option<i32>, _>("rssi") {
                packet.insert("rssi".into(), json!(v));
            }
            let triple = |names: [&str; 3]| -> Option<Value> {
                let values: Vec<Option<f64>> = names.iter().map(|n| row.get::<Option<f64>, _>(*n)).collect();
                values.iter().all(Option::is_some).then(|| json!(values.into_iter().flatten().collect::<Vec<_>>()))
            };
            for (field, names) in [
                ("position", ["x", "y", "z"]),
                ("velocity", ["vx", "vy", "vz"]),
                ("attitude", ["roll", "pitch", "yaw"]),
            ] {
                if let Some(v) = triple(names) {
                    packet.insert(field.into(), v);
                }
            }
            if let Some(v) = triple(["lat", "lon", "alt_m"]) {
                packet.insert("gps".into(), json!({"lat": v[0], "lon": v[1], "alt_m": v[2]}));
            }
            if let Some(extra) = row.get::<Option<Value>, _>("extra") {
                packet.insert("extra".into(), extra);
            }
            Value::Object(packet)
        })
        .collect()
}

async fn row_count(deployment: &Deployment, drone_id: Uuid) -> usize {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM telemetry_raw WHERE drone_id = $1")
        .bind(drone_id)
        .fetch_one(&deployment.pool)
        .await
        .unwrap();
    count as usize
}

/// Polls until the drone has `count` rows.
async fn wait_for_rows(deployment: &Deployment, drone_id: Uuid, count: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stored = row_count(deployment, drone_id).await;
        if stored == count {
            return rows(deployment, drone_id).await;
        }
        assert!(stored < count, "more rows than packets: {stored} > {count}");
        assert!(tokio::time::Instant::now() < deadline, "only {stored} of {count} rows after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the sessionizer has read every message of the telemetry topic, then returns the
/// drone's flights (start, end, packet count).
async fn flights_once_sessionized(deployment: &Deployment, drone_id: Uuid) -> Vec<(i64, i64, i64)> {
    let topic = format!("{}telemetry.v1", deployment.prefix);
    let group = format!("{}{}", deployment.prefix, processors::sessionizer::GROUP_ID);
    let end: i64 = testkit::end_offsets(&deployment.kafka, &topic).iter().map(|(_, offset)| offset).sum();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let read: Option<i64> = sqlx::query_scalar(
            "SELECT sum(next_offset)::BIGINT FROM consumer_offsets WHERE group_id = $1 AND topic = $2",
        )
        .bind(&group)
        .bind(&topic)
        .fetch_one(&deployment.pool)
        .await
        .unwrap();
        if read.unwrap_or(0) >= end {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the sessionizer read {read:?} of {end} messages");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sqlx::query("SELECT start_ts, end_ts, packet_count FROM flights WHERE drone_id = $1 ORDER BY start_ts")
        .bind(drone_id)
        .fetch_all(&deployment.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<chrono::DateTime<chrono::Utc>, _>("start_ts").timestamp_micros(),
                r.get::<chrono::DateTime<chrono::Utc>, _>("end_ts").timestamp_micros(),
                r.get::<i64, _>("packet_count"),
            )
        })
        .collect()
}

/// Every row equals one of the vehicle's successive field states, in order (a live link's ticks
/// fall between messages wherever its timing puts them, so rows may repeat or skip a state).
fn assert_rows_follow_states(rows: &[Value], states: &[Value]) {
    let mut at = 0;
    for (index, row) in rows.iter().enumerate() {
        let mut fields = row.clone();
        fields.as_object_mut().unwrap().remove("ts_us");
        while at < states.len() && states[at] != fields {
            at += 1;
        }
        assert!(at < states.len(), "row {index} is no state of the log (or out of order): {row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_tlog_becomes_the_rows_pymavlink_decodes_and_no_flight_while_disarmed() {
    let case = Case::start("tlog").await;
    let deployment = &case.deployment;
    let (drone_id, key) = case.drone("bluerov").await;
    let log = log_path();
    let summary = run_bridge(&["--tlog", log.to_str().unwrap(), "--api-key", &key], &deployment.url(), &case.dir).await;

    let reference = reference(&log, &[]);
    let expected = reference_packets(&reference, 1);
    assert!(expected.len() > 500, "the log yields {} packets", expected.len());
    assert_eq!(summary["packets_sent"], expected.len(), "{summary}");
    assert_eq!(summary["buffered_packets"], 0);
    assert_eq!(summary["vehicles"][0]["system_id"], 1);
    assert_eq!(summary["ignored_system_ids"], json!([]), "the ground station (255) is no vehicle");
    let stored = wait_for_rows(deployment, drone_id, expected.len()).await;
    for (index, (row, want)) in stored.iter().zip(&expected).enumerate() {
        assert_eq!(row, want, "row {index}");
    }
    // The conversions and the absent fields, spelled out once: 414 mV, 56 cA, no GPS fix (0, 0),
    // RC rssi 255 (unknown), no LOCAL_POSITION_NED.
    let first = &stored[0];
    assert_eq!((first["voltage"].as_f64(), first["current"].as_f64()), (Some(0.414), Some(0.56)));
    for absent in ["gps", "rssi", "position", "velocity"] {
        assert!(first.get(absent).is_none(), "{absent} must be absent: {first}");
    }
    assert_eq!(first["extra"], json!({"mode": "manual", "armed": false, "sats": 0}));

    // Never armed in HEARTBEAT, throttle 0 throughout: the sessionizer cuts no flight, as the
    // flight rule computed from the reference packets says.
    assert!(expected.iter().all(|p| p["extra"]["armed"] == false));
    let as_packets: Vec<Value> = expected
        .iter()
        .map(|p| {
            let ts = chrono::DateTime::from_timestamp_micros(p["ts_us"].as_i64().unwrap()).unwrap();
            let mut p = p.clone();
            p["ts"] = json!(ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
            p
        })
        .collect();
    let rule_flights = common::expected(drone_id, &as_packets, processors::sessionizer::machine::FlightRule::default());
    assert_eq!(flights_once_sessionized(deployment, drone_id).await.len(), rule_flights.len());
    assert!(rule_flights.is_empty());
    case.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_system_ids_in_one_stream_become_two_drones() {
    let case = Case::start("twin").await;
    let deployment = &case.deployment;
    let twin = case.dir.join("twin.tlog");
    python(&[data("mavtools.py").as_os_str(), "twin".as_ref(), log_path().as_os_str(), twin.as_os_str()]);
    let (drone_1, key_1) = case.drone("rov-1").await;
    let (drone_2, key_2) = case.drone("rov-2").await;
    let keys = case.dir.join("keys.toml");
    std::fs::write(&keys, format!("# MAVLink system id = API key\n1 = \"{key_1}\"\n2 = \"{key_2}\"\n")).unwrap();
    let summary = run_bridge(
        &["--tlog", twin.to_str().unwrap(), "--keys", keys.to_str().unwrap(), "--rate-multiplier", "4"],
        &deployment.url(),
        &case.dir.join("buffer"),
    )
    .await;
    // Paced at 4x: 11.5 s of log in about 3 s.
    assert!(summary["seconds"].as_f64().unwrap() >= 2.5, "{summary}");

    let reference = reference(&twin, &[1, 2]);
    for (system_id, drone_id) in [(1u8, drone_1), (2, drone_2)] {
        let expected = reference_packets(&reference, system_id);
        assert!(expected.len() > 500);
        let stored = wait_for_rows(deployment, drone_id, expected.len()).await;
        assert_eq!(stored, expected, "system id {system_id}");
    }
    // The copy is the same vehicle, so the same rows.
    assert_eq!(reference_packets(&reference, 1), reference_packets(&reference, 2));
    assert_eq!(summary["vehicles"].as_array().unwrap().len(), 2);
    case.finish().await;
}

/// `flightline bridge --udp` on a free loopback port, once it listens.
async fn live_bridge(case: &Case, key: &str) -> (tokio::process::Child, u16) {
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let bridge =
        bridge_command(&["--udp", &addr, "--api-key", key], &case.deployment.url(), &case.dir).spawn().unwrap();
    wait_until_bound(port).await;
    (bridge, port)
}

/// The rows' `ts` are the 50 Hz grid without a hole.
fn assert_no_gap(rows: &[Value]) {
    let ts: Vec<i64> = rows.iter().map(|r| r["ts_us"].as_i64().unwrap()).collect();
    let gaps: Vec<&[i64]> = ts.windows(2).filter(|w| w[1] - w[0] != 20_000).collect();
    assert!(gaps.is_empty(), "rows missing: {gaps:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_as_udp_datagrams_gives_the_same_rows() {
    let case = Case::start("udp").await;
    let (drone_id, key) = case.drone("bluerov-udp").await;
    let (bridge, port) = live_bridge(&case, &key).await;
    let log = log_path();
    assert!(send_udp(port, &log, None).wait().await.unwrap().success());
    // Every datagram sent is in the bridge's socket; once it has read them all, stop it.
    wait_until_read(port).await;
    let summary = stop_bridge(bridge).await;
    assert_live_rows_match_the_log(&case, drone_id, &summary, &log).await;
    case.finish().await;
}

/// A live link replaying the log at recorded pace gives the rows of the recording: every
/// message decoded, the packets of the recording within a live link's jitter, each row one of
/// the vehicle's states as pymavlink decodes them, in order, on the grid.
async fn assert_live_rows_match_the_log(case: &Case, drone_id: Uuid, summary: &Value, log: &Path) {
    let reference = reference(log, &[]);
    assert_eq!(summary["messages"], reference_messages(log), "every message was decoded: {summary}");
    assert_eq!(summary["buffered_packets"], 0);
    let sent = summary["packets_sent"].as_u64().unwrap() as usize;
    let stored = wait_for_rows(&case.deployment, drone_id, sent).await;
    let recorded = reference_packets(&reference, 1).len();
    assert!(sent.abs_diff(recorded) <= recorded / 20, "{sent} packets live, {recorded} recorded");
    assert_rows_follow_states(&stored, reference["states"]["1"].as_array().unwrap());
    assert_no_gap(&stored);
}

/// The serial source on a pseudo-terminal (no radio here): the bridge sets it raw at 57600 baud
/// and reads the log written to its other end like a telemetry radio's stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_on_a_serial_port_gives_the_same_rows() {
    use tokio::io::AsyncBufReadExt;

    let case = Case::start("serial").await;
    let (drone_id, key) = case.drone("bluerov-serial").await;
    let log = log_path();
    let mut radio = tokio::process::Command::new("python3")
        .arg(data("mavtools.py"))
        .arg("serial")
        .arg(&log)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 mavtools.py serial");
    let mut lines = tokio::io::BufReader::new(radio.stdout.take().unwrap()).lines();
    let device = lines.next_line().await.unwrap().expect("the pseudo-terminal's path");
    let bridge =
        bridge_command(&["--serial", &device, "--baud", "57600", "--api-key", &key], &case.deployment.url(), &case.dir)
            .spawn()
            .unwrap();
    // The radio exits once the bridge has read every byte.
    assert!(lines.next_line().await.unwrap().is_some());
    assert!(radio.wait().await.unwrap().success());
    let summary = stop_bridge(bridge).await;
    assert_live_rows_match_the_log(&case, drone_id, &summary, &log).await;
    case.finish().await;
}

/// Messages of the log pymavlink decodes in the common dialect (what the bridge counts).
fn reference_messages(log: &Path) -> u64 {
    let script = "import sys\nfrom pymavlink import mavutil\nm = mavutil.mavlink_connection(sys.argv[1], dialect='common')\nn = 0\nwhile True:\n    x = m.recv_match()\n    if x is None: break\n    if x.get_type() != 'BAD_DATA' and not x.get_type().startswith('UNKNOWN'): n += 1\nprint(n)\n";
    let output = python(&["-c".as_ref(), script.as_ref(), log.as_os_str()]);
    String::from_utf8(output.stdout).unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_down_for_30_s_mid_stream_loses_nothing() {
    let mut case = Case::start("outage").await;
    let (drone_id, key) = case.drone("bluerov-outage").await;
    let (bridge, port) = live_bridge(&case, &key).await;
    // 50 s of live telemetry (the log, over and over).
    let mut sender = send_udp(port, &log_path(), Some(50));
    // Once the first rows are in, the API goes away (kill -9) for 30 s, then comes back.
    let deadline = tokio::time::Instant::now() + WAIT;
    while row_count(&case.deployment, drone_id).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no row before the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    case.child.kill().await.unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let buffered: usize = std::fs::read_dir(&case.dir)
        .unwrap()
        .filter_map(|d| std::fs::read_dir(d.unwrap().path()).ok())
        .map(|files| files.count())
        .sum();
    assert!(buffered > 50, "after 30 s without the API the batches are on disk ({buffered} files)");
    case.child = case.deployment.start().await;
    assert!(sender.wait().await.unwrap().success());
    let summary = stop_bridge(bridge).await;
    assert_eq!(summary["buffered_packets"], 0, "{summary}");
    assert_eq!(summary["dropped_packets"], 0);
    assert_eq!(summary["rejected_packets"], 0);
    let sent = summary["packets_sent"].as_u64().unwrap() as usize;
    assert_eq!(summary["packets"], sent);
    // 50 s at 50 Hz, less the wait for the first heartbeat.
    assert!(sent > 45 * 50, "{sent} packets");
    let stored = wait_for_rows(&case.deployment, drone_id, sent).await;
    assert_no_gap(&stored);
    case.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_is_said_and_counted_not_silent() {
    let case = Case::start("full").await;
    let (_, key) = case.drone("bluerov-full").await;
    // An API that is not there, and a buffer of 20 KiB (some 90 packets).
    let nowhere = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let port = free_udp_port();
    let addr = format!("127.0.0.1:{port}");
    let bridge = bridge_command(&["--udp", &addr, "--api-key", &key, "--buffer-max-mib", "0.02"], &nowhere, &case.dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_bound(port).await;
    assert!(send_udp(port, &log_path(), None).wait().await.unwrap().success());
    wait_until_read(port).await;
    let pid = bridge.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let output = bridge.wait_with_output().await.unwrap();
    assert!(output.status.success());
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the disk buffer") && stderr.contains("is full"), "no message: {stderr}");
    let (packets, buffered, dropped) = (
        summary["packets"].as_u64().unwrap(),
        summary["buffered_packets"].as_u64().unwrap(),
        summary["dropped_packets"].as_u64().unwrap(),
    );
    assert!(buffered > 0 && dropped > 0, "{summary}");
    assert_eq!(packets, buffered + dropped, "every packet is either on disk or counted as dropped");
    assert_eq!(summary["packets_sent"], 0);
    case.finish().await;
}
