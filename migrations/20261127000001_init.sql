-- Flightline schema (DESIGN.md §5). telemetry_raw follows the seed with plain double columns,
-- a natural key (drone_id, ts) instead of a surrogate id, and range partitions by day.

CREATE TABLE users (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- API keys are stored hashed: the prefix (first characters of the key, not secret) finds the row,
-- the SHA-256 of the whole key is compared in constant time. The plain key is shown once.
CREATE TABLE drones (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name           TEXT NOT NULL,
    owner_id       UUID REFERENCES users (id) ON DELETE SET NULL,
    api_key_prefix TEXT NOT NULL UNIQUE,
    api_key_hash   BYTEA NOT NULL,
    key_rotated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX drones_owner ON drones (owner_id);

-- No foreign key to drones: a per-row FK check would tax the hottest write path, and rows only
-- ever come from the log, where ingest has already resolved the drone.
CREATE TABLE telemetry_raw (
    drone_id    UUID NOT NULL,
    ts          TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    flight_id   UUID,
    throttle    DOUBLE PRECISION NOT NULL,
    voltage     DOUBLE PRECISION,
    current     DOUBLE PRECISION,
    mah_drawn   BIGINT,
    rssi        INTEGER,
    x           DOUBLE PRECISION,
    y           DOUBLE PRECISION,
    z           DOUBLE PRECISION,
    lat         DOUBLE PRECISION,
    lon         DOUBLE PRECISION,
    alt_m       DOUBLE PRECISION,
    vx          DOUBLE PRECISION,
    vy          DOUBLE PRECISION,
    vz          DOUBLE PRECISION,
    roll        DOUBLE PRECISION,
    pitch       DOUBLE PRECISION,
    yaw         DOUBLE PRECISION,
    extra       JSONB,
    PRIMARY KEY (drone_id, ts)
) PARTITION BY RANGE (ts);

-- Safety net: a row whose day has no partition yet (history, clock skew) still lands.
CREATE TABLE telemetry_raw_default PARTITION OF telemetry_raw DEFAULT;
CREATE INDEX telemetry_raw_flight ON telemetry_raw (flight_id) WHERE flight_id IS NOT NULL;

-- Creates the daily partitions [first_day, first_day + days) that do not exist yet. Rows of such a
-- day that already sit in the default partition are moved into the new partition first, since
-- ATTACH would otherwise fail. Serialised by an advisory lock so concurrent store instances agree.
CREATE FUNCTION flightline_ensure_partitions(first_day DATE, days INT) RETURNS INT
LANGUAGE plpgsql AS $$
DECLARE
    day     DATE;
    part    TEXT;
    lo      TIMESTAMPTZ;
    hi      TIMESTAMPTZ;
    created INT := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('flightline_ensure_partitions'));
    FOR i IN 0 .. days - 1 LOOP
        day := first_day + i;
        part := 'telemetry_raw_' || to_char(day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        lo := day::timestamp AT TIME ZONE 'UTC';
        hi := (day + 1)::timestamp AT TIME ZONE 'UTC';
        EXECUTE format('CREATE TABLE %I (LIKE telemetry_raw INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXECUTE format(
            'WITH moved AS (DELETE FROM telemetry_raw_default WHERE ts >= %L AND ts < %L RETURNING *) '
            'INSERT INTO %I SELECT * FROM moved', lo, hi, part);
        EXECUTE format('ALTER TABLE telemetry_raw ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                       part, lo, hi);
        created := created + 1;
    END LOOP;
    RETURN created;
END
$$;

SELECT flightline_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1, 4);

CREATE TABLE flights (
    id                UUID PRIMARY KEY,
    drone_id          UUID NOT NULL REFERENCES drones (id) ON DELETE CASCADE,
    start_ts          TIMESTAMPTZ NOT NULL,
    end_ts            TIMESTAMPTZ NOT NULL,
    packet_count      BIGINT NOT NULL,
    source_partition  INT NOT NULL,
    last_offset       BIGINT NOT NULL,
    duration_s        DOUBLE PRECISION,
    total_mah         DOUBLE PRECISION,
    energy_wh         DOUBLE PRECISION,
    min_voltage       DOUBLE PRECISION,
    max_current       DOUBLE PRECISION,
    distance_m        DOUBLE PRECISION,
    bbox              JSONB,
    computed_metrics  JSONB,
    analytics_status  TEXT NOT NULL DEFAULT 'pending'
                      CHECK (analytics_status IN ('pending', 'done', 'failed')),
    analytics_version INT,
    analytics_error   TEXT,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX flights_drone_start ON flights (drone_id, start_ts DESC);

-- Offsets of consumer groups whose writes go to PostgreSQL, stored in the same transaction as
-- the writes: the exactly-once fence, and the store watermark the analytics group waits for.
CREATE TABLE consumer_offsets (
    group_id    TEXT NOT NULL,
    topic       TEXT NOT NULL,
    partition   INT NOT NULL,
    next_offset BIGINT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
