#!/usr/bin/env bash
# The dashboard's end-to-end browser test (`make test` runs it):
#
#   1. builds the flightline binary (a no-op when it is up to date) and installs what the test
#      needs if it is missing: Debian's chromium, and playwright-core (npm ci here);
#   2. starts `flightline all` on a free port with its own database and its own prefixed topics
#      on the local stack (deploy/local/stack.sh up);
#   3. signs a user up, flies `flightline simulate --owner` drones in the background;
#   4. runs dashboard.test.mjs in headless Chromium: sign in, live tiles, drone page, a finished
#      flight's charts and metrics, CSV, recompute (screenshots in tests/browser/screenshots/);
#   5. stops everything (SIGTERM), drops the database and the topics; exits non-zero on failure.
#
# env: BROWSER_FLIGHTS  real (default): the flight must come from the sessionizer and analytics
#                       processors of `flightline all`;
#                       auto: as real, but if no flight was closed FLIGHT_SEED_AFTER_S seconds
#                       after the simulation started, one is inserted by SQL from the drone's
#                       stored telemetry (a stand-in for a build without those processors; said
#                       loudly in the output).
#      FLIGHT_SEED_AFTER_S (default 45), BUDGET_S (default 170: seconds from the deployment's
#      start to the end of the browser run; the whole script then ends well within 3 minutes once
#      the binary is built), KEEP_LOGS=1 (print flightline's log even on success),
#      DATABASE_URL (the admin connection; default: the local stack's flightline role).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mode=${BROWSER_FLIGHTS:-real}
seed_after=${FLIGHT_SEED_AFTER_S:-45}
chromium=${CHROMIUM:-/usr/bin/chromium}
t0=$SECONDS

say() { printf 'browser: %s\n' "$*"; }
die() { printf 'browser: FAILED: %s\n' "$*" >&2; exit 1; }
# shellcheck source=tests/lib/deployment.sh
source "$root/tests/lib/deployment.sh"
case $mode in real | auto) ;; *) die "BROWSER_FLIGHTS must be real or auto, not $mode" ;; esac

# ---- prerequisites -----------------------------------------------------------------------
if [[ ! -x $chromium ]]; then
  say "installing Debian's chromium (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null \
    || die "cannot install chromium; install it with: apt-get install -y chromium"
fi
if [[ ! -d $here/node_modules/playwright-core ]]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci in tests/browser failed"
fi
(cd "$root" && cargo build --bin flightline --quiet) || die "cargo build --bin flightline failed"
"$root/deploy/local/stack.sh" status >/dev/null 2>&1 || "$root/deploy/local/stack.sh" up \
  || die "the local stack (Kafka, PostgreSQL, Redis) is not up"

# ---- an isolated deployment ----------------------------------------------------------------
# From here on the run is bounded: about 3 minutes (BUDGET_S) however slow the machine is.
budget=${BUDGET_S:-170}
t_budget=$SECONDS
deployment_init browser
sim_pid=
seeder_pid=

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_pid "$seeder_pid" seeder
  stop_pid "$sim_pid" "flightline simulate"
  stop_pid "$all_pid" "flightline all"
  if [[ $status -ne 0 || -n ${KEEP_LOGS:-} ]] && [[ -s $log ]]; then
    echo "---- last lines of flightline's log ($log) ----" >&2
    tail -n 40 "$log" >&2
    echo "----" >&2
  fi
  deployment_drop
  [[ $status -eq 0 && -z ${KEEP_LOGS:-} ]] && rm -rf "$work"
  say "$([[ $status -eq 0 ]] && echo passed || echo FAILED) in $((SECONDS - t0)) s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

deployment_start
say "flightline all ready after $((SECONDS - t0)) s"

email=pilot-$run_id@example.com
password=browser-$run_id
status=$(curl -sS -o "$work/signup.json" -w '%{http_code}' -X POST "$base_url/v1/auth/signup" \
  -H 'content-type: application/json' -d "{\"email\":\"$email\",\"password\":\"$password\"}")
[[ $status == 201 ]] || die "signup answered $status: $(cat "$work/signup.json")"

# Two drones, two 20 s flights each (each followed by 12 s on the ground, which closes it).
"$bin" simulate --drones 2 --hz 20 --duration 20 --flights 2 --owner "$email" --target "$base_url" \
  >"$work/simulate.log" 2>&1 &
sim_pid=$!
sim_started=$SECONDS

flights_in_db() { psql "$db_url" -qAt -c "SELECT count(*) FROM flights" 2>/dev/null || echo 0; }

# Stand-in for the sessionizer and analytics processors while `flightline all` has none: the
# drone's first stretch of throttle ≥ 0.05 becomes a flight, with the simplest metrics computed
# from its stored rows. Only in BROWSER_FLIGHTS=auto, and only if no real flight appeared.
seed_flights() {
  psql "$db_url" -qAt -v ON_ERROR_STOP=1 <<'SQL'
WITH airborne AS (
  SELECT drone_id, min(ts) AS start_ts FROM telemetry_raw WHERE throttle >= 0.05 GROUP BY drone_id
), landed AS (
  SELECT a.drone_id, a.start_ts,
         coalesce((SELECT min(t.ts) FROM telemetry_raw t
                   WHERE t.drone_id = a.drone_id AND t.ts > a.start_ts AND t.throttle < 0.05),
                  (SELECT max(t.ts) FROM telemetry_raw t WHERE t.drone_id = a.drone_id)) AS end_ts
  FROM airborne a
), rows AS (
  SELECT l.drone_id, l.start_ts, l.end_ts, count(*) AS n, min(t.voltage) AS min_v, max(t.voltage) AS max_v,
         max(t.current) AS max_i, avg(t.current) AS avg_i, avg(t.throttle) AS throttle_mean
  FROM landed l JOIN telemetry_raw t ON t.drone_id = l.drone_id AND t.ts BETWEEN l.start_ts AND l.end_ts
  GROUP BY l.drone_id, l.start_ts, l.end_ts
)
INSERT INTO flights (id, drone_id, start_ts, end_ts, packet_count, source_partition, last_offset,
                     duration_s, min_voltage, max_current, computed_metrics, analytics_status, analytics_version)
SELECT gen_random_uuid(), drone_id, start_ts, end_ts, n, 0, 0,
       extract(epoch FROM end_ts - start_ts), min_v, max_i,
       jsonb_build_object('duration_s', extract(epoch FROM end_ts - start_ts), 'packet_count', n,
                          'min_voltage', min_v, 'max_voltage', max_v, 'max_current', max_i,
                          'avg_current', avg_i, 'throttle_mean', throttle_mean, 'seeded_by', 'tests/browser/run.sh'),
       'done', 0
FROM rows WHERE end_ts - start_ts >= interval '1 second';
SQL
}

if [[ $mode == auto ]]; then
  (
    until (( $(flights_in_db) > 0 )); do
      if (( SECONDS - sim_started >= seed_after )); then
        echo "browser: WARNING: no flight closed ${seed_after} s into the simulation (no sessionizer in flightline all?);"
        echo "browser: WARNING: seeding one flight per drone by SQL as a stand-in (BROWSER_FLIGHTS=real forbids this)"
        seed_flights || echo "browser: seeding flights failed"
        echo seeded >"$work/seeded"
        exit 0
      fi
      sleep 1
    done
  ) &
  seeder_pid=$!
fi

# ---- the browser ---------------------------------------------------------------------------
rm -rf "$here/screenshots"
remaining=$((budget - (SECONDS - t_budget) - 10)) # 10 s for stopping and cleaning up
BASE_URL=$base_url TEST_EMAIL=$email TEST_PASSWORD=$password CHROMIUM=$chromium \
  SCREENSHOT_DIR="$here/screenshots" FLIGHT_WAIT_S=$((seed_after + 40)) \
  timeout --kill-after=5 $((remaining > 30 ? remaining : 30)) node "$here/dashboard.test.mjs" \
  || die "the dashboard test failed or ran out of time (screenshots: $here/screenshots)"

if [[ -e $work/seeded ]]; then
  say "NOTE: the flight checked was seeded by SQL, not closed by the sessionizer (BROWSER_FLIGHTS=real to require one)"
else
  say "the flight checked was closed by the sessionizer"
fi
