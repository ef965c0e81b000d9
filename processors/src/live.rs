//! The `live` group: the newest packet of every drone in Redis (`drone:{id}:live`, JSON of the
//! packet plus `drone_id`, expiring after 30 s) and on the pub/sub channel `live:{id}` that feeds
//! the SSE streams.
//!
//! Newest wins by event time: one Lua script compares the packet's `ts` with the newest stored
//! one and only then writes and publishes, atomically, so redelivery, lag or a replay never moves
//! the live view backwards. A batch is one pipelined round trip carrying one script call per
//! drone: the live view needs the newest state of each drone, not every packet, so a batch is
//! conflated to its newest packet per drone first. Packets received longer ago than
//! the key's lifetime are skipped: after downtime the group does not replay stale history into
//! the live view (it would have expired anyway).

use std::collections::HashMap;

use redis::aio::ConnectionManager;
use redis::Script;
use schemas::TelemetryRecord;
use uuid::Uuid;

use crate::runner::{Batch, Processor};
use crate::Result;

pub const GROUP_ID: &str = "flightline-live";

/// Seconds a live key lives after the drone's last packet.
pub const LIVE_TTL_S: u64 = 30;

/// KEYS: live key, its ts companion. ARGV: ts (µs), packet JSON, ttl (s), channel.
const NEWEST_WINS: &str = r"
local newest = tonumber(redis.call('GET', KEYS[2]) or '-1')
if tonumber(ARGV[1]) <= newest then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return 1
";

pub struct Live {
    redis: ConnectionManager,
    script: Script,
}

impl Live {
    pub async fn new(redis: ConnectionManager) -> Result<Self> {
        let mut live = Self { redis, script: Script::new(NEWEST_WINS) };
        live.load_script().await?;
        Ok(live)
    }

    async fn load_script(&mut self) -> Result<()> {
        redis::cmd("SCRIPT").arg("LOAD").arg(NEWEST_WINS).query_async::<String>(&mut self.redis).await?;
        Ok(())
    }
}

impl Processor for Live {
    type Record = TelemetryRecord;

    async fn handle(&mut self, batch: &Batch<TelemetryRecord>) -> Result<()> {
        let stale_before = chrono::Utc::now().timestamp_micros() - (LIVE_TTL_S as i64) * 1_000_000;
        let mut newest: HashMap<Uuid, &TelemetryRecord> = HashMap::new();
        for message in batch.messages.iter().filter(|m| m.record.received_at_us >= stale_before) {
            let record = &message.record;
            let entry = newest.entry(record.drone_id).or_insert(record);
            if record.ts_us > entry.ts_us {
                *entry = record;
            }
        }
        let mut pipe = redis::pipe();
        for record in newest.into_values() {
            let key = schemas::live_key(record.drone_id);
            pipe.cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(2)
                .arg(&key)
                .arg(format!("{key}:ts"))
                .arg(record.ts_us)
                .arg(serde_json::to_string(&record.json_view()).expect("a packet view serialises"))
                .arg(LIVE_TTL_S)
                .arg(schemas::live_channel(record.drone_id))
                .ignore();
        }
        if pipe.is_empty() {
            return Ok(());
        }
        match pipe.query_async::<()>(&mut self.redis).await {
            Err(error) if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis restarted and forgot the script: load it and run the batch again (the
                // script makes the repeat harmless).
                self.load_script().await?;
                pipe.query_async::<()>(&mut self.redis).await?;
            }
            result => result?,
        }
        Ok(())
    }

    async fn on_assign(&mut self, _partitions: &[i32]) -> Result<()> {
        self.load_script().await
    }
}
