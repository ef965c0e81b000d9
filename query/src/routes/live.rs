//! Live state: `GET /v1/drones/{id}/live` (the latest packet the live processor keeps at Redis key
//! `drone:{id}:live`) and two Server-Sent-Event streams fed by Redis pub/sub channel
//! `live:{drone_id}`: `GET /v1/drones/{id}/live/stream` (one drone) and `GET /v1/live/stream`
//! (every drone of the caller).
//!
//! Each SSE connection has its own pub/sub connection and a pump task that drains it without
//! pause into a *conflation slot*: at most one pending state per drone, the newest. The response
//! stream takes states out of the slots as fast as the client reads (and, with `?max_hz=N`, at
//! most N per second per drone). A slow client therefore never makes anything buffer: the
//! intermediate states it has no time for are overwritten, and it always gets the latest one.
//! Events are named `telemetry`; their data is the JSON the live processor published. A comment
//! line (`: keepalive`) goes out every 15 s of silence.
//!
//! The fleet stream subscribes to the caller's drones when it starts and looks for new drones
//! every 10 s (configurable), so a drone created meanwhile shows up without reconnecting. If the
//! Redis connection drops, the stream ends after delivering what it holds; `EventSource`
//! reconnects by itself.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use redis::AsyncCommands;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::{LiveCaller, StreamUser};
use crate::error::{ApiError, ErrorBody, Result};
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::drones::owned_drone;
use crate::QueryState;

/// Highest `max_hz` accepted; above the fastest drone's rate it would mean "unlimited" anyway.
const MAX_HZ_LIMIT: f64 = 1000.0;

pub use schemas::{live_channel, live_key};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// At most this many events per second per drone (newest state wins); > 0, ≤ 1000.
    pub max_hz: Option<f64>,
    /// The access token, for clients that cannot set `Authorization` (browsers' EventSource).
    pub access_token: Option<String>,
}

impl StreamParams {
    fn min_interval(&self) -> Result<Option<Duration>> {
        let Some(max_hz) = self.max_hz else { return Ok(None) };
        if !(max_hz > 0.0 && max_hz <= MAX_HZ_LIMIT) {
            return Err(ApiError::invalid(format!("max_hz must be > 0 and <= {MAX_HZ_LIMIT}")));
        }
        // A tiny max_hz (1e-300) is an interval no Duration holds (`from_secs_f64` panics, which
        // dropped the connection without an answer): it means "once, then never again".
        Ok(Some(Duration::try_from_secs_f64(1.0 / max_hz).unwrap_or(Duration::MAX)))
    }
}

/// The drone's latest packet (with `drone_id`), or `null` when it sent nothing recently.
#[utoipa::path(
    get, path = "/v1/drones/{id}/live", operation_id = "get_live_state", tag = "live",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path, description = "drone id")),
    responses(
        (status = 200, description = "the latest packet JSON of CONTRACT.md §1 plus `drone_id`, or null", body = Option<Object>),
        (status = 401, description = "missing or invalid token or API key", body = ErrorBody),
        (status = 404, description = "not the caller's drone (or not the key's drone)", body = ErrorBody),
    )
)]
pub async fn latest(
    State(state): State<QueryState>,
    caller: LiveCaller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response> {
    match caller {
        LiveCaller::Drone(drone_id) if drone_id == id => {}
        LiveCaller::Drone(_) => return Err(ApiError::NotFound("drone")),
        LiveCaller::User(user_id) => {
            owned_drone(&state.pool, user_id, id).await?;
        }
    }
    let mut redis = state.redis.clone();
    let stored: Option<String> = redis.get(live_key(id)).await?;
    // The live group stored the packet's JSON: serve it as it is, without a parse and re-render.
    let body = stored.unwrap_or_else(|| "null".to_owned());
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// SSE of one drone's live states (event `telemetry`).
#[utoipa::path(
    get, path = "/v1/drones/{id}/live/stream", operation_id = "stream_drone_live", tag = "live",
    security(("bearer" = []), ("access_token" = [])),
    params(("id" = Uuid, Path, description = "drone id"), StreamParams),
    responses(
        (status = 200, description = "text/event-stream; event `telemetry`, data = the packet JSON with `drone_id`", content_type = "text/event-stream", body = String),
        (status = 400, description = "invalid max_hz", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 404, description = "not the caller's drone", body = ErrorBody),
        (status = 503, description = "Redis unreachable", body = ErrorBody),
    )
)]
pub async fn drone_stream(
    State(state): State<QueryState>,
    user: StreamUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let min_interval = params.min_interval()?;
    owned_drone(&state.pool, user.user_id, id).await?;
    open_stream(&state, vec![id], None, min_interval).await
}

/// SSE of the live states of all the caller's drones (event `telemetry`; `drone_id` in the data).
#[utoipa::path(
    get, path = "/v1/live/stream", operation_id = "stream_fleet_live", tag = "live",
    security(("bearer" = []), ("access_token" = [])),
    params(StreamParams),
    responses(
        (status = 200, description = "text/event-stream; event `telemetry`, data = the packet JSON with `drone_id`", content_type = "text/event-stream", body = String),
        (status = 400, description = "invalid max_hz", body = ErrorBody),
        (status = 401, description = "missing or invalid token", body = ErrorBody),
        (status = 503, description = "Redis unreachable", body = ErrorBody),
    )
)]
pub async fn fleet_stream(
    State(state): State<QueryState>,
    user: StreamUser,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let min_interval = params.min_interval()?;
    let drones = owner_drones(&state.pool, user.user_id).await?;
    let refresh = Refresh { pool: state.pool.clone(), owner: user.user_id, every: state.fleet_refresh };
    open_stream(&state, drones, Some(refresh), min_interval).await
}

async fn owner_drones(pool: &PgPool, owner: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM drones WHERE owner_id = $1").bind(owner).fetch_all(pool).await
}

/// Where the fleet stream looks for drones created after it started.
struct Refresh {
    pool: PgPool,
    owner: Uuid,
    every: Duration,
}

/// Subscribes (confirmed by Redis before the response starts, so nothing published after the
/// client sees the headers is missed) and returns the SSE response.
async fn open_stream(
    state: &QueryState,
    drones: Vec<Uuid>,
    refresh: Option<Refresh>,
    min_interval: Option<Duration>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let unavailable = |error: redis::RedisError| {
        tracing::warn!(%error, "cannot open redis pub/sub for a live stream");
        ApiError::Unavailable { what: "live streaming", retry_after_s: 1 }
    };
    let pubsub = state.redis_client.get_async_pubsub().await.map_err(unavailable)?;
    let (mut sink, messages) = pubsub.split();
    if !drones.is_empty() {
        // One SUBSCRIBE for all channels: one round trip however large the fleet.
        let channels: Vec<String> = drones.iter().copied().map(live_channel).collect();
        sink.subscribe(channels).await.map_err(unavailable)?;
    }
    let subscribed: HashSet<Uuid> = drones.into_iter().collect();
    let slots = Arc::new(Slots::default());
    let pump = tokio::spawn(pump(messages, sink, subscribed, refresh, Arc::clone(&slots)));
    let reader = Reader { slots, pump: PumpGuard(pump), min_interval, last_sent: HashMap::new() };
    let events = futures::stream::unfold(reader, |mut reader| async move {
        let (drone_id, payload) = reader.next().await?;
        tracing::trace!(%drone_id, "live event");
        let event = Event::default().event("telemetry").data(payload);
        Some((Ok(event), reader))
    })
    // A draining server ends the stream (EventSource clients reconnect to another instance).
    .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.sse_keepalive).text("keepalive")))
}

/// The newest not-yet-sent state per drone, shared by the pump (writer) and the response
/// stream (reader).
#[derive(Default)]
struct Slots {
    inner: Mutex<SlotsInner>,
    /// `notify_one` keeps a permit when the reader is not waiting, so no wake-up is lost.
    changed: Notify,
}

#[derive(Default)]
struct SlotsInner {
    /// drone → (arrival number, payload); the arrival number gives the oldest-first order.
    pending: HashMap<Uuid, (u64, String)>,
    arrivals: u64,
    /// The pump ended (Redis connection lost): drain what is pending, then end the stream.
    closed: bool,
}

impl Slots {
    fn put(&self, drone_id: Uuid, payload: String) {
        let mut inner = self.inner.lock().expect("live slots lock");
        inner.arrivals += 1;
        let arrival = inner.arrivals;
        inner.pending.insert(drone_id, (arrival, payload));
        drop(inner);
        self.changed.notify_one();
    }

    fn close(&self) {
        self.inner.lock().expect("live slots lock").closed = true;
        self.changed.notify_one();
    }
}

/// Reads Redis pub/sub into the slots until the connection ends or the stream is dropped
/// (which aborts this task). Never waits for the client.
async fn pump(
    mut messages: PubSubStream,
    mut sink: PubSubSink,
    mut subscribed: HashSet<Uuid>,
    refresh: Option<Refresh>,
    slots: Arc<Slots>,
) {
    let every = refresh.as_ref().map_or(Duration::from_secs(3600), |r| r.every);
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { break };
                let drone_id = message.get_channel_name().strip_prefix(schemas::LIVE_CHANNEL_PREFIX).and_then(|id| Uuid::parse_str(id).ok());
                let payload = message.get_payload::<String>();
                match (drone_id, payload) {
                    (Some(drone_id), Ok(payload)) => slots.put(drone_id, payload),
                    _ => tracing::warn!(channel = message.get_channel_name(), "unexpected live message"),
                }
            }
            _ = ticks.tick(), if refresh.is_some() => {
                let Some(refresh) = &refresh else { continue };
                match owner_drones(&refresh.pool, refresh.owner).await {
                    Ok(drones) => {
                        let new: Vec<Uuid> = drones.into_iter().filter(|drone| !subscribed.contains(drone)).collect();
                        if new.is_empty() {
                            continue;
                        }
                        let channels: Vec<String> = new.iter().copied().map(live_channel).collect();
                        if let Err(error) = sink.subscribe(channels).await {
                            tracing::warn!(%error, "live stream lost redis");
                            break;
                        }
                        subscribed.extend(new);
                    }
                    Err(error) => tracing::warn!(%error, "cannot refresh the drones of a fleet stream"),
                }
            }
        }
    }
    slots.close();
}

/// Aborts the pump when the response stream is dropped (client gone).
struct PumpGuard(JoinHandle<()>);

impl Drop for PumpGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Reader {
    slots: Arc<Slots>,
    #[allow(dead_code)] // held for its Drop
    pump: PumpGuard,
    min_interval: Option<Duration>,
    last_sent: HashMap<Uuid, Instant>,
}

impl Reader {
    /// The next state to send: the oldest pending one whose drone is not rate-limited. `None`
    /// once the pump has ended and nothing is pending.
    async fn next(&mut self) -> Option<(Uuid, String)> {
        loop {
            let now = Instant::now();
            let mut wake_at: Option<Instant> = None;
            {
                let mut inner = self.slots.inner.lock().expect("live slots lock");
                let mut best: Option<(u64, Uuid)> = None;
                for (drone_id, (arrival, _)) in &inner.pending {
                    let due = match (self.min_interval, self.last_sent.get(drone_id)) {
                        // None: further away than an Instant reaches (a tiny max_hz), i.e. never.
                        (Some(interval), Some(sent)) => sent.checked_add(interval),
                        _ => Some(now),
                    };
                    match due {
                        Some(due) if due > now => wake_at = Some(wake_at.map_or(due, |at| at.min(due))),
                        Some(_) if best.is_none_or(|(oldest, _)| *arrival < oldest) => {
                            best = Some((*arrival, *drone_id));
                        }
                        Some(_) | None => {}
                    }
                }
                if let Some((_, drone_id)) = best {
                    let (_, payload) = inner.pending.remove(&drone_id).expect("chosen from pending");
                    drop(inner);
                    if self.min_interval.is_some() {
                        self.last_sent.insert(drone_id, now);
                    }
                    return Some((drone_id, payload));
                }
                // Closed, and nothing pending will ever be due: done.
                if inner.closed && wake_at.is_none() {
                    return None;
                }
            }
            match wake_at {
                Some(at) => {
                    // Wake at least hourly: the loop decides again, and the timer is never asked
                    // for a deadline centuries away (near Instant's end tokio's arithmetic panics).
                    let at = at.min(now + Duration::from_secs(3600));
                    tokio::select! {
                        _ = self.slots.changed.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.slots.changed.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(min_interval: Option<Duration>) -> Reader {
        let slots = Arc::new(Slots::default());
        Reader { slots, pump: PumpGuard(tokio::spawn(async {})), min_interval, last_sent: HashMap::new() }
    }

    #[tokio::test]
    async fn keeps_only_the_newest_state_per_drone() {
        let mut reader = reader(None);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        reader.slots.put(a, "a1".into());
        reader.slots.put(b, "b1".into());
        reader.slots.put(a, "a2".into());
        reader.slots.close();
        assert_eq!(reader.next().await, Some((b, "b1".into())));
        assert_eq!(reader.next().await, Some((a, "a2".into())));
        assert_eq!(reader.next().await, None);
    }

    #[tokio::test]
    async fn max_hz_spaces_events_of_one_drone() {
        let mut reader = reader(Some(Duration::from_millis(200)));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let start = Instant::now();
        reader.slots.put(a, "a1".into());
        assert_eq!(reader.next().await, Some((a, "a1".into())));
        reader.slots.put(a, "a2".into());
        reader.slots.put(b, "b1".into());
        reader.slots.put(a, "a3".into());
        // b is not limited by a's rate.
        assert_eq!(reader.next().await, Some((b, "b1".into())));
        assert!(start.elapsed() < Duration::from_millis(200));
        assert_eq!(reader.next().await, Some((a, "a3".into())));
        assert!(start.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_tiny_max_hz_sends_once_per_drone_and_then_never() {
        // Found by fuzzing: max_hz=1e-300 panicked in Duration::from_secs_f64.
        for max_hz in [1e-300, 5e-324, 1.08e-19] {
            let params = StreamParams { max_hz: Some(max_hz), access_token: None };
            let mut reader = reader(params.min_interval().unwrap());
            let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
            reader.slots.put(a, "a1".into());
            assert_eq!(reader.next().await, Some((a, "a1".into())));
            reader.slots.put(a, "a2".into());
            reader.slots.put(b, "b1".into());
            assert_eq!(reader.next().await, Some((b, "b1".into())));
            // a2 is never due; once the pump is gone the stream ends instead of waiting forever.
            reader.slots.close();
            assert_eq!(reader.next().await, None, "max_hz={max_hz}");
        }
    }
}
