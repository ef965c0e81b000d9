//! `flightline bench e2e`: how long after an ingest request returns its packets are live — on the
//! Redis channel the live group publishes to, and on a dashboard's SSE stream — against a running
//! `flightline all`. One process timestamps both ends: a packet's reference time is the moment its
//! POST returned 201, its arrival the moment the event was read. A packet seen before its request
//! returned counts as 0 ms. The SSE stream conflates per drone (newest state wins), so under load it
//! carries fewer events than packets; every event it does carry is measured.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};

use super::stats::{self, round};

/// `flightline bench e2e`.
#[derive(Debug, Clone, clap::Args)]
pub struct E2eOptions {
    #[arg(long, default_value_t = 100)]
    pub drones: u32,
    /// Packets per second per drone.
    #[arg(long, default_value_t = 100.0)]
    pub hz: f64,
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Base URL of the API (default: http://FLIGHTLINE_HTTP_ADDR).
    #[arg(long)]
    pub target: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct E2eReport {
    pub drones: u32,
    pub seconds: f64,
    pub packets: u64,
    pub packets_per_s: f64,
    pub redis_events: usize,
    pub redis_p50_ms: f64,
    pub redis_p99_ms: f64,
    pub sse_events: usize,
    pub sse_p50_ms: f64,
    pub sse_p99_ms: f64,
    pub errors: u64,
}

type Acked = Arc<Mutex<HashMap<(String, String), Instant>>>;
type Arrivals = Arc<Mutex<Vec<((String, String), Instant)>>>;

pub async fn bench_e2e(options: E2eOptions, default_target: &str, redis_url: &str) -> anyhow::Result<E2eReport> {
    anyhow::ensure!(
        options.drones >= 1 && options.hz > 0.0 && options.seconds > 0.0,
        "drones, hz and seconds must be positive"
    );
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let url = options.target.as_deref().unwrap_or(default_target).trim_end_matches('/').to_owned();
    let (token, _) = super::sign_up(&http, &url, "bench-e2e").await?;
    let mut drones = Vec::new();
    for i in 0..options.drones {
        let drone: Value = http
            .post(format!("{url}/v1/drones"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("bench-e2e-{i}")}))
            .send()
            .await?
            .error_for_status()
            .context("creating a bench drone")?
            .json()
            .await?;
        drones.push((
            drone["id"].as_str().unwrap_or_default().to_owned(),
            drone["api_key"].as_str().unwrap_or_default().to_owned(),
        ));
    }

    let redis_arrivals: Arrivals = Arc::default();
    let sse_arrivals: Arrivals = Arc::default();
    let client = redis::Client::open(redis_url)?;
    let mut pubsub = client.get_async_pubsub().await.context("connecting to redis")?;
    pubsub.psubscribe(format!("{}*", schemas::LIVE_CHANNEL_PREFIX)).await?;
    let redis_task = {
        let arrivals = redis_arrivals.clone();
        tokio::spawn(async move {
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let now = Instant::now();
                if let Ok(payload) = message.get_payload::<String>() {
                    if let Some(key) = event_key(&payload) {
                        arrivals.lock().expect("arrivals").push((key, now));
                    }
                }
            }
        })
    };
    let sse = http
        .get(format!("{url}/v1/live/stream?access_token={token}"))
        .send()
        .await?
        .error_for_status()
        .context("opening the SSE stream")?;
    let sse_task = {
        let arrivals = sse_arrivals.clone();
        tokio::spawn(async move {
            let mut bytes = sse.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = bytes.next().await {
                let now = Instant::now();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find('\n') {
                    let line: String = buffer.drain(..=end).collect();
                    if let Some(data) = line.strip_prefix("data:") {
                        if let Some(key) = event_key(data.trim()) {
                            arrivals.lock().expect("arrivals").push((key, now));
                        }
                    }
                }
            }
        })
    };

    // Batches of ~20 ms per drone.
    let per_batch = ((options.hz / 50.0).round() as usize).max(1);
    let interval = Duration::from_secs_f64(per_batch as f64 / options.hz);
    let acked: Acked = Arc::default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(options.seconds);
    let mut senders = tokio::task::JoinSet::new();
    for (index, (drone_id, key)) in drones.into_iter().enumerate() {
        let (http, url, acked) = (http.clone(), url.clone(), acked.clone());
        let mut airframe = sim::Airframe::new(index as u32, 60.0);
        let (hz, cycle_s) = (options.hz, airframe.cycle_s());
        senders.spawn(async move {
            let (mut sent, mut errors) = (0u64, 0u64);
            let mut body = Vec::new();
            let mut ticker = tokio::time::interval(interval);
            let mut last_us = 0i64;
            while Instant::now() < deadline {
                ticker.tick().await;
                let mut samples = Vec::with_capacity(per_batch);
                for _ in 0..per_batch {
                    let ts_us = chrono::Utc::now().timestamp_micros().max(last_us + 1);
                    last_us = ts_us;
                    let t = started.elapsed().as_secs_f64() % cycle_s;
                    samples.push((ts_us, airframe.sample(t, 1.0 / hz)));
                }
                sim::Sample::write_batch(samples.iter().map(|(ts_us, sample)| (*ts_us, sample)), &mut body);
                let batch: Vec<String> = samples.iter().map(|(ts_us, _)| schemas::format_ts(*ts_us)).collect();
                let request = http
                    .post(format!("{url}/v1/telemetry"))
                    .header("x-api-key", &key)
                    .header("content-type", "application/json")
                    .body(body.clone());
                match request.send().await {
                    Ok(response) if response.status() == 201 => {
                        let now = Instant::now();
                        let mut acked = acked.lock().expect("acked");
                        for ts in batch {
                            acked.insert((drone_id.clone(), ts), now);
                        }
                        sent += per_batch as u64;
                    }
                    _ => errors += 1,
                }
            }
            (sent, errors)
        });
    }
    let (mut packets, mut errors) = (0, 0);
    while let Some(joined) = senders.join_next().await {
        let (sent, failed) = joined?;
        packets += sent;
        errors += failed;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Let the last events arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis_task.abort();
    sse_task.abort();
    if packets == 0 {
        bail!("no packet was acknowledged ({errors} errors): is `flightline all` running at {url}?");
    }
    let acked = acked.lock().expect("acked");
    let latencies = |arrivals: &Arrivals| -> Vec<f64> {
        let arrivals = arrivals.lock().expect("arrivals");
        let mut ms: Vec<f64> = arrivals
            .iter()
            .filter_map(|(key, at)| {
                acked.get(key).map(|sent| at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        ms
    };
    let redis = latencies(&redis_arrivals);
    let sse = latencies(&sse_arrivals);
    Ok(E2eReport {
        drones: options.drones,
        seconds: round(seconds, 3),
        packets,
        packets_per_s: round(packets as f64 / seconds, 3),
        redis_events: redis.len(),
        redis_p50_ms: percentile(&redis, 0.50),
        redis_p99_ms: percentile(&redis, 0.99),
        sse_events: sse.len(),
        sse_p50_ms: percentile(&sse, 0.50),
        sse_p99_ms: percentile(&sse, 0.99),
        errors,
    })
}

/// `(drone_id, ts)` of a live event's JSON.
fn event_key(json: &str) -> Option<(String, String)> {
    let value: Value = serde_json::from_str(json).ok()?;
    Some((value["drone_id"].as_str()?.to_owned(), value["ts"].as_str()?.to_owned()))
}

/// Like [`stats::percentile`], but NaN (printed as null) when nothing arrived at all.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    round(stats::percentile(sorted, q), 3)
}
