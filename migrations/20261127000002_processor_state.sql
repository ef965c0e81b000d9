-- Processors with in-memory state (the sessionizer) snapshot it per partition next to the
-- offset it is valid at, in the same row and transaction: restore both, and the replay from
-- that offset rebuilds exactly the state an uninterrupted run would have.
ALTER TABLE consumer_offsets ADD COLUMN state JSONB;
