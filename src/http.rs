//! The HTTP surface of a process: the routers of the roles it runs, merged, plus the endpoints
//! every process serves once — `/healthz`, `/readyz` (its dependencies answer) and
//! `/openapi.json`.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use rdkafka::producer::{BaseProducer, Producer};
use serde_json::{json, Value};
use sqlx::PgPool;

/// What `/readyz` checks.
#[derive(Clone)]
pub struct Readiness {
    pub pool: PgPool,
    pub kafka: std::sync::Arc<BaseProducer>,
    pub redis: Option<redis::aio::ConnectionManager>,
}

pub fn common_routes(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
        .route("/openapi.json", get(|| async {
            // One document for every role: query's merged with ingest's.
            let mut document = query::openapi();
            document.merge(ingest::openapi());
            document.info.title = "Flightline API".into();
            document.info.description =
                Some("Ingest (telemetry in) and query (users, drones, live, flights); CONTRACT.md §2.".into());
            Json(document)
        }))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, Json<Value>) {
    let kafka = readiness.kafka.clone();
    let kafka_check = tokio::task::spawn_blocking(move || {
        kafka.client().fetch_metadata(None, Duration::from_secs(2)).is_ok()
    });
    let postgres_check = async { sqlx::query("SELECT 1").execute(&readiness.pool).await.is_ok() };
    let redis_check = async {
        match readiness.redis.clone() {
            Some(mut redis) => Some(
                tokio::time::timeout(Duration::from_secs(2), redis::cmd("PING").query_async::<String>(&mut redis))
                    .await
                    .is_ok_and(|r| r.is_ok()),
            ),
            None => None,
        }
    };
    let (kafka, postgres, redis) = tokio::join!(kafka_check, postgres_check, redis_check);
    let kafka = kafka.unwrap_or(false);
    let ready = kafka && postgres && redis.unwrap_or(true);
    let word = |up: bool| if up { "up" } else { "down" };
    let mut body = json!({ "kafka": word(kafka), "postgres": word(postgres) });
    if let Some(redis) = redis {
        body["redis"] = word(redis).into();
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}
