-- The partial index on telemetry_raw.flight_id is read by no query of the product: a flight's rows
-- are found by drone and time range (CONTRACT.md §3), on the primary key. It cost one b-tree
-- insert at a random place for every row the analytics group tags, which is nearly every stored
-- row (BENCHMARKS.md, "where PostgreSQL's time goes at 50 000 packets/s"). Dropping the parent
-- index drops it on every partition.
DROP INDEX IF EXISTS telemetry_raw_flight;
