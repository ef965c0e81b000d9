//! `POST /v1/telemetry`: authenticate, validate the whole batch, append to Kafka, and answer 201
//! only once Kafka acknowledged every packet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use schemas::{BatchError, FieldError, TelemetryRecord};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

/// Largest accepted body: 500 packets of generous size.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

pub async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let drone_id = authenticate(&state, &headers).await?;
    if !is_json(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::TooLarge(format!("request body exceeds {MAX_BODY_BYTES} bytes")))?;
    let now_us = Utc::now().timestamp_micros();
    let packets = schemas::parse_batch(&bytes, now_us).map_err(batch_error)?;

    // One drone's requests are serialised so "strictly increasing ts" holds across them.
    let last_ts = state.last_ts.for_drone(drone_id);
    let mut last_ts = last_ts.lock().await;
    if let (Some(last), Some(first)) = (*last_ts, packets.first()) {
        if first.ts_us() <= last {
            return Err(ApiError::InvalidPackets(vec![FieldError {
                index: 0,
                field: "ts".into(),
                reason: format!(
                    "must be strictly greater than the drone's previous packet ts ({})",
                    schemas::format_ts(last)
                ),
            }]));
        }
    }
    let newest = packets.last().map(|p| p.ts_us());
    let count = packets.len();
    let records: Vec<TelemetryRecord> = packets
        .into_iter()
        .map(|packet| TelemetryRecord::from_packet(drone_id, now_us, packet))
        .collect();
    let traceparent = crate::traceparent(&headers);
    state.publisher.append(&records, &traceparent).await.map_err(|error| {
        tracing::warn!(%error, %drone_id, "append failed");
        ApiError::Unavailable { retry_after_s: 1 }
    })?;
    *last_ts = newest;
    Ok((StatusCode::CREATED, Json(json!({ "ingested": count }))))
}

async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Uuid, ApiError> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Unauthorized)?;
    state.keys.resolve(key).await.map_err(ApiError::internal)?.ok_or(ApiError::Unauthorized)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn batch_error(error: BatchError) -> ApiError {
    match error {
        BatchError::Invalid(errors) => ApiError::InvalidPackets(errors),
        BatchError::TooManyPackets { .. } => ApiError::TooLarge(error.to_string()),
        BatchError::InvalidJson(_) => ApiError::InvalidJson(error.to_string()),
        other => ApiError::InvalidBody(other.to_string()),
    }
}

/// The newest acknowledged `ts` per drone, each behind its own async lock.
#[derive(Default, Clone)]
pub struct LastTs(Arc<Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<Option<i64>>>>>>);

impl LastTs {
    fn for_drone(&self, drone_id: Uuid) -> Arc<tokio::sync::Mutex<Option<i64>>> {
        self.0.lock().expect("last ts lock").entry(drone_id).or_default().clone()
    }
}
