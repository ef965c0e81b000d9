//! `GET /healthz` (the process answers) and `GET /readyz` (its dependencies answer).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;

pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (kafka, postgres) = tokio::join!(state.publisher.is_reachable(), async {
        sqlx::query("SELECT 1").execute(&state.pool).await.is_ok()
    });
    let status = if kafka && postgres { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let word = |up: bool| if up { "up" } else { "down" };
    (status, Json(json!({ "kafka": word(kafka), "postgres": word(postgres) })))
}
