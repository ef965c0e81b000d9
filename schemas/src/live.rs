//! Names of the live view in Redis, shared by its writer (the `live` processor) and its readers
//! (the query role). Drone ids are random UUIDs, so the names need no per-deployment prefix.

use uuid::Uuid;

/// Key holding the drone's newest packet as JSON (packet fields plus `drone_id`), 30 s expiry.
pub fn live_key(drone_id: Uuid) -> String {
    format!("drone:{drone_id}:live")
}

/// Pub/sub channel carrying every newer packet of the drone, same JSON as [`live_key`].
pub fn live_channel(drone_id: Uuid) -> String {
    format!("{LIVE_CHANNEL_PREFIX}{drone_id}")
}

/// Prefix of [`live_channel`] names, for parsing the drone id back out.
pub const LIVE_CHANNEL_PREFIX: &str = "live:";
