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
    TooLarge(String),
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("telemetry cannot be appended right now; retry after {retry_after_s} s")]
    Unavailable { retry_after_s: u64 },
    #[error("internal error")]
    Internal(#[source] anyhow_like::BoxError),
}

/// A boxed source error without pulling anyhow into the library.
pub mod anyhow_like {
    pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
}

impl ApiError {
    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(error))
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::InvalidBody(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            ApiError::InvalidPackets(_) => (StatusCode::BAD_REQUEST, "invalid_packets"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            ApiError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(source) = &self {
            tracing::error!(error = %source, "internal error");
        }
        let details = match &self {
            ApiError::InvalidPackets(errors) => json!(errors),
            _ => json!([]),
        };
        let body = json!({ "error": code, "message": self.to_string(), "details": details });
        let mut response = (status, Json(body)).into_response();
        if let ApiError::Unavailable { retry_after_s } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        response
    }
}
