//! Identity and authentication, shared by the ingest role (which resolves a request's key to its
//! drone) and the query role (which creates drones, rotates their keys and logs users in), so
//! neither links the other. [`limits`] holds the token buckets both use to slow down guessing.
//!
//! Drone API keys: generated once and shown once, stored as a lookup prefix plus a SHA-256 hash.
//!
//! Keys are 32 random bytes, so a fast hash is the right tool (a slow password hash protects
//! guessable secrets; these are not). The prefix finds the row; the hash is compared in
//! constant time.

pub mod limits;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// `fl_` + 12 hex characters of prefix + `_` + 52 hex characters of secret.
const KEY_PREFIX_LEN: usize = 15;

/// A freshly generated key: the plain text goes to the user once, the rest to the database.
pub struct NewKey {
    pub plain: String,
    pub prefix: String,
    pub hash: Vec<u8>,
}

pub fn generate() -> NewKey {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let hex = hex::encode(bytes);
    let plain = format!("fl_{}_{}", &hex[..12], &hex[12..]);
    NewKey { prefix: plain[..KEY_PREFIX_LEN].to_owned(), hash: hash(&plain), plain }
}

pub fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Registers a drone and returns its id and plain API key.
pub async fn create_drone(pool: &PgPool, name: &str, owner_id: Option<Uuid>) -> sqlx::Result<(Uuid, String)> {
    let key = generate();
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO drones (name, owner_id, api_key_prefix, api_key_hash) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(name)
    .bind(owner_id)
    .bind(&key.prefix)
    .bind(&key.hash)
    .fetch_one(pool)
    .await?;
    Ok((id, key.plain))
}

/// Replaces a drone's key and returns the new plain key; the old key stops working once
/// resolver caches expire. `None` when the drone does not exist.
pub async fn rotate(pool: &PgPool, drone_id: Uuid) -> sqlx::Result<Option<String>> {
    let key = generate();
    let updated = sqlx::query(
        "UPDATE drones SET api_key_prefix = $2, api_key_hash = $3, key_rotated_at = now(), updated_at = now()
         WHERE id = $1",
    )
    .bind(drone_id)
    .bind(&key.prefix)
    .bind(&key.hash)
    .execute(pool)
    .await?;
    Ok((updated.rows_affected() == 1).then_some(key.plain))
}

/// Resolves API keys to drone ids, caching answers (found and not found) for a short time so
/// the database is not hit per request.
///
/// An answer is fresh for `ttl`. A found key whose answer is older is still served for up to
/// another `min(ttl, 4 s)` while one background lookup refreshes it, so busy drones never wait
/// for the database (their entries, created together, would otherwise expire together and
/// queue on the pool). A rotated key therefore keeps working about `ttl`, at most
/// `ttl + min(ttl, 4 s)` (9 s with the 5 s ingest uses: within the contract's 10 s) — while the
/// database answers; when it does not, see [`STALE_IF_ERROR`].
/// A cached lookup: the drone of a key digest (`None`: no such key) and when it was looked up.
type Answer = (Option<Uuid>, Instant);

/// How long a found key is still honoured while the database cannot be asked. A key rotated just
/// before an outage therefore keeps working until the database answers again (at most this long).
pub const STALE_IF_ERROR: Duration = Duration::from_secs(3600);

#[derive(Clone)]
pub struct KeyResolver {
    pool: PgPool,
    ttl: Duration,
    cache: Arc<RwLock<HashMap<Vec<u8>, Answer>>>,
    /// Digests with a background refresh in flight.
    refreshing: Arc<std::sync::Mutex<std::collections::HashSet<Vec<u8>>>>,
}

impl KeyResolver {
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        Self { pool, ttl, cache: Arc::default(), refreshing: Arc::default() }
    }

    /// The drone this key belongs to, or `None` for an unknown key.
    pub async fn resolve(&self, key: &str) -> sqlx::Result<Option<Uuid>> {
        let digest = hash(key);
        let cached = self.cache.read().expect("key cache lock").get(&digest).copied();
        if let Some((drone, at)) = cached {
            let age = at.elapsed();
            if age < self.ttl {
                return Ok(drone);
            }
            if drone.is_some() && age < self.ttl + self.ttl.min(Duration::from_secs(4)) {
                self.refresh_in_background(key, digest);
                return Ok(drone);
            }
        }
        let drone = match self.lookup(key, &digest).await {
            Ok(drone) => drone,
            Err(error) => match cached {
                // The database is unreachable: a key known good keeps working, so drones keep
                // streaming through a PostgreSQL outage (their packets go to Kafka, not to it).
                Some((Some(drone), at)) if at.elapsed() < STALE_IF_ERROR => {
                    tracing::warn!(%error, %drone, "api key lookup failed; serving the cached answer");
                    return Ok(Some(drone));
                }
                _ => return Err(error),
            },
        };
        let mut cache = self.cache.write().expect("key cache lock");
        if cache.len() > 100_000 {
            // Bounded: a flood of random keys must not grow memory without limit.
            cache.retain(|_, (_, at)| at.elapsed() < self.ttl);
        }
        cache.insert(digest, (drone, Instant::now()));
        Ok(drone)
    }

    fn refresh_in_background(&self, key: &str, digest: Vec<u8>) {
        if !self.refreshing.lock().expect("refresh lock").insert(digest.clone()) {
            return;
        }
        let resolver = self.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            match resolver.lookup(&key, &digest).await {
                Ok(drone) => {
                    resolver.cache.write().expect("key cache lock").insert(digest.clone(), (drone, Instant::now()));
                }
                // The entry stays stale and expires; the next request looks the key up itself.
                Err(error) => tracing::warn!(%error, "refreshing a cached api key failed"),
            }
            resolver.refreshing.lock().expect("refresh lock").remove(&digest);
        });
    }

    /// The cached answer for this key, if there is a fresh one (no database access).
    pub fn cached(&self, key: &str) -> Option<Option<Uuid>> {
        let digest = hash(key);
        let cache = self.cache.read().expect("key cache lock");
        let (drone, at) = cache.get(&digest)?;
        (at.elapsed() < self.ttl).then_some(*drone)
    }

    async fn lookup(&self, key: &str, digest: &[u8]) -> sqlx::Result<Option<Uuid>> {
        if key.len() < KEY_PREFIX_LEN || !key.is_ascii() {
            return Ok(None);
        }
        let row: Option<(Uuid, Vec<u8>)> =
            sqlx::query_as("SELECT id, api_key_hash FROM drones WHERE api_key_prefix = $1")
                .bind(&key[..KEY_PREFIX_LEN])
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(id, stored)| bool::from(stored.ct_eq(digest)).then_some(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_and_hash_to_what_is_stored() {
        let a = generate();
        let b = generate();
        assert_ne!(a.plain, b.plain);
        assert_eq!(a.plain.len(), 3 + 12 + 1 + 52);
        assert!(a.plain.starts_with(&a.prefix));
        assert_eq!(hash(&a.plain), a.hash);
        assert_ne!(hash(&b.plain), a.hash);
    }
}
