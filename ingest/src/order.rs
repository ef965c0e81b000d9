//! Strictly increasing `ts` per drone, across requests and across ingest instances.
//!
//! A batch goes through **reserve → append → commit**:
//!
//! 1. *In-process*: the drone's requests are serialised by one async lock per drone, and a batch
//!    whose first `ts` is not after the newest `ts` this instance saw acknowledged is refused
//!    without a network round trip (the fast path for the common mistake of resending).
//! 2. *Reserve* (one Redis Lua script, atomic): refuse when the first `ts` is not after the
//!    drone's committed `ts` (`ingest:last_ts:{drone}`, the newest acknowledged across every
//!    instance); refuse with "busy" when another instance holds the drone's reservation
//!    (`ingest:reservation:{drone}`, value = instance id); otherwise take the reservation. The
//!    reservation is a short lease ([`RESERVATION_LEASE`]) that its holder renews while its append
//!    runs, so an instance killed mid-append blocks its drones for at most that long — not for a
//!    whole ack timeout, which would leave a drone silent long enough to split its flight.
//! 3. *Append* to Kafka and wait for every delivery report.
//! 4. *Commit* only after all of them succeeded: `last_ts := max(last_ts, batch's last ts)` and
//!    the reservation is released. When Kafka fails, the reservation is released without
//!    touching `last_ts`, so the drone's retry of the same batch is accepted (and whatever part
//!    of the failed attempt did land is deduplicated downstream on `(drone_id, ts)`).
//!
//! Two instances racing for one drone therefore never both accept overlapping batches: only the
//! holder of the reservation appends, and the next batch is judged against the committed `ts`.
//! Without Redis (tests of a single instance) only the in-process check runs.
//!
//! When Redis does not answer, ingest keeps accepting on the in-process order alone rather than
//! refusing every drone: a drone talks to one instance at a time in practice, and should two
//! instances accept overlapping batches meanwhile, every consumer dedupes on `(drone_id, ts)`.
//! For [`DEGRADED_FOR`] after a failure Redis is not asked at all (a stopped or paused Redis must
//! not add its timeout to every request); each batch accepted so—and each failed call—is counted in
//! `flightline_ingest_order_degraded_total`. The next call after that pause tries Redis again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

/// Why a batch may not be appended now.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The batch's first ts is not after the drone's newest acknowledged ts.
    #[error("ts not increasing: newest acknowledged is {last_us}")]
    Stale { last_us: i64 },
    /// Another ingest instance is appending a batch of this drone right now.
    #[error("another ingest instance is appending for this drone")]
    Busy,
    /// Redis did not answer.
    #[error("ordering store unavailable: {0}")]
    Unavailable(String),
}

const RESERVE: &str = r"
local committed = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[2]) <= committed then return {1, committed} end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return {2, committed} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
return {0, committed}
";

const COMMIT: &str = r"
local committed = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[2]) > committed then redis.call('SET', KEYS[1], ARGV[2]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

/// How long a reservation lives unless its holder renews it; renewed every third of that while
/// the append runs. Redis calls time out well within one renewal period.
pub const RESERVATION_LEASE: Duration = Duration::from_secs(2);

/// How long one Redis call may take before it counts as failed.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

/// After a failed Redis call, how long batches are ordered in-process only before Redis is
/// tried again.
pub const DEGRADED_FOR: Duration = Duration::from_secs(1);

/// The per-drone order of one ingest instance, optionally shared with others through Redis.
#[derive(Clone)]
pub struct TsOrder {
    local: Arc<Mutex<HashMap<Uuid, DroneTurn>>>,
    shared: Option<Shared>,
}

/// Serialises one drone's batches on this instance; holds the newest `ts` it saw acknowledged.
type DroneTurn = Arc<tokio::sync::Mutex<Option<i64>>>;

#[derive(Clone)]
struct Shared {
    redis: ConnectionManager,
    /// Identifies this instance's reservations.
    instance: Arc<str>,
    reserve: Arc<redis::Script>,
    commit: Arc<redis::Script>,
    renew: Arc<redis::Script>,
    release: Arc<redis::Script>,
    /// Until when Redis is skipped after a failure.
    degraded_until: Arc<Mutex<Option<Instant>>>,
}

impl Shared {
    fn degraded(&self) -> bool {
        self.degraded_until.lock().expect("degraded lock").is_some_and(|until| Instant::now() < until)
    }

    fn failed(&self, error: &OrderError, drone_id: Uuid) {
        let mut until = self.degraded_until.lock().expect("degraded lock");
        if until.is_none_or(|until| Instant::now() >= until) {
            tracing::warn!(%error, %drone_id, pause = ?DEGRADED_FOR, "redis unreachable: ordering ts in-process only");
        }
        *until = Some(Instant::now() + DEGRADED_FOR);
    }
}

/// The right to append one batch of one drone; end it with [`Turn::commit`] or [`Turn::abort`].
/// Dropped without either (the request was cancelled), the reservation simply expires.
pub struct Turn {
    drone_id: Uuid,
    local: OwnedMutexGuard<Option<i64>>,
    shared: Option<Shared>,
}

pub fn last_ts_key(drone_id: Uuid) -> String {
    format!("ingest:last_ts:{{{drone_id}}}")
}

pub fn reservation_key(drone_id: Uuid) -> String {
    format!("ingest:reservation:{{{drone_id}}}")
}

impl TsOrder {
    /// In-process order only: correct for a single ingest instance.
    pub fn local_only() -> Self {
        Self { local: Arc::default(), shared: None }
    }

    /// Order shared by every instance using this Redis.
    pub fn with_redis(redis: ConnectionManager) -> Self {
        let shared = Shared {
            redis,
            instance: Uuid::new_v4().to_string().into(),
            reserve: Arc::new(redis::Script::new(RESERVE)),
            commit: Arc::new(redis::Script::new(COMMIT)),
            renew: Arc::new(redis::Script::new(RENEW)),
            release: Arc::new(redis::Script::new(RELEASE)),
            degraded_until: Arc::default(),
        };
        Self { local: Arc::default(), shared: Some(shared) }
    }

    /// Waits for the drone's previous batch on this instance, then checks and reserves
    /// `first_ts_us..=last_ts_us`.
    pub async fn begin(&self, drone_id: Uuid, first_ts_us: i64) -> Result<Turn, OrderError> {
        let lock = self.local.lock().expect("order lock").entry(drone_id).or_default().clone();
        let local = lock.lock_owned().await;
        if let Some(last_us) = *local {
            if first_ts_us <= last_us {
                return Err(OrderError::Stale { last_us });
            }
        }
        let Some(shared) = &self.shared else {
            return Ok(Turn { drone_id, local, shared: None });
        };
        if shared.degraded() {
            metrics::counter!("flightline_ingest_order_degraded_total").increment(1);
            return Ok(Turn { drone_id, local, shared: None });
        }
        let mut redis = shared.redis.clone();
        let mut call = shared.reserve.prepare_invoke();
        call.key(last_ts_key(drone_id))
            .key(reservation_key(drone_id))
            .arg(&*shared.instance)
            .arg(first_ts_us)
            .arg(RESERVATION_LEASE.as_millis() as u64);
        match timed::<(i64, i64)>(call.invoke_async(&mut redis)).await {
            Ok((0, _)) => {}
            Ok((1, committed)) => return Err(OrderError::Stale { last_us: committed }),
            Ok(_) => return Err(OrderError::Busy),
            Err(error) => {
                shared.failed(&error, drone_id);
                metrics::counter!("flightline_ingest_order_degraded_total").increment(1);
                // The in-process check above passed: accept on it alone, and do not commit to a
                // Redis that did not take the reservation.
                return Ok(Turn { drone_id, local, shared: None });
            }
        }
        Ok(Turn { drone_id, local, shared: self.shared.clone() })
    }
}

impl Turn {
    /// Runs `append` while keeping the reservation alive: renews the lease every third of
    /// [`RESERVATION_LEASE`] until `append` finishes. A renewal that fails is logged and the
    /// append goes on (should the lease lapse meanwhile, a second instance may append an
    /// overlapping batch, which consumers deduplicate on `(drone_id, ts)`).
    pub async fn hold<T>(&self, append: impl std::future::Future<Output = T>) -> T {
        let Some(shared) = &self.shared else {
            return append.await;
        };
        tokio::pin!(append);
        let period = RESERVATION_LEASE / 3;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                biased;
                output = &mut append => return output,
                _ = renew.tick() => {
                    let mut redis = shared.redis.clone();
                    let mut call = shared.renew.prepare_invoke();
                    call.key(reservation_key(self.drone_id))
                        .arg(&*shared.instance)
                        .arg(RESERVATION_LEASE.as_millis() as u64);
                    match timed::<i64>(call.invoke_async(&mut redis)).await {
                        Ok(1) => {}
                        Ok(_) => tracing::warn!(drone_id = %self.drone_id, "ts reservation lapsed during a slow append"),
                        Err(error) => tracing::warn!(%error, drone_id = %self.drone_id, "could not renew a ts reservation"),
                    }
                }
            }
        }
    }

    /// Records `last_ts_us` as acknowledged and releases the reservation. The packets are in
    /// Kafka already, so a Redis failure here is logged, not reported to the drone: the
    /// reservation then expires by itself and this instance still knows the new ts.
    pub async fn commit(mut self, last_ts_us: i64) {
        *self.local = Some(self.local.map_or(last_ts_us, |known| known.max(last_ts_us)));
        if let Some(shared) = &self.shared {
            let mut redis = shared.redis.clone();
            let mut call = shared.commit.prepare_invoke();
            call.key(last_ts_key(self.drone_id))
                .key(reservation_key(self.drone_id))
                .arg(&*shared.instance)
                .arg(last_ts_us);
            if let Err(error) = timed::<i64>(call.invoke_async(&mut redis)).await {
                shared.failed(&error, self.drone_id);
            }
        }
    }

    /// Gives the reservation back without advancing the drone's ts (the append failed).
    pub async fn abort(self) {
        if let Some(shared) = &self.shared {
            let mut redis = shared.redis.clone();
            let mut call = shared.release.prepare_invoke();
            call.key(reservation_key(self.drone_id)).arg(&*shared.instance);
            if let Err(error) = timed::<i64>(call.invoke_async(&mut redis)).await {
                shared.failed(&error, self.drone_id);
            }
        }
    }
}

async fn timed<T>(call: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, OrderError> {
    match tokio::time::timeout(REDIS_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(OrderError::Unavailable(error.to_string())),
        Err(_) => Err(OrderError::Unavailable(format!("no answer within {REDIS_TIMEOUT:?}"))),
    }
}
