//! `POST /v1/telemetry`: authenticate, read the (possibly compressed) body within its limits,
//! validate the whole batch, then [`AppState::accept`]: 201 only once Kafka acknowledged every
//! packet.

use std::io::Read;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use schemas::BatchError;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::error::ApiError;
use crate::AppState;

/// Largest accepted body, before and after decompression: 500 packets of generous size.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

#[utoipa::path(
    post, path = "/v1/telemetry", operation_id = "ingest_telemetry", tag = "ingest",
    security(("api_key" = [])),
    request_body(
        content = [crate::openapi::PacketDoc], content_type = "application/json",
        description = "1–500 packets (CONTRACT.md §1), `ts` strictly increasing within the batch and \
                       after the drone's previous batch. The body may be sent with \
                       `Content-Encoding: gzip` or `zstd`; at most 4 MiB before and after decompression."
    ),
    params(
        ("X-API-Key" = String, Header, description = "the drone's API key"),
        ("Content-Encoding" = Option<String>, Header, description = "`gzip`, `zstd` or absent"),
    ),
    responses(
        (status = 201, description = "every packet is in Kafka", body = crate::openapi::Ingested),
        (status = 400, description = "invalid JSON, body or packets (`details` lists every problem; nothing was ingested)", body = crate::openapi::ErrorDoc),
        (status = 401, description = "missing, unknown or revoked API key", body = crate::openapi::ErrorDoc),
        (status = 413, description = "more than 500 packets, or a body over 4 MiB (compressed or decompressed)", body = crate::openapi::ErrorDoc),
        (status = 415, description = "content type is not application/json, or an unsupported content encoding", body = crate::openapi::ErrorDoc),
        (status = 429, description = "the drone's rate limit, or too many failed authentications from this address; see Retry-After", body = crate::openapi::ErrorDoc,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
        (status = 503, description = "Kafka (or the ordering store) cannot take the batch now; retry it unchanged after Retry-After", body = crate::openapi::ErrorDoc,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    )
)]
pub async fn post(State(state): State<AppState>, request: Request) -> Result<(StatusCode, Json<Value>), ApiError> {
    let span = tracing::info_span!(
        "ingest.request",
        otel.kind = "server",
        http.route = "/v1/telemetry",
        drone_id = tracing::field::Empty,
        packets = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let incoming = request.headers().get(telemetry::context::HEADER).and_then(|v| v.to_str().ok());
    telemetry::context::set_parent(&span, incoming);
    let result = receive(state, request).instrument(span.clone()).await;
    if telemetry::enabled() {
        let status = result.as_ref().map_or_else(ApiError::status, |(status, _)| *status);
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
    }
    result
}

async fn receive(state: AppState, request: Request) -> Result<(StatusCode, Json<Value>), ApiError> {
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let client = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let auth = telemetry::context::child(|| tracing::info_span!("ingest.auth"));
    let drone_id = state.authenticate(api_key, client).instrument(auth).await?;
    tracing::Span::current().record("drone_id", tracing::field::display(drone_id));
    let authenticated = started.elapsed();
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let encoding = content_encoding(headers)?;
    let raw = read_body(body, MAX_BODY_BYTES).await?;
    let validate = telemetry::context::child(|| tracing::info_span!("ingest.validate", bytes = raw.len()));
    let packets = validate.in_scope(|| {
        let bytes = decompress(encoding, &raw, MAX_BODY_BYTES)?;
        schemas::parse_batch(&bytes, Utc::now().timestamp_micros()).map_err(batch_error)
    })?;
    tracing::Span::current().record("packets", packets.len());
    let parsed = started.elapsed();
    let accepted = state.accept(drone_id, packets, &crate::traceparent(headers)).await?;
    let total = started.elapsed();
    if total > crate::SLOW_BATCH {
        tracing::debug!(?authenticated, ?parsed, ?total, %drone_id, "slow request");
    }
    Ok((StatusCode::CREATED, Json(json!({ "ingested": accepted.count }))))
}

fn too_large() -> ApiError {
    ApiError::TooLarge(format!("request body exceeds {MAX_BODY_BYTES} bytes"))
}

/// How much of an oversized body is read (and dropped) so the client, still sending, can read
/// the 413 instead of seeing its connection reset. Past this the connection is just closed.
const DRAIN_BYTES: usize = 4 * MAX_BODY_BYTES;

/// Reads at most `limit` bytes; a larger body is 413 (after draining up to [`DRAIN_BYTES`]).
async fn read_body(body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| ApiError::InvalidBody(format!("reading the body failed: {error}")))?;
        total += chunk.len();
        if total > DRAIN_BYTES {
            break;
        }
        if total <= limit {
            buffer.extend_from_slice(&chunk);
        }
    }
    if total > limit {
        return Err(too_large());
    }
    Ok(buffer.into())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// A content coding of the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

fn content_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let text = value.to_str().unwrap_or_default().trim();
    match text.to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "zstd" => Ok(Encoding::Zstd),
        _ => Err(ApiError::UnsupportedEncoding(text.to_owned())),
    }
}

/// Decompresses at most `limit` bytes: a body that expands past it (a decompression bomb) is
/// 413 after `limit + 1` bytes of output, whatever its compressed size.
pub fn decompress(encoding: Encoding, raw: &[u8], limit: usize) -> Result<std::borrow::Cow<'_, [u8]>, ApiError> {
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => return Ok(std::borrow::Cow::Borrowed(raw)),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Encoding::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(raw)
                .map_err(|error| ApiError::InvalidBody(format!("body is not valid zstd: {error}")))?,
        ),
    };
    let mut out = Vec::with_capacity((raw.len() * 8).min(limit + 1));
    reader.take(limit as u64 + 1).read_to_end(&mut out).map_err(|error| {
        let name = if encoding == Encoding::Gzip { "gzip" } else { "zstd" };
        ApiError::InvalidBody(format!("body is not valid {name}: {error}"))
    })?;
    if out.len() > limit {
        return Err(ApiError::TooLarge(format!("decompressed request body exceeds {limit} bytes")));
    }
    Ok(std::borrow::Cow::Owned(out))
}

pub(crate) fn batch_error(error: BatchError) -> ApiError {
    match error {
        BatchError::Invalid(errors) => ApiError::InvalidPackets(errors),
        BatchError::TooManyPackets { .. } => ApiError::TooManyPackets(error.to_string()),
        BatchError::InvalidJson(_) => ApiError::InvalidJson(error.to_string()),
        other => ApiError::InvalidBody(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn gzip_and_zstd_bodies_decompress_within_the_limit() {
        let body = br#"[{"ts": 1, "throttle": 0.5}]"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(&*decompress(Encoding::Gzip, &gz, 1024).unwrap(), body);
        let zst = zstd::encode_all(&body[..], 3).unwrap();
        assert_eq!(&*decompress(Encoding::Zstd, &zst, 1024).unwrap(), body);
        assert_eq!(&*decompress(Encoding::Identity, body, 1024).unwrap(), body);
    }

    #[test]
    fn a_decompression_bomb_is_too_large_and_garbage_is_invalid() {
        let zeros = vec![b' '; 10 * 1024 * 1024];
        let bomb = zstd::encode_all(&zeros[..], 19).unwrap();
        assert!(bomb.len() < 4096);
        assert!(matches!(decompress(Encoding::Zstd, &bomb, 1024 * 1024), Err(ApiError::TooLarge(_))));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let gz = gz.finish().unwrap();
        assert!(matches!(decompress(Encoding::Gzip, &gz, 1024 * 1024), Err(ApiError::TooLarge(_))));
        assert!(matches!(decompress(Encoding::Gzip, b"not gzip", 1024), Err(ApiError::InvalidBody(_))));
        assert!(matches!(decompress(Encoding::Zstd, b"not zstd", 1024), Err(ApiError::InvalidBody(_))));
    }
}
