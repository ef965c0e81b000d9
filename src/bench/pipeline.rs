//! `flightline bench pipeline`: the whole pipeline under an open-loop load, against a running
//! deployment (`flightline all` and the local stack) — how long acknowledged packets take to be
//! stored, live and streamed, how far each consumer group falls behind and how fast it catches
//! up, and what every process of the deployment holds in memory.
//!
//! **Load.** A user is signed up through the API and owns `drones` new drones, registered in the
//! configured database (so the target must use the same `DATABASE_URL`). Each drone has a fixed
//! schedule: every `batch / hz` seconds (its phase staggered over one such period) exactly
//! `batch` packets are due, with `ts` = the time the packet was generated on that schedule. A
//! drone's requests go one after another on its own connection (HTTP keep-alive, or one WebSocket
//! per drone), since `ts` must increase per drone. When the server is slow, due batches queue on
//! the client, and a request's latency is measured **from its scheduled send time** to the 201
//! (or the WebSocket ack): a slow server shows as latency, not as less load (no coordinated
//! omission). A 429 or 503 is retried after its `Retry-After`, a 500/502/504 or a broken
//! connection after 200 ms; each attempt that failed is counted in `errors` by status
//! (`connection` for a transport error). Any other refusal drops the batch (counted too); a 401
//! stops the bench.
//!
//! **Latencies.** A packet's reference time is when its request returned 201 (or was acked), as
//! in `bench e2e`; a packet seen before that counts as 0 ms. It is then
//! - *stored* once the newest `ts` of its drone in `telemetry_raw` is at least its own: a drone's
//!   packets are in one partition, so the store group writes them in `ts` order. The table is
//!   polled every `--poll-ms`, and a packet counts as stored at the start of the first poll that
//!   saw it, so `store_*` is late by up to one poll period (`poll_ms` in the report is the mean
//!   period actually achieved);
//! - *live* once an event of its drone with `ts` at least its own arrived on the live group's
//!   Redis channel `live:{drone}`: the live group conflates a drone's packets per batch, so an
//!   event stands for every older packet;
//! - *streamed* by the same rule on the owner's `GET /v1/live/stream` (which conflates too).
//!
//! Per drone and per view the bench keeps only the acknowledged packets not seen yet, in `ts`
//! order, and pops them when an arrival covers them; latencies go into log-bucketed histograms
//! (0.5 % resolution), so memory stays bounded however long the run. Packets never seen by the end
//! of the drain are counted in `unseen`.
//!
//! **Lag.** Every second (every 250 ms while draining), for each consumer group: the high
//! watermarks of its topic's partitions minus the group's next offsets, summed over partitions.
//! The store and sessionizer groups keep their offsets in PostgreSQL (`consumer_offsets`, written
//! with their data), which is what is read for them; the sessionizer's move with its snapshots,
//! at most about a second behind what it has read. The live and analytics groups keep theirs
//! only in Kafka, committed every second. So those three lags read up to about one second of
//! traffic high. `end` is the lag when the load stopped (the last request answered); `drained_after_s` is
//! how long after that the group first stood at 0 (null if not within `--drain-timeout-s`). The
//! groups are shared by every deployment on the same topics, so another one's traffic counts too.
//!
//! **Memory.** Every second, VmRSS of each `flightline` process (but this one), of Kafka (a java
//! process with `kafka` in its command line) and of `redis-server`; for PostgreSQL the private
//! memory (RssAnon) of all its processes plus the largest shared (RssShmem) and file-backed
//! (RssFile) parts once, since summed RSS double-counts shared buffers (an estimate of their PSS
//! that does not walk page tables).
//! `max` is over the run, `end` the last sample (after the drain). `loadavg_after` is read when
//! the load stopped.
//!
//! **CPU.** `cpu_cores` is each service's user + system time from the first send to the last
//! answer, over that wall time: where the box's cores went (2.0 is all of a 2-core box).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use flightline::{runtime, Settings};

use super::ingest::BenchMode;
use super::stats::round;

/// `flightline bench pipeline`.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineOptions {
    #[arg(long, default_value_t = 100)]
    pub drones: u32,
    /// Packets per second per drone.
    #[arg(long, default_value_t = 50.0)]
    pub hz: f64,
    /// Packets per request (1–500): each drone sends exactly this many every batch/hz seconds.
    #[arg(long, default_value_t = 5)]
    pub batch: usize,
    /// How long the load is offered.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    #[arg(long, value_enum, default_value_t = BenchMode::Http)]
    pub mode: BenchMode,
    /// Base URL of the API (default: http://FLIGHTLINE_HTTP_ADDR).
    #[arg(long)]
    pub target: Option<String>,
    /// After the load, how long to wait for every group to reach 0 lag and every packet to be seen.
    #[arg(long, default_value_t = 60.0)]
    pub drain_timeout_s: f64,
    /// How often telemetry_raw is polled for the stored packets, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub poll_ms: u64,
}

#[derive(Debug, Serialize)]
pub struct PipelineReport {
    pub mode: BenchMode,
    pub drones: u32,
    pub hz: f64,
    pub batch: usize,
    pub seconds: f64,
    pub offered_packets_per_s: f64,
    pub offered_requests_per_s: f64,
    /// From the first scheduled send to the last answer.
    pub load_seconds: f64,
    pub acked_packets: u64,
    pub acked_packets_per_s: f64,
    pub acked_requests_per_s: f64,
    /// Failed attempts by HTTP status (or WebSocket error code, or `connection`).
    pub errors: BTreeMap<String, u64>,
    pub request_p50_ms: Option<f64>,
    pub request_p99_ms: Option<f64>,
    pub request_max_ms: Option<f64>,
    pub store_p50_ms: Option<f64>,
    pub store_p99_ms: Option<f64>,
    pub redis_p50_ms: Option<f64>,
    pub redis_p99_ms: Option<f64>,
    pub sse_p50_ms: Option<f64>,
    pub sse_p99_ms: Option<f64>,
    pub redis_events: u64,
    pub sse_events: u64,
    /// Acknowledged packets never seen in each view by the end of the drain.
    pub unseen: Unseen,
    pub lag: BTreeMap<&'static str, GroupLag>,
    pub rss_mib: BTreeMap<String, Rss>,
    /// CPU each service used while the load was offered (first send to last answer), in cores:
    /// user + system time over wall time, from `/proc/<pid>/stat` (`bench` is this process).
    pub cpu_cores: BTreeMap<String, f64>,
    pub loadavg_before: [f64; 3],
    pub loadavg_after: [f64; 3],
    /// The store poll's mean period actually achieved (the resolution of `store_*`).
    pub poll_ms: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Unseen {
    pub store: u64,
    pub redis: u64,
    pub sse: u64,
}

#[derive(Debug, Serialize)]
pub struct GroupLag {
    /// Messages; null when the group's lag could never be read.
    pub max: Option<i64>,
    pub end: Option<i64>,
    pub drained_after_s: Option<f64>,
    /// Where the group's offsets were read: `postgres` or `kafka`.
    pub offsets: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Rss {
    pub max: f64,
    pub end: f64,
}

pub async fn bench_pipeline(
    options: PipelineOptions,
    settings: &Settings,
    default_target: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<PipelineReport> {
    let plan = Plan::new(&options)?;
    if options.hz > settings.ingest.rate_hz {
        eprintln!(
            "pipeline: warning: --hz {} is above ingest.rate_hz {} (if the target uses this configuration, it answers 429)",
            options.hz, settings.ingest.rate_hz
        );
    }
    let target = options.target.as_deref().unwrap_or(default_target).trim_end_matches('/').to_owned();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.drones as usize + 16)
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    check_target(&http, &target).await?;
    let pool = runtime::connect_postgres(settings, 4).await?;
    let groups = group_specs(settings);
    let kafka = {
        let config = runtime::kafka_base(settings);
        let groups = groups.clone();
        Arc::new(tokio::task::spawn_blocking(move || KafkaProbe::connect(config, &groups)).await??)
    };
    let processes = ProcessProbe::discover(std::process::id());
    let loadavg_before = loadavg();

    let (token, user_id) = super::sign_up(&http, &target, "bench-pipeline").await?;
    let mut drone_ids = Vec::with_capacity(options.drones as usize);
    let mut keys = Vec::with_capacity(options.drones as usize);
    for index in 0..options.drones {
        let (id, key) = credentials::create_drone(&pool, &format!("bench-pipeline-{index}"), Some(user_id))
            .await
            .context("registering the bench drones (does the target use this DATABASE_URL?)")?;
        drone_ids.push(id);
        keys.push(key);
    }
    let index_of: Arc<HashMap<Uuid, usize>> = Arc::new(drone_ids.iter().enumerate().map(|(i, id)| (*id, i)).collect());
    let tracker = Arc::new(Tracker::new(drone_ids.len()));
    let stop_views = CancellationToken::new();

    // The views listen before the first packet is sent.
    let redis_task = {
        let client = redis::Client::open(settings.redis_url.as_str()).context("REDIS_URL is not a valid Redis URL")?;
        let mut pubsub = client.get_async_pubsub().await.context("connecting to redis")?;
        let channels: Vec<String> = drone_ids.iter().copied().map(schemas::live_channel).collect();
        pubsub.subscribe(channels).await.context("subscribing to the live channels")?;
        let (tracker, index_of, stop) = (tracker.clone(), index_of.clone(), stop_views.clone());
        tokio::spawn(async move { listen_redis(pubsub, &tracker, &index_of, stop).await })
    };
    let sse_task = {
        let response = http
            .get(format!("{target}/v1/live/stream"))
            .bearer_auth(&token)
            .send()
            .await
            .context("opening the SSE stream")?
            .error_for_status()
            .context("opening the SSE stream")?;
        let (tracker, index_of, stop) = (tracker.clone(), index_of.clone(), stop_views.clone());
        tokio::spawn(async move { listen_sse(response, &tracker, &index_of, stop).await })
    };
    let store_task = {
        let (pool, tracker, index_of, stop) = (pool.clone(), tracker.clone(), index_of.clone(), stop_views.clone());
        let store_poll = StorePoll {
            drone_ids: drone_ids.clone(),
            every: Duration::from_millis(options.poll_ms),
            // Rows of the run only, so the probes skip older partitions.
            floor_us: chrono::Utc::now().timestamp_micros() - 1_000_000,
        };
        tokio::spawn(async move { poll_store(&pool, store_poll, &tracker, &index_of, stop).await })
    };

    let shared = Arc::new(Shared {
        tracker: tracker.clone(),
        requests: Mutex::new(Histogram::default()),
        acked_packets: AtomicU64::default(),
        acked_requests: AtomicU64::default(),
        finished_requests: AtomicU64::default(),
        errors: Mutex::default(),
    });
    let cpu_before = processes.cpu_seconds();
    let started = Instant::now();
    let epoch_us = chrono::Utc::now().timestamp_micros();
    let give_up_at = started + plan.period.mul_f64(plan.sends as f64 + 1.0) + secs(options.drain_timeout_s);
    let mut senders = tokio::task::JoinSet::new();
    for (index, key) in keys.into_iter().enumerate() {
        let phase = plan.phase(index);
        let drone = DroneRun {
            index,
            key,
            epoch_us: epoch_us + phase.as_micros() as i64,
            start: started + phase,
            plan: plan.clone(),
            give_up_at,
            shared: shared.clone(),
            shutdown: shutdown.clone(),
        };
        let (http, target, mode) = (http.clone(), target.clone(), options.mode);
        senders.spawn(async move {
            match mode {
                BenchMode::Http => drone.run_http(&http, &target).await,
                BenchMode::Ws => drone.run_ws(&target).await,
            }
        });
    }

    // One loop over the senders finishing, the samples and shutdown: it ends when every group
    // drained and every packet was seen after the load, or at the drain deadline.
    let mut lags = LagStats::new(&groups);
    let mut memory = MemoryStats::default();
    let mut sample_every = sampling(Duration::from_secs(1));
    let mut last_progress = (Instant::now(), 0u64);
    let mut load_end: Option<(Instant, [f64; 3])> = None;
    let mut cpu_after = None;
    loop {
        tokio::select! {
            joined = senders.join_next(), if load_end.is_none() => match joined {
                Some(joined) => joined.context("a bench drone panicked")??,
                None => {
                    let now = Instant::now();
                    load_end = Some((now, loadavg()));
                    cpu_after = Some(processes.cpu_seconds());
                    eprintln!("pipeline: load done after {:.1} s; draining", started.elapsed().as_secs_f64());
                    let sample = sample_lag(&kafka, &pool, &groups).await;
                    lags.add(&sample, Some(now), true, now);
                    sample_every = sampling(Duration::from_millis(250));
                }
            },
            _ = sample_every.tick() => {
                let sample = sample_lag(&kafka, &pool, &groups).await;
                let now = Instant::now();
                lags.add(&sample, load_end.map(|(at, _)| at), false, now);
                memory.add(processes.sample());
                if now.duration_since(last_progress.0) >= Duration::from_secs(5) {
                    let acked = shared.acked_packets.load(Ordering::Relaxed);
                    let rate = (acked - last_progress.1) as f64 / now.duration_since(last_progress.0).as_secs_f64();
                    let due = plan.due_requests(now.duration_since(started));
                    let finished = shared.finished_requests.load(Ordering::Relaxed);
                    eprintln!(
                        "pipeline: {:.0} s: offered {:.0} packets/s, acked {:.0} packets/s, {} requests queued, {} errors, lag {}",
                        started.elapsed().as_secs_f64(),
                        plan.offered_packets_per_s(),
                        rate,
                        due.saturating_sub(finished),
                        shared.errors.lock().expect("errors").values().sum::<u64>(),
                        describe(&sample),
                    );
                    last_progress = (now, acked);
                }
            },
            _ = shutdown.cancelled(), if load_end.is_none() => {
                // The senders stop on the same token; finish their answers and report.
                while let Some(joined) = senders.join_next().await {
                    joined.context("a bench drone panicked")??;
                }
                let now = Instant::now();
                load_end = Some((now, loadavg()));
                cpu_after = Some(processes.cpu_seconds());
                break;
            }
        }
        if let Some((at, _)) = load_end {
            let drained = lags.all_drained() && tracker.pending() == 0;
            if drained || at.elapsed() >= secs(options.drain_timeout_s) || shutdown.is_cancelled() {
                break;
            }
        }
    }
    let (load_end_at, loadavg_after) = load_end.expect("the loop ends after the load");
    stop_views.cancel();
    let (mut store, poll_ms) = store_task.await.context("the store poller panicked")??;
    let (mut redis, redis_events) = redis_task.await.context("the redis listener panicked")??;
    let (mut sse, sse_events) = sse_task.await.context("the sse listener panicked")??;
    let acked_packets = shared.acked_packets.load(Ordering::Relaxed);
    if acked_packets == 0 {
        bail!(
            "no packet was acknowledged (errors: {:?}): is the target healthy?",
            shared.errors.lock().expect("errors")
        );
    }
    // Packets seen before their ack count as 0 ms; what is still pending was never seen.
    let mut unseen = Unseen::default();
    for drone in &tracker.drones {
        let views = drone.lock().expect("tracker");
        store.record_n(0.0, views[View::Store as usize].early);
        redis.record_n(0.0, views[View::Redis as usize].early);
        sse.record_n(0.0, views[View::Sse as usize].early);
        unseen.store += views[View::Store as usize].queue.len() as u64;
        unseen.redis += views[View::Redis as usize].queue.len() as u64;
        unseen.sse += views[View::Sse as usize].queue.len() as u64;
    }
    let load_seconds = load_end_at.duration_since(started).as_secs_f64();
    let cpu_cores = cpu_after
        .unwrap_or_default()
        .into_iter()
        .map(|(name, after)| {
            let before = cpu_before.get(&name).copied().unwrap_or(0.0);
            (name, round((after - before).max(0.0) / load_seconds, 3))
        })
        .collect();
    let errors = shared.errors.lock().expect("errors").clone();
    let requests = std::mem::take(&mut *shared.requests.lock().expect("requests"));
    let ms = |value: Option<f64>| value.map(|v| round(v, 3));
    Ok(PipelineReport {
        mode: options.mode,
        drones: options.drones,
        hz: options.hz,
        batch: options.batch,
        seconds: options.seconds,
        offered_packets_per_s: round(plan.offered_packets_per_s(), 3),
        offered_requests_per_s: round(plan.offered_requests_per_s(), 3),
        load_seconds: round(load_seconds, 3),
        acked_packets,
        acked_packets_per_s: round(acked_packets as f64 / load_seconds, 3),
        acked_requests_per_s: round(shared.acked_requests.load(Ordering::Relaxed) as f64 / load_seconds, 3),
        errors,
        request_p50_ms: ms(requests.percentile(0.50)),
        request_p99_ms: ms(requests.percentile(0.99)),
        request_max_ms: ms(requests.max()),
        store_p50_ms: ms(store.percentile(0.50)),
        store_p99_ms: ms(store.percentile(0.99)),
        redis_p50_ms: ms(redis.percentile(0.50)),
        redis_p99_ms: ms(redis.percentile(0.99)),
        sse_p50_ms: ms(sse.percentile(0.50)),
        sse_p99_ms: ms(sse.percentile(0.99)),
        redis_events,
        sse_events,
        unseen,
        lag: lags.report(),
        rss_mib: memory.report(),
        cpu_cores,
        loadavg_before,
        loadavg_after,
        poll_ms: round(poll_ms, 3),
    })
}

/// A sampling clock that does not catch up in bursts after a slow sample.
fn sampling(every: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds.max(0.0))
}

/// The offered load: every drone sends `batch` packets every `period`, `sends` times.
#[derive(Debug, Clone)]
struct Plan {
    drones: usize,
    hz: f64,
    batch: usize,
    period: Duration,
    sends: u64,
}

impl Plan {
    fn new(options: &PipelineOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(options.drones >= 1, "--drones must be at least 1");
        anyhow::ensure!(
            options.hz.is_finite() && options.hz > 0.0 && options.hz <= 10_000.0,
            "--hz must be > 0 and <= 10000, not {}",
            options.hz
        );
        anyhow::ensure!(
            (1..=schemas::MAX_PACKETS_PER_BATCH).contains(&options.batch),
            "--batch must be within 1–{}, not {}",
            schemas::MAX_PACKETS_PER_BATCH,
            options.batch
        );
        anyhow::ensure!(
            options.seconds.is_finite() && options.seconds > 0.0,
            "--seconds must be a positive number, not {}",
            options.seconds
        );
        anyhow::ensure!(
            options.drain_timeout_s.is_finite() && options.drain_timeout_s >= 0.0,
            "--drain-timeout-s must be a non-negative number, not {}",
            options.drain_timeout_s
        );
        anyhow::ensure!((1..=1000).contains(&options.poll_ms), "--poll-ms must be within 1–1000");
        let period_s = options.batch as f64 / options.hz;
        anyhow::ensure!(
            period_s >= 0.001,
            "--batch / --hz is {:.6} s between requests; it must be at least 1 ms",
            period_s
        );
        Ok(Self {
            drones: options.drones as usize,
            hz: options.hz,
            batch: options.batch,
            period: Duration::from_secs_f64(period_s),
            sends: ((options.seconds / period_s).floor() as u64).max(1),
        })
    }

    /// Drone `index`'s offset in the first period, so the drones' requests are spread evenly.
    fn phase(&self, index: usize) -> Duration {
        self.period.mul_f64(index as f64 / self.drones as f64)
    }

    /// When request `k` (from 0) of a drone whose schedule starts at `start` is due: once all
    /// its packets were generated.
    fn due(&self, start: Instant, k: u64) -> Instant {
        start + self.period.mul_f64((k + 1) as f64)
    }

    /// `ts` of packet `n` (from 0) of a drone whose first packet is at `epoch_us`.
    fn ts_us(&self, epoch_us: i64, n: u64) -> i64 {
        epoch_us + (n as f64 * 1e6 / self.hz).round() as i64
    }

    /// Requests due by `elapsed` since the start, over all drones.
    fn due_requests(&self, elapsed: Duration) -> u64 {
        (0..self.drones)
            .map(|index| {
                let since = elapsed.saturating_sub(self.phase(index));
                ((since.as_secs_f64() / self.period.as_secs_f64()).floor() as u64).min(self.sends)
            })
            .sum()
    }

    fn offered_packets_per_s(&self) -> f64 {
        self.drones as f64 * self.batch as f64 / self.period.as_secs_f64()
    }

    fn offered_requests_per_s(&self) -> f64 {
        self.drones as f64 / self.period.as_secs_f64()
    }
}

/// Fails fast, with what to do, when nothing healthy answers at `target`.
async fn check_target(http: &reqwest::Client, target: &str) -> anyhow::Result<()> {
    let response =
        http.get(format!("{target}/readyz")).timeout(Duration::from_secs(5)).send().await.with_context(|| {
            format!("cannot reach {target} (is `flightline all` running there? pass --target to choose another)")
        })?;
    if !response.status().is_success() {
        bail!("{target}/readyz answered {}: the deployment is not ready", response.status());
    }
    Ok(())
}

/// What the drones share.
struct Shared {
    tracker: Arc<Tracker>,
    /// From each request's scheduled send time to its answer.
    requests: Mutex<Histogram>,
    acked_packets: AtomicU64,
    acked_requests: AtomicU64,
    /// Acknowledged or dropped.
    finished_requests: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn error(&self, kind: String) {
        *self.errors.lock().expect("errors").entry(kind).or_default() += 1;
    }

    fn acked(&self, index: usize, ts: &[i64], due: Instant) {
        let now = Instant::now();
        self.tracker.acked(index, ts, now);
        self.requests.lock().expect("requests").record(ms_since(due, now));
        self.acked_packets.fetch_add(ts.len() as u64, Ordering::Relaxed);
        self.acked_requests.fetch_add(1, Ordering::Relaxed);
        self.finished_requests.fetch_add(1, Ordering::Relaxed);
    }
}

fn ms_since(earlier: Instant, later: Instant) -> f64 {
    later.saturating_duration_since(earlier).as_secs_f64() * 1000.0
}

/// What became of one batch.
enum Outcome {
    Acked,
    /// Refused for good (or retried until the bench gave up): its packets are not tracked.
    Dropped,
    Stopped,
}

struct DroneRun {
    index: usize,
    key: String,
    /// `ts` of the drone's packet 0.
    epoch_us: i64,
    /// Where the drone's schedule starts (its phase included).
    start: Instant,
    plan: Plan,
    give_up_at: Instant,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

/// One request's packets, written before it is due.
struct Batch {
    body: Vec<u8>,
    ts: Vec<i64>,
}

impl DroneRun {
    fn batches(&self) -> impl Iterator<Item = (Instant, Batch)> + '_ {
        let mut airframe = sim::Airframe::new(self.index as u32, 60.0);
        let (hz, batch) = (self.plan.hz, self.plan.batch as u64);
        (0..self.plan.sends).map(move |k| {
            let dt = 1.0 / hz;
            let cycle_s = airframe.cycle_s();
            let samples: Vec<(i64, sim::Sample)> = (k * batch..(k + 1) * batch)
                .map(|n| (self.plan.ts_us(self.epoch_us, n), airframe.sample((n as f64 * dt) % cycle_s, dt)))
                .collect();
            let mut body = Vec::with_capacity(samples.len() * 400);
            sim::Sample::write_batch(samples.iter().map(|(ts, sample)| (*ts, sample)), &mut body);
            (self.plan.due(self.start, k), Batch { body, ts: samples.iter().map(|(ts, _)| *ts).collect() })
        })
    }

    /// Sleeps until `due` (not at all when the drone is behind schedule); false on shutdown.
    async fn wait_until(&self, due: Instant) -> bool {
        tokio::select! {
            () = tokio::time::sleep_until(due.into()) => true,
            () = self.shutdown.cancelled() => false,
        }
    }

    /// Sleeps before a retry; false when the bench gives up or stops meanwhile.
    async fn retry_after(&self, wait: Duration) -> bool {
        if Instant::now() + wait >= self.give_up_at {
            return false;
        }
        self.wait_until(Instant::now() + wait).await
    }

    async fn run_http(self, http: &reqwest::Client, target: &str) -> anyhow::Result<()> {
        let url = format!("{target}/v1/telemetry");
        for (due, batch) in self.batches() {
            if !self.wait_until(due).await {
                return Ok(());
            }
            match self.post(http, &url, &batch).await? {
                Outcome::Acked => self.shared.acked(self.index, &batch.ts, due),
                Outcome::Dropped => {
                    self.shared.finished_requests.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Stopped => return Ok(()),
            }
        }
        Ok(())
    }

    async fn post(&self, http: &reqwest::Client, url: &str, batch: &Batch) -> anyhow::Result<Outcome> {
        loop {
            let response = http
                .post(url)
                .timeout(Duration::from_secs(30))
                .header("x-api-key", &self.key)
                .header("content-type", "application/json")
                .body(batch.body.clone())
                .send()
                .await;
            let wait = match response {
                Ok(response) if response.status() == reqwest::StatusCode::CREATED => {
                    // Read the body so the connection is reused; the ack is the status line.
                    let _ = response.bytes().await;
                    return Ok(Outcome::Acked);
                }
                Ok(response) => {
                    let status = response.status();
                    self.shared.error(status.as_u16().to_string());
                    match status.as_u16() {
                        401 => bail!("ingest refused a bench drone's API key: does the target use this DATABASE_URL?"),
                        429 | 503 => crate::tools::client::retry_after(&response).unwrap_or(Duration::from_millis(500)),
                        500 | 502 | 504 => Duration::from_millis(200),
                        _ => {
                            let text = response.text().await.unwrap_or_default();
                            tracing::warn!(%status, body = %text, "ingest refused a bench batch; dropping it");
                            return Ok(Outcome::Dropped);
                        }
                    }
                }
                Err(error) => {
                    self.shared.error("connection".to_owned());
                    tracing::debug!(%error, "bench request failed");
                    Duration::from_millis(200)
                }
            };
            if !self.retry_after(wait).await {
                return Ok(if self.shutdown.is_cancelled() { Outcome::Stopped } else { Outcome::Dropped });
            }
        }
    }

    async fn run_ws(self, target: &str) -> anyhow::Result<()> {
        let url = format!("{}/v1/telemetry/ws", target.replacen("http", "ws", 1));
        let mut socket = Some(self.connect_ws(&url).await?);
        for (due, batch) in self.batches() {
            let text = String::from_utf8(batch.body.clone()).expect("bench bodies are utf-8");
            if !self.wait_until(due).await {
                break;
            }
            let outcome = loop {
                let open = match socket.as_mut() {
                    Some(open) => open,
                    None => socket.insert(self.connect_ws(&url).await?),
                };
                let reply = match exchange(open, &text).await {
                    Ok(reply) => reply,
                    Err(error) => {
                        // Reconnect and send the frame again.
                        tracing::debug!(error = format!("{error:#}"), "bench websocket failed");
                        self.shared.error("connection".to_owned());
                        socket = None;
                        if !self.retry_after(Duration::from_millis(200)).await {
                            break Outcome::Stopped;
                        }
                        continue;
                    }
                };
                if reply.get("ack").is_some() {
                    break Outcome::Acked;
                }
                let code = reply["error"].as_str().unwrap_or("unknown");
                let kind = match code {
                    "rate_limited" | "too_many_sessions" => "429".to_owned(),
                    "unavailable" => "503".to_owned(),
                    "unauthorized" => {
                        bail!("ingest refused a bench drone's API key: does the target use this DATABASE_URL?")
                    }
                    other => other.to_owned(),
                };
                self.shared.error(kind);
                let Some(wait) = reply["retry_after_s"].as_f64() else {
                    tracing::warn!(%reply, "ingest refused a bench frame; dropping it");
                    break Outcome::Dropped;
                };
                if !self.retry_after(Duration::from_secs_f64(wait.clamp(0.05, 30.0))).await {
                    break Outcome::Stopped;
                }
            };
            match outcome {
                Outcome::Acked => self.shared.acked(self.index, &batch.ts, due),
                Outcome::Dropped => {
                    self.shared.finished_requests.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Stopped => break,
            }
        }
        if let Some(mut socket) = socket {
            let _ = socket.close(None).await;
        }
        Ok(())
    }

    async fn connect_ws(&self, url: &str) -> anyhow::Result<WebSocket> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert("x-api-key", self.key.parse()?);
        let (socket, _) =
            tokio_tungstenite::connect_async(request).await.with_context(|| format!("connecting {url}"))?;
        Ok(socket)
    }
}

type WebSocket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends one frame and reads its answer.
async fn exchange(socket: &mut WebSocket, text: &str) -> anyhow::Result<Value> {
    socket.send(Message::text(text)).await.context("websocket send")?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(reply))) => return Ok(serde_json::from_str(reply.as_str())?),
            Some(Ok(Message::Close(_))) | None => bail!("the server closed the bench websocket"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error).context("websocket receive"),
        }
    }
}

/// The views a packet must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Store = 0,
    Redis = 1,
    Sse = 2,
}

/// Per drone and view, the acknowledged packets not seen yet.
struct Tracker {
    drones: Vec<Mutex<[Pending; 3]>>,
}

impl Tracker {
    fn new(drones: usize) -> Self {
        Self { drones: (0..drones).map(|_| Mutex::new(Default::default())).collect() }
    }

    fn acked(&self, drone: usize, ts: &[i64], at: Instant) {
        let mut views = self.drones[drone].lock().expect("tracker");
        for view in views.iter_mut() {
            view.acked(ts, at);
        }
    }

    /// Drone `drone`'s newest `ts` reached `view` at `at`; the latencies of the packets it covers
    /// go into `latencies`.
    fn arrived(&self, drone: usize, view: View, ts_us: i64, at: Instant, latencies: &mut Histogram) {
        self.drones[drone].lock().expect("tracker")[view as usize].arrived(ts_us, at, latencies);
    }

    /// Where the store poll resumes for drone `drone`, if it has packets to wait for.
    fn store_pending_since(&self, drone: usize) -> Option<i64> {
        let views = self.drones[drone].lock().expect("tracker");
        let store = &views[View::Store as usize];
        (!store.queue.is_empty()).then_some(store.seen_ts)
    }

    /// Packets still waiting, over all drones and views.
    fn pending(&self) -> usize {
        self.drones.iter().map(|d| d.lock().expect("tracker").iter().map(|v| v.queue.len()).sum::<usize>()).sum()
    }
}

/// One drone in one view: its acknowledged packets not seen yet, in `ts` order.
#[derive(Debug)]
struct Pending {
    /// `(ts, acknowledged at)`.
    queue: VecDeque<(i64, Instant)>,
    /// The newest `ts` seen in the view.
    seen_ts: i64,
    /// Packets seen before their acknowledgement (0 ms each).
    early: u64,
}

impl Default for Pending {
    fn default() -> Self {
        Self { queue: VecDeque::new(), seen_ts: i64::MIN, early: 0 }
    }
}

impl Pending {
    /// A request's packets (increasing, after every earlier request's) were acknowledged at `at`.
    fn acked(&mut self, ts: &[i64], at: Instant) {
        for &ts_us in ts {
            if ts_us <= self.seen_ts {
                self.early += 1;
            } else {
                self.queue.push_back((ts_us, at));
            }
        }
    }

    /// The view showed the drone at `ts_us` at `at`: every pending packet up to it is there.
    fn arrived(&mut self, ts_us: i64, at: Instant, latencies: &mut Histogram) {
        if ts_us <= self.seen_ts {
            return;
        }
        self.seen_ts = ts_us;
        while let Some(&(ts, acked_at)) = self.queue.front() {
            if ts > ts_us {
                break;
            }
            latencies.record(ms_since(acked_at, at));
            self.queue.pop_front();
        }
    }
}

/// The fields of a live event the bench reads.
#[derive(Deserialize)]
struct LiveEvent<'a> {
    #[serde(borrow)]
    drone_id: Option<&'a str>,
    #[serde(borrow)]
    ts: &'a str,
}

fn parse_ts_us(ts: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(ts).ok().map(|t| t.timestamp_micros())
}

async fn listen_redis(
    pubsub: redis::aio::PubSub,
    tracker: &Tracker,
    index_of: &HashMap<Uuid, usize>,
    stop: CancellationToken,
) -> anyhow::Result<(Histogram, u64)> {
    let mut latencies = Histogram::default();
    let mut events = 0u64;
    let mut messages = pubsub.into_on_message();
    loop {
        let message = tokio::select! {
            message = messages.next() => match message {
                Some(message) => message,
                None => bail!("the redis pub/sub connection closed during the bench"),
            },
            () = stop.cancelled() => break,
        };
        let now = Instant::now();
        let drone = message
            .get_channel_name()
            .strip_prefix(schemas::LIVE_CHANNEL_PREFIX)
            .and_then(|id| id.parse::<Uuid>().ok())
            .and_then(|id| index_of.get(&id).copied());
        let ts = serde_json::from_slice::<LiveEvent>(message.get_payload_bytes()).ok().and_then(|e| parse_ts_us(e.ts));
        if let (Some(drone), Some(ts)) = (drone, ts) {
            events += 1;
            tracker.arrived(drone, View::Redis, ts, now, &mut latencies);
        }
    }
    Ok((latencies, events))
}

async fn listen_sse(
    response: reqwest::Response,
    tracker: &Tracker,
    index_of: &HashMap<Uuid, usize>,
    stop: CancellationToken,
) -> anyhow::Result<(Histogram, u64)> {
    let mut latencies = Histogram::default();
    let mut events = 0u64;
    let mut bytes = response.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let chunk = tokio::select! {
            chunk = bytes.next() => match chunk {
                Some(chunk) => chunk.context("reading the SSE stream")?,
                None => bail!("the server ended the SSE stream during the bench"),
            },
            () = stop.cancelled() => break,
        };
        let now = Instant::now();
        buffer.extend_from_slice(&chunk);
        let mut consumed = 0;
        while let Some(end) = buffer[consumed..].iter().position(|&b| b == b'\n') {
            let line = &buffer[consumed..consumed + end];
            consumed += end + 1;
            let Some(data) = line.strip_prefix(b"data:") else { continue };
            let Ok(event) = serde_json::from_slice::<LiveEvent>(data.trim_ascii()) else { continue };
            let drone = event.drone_id.and_then(|id| id.parse::<Uuid>().ok()).and_then(|id| index_of.get(&id).copied());
            if let (Some(drone), Some(ts)) = (drone, parse_ts_us(event.ts)) {
                events += 1;
                tracker.arrived(drone, View::Sse, ts, now, &mut latencies);
            }
        }
        buffer.drain(..consumed);
    }
    Ok((latencies, events))
}

struct StorePoll {
    drone_ids: Vec<Uuid>,
    every: Duration,
    /// No row of the run is older than this (µs).
    floor_us: i64,
}

/// Polls the newest stored `ts` of every drone with packets pending; returns the latencies and
/// the poll's mean period in ms.
async fn poll_store(
    pool: &PgPool,
    poll: StorePoll,
    tracker: &Tracker,
    index_of: &HashMap<Uuid, usize>,
    stop: CancellationToken,
) -> anyhow::Result<(Histogram, f64)> {
    let mut latencies = Histogram::default();
    let mut ticker = sampling(poll.every);
    let (mut polls, mut first_poll, mut last_poll) = (0u64, None::<Instant>, None::<Instant>);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => break,
        }
        let (mut ids, mut since) = (Vec::new(), Vec::new());
        for (drone, id) in poll.drone_ids.iter().enumerate() {
            if let Some(seen_ts) = tracker.store_pending_since(drone) {
                ids.push(*id);
                since.push(chrono::DateTime::from_timestamp_micros(seen_ts.max(poll.floor_us)).unwrap_or_default());
            }
        }
        if ids.is_empty() {
            continue;
        }
        let started = Instant::now();
        // One backward index probe per drone (the primary key is (drone_id, ts)).
        let rows: Vec<(Uuid, Option<chrono::DateTime<chrono::Utc>>)> = sqlx::query_as(
            "SELECT d.id, (SELECT max(t.ts) FROM telemetry_raw t WHERE t.drone_id = d.id AND t.ts > d.since)
             FROM UNNEST($1::uuid[], $2::timestamptz[]) AS d(id, since)",
        )
        .bind(&ids)
        .bind(&since)
        .fetch_all(pool)
        .await
        .context("polling telemetry_raw")?;
        for (id, newest) in rows {
            if let (Some(&drone), Some(newest)) = (index_of.get(&id), newest) {
                tracker.arrived(drone, View::Store, newest.timestamp_micros(), started, &mut latencies);
            }
        }
        polls += 1;
        first_poll.get_or_insert(started);
        last_poll = Some(started);
    }
    let mean_ms = match (first_poll, last_poll) {
        (Some(first), Some(last)) if polls > 1 => ms_since(first, last) / (polls - 1) as f64,
        _ => poll.every.as_secs_f64() * 1000.0,
    };
    Ok((latencies, mean_ms))
}

/// A consumer group whose lag is sampled.
#[derive(Debug, Clone)]
struct GroupSpec {
    name: &'static str,
    group_id: String,
    topic: String,
    source: OffsetSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OffsetSource {
    /// `consumer_offsets`, written with the group's data.
    Postgres,
    /// Only committed to Kafka (every second).
    Kafka,
}

fn group_specs(settings: &Settings) -> Vec<GroupSpec> {
    let telemetry = settings.kafka_name(processors::topics::TELEMETRY);
    let flights = settings.kafka_name(processors::topics::FLIGHTS);
    let group = |name, id: &str, topic: &String, source| GroupSpec {
        name,
        group_id: settings.kafka_name(id),
        topic: topic.clone(),
        source,
    };
    vec![
        group("store", processors::store::GROUP_ID, &telemetry, OffsetSource::Postgres),
        group("live", processors::live::GROUP_ID, &telemetry, OffsetSource::Kafka),
        group("sessionizer", processors::sessionizer::GROUP_ID, &telemetry, OffsetSource::Postgres),
        group("analytics", processors::analytics::GROUP_ID, &flights, OffsetSource::Kafka),
    ]
}

/// The Kafka half of a lag sample: watermarks, and the offsets the Kafka-only groups committed.
/// Its calls block, so it runs on the blocking pool.
struct KafkaProbe {
    /// A consumer that never joins a group: metadata and watermarks.
    metadata: BaseConsumer,
    /// Per Kafka-offset group id, a consumer configured with that group that only fetches its
    /// committed offsets (it never subscribes, so it never joins the group).
    committed: HashMap<String, BaseConsumer>,
    /// Partitions of each topic.
    partitions: BTreeMap<String, Vec<i32>>,
}

/// `(partition, low, high)` watermarks.
type Watermarks = Vec<(i32, i64, i64)>;

struct KafkaSample {
    watermarks: BTreeMap<String, Watermarks>,
    committed: HashMap<String, HashMap<i32, i64>>,
}

const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);

impl KafkaProbe {
    fn connect(config: rdkafka::ClientConfig, groups: &[GroupSpec]) -> anyhow::Result<Self> {
        let metadata: BaseConsumer = config.create().context("creating the Kafka client")?;
        let mut partitions = BTreeMap::new();
        for group in groups {
            if partitions.contains_key(&group.topic) {
                continue;
            }
            let found = metadata
                .fetch_metadata(Some(&group.topic), KAFKA_TIMEOUT)
                .context("reading Kafka metadata (is the stack up? try `make stack-up`)")?;
            let ids: Vec<i32> = found
                .topics()
                .iter()
                .filter(|topic| topic.error().is_none())
                .flat_map(|topic| topic.partitions().iter().map(|p| p.id()))
                .collect();
            if ids.is_empty() && group.name != "analytics" {
                bail!("Kafka topic {} has no partitions: is the deployment set up?", group.topic);
            }
            partitions.insert(group.topic.clone(), ids);
        }
        let mut committed = HashMap::new();
        for group in groups.iter().filter(|g| g.source == OffsetSource::Kafka) {
            let consumer: BaseConsumer = config
                .clone()
                .set("group.id", &group.group_id)
                .set("enable.auto.commit", "false")
                .create()
                .context("creating the Kafka client")?;
            committed.insert(group.group_id.clone(), consumer);
        }
        Ok(Self { metadata, committed, partitions })
    }

    fn sample(&self, groups: &[GroupSpec]) -> anyhow::Result<KafkaSample> {
        let mut watermarks = BTreeMap::new();
        for (topic, partitions) in &self.partitions {
            let mut marks = Vec::with_capacity(partitions.len());
            for &partition in partitions {
                let (low, high) = self.metadata.fetch_watermarks(topic, partition, KAFKA_TIMEOUT)?;
                marks.push((partition, low, high));
            }
            watermarks.insert(topic.clone(), marks);
        }
        let mut committed = HashMap::new();
        for group in groups.iter().filter(|g| g.source == OffsetSource::Kafka) {
            let partitions = &self.partitions[&group.topic];
            if partitions.is_empty() {
                continue;
            }
            let mut list = TopicPartitionList::new();
            for &partition in partitions {
                list.add_partition(&group.topic, partition);
            }
            let fetched = self.committed[&group.group_id].committed_offsets(list, KAFKA_TIMEOUT)?;
            let offsets = fetched
                .elements_for_topic(&group.topic)
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(next) => Some((e.partition(), next)),
                    _ => None,
                })
                .collect();
            committed.insert(group.group_id.clone(), offsets);
        }
        Ok(KafkaSample { watermarks, committed })
    }
}

/// Every group's lag now (None where it could not be read).
async fn sample_lag(
    kafka: &Arc<KafkaProbe>,
    pool: &PgPool,
    groups: &[GroupSpec],
) -> BTreeMap<&'static str, Option<i64>> {
    let probe = kafka.clone();
    let specs = groups.to_vec();
    let kafka_sample = match tokio::task::spawn_blocking(move || probe.sample(&specs)).await {
        Ok(Ok(sample)) => Some(sample),
        Ok(Err(error)) => {
            tracing::warn!(error = format!("{error:#}"), "cannot read Kafka offsets");
            None
        }
        Err(error) => {
            tracing::warn!(%error, "the Kafka probe panicked");
            None
        }
    };
    let postgres_ids: Vec<String> =
        groups.iter().filter(|g| g.source == OffsetSource::Postgres).map(|g| g.group_id.clone()).collect();
    let stored: Option<Vec<(String, String, i32, i64)>> =
        sqlx::query_as("SELECT group_id, topic, partition, next_offset FROM consumer_offsets WHERE group_id = ANY($1)")
            .bind(&postgres_ids)
            .fetch_all(pool)
            .await
            .inspect_err(|error| tracing::warn!(%error, "cannot read consumer_offsets"))
            .ok();
    groups
        .iter()
        .map(|group| {
            let lag = kafka_sample.as_ref().and_then(|sample| {
                let watermarks = sample.watermarks.get(&group.topic)?;
                if watermarks.is_empty() {
                    return None;
                }
                let next: HashMap<i32, i64> = match group.source {
                    OffsetSource::Kafka => sample.committed.get(&group.group_id)?.clone(),
                    OffsetSource::Postgres => stored
                        .as_ref()?
                        .iter()
                        .filter(|(id, topic, _, _)| *id == group.group_id && *topic == group.topic)
                        .map(|(_, _, partition, next)| (*partition, *next))
                        .collect(),
                };
                Some(group_lag(watermarks, &next))
            });
            (group.name, lag)
        })
        .collect()
}

/// Messages a group has yet to read: per partition, the high watermark minus its next offset
/// (no offset yet: everything retained, from the low watermark).
fn group_lag(watermarks: &[(i32, i64, i64)], next: &HashMap<i32, i64>) -> i64 {
    watermarks
        .iter()
        .map(|&(partition, low, high)| (high - next.get(&partition).copied().unwrap_or(low).max(low)).max(0))
        .sum()
}

fn describe(sample: &BTreeMap<&'static str, Option<i64>>) -> String {
    let parts: Vec<String> = sample
        .iter()
        .map(|(name, lag)| format!("{name}={}", lag.map_or_else(|| "?".to_owned(), |l| l.to_string())))
        .collect();
    parts.join(" ")
}

/// Max, end and drain time of every group's lag.
struct LagStats {
    groups: Vec<(&'static str, OffsetSource)>,
    max: HashMap<&'static str, i64>,
    end: HashMap<&'static str, i64>,
    drained_after: HashMap<&'static str, f64>,
}

impl LagStats {
    fn new(groups: &[GroupSpec]) -> Self {
        Self {
            groups: groups.iter().map(|g| (g.name, g.source)).collect(),
            max: HashMap::new(),
            end: HashMap::new(),
            drained_after: HashMap::new(),
        }
    }

    /// A sample taken at `now`; `load_end` once the load stopped; `is_end` for the sample taken then.
    fn add(
        &mut self,
        sample: &BTreeMap<&'static str, Option<i64>>,
        load_end: Option<Instant>,
        is_end: bool,
        now: Instant,
    ) {
        for (&name, &lag) in sample {
            let Some(lag) = lag else { continue };
            let max = self.max.entry(name).or_insert(lag);
            *max = (*max).max(lag);
            if is_end {
                self.end.insert(name, lag);
            }
            if let Some(load_end) = load_end {
                if lag == 0 && !self.drained_after.contains_key(name) {
                    self.drained_after.insert(name, now.saturating_duration_since(load_end).as_secs_f64());
                }
            }
        }
    }

    /// Every group whose lag could be read reached 0 after the load.
    fn all_drained(&self) -> bool {
        self.max.keys().all(|name| self.drained_after.contains_key(name))
    }

    fn report(&self) -> BTreeMap<&'static str, GroupLag> {
        self.groups
            .iter()
            .map(|&(name, source)| {
                let lag = GroupLag {
                    max: self.max.get(name).copied(),
                    end: self.end.get(name).copied(),
                    drained_after_s: self.drained_after.get(name).map(|s| round(*s, 3)),
                    offsets: match source {
                        OffsetSource::Postgres => "postgres",
                        OffsetSource::Kafka => "kafka",
                    },
                };
                (name, lag)
            })
            .collect()
    }
}

/// Which service a process belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Flightline,
    Kafka,
    Postgres,
    Redis,
}

/// Which service a process is, from `/proc/<pid>/comm` and `/proc/<pid>/cmdline`.
fn classify(comm: &str, cmdline: &[u8]) -> Option<Service> {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let argv0 = args.first().copied().unwrap_or_default();
    let program = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
    match comm {
        "flightline" => Some(Service::Flightline),
        _ if program == b"flightline" => Some(Service::Flightline),
        "java" if cmdline.windows(5).any(|w| w.eq_ignore_ascii_case(b"kafka")) => Some(Service::Kafka),
        "postgres" => Some(Service::Postgres),
        "redis-server" => Some(Service::Redis),
        _ => None,
    }
}

/// `flightline all`, `flightline process store`: the program and its subcommand words.
fn flightline_name(cmdline: &[u8]) -> String {
    let words: Vec<String> = cmdline
        .split(|&b| b == 0)
        .skip(1)
        .take_while(|arg| !arg.is_empty() && !arg.starts_with(b"-"))
        .take(2)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    if words.is_empty() {
        "flightline".to_owned()
    } else {
        format!("flightline {}", words.join(" "))
    }
}

/// The processes whose memory is sampled: found once at the start, except PostgreSQL's, whose
/// backends come and go (all of them are summed on every sample).
struct ProcessProbe {
    /// `(name, pid)`.
    tracked: Vec<(String, u32)>,
}

impl ProcessProbe {
    fn discover(own_pid: u32) -> Self {
        let mut found: Vec<(String, u32)> = Vec::new();
        for (pid, service, cmdline) in processes() {
            if pid == own_pid {
                continue;
            }
            let name = match service {
                Service::Flightline => flightline_name(&cmdline),
                Service::Kafka => "kafka".to_owned(),
                Service::Redis => "redis-server".to_owned(),
                Service::Postgres => continue,
            };
            found.push((name, pid));
        }
        // Two processes of one name (two deployments, a Kafka cluster) are told apart by pid.
        let mut tracked = Vec::with_capacity(found.len());
        for (name, pid) in &found {
            let twins = found.iter().filter(|(other, _)| other == name).count();
            tracked.push((if twins > 1 { format!("{name} (pid {pid})") } else { name.clone() }, *pid));
        }
        Self { tracked }
    }

    /// MiB per name: VmRSS of the tracked processes, PostgreSQL's as described in the module doc.
    fn sample(&self) -> Vec<(String, f64)> {
        let mut sample = Vec::new();
        for (name, pid) in &self.tracked {
            if let Some(kib) = proc_kib(&format!("/proc/{pid}/status"), "VmRSS:") {
                sample.push((name.clone(), kib as f64 / 1024.0));
            }
        }
        // Each backend's private memory, plus the shared buffers and mapped files once: what
        // PSS would give, from /proc/<pid>/status alone (smaps_rollup walks every page table and
        // cost ~9 % of this 2-core box per second with 40 backends, disturbing the measurement).
        let (mut private, mut shared, mut files, mut found) = (0u64, 0u64, 0u64, false);
        for (pid, _, _) in processes().filter(|(_, service, _)| *service == Service::Postgres) {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { continue };
            found = true;
            private += parse_kib(&text, "RssAnon:").unwrap_or(0);
            shared = shared.max(parse_kib(&text, "RssShmem:").unwrap_or(0));
            files = files.max(parse_kib(&text, "RssFile:").unwrap_or(0));
        }
        if found {
            sample.push(("postgres".to_owned(), (private + shared + files) as f64 / 1024.0));
        }
        sample
    }

    /// CPU seconds (user + system) so far per name: the tracked processes, `bench` (this
    /// process) and `postgres` — every PostgreSQL process now plus what the exited ones used
    /// (the postmaster's reaped children), so backends that came and went are counted.
    fn cpu_seconds(&self) -> BTreeMap<String, f64> {
        // SAFETY: sysconf only reads a constant of the system.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let mut seconds = BTreeMap::new();
        for (name, pid) in &self.tracked {
            if let Some((own, _)) = cpu_ticks(*pid) {
                seconds.insert(name.clone(), own as f64 / ticks);
            }
        }
        if let Some((own, _)) = cpu_ticks(std::process::id()) {
            seconds.insert("bench".to_owned(), own as f64 / ticks);
        }
        let mut postgres = None::<u64>;
        for (pid, _, _) in processes().filter(|(_, service, _)| *service == Service::Postgres) {
            let Some((own, reaped)) = cpu_ticks(pid) else { continue };
            // Only the postmaster's reaped children are its backends; a backend reaps none.
            *postgres.get_or_insert(0) += own + reaped;
        }
        if let Some(total) = postgres {
            seconds.insert("postgres".to_owned(), total as f64 / ticks);
        }
        seconds
    }
}

/// `(utime + stime, cutime + cstime)` of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command, which is in parentheses and may itself contain them.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some((field(14)? + field(15)?, field(16)? + field(17)?))
}

/// Every process of a known service: `(pid, service, cmdline)`.
fn processes() -> impl Iterator<Item = (u32, Service, Vec<u8>)> {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let service = classify(comm.trim_end(), &cmdline)?;
        Some((pid, service, cmdline))
    })
}

/// A `Name:   1234 kB` line of a /proc file, in KiB.
fn proc_kib(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_kib(&text, field)
}

fn parse_kib(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

#[derive(Default)]
struct MemoryStats {
    /// `name → (max, last)`, MiB.
    seen: BTreeMap<String, (f64, f64)>,
}

impl MemoryStats {
    fn add(&mut self, sample: Vec<(String, f64)>) {
        for (name, mib) in sample {
            let entry = self.seen.entry(name).or_insert((mib, mib));
            entry.0 = entry.0.max(mib);
            entry.1 = mib;
        }
    }

    fn report(&self) -> BTreeMap<String, Rss> {
        self.seen
            .iter()
            .map(|(name, (max, end))| (name.clone(), Rss { max: round(*max, 1), end: round(*end, 1) }))
            .collect()
    }
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut values = text.split_whitespace().map(|v| v.parse().unwrap_or(f64::NAN));
    [(); 3].map(|()| values.next().unwrap_or(f64::NAN))
}

/// Latencies in log-sized buckets: constant memory, values within 0.25 % of what was recorded.
/// Bucket `i` holds values of µs in `[GROWTH^i - 1, GROWTH^(i+1) - 1)`.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_ms: f64,
}

const GROWTH: f64 = 1.005;
/// GROWTH^6000 µs is about 115 days: nothing is clamped in practice.
const BUCKETS: usize = 6000;

impl Default for Histogram {
    fn default() -> Self {
        Self { counts: vec![0; BUCKETS], total: 0, max_ms: 0.0 }
    }
}

impl Histogram {
    fn record(&mut self, ms: f64) {
        self.record_n(ms, 1);
    }

    fn record_n(&mut self, ms: f64, n: u64) {
        if n == 0 {
            return;
        }
        let ms = ms.max(0.0);
        let bucket = (((ms * 1000.0 + 1.0).ln() / GROWTH.ln()) as usize).min(BUCKETS - 1);
        self.counts[bucket] += n;
        self.total += n;
        self.max_ms = self.max_ms.max(ms);
    }

    fn max(&self) -> Option<f64> {
        (self.total > 0).then_some(self.max_ms)
    }

    /// The value of the `rank`-th smallest recording (from 0): its bucket's middle, in ms.
    fn value_at(&self, rank: u64) -> f64 {
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen > rank {
                let low = GROWTH.powi(bucket as i32) - 1.0;
                let high = GROWTH.powi(bucket as i32 + 1) - 1.0;
                return ((low + high) / 2.0 / 1000.0).min(self.max_ms);
            }
        }
        self.max_ms
    }

    /// The q-quantile, interpolating linearly between order statistics like [`super::stats::percentile`];
    /// None when nothing was recorded.
    fn percentile(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = q * (self.total - 1) as f64;
        let (low, high) = (rank.floor() as u64, rank.ceil() as u64);
        let (at_low, at_high) = (self.value_at(low), self.value_at(high));
        Some(at_low + (at_high - at_low) * (rank - low as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= expected.abs() * 0.005 + 1e-6
    }

    #[test]
    fn histogram_percentiles_are_within_half_a_percent() {
        let mut histogram = Histogram::default();
        assert_eq!(histogram.percentile(0.5), None);
        let values: Vec<f64> = (1..=1000).map(|v| f64::from(v) * 0.37).collect();
        for value in &values {
            histogram.record(*value);
        }
        for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
            let exact = super::super::stats::percentile(&values, q);
            let approx = histogram.percentile(q).unwrap();
            assert!(close(approx, exact), "q {q}: {approx} vs {exact}");
        }
        assert_eq!(histogram.max(), Some(370.0));
        let mut zeros = Histogram::default();
        zeros.record_n(0.0, 5);
        zeros.record_n(-1.0, 1);
        assert_eq!(zeros.percentile(0.99).map(|v| round(v, 3)), Some(0.0));
    }

    #[test]
    fn an_arrival_covers_every_older_pending_packet_of_its_drone() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut pending = Pending::default();
        let mut latencies = Histogram::default();
        pending.acked(&[10, 20, 30], ms(0));
        pending.acked(&[40, 50], ms(10));
        // Conflated: one event at ts 30 stands for 10, 20 and 30.
        pending.arrived(30, ms(5), &mut latencies);
        assert_eq!(latencies.total, 3);
        assert!(close(latencies.percentile(0.5).unwrap(), 5.0));
        assert_eq!(pending.queue.len(), 2);
        // An older event changes nothing.
        pending.arrived(20, ms(50), &mut latencies);
        assert_eq!(latencies.total, 3);
        // Covers 40 but not 50.
        pending.arrived(45, ms(17), &mut latencies);
        assert_eq!(latencies.total, 4);
        assert!(close(latencies.max().unwrap(), 7.0));
        assert_eq!(pending.queue.front().map(|p| p.0), Some(50));
    }

    #[test]
    fn a_packet_seen_before_its_ack_counts_as_early() {
        let t0 = Instant::now();
        let mut pending = Pending::default();
        let mut latencies = Histogram::default();
        pending.arrived(25, t0, &mut latencies);
        pending.acked(&[10, 20, 30], t0 + Duration::from_millis(3));
        assert_eq!(pending.early, 2);
        assert_eq!(pending.queue.len(), 1);
        // An arrival before the ack time (clock order across tasks) counts as 0 ms, not negative.
        pending.arrived(30, t0, &mut latencies);
        assert_eq!(latencies.percentile(0.5).map(|v| round(v, 3)), Some(0.0));
    }

    #[test]
    fn lag_sums_partitions_from_the_next_offset() {
        let marks = [(0, 0, 100), (1, 50, 80), (2, 0, 10)];
        let next = HashMap::from([(0, 90), (1, 20), (2, 15)]);
        // 10 + (80 - 50: below the low watermark) + 0 (ahead of the high watermark).
        assert_eq!(group_lag(&marks, &next), 40);
        // A partition without an offset is behind by everything retained.
        assert_eq!(group_lag(&marks, &HashMap::from([(0, 100), (2, 10)])), 30);
    }

    #[test]
    fn the_plan_is_exact_and_staggered() {
        let options = PipelineOptions {
            drones: 4,
            hz: 50.0,
            batch: 5,
            seconds: 10.0,
            mode: BenchMode::Http,
            target: None,
            drain_timeout_s: 60.0,
            poll_ms: 20,
        };
        let plan = Plan::new(&options).unwrap();
        assert_eq!(plan.period, Duration::from_millis(100));
        assert_eq!(plan.sends, 100);
        assert_eq!(plan.phase(2), Duration::from_millis(50));
        assert_eq!(plan.offered_packets_per_s(), 200.0);
        assert_eq!(plan.offered_requests_per_s(), 40.0);
        assert_eq!(plan.ts_us(1_000, 3), 61_000);
        assert_eq!(plan.due_requests(Duration::from_millis(250)), 2 + 2 + 2 + 1);
        assert_eq!(plan.due_requests(Duration::from_secs(60)), 400);
        assert!(Plan::new(&PipelineOptions { batch: 0, ..options.clone() }).is_err());
        assert!(Plan::new(&PipelineOptions { batch: 501, ..options.clone() }).is_err());
        assert!(Plan::new(&PipelineOptions { hz: 0.0, ..options.clone() }).is_err());
        assert!(Plan::new(&PipelineOptions { seconds: f64::NAN, ..options }).is_err());
    }

    #[test]
    fn processes_are_told_apart() {
        assert_eq!(classify("flightline", b"target/debug/flightline\0all\0"), Some(Service::Flightline));
        assert_eq!(classify("tokio-runtime-w", b"/usr/bin/flightline\0process\0store\0"), Some(Service::Flightline));
        assert_eq!(classify("java", b"java\0-cp\0/x/kafka_2.13.jar\0kafka.Kafka\0"), Some(Service::Kafka));
        assert_eq!(classify("java", b"java\0-jar\0other.jar\0"), None);
        assert_eq!(classify("postgres", b"postgres: checkpointer \0"), Some(Service::Postgres));
        assert_eq!(classify("redis-server", b"redis-server 127.0.0.1:6379\0"), Some(Service::Redis));
        assert_eq!(classify("bash", b"bash\0"), None);
        assert_eq!(flightline_name(b"target/debug/flightline\0process\0store\0"), "flightline process store");
        assert_eq!(flightline_name(b"flightline\0all\0--verbose\0"), "flightline all");
        assert_eq!(parse_kib("Name:\tx\nVmRSS:\t  12345 kB\n", "VmRSS:"), Some(12345));
    }
}
