#!/usr/bin/env bash
# The cost of tracing at ingest, side by side in one run: the same open-loop load
# (`flightline bench ingest`) against a fresh `flightline ingest` with tracing off, sampled at
# 1 % and at 100 % (exporting to the stack's Jaeger), plus the ingest process's CPU time.
# Needs the stack up (`deploy/local/stack.sh up`, Jaeger included) and a built binary.
#
# env: BIN (default target/debug/flightline), DRONES (50), HZ (200), BATCH (20), SECONDS_RUN (20)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
bin=${BIN:-$root/target/debug/flightline}
addr=127.0.0.1:18081
prefix=bench.
load=(--drones "${DRONES:-50}" --hz "${HZ:-200}" --batch "${BATCH:-20}" --seconds "${SECONDS_RUN:-20}")
tick=$(getconf CLK_TCK)

curl -fsS -o /dev/null http://127.0.0.1:16686/api/services || { echo "Jaeger is not up (deploy/local/stack.sh jaeger-up)" >&2; exit 1; }
"$bin" migrate >/dev/null 2>&1
java -cp "$root/.stack/kafka/libs/*" org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 \
  --create --if-not-exists --topic bench.telemetry.v1 --partitions 6 --replication-factor 1 \
  --config retention.ms=3600000 >/dev/null 2>&1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() { # NAME ENV...
  local name=$1 pid t0 t1 report
  shift
  env "$@" FLIGHTLINE_HTTP_ADDR=$addr FLIGHTLINE_TOPIC_PREFIX=$prefix RUST_LOG=warn "$bin" ingest &
  pid=$!
  until curl -fsS -o /dev/null "http://$addr/readyz" 2>/dev/null; do sleep 0.2; done
  t0=$(cpu_ticks "$pid")
  report=$("$bin" bench ingest "${load[@]}" --target "http://$addr")
  t1=$(cpu_ticks "$pid")
  kill -TERM "$pid"
  wait "$pid" || true
  printf '{"tracing":"%s","ingest_cpu_s":%s,"bench":%s}\n' "$name" "$(echo "scale=2; ($t1 - $t0) / $tick" | bc)" "$report"
}

run off -u OTEL_EXPORTER_OTLP_ENDPOINT
run 1% OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_SERVICE_NAME=flightline-bench-ingest
run 100% OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_SERVICE_NAME=flightline-bench-ingest \
  OTEL_TRACES_SAMPLER=parentbased_always_on
