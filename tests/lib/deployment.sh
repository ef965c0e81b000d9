# An isolated `flightline all` for the script tests (tests/browser/run.sh, tests/api_fuzz/run.sh):
# its own database and topic prefix on the local stack, a free port, and the clean-up.
# Source it after defining `root`, `say` and `die`; then:
#
#   deployment_init NAME     sets run_id, db_name, prefix, db_url, addr, base_url, work, log
#   deployment_start         creates the topics and the database, starts `flightline all`
#                            (its log in $log), waits until /readyz answers; sets all_pid and
#                            exports DATABASE_URL etc. pointing at the deployment
#   stop_pid PID NAME        SIGTERM, up to 20 s, then SIGKILL
#   deployment_drop          drops what deployment_start created (call it from the EXIT trap)
#
# env: DATABASE_URL (the admin connection), KAFKA_BROKERS, FLIGHTLINE_STACK_DIR, RUST_LOG.

bin=$root/target/debug/flightline
admin_url=${DATABASE_URL:-postgres://flightline:flightline@127.0.0.1:5432/flightline}
kafka_libs=${FLIGHTLINE_STACK_DIR:-$root/.stack}/kafka/libs
brokers=${KAFKA_BROKERS:-127.0.0.1:9092}
all_pid=
db_created=
topics_created=

deployment_init() {
  local name=$1
  run_id=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
  db_name=fl${name}_$run_id
  prefix=fl$name.$run_id.
  db_url=${admin_url%/*}/$db_name
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  addr=127.0.0.1:$port
  base_url=http://$addr
  work=$(mktemp -d)
  log=$work/flightline.log
}

kafka_tool() {
  timeout --kill-after=5 45 java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -cp "$kafka_libs/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" "$@"
}

stop_pid() {
  local pid=$1 name=$2
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name did not stop within 20 s of SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

deployment_start() {
  say "database $db_name, topics $prefix*, $base_url"
  topics_created=1
  local topic job
  for topic in telemetry.v1 flights.v1 telemetry.dlq; do
    kafka_tool --create --if-not-exists --topic "$prefix$topic" --partitions 3 --replication-factor 1 \
      >"$work/topic-$topic.log" 2>&1 &
  done
  psql "$admin_url" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$db_name\"" >/dev/null \
    || die "cannot create database $db_name"
  db_created=1
  for job in $(jobs -p); do wait "$job" || { cat "$work"/topic-*.log >&2; die "cannot create topics $prefix*"; }; done
  # Exported: the script's own `flightline` commands (simulate, send) talk to this deployment too.
  export DATABASE_URL=$db_url FLIGHTLINE_HTTP_ADDR=$addr FLIGHTLINE_TOPIC_PREFIX=$prefix
  export RUST_LOG=${RUST_LOG:-warn}
  "$bin" all >"$log" 2>&1 &
  all_pid=$!
  local deadline=$((SECONDS + 45))
  until curl -fsS "$base_url/readyz" >/dev/null 2>&1; do
    kill -0 "$all_pid" 2>/dev/null || die "flightline all exited during start-up"
    ((SECONDS < deadline)) || die "flightline all not ready on $base_url/readyz after 45 s"
    sleep 0.3
  done
}

deployment_drop() {
  if [[ -n $db_created ]]; then
    psql "$admin_url" -qAt -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$db_name\" WITH (FORCE)" >/dev/null 2>&1 \
      || say "could not drop database $db_name"
  fi
  if [[ -n $topics_created ]]; then
    kafka_tool --delete --if-exists --topic "${prefix//./\\.}.*" >/dev/null 2>&1 || say "could not delete topics $prefix*"
  fi
}
