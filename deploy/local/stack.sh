#!/usr/bin/env bash
# deploy/local/stack.sh - Flightline's real single-node local stack, without Docker:
#
#   kafka     Apache Kafka 4.x in KRaft mode (one combined broker+controller), assembled
#             from its Maven Central jars (deploy/local/kafka/pom.xml) on the local JDK
#   postgres  this stack's own PostgreSQL cluster, from the Debian packages
#   redis     this stack's own redis-server, from the Debian package
#   cassandra Apache Cassandra 5.0, the archive group's CQL node, from its Maven Central jars
#             (deploy/local/cassandra/pom.xml) on the local JDK; heap 1 GiB; 127.0.0.1:9042
#   jaeger    Jaeger v2 all-in-one (in-memory traces; OTLP 4317/4318, UI and API 16686), built
#             once with the Go toolchain from deploy/local/jaeger/go.mod; optional: `up` warns
#             when it cannot start it
#
# usage:  deploy/local/stack.sh up|down|status|topics|retention|stop-kafka|start-kafka
#         deploy/local/stack.sh stop-cassandra|start-cassandra
#         deploy/local/stack.sh jaeger-up|jaeger-down
#         deploy/local/stack.sh cluster-up|cluster-down|cluster-status|cluster-{kill,stop,start} N
#
#   up      bring up whatever is missing and wait for it; quick when all is already up
#   down    stop all three (gracefully, then by force)
#   status  one line per service; exit 0 only if all are up
#   topics  create the Flightline topics that are missing (also part of `up`)
#   retention
#           set the retention of the log topics (telemetry.v1, flights.v1) that exist to
#           FLIGHTLINE_LOG_RETENTION_MS (topics created by `topics`/`up` get it from the start)
#   stop-kafka, start-kafka
#           stop / start only the broker (the Kafka outage test; `up` also restarts it)
#   stop-cassandra, start-cassandra
#           stop / start only the archive node (the archive outage test)
#
# A separate 3-node cluster (KRaft, 3 combined broker+controller nodes, replication factor 3,
# min.insync.replicas=2) on 127.0.0.1:19092-19094 (controllers 19192-19194), for the replication
# tests; it never touches the single node above, and `up`/`down`/`status` never touch it:
#
#   cluster-up       start the nodes that are not running; wait until all three are unfenced
#                    brokers and every partition's ISR is complete
#   cluster-down     stop all three (SIGTERM to all at once; SIGKILL for a node left without
#                    a quorum); data is kept
#   cluster-status   one line per node; exit 0 only if all three answer
#   cluster-kill N   kill -9 node N (1-3)
#   cluster-stop N   stop node N gracefully (SIGTERM: controlled shutdown)
#   cluster-start N  start node N if it is not running; wait until it is an unfenced broker
#                    again and back in the ISR of every partition, then elect the preferred
#                    leaders (so it leads its share of partitions again)
#
# env:    FLIGHTLINE_STACK_DIR   state: jars, data, logs, pid files (default <repo>/.stack)
#         STACK_TIMEOUT          seconds to wait for each service to come up (default 120)
#         FLIGHTLINE_PARTITIONS  partitions of each topic when it is created (default 6)
#         FLIGHTLINE_STACK_CASSANDRA  0: `up` leaves the Cassandra node out (default 1)
#         FLIGHTLINE_LOG_RETENTION_MS  retention.ms of telemetry.v1 and flights.v1 (default -1:
#                                no time limit, so `flightline replay` reaches back to the first
#                                packet; the broker's default of 7 days applies to other topics)
#
# Runs as root on Debian 12: it apt-get installs what is missing and runs PostgreSQL as the
# `postgres` OS user (PostgreSQL refuses to run as root). See deploy/local/README.md.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)

STATE_DIR=${FLIGHTLINE_STACK_DIR:-$REPO_ROOT/.stack}
[[ $STATE_DIR == /* ]] || STATE_DIR=$PWD/$STATE_DIR # pid files and cmdlines need absolute paths
STATE_DIR=${STATE_DIR%/}
STACK_TIMEOUT=${STACK_TIMEOUT:-120}
PARTITIONS=${FLIGHTLINE_PARTITIONS:-6}
# The log is the source of truth: replay reaches back as far as these topics keep messages.
LOG_TOPICS=(telemetry.v1 flights.v1)
LOG_RETENTION_MS=${FLIGHTLINE_LOG_RETENTION_MS:--1}
TOPICS=(telemetry.v1 flights.v1 telemetry.dlq)

# Fixed addresses: the Rust defaults (CONTRACT.md) point here, and so does CI.
HOST=127.0.0.1
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
PG_PORT=5432
REDIS_PORT=6379

LOG_DIR=$STATE_DIR/logs

KAFKA_DIR=$STATE_DIR/kafka
KAFKA_LIBS=$KAFKA_DIR/libs
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_PROPS=$KAFKA_DIR/server.properties
KAFKA_PIDFILE=$KAFKA_DIR/kafka.pid
KAFKA_LOG=$LOG_DIR/kafka.log
KAFKA_TOOLS_LOG=$LOG_DIR/kafka-tools.log
KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml

REDIS_DIR=$STATE_DIR/redis
REDIS_PIDFILE=$REDIS_DIR/redis.pid
REDIS_LOG=$LOG_DIR/redis.log

CASSANDRA_PORT=9042
CASSANDRA_STORAGE_PORT=7010 # not 7000: a common dev port; only the node itself listens on it
# The archive node is part of `up` unless FLIGHTLINE_STACK_CASSANDRA=0 (1 GiB of heap).
CASSANDRA_ENABLED=${FLIGHTLINE_STACK_CASSANDRA:-1}
CASSANDRA_DIR=$STATE_DIR/cassandra
CASSANDRA_LIBS=$CASSANDRA_DIR/libs
CASSANDRA_DATA=$CASSANDRA_DIR/data
CASSANDRA_YAML=$CASSANDRA_DIR/cassandra.yaml
CASSANDRA_PIDFILE=$CASSANDRA_DIR/cassandra.pid
CASSANDRA_LOG=$LOG_DIR/cassandra.log
CASSANDRA_POM=$SCRIPT_DIR/cassandra/pom.xml

PG_LOG=$LOG_DIR/postgres.log
# PG_BASE, PGDATA and PG_SOCK are decided by pg_paths (the data dir must be reachable by the
# postgres OS user, which the repo folder may not be).
PG_BASE=
PGDATA=
PG_SOCK=
PG_BIN=

# ---------------------------------------------------------------------------------------------
# helpers

say() { printf 'stack: %s\n' "$*"; }
warn() { printf 'stack: %s\n' "$*" >&2; }
die() {
	printf 'stack: ERROR: %s\n' "$*" >&2
	exit 1
}

# fail_service SERVICE LOGFILE REASON: the single way a service failure is reported, so every
# failure names the service and shows the end of the log that explains it.
fail_service() {
	local svc=$1 log=$2
	shift 2
	printf 'stack: ERROR: %s did not come up: %s\n' "$svc" "$*" >&2
	if [[ -s $log ]]; then
		printf 'stack: last 40 lines of %s:\n' "$log" >&2
		tail -n 40 -- "$log" | sed 's/^/    /' >&2
	fi
	exit 1
}

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

need_root() {
	[[ $EUID -eq 0 ]] || die "'stack.sh $1' must run as root (it may apt-get install packages and runs PostgreSQL as the postgres user)"
}

# Serialise concurrent invocations (e.g. parallel make targets): two `up`s racing would start
# two brokers on one data dir. Daemons are started with fd 9 closed (`9>&-`) so they do not
# inherit, and hold, this lock after the script exits.
take_lock() {
	mkdir -p "$STATE_DIR"
	exec 9>"$STATE_DIR/.lock"
	if ! flock -n 9; then
		say "waiting for another stack.sh in $STATE_DIR to finish ..."
		flock -w $((STACK_TIMEOUT * 3)) 9 || die "another stack.sh still holds $STATE_DIR/.lock"
	fi
}

# pid_alive PID: running and not a zombie (containers whose PID 1 does not reap leave
# zombies behind, and kill -0 succeeds on those).
pid_alive() {
	local stat
	[[ ${1:-} =~ ^[0-9]+$ ]] || return 1
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# read_pidfile FILE: the pid it names, or nothing. Always succeeds (safe in $(...) under -e).
read_pidfile() {
	local pid=
	if [[ -s $1 ]]; then
		read -r pid <"$1" || true
	fi
	[[ $pid =~ ^[0-9]+$ ]] && echo "$pid"
	return 0
}

# tcp_open PORT: something accepts TCP connections on HOST:PORT.
tcp_open() {
	# shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash, on purpose
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# port_holder PORT: "pid N: cmdline" of the process listening on PORT, for error messages.
# Reads /proc directly because `ss`/`lsof` are not on a minimal Debian.
port_holder() {
	local hex inode link pid cmd
	hex=$(printf '%04X' "$1")
	inode=$(awk -v h="$hex" '$4 == "0A" { n = split($2, a, ":"); if (a[n] == h) { print $10; exit } }' \
		/proc/net/tcp /proc/net/tcp6 2>/dev/null || true)
	if [[ -z $inode ]]; then
		echo "an unknown process"
		return 0
	fi
	link=$(find /proc/[0-9]*/fd -maxdepth 1 -lname "socket:\[$inode\]" -print -quit 2>/dev/null || true)
	if [[ -z $link ]]; then
		echo "a process this shell cannot see (socket inode $inode)"
		return 0
	fi
	pid=${link#/proc/}
	pid=${pid%%/*}
	# Long java command lines keep their telling part at the end (main class, config path).
	cmd=$(cmdline_of "$pid")
	((${#cmd} <= 240)) || cmd="${cmd:0:80} ... ${cmd: -150}"
	echo "pid $pid: $cmd"
}

# stop_pid NAME PID SECONDS: SIGTERM, wait up to SECONDS for a clean exit, then SIGKILL.
stop_pid() {
	local name=$1 pid=$2 secs=$3 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < secs * 10; i++)); do
		pid_alive "$pid" || return 0
		sleep 0.1
	done
	warn "$name (pid $pid) still running ${secs}s after SIGTERM; sending SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		pid_alive "$pid" || return 0
		sleep 0.1
	done
	die "$name (pid $pid) survived SIGKILL"
}

# apt_install PKG...: only called when something is missing; `apt-get update` first because a
# fresh machine's package lists may be stale or empty.
apt_install() {
	local log=$LOG_DIR/apt.log
	command -v apt-get >/dev/null || die "$* missing and apt-get not available; install $* by hand"
	say "installing $* (apt-get; first run only, may take a minute) ..."
	mkdir -p "$LOG_DIR"
	if ! {
		DEBIAN_FRONTEND=noninteractive apt-get update &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
	} >>"$log" 2>&1 9>&- </dev/null; then
		fail_service "$1" "$log" "apt-get install $* failed"
	fi
}

# ---------------------------------------------------------------------------------------------
# kafka

# maven_libs SERVICE POM LIBS JAR_GLOB: the jars of POM, copied from Maven Central into LIBS
# once. The marker holds a hash of the POM, so a version bump there re-copies into an empty
# folder (stale jars of another version on one classpath would break the JVM service).
maven_libs() {
	local svc=$1 pom=$2 libs=$3 jar=$4 want marker=$3/.complete log=$LOG_DIR/maven.log
	want=$(sha256sum <"$pom" | cut -d' ' -f1)
	if [[ -f $marker && $(<"$marker") == "$want" ]]; then
		return 0
	fi
	command -v java >/dev/null || apt_install openjdk-17-jre-headless
	command -v mvn >/dev/null || apt_install maven
	say "$svc ... fetching the $svc jars from Maven Central (first run only) ..."
	rm -rf -- "$libs"
	mkdir -p "$libs" "$LOG_DIR"
	if ! mvn -B -q -f "$pom" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$libs" >>"$log" 2>&1 9>&- </dev/null; then
		fail_service "$svc" "$log" "mvn could not fetch the $svc jars (see $log)"
	fi
	compgen -G "$libs/$jar" >/dev/null ||
		fail_service "$svc" "$log" "mvn succeeded but $libs has no $jar"
	echo "$want" >"$marker"
}

# kafka_libs: the broker and tool jars.
kafka_libs() { maven_libs kafka "$KAFKA_POM" "$KAFKA_LIBS" "kafka_2.13-*.jar"; }

# kafka_tool SECONDS MAIN_CLASS ARGS...: a short-lived JVM on the Kafka jars (StorageTool,
# TopicCommand, ...). Small heap and C1-only JIT: these runs are about start-up time.
kafka_tool() {
	local secs=$1
	shift
	timeout --kill-after=5 "$secs" java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
		-Djava.awt.headless=true -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/tools-log4j2.xml" \
		-cp "$KAFKA_LIBS/*" "$@"
}

# is_our_kafka PID: that process is the broker started from this state dir. Checking the
# command line (not just that the pid is alive) makes a stale pid file harmless after a
# kill -9 or a reboot, when the pid may belong to something else.
is_our_kafka() {
	pid_alive "${1:-}" && [[ $(cmdline_of "$1") == *" kafka.Kafka $KAFKA_PROPS"* ]]
}

# java_pid PIDFILE DIR IS_OURS: pid of the JVM service that IS_OURS PID recognises, or nothing.
# Trusts the pid file only after IS_OURS; otherwise scans /proc for java processes (cheap: no
# fork per process) and rewrites the pid file (when DIR exists).
java_pid() {
	local pidfile=$1 dir=$2 is_ours=$3 pid d comm
	pid=$(read_pidfile "$pidfile")
	if "$is_ours" "$pid"; then
		echo "$pid"
		return 0
	fi
	for d in /proc/[0-9]*; do
		comm=
		read -r comm 2>/dev/null <"$d/comm" || continue
		[[ $comm == java ]] || continue
		pid=${d#/proc/}
		if "$is_ours" "$pid"; then
			[[ -d $dir ]] && echo "$pid" >"$pidfile"
			echo "$pid"
			return 0
		fi
	done
	return 0
}

# kafka_pid: pid of this state dir's broker, or nothing.
kafka_pid() { java_pid "$KAFKA_PIDFILE" "$KAFKA_DIR" is_our_kafka; }

# kafka_probe: the broker answers the Kafka protocol on HOST:KAFKA_PORT. Sends a raw
# ApiVersions v0 request (api_key 18, correlation id "FLIT", null client id) over bash's
# /dev/tcp and checks the correlation id of the reply, so `status` needs no JVM. Brokers answer
# ApiVersions even for versions they no longer support, so this holds across Kafka versions.
# kafka_probe_at PORT does the same on another port (the nodes of the 3-broker cluster).
kafka_probe() { kafka_probe_at "$KAFKA_PORT"; }

kafka_probe_at() {
	local reply
	# shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash, on purpose
	reply=$(timeout 3 bash -c '
		exec 3<>"/dev/tcp/$0/$1" || exit 1
		printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x46\x4c\x49\x54\xff\xff" >&3
		head -c 8 <&3 | od -An -tx1' "$HOST" "$1" 2>/dev/null) || return 1
	reply=${reply//[[:space:]]/}
	[[ ${#reply} -eq 16 && ${reply:8} == 464c4954 ]]
}

kafka_write_config() {
	cat >"$KAFKA_PROPS" <<EOF
# Generated by deploy/local/stack.sh at every start of the broker: edit the script, not this.
# One node that is both broker and KRaft controller.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# Kafka 4 dynamic quorum (KIP-853): the storage was formatted with 'StorageTool format
# --standalone', which records this node as the only voter; the controller is then found
# through bootstrap servers, and controller.quorum.voters must NOT be set.
controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT
log.dirs=$KAFKA_DATA

# A single broker: every internal topic must make do with one replica.
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Topics are created explicitly (stack.sh topics, tests); a typo must not create a topic.
auto.create.topics.enable=false
# Tests start consumer groups constantly; do not wait 3 s for more members to join.
group.initial.rebalance.delay.ms=0
EOF
}

# kafka_format: first run only. Kafka 4 has no ZooKeeper and no implicit format: the log dir
# must be formatted with a cluster id before the first start.
kafka_format() {
	local id
	[[ -f $KAFKA_DATA/meta.properties ]] && return 0
	say "kafka ... formatting storage in $KAFKA_DATA (first run only)"
	mkdir -p "$KAFKA_DATA"
	id=$(kafka_tool 120 kafka.tools.StorageTool random-uuid 2>>"$KAFKA_TOOLS_LOG") ||
		fail_service kafka "$KAFKA_TOOLS_LOG" "StorageTool random-uuid failed"
	kafka_tool 120 kafka.tools.StorageTool format --standalone --ignore-formatted \
		--cluster-id "$id" --config "$KAFKA_PROPS" >>"$KAFKA_TOOLS_LOG" 2>&1 ||
		fail_service kafka "$KAFKA_TOOLS_LOG" "StorageTool format failed"
}

# kafka_start: start the broker in the background if it is not running; kafka_wait waits.
# Starting it first lets its slow JVM start-up overlap with PostgreSQL and Redis.
kafka_start() {
	local pid port
	pid=$(kafka_pid)
	if [[ -n $pid ]]; then
		return 0
	fi
	mkdir -p "$KAFKA_DIR" "$LOG_DIR"
	rm -f -- "$KAFKA_PIDFILE"
	for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
		if tcp_open "$port"; then
			die "kafka: port $HOST:$port is already in use by $(port_holder "$port"), which is not the broker of $STATE_DIR. Stop it (if it is another checkout's stack: its 'deploy/local/stack.sh down') and re-run."
		fi
	done
	kafka_libs
	kafka_write_config
	kafka_format
	say "kafka ... starting (log: $KAFKA_LOG)"
	printf '\n===== %s stack.sh: starting kafka =====\n' "$(date -Is)" >>"$KAFKA_LOG"
	# setsid: a session of its own, so neither Ctrl-C in this terminal nor the end of a CI
	# step's process group takes the broker down with the script. stdout/stderr go to the same
	# file log4j2 writes (both append), so JVM errors before logging starts are visible too.
	(
		cd "$KAFKA_DIR"
		exec setsid java -server -Xms256m -Xmx1G \
			-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
			-XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
			-XX:ErrorFile="$LOG_DIR/kafka-hs_err_%p.log" -Djava.awt.headless=true \
			-Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.xml" \
			-Dflightline.kafka.log="$KAFKA_LOG" \
			-cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS"
	) >>"$KAFKA_LOG" 2>&1 9>&- </dev/null &
	echo $! >"$KAFKA_PIDFILE"
}

# kafka_wait: until the broker answers, with a deadline; fails fast if the JVM died.
kafka_wait() {
	local deadline=$((SECONDS + STACK_TIMEOUT))
	until kafka_probe; do
		[[ -n $(kafka_pid) ]] || fail_service kafka "$KAFKA_LOG" "the broker process exited"
		((SECONDS < deadline)) ||
			fail_service kafka "$KAFKA_LOG" "no answer on $HOST:$KAFKA_PORT within ${STACK_TIMEOUT}s (STACK_TIMEOUT)"
		sleep 0.5
	done
	say "kafka ... up ($HOST:$KAFKA_PORT)"
}

# kafka_topics: list (one JVM; doubles as the end-to-end check that the broker serves
# metadata), then create only the missing topics, one JVM each. Existing topics are left
# as they are, whatever their partition count (change those with TopicCommand --alter).
kafka_topics() {
	local deadline=$((SECONDS + STACK_TIMEOUT)) listed t left
	local -a missing=()
	kafka_libs
	mkdir -p "$LOG_DIR"
	while :; do
		left=$((deadline - SECONDS))
		listed=$(kafka_tool $((left > 10 ? left : 10)) org.apache.kafka.tools.TopicCommand \
			--bootstrap-server "$HOST:$KAFKA_PORT" --list 2>>"$KAFKA_TOOLS_LOG") && break
		((SECONDS < deadline)) ||
			fail_service kafka "$KAFKA_TOOLS_LOG" "listing topics on $HOST:$KAFKA_PORT failed for ${STACK_TIMEOUT}s"
		sleep 1
	done
	for t in "${TOPICS[@]}"; do
		grep -qxF -- "$t" <<<"$listed" || missing+=("$t")
	done
	if ((${#missing[@]} == 0)); then
		say "kafka ... topics present: ${TOPICS[*]}"
		return 0
	fi
	for t in "${missing[@]}"; do
		local -a configs=()
		if is_log_topic "$t"; then
			configs=(--config "retention.ms=$LOG_RETENTION_MS" --config retention.bytes=-1)
		fi
		say "kafka ... creating topic $t ($PARTITIONS partitions, replication factor 1${configs:+, retention.ms=$LOG_RETENTION_MS})"
		kafka_tool 120 org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
			--create --if-not-exists --topic "$t" --partitions "$PARTITIONS" --replication-factor 1 \
			"${configs[@]}" >>"$KAFKA_TOOLS_LOG" 2>&1 ||
			fail_service kafka "$KAFKA_TOOLS_LOG" "creating topic $t failed"
	done
}

is_log_topic() {
	local t
	for t in "${LOG_TOPICS[@]}"; do
		[[ $t == "$1" ]] && return 0
	done
	return 1
}

# kafka_retention: retention.ms of the existing log topics (one JVM each; idempotent).
kafka_retention() {
	local t
	kafka_libs
	mkdir -p "$LOG_DIR"
	for t in "${LOG_TOPICS[@]}"; do
		say "kafka ... $t: retention.ms=$LOG_RETENTION_MS, retention.bytes=-1"
		kafka_tool 120 org.apache.kafka.tools.ConfigCommand --bootstrap-server "$HOST:$KAFKA_PORT" \
			--alter --entity-type topics --entity-name "$t" \
			--add-config "retention.ms=$LOG_RETENTION_MS,retention.bytes=-1" >>"$KAFKA_TOOLS_LOG" 2>&1 ||
			fail_service kafka "$KAFKA_TOOLS_LOG" "setting the retention of $t failed"
	done
}

kafka_down() {
	local pid
	pid=$(kafka_pid)
	if [[ -z $pid ]]; then
		say "kafka ... not running"
	else
		say "kafka ... stopping (pid $pid; controlled shutdown takes a few seconds)"
		stop_pid kafka "$pid" 60
	fi
	rm -f -- "$KAFKA_PIDFILE"
}

# ---------------------------------------------------------------------------------------------
# postgres

# pg_paths: where this stack's cluster lives. PostgreSQL runs as the `postgres` OS user, which
# must be able to reach its data dir. The state dir is used when it can; when it cannot (repo
# under /root or another 0700 folder) the cluster goes to /var/lib/flightline/<hash of the
# state dir>/ and <state>/postgres becomes a symlink to it, so status/down find it again.
pg_paths() {
	local create=${1:-}
	if [[ -L $STATE_DIR/postgres ]]; then
		PGDATA=$(readlink -f -- "$STATE_DIR/postgres")
		PG_BASE=${PGDATA%/*}
	elif [[ -d $STATE_DIR/postgres ]] || { [[ -d $STATE_DIR ]] && runuser -u postgres -- test -x "$STATE_DIR" 2>/dev/null; }; then
		PG_BASE=$STATE_DIR
		PGDATA=$PG_BASE/postgres
	else
		PG_BASE=/var/lib/flightline/$(printf '%s' "$STATE_DIR" | sha256sum | cut -c1-16)
		PGDATA=$PG_BASE/postgres
		if [[ $create == create ]]; then
			say "postgres ... $STATE_DIR is not reachable by the postgres user; cluster goes to $PGDATA"
			mkdir -p "$PG_BASE"
			chmod 755 /var/lib/flightline "$PG_BASE"
			ln -sfn -- "$PGDATA" "$STATE_DIR/postgres"
		fi
	fi
	# Unix sockets have a ~107-byte path limit; deep checkouts fall back to /tmp.
	PG_SOCK=$PG_BASE/postgres-run
	if ((${#PG_SOCK} > 90)); then
		PG_SOCK=/tmp
	fi
	pg_find_bin
}

# pg_find_bin: the PostgreSQL major that created the cluster, else the newest installed.
pg_find_bin() {
	local v cands
	PG_BIN=
	if [[ -f $PGDATA/PG_VERSION ]]; then
		v=$(<"$PGDATA/PG_VERSION")
		[[ -x /usr/lib/postgresql/$v/bin/pg_ctl ]] && PG_BIN=/usr/lib/postgresql/$v/bin && return 0
	fi
	cands=$(printf '%s\n' /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n1)
	[[ -x $cands ]] && PG_BIN=${cands%/pg_ctl}
	return 0
}

# pg_as CMD...: run as the postgres OS user, from / (it may not be able to enter $PWD).
pg_as() { (cd / && runuser -u postgres -- "$@"); }

# pg_pid: the postmaster of this stack's cluster, or nothing. Checks that the pid in
# postmaster.pid is a live `postgres -D <our data dir>`, so a stale file (kill -9, reboot,
# pid reused) is recognised as stale.
pg_pid() {
	local pid
	pid=$(read_pidfile "$PGDATA/postmaster.pid")
	if pid_alive "$pid" && [[ $(cmdline_of "$pid") == *"-D $PGDATA"* ]]; then
		echo "$pid"
	fi
	return 0
}

# pg_cluster_procs: live processes of this cluster, found by their working directory (the
# postmaster and every backend chdir into the data dir).
pg_cluster_procs() {
	local d real
	real=$(readlink -f -- "$PGDATA")
	for d in /proc/[0-9]*; do
		if [[ $(readlink "$d/cwd" 2>/dev/null) == "$real" ]] && pid_alive "${d#/proc/}"; then
			echo "${d#/proc/}"
		fi
	done
	return 0
}

# pg_clear_stale_pidfile: after a kill -9 or a reboot, postmaster.pid may name a pid that is
# "taken" (reused, or a zombie in a container whose PID 1 does not reap), and PostgreSQL then
# refuses to start. The file is removed, but only once no process of the cluster is left:
# orphaned backends could still be attached to its shared memory.
pg_clear_stale_pidfile() {
	local i left
	[[ -f $PGDATA/postmaster.pid ]] || return 0
	for ((i = 0; i < 100; i++)); do
		left=$(pg_cluster_procs)
		[[ -z $left ]] && break
		sleep 0.1
	done
	[[ -z $left ]] ||
		die "postgres: processes of $PGDATA are still running without their postmaster (pids: ${left//$'\n'/ }); stop them and re-run"
	say "postgres ... removing the stale postmaster.pid (its server is gone)"
	rm -f -- "$PGDATA/postmaster.pid"
}

pg_ready() { [[ -n $PG_BIN ]] && "$PG_BIN/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 2 2>/dev/null; }

# pg_free_port: port 5432 answers but not with our cluster. Debian's postgresql package creates
# and starts its own `main` cluster on 5432 (and starts it again at boot); this stack runs its
# own cluster instead, so that one is stopped. Anything else on the port is an error.
pg_free_port() {
	local ver name port status _rest
	if command -v pg_lsclusters >/dev/null; then
		while read -r ver name port status _rest; do
			if [[ $port == "$PG_PORT" && $status == online* ]]; then
				say "postgres ... stopping Debian's own cluster $ver/$name, which holds port $PG_PORT (this stack runs its own cluster)"
				pg_ctlcluster "$ver" "$name" stop >>"$PG_LOG" 2>&1 9>&- </dev/null ||
					fail_service postgres "$PG_LOG" "could not stop Debian's cluster $ver/$name (pg_ctlcluster $ver $name stop)"
			fi
		done < <(pg_lsclusters --no-header 2>/dev/null || true)
	fi
	if tcp_open "$PG_PORT"; then
		die "postgres: port $HOST:$PG_PORT is already in use by $(port_holder "$PG_PORT"), which is not this stack's cluster ($PGDATA). Stop it (another checkout's stack: its 'deploy/local/stack.sh down'; a Debian cluster: 'pg_ctlcluster <version> <name> stop') and re-run."
	fi
}

pg_init() {
	[[ -f $PGDATA/PG_VERSION ]] && return 0
	say "postgres ... creating the cluster in $PGDATA (first run only)"
	# A data dir without PG_VERSION is a failed earlier initdb, never a cluster: start over.
	rm -rf -- "$PGDATA"
	mkdir -p "$PGDATA"
	chown postgres:postgres "$PGDATA"
	chmod 700 "$PGDATA"
	pg_as "$PG_BIN/initdb" -D "$PGDATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
		--data-checksums --auth-local=peer --auth-host=scram-sha-256 >>"$PG_LOG" 2>&1 </dev/null ||
		fail_service postgres "$PG_LOG" "initdb failed"
	printf "\n# Flightline local stack settings (rewritten by stack.sh at every start)\ninclude 'flightline.conf'\n" \
		>>"$PGDATA/postgresql.conf"
}

pg_write_conf() {
	cat >"$PGDATA/flightline.conf" <<EOF
# Generated by deploy/local/stack.sh at every start of the cluster: edit the script, not this.
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
# Tests create a database (and a pool) per test.
max_connections = 200
shared_buffers = 256MB
# Durable like production: an acknowledged commit survives a power loss.
fsync = on
synchronous_commit = on
full_page_writes = on
# Telemetry is a bulk write: with the default 1 GB of WAL, checkpoints came every 18 s at 4 000
# rows/s ("checkpoints are occurring too frequently"), and the full-page images after each one
# swelled the WAL that brought on the next.
max_wal_size = 8GB
min_wal_size = 1GB
checkpoint_timeout = 15min
wal_compression = lz4
log_line_prefix = '%m [%p] %q%u@%d '
EOF
	chown postgres:postgres "$PGDATA/flightline.conf"
}

pg_start() {
	mkdir -p "$PG_SOCK"
	[[ $PG_SOCK == /tmp ]] || chown postgres:postgres "$PG_SOCK"
	pg_write_conf
	say "postgres ... starting (log: $PG_LOG)"
	printf '\n===== %s stack.sh: starting postgres =====\n' "$(date -Is)" >>"$PG_LOG"
	# No `pg_ctl -l`: the postgres user may not be able to open files in the state dir; the
	# server inherits this root-opened log file instead. pg_ctl puts it in its own session.
	pg_as "$PG_BIN/pg_ctl" -D "$PGDATA" -w -t "$STACK_TIMEOUT" -s start >>"$PG_LOG" 2>&1 9>&- </dev/null ||
		fail_service postgres "$PG_LOG" "pg_ctl start failed or did not finish within ${STACK_TIMEOUT}s"
}

# pg_bootstrap: the application role and database, idempotently (run at every `up`; cheap).
# CREATEDB because the Rust tests create one database per test.
pg_bootstrap() {
	pg_as "$PG_BIN/psql" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt \
		>>"$PG_LOG" 2>&1 <<'SQL' || fail_service postgres "$PG_LOG" "creating role/database flightline failed"
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'flightline') THEN
    CREATE ROLE flightline LOGIN CREATEDB PASSWORD 'flightline';
  ELSE
    ALTER ROLE flightline LOGIN CREATEDB PASSWORD 'flightline';
  END IF;
END $$;
SELECT 'CREATE DATABASE flightline OWNER flightline'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'flightline')\gexec
SQL
}

pg_up() {
	local deadline=$((SECONDS + STACK_TIMEOUT))
	compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || apt_install postgresql
	pg_paths create
	[[ -n $PG_BIN ]] || die "postgres: no /usr/lib/postgresql/*/bin/pg_ctl even after installing postgresql"
	if [[ -f $PGDATA/PG_VERSION && ! -x $PG_BIN/postgres ]]; then
		die "postgres: $PGDATA was created by PostgreSQL $(<"$PGDATA/PG_VERSION"), which is not installed; install postgresql-$(<"$PGDATA/PG_VERSION") or remove $PGDATA"
	fi
	if [[ -n $(pg_pid) ]]; then
		# Ours is running (or still starting): wait for it rather than start another.
		until pg_ready; do
			[[ -n $(pg_pid) ]] || fail_service postgres "$PG_LOG" "the server process exited"
			((SECONDS < deadline)) ||
				fail_service postgres "$PG_LOG" "no answer on $HOST:$PG_PORT within ${STACK_TIMEOUT}s"
			sleep 0.5
		done
	else
		if tcp_open "$PG_PORT"; then
			pg_free_port
		fi
		pg_init
		pg_clear_stale_pidfile
		pg_start
	fi
	pg_bootstrap
	say "postgres ... up ($HOST:$PG_PORT, database flightline)"
}

pg_down() {
	local pid
	pg_paths
	pid=$(pg_pid)
	if [[ -z $pid ]]; then
		say "postgres ... not running"
		return 0
	fi
	say "postgres ... stopping (pid $pid)"
	# 'fast' is PostgreSQL's graceful stop (SIGINT: roll back sessions, checkpoint, exit);
	# SIGTERM ('smart') would wait for every client to disconnect first.
	if ! pg_as "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 -s stop >>"$PG_LOG" 2>&1 9>&-; then
		warn "postgres did not stop within 60s; stopping it with -m immediate"
		pg_as "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 -s stop >>"$PG_LOG" 2>&1 9>&- ||
			stop_pid postgres "$pid" 5
	fi
}

# ---------------------------------------------------------------------------------------------
# redis

redis_cli() { timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" "$@" 2>/dev/null; }
redis_ping() { command -v redis-cli >/dev/null && [[ $(redis_cli ping) == PONG ]]; }

# redis_dir: the working directory of the redis answering on the port. Identifies ours
# (dir = <state>/redis) without trusting a pid file, and Debian's (dir = /var/lib/redis).
redis_dir() { redis_cli --raw config get dir | sed -n 2p || true; }
redis_ours() { [[ -d $REDIS_DIR && $(redis_dir) == "$(cd "$REDIS_DIR" && pwd -P)" ]]; }
redis_pid() { redis_cli --raw info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p' || true; }

# redis_free_port: a redis answers on 6379 but is not ours. Debian's redis-server package
# starts its own service there (and again at boot); it is stopped so that this stack's
# instance, with its state, log and `down`, owns the port. Anything else is an error.
redis_free_port() {
	local dir i
	dir=$(redis_dir)
	if [[ $dir == /var/lib/redis ]]; then
		say "redis ... stopping Debian's redis-server service, which holds port $REDIS_PORT (this stack runs its own instance)"
		{
			if [[ -d /run/systemd/system ]]; then
				systemctl stop redis-server.service
			elif [[ -x /etc/init.d/redis-server ]]; then
				/etc/init.d/redis-server stop
			else
				redis_cli shutdown nosave
			fi
		} >>"$REDIS_LOG" 2>&1 9>&- </dev/null || true
		for ((i = 0; i < 100; i++)); do
			tcp_open "$REDIS_PORT" || return 0
			sleep 0.1
		done
	fi
	die "redis: port $HOST:$REDIS_PORT is already in use by $(port_holder "$REDIS_PORT")${dir:+ (redis dir $dir)}, which is not this stack's redis ($REDIS_DIR). Stop it (Debian's: 'service redis-server stop'; another checkout's stack: its 'deploy/local/stack.sh down') and re-run."
}

redis_up() {
	local deadline=$((SECONDS + STACK_TIMEOUT)) pid
	command -v redis-server >/dev/null || apt_install redis-server
	mkdir -p "$REDIS_DIR" "$LOG_DIR"
	if redis_ping; then
		if redis_ours; then
			say "redis ... up ($HOST:$REDIS_PORT)"
			return 0
		fi
		redis_free_port
	elif tcp_open "$REDIS_PORT"; then
		die "redis: port $HOST:$REDIS_PORT is already in use by $(port_holder "$REDIS_PORT"), which does not answer as redis. Stop it and re-run."
	fi
	say "redis ... starting (log: $REDIS_LOG)"
	# A cache of live drone state: nothing to persist (--save '' and no AOF); the data is
	# rebuilt from Kafka. --daemonize: redis forks, detaches and writes its own pid file.
	rm -f -- "$REDIS_PIDFILE"
	# shellcheck disable=SC2094 # redis appends to its log itself; this only catches early errors
	redis-server --bind "$HOST" --port "$REDIS_PORT" --protected-mode yes \
		--daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" --dir "$REDIS_DIR" \
		--save '' --appendonly no >>"$REDIS_LOG" 2>&1 9>&- </dev/null ||
		fail_service redis "$REDIS_LOG" "redis-server refused to start"
	until redis_ping; do
		pid=$(read_pidfile "$REDIS_PIDFILE")
		if [[ -n $pid ]] && ! pid_alive "$pid"; then
			fail_service redis "$REDIS_LOG" "the server process exited"
		fi
		((SECONDS < deadline)) ||
			fail_service redis "$REDIS_LOG" "no PONG on $HOST:$REDIS_PORT within ${STACK_TIMEOUT}s"
		sleep 0.2
	done
	say "redis ... up ($HOST:$REDIS_PORT)"
}

redis_down() {
	local pid
	pid=$(read_pidfile "$REDIS_PIDFILE")
	if ! pid_alive "$pid" || [[ $(cmdline_of "$pid") != *redis-server* ]]; then
		# No usable pid file: ask the server itself, if the one on the port is ours.
		pid=
		redis_ping && redis_ours && pid=$(redis_pid)
	fi
	if [[ -z $pid ]]; then
		say "redis ... not running"
	else
		say "redis ... stopping (pid $pid)"
		stop_pid redis "$pid" 30
	fi
	rm -f -- "$REDIS_PIDFILE"
}

# ---------------------------------------------------------------------------------------------
# cassandra: the archive group's CQL node. Apache Cassandra 5.0 from its Maven Central jars
# (deploy/local/cassandra/pom.xml) on the local JDK; production runs ScyllaDB, which speaks the
# same CQL to the same `scylla` driver (README "The archive").

cassandra_libs() { maven_libs cassandra "$CASSANDRA_POM" "$CASSANDRA_LIBS" "cassandra-all-*.jar"; }

# is_our_cassandra PID: that process is the node started from this state dir (see is_our_kafka).
is_our_cassandra() {
	pid_alive "${1:-}" && [[ $(cmdline_of "$1") == *"-Dcassandra.config=file://$CASSANDRA_YAML "* ]]
}

cassandra_pid() { java_pid "$CASSANDRA_PIDFILE" "$CASSANDRA_DIR" is_our_cassandra; }

# cassandra_probe: the node answers CQL on HOST:CASSANDRA_PORT. Sends a native-protocol v4
# OPTIONS frame (stream id 0x464c, "FL") and checks that a SUPPORTED frame for that stream comes
# back: the node serves clients, which it does only once it has started up.
cassandra_probe() {
	local reply
	# shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash, on purpose
	reply=$(timeout 3 bash -c '
		exec 3<>"/dev/tcp/$0/$1" || exit 1
		printf "\x04\x00\x46\x4c\x05\x00\x00\x00\x00" >&3
		head -c 5 <&3 | od -An -tx1' "$HOST" "$1" 2>/dev/null) || return 1
	reply=${reply//[[:space:]]/}
	[[ $reply == 8400464c06 ]]
}

cassandra_write_config() {
	mkdir -p "$CASSANDRA_DATA"/{data,commitlog,saved_caches,hints,cdc_raw}
	# Single node: one token, no bootstrap, no gossip settling; small thread pools for 2 cores.
	# The batch warning threshold is raised because the archive writes unlogged single-partition
	# batches of up to 24 KiB, which Cassandra's 5 KiB default would log every time.
	cat >"$CASSANDRA_YAML" <<YAML
# Written by deploy/local/stack.sh; edits are overwritten on the next 'up'.
cluster_name: flightline-local
num_tokens: 1
initial_token: 0
auto_bootstrap: false
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$HOST:$CASSANDRA_STORAGE_PORT"
listen_address: $HOST
storage_port: $CASSANDRA_STORAGE_PORT
rpc_address: $HOST
native_transport_port: $CASSANDRA_PORT
start_native_transport: true
data_file_directories: [$CASSANDRA_DATA/data]
commitlog_directory: $CASSANDRA_DATA/commitlog
saved_caches_directory: $CASSANDRA_DATA/saved_caches
hints_directory: $CASSANDRA_DATA/hints
cdc_raw_directory: $CASSANDRA_DATA/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
concurrent_reads: 8
concurrent_writes: 16
concurrent_compactors: 1
compaction_throughput: 64MiB/s
batch_size_warn_threshold: 32KiB
# Trie memtables off the heap: fewer GC pauses under the archive's write load on a 1 GiB heap.
memtable:
  configurations:
    default:
      class_name: TrieMemtable
memtable_allocation_type: offheap_objects
memtable_offheap_space: 512MiB
auto_snapshot: false
dynamic_snitch: false
YAML
}

cassandra_start() {
	local pid port opts=()
	[[ $CASSANDRA_ENABLED == 1 ]] || return 0
	pid=$(cassandra_pid)
	if [[ -n $pid ]]; then
		return 0
	fi
	mkdir -p "$CASSANDRA_DIR" "$LOG_DIR"
	rm -f -- "$CASSANDRA_PIDFILE"
	for port in "$CASSANDRA_PORT" "$CASSANDRA_STORAGE_PORT"; do
		if tcp_open "$port"; then
			die "cassandra: port $HOST:$port is already in use by $(port_holder "$port"), which is not the node of $STATE_DIR. Stop it and re-run (or FLIGHTLINE_STACK_CASSANDRA=0 to run without the archive node)."
		fi
	done
	cassandra_libs
	cassandra_write_config
	mapfile -t opts < <(grep -v -e '^#' -e '^[[:space:]]*$' "$SCRIPT_DIR/cassandra/jvm17.options")
	say "cassandra ... starting (log: $CASSANDRA_LOG)"
	printf '\n===== %s stack.sh: starting cassandra =====\n' "$(date -Is)" >>"$CASSANDRA_LOG"
	# Heap 1 GiB (fixed, as Cassandra wants), G1. No JMX port (nothing here uses nodetool).
	# setsid and the closed lock fd: see kafka_start.
	(
		cd "$CASSANDRA_DIR"
		exec setsid java -server -Xms1G -Xmx1G -Xss256k \
			-XX:+UseG1GC -XX:MaxGCPauseMillis=300 -XX:+ExitOnOutOfMemoryError \
			-XX:ErrorFile="$LOG_DIR/cassandra-hs_err_%p.log" -Djava.awt.headless=true \
			-Djava.net.preferIPv4Stack=true "${opts[@]}" \
			-javaagent:"$(compgen -G "$CASSANDRA_LIBS/jamm-*.jar" | head -n1)" \
			-Dcassandra.config=file://"$CASSANDRA_YAML" \
			-Dlogback.configurationFile="$SCRIPT_DIR/cassandra/logback.xml" \
			-Dcassandra.storagedir="$CASSANDRA_DATA" \
			-Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=0 \
			-Dcassandra-foreground=yes \
			-cp "$CASSANDRA_LIBS/*" org.apache.cassandra.service.CassandraDaemon
	) >>"$CASSANDRA_LOG" 2>&1 9>&- </dev/null &
	echo $! >"$CASSANDRA_PIDFILE"
}

cassandra_wait() {
	local deadline=$((SECONDS + STACK_TIMEOUT))
	[[ $CASSANDRA_ENABLED == 1 ]] || return 0
	until cassandra_probe "$CASSANDRA_PORT"; do
		[[ -n $(cassandra_pid) ]] || fail_service cassandra "$CASSANDRA_LOG" "the node process exited"
		((SECONDS < deadline)) ||
			fail_service cassandra "$CASSANDRA_LOG" "no CQL answer on $HOST:$CASSANDRA_PORT within ${STACK_TIMEOUT}s (STACK_TIMEOUT)"
		sleep 0.5
	done
	say "cassandra ... up ($HOST:$CASSANDRA_PORT)"
}

cassandra_down() {
	local pid
	pid=$(cassandra_pid)
	if [[ -z $pid ]]; then
		say "cassandra ... not running"
	else
		say "cassandra ... stopping (pid $pid)"
		stop_pid cassandra "$pid" 60
	fi
	rm -f -- "$CASSANDRA_PIDFILE"
}

# ---------------------------------------------------------------------------------------------
# kafka-cluster: three KRaft nodes on other ports, for the replication tests
# (tests/kafka_cluster.rs). Each node is a combined broker+controller; the three form a static
# 3-voter quorum. Same jars as the single node; nothing here touches the single node.

CLUSTER_NODES=(1 2 3)
CLUSTER_DIR=$STATE_DIR/kafka-cluster
CLUSTER_ID_FILE=$CLUSTER_DIR/cluster.id
CLUSTER_TOOLS_LOG=$LOG_DIR/kafka-cluster-tools.log
# Node N: broker on CLUSTER_BROKER_BASE+N, controller on CLUSTER_CONTROLLER_BASE+N.
CLUSTER_BROKER_BASE=19091
CLUSTER_CONTROLLER_BASE=19191
CLUSTER_BOOTSTRAP=$HOST:$((CLUSTER_BROKER_BASE + 1)),$HOST:$((CLUSTER_BROKER_BASE + 2)),$HOST:$((CLUSTER_BROKER_BASE + 3))
CLUSTER_VOTERS=1@$HOST:$((CLUSTER_CONTROLLER_BASE + 1)),2@$HOST:$((CLUSTER_CONTROLLER_BASE + 2)),3@$HOST:$((CLUSTER_CONTROLLER_BASE + 3))

node_dir() { echo "$CLUSTER_DIR/$1"; }
node_props() { echo "$CLUSTER_DIR/$1/server.properties"; }
node_pidfile() { echo "$CLUSTER_DIR/$1/kafka.pid"; }
node_log() { echo "$LOG_DIR/kafka-cluster-$1.log"; }
node_port() { echo $((CLUSTER_BROKER_BASE + $1)); }
node_controller_port() { echo $((CLUSTER_CONTROLLER_BASE + $1)); }

# need_node N: N is 1, 2 or 3.
need_node() {
	[[ ${1:-} =~ ^[1-3]$ ]] || die "expected a node number 1, 2 or 3, not '${1:-}'"
}

# Serialises cluster commands with a lock of their own, so a cluster-start waiting for the ISR
# never holds up the single node's `up`/`down` (and the other way round).
take_cluster_lock() {
	mkdir -p "$CLUSTER_DIR"
	exec 9>"$CLUSTER_DIR/.lock"
	if ! flock -n 9; then
		say "waiting for another stack.sh cluster command in $CLUSTER_DIR to finish ..."
		flock -w $((STACK_TIMEOUT * 3)) 9 || die "another stack.sh still holds $CLUSTER_DIR/.lock"
	fi
}

# cluster_libs: the single node's jars; fetched (under the single node's lock) only if missing.
cluster_libs() {
	local want
	want=$(sha256sum <"$KAFKA_POM" | cut -d' ' -f1)
	[[ -f $KAFKA_LIBS/.complete && $(<"$KAFKA_LIBS/.complete") == "$want" ]] && return 0
	(
		take_lock
		kafka_libs
	)
}

# is_node N PID: that process is node N of this state dir's cluster (same reasoning as
# is_our_kafka: the command line, not the pid file, decides).
is_node() {
	pid_alive "${2:-}" && [[ $(cmdline_of "$2") == *" kafka.Kafka $(node_props "$1")"* ]]
}

# node_pid N: pid of node N, or nothing.
node_pid() {
	local n=$1 pid d comm
	pid=$(read_pidfile "$(node_pidfile "$n")")
	if is_node "$n" "$pid"; then
		echo "$pid"
		return 0
	fi
	for d in /proc/[0-9]*; do
		comm=
		read -r comm 2>/dev/null <"$d/comm" || continue
		[[ $comm == java ]] || continue
		pid=${d#/proc/}
		if is_node "$n" "$pid"; then
			[[ -d $(node_dir "$n") ]] && echo "$pid" >"$(node_pidfile "$n")"
			echo "$pid"
			return 0
		fi
	done
	return 0
}

node_write_config() {
	local n=$1
	cat >"$(node_props "$n")" <<EOP
# Generated by deploy/local/stack.sh at every start of this node: edit the script, not this.
# Node $n of the local 3-node cluster: a combined broker and KRaft controller.
process.roles=broker,controller
node.id=$n
listeners=PLAINTEXT://$HOST:$(node_port "$n"),CONTROLLER://$HOST:$(node_controller_port "$n")
advertised.listeners=PLAINTEXT://$HOST:$(node_port "$n")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# A static quorum of the three controllers (the storage is formatted without --standalone or
# --initial-controllers); any two of them elect the active controller.
controller.quorum.voters=$CLUSTER_VOTERS
log.dirs=$(node_dir "$n")/data

# Production's durability: three replicas, an acks=all write needs two of them in sync, and a
# replica that is not in sync never becomes leader (it could lack acknowledged writes).
num.partitions=6
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2

auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
EOP
}

# cluster_format: formats the nodes whose log dir is not formatted yet, all with one cluster id
# (kept in CLUSTER_ID_FILE, or taken from a node formatted earlier).
cluster_format() {
	local n id='' meta formatted=0
	for n in "${CLUSTER_NODES[@]}"; do
		[[ -f $(node_dir "$n")/data/meta.properties ]] && formatted=$((formatted + 1))
	done
	((formatted < ${#CLUSTER_NODES[@]})) || return 0
	mkdir -p "$CLUSTER_DIR" "$LOG_DIR"
	[[ -s $CLUSTER_ID_FILE ]] && id=$(<"$CLUSTER_ID_FILE")
	if [[ -z $id ]]; then
		for n in "${CLUSTER_NODES[@]}"; do
			meta=$(node_dir "$n")/data/meta.properties
			[[ -f $meta ]] && id=$(sed -n 's/^cluster\.id=//p' "$meta") && [[ -n $id ]] && break
		done
	fi
	if [[ -z $id ]]; then
		id=$(kafka_tool 120 kafka.tools.StorageTool random-uuid 2>>"$CLUSTER_TOOLS_LOG") ||
			fail_service kafka-cluster "$CLUSTER_TOOLS_LOG" "StorageTool random-uuid failed"
	fi
	echo "$id" >"$CLUSTER_ID_FILE"
	for n in "${CLUSTER_NODES[@]}"; do
		[[ -f $(node_dir "$n")/data/meta.properties ]] && continue
		say "kafka-cluster ... formatting node $n's storage (cluster id $id; first run only)"
		mkdir -p "$(node_dir "$n")/data"
		node_write_config "$n"
		kafka_tool 120 kafka.tools.StorageTool format --ignore-formatted \
			--cluster-id "$id" --config "$(node_props "$n")" >>"$CLUSTER_TOOLS_LOG" 2>&1 ||
			fail_service "kafka-cluster node $n" "$CLUSTER_TOOLS_LOG" "StorageTool format failed"
	done
}

# node_start N: starts node N in the background if it is not running; node_wait waits.
node_start() {
	local n=$1 port log
	[[ -n $(node_pid "$n") ]] && return 0
	mkdir -p "$(node_dir "$n")" "$LOG_DIR"
	rm -f -- "$(node_pidfile "$n")"
	for port in "$(node_port "$n")" "$(node_controller_port "$n")"; do
		if tcp_open "$port"; then
			die "kafka-cluster node $n: port $HOST:$port is already in use by $(port_holder "$port"), which is not node $n of $STATE_DIR. Stop it and re-run."
		fi
	done
	cluster_libs
	cluster_format
	node_write_config "$n"
	log=$(node_log "$n")
	say "kafka-cluster ... starting node $n on $HOST:$(node_port "$n") (log: $log)"
	printf '\n===== %s stack.sh: starting kafka-cluster node %s =====\n' "$(date -Is)" "$n" >>"$log"
	# As kafka_start, with at most 512 MiB of heap: three of these share the machine.
	(
		cd "$(node_dir "$n")"
		exec setsid java -server -Xms128m -Xmx512m \
			-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
			-XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
			-XX:ErrorFile="$LOG_DIR/kafka-cluster-$n-hs_err_%p.log" -Djava.awt.headless=true \
			-Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.xml" \
			-Dflightline.kafka.log="$log" \
			-cp "$KAFKA_LIBS/*" kafka.Kafka "$(node_props "$n")"
	) >>"$log" 2>&1 9>&- </dev/null &
	echo $! >"$(node_pidfile "$n")"
}

# node_wait N DEADLINE: until node N answers the Kafka protocol; fails fast if its JVM died.
node_wait() {
	local n=$1 deadline=$2
	until kafka_probe_at "$(node_port "$n")"; do
		[[ -n $(node_pid "$n") ]] || fail_service "kafka-cluster node $n" "$(node_log "$n")" "the node's process exited"
		((SECONDS < deadline)) ||
			fail_service "kafka-cluster node $n" "$(node_log "$n")" "no answer on $HOST:$(node_port "$n") within ${STACK_TIMEOUT}s (STACK_TIMEOUT)"
		sleep 0.5
	done
}

# cluster_not_in_sync SECONDS NODE...: prints what still keeps the cluster from being whole:
# each NODE that is not an unfenced broker (yet), and every partition of any topic whose ISR is
# smaller than its replica set. Prints nothing once all is in sync; fails if the admin tools
# cannot reach the cluster within SECONDS.
cluster_not_in_sync() {
	local secs=$1 endpoints under n fenced=
	shift
	endpoints=$(kafka_tool "$secs" org.apache.kafka.tools.ClusterTool list-endpoints \
		--include-fenced-brokers --bootstrap-server "$CLUSTER_BOOTSTRAP" 2>>"$CLUSTER_TOOLS_LOG") || return 1
	for n in "$@"; do
		if ! awk -v n="$n" '$1 == n && $5 == "unfenced" && $6 == "broker" { found = 1 } END { exit !found }' \
			<<<"$endpoints"; then
			echo "node $n is not an unfenced broker (yet)"
			fenced=1
		fi
	done
	# A fenced node is in no ISR yet: spare the second JVM (CPU is short while nodes start).
	[[ -z $fenced ]] || return 0
	under=$(kafka_tool "$secs" org.apache.kafka.tools.TopicCommand --bootstrap-server "$CLUSTER_BOOTSTRAP" \
		--describe --under-replicated-partitions 2>>"$CLUSTER_TOOLS_LOG") || return 1
	[[ -z $under ]] || printf '%s\n' "$under"
}

# cluster_wait_in_sync NODE...: until cluster_not_in_sync prints nothing, or STACK_TIMEOUT.
cluster_wait_in_sync() {
	local deadline=$((SECONDS + STACK_TIMEOUT)) lacking left
	while :; do
		left=$((deadline - SECONDS))
		if lacking=$(cluster_not_in_sync $((left > 10 ? left : 10)) "$@"); then
			[[ -z $lacking ]] && return 0
		else
			lacking="the admin tools could not reach $CLUSTER_BOOTSTRAP (see $CLUSTER_TOOLS_LOG)"
		fi
		if ((SECONDS >= deadline)); then
			printf 'stack: ERROR: kafka-cluster not in sync within %ss (STACK_TIMEOUT); still:\n' "$STACK_TIMEOUT" >&2
			head -n 20 <<<"$lacking" | sed 's/^/    /' >&2
			exit 1
		fi
		sleep 1
	done
}

# node_stop N [SIGNAL]: TERM (controlled shutdown, then SIGKILL after 60 s) or KILL (at once).
node_stop() {
	local n=$1 signal=${2:-TERM} pid i
	pid=$(node_pid "$n")
	if [[ -z $pid ]]; then
		say "kafka-cluster ... node $n not running"
	elif [[ $signal == KILL ]]; then
		say "kafka-cluster ... kill -9 node $n (pid $pid)"
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			pid_alive "$pid" || break
			sleep 0.1
		done
		pid_alive "$pid" && die "kafka-cluster node $n (pid $pid) survived SIGKILL"
	else
		say "kafka-cluster ... stopping node $n (pid $pid; controlled shutdown)"
		stop_pid "kafka-cluster node $n" "$pid" 60
	fi
	rm -f -- "$(node_pidfile "$n")"
}

cmd_cluster_up() {
	local t0=$SECONDS deadline=$((SECONDS + STACK_TIMEOUT)) n
	for n in "${CLUSTER_NODES[@]}"; do
		node_start "$n"
	done
	for n in "${CLUSTER_NODES[@]}"; do
		node_wait "$n" "$deadline"
	done
	say "kafka-cluster ... nodes answer; waiting until all three are unfenced brokers and every partition is in sync"
	cluster_wait_in_sync "${CLUSTER_NODES[@]}"
	cluster_elect_preferred
	say "kafka-cluster ready in $((SECONDS - t0))s: KAFKA_BROKERS=$CLUSTER_BOOTSTRAP"
}

# cluster_elect_preferred: moves every partition's leadership back to its preferred replica (the
# first of its replica list), as auto.leader.rebalance.enable would within 5 minutes. After a
# restart the node leads its share of the partitions again, so the next fault hits leaders too.
cluster_elect_preferred() {
	local out
	if ! out=$(kafka_tool 60 org.apache.kafka.tools.LeaderElectionCommand --bootstrap-server "$CLUSTER_BOOTSTRAP" \
		--election-type PREFERRED --all-topic-partitions 2>&1); then
		warn "kafka-cluster: preferred leader election failed (leaders stay where they are): ${out:0:400}"
	fi
	printf '%s\n' "$out" >>"$CLUSTER_TOOLS_LOG"
}

# cmd_cluster_down: SIGTERM to all nodes at once: each broker's controlled shutdown needs an
# active controller, so the nodes must go while the quorum (two of three) is still there. A node
# left alone once the others have gone cannot complete it and would wait minutes: 5 s after the
# cluster lost its quorum it gets SIGKILL (its logs are recovered at the next start). SIGKILL
# for anything left 60 s after SIGTERM.
cmd_cluster_down() {
	local n pid i alive lost_at=
	local -a pids=()
	for n in "${CLUSTER_NODES[@]}"; do
		pid=$(node_pid "$n")
		if [[ -z $pid ]]; then
			say "kafka-cluster ... node $n not running"
			continue
		fi
		say "kafka-cluster ... stopping node $n (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		pids+=("$pid")
	done
	for ((i = 0; i < 600; i++)); do
		alive=0
		for pid in "${pids[@]}"; do
			pid_alive "$pid" && alive=$((alive + 1))
		done
		((alive > 0)) || break
		if ((alive == 1)); then
			lost_at=${lost_at:-$i}
			if ((i - lost_at >= 50)); then
				for pid in "${pids[@]}"; do
					if pid_alive "$pid"; then
						say "kafka-cluster ... pid $pid is the last node: no quorum left for its controlled shutdown; SIGKILL"
						kill -KILL "$pid" 2>/dev/null || true
					fi
				done
			fi
		fi
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		if pid_alive "$pid"; then
			warn "kafka-cluster node (pid $pid) still running 60s after SIGTERM; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 100; i++)); do
				pid_alive "$pid" || break
				sleep 0.1
			done
		fi
	done
	for n in "${CLUSTER_NODES[@]}"; do
		rm -f -- "$(node_pidfile "$n")"
	done
}

cmd_cluster_start() {
	local n=$1 t0=$SECONDS
	node_start "$n"
	node_wait "$n" $((SECONDS + STACK_TIMEOUT))
	say "kafka-cluster ... node $n answers; waiting until it is an unfenced broker and back in every ISR"
	cluster_wait_in_sync "$n"
	cluster_elect_preferred
	say "kafka-cluster ... node $n in sync after $((SECONDS - t0))s (preferred leaders elected)"
}

cmd_cluster_status() {
	local rc=0 n pid port
	for n in "${CLUSTER_NODES[@]}"; do
		port=$(node_port "$n")
		pid=$(node_pid "$n")
		if kafka_probe_at "$port"; then
			status_line "kafka-$n" 0 "$HOST:$port" "${pid:+pid $pid}"
		else
			status_line "kafka-$n" 1 "$HOST:$port" "${pid:+pid $pid, starting or stuck}"
			rc=1
		fi
	done
	return "$rc"
}

# ---------------------------------------------------------------------------------------------
# jaeger: Jaeger v2 all-in-one (in-memory), built once from its Go module into the state dir

JAEGER_VERSION=v1.76.0
JAEGER_DIR=$STATE_DIR/jaeger
JAEGER_BIN=$JAEGER_DIR/jaeger-$JAEGER_VERSION
JAEGER_PIDFILE=$JAEGER_DIR/jaeger.pid
JAEGER_LOG=$LOG_DIR/jaeger.log
JAEGER_BUILD_LOG=$LOG_DIR/jaeger-build.log
JAEGER_MODULE=$SCRIPT_DIR/jaeger
JAEGER_QUERY_PORT=16686
JAEGER_OTLP_HTTP_PORT=4318

jaeger_pid() {
	local pid
	pid=$(read_pidfile "$JAEGER_PIDFILE")
	[[ -n $pid ]] && pid_alive "$pid" && [[ $(cmdline_of "$pid") == "$JAEGER_BIN "* ]] && echo "$pid"
	return 0
}

jaeger_probe() { curl -fsS -o /dev/null --max-time 2 "http://$HOST:$JAEGER_QUERY_PORT/api/services" 2>/dev/null; }

# The first build on a machine fetches the module graph from the Go module proxy and compiles
# it (minutes); later `up`s reuse the binary. deploy/local/jaeger/go.mod pins the version.
jaeger_build() {
	[[ -x $JAEGER_BIN ]] && return 0
	command -v go >/dev/null || {
		warn "jaeger: the Go toolchain is not installed (deploy/local/setup.sh)"
		return 1
	}
	say "jaeger: building $JAEGER_VERSION with $(go version | cut -d' ' -f3) (first run only, several minutes) ..."
	mkdir -p "$JAEGER_DIR" "$LOG_DIR"
	local t0=$SECONDS
	if ! (cd "$JAEGER_MODULE" && go build -trimpath -ldflags='-s -w' -o "$JAEGER_BIN.tmp" \
		github.com/jaegertracing/jaeger/cmd/jaeger) >"$JAEGER_BUILD_LOG" 2>&1; then
		warn "jaeger: build failed; last lines of $JAEGER_BUILD_LOG:"
		tail -n 20 "$JAEGER_BUILD_LOG" | sed 's/^/    /' >&2
		return 1
	fi
	mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
	say "jaeger: built in $((SECONDS - t0))s"
}

jaeger_up() {
	jaeger_probe && return 0
	jaeger_build || return 1
	if tcp_open "$JAEGER_QUERY_PORT" || tcp_open "$JAEGER_OTLP_HTTP_PORT"; then
		warn "jaeger: a port it needs is taken ($(port_holder "$JAEGER_QUERY_PORT"))"
		return 1
	fi
	mkdir -p "$JAEGER_DIR" "$LOG_DIR"
	setsid "$JAEGER_BIN" --config "$JAEGER_MODULE/config.yaml" >>"$JAEGER_LOG" 2>&1 9>&- </dev/null &
	echo $! >"$JAEGER_PIDFILE"
	local i
	for ((i = 0; i < STACK_TIMEOUT * 2; i++)); do
		if jaeger_probe; then
			say "jaeger: up (OTLP http://$HOST:$JAEGER_OTLP_HTTP_PORT, UI and API http://$HOST:$JAEGER_QUERY_PORT)"
			return 0
		fi
		[[ -n $(jaeger_pid) ]] || break
		sleep 0.5
	done
	warn "jaeger: did not come up; last lines of $JAEGER_LOG:"
	tail -n 20 "$JAEGER_LOG" | sed 's/^/    /' >&2
	return 1
}

jaeger_down() {
	local pid
	pid=$(jaeger_pid)
	[[ -n $pid ]] && stop_pid jaeger "$pid" 10
	rm -f "$JAEGER_PIDFILE"
}

# ---------------------------------------------------------------------------------------------
# commands

cmd_up() {
	local t0=$SECONDS
	mkdir -p "$STATE_DIR" "$LOG_DIR"
	kafka_start
	cassandra_start
	pg_up
	redis_up
	# Traces are optional for everything but tests/tracing_e2e.rs, which names the failure.
	jaeger_up || warn "jaeger: not running; traces cannot be looked at (deploy/local/stack.sh jaeger-up)"
	kafka_wait
	kafka_topics
	cassandra_wait
	say "ready in $((SECONDS - t0))s: KAFKA_BROKERS=$HOST:$KAFKA_PORT DATABASE_URL=postgres://flightline:flightline@$HOST:$PG_PORT/flightline REDIS_URL=redis://$HOST:$REDIS_PORT"
}

cmd_down() {
	kafka_down
	pg_down
	redis_down
	cassandra_down
	jaeger_down
}

cmd_topics() {
	kafka_probe || die "kafka is not answering on $HOST:$KAFKA_PORT; run 'deploy/local/stack.sh up'"
	kafka_topics
}

cmd_retention() {
	kafka_probe || die "kafka is not answering on $HOST:$KAFKA_PORT; run 'deploy/local/stack.sh up'"
	kafka_retention
}

# status_line NAME UP(0/1) ADDRESS NOTE
status_line() {
	local state=down
	[[ $2 == 0 ]] && state=up
	printf '%-9s %-5s %s%s\n' "$1" "$state" "$3" "${4:+  ($4)}"
}

cmd_status() {
	local rc=0 pid note
	if kafka_probe; then
		pid=$(kafka_pid)
		note=${pid:+pid $pid}
		status_line kafka 0 "$HOST:$KAFKA_PORT" "${note:-not started from $STATE_DIR}"
	else
		status_line kafka 1 "$HOST:$KAFKA_PORT" ""
		rc=1
	fi
	pg_paths
	if pg_ready; then
		pid=$(pg_pid)
		note=${pid:+pid $pid, data $PGDATA}
		status_line postgres 0 "$HOST:$PG_PORT" "${note:-not the cluster of this stack}"
	else
		status_line postgres 1 "$HOST:$PG_PORT" ""
		rc=1
	fi
	if redis_ping; then
		note=
		redis_ours && note="pid $(redis_pid)"
		status_line redis 0 "$HOST:$REDIS_PORT" "${note:-not started from $STATE_DIR}"
	else
		status_line redis 1 "$HOST:$REDIS_PORT" ""
		rc=1
	fi
	# Optional: not counted in the exit code.
	if jaeger_probe; then
		pid=$(jaeger_pid)
		status_line jaeger 0 "$HOST:$JAEGER_QUERY_PORT" "${pid:+pid $pid, }OTLP $HOST:$JAEGER_OTLP_HTTP_PORT"
	else
		status_line jaeger 1 "$HOST:$JAEGER_QUERY_PORT" "optional"
	fi
	if cassandra_probe "$CASSANDRA_PORT"; then
		pid=$(cassandra_pid)
		note=${pid:+pid $pid}
		status_line cassandra 0 "$HOST:$CASSANDRA_PORT" "${note:-not started from $STATE_DIR}"
	elif [[ $CASSANDRA_ENABLED == 1 ]]; then
		status_line cassandra 1 "$HOST:$CASSANDRA_PORT" ""
		rc=1
	else
		status_line cassandra 1 "$HOST:$CASSANDRA_PORT" "left out: FLIGHTLINE_STACK_CASSANDRA=0"
	fi
	return "$rc"
}

main() {
	[[ $STACK_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "STACK_TIMEOUT must be a positive number of seconds, not '$STACK_TIMEOUT'"
	[[ $PARTITIONS =~ ^[1-9][0-9]*$ ]] || die "FLIGHTLINE_PARTITIONS must be a positive integer, not '$PARTITIONS'"
	case ${1:-} in
	up)
		need_root up
		take_lock
		cmd_up
		;;
	down)
		need_root down
		take_lock
		cmd_down
		;;
	status) cmd_status ;;
	topics)
		take_lock
		cmd_topics
		;;
	retention)
		take_lock
		cmd_retention
		;;
	jaeger-up)
		take_lock
		jaeger_up || die "jaeger did not come up"
		;;
	jaeger-down)
		take_lock
		jaeger_down
		;;
	stop-cassandra)
		take_lock
		cassandra_down
		;;
	start-cassandra)
		take_lock
		CASSANDRA_ENABLED=1
		cassandra_start
		cassandra_wait
		;;
	stop-kafka)
		take_lock
		kafka_down
		;;
	start-kafka)
		take_lock
		kafka_start
		kafka_wait
		;;
	cluster-up)
		take_cluster_lock
		cmd_cluster_up
		;;
	cluster-down)
		take_cluster_lock
		cmd_cluster_down
		;;
	cluster-status) cmd_cluster_status ;;
	cluster-kill | cluster-stop | cluster-start)
		need_node "${2:-}"
		take_cluster_lock
		case $1 in
		cluster-kill) node_stop "$2" KILL ;;
		cluster-stop) node_stop "$2" TERM ;;
		cluster-start) cmd_cluster_start "$2" ;;
		esac
		;;
	-h | --help | help) usage ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
