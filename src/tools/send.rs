//! `flightline send`: streams a recorded packet file (`.jsonl` or `.jsonl.gz`, one packet per
//! line) through the ingest API in batches, optionally paced at a multiple of recorded speed.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use super::client::IngestClient;

/// `flightline send`.
#[derive(Debug, clap::Args)]
pub struct SendOptions {
    #[arg(long)]
    pub api_key: String,
    #[arg(long)]
    pub file: PathBuf,
    /// Base URL of the ingest API (default: http://FLIGHTLINE_HTTP_ADDR).
    #[arg(long)]
    pub target: Option<String>,
    /// Pace at this multiple of recorded speed (1 = real time); omit to send as fast as accepted.
    #[arg(long)]
    pub rate_multiplier: Option<f64>,
    /// Packets per request (1–500).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
}

#[derive(Debug, Serialize)]
pub struct SendReport {
    pub packets: usize,
    pub requests: usize,
    pub retries: u32,
    pub seconds: f64,
    pub packets_per_s: f64,
}

pub async fn send(options: &SendOptions, default_target: &str) -> anyhow::Result<SendReport> {
    if let Some(multiplier) = options.rate_multiplier {
        anyhow::ensure!(multiplier > 0.0 && multiplier.is_finite(), "--rate-multiplier must be a positive number");
    }
    anyhow::ensure!((1..=500).contains(&options.batch), "--batch must be between 1 and 500");
    let lines = read_lines(&options.file)?;
    if lines.is_empty() {
        bail!("{} contains no packets", options.file.display());
    }
    let client = IngestClient::new(options.target.as_deref().unwrap_or(default_target), &options.api_key)?;
    let first_ts = packet_ts_ms(&lines[0]).context("line 1 has no readable ts")?;
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut report = SendReport { packets: 0, requests: 0, retries: 0, seconds: 0.0, packets_per_s: 0.0 };
    for (index, chunk) in lines.chunks(options.batch).enumerate() {
        if let Some(multiplier) = options.rate_multiplier {
            // Pace on the batch's first packet: it is due when its recorded offset, sped up, has passed.
            let ts = packet_ts_ms(&chunk[0])
                .with_context(|| format!("line {} has no readable ts", index * options.batch + 1))?;
            let due = Duration::from_secs_f64(((ts - first_ts) as f64 / 1000.0 / multiplier).max(0.0));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let mut body = Vec::with_capacity(chunk.iter().map(|l| l.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, line) in chunk.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(line.as_bytes());
        }
        body.push(b']');
        let delivered = client.post_batch(body).await.with_context(|| {
            format!("sending packets {}..{}", index * options.batch + 1, index * options.batch + chunk.len())
        })?;
        report.packets += chunk.len();
        report.requests += 1;
        report.retries += delivered.retries;
        if last_progress.elapsed() >= Duration::from_secs(2) {
            last_progress = Instant::now();
            eprintln!(
                "send: {}/{} packets ({:.0} packets/s)",
                report.packets,
                lines.len(),
                report.packets as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.packets_per_s = report.packets as f64 / report.seconds.max(1e-9);
    Ok(report)
}

/// The file's bytes, gunzipped when it starts with the gzip magic (`flightline bridge --tlog`
/// reads its logs the same way).
pub(crate) fn open_maybe_gzip(path: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut magic = [0u8; 2];
    let gz = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = std::io::BufReader::new(file);
    Ok(if gz { Box::new(flate2::read::MultiGzDecoder::new(reader)) } else { Box::new(reader) })
}

/// Non-empty lines of the file, gunzipped when it starts with the gzip magic.
fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    let reader = open_maybe_gzip(path)?;
    let mut lines = Vec::new();
    for line in BufReader::new(reader).lines() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let trimmed = line.trim();
        if !trimmed.is_empty() {
            lines.push(trimmed.to_owned());
        }
    }
    Ok(lines)
}

/// The packet's `ts` in epoch milliseconds (RFC 3339 or integer ms), for pacing only: the API
/// does the real validation.
fn packet_ts_ms(line: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Ts {
        ts: serde_json::Value,
    }
    let ts = serde_json::from_str::<Ts>(line).ok()?.ts;
    match ts {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(&s).ok().map(|t| t.timestamp_millis()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_is_read_in_both_forms() {
        assert_eq!(packet_ts_ms(r#"{"ts": 1500, "throttle": 0}"#), Some(1500));
        assert_eq!(packet_ts_ms(r#"{"ts": "1970-01-01T00:00:01.5Z"}"#), Some(1500));
        assert_eq!(packet_ts_ms(r#"{"throttle": 0}"#), None);
    }
}
