//! No acknowledged packet is lost when brokers fail (DESIGN.md §1, promise 1), on a real
//! 3-broker cluster: KRaft, three combined broker+controller nodes, replication factor 3,
//! `min.insync.replicas=2` (`deploy/local/stack.sh cluster-up`, ports 19092-19094; the single node
//! at 9092 is never touched). Drones POST small batches at a fixed rate to a real ingest server
//! on that cluster; one broker is killed with `kill -9` under that load and started again ~10 s
//! later, then all three are restarted one after the other (SIGTERM, start, back in every ISR
//! before the next). Every packet of a request that got 201 must then be in the topic; a
//! duplicate is only allowed for a packet whose request was retried (503 → retry → 201, where the
//! 503'd attempt had still reached the log). The figures are printed (`--nocapture`) and recorded
//! in RELIABILITY.md. The test brings the cluster up itself and stops it at the end.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{serve_ingest, IngestOptions};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use reqwest::StatusCode;
use schemas::TelemetryRecord;
use serde_json::Value;
use testkit::{packet_at, past_ms, TestDb};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BROKERS: &str = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094";
const NODES: [u32; 3] = [1, 2, 3];
const PARTITIONS: i32 = 6;
/// The load: `drone_count()` drones, each one request of `batch_size()` packets every PACE: 12 × 10 by
/// default (`make test`); `FLIGHTLINE_CLUSTER_DRONES` and `FLIGHTLINE_CLUSTER_BATCH` raise it
/// (RELIABILITY.md: 40 × 50, 20 000 packets/s, in a release build).
const PACE: Duration = Duration::from_millis(100);

fn load_knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

fn drone_count() -> usize {
    load_knob("FLIGHTLINE_CLUSTER_DRONES", 12)
}

fn batch_size() -> usize {
    load_knob("FLIGHTLINE_CLUSTER_BATCH", 10).min(500)
}

/// Event time between a drone's packets: 5 ms, or less when a batch every PACE would outrun the
/// wall clock (ts may not be more than 60 s ahead).
fn step_ms() -> i64 {
    (PACE.as_millis() as i64 / batch_size() as i64).clamp(1, 5)
}
/// A drone retries a refused batch after this (ingest says `Retry-After: 1`; a shorter pause
/// measures the recovery more finely and is still gentle).
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How long the killed broker stays down, under load.
const KILLED_FOR: Duration = Duration::from_secs(10);
/// Per wait of stack.sh (node up, node in sync), and of this test for writes to resume.
const STACK_TIMEOUT_S: u64 = 60;
/// A guard against a hang, not a speed check: the whole test, cluster start and stop included,
/// stays under 7 minutes (10 under a raised load: reading the whole topic back takes longer). It
/// takes about 3 on a quiet 2-core box; with a build beside it each node took ~57 s to rejoin
/// (each wait may take up to STACK_TIMEOUT_S), and 4 minutes ran out on a run that was fine.
fn whole_test() -> Duration {
    Duration::from_secs(if drone_count() * batch_size() > 120 { 600 } else { 420 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_packet_is_lost_through_a_broker_kill_and_a_rolling_restart() {
    let cluster = ClusterDownOnDrop;
    tokio::time::timeout(whole_test(), run()).await.expect("the whole test finishes within its time budget");
    drop(cluster);
}

async fn run() {
    // Ingest's warnings (why an append failed) next to the figures.
    let _ = tracing_subscriber::fmt().with_env_filter("warn").with_test_writer().try_init();
    let t0 = Instant::now();
    let took = stack(&["cluster-up"]).await;
    eprintln!("cluster up in {:.1} s", took.as_secs_f64());
    let kafka = cluster_config();
    let topic = format!("fltest.{}.telemetry.v1", Uuid::new_v4().simple());
    create_topic(&kafka, &topic).await;
    wait_in_sync(&kafka, &topic, None).await;

    let db = TestDb::new().await;
    let (url, server) = serve_ingest(&db.pool, &kafka, &topic, &IngestOptions::default()).await;
    let mut drones = Vec::new();
    for i in 0..drone_count() {
        let (id, key) = credentials::create_drone(&db.pool, &format!("cluster-{i}"), None).await.expect("drone");
        drones.push((id, key));
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client");
    let stop = CancellationToken::new();
    let logs: Vec<Arc<Mutex<DroneLog>>> = drones
        .iter()
        .map(|(drone, _)| Arc::new(Mutex::new(DroneLog { drone: *drone, ..Default::default() })))
        .collect();
    let start_ms = past_ms();
    let load: Vec<_> = drones
        .iter()
        .zip(&logs)
        .map(|((_, key), log)| {
            tokio::spawn(fly(http.clone(), url.clone(), key.clone(), start_ms, log.clone(), stop.clone()))
        })
        .collect();
    let load_started = Instant::now();
    let warm = wait_writes_flow(&logs, load_started, "the load's first batches").await;

    // Fault 1: kill -9 of the leader of the busiest partition, ~10 s under load, start again.
    let mut faults = Vec::new();
    let victim = leader_of_busiest_partition(&kafka, &topic).await;
    let at = Instant::now();
    stack(&["cluster-kill", &victim.to_string()]).await;
    sleep_until(at + KILLED_FOR).await; // the outage's length, not a synchronisation
    let down = at.elapsed();
    let rejoin = stack(&["cluster-start", &victim.to_string()]).await;
    wait_in_sync(&kafka, &topic, Some(victim)).await;
    let writing = wait_writes_flow(&logs, at, "writes after the kill -9").await;
    faults.push(Fault { name: format!("kill -9 broker {victim}, start after 10 s"), at, down, rejoin, writing });

    // Faults 2-4: a rolling restart, each node back in every ISR before the next goes down.
    for node in NODES {
        let led: Vec<usize> = partitions(&kafka, &topic)
            .await
            .expect("topic metadata")
            .iter()
            .enumerate()
            .filter(|(_, (leader, _))| *leader == node as i32)
            .map(|(partition, _)| partition)
            .collect();
        eprintln!("broker {node} leads partitions {led:?}: it is restarted");
        let at = Instant::now();
        let down = stack(&["cluster-stop", &node.to_string()]).await;
        let rejoin = stack(&["cluster-start", &node.to_string()]).await;
        wait_in_sync(&kafka, &topic, Some(node)).await;
        let writing = wait_writes_flow(&logs, at, "writes after the restart").await;
        faults.push(Fault {
            name: format!("rolling restart: SIGTERM broker {node}, start"),
            at,
            down,
            rejoin,
            writing,
        });
    }

    stop.cancel();
    let load_ended = Instant::now();
    for drone in load {
        tokio::time::timeout(Duration::from_secs(30), drone).await.expect("drones finish their last batch").unwrap();
    }
    server.cancel();

    let read_started = Instant::now();
    let records = read_whole_topic(&kafka, &topic).await;
    eprintln!("read {} messages back in {:.1} s", records.len(), read_started.elapsed().as_secs_f64());
    let mut drones_by_partition: Vec<HashSet<Uuid>> = vec![HashSet::new(); PARTITIONS as usize];
    for (partition, _, record) in &records {
        drones_by_partition[*partition as usize].insert(record.drone_id);
    }
    let counts: Vec<usize> = drones_by_partition.iter().map(HashSet::len).collect();
    eprintln!("drones per partition: {counts:?}");

    let report = compare(&drones, &logs, &records);
    print_report(&report, &faults, &logs, (load_started, warm), load_ended, t0);
    assert!(report.unexpected.is_empty(), "unexpected answers: {:?}", report.unexpected);
    assert_eq!(report.foreign, 0, "messages of drones not in this test");
    assert_eq!(report.lost, 0, "acknowledged packets missing from the topic, e.g. {:?}", report.lost_examples);
    assert_eq!(
        report.unexplained_duplicates, 0,
        "duplicates of packets whose request was never retried, e.g. {:?}",
        report.duplicate_examples
    );
    assert!(report.acked > 0);

    delete_topic(&kafka, &topic).await;
    db.drop().await;
    stack(&["cluster-down"]).await;
}

// ---------------------------------------------------------------------------------------------
// the cluster

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/local/stack.sh")
}

/// Runs `deploy/local/stack.sh ARGS`, shows its output, fails the test if it failed.
async fn stack(args: &[&str]) -> Duration {
    let started = Instant::now();
    let output = tokio::process::Command::new("bash")
        .arg(script())
        .args(args)
        .env("STACK_TIMEOUT", STACK_TIMEOUT_S.to_string())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run deploy/local/stack.sh");
    let took = started.elapsed();
    eprintln!("stack.sh {} ({:.1} s):", args.join(" "), took.as_secs_f64());
    for line in String::from_utf8_lossy(&output.stdout).lines().chain(String::from_utf8_lossy(&output.stderr).lines()) {
        eprintln!("    {line}");
    }
    assert!(output.status.success(), "stack.sh {} failed ({})", args.join(" "), output.status);
    took
}

/// Stops the cluster when the test fails or runs out of time (a passing run stops it itself);
/// the nodes' logs stay in `.stack/logs/kafka-cluster-*.log`.
struct ClusterDownOnDrop;

impl Drop for ClusterDownOnDrop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::process::Command::new("bash").arg(script()).arg("cluster-down").status();
        }
    }
}

fn cluster_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", BROKERS).set("client.id", "fltest-cluster").set("log_level", "4");
    config
}

async fn create_topic(kafka: &ClientConfig, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = kafka.create().expect("admin client");
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&new], &options).await.expect("create topic on the cluster") {
        result.expect("topic created");
    }
}

async fn delete_topic(kafka: &ClientConfig, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = kafka.create().expect("admin client");
    let _ = admin.delete_topics(&[topic], &AdminOptions::new()).await;
}

/// Per partition of `topic`: (leader, ISR), from the metadata of whichever broker answers.
async fn partitions(kafka: &ClientConfig, topic: &str) -> Result<Vec<(i32, Vec<i32>)>, String> {
    let (kafka, topic) = (kafka.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = kafka.create().map_err(|e| e.to_string())?;
        let metadata = client.fetch_metadata(Some(&topic), Duration::from_secs(5)).map_err(|e| e.to_string())?;
        let found = metadata.topics().iter().find(|t| t.name() == topic).ok_or("topic not in the metadata")?;
        if let Some(error) = found.error() {
            return Err(format!("{error:?}"));
        }
        Ok(found.partitions().iter().map(|p| (p.leader(), p.isr().to_vec())).collect())
    })
    .await
    .expect("metadata task")
}

/// Until every partition of `topic` has a leader and all three replicas in its ISR (`node`, when
/// given, must be among them: the broker just restarted).
async fn wait_in_sync(kafka: &ClientConfig, topic: &str, node: Option<u32>) {
    let deadline = Instant::now() + Duration::from_secs(STACK_TIMEOUT_S);
    loop {
        let state = partitions(kafka, topic).await;
        if let Ok(partitions) = &state {
            let whole = partitions.len() == PARTITIONS as usize
                && partitions.iter().all(|(leader, isr)| {
                    *leader >= 0 && isr.len() == 3 && node.is_none_or(|n| isr.contains(&(n as i32)))
                });
            if whole {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{topic} not fully in sync within {STACK_TIMEOUT_S} s: {state:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The leader of the partition of `topic` that holds the most messages so far: the broker whose
/// loss hits the load hardest (which partitions the drones' keys hash to is chance).
async fn leader_of_busiest_partition(kafka: &ClientConfig, topic: &str) -> u32 {
    let partitions = partitions(kafka, topic).await.expect("topic metadata");
    let (kafka, name) = (kafka.clone(), topic.to_owned());
    let ends: Vec<i64> = tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = kafka.create().expect("client");
        (0..PARTITIONS)
            .map(|p| client.fetch_watermarks(&name, p, Duration::from_secs(5)).expect("watermarks").1)
            .collect()
    })
    .await
    .expect("watermarks task");
    let busiest = (0..PARTITIONS as usize).max_by_key(|&p| ends[p]).expect("a partition");
    let leader = partitions[busiest].0;
    eprintln!("messages by partition so far {ends:?}; partition {busiest} is led by broker {leader}: it is killed");
    u32::try_from(leader).expect("a broker id")
}

/// Every message of `topic`, read from the beginning up to the end offsets seen at the start.
/// Each as (partition, key, record).
async fn read_whole_topic(kafka: &ClientConfig, topic: &str) -> Vec<(i32, String, TelemetryRecord)> {
    let (kafka, topic) = (kafka.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = kafka
            .clone()
            .set("group.id", format!("fltest-reader-{}", Uuid::new_v4().simple()))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut ends = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            let (_, end) = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10)).expect("watermarks");
            if end > 0 {
                ends.insert(partition, end);
                assignment.add_partition_offset(&topic, partition, Offset::Beginning).expect("offset");
            }
        }
        let mut by_partition: Vec<_> = ends.iter().collect();
        by_partition.sort();
        eprintln!("messages by partition (end offsets): {by_partition:?}");
        consumer.assign(&assignment).expect("assign");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut out = Vec::new();
        while !ends.is_empty() {
            assert!(std::time::Instant::now() < deadline, "topic not read within 60 s; partitions left: {ends:?}");
            let Some(message) = consumer.poll(Duration::from_millis(500)) else { continue };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    eprintln!("consumer: {error} (retrying)");
                    continue;
                }
            };
            let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8 key");
            let record = schemas::decode_telemetry(message.payload().expect("payload")).expect("decodable record");
            out.push((message.partition(), key, record));
            if ends.get(&message.partition()).is_some_and(|end| message.offset() + 1 >= *end) {
                ends.remove(&message.partition());
            }
        }
        out
    })
    .await
    .expect("reader task")
}

// ---------------------------------------------------------------------------------------------
// the load

#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    Created,
    Unavailable,
    /// No HTTP answer (connection error or the client's 30 s timeout).
    Transport,
    Other,
}

struct Attempt {
    started: Instant,
    answered: Instant,
    outcome: Outcome,
    /// `ts` (µs) of the batch's packets when the answer was 201 (empty otherwise).
    acked: Vec<i64>,
}

/// What one drone sent and what it was told.
#[derive(Default)]
struct DroneLog {
    drone: Uuid,
    attempts: Vec<Attempt>,
    /// `ts` (µs) of every packet of a request answered 201: acknowledged.
    acked: Vec<i64>,
    /// `ts` (µs) of the packets of requests that needed more than one attempt.
    retried: HashSet<i64>,
    unexpected: Vec<String>,
}

/// One drone: a batch of `batch_size()` packets every PACE, each retried after 503 until it gets 201;
/// after `stop`, the batch in hand is still sent to the end.
async fn fly(
    http: reqwest::Client,
    url: String,
    key: String,
    start_ms: i64,
    log: Arc<Mutex<DroneLog>>,
    stop: CancellationToken,
) {
    let mut pace = tokio::time::interval(PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_ms = start_ms;
    let give_up = Instant::now() + whole_test();
    let (batch, step) = (batch_size() as i64, step_ms());
    while !stop.is_cancelled() {
        pace.tick().await;
        let packets: Vec<Value> = (0..batch).map(|i| packet_at(next_ms + step * i, 0.5)).collect();
        let ts_us: Vec<i64> = (0..batch).map(|i| (next_ms + step * i) * 1000).collect();
        next_ms += step * batch;
        let mut tries = 0;
        loop {
            tries += 1;
            let started = Instant::now();
            let response =
                http.post(format!("{url}/v1/telemetry")).header("x-api-key", &key).json(&packets).send().await;
            let answered = Instant::now();
            let (outcome, detail) = match response {
                Ok(response) if response.status() == StatusCode::CREATED => (Outcome::Created, None),
                Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => (Outcome::Unavailable, None),
                Ok(response) => {
                    let status = response.status();
                    (Outcome::Other, Some(format!("{status}: {}", response.text().await.unwrap_or_default())))
                }
                Err(error) => (Outcome::Transport, Some(error.to_string())),
            };
            let settled = {
                let mut log = log.lock().unwrap();
                let acked = if outcome == Outcome::Created { ts_us.clone() } else { Vec::new() };
                log.attempts.push(Attempt { started, answered, outcome, acked });
                match outcome {
                    Outcome::Created => {
                        log.acked.extend(&ts_us);
                        if tries > 1 {
                            log.retried.extend(&ts_us);
                        }
                        true
                    }
                    // Not retried: a refusal is final (and fails the test); the batch is not acknowledged.
                    Outcome::Other => {
                        log.unexpected.extend(detail);
                        true
                    }
                    Outcome::Unavailable | Outcome::Transport => {
                        if let Some(detail) = detail {
                            eprintln!("drone request failed: {detail} (retrying)");
                        }
                        false
                    }
                }
            };
            if settled {
                break;
            }
            if Instant::now() > give_up {
                return;
            }
            tokio::time::sleep(RETRY_PAUSE).await; // the client's retry pacing
        }
    }
}

/// Until every drone got 201 for a request it sent after `since`; returns how long after `since`.
async fn wait_writes_flow(logs: &[Arc<Mutex<DroneLog>>], since: Instant, what: &str) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(STACK_TIMEOUT_S);
    loop {
        let flowing: Option<Vec<Instant>> = logs
            .iter()
            .map(|log| {
                let log = log.lock().unwrap();
                log.attempts.iter().find(|a| a.outcome == Outcome::Created && a.started >= since).map(|a| a.answered)
            })
            .collect();
        if let Some(answered) = flowing {
            return answered.into_iter().max().unwrap_or(since) - since;
        }
        assert!(Instant::now() < deadline, "{what}: not every drone got 201 within {STACK_TIMEOUT_S} s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// the verdict

struct Fault {
    name: String,
    at: Instant,
    /// From the fault until the broker was started again (the kill's outage, or the controlled
    /// shutdown).
    down: Duration,
    /// From that start until `cluster-start` returned: the broker back in every ISR.
    rejoin: Duration,
    /// From the fault until every drone had 201 for a request sent after it.
    writing: Duration,
}

struct Report {
    acked: usize,
    in_topic: usize,
    /// Acknowledged packets not in the topic, and how often each packet is in it, to split the
    /// figures by fault.
    lost_keys: HashSet<(Uuid, i64)>,
    copies: HashMap<(Uuid, i64), usize>,
    lost: usize,
    lost_examples: Vec<(Uuid, i64)>,
    duplicates: usize,
    unexplained_duplicates: usize,
    duplicate_examples: Vec<(Uuid, i64)>,
    unacknowledged_in_topic: usize,
    foreign: usize,
    unexpected: Vec<String>,
}

fn compare(
    drones: &[(Uuid, String)],
    logs: &[Arc<Mutex<DroneLog>>],
    records: &[(i32, String, TelemetryRecord)],
) -> Report {
    let mut acked: HashSet<(Uuid, i64)> = HashSet::new();
    let mut retried: HashSet<(Uuid, i64)> = HashSet::new();
    let mut unexpected = Vec::new();
    for ((drone, _), log) in drones.iter().zip(logs) {
        let log = log.lock().unwrap();
        acked.extend(log.acked.iter().map(|ts| (*drone, *ts)));
        retried.extend(log.retried.iter().map(|ts| (*drone, *ts)));
        unexpected.extend(log.unexpected.iter().cloned());
    }
    let ours: HashSet<Uuid> = drones.iter().map(|(id, _)| *id).collect();
    let mut seen: HashMap<(Uuid, i64), usize> = HashMap::new();
    let mut foreign = 0;
    for (_, key, record) in records {
        if !ours.contains(&record.drone_id) || *key != record.drone_id.to_string() {
            foreign += 1;
            continue;
        }
        *seen.entry((record.drone_id, record.ts_us)).or_default() += 1;
    }
    let lost: Vec<(Uuid, i64)> = acked.iter().filter(|k| !seen.contains_key(k)).copied().collect();
    let duplicated: Vec<((Uuid, i64), usize)> = seen.iter().filter(|(_, n)| **n > 1).map(|(k, n)| (*k, *n)).collect();
    let unexplained: Vec<(Uuid, i64)> =
        duplicated.iter().filter(|(k, _)| !retried.contains(k)).map(|(k, _)| *k).collect();
    Report {
        acked: acked.len(),
        in_topic: records.len(),
        lost_keys: lost.iter().copied().collect(),
        lost: lost.len(),
        lost_examples: lost.iter().take(5).copied().collect(),
        duplicates: duplicated.iter().map(|(_, n)| n - 1).sum(),
        unexplained_duplicates: unexplained.len(),
        duplicate_examples: unexplained.iter().take(5).copied().collect(),
        unacknowledged_in_topic: seen.keys().filter(|k| !acked.contains(k)).count(),
        foreign,
        unexpected,
        copies: seen,
    }
}

/// The figures of one stretch of the load.
#[derive(Default)]
struct Window {
    /// Packets of the 201s answered in it.
    acked: usize,
    lost: usize,
    duplicated: usize,
    unavailable: usize,
    transport: usize,
    longest_gap: Duration,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "acked {} lost {} duplicated {} | 503s {} | no answer {} | longest gap between a drone's 201s {:.1} s",
            self.acked,
            self.lost,
            self.duplicated,
            self.unavailable,
            self.transport,
            self.longest_gap.as_secs_f64()
        )
    }
}

fn print_report(
    report: &Report,
    faults: &[Fault],
    logs: &[Arc<Mutex<DroneLog>>],
    (load_started, warm): (Instant, Duration),
    load_ended: Instant,
    t0: Instant,
) {
    // A window's figures: the answers that came in it (a request in flight when a fault struck
    // belongs to that fault), the packets they acknowledged, and of those the lost and duplicated.
    let window = |from: Instant, to: Instant| {
        let mut figures = Window::default();
        for log in logs {
            let log = log.lock().unwrap();
            let mut last_ack = from;
            for attempt in log.attempts.iter().filter(|a| a.answered >= from && a.answered < to) {
                match attempt.outcome {
                    Outcome::Unavailable => figures.unavailable += 1,
                    Outcome::Transport => figures.transport += 1,
                    Outcome::Created => {
                        figures.longest_gap = figures.longest_gap.max(attempt.answered - last_ack);
                        last_ack = attempt.answered;
                    }
                    Outcome::Other => {}
                }
                for ts in &attempt.acked {
                    let key = (log.drone, *ts);
                    figures.acked += 1;
                    figures.lost += usize::from(report.lost_keys.contains(&key));
                    figures.duplicated += report.copies.get(&key).map_or(0, |n| n.saturating_sub(1));
                }
            }
        }
        figures
    };
    eprintln!(
        "== kafka_cluster: {} drones x {} packets every {} ms, RF 3, min.insync.replicas=2 ==",
        drone_count(),
        batch_size(),
        PACE.as_millis()
    );
    let first_fault = faults.first().map_or(load_ended, |fault| fault.at);
    let before = window(load_started, first_fault);
    eprintln!("before the faults: every drone acked {:.1} s after the load started | {before}", warm.as_secs_f64());
    for (i, fault) in faults.iter().enumerate() {
        let until = faults.get(i + 1).map_or(load_ended, |next| next.at);
        eprintln!(
            "fault {}: {:<40} down {:>4.1} s, start to in every ISR {:>4.1} s | every drone acked again \
             {:>4.1} s after the fault | {}",
            i + 1,
            fault.name,
            fault.down.as_secs_f64(),
            fault.rejoin.as_secs_f64(),
            fault.writing.as_secs_f64(),
            window(fault.at, until),
        );
    }
    let whole = window(load_started, load_ended);
    let requests: usize = logs.iter().map(|log| log.lock().unwrap().attempts.len()).sum();
    eprintln!(
        "packets acknowledged {} | in topic {} | lost {} | duplicated {} (all from retried requests: {}) | \
         in topic but never acknowledged {} | requests {requests} | 503s {} | no answer {} | \
         load ran {:.1} s | test so far {:.1} s",
        report.acked,
        report.in_topic,
        report.lost,
        report.duplicates,
        report.unexplained_duplicates == 0,
        report.unacknowledged_in_topic,
        whole.unavailable,
        whole.transport,
        (load_ended - load_started).as_secs_f64(),
        t0.elapsed().as_secs_f64(),
    );
}

/// The verdict itself, without a cluster: it must see a lost packet and a duplicate nobody retried.
#[test]
fn the_comparison_finds_lost_packets_and_unexplained_duplicates() {
    let drone = Uuid::new_v4();
    let t = past_ms();
    let record = |ts_ms: i64| (0, drone.to_string(), testkit::record_of(drone, &packet_at(ts_ms, 0.5)));
    let us = |ts_ms: i64| ts_ms * 1000;
    // t and t+1 are in the topic, t+1 twice (its request was retried); t+2 is missing; t+3 was
    // never acknowledged.
    let records = vec![record(t), record(t + 1), record(t + 1), record(t + 3)];
    let log = DroneLog {
        acked: vec![us(t), us(t + 1), us(t + 2)],
        retried: HashSet::from([us(t + 1)]),
        ..Default::default()
    };
    let report = compare(&[(drone, String::new())], &[Arc::new(Mutex::new(log))], &records);
    assert_eq!((report.acked, report.lost, report.duplicates, report.unexplained_duplicates), (3, 1, 1, 0));
    assert_eq!((report.unacknowledged_in_topic, report.foreign), (1, 0));
    // The same duplicate without a retry is not explained.
    let log = DroneLog { acked: vec![us(t), us(t + 1)], ..Default::default() };
    let report = compare(&[(drone, String::new())], &[Arc::new(Mutex::new(log))], &records);
    assert_eq!((report.lost, report.unexplained_duplicates), (0, 1));
}
