#!/usr/bin/env bash
# Hostile input against a running deployment (issue 9, item 5): schemathesis generates requests
# from /openapi.json, valid and invalid, and checks every answer against the document.
#
#   1. installs schemathesis (pip, pinned) if it is missing; builds the flightline binary (a no-op
#      when it is up to date); brings the local stack up if it is not (deploy/local/stack.sh);
#   2. starts `flightline all` on a free port with its own database and its own prefixed topics
#      (as tests/browser/run.sh does), signs a user up, gets a token, creates a drone;
#   3. runs schemathesis over every operation except those that stream until the client leaves
#      (the SSE `…/live/stream` routes and the WebSocket upgrade), with the user's bearer token
#      and the drone's API key on every request, and these checks:
#        not_a_server_error         no 5xx
#        status_code_conformance    every status answered is documented for the operation
#        content_type_conformance   the Content-Type answered is the documented one
#        response_schema_conformance  the body matches the documented schema (the error body too)
#   4. stops everything (SIGTERM), drops the database and the topics; exits non-zero when
#      schemathesis found a failure (its output says how to reproduce each one).
#
# env: API_FUZZ_MAX_EXAMPLES  test cases per operation and phase (default 150: the whole script
#                             then takes about 90 s once the binary is built)
#      API_FUZZ_SEED          schemathesis' random seed, to reproduce a run (default: random;
#                             the seed used is printed)
#      API_FUZZ_ARGS          more schemathesis arguments, split on spaces (e.g. `--report har`,
#                             `--include-path-regex ^/v1/flights`)
#      KEEP_LOGS=1            print flightline's log and keep the work directory even on success
#      DATABASE_URL           the admin connection (default: the local stack's flightline role)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
schemathesis_version=4.32.5
max_examples=${API_FUZZ_MAX_EXAMPLES:-150}
seed=${API_FUZZ_SEED:-$((RANDOM * 32768 + RANDOM))}
t0=$SECONDS

say() { printf 'api-fuzz: %s\n' "$*"; }
die() { printf 'api-fuzz: FAILED: %s\n' "$*" >&2; exit 1; }
# shellcheck source=tests/lib/deployment.sh
source "$root/tests/lib/deployment.sh"

# ---- prerequisites -----------------------------------------------------------------------
installed=$(python3 -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)
if [[ $installed != "$schemathesis_version" ]]; then
  say "installing schemathesis $schemathesis_version (pip)"
  python3 -m pip install -q "schemathesis==$schemathesis_version" \
    || python3 -m pip install -q --break-system-packages "schemathesis==$schemathesis_version" \
    || die "cannot install schemathesis $schemathesis_version with pip"
fi
(cd "$root" && cargo build --bin flightline --quiet) || die "cargo build --bin flightline failed"
"$root/deploy/local/stack.sh" status >/dev/null 2>&1 || "$root/deploy/local/stack.sh" up \
  || die "the local stack (Kafka, PostgreSQL, Redis) is not up"

# ---- an isolated deployment ----------------------------------------------------------------
deployment_init fuzz

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_pid "$all_pid" "flightline all"
  if [[ -s $log ]]; then
    # A panic or an internal error is a defect even when no answer showed it.
    if grep -E 'panicked at|internal error' "$log" >"$work/defects.log"; then
      say "flightline logged $(wc -l <"$work/defects.log") panic(s) or internal error(s):"
      head -n 20 "$work/defects.log" >&2
      [[ $status -eq 0 ]] && status=1
    fi
    if [[ $status -ne 0 || -n ${KEEP_LOGS:-} ]]; then
      echo "---- last lines of flightline's log ($log) ----" >&2
      tail -n 40 "$log" >&2
      echo "----" >&2
    fi
  fi
  deployment_drop
  if [[ $status -eq 0 && -z ${KEEP_LOGS:-} ]]; then rm -rf "$work"; else say "work directory kept: $work"; fi
  say "$([[ $status -eq 0 ]] && echo passed || echo FAILED) in $((SECONDS - t0)) s"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

deployment_start
say "flightline all ready after $((SECONDS - t0)) s"

# A user, their token, and a drone whose key schemathesis sends with every request.
json_field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
email=fuzz-$run_id@example.com
password=fuzz-$run_id-password
credentials="{\"email\":\"$email\",\"password\":\"$password\"}"
status=$(curl -sS -o "$work/signup.json" -w '%{http_code}' -X POST "$base_url/v1/auth/signup" \
  -H 'content-type: application/json' -d "$credentials")
[[ $status == 201 ]] || die "signup answered $status: $(cat "$work/signup.json")"
status=$(curl -sS -o "$work/token.json" -w '%{http_code}' -X POST "$base_url/v1/auth/token" \
  -H 'content-type: application/json' -d "$credentials")
[[ $status == 200 ]] || die "token answered $status: $(cat "$work/token.json")"
token=$(json_field "$work/token.json" access_token)
status=$(curl -sS -o "$work/drone.json" -w '%{http_code}' -X POST "$base_url/v1/drones" \
  -H 'content-type: application/json' -H "authorization: Bearer $token" -d '{"name":"fuzz drone"}')
[[ $status == 201 ]] || die "creating a drone answered $status: $(cat "$work/drone.json")"
api_key=$(json_field "$work/drone.json" api_key)
drone_id=$(json_field "$work/drone.json" id)
status=$(curl -sS -o "$work/spare.json" -w '%{http_code}' -X POST "$base_url/v1/drones" \
  -H 'content-type: application/json' -H "authorization: Bearer $token" -d '{"name":"spare drone"}')
[[ $status == 201 ]] || die "creating the spare drone answered $status: $(cat "$work/spare.json")"
spare_id=$(json_field "$work/spare.json" id)

# One finished flight of the drone, so that the flight routes get past their 404: 3 s in the air,
# then 12 s on the ground (the idle window of 10 s closes it), 10 Hz, a minute in the past.
python3 - "$work/flight.json" <<'PY'
import json, sys, time
start_ms = int(time.time() * 1000) - 60_000
packets = []
for i in range(150):
    t = i / 10
    flying = t < 3
    packets.append({
        "ts": start_ms + i * 100,
        "throttle": 0.55 if flying else 0.0,
        "voltage": 16.4 - 0.02 * t,
        "current": 22.0 if flying else 0.4,
        "mah_drawn": 10 * i,
        "rssi": -60,
        "position": [0.5 * t, 0.0, 4.0 * t if flying else 12.0],
        "gps": {"lat": 47.397742, "lon": 8.545594 + 1e-6 * i, "alt_m": 488.1},
        "velocity": [0.5, 0.0, 4.0 if flying else 0.0],
        "attitude": [1.0, -2.0, 90.0 + t],
        "extra": {"mode": "loiter", "sats": 14, "armed": flying},
    })
json.dump(packets, open(sys.argv[1], "w"))
PY
status=$(curl -sS -o "$work/ingested.json" -w '%{http_code}' -X POST "$base_url/v1/telemetry" \
  -H 'content-type: application/json' -H "x-api-key: $api_key" --data-binary "@$work/flight.json")
[[ $status == 201 ]] || die "sending the seed flight answered $status: $(cat "$work/ingested.json")"
flight_id=
deadline=$((SECONDS + 60))
until [[ -n $flight_id ]]; do
  ((SECONDS < deadline)) || die "the seed flight was not closed and analysed within 60 s"
  sleep 1
  curl -fsS -o "$work/flights.json" "$base_url/v1/drones/$drone_id/flights" -H "authorization: Bearer $token" || continue
  flight_id=$(python3 -c 'import json, sys
flights = [f for f in json.load(open(sys.argv[1])) if f["analytics_status"] == "done"]
print(flights[0]["id"] if flights else "")' "$work/flights.json")
done
say "drone $drone_id has flight $flight_id (after $((SECONDS - t0)) s)"

# ---- schemathesis ----------------------------------------------------------------------------
# Path ids: often the ones that exist (the drone and its flight), otherwise whatever schemathesis
# generates. Key rotation gets the spare drone, so that the key sent with every request stays the
# drone's.
cat >"$work/schemathesis.toml" <<TOML
[dictionaries.drone]
values = ["$drone_id"]
[dictionaries.spare]
values = ["$spare_id"]
[dictionaries.flight]
values = ["$flight_id"]

[[operations]]
include-path-regex = '^/v1/drones/\{id\}(/live|/flights)?\$'
parameters = { "path.id" = { dictionary = "drone", probability = 0.6 } }

[[operations]]
include-path = "/v1/drones/{id}/api-key"
parameters = { "path.id" = { dictionary = "spare", probability = 0.6 } }

[[operations]]
include-path-regex = '^/v1/flights/\{id\}'
parameters = { "path.id" = { dictionary = "flight", probability = 0.6 } }
TOML

# Excluded operations: GET /v1/live/stream and GET /v1/drones/{id}/live/stream are Server-Sent
# Event streams that answer 200 and then stream until the client goes away, and
# GET /v1/telemetry/ws upgrades to a WebSocket: none of them has a response to check.
# The token lives an hour; the run is far shorter.
say "schemathesis $schemathesis_version, seed $seed, at most $max_examples examples per operation"
# shellcheck disable=SC2054 # the commas separate the checks within one argument
schemathesis_args=(
  --config-file "$work/schemathesis.toml"
  run "$base_url/openapi.json"
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
  --exclude-path-regex '/live/stream$|^/v1/telemetry/ws$'
  --header "Authorization: Bearer $token"
  --header "X-API-Key: $api_key"
  --max-examples "$max_examples"
  --workers 2
  --request-timeout 10
  --seed "$seed"
  --generation-database none
  --report junit --report-dir "$work/report"
)
read -r -a extra_args <<<"${API_FUZZ_ARGS:-}"
schemathesis_args+=("${extra_args[@]}")
set +e
# As a module: pip's script directory need not be on PATH.
(cd "$work" && timeout --kill-after=10 150 python3 -m schemathesis.cli "${schemathesis_args[@]}") | tee "$work/schemathesis.out"
fuzz_status=${PIPESTATUS[0]}
set -e
# Schemathesis closes with a pytest-like line that need not count tests; close with the plain
# "N passed, N failed" of its test cases instead.
cases=$(grep -Eo '[0-9]+ generated, [0-9]+ passed' "$work/schemathesis.out" | tail -n 1 || true)
generated=$(cut -d' ' -f1 <<<"$cases")
passed=$(cut -d' ' -f3 <<<"$cases")
case $fuzz_status in
  0)
    say "schemathesis found no failure"
    if [[ -n $passed ]]; then printf 'api-fuzz: %s passed, %s failed\n' "$passed" "$((generated - passed))"; fi
    ;;
  124) die "schemathesis ran out of time (150 s)" ;;
  *) die "schemathesis found failures (exit $fuzz_status; reproduce with API_FUZZ_SEED=$seed; report: $work/report)" ;;
esac
