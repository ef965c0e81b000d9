#!/usr/bin/env python3
"""Flightline's fault harness (issue 9, item 4). See tests/chaos/README.md.

Drives the real `flightline` binary with every role as a separate process, on its own database
and topic prefix per deployment, offers a fixed-rate load of recorded real flights (one
`flightline send` per drone), injects faults at seeded random moments, and checks afterwards:

  (a) every acknowledged packet is in telemetry_raw exactly once;
  (b) flights and metrics equal those of a fault-free run of the same input (run first, in the
      same invocation);
  (c) the live key of every drone holds its newest packet while it is fresh.

Broker, PostgreSQL and Redis faults never touch the shared stack: those scenarios run on a
private Kafka broker, PostgreSQL cluster or redis-server on other ports.

    python3 tests/chaos/run.py --quick            # what `make test` runs (< 5 minutes)
    python3 tests/chaos/run.py                    # full mode (`make chaos`)
    python3 tests/chaos/run.py --scenario kill-role --trials 3 --seed 42

Python 3 stdlib only, plus the psql CLI, java (the Kafka jars of deploy/local/stack.sh) and the
Debian postgresql/redis-server packages for the private instances.
"""

import argparse
import atexit
import collections
import concurrent.futures
import datetime as dt
import gzip
import json
import math
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wire  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FLIGHTS_DIR = os.path.abspath(os.path.join(ROOT, "..", "shared", "data", "flights"))
STACK_DIR = os.environ.get("FLIGHTLINE_STACK_DIR", os.path.join(ROOT, ".stack"))
KAFKA_LIBS = os.path.join(STACK_DIR, "kafka", "libs")
KAFKA_LOG4J = os.path.join(ROOT, "deploy", "local", "kafka", "log4j2.xml")
KAFKA_TOOLS_LOG4J = os.path.join(ROOT, "deploy", "local", "kafka", "tools-log4j2.xml")
ADMIN_URL = os.environ.get("DATABASE_URL", "postgres://flightline:flightline@127.0.0.1:5432/flightline")
SHARED_KAFKA = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
SHARED_REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
FLIGHT_NS = uuid.UUID("6f1c5a52-7a1e-4c63-9d7c-2b0e5d1f8a90")  # CONTRACT.md §3
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
TOPICS = ("telemetry.v1", "flights.v1", "telemetry.dlq")
GROUPS = {  # group -> (consumer group name suffix, topic it reads)
    "store": ("flightline-store", "telemetry.v1"),
    "live": ("flightline-live", "telemetry.v1"),
    "sessionizer": ("flightline-sessionizer", "telemetry.v1"),
    "analytics": ("flightline-analytics", "flights.v1"),
}
ROLES = ("ingest", "query", "store", "live", "sessionizer", "analytics")
LIVE_TTL_S = 30
# Inputs: short recorded flights for the process-kill scenarios (each + an idle tail, see below).
FAST_FILES = ("ap_spark404_copter", "px4_auterion_esc_status", "bf_fcblackbox_log00037_50hz", "px4_robologs_test")
# Long recorded flights, cut into gap-free segments, for the outage scenarios.
LONG_FILES = ("dji_mini2_2021-09-05_19-23", "dji_air2s_2021-09-05_19-48")
SCENARIOS = ("kill-role", "two-instances", "pg-stop", "pg-stop-processors", "redis-stop", "kafka-kill", "kafka-stop")
# Not in "all": half an hour under a fleet at --fleet-pps with a fault every few minutes (`make soak`).
EXTRA_SCENARIOS = ("soak",)

_print_lock = threading.Lock()
T_START = time.monotonic()


def say(msg):
    with _print_lock:
        print(f"chaos [{time.monotonic() - T_START:6.1f}s] {msg}", flush=True)


class HarnessError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# small helpers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ts_us(text):
    d = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (d - EPOCH) // dt.timedelta(microseconds=1)


def fmt_ms(us):
    d = EPOCH + dt.timedelta(microseconds=us)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def fmt_flight_ts(us):
    d = EPOCH + dt.timedelta(microseconds=us)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def flight_id(drone_id, start_us):
    return str(uuid.uuid5(FLIGHT_NS, f"{drone_id}/{fmt_flight_ts(start_us)}"))


def http_get(url, timeout=2.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, ""
    except (OSError, ValueError):
        return None, ""


def psql(url, sql, timeout=30):
    """Rows of a query as lists of strings (fields separated by 0x1f). Raises HarnessError."""
    env = dict(os.environ, PGCONNECT_TIMEOUT="3")
    try:
        out = subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-F", "\x1f", "-c", sql],
                             capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"psql timed out: {sql[:80]}")
    if out.returncode != 0:
        raise HarnessError(f"psql failed: {out.stderr.strip()[:300]}")
    return [line.split("\x1f") for line in out.stdout.splitlines() if line]


def wait_until(pred, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = pred()
        except Exception:  # noqa: BLE001 - the service may be down; keep polling
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def stop_process(proc, timeout=15):
    """SIGTERM, then SIGKILL after `timeout` s. Only ever for processes this harness started."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


class Cleanup:
    """Everything this run started or created, undone on exit (also on Ctrl-C or a crash)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items = []  # (name, fn), undone in reverse order
        self.done = False

    def push(self, name, fn):
        with self.lock:
            self.items.append((name, fn))
        return fn

    def remove(self, fn):
        with self.lock:
            self.items = [(n, f) for n, f in self.items if f is not fn]

    def run(self):
        with self.lock:
            if self.done:
                return
            self.done = True
            items = list(reversed(self.items))
            self.items = []
        for name, fn in items:
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                say(f"cleanup of {name} failed: {e}")


CLEANUP = Cleanup()


# ---------------------------------------------------------------------------------------------
# inputs: recorded real flights as packet files


class Input:
    """One drone's packets: a recorded flight (or a gap-free segment of one) followed by an idle
    tail of 10.5 s at throttle 0, so every flight closes on event time (the flight rule's W)
    instead of 10 s of wall-clock silence, in the fault-free run and in every trial alike."""

    def __init__(self, name, lines, hz, workdir, tail=True, pps=None, batch=None, copies=1):
        self.name = name
        self.hz = hz
        # The fleet of issue 9 item 6: its own rate and batch size, and `copies` drones each.
        self.pps, self.batch, self.copies = pps, batch, copies
        last = json.loads(lines[-1])
        last_ts = ts_us(last["ts"])
        step = round(1_000_000 / hz)
        tail_lines = []
        for i in range(1, math.ceil(10.5 * hz) + 1 if tail else 0):
            p = dict(last)
            p["ts"] = fmt_ms(last_ts + i * step)
            p["throttle"] = 0.0
            tail_lines.append(json.dumps(p, separators=(",", ":")))
        self.lines = list(lines) + tail_lines
        self.ts = [ts_us(json.loads(line)["ts"]) for line in self.lines]
        assert all(b > a for a, b in zip(self.ts, self.ts[1:])), f"{name}: ts not increasing"
        self.count = len(self.lines)
        self.sum_us = sum(self.ts)
        self.first_us, self.last_us = self.ts[0], self.ts[-1]
        self.path = os.path.join(workdir, re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".jsonl")
        with open(self.path, "w") as f:
            f.write("\n".join(self.lines) + "\n")


def read_recorded(name):
    with gzip.open(os.path.join(FLIGHTS_DIR, name + ".jsonl.gz"), "rt") as f:
        lines = [line.strip() for line in f if line.strip()]
    with open(os.path.join(FLIGHTS_DIR, name + ".meta.json")) as f:
        hz = json.load(f)["hz"]
    return lines, hz


def gap_free_segments(lines, hz, count, n, max_gap_s=1.0):
    """The first `count` windows of `n` consecutive packets with no gap over max_gap_s (the
    recorded gaps of the DJI logs are 12-35 s; a gap over G splits a flight in every run)."""
    ts = [ts_us(json.loads(line)["ts"]) for line in lines]
    out, start = [], 0
    for i in range(1, len(ts) + 1):
        if i == len(ts) or ts[i] - ts[i - 1] > max_gap_s * 1e6:
            while i - start >= n and len(out) < count:
                out.append((start, lines[start:start + n]))
                start += n
            start = i
    return out


class Block:
    """A fleet drone's packets (issue 9, item 6): one recorded segment with its idle tail (an
    Input), repeated end to end. Repetition k is shifted by k periods (the block's span plus one
    sample interval), so ts keep increasing with no gap, each repetition's flight closes in its
    own idle tail, and its flights are those of the block shifted by k periods: the analytics
    work on ts differences, so the metrics are the same to the last digit."""

    def __init__(self, inp):
        self.hz = inp.hz
        self.packets = [json.loads(line) for line in inp.lines]
        self.ts = list(inp.ts)
        self.period = inp.last_us - inp.first_us + round(1_000_000 / inp.hz)
        assert self.period % 1000 == 0 and all(t % 1000 == 0 for t in self.ts), "block ts not in whole ms"

    def __len__(self):
        return len(self.packets)

    def lines(self, start, n):
        out = []
        for i in range(start, start + n):
            k, j = divmod(i, len(self.packets))
            p = dict(self.packets[j])
            p["ts"] = fmt_ms(self.ts[j] + k * self.period)
            out.append(json.dumps(p, separators=(",", ":")))
        return out


def build_inputs(workdir, outage_packets):
    fast = []
    for name in FAST_FILES:
        lines, hz = read_recorded(name)
        fast.append(Input(name, lines, hz, workdir))
    long = []
    for name in LONG_FILES:
        lines, hz = read_recorded(name)
        for start, seg in gap_free_segments(lines, hz, 2, outage_packets, max_gap_s=2.0):
            long.append(Input(f"{name}[{start}:{start + len(seg)}]", seg, hz, workdir))
    if len(long) < 4:
        raise HarnessError(f"the DJI logs have fewer than 4 gap-free segments of {outage_packets} packets")
    return fast, long


# ---------------------------------------------------------------------------------------------
# services: the shared stack, or private instances for the outage scenarios


class Endpoints:
    def __init__(self, admin_url=ADMIN_URL, kafka=SHARED_KAFKA, redis=SHARED_REDIS):
        self.admin_url, self.kafka, self.redis = admin_url, kafka, redis

    def db_url(self, name):
        return self.admin_url.rsplit("/", 1)[0] + "/" + name

    def replace(self, **kw):
        e = Endpoints(self.admin_url, self.kafka, self.redis)
        for k, v in kw.items():
            setattr(e, k, v)
        return e


def _as_postgres(argv):
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + argv
    return argv


class PrivatePostgres:
    """A throw-away cluster (Debian's postgresql binaries, as deploy/local/stack.sh uses) on
    another port, owned by the postgres OS user like the stack's, trust auth on loopback."""

    def __init__(self, workroot):
        cands = sorted((p for p in os.listdir("/usr/lib/postgresql") if os.path.exists(
            f"/usr/lib/postgresql/{p}/bin/initdb")), key=lambda v: [int(x) for x in v.split(".")])
        if not cands:
            raise HarnessError("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)")
        self.bin = f"/usr/lib/postgresql/{cands[-1]}/bin"
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="flchaos-pg-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.admin_url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        self.running = False
        CLEANUP.push("private postgres", self.destroy)

    def _run(self, argv, timeout=120):
        out = subprocess.run(_as_postgres(argv), capture_output=True, text=True, timeout=timeout, cwd="/")
        if out.returncode != 0:
            raise HarnessError(f"{argv[0]} failed: {out.stderr.strip()[-400:]}")

    def init(self):
        self._run([f"{self.bin}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                   "--locale=C.UTF-8"])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.dir}'\n"
                    "max_connections = 100\nshared_buffers = 64MB\nfsync = on\nsynchronous_commit = on\n")
        self.start()

    def start(self):
        self._run([f"{self.bin}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-s", "start"])
        self.running = True

    def stop(self, mode="fast"):
        self._run([f"{self.bin}/pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "-s", "stop"])
        self.running = False

    def destroy(self):
        if self.running or os.path.exists(os.path.join(self.data, "postmaster.pid")):
            try:
                self.stop("immediate")
            except Exception:  # noqa: BLE001
                pass
        if not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    def __init__(self, workroot):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="flchaos-redis-", dir=workroot)
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc = None
        CLEANUP.push("private redis", self.destroy)

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--protected-mode", "yes",
             "--save", "", "--appendonly", "no", "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if not wait_until(lambda: wire.Redis(self.url).ping(), 30, 0.1):
            raise HarnessError("private redis-server did not answer within 30 s")

    def stop(self):
        """Like a restart of the stack's redis: SHUTDOWN NOSAVE, its data (live keys, ingest
        order) is gone when it comes back."""
        try:
            wire.Redis(self.url).command("SHUTDOWN", "NOSAVE")
        except (OSError, wire.RedisError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def destroy(self):
        if self.proc and self.proc.poll() is None:
            self.stop()


class PrivateKafka:
    """A single-node KRaft broker+controller on other ports, on the jars deploy/local/stack.sh
    fetched into .stack/kafka/libs, with its own data dir: the shared broker is never touched."""

    def __init__(self, workroot):
        if not os.path.exists(os.path.join(KAFKA_LIBS, ".complete")):
            raise HarnessError(f"no Kafka jars in {KAFKA_LIBS}: run deploy/local/stack.sh up first")
        self.port, self.cport = free_port(), free_port()
        self.dir = tempfile.mkdtemp(prefix="flchaos-kafka-", dir=workroot)
        self.props = os.path.join(self.dir, "server.properties")
        self.log = os.path.join(self.dir, "kafka.log")
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc = None
        CLEANUP.push("private kafka", self.destroy)

    def _cluster_id(self):
        while True:
            raw = secrets.token_bytes(16)
            import base64
            cid = base64.urlsafe_b64encode(raw).decode().rstrip("=")
            if not cid.startswith("-"):
                return cid

    def init(self):
        with open(self.props, "w") as f:
            f.write(f"""process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.cport}
advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:{self.cport}
log.dirs={self.dir}/data
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
""")
        out = subprocess.run(
            ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
             f"-Dlog4j2.configurationFile={KAFKA_TOOLS_LOG4J}", "-cp", f"{KAFKA_LIBS}/*", "kafka.tools.StorageTool",
             "format", "--standalone", "--cluster-id", self._cluster_id(), "--config", self.props],
            capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise HarnessError(f"StorageTool format failed: {(out.stdout + out.stderr)[-400:]}")
        self.start()

    def start(self, timeout=180):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(
            ["java", "-server", "-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
             "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
             f"-Dlog4j2.configurationFile={KAFKA_LOG4J}", f"-Dflightline.kafka.log={self.log}",
             "-cp", f"{KAFKA_LIBS}/*", "kafka.Kafka", self.props],
            stdout=logf, stderr=logf, stdin=subprocess.DEVNULL, cwd=self.dir, start_new_session=True)
        logf.close()
        t0 = time.monotonic()
        k = wire.Kafka(self.bootstrap, timeout=3)
        if not wait_until(lambda: self.proc.poll() is None and k.ping(), timeout, 0.3):
            raise HarnessError(f"private Kafka broker did not answer within {timeout} s (log {self.log})")
        return time.monotonic() - t0

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def destroy(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            stop_process(self.proc, 30)


# ---------------------------------------------------------------------------------------------
# a deployment: every role a separate process, own database and topic prefix


class Deployment:
    def __init__(self, h, label, endpoints, partitions=3, instances=None, env=None, ingest_admin_url=None):
        self.h = h
        self.label = label
        self.id = f"{re.sub('[^a-z0-9]', '', label)}_{secrets.token_hex(4)}"
        self.endpoints = endpoints
        self.db = f"flchaos_{self.id}"
        self.db_url = endpoints.db_url(self.db)
        self.prefix = f"flchaos.{self.id}."
        self.partitions = partitions
        self.instances = dict(store=1, live=1, sessionizer=1, analytics=1)
        self.instances.update(instances or {})
        self.extra_env = env or {}
        self.ingest_addr = f"127.0.0.1:{free_port()}"
        self.query_addr = f"127.0.0.1:{free_port()}"
        self.logdir = os.path.join(h.workdir, "logs", self.id)
        os.makedirs(self.logdir, exist_ok=True)
        self.procs = {}
        self.lock = threading.Lock()
        self.drones = []  # ids, for the Redis keys to clean up
        self.scrape_stop = threading.Event()
        self.http_lives = {}  # ingest pid -> Counter(status -> count) of its /v1/telemetry answers
        self.samples = []  # (monotonic, Counter totals)
        self.expected_exits = set()  # pids this harness killed or stopped
        self.crashes = []  # (monotonic, role, idx, exit status, last log line): exits on their own
        self.log_paths = {}
        self._cleanup = CLEANUP.push(f"deployment {self.id}", self.teardown)
        self.db_created = self.topics_created = False
        # pg-stop-processors: ingest resolves API keys in a database of another server that holds
        # a copy of the drones, so only the processors see the outage.
        self.ingest_admin_url = ingest_admin_url
        self.ingest_db_url = Endpoints(ingest_admin_url).db_url(self.db) if ingest_admin_url else None
        self.ingest_db_created = False

    @property
    def ingest_url(self):
        return f"http://{self.ingest_addr}"

    def kafka(self):
        return wire.Kafka(self.endpoints.kafka)

    def topic(self, name):
        return self.prefix + name

    def group(self, g):
        return self.prefix + GROUPS[g][0]

    def base_env(self):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("FLIGHTLINE_"):
                del env[k]
        env.update(DATABASE_URL=self.db_url, KAFKA_BROKERS=self.endpoints.kafka, REDIS_URL=self.endpoints.redis,
                   FLIGHTLINE_TOPIC_PREFIX=self.prefix, FLIGHTLINE_HTTP_ADDR=self.ingest_addr,
                   FLIGHTLINE_SHUTDOWN_TIMEOUT_S="5", RUST_LOG=os.environ.get("CHAOS_RUST_LOG", "info"))
        env.update(self.extra_env)
        return env

    def setup(self):
        psql(self.endpoints.admin_url, f'CREATE DATABASE "{self.db}"')
        self.db_created = True
        k = self.kafka()
        self.topics_created = True
        # Retried: the shared broker may be restarting (tests/kafka_outage.rs restarts it).
        if not wait_until(lambda: k.create_topics([self.topic(t) for t in TOPICS], self.partitions) or True, 120, 1):
            raise HarnessError(f"cannot create topics {self.prefix}* on {self.endpoints.kafka}")
        parts = list(range(self.partitions))
        for t in TOPICS:
            if not wait_until(lambda: k.end_offsets(self.topic(t), parts), 60, 0.2):
                raise HarnessError(f"topic {self.topic(t)} has no leader after 60 s")
        urls = [self.db_url]
        if self.ingest_db_url:
            psql(self.ingest_admin_url, f'CREATE DATABASE "{self.db}"')
            self.ingest_db_created = True
            urls.append(self.ingest_db_url)
        for url in urls:
            out = subprocess.run([self.h.bin, "migrate"], env=dict(self.base_env(), DATABASE_URL=url),
                                 capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                raise HarnessError(f"flightline migrate failed: {out.stderr[-400:]}")

    def copy_drones(self, ids):
        """The drones rows, as they are, into ingest's database (pg-stop-processors)."""
        if not self.ingest_db_url:
            return
        inlist = ",".join(f"'{d}'" for d in ids)
        out = subprocess.run(["psql", self.db_url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c",
                              f"COPY (SELECT * FROM drones WHERE id IN ({inlist})) TO STDOUT WITH (FORMAT csv)"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise HarnessError(f"reading drones failed: {out.stderr[-300:]}")
        res = subprocess.run(["psql", self.ingest_db_url, "-Xq", "-v", "ON_ERROR_STOP=1", "-c",
                              "COPY drones FROM STDIN WITH (FORMAT csv)"], input=out.stdout,
                             capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise HarnessError(f"copying drones failed: {res.stderr[-300:]}")

    def argv(self, role):
        return [self.h.bin] + (["process", role] if role in GROUPS else [role])

    def start(self, role, idx=0):
        env = self.base_env()
        if role == "query":
            env["FLIGHTLINE_HTTP_ADDR"] = self.query_addr
        if role == "ingest" and self.ingest_db_url:
            env["DATABASE_URL"] = self.ingest_db_url
        path = os.path.join(self.logdir, f"{role}-{idx}.log")
        self.log_paths[(role, idx)] = path
        log = open(path, "a")
        log.write(f"\n===== chaos: start {role}-{idx} at {time.strftime('%H:%M:%S')} =====\n")
        log.flush()
        proc = subprocess.Popen(self.argv(role), env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        with self.lock:
            self.procs[(role, idx)] = proc
        return proc

    def kill9(self, role, idx=0):
        with self.lock:
            proc = self.procs[(role, idx)]
            self.expected_exits.add(proc.pid)
        proc.kill()  # SIGKILL to the pid this harness started
        proc.wait()

    def alive(self, role, idx=0):
        with self.lock:
            proc = self.procs.get((role, idx))
        return proc is not None and proc.poll() is None

    def ready_url(self, role):
        return f"http://{self.ingest_addr if role == 'ingest' else self.query_addr}/readyz"

    def start_all(self):
        for role in ("ingest", "query"):
            self.start(role)
        for g, n in self.instances.items():
            for i in range(n):
                self.start(g, i)
        for role in ("ingest", "query"):
            if not wait_until(lambda: http_get(self.ready_url(role))[0] == 200, 90, 0.3):
                raise HarnessError(f"{role} of {self.id} not ready after 90 s (logs {self.logdir})")
        # Processors: give them a moment to join their groups (not needed for correctness).
        time.sleep(1.0)
        for (role, idx), p in list(self.procs.items()):
            if p.poll() is not None:
                raise HarnessError(f"{role}-{idx} of {self.id} exited at start (logs {self.logdir})")
        threading.Thread(target=self._scrape, daemon=True).start()
        threading.Thread(target=self._supervise, daemon=True).start()

    def _supervise(self):
        """What systemd's Restart=always (or a Kubernetes pod) does for a role that exits on its
        own: restart it after 1 s. Every such exit is recorded; the trials it overlaps fail."""
        while not self.scrape_stop.wait(0.25):
            with self.lock:
                items = list(self.procs.items())
            for (role, idx), proc in items:
                if proc.poll() is None or proc.pid in self.expected_exits:
                    continue
                with self.lock:
                    if self.procs.get((role, idx)) is not proc or self.scrape_stop.is_set():
                        continue
                    self.expected_exits.add(proc.pid)
                last = ""
                try:
                    with open(self.log_paths[(role, idx)], errors="replace") as f:
                        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in f.readlines()[-30:]]
                    errs = [line for line in lines if "error" in line.lower()]
                    last = (errs or lines or [""])[-1][:300]
                except OSError:
                    pass
                self.crashes.append((time.monotonic(), role, idx, proc.returncode, last))
                say(f"{self.id}: {role}-{idx} exited by itself with status {proc.returncode}: {last}; "
                    "restarting it in 1 s (as a supervisor would)")
                time.sleep(1.0)
                with self.lock:
                    again = self.procs.get((role, idx)) is proc and not self.scrape_stop.is_set()
                if again:  # unless the harness restarted it meanwhile
                    self.start(role, idx)

    # ingest's own counters of its answers (the 503s), summed over its lives (kill -9 restarts)
    def _scrape(self):
        pat = re.compile(r'flightline_http_requests_total\{[^}]*route="/v1/telemetry"[^}]*status="(\d+)"[^}]*\}'
                         r'\s+(\d+)')
        while not self.scrape_stop.is_set():
            with self.lock:
                proc = self.procs.get(("ingest", 0))
            if proc is not None and proc.poll() is None:
                status, body = http_get(self.ingest_url + "/metrics", timeout=1.5)
                if status == 200:
                    c = collections.Counter()
                    for s, n in pat.findall(body):
                        c[s] += int(n)
                    with self.lock:
                        self.http_lives[proc.pid] = c
                        self.samples.append((time.monotonic(), self.http_totals_locked()))
            self.scrape_stop.wait(0.5)

    def http_totals_locked(self):
        total = collections.Counter()
        for c in self.http_lives.values():
            total.update(c)
        return total

    def http_totals(self):
        with self.lock:
            return self.http_totals_locked()

    def http_at(self, t):
        """Totals as of the last scrape at or before monotonic time t."""
        with self.lock:
            best = collections.Counter()
            for at, c in self.samples:
                if at <= t:
                    best = c
            return best

    def first_201_after(self, t, timeout=120):
        base = self.http_at(t)["201"]

        def check():
            with self.lock:
                for at, c in self.samples:
                    if at > t and c["201"] > base:
                        return at
            return None
        at = wait_until(check, timeout, 0.2)
        return None if at is None else at - t

    # positions of the consumer groups, for recovery times
    def group_position(self, g):
        parts = list(range(self.partitions))
        if g in ("store", "sessionizer"):
            rows = psql(self.db_url, "SELECT partition, next_offset FROM consumer_offsets "
                        f"WHERE group_id = '{self.group(g)}' AND topic = '{self.topic(GROUPS[g][1])}'", timeout=5)
            pos = {p: -1 for p in parts}
            pos.update({int(p): int(o) for p, o in rows})
            return pos
        return self.kafka().committed(self.group(g), self.topic(GROUPS[g][1]), parts)

    def end_offsets(self, topic):
        return self.kafka().end_offsets(self.topic(topic), list(range(self.partitions)))

    def caught_up_after(self, g, t, timeout=180, after=None):
        """Seconds from monotonic t until group g has consumed everything that was in its topic
        when it is first asked after t, or once the future `after` is done (None: not within
        timeout)."""
        if after is not None:
            after.result(timeout=timeout)
        target = wait_until(lambda: self.end_offsets(GROUPS[g][1]), timeout, 0.2)
        if target is None:
            return None

        def done():
            pos = self.group_position(g)
            return all(pos.get(p, -1) >= off or off == 0 for p, off in target.items())
        ok = wait_until(done, max(1, timeout - (time.monotonic() - t)), 0.2)
        return None if ok is None else time.monotonic() - t

    def teardown(self):
        CLEANUP.remove(self._cleanup)
        self.scrape_stop.set()
        with self.lock:
            procs = list(self.procs.values())
            self.expected_exits.update(p.pid for p in procs)
        threads = [threading.Thread(target=stop_process, args=(p, 15)) for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if KEEP:
            say(f"{self.id}: kept database {self.db} and topics {self.prefix}* (--keep)")
            return
        for created, admin in ((self.db_created, self.endpoints.admin_url),
                               (self.ingest_db_created, self.ingest_admin_url)):
            if created:
                # Retried: FORCE cannot end an autovacuum worker (a superuser's backend) for the
                # flightline role, and a database loaded by the fleet is often being vacuumed.
                err = []

                def drop(admin=admin):
                    try:
                        psql(admin, f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
                        return True
                    except HarnessError as e:
                        err[:] = [e]
                        return False
                if not wait_until(drop, 60, 2):
                    say(f"{self.id}: could not drop database {self.db}: {err[0] if err else '?'}")
        if self.topics_created:
            k = self.kafka()

            def delete():
                k.delete_groups([self.group(g) for g in GROUPS])
                k.delete_topics([self.topic(t) for t in TOPICS])
                return True
            if not wait_until(delete, 60, 1):
                say(f"{self.id}: could not delete topics {self.prefix}* on {self.endpoints.kafka}")
        if self.drones:
            try:
                r = wire.Redis(self.endpoints.redis)
                for d in self.drones:
                    r.command("DEL", f"drone:{d}:live", f"drone:{d}:live:ts", f"ingest:last_ts:{{{d}}}",
                              f"ingest:reservation:{{{d}}}")
                r.close()
            except (OSError, wire.RedisError):
                pass


# ---------------------------------------------------------------------------------------------
# a trial: drones, their load, the fault, the checks


class Trial:
    def __init__(self, h, scenario, index, dep, inputs, pps):
        self.h, self.scenario, self.index, self.dep, self.inputs, self.pps = h, scenario, index, dep, inputs, pps
        self.name = f"{scenario}#{index}"
        self.drones = []  # (input, drone id, api key)
        self.faults = []  # dicts describing what was done
        self.monitors = []  # futures -> (label, seconds or None)
        self.notes = []
        self.failures = []
        self.sends = []
        self.summaries = {}
        self.live = {}
        self.live_threads = []
        self.send_end = {}
        self.result = None
        self.kinds = set()

    def rate(self, inp):
        return inp.pps or self.pps

    @property
    def load_s(self):
        return max(i.count / self.rate(i) for i in self.inputs)

    def register(self):
        def create(inp):
            out = subprocess.run([self.h.bin, "drones", "create", "--name", f"chaos-{self.scenario}-{inp.name}"[:60]],
                                 env=self.dep.base_env(), capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                raise HarnessError(f"drones create failed: {out.stderr[-300:]}")
            j = json.loads(out.stdout.strip().splitlines()[-1])
            return inp, j["id"], j["api_key"]
        # The fault-free run needs one drone per distinct input; a trial flies every fleet copy.
        per_drone = [inp for inp in self.inputs for _ in range(1 if self.scenario == "fault-free" else inp.copies)]
        with concurrent.futures.ThreadPoolExecutor(min(16, len(per_drone))) as ex:
            self.drones = list(ex.map(create, per_drone))
        self.dep.drones.extend(d for _, d, _ in self.drones)
        self.dep.copy_drones([d for _, d, _ in self.drones])
        return self

    def start_load(self):
        self.t0 = time.monotonic()
        for inp, drone, key in self.drones:
            out = open(os.path.join(self.dep.logdir, f"send-{drone}.out"), "w")
            err = open(os.path.join(self.dep.logdir, f"send-{drone}.err"), "w")
            env = dict(self.dep.base_env(), RUST_LOG="warn")
            p = subprocess.Popen([self.h.bin, "send", "--api-key", key, "--file", inp.path, "--target",
                                  self.dep.ingest_url, "--rate-multiplier", f"{self.rate(inp) / inp.hz:.6f}",
                                  "--batch", str(inp.batch or self.h.args.batch)],
                                 env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
            out.close()
            err.close()
            self.sends.append((inp, drone, p))
            CLEANUP.push(f"send {drone}", lambda p=p: stop_process(p, 5))
        self.http_before = self.dep.http_totals()
        for inp, drone, p in self.sends:
            t = threading.Thread(target=self._watch_send, args=(inp, drone, p), daemon=True)
            t.start()
            self.live_threads.append(t)

    def _watch_send(self, inp, drone, p):
        try:
            p.wait(timeout=self.load_s * 4 + 400)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self.send_end[drone] = time.monotonic()
        if p.returncode == 0:
            self._check_live(inp, drone)

    def _check_live(self, inp, drone):
        """(c): the live key holds the newest packet while it is fresh (LIVE_TTL_S after it)."""
        r = wire.Redis(self.dep.endpoints.redis)
        want = str(inp.last_us)
        t_end = time.monotonic()
        seen = None

        def check():
            nonlocal seen
            seen = r.command("GET", f"drone:{drone}:live:ts")
            return seen == want
        ok = wait_until(check, LIVE_TTL_S - 5, 0.05)
        doc = None
        if ok:
            try:
                doc = json.loads(r.command("GET", f"drone:{drone}:live") or "null")
            except (OSError, wire.RedisError, ValueError):
                doc = None
            if not doc or ts_us(doc["ts"]) != inp.last_us:
                ok = None
        r.close()
        self.live[drone] = dict(ok=bool(ok), after_s=time.monotonic() - t_end, seen=seen, want=want,
                                outage=self.redis_down_during(t_end))

    def redis_down_during(self, t):
        return any(f.get("service") == "redis" and f["start"] <= t + LIVE_TTL_S and f["end"] >= t
                   for f in self.faults)

    def wait_load(self):
        for t in self.live_threads:
            t.join(timeout=self.load_s * 4 + 450)
        self.t_load_end = time.monotonic()
        for inp, drone, p in self.sends:
            try:
                with open(os.path.join(self.dep.logdir, f"send-{drone}.out")) as f:
                    lines = [line for line in f.read().splitlines() if line.startswith("{")]
                self.summaries[drone] = json.loads(lines[-1]) if lines else None
            except (OSError, ValueError):
                self.summaries[drone] = None
            if p.returncode != 0 or not self.summaries[drone]:
                with open(os.path.join(self.dep.logdir, f"send-{drone}.err")) as f:
                    tail = f.read()[-400:]
                self.failures.append(f"send of {inp.name} exited {p.returncode}: {tail.strip()}")
        self.http_after = self.dep.http_totals()

    def monitor(self, label, fn, *a):
        self.monitors.append((label, self.h.pool.submit(fn, *a)))

    # -- checks ----------------------------------------------------------------------------
    def _rows(self):
        ids = ",".join(f"'{d}'" for _, d, _ in self.drones)
        rows = psql(self.dep.db_url,
                    "SELECT drone_id, count(*), count(DISTINCT ts), coalesce(sum(e), 0) FROM (SELECT drone_id, ts, "
                    "(extract(epoch FROM ts) * 1000000)::bigint AS e FROM telemetry_raw "
                    f"WHERE drone_id IN ({ids})) t GROUP BY drone_id", timeout=60)
        return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}

    def _flights(self, timeout=60):
        ids = ",".join(f"'{d}'" for _, d, _ in self.drones)
        rows = psql(self.dep.db_url,
                    "SELECT drone_id, id, (extract(epoch FROM start_ts) * 1000000)::bigint, "
                    "(extract(epoch FROM end_ts) * 1000000)::bigint, packet_count, analytics_status, "
                    "coalesce(computed_metrics::text, 'null'), concat_ws('|', duration_s, total_mah, energy_wh, "
                    "min_voltage, max_current, distance_m, bbox::text) "
                    f"FROM flights WHERE drone_id IN ({ids}) ORDER BY drone_id, start_ts", timeout=timeout)
        out = collections.defaultdict(list)
        for d, fid, s, e, n, status, metrics, cols in rows:
            out[d].append(dict(id=fid, start=int(s), end=int(e), packets=int(n), status=status,
                               metrics=json.loads(metrics), cols=cols))
        return out

    def verify(self, baseline=None, timeout=120):
        """Waits (bounded) until the rows and flights are complete and stable, then compares."""
        expected_flights = None
        if baseline is not None:
            expected_flights = {d: len(baseline.flights_by_input[inp.name]) for inp, d, _ in self.drones}
        deadline = time.monotonic() + timeout
        stable_since, last = None, None
        rows = flights = None
        while True:
            try:
                rows, flights = self._rows(), self._flights()
            except HarnessError:
                rows = flights = None
            if rows is not None:
                complete = all(rows.get(d, (0, 0, 0))[0] >= inp.count for inp, d, _ in self.drones)
                for inp, d, _ in self.drones:
                    fl = flights.get(d, [])
                    want = expected_flights[d] if expected_flights else 1
                    if len(fl) < want or any(f["status"] == "pending" for f in fl):
                        complete = False
                snapshot = (rows, json.dumps(flights, sort_keys=True))
                if complete and snapshot == last:
                    if time.monotonic() - stable_since >= (3.0 if baseline is None else 1.5):
                        break
                elif complete:
                    stable_since, last = time.monotonic(), snapshot
                else:
                    stable_since, last = None, None
            if time.monotonic() >= deadline:
                self.failures.append(f"outputs not complete/stable within {timeout} s")
                break
            time.sleep(0.5)
        self.rows, self.flights = rows or {}, flights or {}
        return self

    def evaluate(self, baseline):
        acked = lost = dup = extra = 0
        for inp, d, _ in self.drones:
            n_acked = self.acked_of(d, inp)
            acked += n_acked
            count, distinct, sum_us = self.rows.get(d, (0, 0, 0))
            dup += count - distinct
            if count != inp.count or sum_us != inp.sum_us:
                have = self._ts_of(d)
                missing = len(set(inp.ts[:n_acked]) - have)
                lost += missing
                extra += len(have - set(inp.ts))
                if missing:
                    self.failures.append(f"{inp.name}: {missing} of its {n_acked} acknowledged packets are not in "
                                         "telemetry_raw")
                if have - set(inp.ts):
                    self.failures.append(f"{inp.name}: {len(have - set(inp.ts))} rows that were never sent")
        flights_differ = 0
        flights_total = 0
        for inp, d, _ in self.drones:
            mine = self.flights.get(d, [])
            for f in mine:
                if f["id"] != flight_id(d, f["start"]):
                    self.failures.append(f"{inp.name}: flight {f['id']} is not UUIDv5(drone/start_ts)")
                    flights_differ += 1
            if baseline is None:
                continue
            ref = baseline.flights_by_input[inp.name]
            flights_total += len(ref)
            key = lambda f: (f["start"], f["end"], f["packets"], f["status"],  # noqa: E731
                             json.dumps(f["metrics"], sort_keys=True), f["cols"])
            theirs = collections.Counter(key(f) for f in ref)
            ours = collections.Counter(key(f) for f in mine)
            diff = sum(((theirs - ours) + (ours - theirs)).values())
            if diff:
                flights_differ += diff
                self.failures.append(f"{inp.name}: flights differ from the fault-free run: "
                                     f"expected {[(fmt_ms(f['start']), fmt_ms(f['end']), f['packets']) for f in ref]}, "
                                     "got " + str([(fmt_ms(f["start"]), fmt_ms(f["end"]), f["packets"], f["status"])
                                                   for f in mine])
                                     + ("" if [key(f)[:3] for f in ref] != [key(f)[:3] for f in mine]
                                        else " (same boundaries: metrics differ)"))
        live_bad = 0
        for inp, d, _ in self.drones:
            lv = self.live.get(d)
            if lv is None:
                continue
            if not lv["ok"]:
                if lv["outage"]:
                    self.notes.append(f"live key of {inp.name} not checkable (Redis down while it was fresh)")
                else:
                    live_bad += 1
                    self.failures.append(f"{inp.name}: live ts {lv['seen']} != newest {lv['want']} "
                                         f"within {LIVE_TTL_S - 5} s")
        for svc, start, end in self.h.stack_outages():
            if end >= self.t0:
                self.notes.append(f"the shared {svc} was unreachable for {end - start:.0f}s, {start - self.t0:.0f}s "
                                  "into the trial (not a fault of this harness: another test restarted it?)")
        crashed = collections.OrderedDict()
        for at, role, idx, rc, last in list(self.dep.crashes):
            if at >= self.t0:
                crashed.setdefault(f"{role}-{idx}", (rc, last, at - self.t0))
        for name, (rc, last, at) in crashed.items():
            self.failures.append(f"{name} exited by itself ({at:.1f}s into the trial, status {rc}): {last}")
        http = self.http_after - self.http_before
        recov = self.recoveries()
        retries = sum((s or {}).get("retries", 0) for s in self.summaries.values())
        self.result = dict(scenario=self.scenario, acked=acked, lost=lost, dup=dup + extra,
                           flights_differ=flights_differ, flights=flights_total, live_bad=live_bad,
                           crashes=len(crashed),
                           s503=http.get("503", 0),
                           s5xx=sum(v for k, v in http.items() if k.startswith("5") and k != "503"),
                           retries=retries,
                           recovery=recov, ok=not self.failures, failures=list(self.failures), notes=list(self.notes),
                           faults=self.faults, seconds=time.monotonic() - self.t0)
        return self.result

    def recoveries(self):
        """Each recovery monitor's seconds (None: it did not recover, which fails the trial)."""
        recov = {}
        for label, fut in self.monitors:
            try:
                recov[label] = fut.result(timeout=300)
            except Exception as e:  # noqa: BLE001
                recov[label] = None
                self.notes.append(f"recovery monitor {label} failed: {e}")
            if recov[label] is None:
                self.failures.append(f"{label} did not recover in time")
        return recov

    def acked_of(self, d, inp):
        """Packets of the drone that ingest acknowledged: all of them when send succeeded, else
        those before the batch it gave up on."""
        summary = self.summaries.get(d)
        if summary:
            return summary["packets"]
        try:
            with open(os.path.join(self.dep.logdir, f"send-{d}.err")) as f:
                m = re.findall(r"sending packets (\d+)\.\.", f.read())
            return int(m[-1]) - 1 if m else 0
        except OSError:
            return 0

    def _ts_of(self, d):
        rows = psql(self.dep.db_url, "SELECT (extract(epoch FROM ts) * 1000000)::bigint FROM telemetry_raw "
                    f"WHERE drone_id = '{d}'", timeout=60)
        return {int(r[0]) for r in rows}

    def line(self):
        r = self.result
        faults = "; ".join(f["desc"] for f in self.faults) or "no fault"
        rec = ", ".join(f"{k} {'-' if v is None else f'{v:.1f}s'}" for k, v in r["recovery"].items())
        status = "ok" if r["ok"] else "FAILED"
        s = (f"{self.name} [{faults}] acked {r['acked']} lost {r['lost']} dup {r['dup']} | flights "
             f"{'differ ' + str(r['flights_differ']) if r['flights_differ'] else 'same'} of {r['flights']} | "
             f"live {len(self.live) - r['live_bad']}/{len(self.live)} | 503s {r['s503']}"
             + (f" other 5xx {r['s5xx']}" if r["s5xx"] else "") + f" retries {r['retries']} | "
             f"recovery {rec or '-'} | {r['seconds']:.0f}s | {status}")
        for n in r["notes"]:
            s += f"\n    note: {n}"
        for f in r["failures"]:
            s += f"\n    FAIL: {f}"
        if not r["ok"]:
            s += self.log_excerpts()
        return s

    def log_excerpts(self, warnings=8, tail=3):
        """The roles' warnings and last lines: a failed trial on CI is read from its output only."""
        out = ""
        try:
            names = sorted(n for n in os.listdir(self.dep.logdir) if n.endswith(".log"))
        except OSError:
            return ""
        for name in names:
            try:
                with open(os.path.join(self.dep.logdir, name), errors="replace") as f:
                    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line.rstrip())[:300] for line in f if line.strip()]
            except OSError:
                continue
            picked = [line for line in lines if " WARN " in line or " ERROR " in line][-warnings:]
            picked += [line for line in lines[-tail:] if line not in picked]
            out += f"\n    log {name}:" + "".join(f"\n      {line}" for line in picked)
        return out


class Baseline:
    def __init__(self, trial):
        self.trial = trial
        self.flights_by_input = {}
        for inp, d, _ in trial.drones:
            self.flights_by_input[inp.name] = trial.flights.get(d, [])


# ---------------------------------------------------------------------------------------------
# the harness


class Harness:
    def __init__(self, args):
        self.args = args
        self.rng_seed = args.seed
        self.bin = args.bin
        self.workdir = tempfile.mkdtemp(prefix="flchaos-")
        os.chmod(self.workdir, 0o755)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=64)
        self.results = collections.defaultdict(list)
        self.extra = collections.defaultdict(list)  # scenario -> notes for the table
        self.baseline = None
        self.baseline_ready = threading.Event()
        self.baseline_failed = False
        self.lock = threading.Lock()
        self.counters = collections.Counter()
        self._pg = None
        self.fleet = {}  # family -> Input flown by --fleet-drones drones in every trial
        self.fleet_ref = []  # the soak's reference block, flown once in the fault-free run
        self._outages = []  # (service, start, end) of the shared stack, seen by monitor_stack
        self._down = {}
        threading.Thread(target=self.monitor_stack, daemon=True).start()

    def monitor_stack(self):
        """Pings the shared Kafka, PostgreSQL and Redis every second: other engineers' tests may
        restart them (tests/kafka_outage.rs stops the shared broker), and a trial overlapping such
        an outage says so."""
        host, port = re.search(r"@([^:/]+):(\d+)/", ADMIN_URL).groups()

        def pg_up():
            try:
                with socket.create_connection((host, int(port)), timeout=1):
                    return True
            except OSError:
                return False
        probes = {"Kafka broker": lambda: wire.Kafka(SHARED_KAFKA, timeout=2).ping(),
                  "PostgreSQL": pg_up, "Redis": lambda: wire.Redis(SHARED_REDIS, timeout=2).ping()}
        while True:
            for svc, probe in probes.items():
                up = probe()
                now = time.monotonic()
                with self.lock:
                    if not up and svc not in self._down:
                        self._down[svc] = now
                        say(f"the shared {svc} does not answer (not this harness's doing)")
                    elif up and svc in self._down:
                        self._outages.append((svc, self._down.pop(svc), now))
                        say(f"the shared {svc} answers again")
            time.sleep(1)

    def stack_outages(self):
        now = time.monotonic()
        with self.lock:
            return list(self._outages) + [(svc, t, now) for svc, t in self._down.items()]

    def fleet_of(self, family):
        """The background fleet of a scenario family (issue 9, item 6): `--fleet-pps` over
        `--fleet-drones` drones, for as long as the family's own load lasts."""
        return [self.fleet[family]] if family in self.fleet else []

    def rng(self, scenario):
        return random.Random(f"{self.rng_seed}:{scenario}")

    def trials(self, scenario):
        if self.args.trials:
            return self.args.trials
        quick = self.args.quick
        full = {"kill-role": 20, "two-instances": 10, "pg-stop": 2, "pg-stop-processors": 2, "redis-stop": 2,
                "kafka-kill": 5, "kafka-stop": 5}
        return 1 if quick else full[scenario]

    def record(self, trial, baseline):
        trial.evaluate(baseline)
        with self.lock:
            self.results[trial.scenario].append(trial.result)
        say(trial.line())

    def wait_baseline(self):
        self.baseline_ready.wait()
        if self.baseline is None:
            raise HarnessError("the fault-free run failed; nothing to compare with")
        return self.baseline

    # -- the fault-free run ----------------------------------------------------------------
    def run_baseline(self):
        try:
            dep = Deployment(self, "base", Endpoints())
            dep.setup()
            dep.start_all()
            inputs = self.fast + self.long + list(self.fleet.values()) + self.fleet_ref
            trial = Trial(self, "fault-free", 1, dep, inputs, self.args.baseline_pps).register()
            say(f"fault-free run: {len(inputs)} drones at {self.args.baseline_pps:g} packets/s each "
                f"({sum(i.count for i in inputs)} packets) on {dep.id}")
            trial.start_load()
            trial.wait_load()
            trial.verify(None, timeout=180)
            trial.evaluate(None)
            say(trial.line())
            if not trial.result["ok"]:
                raise HarnessError("the fault-free run itself failed: " + "; ".join(trial.failures))
            self.baseline = Baseline(trial)
            n = sum(len(v) for v in self.baseline.flights_by_input.values())
            say(f"fault-free run: {n} flights: " + ", ".join(
                f"{k} {len(v)}" for k, v in self.baseline.flights_by_input.items()))
            with self.lock:
                self.results["fault-free"].append(trial.result)
            dep.teardown()
        except Exception:
            self.baseline_failed = True
            raise
        finally:
            self.baseline_ready.set()

    # -- process kills, pipelined: the next trial's load starts when the previous one's ends ----
    def pipelined(self, scenario, dep, faults):
        """faults: list of callables(trial) that perform a fault during the trial's load."""
        def make():
            return Trial(self, scenario, self.next_index(scenario), dep, self.fast + self.fleet_of("fast"),
                         self.args.pps).register()
        prep = self.pool.submit(make)
        checks = []
        for k, fault in enumerate(faults):
            trial = prep.result()
            if k + 1 < len(faults):
                prep = self.pool.submit(make)
            trial.start_load()
            fault(trial)
            trial.wait_load()

            def finish(trial=trial):
                base = self.wait_baseline()
                trial.verify(base)
                self.record(trial, base)
            checks.append(self.pool.submit(finish))
        for c in checks:
            c.result()

    def next_index(self, scenario):
        with self.lock:
            self.counters[scenario] += 1
            return self.counters[scenario]

    def kill_fault(self, dep, rng, role, idx=0, window=(0.1, 0.55), pause=(0.3, 3.0)):
        at_frac, pause_s = rng.uniform(*window), rng.uniform(*pause)

        def fault(trial):
            at = at_frac * trial.load_s
            time.sleep(max(0.0, trial.t0 + at - time.monotonic()))
            t_kill = time.monotonic()
            dep.kill9(role, idx)
            time.sleep(pause_s)
            dep.start(role, idx)
            t_end = time.monotonic()
            name = role if dep.instances.get(role, 1) == 1 else f"{role}-{idx}"
            trial.faults.append(dict(desc=f"kill -9 {name} at {t_kill - trial.t0:.1f}s, restart after {pause_s:.1f}s",
                                     start=t_kill, end=t_end, role=role))
            if role in GROUPS:
                trial.monitor(f"{name} caught up", dep.caught_up_after, role, t_end)
            else:
                trial.monitor(f"{name} ready", lambda: (wait_until(
                    lambda: http_get(dep.ready_url(role))[0] == 200, 90, 0.1) and time.monotonic() - t_end))
        return fault

    def run_kill_role(self):
        scenario = "kill-role"
        rng = self.rng(scenario)
        roles = [r for r in ROLES for _ in range(self.trials(scenario))]
        rng.shuffle(roles)
        per_dep = 20
        for c in range(0, len(roles), per_dep):
            chunk = roles[c:c + per_dep]
            dep = Deployment(self, "kill", Endpoints(), partitions=3)
            dep.setup()
            dep.start_all()
            say(f"kill-role: {len(chunk)} trials on {dep.id} ({', '.join(chunk)})")
            self.pipelined(scenario, dep, [self.kill_fault(dep, rng, role) for role in chunk])
            dep.teardown()

    def run_two_instances(self):
        scenario = "two-instances"
        rng = self.rng(scenario)
        dep = Deployment(self, "two", Endpoints(), partitions=4,
                         instances=dict(store=2, live=2, sessionizer=2, analytics=2))
        dep.setup()
        dep.start_all()
        say(f"two-instances: {self.trials(scenario)} trials on {dep.id} (2 instances of each processor, 4 partitions)")

        def make_fault():
            kills = [self.kill_fault(dep, rng, g, rng.randrange(2), window=(0.1, 0.5)) for g in GROUPS]

            def fault(trial):
                ts = [threading.Thread(target=k, args=(trial,)) for k in kills]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
            return fault
        self.pipelined(scenario, dep, [make_fault() for _ in range(self.trials(scenario))])
        dep.teardown()

    # -- outages of a private service ------------------------------------------------------
    def outage_trial(self, scenario, index, endpoints, env, fault, rng, pps, ingest_admin_url=None):
        dep = Deployment(self, scenario, endpoints, partitions=3, env=env, ingest_admin_url=ingest_admin_url)
        try:
            dep.setup()
            dep.start_all()
            fleet = self.fleet_of("kafka" if scenario.startswith("kafka") else "outage")
            trial = Trial(self, scenario, index, dep, self.long + fleet, pps).register()
            trial.start_load()
            at = rng.uniform(8, 14)
            time.sleep(max(0.0, trial.t0 + at - time.monotonic()))
            fault(trial, dep)
            trial.wait_load()
            base = self.wait_baseline()
            trial.verify(base, timeout=150)
            self.record(trial, base)
        finally:
            dep.teardown()

    def recovery_all(self, trial, dep, t_end):
        """Recovery after an outage: ingest acknowledges again, then every group has consumed what
        was in the log at that moment (the backlog the outage left)."""
        first = self.pool.submit(dep.first_201_after, t_end)
        trial.monitors.append(("ingest 201", first))
        for g in GROUPS:
            trial.monitor(f"{g} caught up", dep.caught_up_after, g, t_end, 240, first)

    def private_pg(self):
        with self.lock:
            if self._pg is None:
                pg = PrivatePostgres(self.workdir)
                pg.init()
                say(f"private PostgreSQL on 127.0.0.1:{pg.port} ({pg.dir})")
                self._pg = pg
            return self._pg

    def run_pg_stop(self, scenario="pg-stop"):
        rng = self.rng(scenario)
        pg = self.private_pg()
        endpoints = Endpoints(admin_url=pg.admin_url)
        ingest_admin = ADMIN_URL if scenario == "pg-stop-processors" else None
        for i in range(self.trials(scenario)):
            mode = rng.choice(["fast", "immediate"])

            def fault(trial, dep, mode=mode):
                t0 = time.monotonic()
                before = dep.http_totals()
                pg.stop(mode)
                t_down = time.monotonic()
                time.sleep(self.args.outage_s)
                during = dep.http_totals() - before
                pg.start()
                t_end = time.monotonic()
                trial.faults.append(dict(desc=f"PostgreSQL stop -m {mode} at {t0 - trial.t0:.1f}s for "
                                              f"{t_end - t0:.0f}s", start=t0, end=t_end, service="pg"))
                ok_201, n_503 = during.get("201", 0), sum(v for k, v in during.items() if k != "201")
                trial.notes.append(f"while PostgreSQL was down ingest answered 201 x{ok_201}, other x{n_503} "
                                   f"({dict(during)})")
                if ok_201 == 0 or n_503:
                    trial.failures.append("ingest did not keep answering 201 while PostgreSQL was down: "
                                          f"{dict(during)}")
                self.recovery_all(trial, dep, t_end)
                trial.monitor("store catch-up", self.catch_up_rate, dep, trial, t_end, scenario)
            self.outage_trial(scenario, i + 1, endpoints, {}, fault, rng, self.args.outage_pps, ingest_admin)

    def catch_up_rate(self, dep, trial, t_end, scenario):
        """Rows/s the store writes after PostgreSQL returns, until it has consumed what was in
        the log when it returned."""
        ids = ",".join(f"'{d}'" for _, d, _ in trial.drones)
        count = lambda: int(psql(dep.db_url, f"SELECT count(*) FROM telemetry_raw WHERE drone_id IN ({ids})",  # noqa
                                 timeout=10)[0][0])
        c0 = wait_until(lambda: (count(), time.monotonic()), 60, 0.05)
        target = wait_until(lambda: dep.end_offsets("telemetry.v1"), 60, 0.1)
        if not c0 or not target:
            return None
        parts = list(range(dep.partitions))
        done = wait_until(lambda: all(dep.group_position("store").get(p, -1) >= target[p] or target[p] == 0
                                      for p in parts) and (count(), time.monotonic()), 240, 0.1)
        if not done:
            return None
        rows, secs = done[0] - c0[0], done[1] - c0[1]
        rate = rows / secs if secs > 0 else float("inf")
        trial.notes.append(f"store caught up {rows} rows in {secs:.1f}s after PostgreSQL returned: {rate:.0f} rows/s")
        with self.lock:
            self.extra[scenario].append(f"store catch-up {rate:.0f} rows/s ({rows} rows in {secs:.1f}s)")
        return secs

    def run_redis_stop(self):
        scenario = "redis-stop"
        rng = self.rng(scenario)
        redis = PrivateRedis(self.workdir)
        redis.start()
        endpoints = Endpoints(redis=redis.url)
        say(f"redis-stop: private redis-server on 127.0.0.1:{redis.port}")
        for i in range(self.trials(scenario)):
            def fault(trial, dep):
                t0 = time.monotonic()
                redis.stop()
                time.sleep(self.args.outage_s)
                redis.start()
                t_end = time.monotonic()
                trial.faults.append(dict(desc=f"Redis stop at {t0 - trial.t0:.1f}s for {t_end - t0:.0f}s",
                                         start=t0, end=t_end, service="redis"))
                self.recovery_all(trial, dep, t_end)
            self.outage_trial(scenario, i + 1, endpoints, {}, fault, rng, self.args.outage_pps)

    def run_kafka(self, scenario):
        rng = self.rng(scenario)
        kafka = PrivateKafka(self.workdir)
        t0 = time.monotonic()
        kafka.init()
        say(f"{scenario}: private Kafka broker on {kafka.bootstrap} ready in {time.monotonic() - t0:.0f}s "
            f"({kafka.dir})")
        endpoints = Endpoints(kafka=kafka.bootstrap)
        env = {"FLIGHTLINE_FLIGHT_GAP_S": str(self.args.kafka_gap_s)}
        for i in range(self.trials(scenario)):
            if scenario == "kafka-kill":
                pause = rng.uniform(1, 5)

                def fault(trial, dep, pause=pause):
                    t0 = time.monotonic()
                    kafka.kill9()
                    time.sleep(pause)
                    boot = kafka.start()
                    t_end = time.monotonic()
                    trial.faults.append(dict(desc=f"kill -9 broker at {t0 - trial.t0:.1f}s, restart after "
                                                  f"{pause:.1f}s (answered {boot:.0f}s later)", start=t0, end=t_end,
                                             service="kafka"))
                    self.recovery_all(trial, dep, t_end)
            else:
                def fault(trial, dep):
                    t0 = time.monotonic()
                    kafka.pause()
                    time.sleep(10)
                    kafka.resume()
                    t_end = time.monotonic()
                    trial.faults.append(dict(desc=f"SIGSTOP broker at {t0 - trial.t0:.1f}s for 10s",
                                             start=t0, end=t_end, service="kafka"))
                    self.recovery_all(trial, dep, t_end)
            self.outage_trial(scenario, i + 1, endpoints, env, fault, rng, self.args.kafka_pps)

    # -- the soak (issue 9, item 6): a fleet at --fleet-pps for --soak-s, a fault every few minutes --
    def run_soak(self):
        scenario, a = "soak", self.args
        rng = self.rng(scenario)
        per = a.fleet_pps / a.fleet_drones
        block, ref = self.soak_block, self.soak_ref
        blocks_per_leg = max(1, round(a.soak_leg_s * per / len(block)))
        leg_packets = blocks_per_leg * len(block)
        n_legs = math.ceil(a.soak_s * per / leg_packets) + 1
        # Its own broker, PostgreSQL and Redis: the soak's faults include outages of each.
        pg = PrivatePostgres(self.workdir)
        pg.init()
        redis = PrivateRedis(self.workdir)
        redis.start()
        kafka = PrivateKafka(self.workdir)
        kafka.init()
        endpoints = Endpoints(admin_url=pg.admin_url, kafka=kafka.bootstrap, redis=redis.url)
        dep = Deployment(self, scenario, endpoints, partitions=3,
                         env={"FLIGHTLINE_FLIGHT_GAP_S": str(a.kafka_gap_s)})
        try:
            dep.setup()
            dep.start_all()
            leg0 = Input("soak-leg0", block.lines(0, leg_packets), block.hz, self.workdir, tail=False,
                         pps=per, copies=a.fleet_drones)
            trial = Trial(self, scenario, 1, dep, [leg0], per).register()
            say(f"soak: {a.fleet_drones} drones x {per:g} packets/s = {a.fleet_pps:g} packets/s for {a.soak_s:g} s, "
                f"a fault every {a.soak_every_s:g} s, on {dep.id} (private broker {kafka.bootstrap}, PostgreSQL "
                f"127.0.0.1:{pg.port}, Redis 127.0.0.1:{redis.port}); legs of {leg_packets} packets "
                f"({blocks_per_leg} x {len(block)}-packet block, {leg_packets / per:.0f} s)")
            legs, legs_lock = {0: leg0}, threading.Lock()

            def leg(k):
                with legs_lock:
                    if k not in legs:
                        inp = Input(f"soak-leg{k}", block.lines(k * leg_packets, leg_packets), block.hz,
                                    self.workdir, tail=False, pps=per)
                        inp.lines = None  # the file holds them; keep the ts only
                        legs[k] = inp
                    return legs[k]
            leg0.lines = None
            sent = collections.defaultdict(list)  # drone -> [(leg, packets acknowledged, exit status)]
            stop_at = time.monotonic() + a.soak_s
            trial.t0 = time.monotonic()
            trial.http_before = dep.http_totals()

            def fly(drone, key):
                for k in range(n_legs):
                    if time.monotonic() >= stop_at:
                        return
                    inp = leg(k)
                    self.pool.submit(leg, k + 1)  # the next leg's file, ahead of time
                    out_path = os.path.join(dep.logdir, f"send-{drone}.out")
                    with open(out_path, "w") as out, open(os.path.join(dep.logdir, f"send-{drone}.err"), "a") as err:
                        err.write(f"===== leg {k} =====\n")
                        err.flush()
                        p = subprocess.Popen([self.bin, "send", "--api-key", key, "--file", inp.path, "--target",
                                              dep.ingest_url, "--rate-multiplier", f"{per / inp.hz:.6f}", "--batch",
                                              str(a.fleet_batch)], env=dict(dep.base_env(), RUST_LOG="warn"),
                                             stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
                    CLEANUP.push(f"send {drone}", lambda p=p: stop_process(p, 5))
                    try:
                        p.wait(timeout=inp.count / per * 4 + 400)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                    trial.sends.append((inp, drone, p))
                    summary = None
                    try:
                        with open(out_path) as f:
                            js = [line for line in f.read().splitlines() if line.startswith("{")]
                        summary = json.loads(js[-1]) if js else None
                    except (OSError, ValueError):
                        pass
                    if summary:
                        acked = summary["packets"]
                        trial.summaries.setdefault(drone, {"packets": 0, "retries": 0})
                        trial.summaries[drone]["retries"] += summary.get("retries", 0)
                    else:
                        with open(os.path.join(dep.logdir, f"send-{drone}.err")) as f:
                            m = re.findall(r"sending packets (\d+)\.\.", f.read().split(f"===== leg {k} =====")[-1])
                        acked = int(m[-1]) - 1 if m else 0
                        trial.failures.append(f"send of leg {k} for drone {drone} exited {p.returncode} after "
                                              f"{acked} of {inp.count} packets")
                    sent[drone].append((k, acked, p.returncode))
                    if acked < inp.count:
                        return  # the rest of this drone's flights are no longer predictable

            # -- memory: anonymous RSS of every role process and service, every 10 s --
            mem = collections.defaultdict(list)  # (name, pid) -> [(t, kB)]
            sampling = threading.Event()

            def rss_anon(pid):
                try:
                    with open(f"/proc/{pid}/status") as f:
                        for line in f:
                            if line.startswith("RssAnon:"):
                                return int(line.split()[1])
                except OSError:
                    return None
                return None

            def pg_pids():
                try:
                    with open(os.path.join(pg.data, "postmaster.pid")) as f:
                        root = int(f.readline())
                except (OSError, ValueError):
                    return []
                kids = [root]
                for name in os.listdir("/proc"):
                    if name.isdigit():
                        try:
                            with open(f"/proc/{name}/stat") as f:
                                if int(f.read().rsplit(")", 1)[1].split()[1]) == root:
                                    kids.append(int(name))
                        except (OSError, ValueError, IndexError):
                            pass
                return kids

            def sample():
                while not sampling.wait(10):
                    now = time.monotonic()
                    with dep.lock:
                        procs = [(f"{r}-{i}", p.pid) for (r, i), p in dep.procs.items() if p.poll() is None]
                    for name, proc in (("kafka", kafka.proc), ("redis", redis.proc)):
                        if proc is not None and proc.poll() is None:
                            procs.append((name, proc.pid))
                    for name, pid in procs:
                        kb = rss_anon(pid)
                        if kb is not None:
                            mem[(name, pid)].append((now, kb))
                    pids = pg_pids()
                    if pids:  # PostgreSQL as one: postmaster and backends (backends come and go)
                        total = sum(rss_anon(pid) or 0 for pid in pids)
                        mem[("postgres", pids[0])].append((now, total))
            threading.Thread(target=sample, daemon=True).start()

            # -- faults: each kind once per cycle, in a seeded order --
            kinds = list(ROLES) + ["kafka-stop", "kafka-kill", "redis-stop", "pg-stop"]

            def inject(kind):
                t0 = time.monotonic()
                if kind in ROLES:
                    pause = rng.uniform(0.3, 3.0)
                    dep.kill9(kind)
                    time.sleep(pause)
                    dep.start(kind)
                    t_end = time.monotonic()
                    desc = f"kill -9 {kind}, restarted after {pause:.1f}s"
                    if kind in GROUPS:
                        trial.monitor(f"{kind} caught up @{t0 - trial.t0:.0f}s", dep.caught_up_after, kind, t_end)
                    else:
                        trial.monitor(f"{kind} ready @{t0 - trial.t0:.0f}s", lambda: (wait_until(
                            lambda: http_get(dep.ready_url(kind))[0] == 200, 90, 0.1) and time.monotonic() - t_end))
                else:
                    if kind == "kafka-stop":
                        kafka.pause()
                        time.sleep(10)
                        kafka.resume()
                        desc = "SIGSTOP broker for 10s"
                    elif kind == "kafka-kill":
                        pause = rng.uniform(1, 5)
                        kafka.kill9()
                        time.sleep(pause)
                        boot = kafka.start()
                        desc = f"kill -9 broker, restarted after {pause:.1f}s (answered {boot:.0f}s later)"
                    elif kind == "redis-stop":
                        redis.stop()
                        time.sleep(a.soak_outage_s)
                        redis.start()
                        desc = f"Redis stop for {a.soak_outage_s:g}s"
                    else:
                        mode = rng.choice(["fast", "immediate"])
                        pg.stop(mode)
                        time.sleep(a.soak_outage_s)
                        pg.start()
                        desc = f"PostgreSQL stop -m {mode} for {a.soak_outage_s:g}s"
                    t_end = time.monotonic()
                    first = self.pool.submit(dep.first_201_after, t_end)
                    trial.monitors.append((f"{kind} ingest 201 @{t0 - trial.t0:.0f}s", first))
                    for g in GROUPS:
                        trial.monitor(f"{kind} {g} caught up @{t0 - trial.t0:.0f}s", dep.caught_up_after, g, t_end,
                                      240, first)
                trial.faults.append(dict(desc=f"{desc} at {t0 - trial.t0:.0f}s", start=t0, end=t_end, kind=kind,
                                         service={"redis-stop": "redis"}.get(kind)))
                say(f"soak: fault {len(trial.faults)} at {t0 - trial.t0:.0f}s: {desc}")

            def faults():
                cycle = []
                t_next = trial.t0 + a.soak_every_s
                while t_next < stop_at - 60:  # the last minute is fault-free: the end state is checked
                    time.sleep(max(0.0, t_next - time.monotonic()))
                    if not cycle:
                        cycle = list(kinds)
                        rng.shuffle(cycle)
                    inject(cycle.pop())
                    t_next += a.soak_every_s
            fault_thread = threading.Thread(target=faults, daemon=True)
            fault_thread.start()
            drivers = [threading.Thread(target=fly, args=(d, k), daemon=True) for _, d, k in trial.drones]
            for t in drivers:
                t.start()

            def progress():
                while any(t.is_alive() for t in drivers):
                    time.sleep(60)
                    acked = sum(n for v in sent.values() for _, n, _ in v)
                    rss = {name: kb for (name, _pid), s in mem.items() for _t, kb in s[-1:]}
                    say(f"soak: {time.monotonic() - trial.t0:.0f}s, {acked} packets acknowledged in finished legs, "
                        f"{len(trial.faults)} faults; RssAnon MiB " +
                        ", ".join(f"{n} {kb / 1024:.0f}" for n, kb in sorted(rss.items())))
            threading.Thread(target=progress, daemon=True).start()
            for t in drivers:
                t.join()
            fault_thread.join()
            trial.t_load_end = time.monotonic()
            trial.http_after = dep.http_totals()
            self.soak_check(trial, dep, sent, legs, leg_packets, blocks_per_leg, block, ref, redis)
            sampling.set()
            self.soak_memory(trial, mem)
            trial.verify_done = True
            self.finish_soak(trial)
        finally:
            dep.teardown()
            kafka.destroy()
            redis.destroy()
            pg.destroy()

    def soak_check(self, trial, dep, sent, legs, leg_packets, blocks_per_leg, block, ref, redis):
        """(a), (b), (c) over the whole soak, once every group has consumed the log."""
        # (c) first, while the newest packets are fresh.
        r = wire.Redis(redis.url)
        live_bad = 0
        for _, d, _ in trial.drones:
            k, n, _ = (sent[d] or [(0, 0, None)])[-1]
            want = str(legs[k].ts[n - 1]) if n else None
            if want and not wait_until(lambda: r.command("GET", f"drone:{d}:live:ts") == want, 20, 0.1):
                live_bad += 1
                trial.failures.append(f"live ts of {d} is {r.command('GET', f'drone:{d}:live:ts')}, not {want}")
        r.close()
        t = time.monotonic()
        for g in GROUPS:
            if dep.caught_up_after(g, t, timeout=600) is None:
                trial.failures.append(f"{g} had not consumed the log 600 s after the load")
        base = self.wait_baseline()
        ref_flights = base.flights_by_input[ref.name]
        ids = ",".join(f"'{d}'" for _, d, _ in trial.drones)
        acked = lost = dup = differ = total = 0
        prev = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # analytics of the last flights; stable twice in a row
            fl = trial._flights(timeout=120)
            if prev == fl and not any(f["status"] == "pending" for v in fl.values() for f in v):
                break
            prev = fl
            time.sleep(5)
        rows = {x[0]: (int(x[1]), int(x[2]), int(x[3])) for x in psql(
            dep.db_url, "SELECT drone_id, count(*), count(DISTINCT ts), coalesce(sum(e), 0) FROM (SELECT drone_id, "
            "(extract(epoch FROM ts) * 1000000)::bigint AS e, ts FROM telemetry_raw "
            f"WHERE drone_id IN ({ids})) t GROUP BY drone_id", timeout=600)}
        for _, d, _ in trial.drones:
            want_n = sum(n for _, n, _ in sent[d])
            want_sum = sum(sum(legs[k].ts[:n]) for k, n, _ in sent[d])
            acked += want_n
            count, distinct, s = rows.get(d, (0, 0, 0))
            if (count, distinct, s) != (want_n, want_n, want_sum):
                have = {int(x[0]) for x in psql(dep.db_url, "SELECT (extract(epoch FROM ts) * 1000000)::bigint FROM "
                                                f"telemetry_raw WHERE drone_id = '{d}'", timeout=300)}
                acked_ts = {t for k, n, _ in sent[d] for t in legs[k].ts[:n]}
                sent_ts = {t for k, _, _ in sent[d] for t in legs[k].ts}
                missing, extra = len(acked_ts - have), len(have - sent_ts)
                lost += missing
                dup += (count - distinct) + extra
                if missing or extra or count != distinct:
                    trial.failures.append(f"drone {d}: {missing} acknowledged packets missing, {extra} never sent, "
                                          f"{count - distinct} duplicated")
            # (b): every whole block acknowledged gives the reference block's flights, shifted
            whole = 0
            for k, n, _ in sent[d]:
                whole += n // len(block) if n < leg_packets else blocks_per_leg
                if n < leg_packets:
                    break
            want = [dict(f, start=f["start"] + b * block.period, end=f["end"] + b * block.period)
                    for b in range(whole) for f in ref_flights]
            mine = prev.get(d, [])
            if any(n < leg_packets for _, n, _ in sent[d]):
                # A drone whose send gave up mid-leg: only its whole blocks are predictable.
                trial.notes.append(f"drone {d}: flights compared up to its last whole block ({whole} blocks)")
                mine = mine[:len(want)]
            key = lambda f: (f["start"], f["end"], f["packets"], f["status"],  # noqa: E731
                             json.dumps(f["metrics"], sort_keys=True), f["cols"])
            theirs, ours = collections.Counter(map(key, want)), collections.Counter(map(key, mine))
            diff = sum(((theirs - ours) + (ours - theirs)).values())
            total += len(want)
            bad_ids = sum(f["id"] != flight_id(d, f["start"]) for f in mine)
            if diff or bad_ids:
                differ += diff + bad_ids
                trial.failures.append(f"drone {d}: {diff} flights differ from the reference block's, shifted "
                                      f"({len(mine)} flights, {len(want)} expected), {bad_ids} with a wrong id")
        http = trial.http_after - trial.http_before
        recov = trial.recoveries()
        crashed = {(role, idx) for at, role, idx, rc, last in dep.crashes}
        for at, role, idx, rc, last in dep.crashes:
            trial.failures.append(f"{role}-{idx} exited by itself {at - trial.t0:.0f}s into the soak "
                                  f"(status {rc}): {last}")
        trial.result = dict(scenario="soak", acked=acked, lost=lost, dup=dup, flights_differ=differ, flights=total,
                            live_bad=live_bad, crashes=len(crashed), s503=http.get("503", 0),
                            s5xx=sum(v for k, v in http.items() if k.startswith("5") and k != "503"),
                            retries=sum(s["retries"] for s in trial.summaries.values()), recovery=recov,
                            ok=False, failures=trial.failures, notes=trial.notes, faults=trial.faults,
                            seconds=time.monotonic() - trial.t0)

    def soak_memory(self, trial, mem):
        """Flat memory: in every process life of 10 minutes or more, the median anonymous RSS of its
        last 3 minutes is within 25 % (or 32 MiB) of that of the 3 minutes before the middle of its
        life. The first half is warm-up (JVM heap, allocator arenas, caches); a leak keeps growing
        through the second."""
        lines = []
        for (name, pid), s in sorted(mem.items()):
            if len(s) < 2:
                continue
            t0, t1 = s[0][0], s[-1][0]
            peak = max(kb for _, kb in s) / 1024
            if t1 - t0 < 600:
                lines.append(f"{name} (pid {pid}): {(t1 - t0) / 60:.0f} min, {s[0][1] / 1024:.0f} -> "
                             f"{s[-1][1] / 1024:.0f} MiB, peak {peak:.0f} (too short a life to judge)")
                continue
            mid = (t0 + t1) / 2
            early = statistics.median(kb for t, kb in s if mid - 180 <= t <= mid) / 1024
            late = statistics.median(kb for t, kb in s if t >= t1 - 180) / 1024
            flat = late <= early * 1.25 or late - early <= 32
            lines.append(f"{name} (pid {pid}): {(t1 - t0) / 60:.0f} min, 3 min before mid-life {early:.0f} MiB, last 3 min "
                         f"{late:.0f} MiB, peak {peak:.0f} MiB: {'flat' if flat else 'GROWING'}")
            if not flat:
                trial.failures.append(f"memory of {name} grew from {early:.0f} to {late:.0f} MiB")
        with self.lock:
            self.extra["soak"].extend(f"memory (RssAnon) {line}" for line in lines)
            for label, v in trial.result["recovery"].items():
                self.extra["soak"].append(f"recovery {label}: {'-' if v is None else f'{v:.1f} s'}")
            self.extra["soak"].extend(f"fault {f['desc']}" for f in trial.faults)

    def finish_soak(self, trial):
        trial.result["ok"] = not trial.failures
        trial.result["failures"] = list(trial.failures)
        with self.lock:
            self.results["soak"].append(trial.result)
        r = trial.result
        say(f"soak [{len(trial.faults)} faults] acked {r['acked']} lost {r['lost']} dup {r['dup']} | flights "
            f"{'differ ' + str(r['flights_differ']) if r['flights_differ'] else 'same'} of {r['flights']} | live "
            f"{len(trial.drones) - r['live_bad']}/{len(trial.drones)} | 503s {r['s503']} retries {r['retries']} | "
            f"{r['seconds']:.0f}s | {'ok' if r['ok'] else 'FAILED'}"
            + "".join(f"\n    FAIL: {f}" for f in r["failures"]) + "".join(f"\n    {n}" for n in self.extra["soak"]))

    # -- report ----------------------------------------------------------------------------
    def table(self, scenarios):
        head = ("| scenario | trials | packets acknowledged | lost | duplicated | flights differing | "
                "live keys wrong | roles crashed | 503s seen / other 5xx / send retries | recovery time median / max | "
                "failed trials |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|\n")
        rows = []
        for s in ["fault-free"] + list(scenarios):
            rs = self.results.get(s, [])
            if not rs:
                if s != "fault-free":
                    rows.append(f"| {s} | 0 | - | - | - | - | - | - | - | - | not run |")
                continue
            rec = [max(v for v in r["recovery"].values() if v is not None) for r in rs
                   if any(v is not None for v in r["recovery"].values())]
            rec_s = f"{statistics.median(rec):.1f} s / {max(rec):.1f} s" if rec else "-"
            failed = sum(not r["ok"] for r in rs)
            rows.append(
                f"| {s} | {len(rs)} | {sum(r['acked'] for r in rs)} | {sum(r['lost'] for r in rs)} | "
                f"{sum(r['dup'] for r in rs)} | {sum(r['flights_differ'] for r in rs)} of "
                f"{sum(r['flights'] for r in rs)} | {sum(r['live_bad'] for r in rs)} | "
                f"{sum(r['crashes'] for r in rs)} | "
                f"{sum(r['s503'] for r in rs)} / {sum(r['s5xx'] for r in rs)} / {sum(r['retries'] for r in rs)} | "
                f"{rec_s} | {failed} |")
        return head + "\n".join(rows) + "\n"


KEEP = False


def main():
    global KEEP
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 trial per scenario (make test; < 5 minutes)")
    ap.add_argument("--scenario", default="all",
                    help=f"all, or a comma-separated list of: {', '.join(SCENARIOS + EXTRA_SCENARIOS)}")
    ap.add_argument("--seed", type=int, default=None, help="seed of every random choice (default: random, printed)")
    ap.add_argument("--trials", type=int, default=None, help="trials per scenario (kill-role: per role)")
    ap.add_argument("--pps", type=float, default=400, help="packets/s per drone, process-kill scenarios (default 400)")
    ap.add_argument("--outage-pps", type=float, default=150, help="packets/s per drone, outage scenarios (default 150)")
    ap.add_argument("--outage-load-s", type=float, default=80, help="seconds of load per outage trial (default 80)")
    ap.add_argument("--kafka-pps", type=float, default=300, help="packets/s per drone, broker faults (default 300)")
    ap.add_argument("--outage-s", type=float, default=60, help="PostgreSQL/Redis outage, seconds (default 60)")
    ap.add_argument("--baseline-pps", type=float, default=600,
                    help="packets/s per drone of the fault-free run (default 600)")
    ap.add_argument("--batch", type=int, default=50, help="packets per request of flightline send (default 50)")
    ap.add_argument("--kafka-gap-s", type=float, default=120,
                    help="flight gap G of the broker-fault deployments (default 120; see README)")
    ap.add_argument("--fleet-pps", type=float, default=0,
                    help="a background fleet offering this many packets/s in every trial, flown and checked like "
                    "the other drones (issue 9 item 6; the soak's load; default 0 = none, soak 20000)")
    ap.add_argument("--fleet-drones", type=int, default=40, help="drones of the fleet (default 40)")
    ap.add_argument("--fleet-batch", type=int, default=100, help="packets per request of a fleet drone (default 100)")
    ap.add_argument("--soak-s", type=float, default=1800, help="seconds of load of the soak (default 1800)")
    ap.add_argument("--soak-every-s", type=float, default=180, help="a soak fault every this many s (default 180)")
    ap.add_argument("--soak-outage-s", type=float, default=30,
                    help="PostgreSQL/Redis outage during the soak, seconds (default 30)")
    ap.add_argument("--soak-leg-s", type=float, default=60,
                    help="event-time length of one fleet send of the soak, in wall seconds at its rate (default 60)")
    ap.add_argument("--serial", action="store_true", help="run the scenarios one after the other (default: the "
                    "outage scenarios run beside the process-kill ones)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "flightline"))
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build --bin flightline first")
    ap.add_argument("--keep", action="store_true", help="keep databases, topics and logs")
    ap.add_argument("--max-s", type=float, default=None, help="hard limit of the whole run (default 420 quick, 5400)")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    args = ap.parse_args()
    KEEP = args.keep
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    scenarios = SCENARIOS if args.scenario == "all" else tuple(s.strip() for s in args.scenario.split(","))
    for s in scenarios:
        if s not in SCENARIOS + EXTRA_SCENARIOS:
            ap.error(f"unknown scenario {s}")
    if "soak" in scenarios and not args.fleet_pps:
        args.fleet_pps = 20000
    if args.fleet_pps and not args.serial:
        args.serial = True  # one fleet at a time: the box holds one such load, not one per lane
    max_s = args.max_s or ((480 if args.quick else 5400) + (args.soak_s + 900 if "soak" in scenarios else 0))
    cmdline = "python3 tests/chaos/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if "--seed" not in sys.argv[1:]:
        cmdline += f" --seed {args.seed}"

    if not args.no_build:
        say("cargo build --bin flightline")
        if subprocess.run(["cargo", "build", "--bin", "flightline", "--quiet"], cwd=ROOT).returncode != 0:
            print("chaos: FAILED: cargo build --bin flightline", file=sys.stderr)
            return 2
    if not os.access(args.bin, os.X_OK):
        print(f"chaos: FAILED: no binary {args.bin}", file=sys.stderr)
        return 2
    if not wire.Kafka(SHARED_KAFKA).ping() or not wire.Redis(SHARED_REDIS).ping():
        print("chaos: FAILED: the local stack is not up (deploy/local/stack.sh up)", file=sys.stderr)
        return 2

    h = Harness(args)
    atexit.register(CLEANUP.run)

    def on_signal(signum, _frame):
        say(f"signal {signum}: cleaning up")
        CLEANUP.run()
        os._exit(130)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def watchdog():
        time.sleep(max_s)
        say(f"FAILED: the run exceeded --max-s {max_s:.0f} s; cleaning up")
        CLEANUP.run()
        os._exit(3)
    threading.Thread(target=watchdog, daemon=True).start()

    say(f"seed {args.seed}; work dir {h.workdir}; binary {args.bin} "
        f"(built {time.strftime('%H:%M:%S', time.localtime(os.path.getmtime(args.bin)))})")
    outage_packets = int(args.outage_pps * args.outage_load_s)
    h.fast, h.long = build_inputs(h.workdir, outage_packets)
    say("inputs: " + ", ".join(f"{i.name} ({i.count})" for i in h.fast + h.long))
    if args.fleet_pps:
        per = args.fleet_pps / args.fleet_drones
        block = Block(h.long[0])
        loads = {"fast": max(i.count for i in h.fast) / args.pps, "outage": max(i.count for i in h.long) / args.outage_pps,
                 "kafka": max(i.count for i in h.long) / args.kafka_pps}
        for family, secs in loads.items():
            if any(s in scenarios for s in {"fast": ("kill-role", "two-instances"), "outage": (
                    "pg-stop", "pg-stop-processors", "redis-stop"), "kafka": ("kafka-kill", "kafka-stop")}[family]):
                h.fleet[family] = Input(f"fleet-{family}", block.lines(0, math.ceil(per * secs)), block.hz, h.workdir,
                                        pps=per, batch=args.fleet_batch, copies=args.fleet_drones)
        if "soak" in scenarios:
            h.soak_block = block
            h.soak_ref = Input("fleet-block", block.lines(0, len(block)), block.hz, h.workdir, tail=False)
            h.fleet_ref = [h.soak_ref]
        say(f"fleet: {args.fleet_drones} drones x {per:g} packets/s = {args.fleet_pps:g} packets/s in batches of "
            f"{args.fleet_batch}, blocks of {len(block)} packets of {h.long[0].name}" +
            "".join(f"; {i.name} ({i.count})" for i in h.fleet.values()) + "; scenarios run one after the other")

    runners = {"kill-role": h.run_kill_role, "two-instances": h.run_two_instances, "pg-stop": h.run_pg_stop,
               "pg-stop-processors": lambda: h.run_pg_stop("pg-stop-processors"),
               "redis-stop": h.run_redis_stop, "kafka-kill": lambda: h.run_kafka("kafka-kill"),
               "kafka-stop": lambda: h.run_kafka("kafka-stop"), "soak": h.run_soak}
    errors = []

    def guarded(name, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            errors.append(f"{name}: {e}")
            say(f"{name}: ERROR {e}\n{traceback.format_exc()}")

    lanes = [["baseline"] + [s for s in scenarios if s in ("kill-role", "two-instances")]]
    outages = [s for s in scenarios if s not in ("kill-role", "two-instances", "soak")]
    soak = [s for s in scenarios if s == "soak"]
    if args.serial:
        lanes[0] += outages + soak
    else:
        for family in ("pg", "redis", "kafka"):
            lanes.append([s for s in outages if s.startswith(family)])

    def lane(names):
        for n in names:
            guarded(n, h.run_baseline if n == "baseline" else runners[n])
    threads = [threading.Thread(target=lane, args=(ln,)) for ln in lanes if ln]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    total = time.monotonic() - T_START
    table = h.table(scenarios)
    failed = errors or any(not r["ok"] for s in scenarios for r in h.results.get(s, [])) or \
        any(len(h.results.get(s, [])) == 0 for s in scenarios)
    notes = []
    for s in scenarios:
        for n in h.extra.get(s, []):
            notes.append(f"- {s}: {n}")
    for s in scenarios:
        for i, r in enumerate(h.results.get(s, []), 1):
            for f in r["failures"]:
                notes.append(f"- {s}#{i} FAILED: {f}")
            if not r["ok"]:
                notes.extend(f"- {s}#{i} note: {n}" for n in r["notes"])
    for e in errors:
        notes.append(f"- ERROR {e}")
    report = (f"# Fault harness results\n\n`{cmdline}`\n\nseed {args.seed}, "
              f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {total:.0f} s, commit {git_head()}, "
              f"{'quick' if args.quick else 'full'} mode, {'PASSED' if not failed else 'FAILED'}\n\n"
              f"Load: {len(h.fast)} drones x {args.pps:g} packets/s (process kills), {len(h.long)} drones x "
              f"{args.outage_pps:g} packets/s for {args.outage_load_s:g} s (outages), batches of {args.batch}; "
              + (f"a fleet of {args.fleet_drones} drones x {args.fleet_pps / args.fleet_drones:g} packets/s "
                 f"({args.fleet_pps:g} packets/s) in batches of {args.fleet_batch} in every trial"
                 + (f" and the soak ({args.soak_s:g} s, a fault every {args.soak_every_s:g} s)"
                    if "soak" in scenarios else "") + "; " if args.fleet_pps else "") +
              f"recovery = from the end of the fault until the role answers /readyz or its consumer group has "
              f"consumed what was in the log then (outages: the slowest group).\n\n"
              + table + ("\n" + "\n".join(notes) + "\n" if notes else ""))
    print("\n" + report)
    try:
        with open(args.results, "w") as f:
            f.write(report)
    except OSError as e:
        say(f"could not write {args.results}: {e}")
    CLEANUP.run()
    if not failed and not KEEP:
        shutil.rmtree(h.workdir, ignore_errors=True)
    else:
        say(f"logs kept in {h.workdir}")
    say(f"{'PASSED' if not failed else 'FAILED'} in {total:.0f} s")
    trials = [r for s in scenarios for r in h.results.get(s, [])]
    passed = sum(1 for r in trials if r["ok"])
    # The plain closing line a CI log reader counts: trials passed and failed.
    print(f"chaos: {passed} passed, {len(trials) - passed} failed", flush=True)
    return 1 if failed else 0


def git_head():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
