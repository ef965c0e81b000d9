//! `GET/POST /v1/drones`, `GET /v1/drones/{id}`, `POST /v1/drones/{id}/api-key`: only the
//! caller's drones, another owner's drone is a 404.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::AuthUser;
use crate::error::{ApiError, ErrorBody, Result};
use crate::extract::{ApiJson, ApiPath};
use crate::{format_time, QueryState};

const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, Serialize, ToSchema)]
pub struct Drone {
    pub id: Uuid,
    pub name: String,
    pub owner_id: Option<Uuid>,
    /// RFC 3339 UTC, 6 fractional digits.
    #[schema(format = DateTime, example = "2026-05-01T12:00:00.020000Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2026-05-01T12:00:00.020000Z")]
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedDrone {
    #[serde(flatten)]
    pub drone: Drone,
    /// The drone's API key (`X-API-Key`). Shown once: only its hash is stored.
    pub api_key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    /// The new key, shown once; the previous key stops working within 10 s.
    pub api_key: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDrone {
    /// 1–100 characters (surrounding whitespace is trimmed), no U+0000.
    #[schema(example = "quad-7", min_length = 1, max_length = 100)]
    pub name: String,
}

type DroneRow = (Uuid, String, Option<Uuid>, DateTime<Utc>, DateTime<Utc>);

const DRONE_COLUMNS: &str = "id, name, owner_id, created_at, updated_at";

fn drone_from_row((id, name, owner_id, created_at, updated_at): DroneRow) -> Drone {
    Drone { id, name, owner_id, created_at: format_time(created_at), updated_at: format_time(updated_at) }
}

/// The drone if `user_id` owns it; `NotFound` otherwise, whether it exists or not.
pub(crate) async fn owned_drone(pool: &PgPool, user_id: Uuid, drone_id: Uuid) -> Result<Drone> {
    let row: Option<DroneRow> =
        sqlx::query_as(&format!("SELECT {DRONE_COLUMNS} FROM drones WHERE id = $1 AND owner_id = $2"))
            .bind(drone_id)
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    row.map(drone_from_row).ok_or(ApiError::NotFound("drone"))
}

/// The caller's drones, oldest first.
#[utoipa::path(
    get, path = "/v1/drones", operation_id = "list_drones", tag = "drones", security(("bearer" = [])),
    responses(
        (status = 200, description = "the caller's drones, by creation time", body = [Drone]),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
    )
)]
pub async fn list(State(state): State<QueryState>, user: AuthUser) -> Result<Json<Vec<Drone>>> {
    let rows: Vec<DroneRow> =
        sqlx::query_as(&format!("SELECT {DRONE_COLUMNS} FROM drones WHERE owner_id = $1 ORDER BY created_at, id"))
            .bind(user.user_id)
            .fetch_all(&state.pool)
            .await?;
    Ok(Json(rows.into_iter().map(drone_from_row).collect()))
}

/// Registers a drone owned by the caller; the answer carries its API key, shown only this once.
#[utoipa::path(
    post, path = "/v1/drones", operation_id = "create_drone", tag = "drones", security(("bearer" = [])),
    request_body = NewDrone,
    responses(
        (status = 201, description = "the drone and its API key", body = CreatedDrone),
        (status = 400, description = "missing or invalid name (1–100 characters, no U+0000)", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<QueryState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewDrone>,
) -> Result<(StatusCode, Json<CreatedDrone>)> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(format!("name must have 1 to {MAX_NAME_CHARS} characters")));
    }
    // PostgreSQL cannot store U+0000 in text: without this the insert fails with a 500.
    if name.contains('\0') {
        return Err(ApiError::invalid("name must not contain U+0000"));
    }
    let (drone_id, api_key) = credentials::create_drone(&state.pool, name, Some(user.user_id)).await?;
    let drone = owned_drone(&state.pool, user.user_id, drone_id).await?;
    Ok((StatusCode::CREATED, Json(CreatedDrone { drone, api_key })))
}

/// One of the caller's drones.
#[utoipa::path(
    get, path = "/v1/drones/{id}", operation_id = "get_drone", tag = "drones", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "drone id")),
    responses(
        (status = 200, description = "the drone", body = Drone),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "no such drone among the caller's", body = ErrorBody),
    )
)]
pub async fn get(State(state): State<QueryState>, user: AuthUser, ApiPath(id): ApiPath<Uuid>) -> Result<Json<Drone>> {
    Ok(Json(owned_drone(&state.pool, user.user_id, id).await?))
}

/// Replaces the drone's API key; ingest stops accepting the old one within 10 s.
#[utoipa::path(
    post, path = "/v1/drones/{id}/api-key", operation_id = "rotate_drone_api_key", tag = "drones", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "drone id")),
    responses(
        (status = 201, description = "the new key, shown once", body = ApiKey),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "no such drone among the caller's", body = ErrorBody),
    )
)]
pub async fn rotate_key(
    State(state): State<QueryState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<ApiKey>)> {
    // Ownership first: drones never change owner through the API, so the check stays true.
    owned_drone(&state.pool, user.user_id, id).await?;
    let api_key = credentials::rotate(&state.pool, id).await?.ok_or(ApiError::NotFound("drone"))?;
    Ok((StatusCode::CREATED, Json(ApiKey { api_key })))
}
