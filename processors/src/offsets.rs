//! `consumer_offsets`: the offsets a processor stores in PostgreSQL next to its writes, in the
//! same transaction. They are the exactly-once fence (a message below its partition's stored
//! offset is already written), they seed partition assignment (see [`crate::OffsetSeeds`]), the
//! store group's are the watermark analytics waits for, and the sessionizer keeps its state
//! snapshot beside them. This module is the only place that knows the table.

use std::collections::BTreeMap;

use sqlx::{PgConnection, PgPool};

use crate::Result;

/// The `(group, topic)` whose offsets a processor stores.
#[derive(Debug, Clone)]
pub struct OffsetKey {
    pub group_id: String,
    pub topic: String,
}

impl OffsetKey {
    pub fn new(group_id: &str, topic: &str) -> Self {
        Self { group_id: group_id.to_owned(), topic: topic.to_owned() }
    }

    /// Every stored offset: `(partition, next_offset)`.
    pub async fn stored(&self, pool: &PgPool) -> Result<Vec<(i32, i64)>> {
        Ok(sqlx::query_as("SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2")
            .bind(&self.group_id)
            .bind(&self.topic)
            .fetch_all(pool)
            .await?)
    }

    /// Locks the rows of `partitions` for the rest of the transaction and returns their offsets.
    /// `FOR UPDATE` serialises instances that briefly both own a partition during a rebalance.
    pub async fn fence(&self, tx: &mut PgConnection, partitions: &[i32]) -> Result<BTreeMap<i32, i64>> {
        let rows: Vec<(i32, i64)> = sqlx::query_as(
            "SELECT partition, next_offset FROM consumer_offsets
             WHERE group_id = $1 AND topic = $2 AND partition = ANY($3) FOR UPDATE",
        )
        .bind(&self.group_id)
        .bind(&self.topic)
        .bind(partitions)
        .fetch_all(&mut *tx)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Moves the offsets of `next_offsets` forward (never back) inside the caller's transaction.
    pub async fn advance(&self, tx: &mut PgConnection, next_offsets: &[(i32, i64)]) -> Result<()> {
        let (partitions, offsets): (Vec<i32>, Vec<i64>) = next_offsets.iter().copied().unzip();
        sqlx::query(
            "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
             SELECT $1, $2, p, o FROM UNNEST($3::int[], $4::bigint[]) AS u(p, o)
             ON CONFLICT (group_id, topic, partition) DO UPDATE
             SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset),
                 updated_at = now()",
        )
        .bind(&self.group_id)
        .bind(&self.topic)
        .bind(&partitions)
        .bind(&offsets)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// The next offset of one partition, if any is stored: for the store group, the watermark
    /// below which every message is in `telemetry_raw`.
    pub async fn next_offset(&self, pool: &PgPool, partition: i32) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3",
        )
        .bind(&self.group_id)
        .bind(&self.topic)
        .bind(partition)
        .fetch_optional(pool)
        .await?)
    }

    /// A partition's offset and the state snapshot stored with it.
    pub async fn snapshot(&self, pool: &PgPool, partition: i32) -> Result<Option<(i64, Option<serde_json::Value>)>> {
        Ok(sqlx::query_as(
            "SELECT next_offset, state FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3",
        )
        .bind(&self.group_id)
        .bind(&self.topic)
        .bind(partition)
        .fetch_optional(pool)
        .await?)
    }

    /// Replaces a partition's offset and state snapshot inside the caller's transaction (the
    /// snapshot is valid exactly at that offset, so both move together), unless a newer one is
    /// stored: a member that lost the partition in a rebalance may still finish a batch of it,
    /// and its older snapshot must not set the offset back below another member's seed (that
    /// member would resume past the restored state and skip the difference). The state at an
    /// offset is the same whoever computed it: it depends only on the log.
    pub async fn save_snapshot(
        &self,
        tx: &mut PgConnection,
        partition: i32,
        next_offset: i64,
        state: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, state)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (group_id, topic, partition) DO UPDATE
             SET next_offset = EXCLUDED.next_offset, state = EXCLUDED.state, updated_at = now()
             WHERE consumer_offsets.next_offset <= EXCLUDED.next_offset",
        )
        .bind(&self.group_id)
        .bind(&self.topic)
        .bind(partition)
        .bind(next_offset)
        .bind(state)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Offset seeds for the runner, from what is stored.
    pub async fn seeds(&self, pool: &PgPool) -> Result<crate::OffsetSeeds> {
        let seeds = crate::OffsetSeeds::default();
        for (partition, next_offset) in self.stored(pool).await? {
            seeds.set(partition, next_offset);
        }
        Ok(seeds)
    }
}
