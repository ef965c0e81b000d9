//! `flightline bridge`: MAVLink vehicles (a flight controller on UDP or a serial telemetry radio,
//! or a recorded `.tlog`) → telemetry packets through the ingest API.
//!
//! source (a task or thread per link) → [`sampler::Sampler`] (pure: which system ids are
//! vehicles, their packets on a fixed grid, [`mapping`] from messages to fields) → per-drone
//! batches → [`spool`] (each batch on disk until acknowledged) → one sender per drone over
//! [`IngestClient`], the retry rule `flightline send` uses. A status line goes to stderr every
//! few seconds, one JSON summary to stdout at the end.

pub mod mapping;
pub mod sampler;
pub mod source;
pub mod spool;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use figment::providers::{Format, Toml};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::mapping::Packet;
use self::sampler::{Notice, Sampler, Selection};
use self::source::{Event, Source};
use self::spool::{Queue, SendStats, Spool};
use super::client::IngestClient;

/// A live link's batches go out at least this often (the live view's latency).
const BATCH_WINDOW: Duration = Duration::from_millis(250);
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// A recording is read ahead of the API by at most this many batches per drone.
const RECORDING_AHEAD: usize = 4;
/// After SIGINT/SIGTERM, how long buffered batches may still be sent before the bridge exits
/// (what is left stays on disk for the next run).
const DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// A recording gives up after the API took nothing for this long.
const NO_PROGRESS: Duration = Duration::from_secs(300);

/// `flightline bridge`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["udp", "serial", "tlog"])))]
#[command(group(clap::ArgGroup::new("key").required(true).args(["api_key", "keys"])))]
pub struct BridgeOptions {
    /// Listen for MAVLink datagrams on this address (e.g. 0.0.0.0:14550).
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<String>,
    /// Read MAVLink from this serial device (a telemetry radio, a USB flight controller).
    #[arg(long, value_name = "DEV", requires = "baud")]
    pub serial: Option<PathBuf>,
    /// The serial device's baud rate (57600 for most telemetry radios).
    #[arg(long, value_name = "N", requires = "serial")]
    pub baud: Option<u32>,
    /// Replay a recorded telemetry log (.tlog, or .tlog.gz).
    #[arg(long, value_name = "FILE")]
    pub tlog: Option<PathBuf>,
    /// The API key of the one vehicle bridged (the first system id that sends an autopilot
    /// HEARTBEAT).
    #[arg(long)]
    pub api_key: Option<String>,
    /// A TOML file mapping MAVLink system ids to API keys, one line each: `1 = "KEY"`.
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// Base URL of the ingest API (default: http://FLIGHTLINE_HTTP_ADDR).
    #[arg(long)]
    pub target: Option<String>,
    /// Packets per second per vehicle (a fixed grid; each packet holds the latest values).
    #[arg(long, default_value_t = 50.0)]
    pub hz: f64,
    /// Replay a --tlog at this multiple of recorded speed (1 = real time); omit for as fast as
    /// the API accepts.
    #[arg(long, requires = "tlog")]
    pub rate_multiplier: Option<f64>,
    /// Folder of the on-disk buffer (batches not yet acknowledged by the API).
    #[arg(long, value_name = "DIR", default_value = "flightline-bridge-buffer")]
    pub buffer_dir: PathBuf,
    /// Size bound of the on-disk buffer, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256.0)]
    pub buffer_max_mib: f64,
}

/// The JSON summary printed on exit.
#[derive(Debug, Serialize)]
pub struct BridgeReport {
    pub source: String,
    pub seconds: f64,
    pub messages: u64,
    pub messages_by_type: BTreeMap<&'static str, u64>,
    pub undecoded_frames: u64,
    pub vehicles: Vec<VehicleReport>,
    pub ignored_system_ids: Vec<u8>,
    pub packets: u64,
    pub packets_sent: u64,
    pub requests: u64,
    pub retries: u64,
    pub buffered_packets: u64,
    pub dropped_packets: u64,
    pub rejected_packets: u64,
}

#[derive(Debug, Serialize)]
pub struct VehicleReport {
    pub system_id: u8,
    pub packets: u64,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    #[serde(flatten)]
    pub sent: SendStats,
}

/// Where a system id's packets go.
enum Keys {
    One(String),
    Map(BTreeMap<u8, String>),
}

fn read_keys(options: &BridgeOptions) -> anyhow::Result<Keys> {
    if let Some(key) = &options.api_key {
        anyhow::ensure!(!key.trim().is_empty(), "--api-key must not be empty");
        return Ok(Keys::One(key.trim().to_owned()));
    }
    let path = options.keys.as_ref().expect("clap requires --api-key or --keys");
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read --keys {}", path.display()))?;
    let raw: BTreeMap<String, String> = figment::Figment::from(<Toml as Format>::string(&text))
        .extract()
        .with_context(|| format!("--keys {}: expected lines of `SYSTEM_ID = \"API_KEY\"`", path.display()))?;
    let mut keys = BTreeMap::new();
    for (id, key) in raw {
        let system_id = id
            .parse::<u8>()
            .ok()
            .filter(|&id| id > 0)
            .with_context(|| format!("--keys {}: {id:?} is not a MAVLink system id (1–255)", path.display()))?;
        anyhow::ensure!(!key.trim().is_empty(), "--keys {}: the key of system id {system_id} is empty", path.display());
        keys.insert(system_id, key.trim().to_owned());
    }
    anyhow::ensure!(!keys.is_empty(), "--keys {} maps no system id", path.display());
    Ok(Keys::Map(keys))
}

fn source_of(options: &BridgeOptions) -> Source {
    match (&options.udp, &options.serial, &options.tlog) {
        (Some(addr), _, _) => Source::Udp(addr.clone()),
        (_, Some(device), _) => Source::Serial { device: device.clone(), baud: options.baud.unwrap_or(57_600) },
        (_, _, Some(path)) => Source::Tlog(path.clone()),
        _ => unreachable!("clap requires one source"),
    }
}

/// A drone being bridged: its queue, sender and counters.
struct Drone {
    label: String,
    queue: Arc<Queue>,
    stats: Arc<Mutex<SendStats>>,
    batch: Vec<u8>,
    batch_packets: u64,
    batch_opened: Option<Instant>,
    packets: u64,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
}

impl Drone {
    fn add(&mut self, packet: &Packet) -> anyhow::Result<()> {
        self.batch.push(if self.batch.is_empty() { b'[' } else { b',' });
        serde_json::to_writer(&mut self.batch, &packet.json()).context("encoding a packet")?;
        self.batch_packets += 1;
        self.batch_opened.get_or_insert_with(Instant::now);
        self.packets += 1;
        self.first_ts.get_or_insert(packet.ts_us);
        self.last_ts = Some(packet.ts_us);
        Ok(())
    }
}

struct Bridge {
    live: bool,
    drones: Vec<Drone>,
    /// system id → index in `drones`.
    routes: HashMap<u8, usize>,
    keys: Keys,
    /// The drone of `--api-key`, until its vehicle is heard.
    unassigned: Option<usize>,
    ignored: BTreeSet<u8>,
    dropped_packets: u64,
    buffer_full: bool,
    spool: Arc<Spool>,
    /// Cancelled when a sender ended with an error (its error is collected at the end).
    sender_failed: CancellationToken,
}

impl Bridge {
    /// Queues the packets; a full batch (500 packets, or a live one older than the window) goes
    /// to disk.
    async fn route(&mut self, packets: Vec<(u8, Packet)>) -> anyhow::Result<()> {
        for (system_id, packet) in packets {
            let Some(&index) = self.routes.get(&system_id) else { continue };
            self.drones[index].add(&packet)?;
            if self.drones[index].batch_packets as usize >= schemas::MAX_PACKETS_PER_BATCH {
                self.flush(index).await?;
            }
        }
        if self.live {
            for index in 0..self.drones.len() {
                if self.drones[index].batch_opened.is_some_and(|t| t.elapsed() >= BATCH_WINDOW) {
                    self.flush(index).await?;
                }
            }
        }
        Ok(())
    }

    async fn flush(&mut self, index: usize) -> anyhow::Result<()> {
        let drone = &mut self.drones[index];
        if drone.batch_packets == 0 {
            return Ok(());
        }
        drone.batch.push(b']');
        let body = std::mem::take(&mut drone.batch);
        let packets = std::mem::take(&mut drone.batch_packets);
        drone.batch_opened = None;
        loop {
            match self.drones[index].queue.push(&body, packets)? {
                Ok(()) => break,
                Err(spool::Full) if self.live => {
                    if !self.buffer_full {
                        self.buffer_full = true;
                        eprintln!(
                            "error: bridge: the disk buffer {} is full ({:.2} MiB, --buffer-max-mib): telemetry is \
                             dropped until the API takes the backlog",
                            self.spool.root().display(),
                            self.spool.max_bytes() as f64 / f64::from(1 << 20)
                        );
                    }
                    self.dropped_packets += packets;
                    return Ok(());
                }
                // A recording waits for room instead.
                Err(spool::Full) => self.wait_for_progress(|bridge| bridge.spool.used_bytes()).await?,
            }
        }
        if self.buffer_full {
            self.buffer_full = false;
            eprintln!("bridge: the buffer has room again; {} packets were dropped", self.dropped_packets);
        }
        if !self.live {
            // A recording is read ahead of the API by a few batches only, not as fast as the disk.
            while self.drones[index].queue.backlog().0 > RECORDING_AHEAD {
                self.wait_for_progress(|bridge| bridge.drones[index].queue.backlog().0 as u64).await?;
            }
        }
        Ok(())
    }

    /// Waits until `measure` (a backlog) shrinks: the senders took something.
    async fn wait_for_progress(&self, measure: impl Fn(&Self) -> u64) -> anyhow::Result<()> {
        let before = measure(self);
        let started = Instant::now();
        while measure(self) >= before {
            if self.sender_failed.is_cancelled() {
                bail!("a sender failed");
            }
            if started.elapsed() >= NO_PROGRESS {
                bail!(
                    "the API took no packet for 5 minutes; what was read stays buffered in {} for the next run",
                    self.spool.root().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn on_notice(&mut self, notice: Notice) {
        match notice {
            Notice::Vehicle { system_id, component_id } => {
                let index = match (&self.keys, self.unassigned.take()) {
                    (Keys::One(_), Some(index)) => index,
                    // The drones of --keys were opened in the map's order.
                    (Keys::Map(keys), _) => match keys.keys().position(|&id| id == system_id) {
                        Some(index) => index,
                        None => return,
                    },
                    (Keys::One(_), None) => return,
                };
                self.drones[index].label = label(system_id);
                self.routes.insert(system_id, index);
                eprintln!("bridge: vehicle system id {system_id} (component {component_id}) heard; bridging it");
            }
            Notice::Ignored { system_id } => {
                self.ignored.insert(system_id);
                let why = match self.keys {
                    Keys::One(_) => "--api-key bridges one vehicle; map several with --keys",
                    Keys::Map(_) => "it has no key in --keys",
                };
                eprintln!("bridge: ignoring vehicle system id {system_id}: {why}");
            }
        }
    }
}

fn label(system_id: u8) -> String {
    format!("system id {system_id}")
}

/// What woke the bridge's loop.
enum Step {
    Event(Option<Event>),
    Window,
    Status,
    SenderEnded(Result<anyhow::Result<()>, tokio::task::JoinError>),
    Shutdown,
    SourceEnded(Result<anyhow::Result<()>, tokio::task::JoinError>),
}

/// Per-type message counts since the last status line.
#[derive(Default)]
struct Counts {
    by_type: BTreeMap<&'static str, u64>,
    since_status: BTreeMap<&'static str, u64>,
    messages: u64,
    undecoded: u64,
}

pub async fn bridge(
    options: &BridgeOptions,
    default_target: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<BridgeReport> {
    anyhow::ensure!(options.hz.is_finite() && options.hz > 0.0 && options.hz <= 200.0, "--hz must be in (0, 200]");
    if let Some(multiplier) = options.rate_multiplier {
        anyhow::ensure!(multiplier > 0.0 && multiplier.is_finite(), "--rate-multiplier must be a positive number");
    }
    anyhow::ensure!(
        options.buffer_max_mib.is_finite() && options.buffer_max_mib >= 0.01,
        "--buffer-max-mib must be at least 0.01"
    );
    let keys = read_keys(options)?;
    let source = source_of(options);
    let target = options.target.as_deref().unwrap_or(default_target);
    let spool = Spool::new(&options.buffer_dir, (options.buffer_max_mib * f64::from(1 << 20)) as u64)?;

    let stop_senders = CancellationToken::new();
    let sender_failed = CancellationToken::new();
    let mut senders = tokio::task::JoinSet::new();
    let mut drones = Vec::new();
    let (selection, unassigned) = match &keys {
        Keys::One(key) => {
            drones.push(open_drone(
                &spool,
                key,
                "the vehicle".to_owned(),
                target,
                &stop_senders,
                &sender_failed,
                &mut senders,
            )?);
            (Selection::First, Some(0))
        }
        Keys::Map(map) => {
            for (&system_id, key) in map {
                drones.push(open_drone(
                    &spool,
                    key,
                    label(system_id),
                    target,
                    &stop_senders,
                    &sender_failed,
                    &mut senders,
                )?);
            }
            (Selection::Only(map.keys().copied().collect()), None)
        }
    };
    let leftover: u64 = drones.iter().map(|d| d.queue.backlog().1).sum();
    if leftover > 0 {
        eprintln!(
            "bridge: {leftover} packets buffered by an earlier run in {}; sending them first",
            spool.root().display()
        );
    }
    let period_us = (1e6 / options.hz).round() as i64;
    let mut sampler = Sampler::new(period_us, selection);
    let mut bridge = Bridge {
        live: !source.is_recording(),
        drones,
        routes: HashMap::new(),
        keys,
        unassigned,
        ignored: BTreeSet::new(),
        dropped_packets: 0,
        buffer_full: false,
        spool: spool.clone(),
        sender_failed,
    };

    let (events_tx, mut events) = tokio::sync::mpsc::channel(4096);
    let stop_source = shutdown.child_token();
    let mut reader = source::start(&source, events_tx, stop_source.clone()).await?;
    eprintln!("bridge: reading {} → {target} at {} Hz", source.describe(), options.hz);

    let started = Instant::now();
    let mut counts = Counts::default();
    // A live batch older than the window goes out even while the vehicle is silent.
    let mut window = tokio::time::interval(BATCH_WINDOW / 5);
    window.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut status = tokio::time::interval_at(tokio::time::Instant::now() + STATUS_EVERY, STATUS_EVERY);
    let mut last_status = Instant::now();
    let mut first_recording_us: Option<i64> = None;
    let mut source_done = false;
    let mut stopping = false;
    let mut failure: Option<anyhow::Error> = None;
    loop {
        // After SIGINT/SIGTERM the source stops; what it already handed over is still bridged.
        let step = if stopping {
            Step::Event(events.try_recv().ok())
        } else {
            tokio::select! {
                event = events.recv() => Step::Event(event),
                _ = window.tick(), if bridge.live => Step::Window,
                _ = status.tick() => Step::Status,
                Some(ended) = senders.join_next() => Step::SenderEnded(ended),
                () = shutdown.cancelled() => Step::Shutdown,
                result = &mut reader, if !source_done => Step::SourceEnded(result),
            }
        };
        match step {
            Step::Event(None) => break,
            Step::Event(Some(Event::Undecoded)) => counts.undecoded += 1,
            Step::Event(Some(Event::Frame(frame))) => {
                counts.messages += 1;
                let name = mavlink::Message::message_name(&frame.message);
                *counts.by_type.entry(name).or_default() += 1;
                *counts.since_status.entry(name).or_default() += 1;
                if let (false, Some(multiplier)) = (bridge.live, options.rate_multiplier) {
                    let first = *first_recording_us.get_or_insert(frame.recv_us);
                    let due = Duration::from_secs_f64(((frame.recv_us - first) as f64 / 1e6 / multiplier).max(0.0));
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                let packets = sampler.on_message(frame.recv_us, &frame.header, &frame.message);
                for notice in sampler.take_notices() {
                    bridge.on_notice(notice);
                }
                if let Err(error) = bridge.route(packets).await {
                    failure = Some(error);
                    break;
                }
            }
            Step::Window => {
                if let Err(error) = bridge.route(Vec::new()).await {
                    failure = Some(error);
                    break;
                }
            }
            Step::Status => {
                print_status(&mut counts, &bridge, last_status.elapsed());
                last_status = Instant::now();
            }
            Step::SenderEnded(ended) => {
                failure = Some(sender_failure(ended));
                break;
            }
            Step::Shutdown => {
                stop_source.cancel();
                stopping = true;
            }
            Step::SourceEnded(result) => {
                // A live source ends only on an error; a recording's thread at the end of the
                // file (the channel then closes once drained).
                source_done = true;
                if let Err(error) = result.unwrap_or_else(|e| Err(anyhow::anyhow!("the source task failed: {e}"))) {
                    failure = Some(error);
                    break;
                }
            }
        }
    }
    stop_source.cancel();

    // The end of the stream: the last ticks, the last partial batches, then the backlog.
    // A live link is sampled like a recording: the ticks up to the last message received.
    let tail = if failure.is_none() { sampler.finish() } else { Vec::new() };
    if failure.is_none() {
        if let Err(error) = bridge.route(tail).await {
            failure = Some(error);
        }
    }
    for index in 0..bridge.drones.len() {
        if failure.is_none() {
            if let Err(error) = bridge.flush(index).await {
                failure = Some(error);
            }
        }
    }
    if failure.is_none() {
        failure = wait_for_backlog(&bridge, &mut senders, &shutdown, source.is_recording()).await.err();
    }
    stop_senders.cancel();
    while let Some(ended) = senders.join_next().await {
        if let Ok(Err(error)) = ended {
            // The sender's own error says more than "its sender failed".
            failure = Some(error);
        }
    }

    let mut report = BridgeReport {
        source: source.describe(),
        seconds: started.elapsed().as_secs_f64(),
        messages: counts.messages,
        messages_by_type: counts.by_type,
        undecoded_frames: counts.undecoded,
        vehicles: Vec::new(),
        ignored_system_ids: bridge.ignored.iter().copied().collect(),
        packets: 0,
        packets_sent: 0,
        requests: 0,
        retries: 0,
        buffered_packets: 0,
        dropped_packets: bridge.dropped_packets,
        rejected_packets: 0,
    };
    let mut routed: Vec<(u8, usize)> = bridge.routes.iter().map(|(&id, &index)| (id, index)).collect();
    routed.sort();
    for drone in &bridge.drones {
        report.buffered_packets += drone.queue.backlog().1;
    }
    for (system_id, index) in routed {
        let drone = &bridge.drones[index];
        let sent = drone.stats.lock().expect("stats lock").clone();
        report.packets += drone.packets;
        report.packets_sent += sent.packets_sent;
        report.requests += sent.requests;
        report.retries += sent.retries;
        report.rejected_packets += sent.rejected_packets;
        report.vehicles.push(VehicleReport {
            system_id,
            packets: drone.packets,
            first_ts: drone.first_ts.map(schemas::format_ts),
            last_ts: drone.last_ts.map(schemas::format_ts),
            sent,
        });
    }
    if report.buffered_packets > 0 {
        eprintln!(
            "bridge: {} packets stay buffered in {}; the next run with the same keys sends them",
            report.buffered_packets,
            spool.root().display()
        );
    }
    match failure {
        Some(error) => {
            // The summary still says what got through before the failure.
            println!("{}", serde_json::to_string(&report)?);
            Err(error)
        }
        None => Ok(report),
    }
}

fn open_drone(
    spool: &Arc<Spool>,
    key: &str,
    label: String,
    target: &str,
    stop: &CancellationToken,
    failed: &CancellationToken,
    senders: &mut tokio::task::JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<Drone> {
    let queue = Queue::open(spool, key)?;
    let stats = Arc::new(Mutex::new(SendStats::default()));
    let client = IngestClient::new(target, key)?;
    let drain = spool::drain(queue.clone(), client, label.clone(), stats.clone(), stop.clone());
    let failed = failed.clone();
    senders.spawn(async move {
        let result = drain.await;
        if result.is_err() {
            failed.cancel();
        }
        result
    });
    Ok(Drone {
        label,
        queue,
        stats,
        batch: Vec::new(),
        batch_packets: 0,
        batch_opened: None,
        packets: 0,
        first_ts: None,
        last_ts: None,
    })
}

fn sender_failure(ended: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Error {
    match ended {
        Ok(Err(error)) => error,
        Ok(Ok(())) => anyhow::anyhow!("a sender stopped early"),
        Err(error) => anyhow::anyhow!("a sender task failed: {error}"),
    }
}

/// Waits until every queue is empty. A recording waits as long as the senders make progress
/// (at most 5 minutes without any); a live link, which ended on a signal, for the drain deadline.
async fn wait_for_backlog(
    bridge: &Bridge,
    senders: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    shutdown: &CancellationToken,
    recording: bool,
) -> anyhow::Result<()> {
    let backlog = || bridge.drones.iter().map(|d| d.queue.backlog().1).sum::<u64>();
    let started = Instant::now();
    let mut last = backlog();
    let mut progress_at = Instant::now();
    let mut status_at = Instant::now();
    while last > 0 {
        if !recording && started.elapsed() >= DRAIN_DEADLINE {
            return Ok(());
        }
        if recording && progress_at.elapsed() >= NO_PROGRESS {
            bail!("the API took no packet for 5 minutes; {last} packets stay buffered");
        }
        if recording && shutdown.is_cancelled() {
            return Ok(());
        }
        tokio::select! {
            Some(ended) = senders.join_next() => return Err(sender_failure(ended)),
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        let now = backlog();
        if now < last {
            progress_at = Instant::now();
        }
        last = now;
        if status_at.elapsed() >= STATUS_EVERY {
            status_at = Instant::now();
            eprintln!("bridge: sending the backlog: {last} packets buffered");
        }
    }
    Ok(())
}

fn print_status(counts: &mut Counts, bridge: &Bridge, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    let total: u64 = counts.since_status.values().sum();
    let mut by_rate: Vec<(&str, u64)> = counts.since_status.iter().map(|(name, n)| (*name, *n)).collect();
    by_rate.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut types: Vec<String> =
        by_rate.iter().take(6).map(|(name, n)| format!("{name} {:.1}", *n as f64 / seconds)).collect();
    if by_rate.len() > 6 {
        types.push(format!("+{} types", by_rate.len() - 6));
    }
    let (mut sent, mut buffered, mut rejected) = (0, 0, 0);
    for drone in &bridge.drones {
        let stats = drone.stats.lock().expect("stats lock");
        sent += stats.packets_sent;
        rejected += stats.rejected_packets;
        buffered += drone.queue.backlog().1 + drone.batch_packets;
    }
    eprintln!(
        "bridge: {:.1} msg/s ({}) · {} vehicles · sent {sent} packets · buffered {buffered} ({:.1} MiB) · dropped {} · rejected {rejected}",
        total as f64 / seconds,
        if types.is_empty() { "none".to_owned() } else { types.join(", ") },
        bridge.routes.len(),
        bridge.spool.used_bytes() as f64 / f64::from(1 << 20),
        bridge.dropped_packets,
    );
    counts.since_status.clear();
}
