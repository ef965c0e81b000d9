//! Every error the ingest API answers, mapped to a status code and the contract's JSON body
//! `{"error": code, "message": text, "details": [...]}` in one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use schemas::FieldError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid api key")]
    Unauthorized,
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("{} packet field(s) are invalid; nothing was ingested", .0.len())]
    InvalidPackets(Vec<FieldError>),
    #[error("{0}")]
    TooManyPackets(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("content encoding {0:?} is not supported; use gzip, zstd or none")]
    UnsupportedEncoding(String),
    #[error("too many packets for this drone; retry after {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("too many failed authentications from this address; retry after {retry_after_s} s")]
    TooManyAuthFailures { retry_after_s: u64 },
    #[error("this drone already has {limit} open websocket sessions")]
    TooManySessions { limit: usize },
    #[error("telemetry cannot be appended right now; retry after {retry_after_s} s")]
    Unavailable { retry_after_s: u64 },
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(error))
    }

    /// Seconds the client should wait before retrying, for 429 and 503.
    pub fn retry_after_s(&self) -> Option<u64> {
        match self {
            ApiError::Unavailable { retry_after_s }
            | ApiError::RateLimited { retry_after_s }
            | ApiError::TooManyAuthFailures { retry_after_s } => Some(*retry_after_s),
            ApiError::TooManySessions { .. } => Some(5),
            _ => None,
        }
    }

    /// The contract's error body `{"error", "message", "details"}` (also the WebSocket error
    /// frame, which adds `retry_after_s` when retrying later can succeed).
    pub fn body(&self) -> serde_json::Value {
        let (_, code) = self.status_and_code();
        let details = match self {
            ApiError::InvalidPackets(errors) => json!(errors),
            _ => json!([]),
        };
        let mut body = json!({ "error": code, "message": self.to_string(), "details": details });
        if let Some(seconds) = self.retry_after_s() {
            body["retry_after_s"] = seconds.into();
        }
        body
    }

    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::InvalidBody(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            ApiError::InvalidPackets(_) => (StatusCode::BAD_REQUEST, "invalid_packets"),
            ApiError::TooManyPackets(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_packets"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
            ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::UnsupportedEncoding(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_content_encoding"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::TooManyAuthFailures { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures"),
            ApiError::TooManySessions { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_sessions"),
            ApiError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(source) = &self {
            tracing::error!(error = %source, "internal error");
        }
        let mut body = self.body();
        if let Some(object) = body.as_object_mut() {
            // Over HTTP the wait is the Retry-After header.
            object.remove("retry_after_s");
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
