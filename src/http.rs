//! The HTTP surface of a process: the routers of the roles it runs, merged, plus the endpoints
//! every process serves once — `/healthz`, `/readyz` (its dependencies answer), `/metrics`
//! (Prometheus text), `/openapi.json` and `/docs` (a browsable reader of it) — and the request
//! metrics middleware around all of it.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
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

pub fn common_routes(readiness: Readiness, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render()) }
            }),
        )
        .route("/docs", get(|| async { Html(include_str!("assets/docs.html")) }))
        .route(
            "/openapi.json",
            get(|| async {
                // One document for every role: query's merged with ingest's.
                let mut document = query::openapi();
                document.merge(ingest::openapi());
                document.info.title = "Flightline API".into();
                document.info.description =
                    Some("Ingest (telemetry in) and query (users, drones, live, flights); CONTRACT.md §2.".into());
                Json(document)
            }),
        )
}

/// The contract's error body for a path no route serves (404) and a method a route does not
/// take (405), instead of axum's empty answers.
pub fn contract_fallbacks(router: Router) -> Router {
    let error = |status: StatusCode, code: &'static str, message: &'static str| {
        (status, Json(json!({ "error": code, "message": message, "details": [] }))).into_response()
    };
    router
        .fallback(move || async move { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(move || async move {
            error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
        })
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, Json<Value>) {
    let kafka = readiness.kafka.clone();
    let kafka_check =
        tokio::task::spawn_blocking(move || kafka.client().fetch_metadata(None, Duration::from_secs(2)).is_ok());
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

/// Counts every request by method, route template and status, and records its duration.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().to_string();
    // The route template (`/v1/drones/{id}`), never the raw path: ids would explode the series.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("flightline_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("flightline_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response.into_response()
}

/// Bounds on what one client can hold of an HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// A connection must deliver a request's whole head within this (slowloris).
    pub header_timeout: Duration,
    /// A request must be answered (its body read, its response started) within this.
    pub request_timeout: Duration,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// After shutdown, how long connections may take to finish before they are dropped.
    pub drain: Duration,
}

/// Serves `app` on `listener` like `axum::serve` with graceful shutdown, plus what it lacks: a
/// header read timeout, a cap on concurrent connections, and a bounded drain. On `shutdown` it
/// stops accepting, lets every connection finish its request in flight (keep-alive connections
/// close after it), and returns once all are done or `limits.drain` has passed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ServeLimits,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower_service::Service;

    let app = app.layer(axum::middleware::from_fn_with_state(limits.request_timeout, request_timeout));
    let mut make_service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = shutdown.cancelled() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = match make_service.call(remote).await {
            Ok(service) => service,
            Err(infallible) => match infallible {},
        };
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)).with_upgrades();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it is done: all of them back means all finished.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain, permits.acquire_many(all)).await.is_err() {
        tracing::warn!(drain = ?limits.drain, "http drain deadline passed; dropping the connections still open");
    }
    Ok(())
}

/// 408 with the contract's error body when a request (reading its body included) is not answered
/// within the limit: a client that trickles its body cannot hold a handler forever.
async fn request_timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let body = json!({
                "error": "request_timeout",
                "message": format!("the request was not completed within {} s", limit.as_secs_f64()),
                "details": [],
            });
            (StatusCode::REQUEST_TIMEOUT, Json(body)).into_response()
        }
    }
}
