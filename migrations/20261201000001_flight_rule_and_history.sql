-- Every flight records the flight rule it was cut with (CONTRACT.md §2 `rule`, §3), in the
-- contract's shape: {"throttle_threshold", "idle_s", "gap_s", "min_s"}. Flights stored before
-- this migration carry the contract's defaults, the rule every deployment so far ran with.
ALTER TABLE flights
    ADD COLUMN rule JSONB NOT NULL
        DEFAULT '{"throttle_threshold": 0.05, "idle_s": 10.0, "gap_s": 10.0, "min_s": 1.0}'::jsonb;
-- The analytics group (from FlightClosed) and replay always name the rule they used; the default
-- is kept for the rows above and for fixtures that insert flights by hand.

-- Flights a `flightline replay --group sessionizer` no longer produces under the rule configured
-- now are moved here (the API lists only `flights`), so nothing is silently destroyed. A flight id
-- can be retired more than once (rule changed, changed back, changed again): one row per
-- retirement. The columns are those of `flights` when it was retired, plus when and by which
-- replay.
CREATE TABLE flights_retired (
    retirement_id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    retired_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    retired_by        TEXT NOT NULL,
    id                UUID NOT NULL,
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
    analytics_status  TEXT NOT NULL,
    analytics_version INT,
    analytics_error   TEXT,
    rule              JSONB NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX flights_retired_flight ON flights_retired (id, start_ts, end_ts);
CREATE INDEX flights_retired_drone_start ON flights_retired (drone_id, start_ts);
