//! `flightline bench ingest`: a simulated fleet against a running ingest API, measured.
//!
//! It registers `drones` new drones in the database the target uses, then each drone produces
//! packets at `hz` (ts = real time) for `seconds` and sends what it has accumulated every
//! `batch / hz` seconds (clamped to 10 ms – 1 s, at most 500 packets a request; the drones'
//! schedules are staggered over one such period), one request at a time per drone, over its own connection (HTTP keep-alive, or one WebSocket per drone). A refused
//! request (429, 503, error frame) counts as an error and is retried after its `Retry-After`, so
//! the order of `ts` is kept. Latency is measured per acknowledged request: from just before the
//! request is written to the 201 (or the WebSocket ack) being read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::stats::{percentile, round};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchMode {
    Http,
    Ws,
}

/// `flightline bench ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestBenchOptions {
    #[arg(long, default_value_t = 100)]
    pub drones: u32,
    /// Packets per second per drone.
    #[arg(long, default_value_t = 200.0)]
    pub hz: f64,
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    #[arg(long, value_enum, default_value_t = BenchMode::Http)]
    pub mode: BenchMode,
    /// Base URL of the ingest API (default: http://FLIGHTLINE_HTTP_ADDR).
    #[arg(long)]
    pub target: Option<String>,
    /// Packets a drone aims to put in one request (1–500); a drone sends every batch/hz s.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub mode: BenchMode,
    pub packets: u64,
    pub seconds: f64,
    pub packets_per_s: f64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

#[derive(Default)]
struct Totals {
    packets: AtomicU64,
    errors: AtomicU64,
}

pub async fn bench_ingest(
    pool: &PgPool,
    options: IngestBenchOptions,
    default_target: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(
        options.drones > 0 && options.hz > 0.0 && options.seconds > 0.0,
        "--drones, --hz and --seconds must be positive"
    );
    let batch = options.batch.clamp(1, schemas::MAX_PACKETS_PER_BATCH);
    let period = Duration::from_secs_f64((batch as f64 / options.hz).clamp(0.01, 1.0));
    let mut keys = Vec::with_capacity(options.drones as usize);
    for index in 0..options.drones {
        let (_, key) = credentials::create_drone(pool, &format!("bench-{index}"), None)
            .await
            .context("registering bench drones")?;
        keys.push(key);
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(options.drones as usize + 16)
        .timeout(Duration::from_secs(30))
        .build()?;
    let totals = Arc::new(Totals::default());
    let started = Instant::now();
    let run = Duration::from_secs_f64(options.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for (index, key) in keys.into_iter().enumerate() {
        // Each drone flies `seconds`, starting at its own phase of the first period, so the
        // drones' requests (the last, partial, one included) are spread evenly in time.
        let drone_start = started + period.mul_f64(index as f64 / options.drones as f64);
        let drone = Drone {
            index: index as u32,
            key,
            hz: options.hz,
            period,
            started: drone_start,
            stop_at: drone_start + run,
            totals: totals.clone(),
            shutdown: shutdown.clone(),
        };
        let target = options.target.clone().unwrap_or_else(|| default_target.to_owned());
        let http = http.clone();
        let mode = options.mode;
        tasks.spawn(async move {
            match mode {
                BenchMode::Http => drone.run_http(&http, &target).await,
                BenchMode::Ws => drone.run_ws(&target).await,
            }
        });
    }
    let mut latencies = Vec::new();
    let mut requests = 0u64;
    while let Some(joined) = tasks.join_next().await {
        let drone_latencies = joined.context("a bench drone panicked")??;
        requests += drone_latencies.len() as u64;
        latencies.extend(drone_latencies);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let packets = totals.packets.load(Ordering::Relaxed);
    Ok(BenchReport {
        mode: options.mode,
        packets,
        seconds: round(seconds, 3),
        packets_per_s: round(packets as f64 / seconds, 3),
        requests_per_s: round(requests as f64 / seconds, 3),
        p50_ms: round(percentile(&latencies, 0.50), 3),
        p99_ms: round(percentile(&latencies, 0.99), 3),
        errors: totals.errors.load(Ordering::Relaxed),
    })
}

struct Drone {
    index: u32,
    key: String,
    hz: f64,
    period: Duration,
    started: Instant,
    stop_at: Instant,
    totals: Arc<Totals>,
    shutdown: CancellationToken,
}

impl Drone {
    /// Waits for the drone's next send time and writes every packet generated by then (at most
    /// 500) into `body`; the last send, at the end of the run, flushes what is left. `None` once
    /// the run is over.
    async fn next_batch(&self, pacing: &mut Pacing, body: &mut Vec<u8>) -> Option<usize> {
        if pacing.done || self.shutdown.is_cancelled() {
            return None;
        }
        pacing.sends += 1;
        let mut due = self.started + self.period * pacing.sends;
        if due >= self.stop_at {
            due = self.stop_at;
            pacing.done = true;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = self.shutdown.cancelled() => return None,
        }
        let generated = (due.duration_since(self.started).as_secs_f64() * self.hz) as u64;
        let count = generated.saturating_sub(pacing.sent).min(schemas::MAX_PACKETS_PER_BATCH as u64) as usize;
        body.clear();
        if count > 0 {
            write_batch(&mut pacing.airframe, body, pacing.epoch_us, self.hz, pacing.sent, count);
            pacing.sent += count as u64;
        }
        Some(count)
    }

    fn pacing(&self) -> Pacing {
        // A minute in the air, then the ground idle: the bench drones fly real flights.
        Pacing {
            epoch_us: self.started_epoch_us(),
            sent: 0,
            sends: 0,
            done: false,
            airframe: sim::Airframe::new(self.index, 60.0),
        }
    }

    fn started_epoch_us(&self) -> i64 {
        // The wall clock at `started`; ts must be within 60 s of the server clock.
        let now_us = chrono::Utc::now().timestamp_micros();
        now_us - self.started.elapsed().as_micros() as i64
    }

    async fn run_http(self, http: &reqwest::Client, target: &str) -> anyhow::Result<Vec<f64>> {
        let url = format!("{}/v1/telemetry", target.trim_end_matches('/'));
        let mut pacing = self.pacing();
        let mut latencies = Vec::new();
        let mut body = Vec::new();
        loop {
            let Some(count) = self.next_batch(&mut pacing, &mut body).await else {
                break;
            };
            if count == 0 {
                continue;
            }
            loop {
                let begin = Instant::now();
                let response = http
                    .post(&url)
                    .header("x-api-key", &self.key)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status() == reqwest::StatusCode::CREATED => {
                        let _ = response.bytes().await;
                        latencies.push(begin.elapsed().as_secs_f64() * 1000.0);
                        self.totals.packets.fetch_add(count as u64, Ordering::Relaxed);
                        break;
                    }
                    Ok(response) => {
                        self.totals.errors.fetch_add(1, Ordering::Relaxed);
                        let status = response.status();
                        if !matches!(status.as_u16(), 429 | 503) {
                            bail!(
                                "ingest refused a bench batch with {status}: {}",
                                response.text().await.unwrap_or_default()
                            );
                        }
                        let wait = crate::tools::client::retry_after(&response).unwrap_or(Duration::from_millis(500));
                        if self.wait_or_stop(wait).await {
                            return Ok(latencies);
                        }
                    }
                    Err(error) => {
                        self.totals.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%error, "bench request failed");
                        if self.wait_or_stop(Duration::from_millis(200)).await {
                            return Ok(latencies);
                        }
                    }
                }
            }
        }
        Ok(latencies)
    }

    async fn run_ws(self, target: &str) -> anyhow::Result<Vec<f64>> {
        let url = format!("{}/v1/telemetry/ws", target.trim_end_matches('/').replacen("http", "ws", 1));
        let mut request = url.as_str().into_client_request()?;
        request.headers_mut().insert("x-api-key", self.key.parse()?);
        let (mut socket, _) =
            tokio_tungstenite::connect_async(request).await.with_context(|| format!("connecting {url}"))?;
        let mut pacing = self.pacing();
        let mut latencies = Vec::new();
        let mut body = Vec::new();
        loop {
            let Some(count) = self.next_batch(&mut pacing, &mut body).await else {
                break;
            };
            if count == 0 {
                continue;
            }
            let text = String::from_utf8(body.clone()).expect("bench bodies are ascii");
            loop {
                let begin = Instant::now();
                socket.send(Message::text(text.clone())).await.context("websocket send")?;
                let reply = loop {
                    match socket.next().await {
                        Some(Ok(Message::Text(reply))) => break reply,
                        Some(Ok(Message::Close(_))) | None => bail!("the server closed the bench websocket"),
                        Some(Ok(_)) => continue,
                        Some(Err(error)) => return Err(error).context("websocket receive"),
                    }
                };
                let reply: serde_json::Value = serde_json::from_str(reply.as_str())?;
                if reply.get("ack").is_some() {
                    latencies.push(begin.elapsed().as_secs_f64() * 1000.0);
                    self.totals.packets.fetch_add(count as u64, Ordering::Relaxed);
                    break;
                }
                self.totals.errors.fetch_add(1, Ordering::Relaxed);
                let Some(wait) = reply["retry_after_s"].as_f64() else {
                    bail!("ingest refused a bench frame: {reply}");
                };
                if self.wait_or_stop(Duration::from_secs_f64(wait)).await {
                    return Ok(latencies);
                }
            }
        }
        let _ = socket.close(None).await;
        Ok(latencies)
    }

    /// Sleeps before a retry; true when the run ended meanwhile.
    async fn wait_or_stop(&self, wait: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(wait) => Instant::now() >= self.stop_at + Duration::from_secs(30),
            _ = self.shutdown.cancelled() => true,
        }
    }
}

/// Where a drone is in its run.
struct Pacing {
    epoch_us: i64,
    /// Packets sent so far (they are numbered from 0).
    sent: u64,
    sends: u32,
    done: bool,
    airframe: sim::Airframe,
}

/// Appends a JSON array of `count` packets, numbers `first..first + count` of a drone flying at
/// `hz` since `epoch_us`: the `sim` airframe's flight, sampled at the packet's time.
fn write_batch(airframe: &mut sim::Airframe, out: &mut Vec<u8>, epoch_us: i64, hz: f64, first: u64, count: usize) {
    let dt = 1.0 / hz;
    let cycle_s = airframe.cycle_s();
    let samples: Vec<(i64, sim::Sample)> = (first..first + count as u64)
        .map(|n| {
            let t = n as f64 * dt;
            (epoch_us + (t * 1e6) as i64, airframe.sample(t % cycle_s, dt))
        })
        .collect();
    sim::Sample::write_batch(samples.iter().map(|(ts_us, sample)| (*ts_us, sample)), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_batches_are_valid_and_increasing() {
        let now = chrono::Utc::now().timestamp_micros();
        let mut airframe = sim::Airframe::new(0, 60.0);
        let mut body = Vec::new();
        write_batch(&mut airframe, &mut body, now - 10_000_000, 200.0, 0, 500);
        let packets = schemas::parse_batch(&body, now).unwrap();
        assert_eq!(packets.len(), 500);
        let mut next = Vec::new();
        write_batch(&mut airframe, &mut next, now - 10_000_000, 200.0, 500, 3);
        let more = schemas::parse_batch(&next, now).unwrap();
        assert!(more[0].ts_us() > packets[499].ts_us());
    }
}
