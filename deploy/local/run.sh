#!/usr/bin/env bash
# `make run`: migrate, start every role in one process, wait until it is ready, print where to
# look, and fly a simulated fleet in the foreground. Ctrl-C stops the fleet and drains the roles.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/target/debug/flightline"
state="${FLIGHTLINE_STACK_DIR:-$root/.stack}"
addr="${FLIGHTLINE_HTTP_ADDR:-127.0.0.1:8080}"
mkdir -p "$state/logs"

# Traces go to the stack's Jaeger (`stack.sh up` starts it) unless configured otherwise; a dev
# run records every trace (the binary's default keeps 1 % of the traces it starts).
jaeger_ui="http://127.0.0.1:16686"
traces="Jaeger is not running (deploy/local/stack.sh jaeger-up), so no traces are exported"
if [[ -z ${OTEL_EXPORTER_OTLP_ENDPOINT:-} ]] && curl -fsS -o /dev/null --max-time 2 "$jaeger_ui/api/services"; then
  export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318"
  export OTEL_TRACES_SAMPLER="${OTEL_TRACES_SAMPLER:-parentbased_always_on}"
fi
if [[ -n ${OTEL_EXPORTER_OTLP_ENDPOINT:-} ]]; then
  traces="$jaeger_ui/search?service=flightline   (OTLP to $OTEL_EXPORTER_OTLP_ENDPOINT; API: $jaeger_ui/api/traces/{trace_id})"
fi

"$bin" migrate
"$bin" all >>"$state/logs/flightline.log" 2>&1 &
all_pid=$!
stop() {
  kill -TERM "$all_pid" 2>/dev/null || true
  wait "$all_pid" 2>/dev/null || true
  echo "run: flightline stopped (log: $state/logs/flightline.log)"
}
trap stop EXIT

deadline=$((SECONDS + 60))
until curl -fsS "http://$addr/readyz" >/dev/null 2>&1; do
  if ! kill -0 "$all_pid" 2>/dev/null; then
    echo "run: flightline exited during start-up; last lines of $state/logs/flightline.log:" >&2
    tail -n 20 "$state/logs/flightline.log" >&2
    exit 1
  fi
  if ((SECONDS > deadline)); then
    echo "run: flightline not ready on http://$addr/readyz after 60 s" >&2
    exit 1
  fi
  sleep 0.5
done

# A demo user owns the simulated fleet, so the dashboard shows it after signing in.
email="${DEMO_EMAIL:-demo@flightline.local}"
password="${DEMO_PASSWORD:-flightline-demo}"
curl -sS -o /dev/null -X POST "http://$addr/v1/auth/signup" -H 'content-type: application/json' \
  -d "{\"email\": \"$email\", \"password\": \"$password\"}" || true

cat <<MSG

  Flightline is up.
    Dashboard:  http://$addr/   (sign in as $email / $password)
    API:        http://$addr/openapi.json   (health: /healthz, readiness: /readyz)
    Logs:       $state/logs/flightline.log
    Traces:     $traces
    Metrics:    http://$addr/metrics
    Database:   psql postgres://flightline:flightline@127.0.0.1:5432/flightline
  Flying a simulated fleet of ${SIM_DRONES:-3} drones at ${SIM_HZ:-50} Hz (flights of 60 s, then
  12 s on the ground); flights and their analytics appear as they land. Ctrl-C to stop.

MSG
"$bin" simulate --drones "${SIM_DRONES:-3}" --hz "${SIM_HZ:-50}" --owner "$email" --target "http://$addr" || true
