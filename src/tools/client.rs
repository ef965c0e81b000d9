//! A small client of the ingest API for `flightline send` and `flightline simulate`: it retries
//! 429 and 503 (honouring `Retry-After`), the server errors 500, 502 and 504, and connection
//! failures with backoff, so a sender never loses a packet.

use std::time::Duration;

use anyhow::{bail, Context};
use reqwest::StatusCode;

pub struct IngestClient {
    http: reqwest::Client,
    url: String,
    api_key: String,
}

/// How a batch got in.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivered {
    pub retries: u32,
}

impl IngestClient {
    pub fn new(target: &str, api_key: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .context("building the http client")?;
        Ok(Self { http, url: format!("{}/v1/telemetry", target.trim_end_matches('/')), api_key: api_key.to_owned() })
    }

    /// POSTs one JSON array of packets until it is acknowledged. Gives up after ~5 minutes of
    /// refusals, or at once on an error retrying cannot fix (400, 401, 413 …). A 500, 502 or 504
    /// is the server failing, not the request (ingest answers 500 when its database is
    /// unreachable, tests/chaos `pg-stop`), so it is retried like a broken connection.
    pub async fn post_batch(&self, body: Vec<u8>) -> anyhow::Result<Delivered> {
        let mut delivered = Delivered::default();
        let mut backoff = Duration::from_millis(100);
        // After an attempt whose outcome is unknown (the connection broke), a refusal because
        // ts is no longer increasing means that attempt did land.
        let mut maybe_landed = false;
        let give_up = tokio::time::Instant::now() + Duration::from_secs(300);
        loop {
            let response = self
                .http
                .post(&self.url)
                .header("x-api-key", &self.api_key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let wait = match response {
                Ok(response) if response.status() == StatusCode::CREATED => return Ok(delivered),
                Ok(response)
                    if matches!(response.status(), StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) =>
                {
                    retry_after(&response).unwrap_or(backoff)
                }
                Ok(response) if is_server_failure(response.status()) => {
                    // The outcome is unknown: part of the batch may be in the log.
                    maybe_landed = true;
                    if delivered.retries == 0 {
                        tracing::warn!(status = %response.status(), url = %self.url, "ingest failed; retrying with backoff");
                    }
                    backoff
                }
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    if maybe_landed && status == StatusCode::BAD_REQUEST && is_stale_ts_refusal(&text) {
                        return Ok(delivered);
                    }
                    bail!("ingest refused the batch with {status}: {text}");
                }
                Err(error) => {
                    maybe_landed |= !error.is_connect();
                    if delivered.retries == 0 {
                        tracing::warn!(%error, url = %self.url, "ingest request failed; retrying with backoff");
                    }
                    backoff
                }
            };
            if tokio::time::Instant::now() + wait > give_up {
                bail!("ingest at {} kept refusing the batch for 5 minutes", self.url);
            }
            delivered.retries += 1;
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// The `Retry-After` of a 429/503, in seconds (fractions allowed), clamped to 50 ms – 30 s.
pub(crate) fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: f64 = response.headers().get("retry-after")?.to_str().ok()?.parse().ok()?;
    Some(Duration::from_secs_f64(seconds.clamp(0.05, 30.0)))
}

/// A server error that says nothing about the request itself (a proxy's 502/504 included).
fn is_server_failure(status: StatusCode) -> bool {
    matches!(status, StatusCode::INTERNAL_SERVER_ERROR | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT)
}

fn is_stale_ts_refusal(body: &str) -> bool {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else { return false };
    json["details"].as_array().is_some_and(|details| {
        details.iter().any(|d| {
            d["index"] == 0 && d["field"] == "ts" && d["reason"].as_str().is_some_and(|r| r.contains("previous packet"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_failures_are_retried_and_refusals_are_not() {
        for status in [StatusCode::INTERNAL_SERVER_ERROR, StatusCode::BAD_GATEWAY, StatusCode::GATEWAY_TIMEOUT] {
            assert!(is_server_failure(status), "{status}");
        }
        for status in [StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED, StatusCode::PAYLOAD_TOO_LARGE] {
            assert!(!is_server_failure(status), "{status}");
        }
    }
}
