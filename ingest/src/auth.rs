//! `X-API-Key` → drone, with a budget of failed attempts per client address.
//!
//! Every failed authentication (missing, unknown or revoked key) takes a token from the client
//! address's bucket ([`credentials::limits::AuthFailures`]). While that bucket is empty, the address
//! gets 429 + `Retry-After` for any key that is not already known good from the resolver's
//! cache, without a database lookup: guessing is slowed down and cannot load the database, while
//! a drone with a valid key keeps working even behind the same address (a shared NAT). Keys are
//! never logged; only their hash is kept, in the cache.

use std::net::IpAddr;

use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;
use credentials::limits::retry_after_secs;

pub async fn authenticate(state: &AppState, api_key: Option<&str>, client: Option<IpAddr>) -> Result<Uuid, ApiError> {
    let blocked = client.and_then(|ip| state.auth_failures.empty_for(ip));
    if let Some(wait) = blocked {
        // Only a key already known good passes while the address is slowed down.
        return match api_key.and_then(|key| state.keys.cached(key)) {
            Some(Some(drone_id)) => Ok(drone_id),
            _ => {
                if let Some(ip) = client {
                    state.auth_failures.charge(ip);
                }
                metrics::counter!("flightline_ingest_auth_failures_total", "reason" => "throttled").increment(1);
                Err(ApiError::TooManyAuthFailures { retry_after_s: retry_after_secs(wait) })
            }
        };
    }
    let resolved = match api_key {
        // The database is down: the drone should retry (503), not treat it as a server bug.
        Some(key) => state.keys.resolve(key).await.map_err(|error| {
            tracing::warn!(%error, "api key lookup failed");
            ApiError::Unavailable { retry_after_s: 1 }
        })?,
        None => None,
    };
    match resolved {
        Some(drone_id) => Ok(drone_id),
        None => {
            if let Some(ip) = client {
                state.auth_failures.charge(ip);
            }
            metrics::counter!("flightline_ingest_auth_failures_total", "reason" => "unknown_key").increment(1);
            Err(ApiError::Unauthorized)
        }
    }
}
