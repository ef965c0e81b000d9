//! Every error the query API answers, mapped to a status code and the contract's JSON body
//! `{"error": code, "message": text, "details": [...]}` in one place (CONTRACT.md §2).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// The error body of every 4xx/5xx answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `not_found`.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
    /// Structured details; empty for most errors.
    pub details: Vec<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, malformed, tampered or expired credentials. One message for every cause, so the
    /// answer does not tell an attacker which part was wrong.
    #[error("missing or invalid credentials")]
    Unauthorized,
    /// Wrong email or password at `POST /v1/auth/token`.
    #[error("invalid email or password")]
    InvalidLogin,
    /// The thing does not exist or belongs to another owner: never a 403, which would confirm
    /// that it exists.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("email is already registered")]
    EmailTaken,
    #[error("signup is disabled on this deployment")]
    SignupDisabled,
    /// Too many failed logins from this address.
    #[error("too many failed logins from this address; retry after {retry_after_s} s")]
    TooManyLogins { retry_after_s: u64 },
    #[error("{what} cannot be done right now; retry after {retry_after_s} s")]
    Unavailable { what: &'static str, retry_after_s: u64 },
    /// PostgreSQL no longer holds all of a flight's raw points and the archive that does cannot
    /// be read: answering with what PostgreSQL has would pass a partial flight off as whole.
    #[error("the archive holding this flight's raw telemetry is unreachable; retry after {retry_after_s} s")]
    ArchiveUnavailable { retry_after_s: u64 },
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn internal(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(error))
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::InvalidRequest(message.into())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::InvalidLogin => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::EmailTaken => (StatusCode::CONFLICT, "email_taken"),
            ApiError::SignupDisabled => (StatusCode::FORBIDDEN, "signup_disabled"),
            ApiError::TooManyLogins { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable { .. } | ApiError::ArchiveUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::internal(error)
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(error: redis::RedisError) -> Self {
        ApiError::internal(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(source) = &self {
            tracing::error!(error = %source, "internal error");
        }
        let body = json!({ "error": code, "message": self.to_string(), "details": [] });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unavailable { retry_after_s, .. }
            | ApiError::ArchiveUnavailable { retry_after_s }
            | ApiError::TooManyLogins { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
