"""Minimal stdlib clients for the fault harness (tests/chaos/run.py): the few Kafka admin requests
it needs (create/delete topics, log-end offsets, committed group offsets, delete groups) over the
plain Kafka protocol, and a RESP client for Redis. No JVM per call, no third-party packages.

Only non-flexible request versions are used (the classic encoding: int16-length strings,
int32-count arrays), all of which Kafka 4 still serves.
"""

import socket
import struct

# ---------------------------------------------------------------------------------------------
# Kafka


class KafkaError(Exception):
    pass


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        chunk = self.data[self.pos:self.pos + n]
        if len(chunk) != n:
            raise KafkaError("truncated Kafka response")
        self.pos += n
        return chunk

    def i8(self):
        return struct.unpack(">b", self.take(1))[0]

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def array(self, item):
        n = self.i32()
        return [] if n < 0 else [item() for _ in range(n)]


def _s(text):
    if text is None:
        return struct.pack(">h", -1)
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _arr(items, enc):
    return struct.pack(">i", len(items)) + b"".join(enc(i) for i in items)


# error codes the harness tolerates
TOPIC_ALREADY_EXISTS = 36
UNKNOWN_TOPIC = 3
GROUP_ID_NOT_FOUND = 69
NON_EMPTY_GROUP = 68


class Kafka:
    """One short-lived connection per request to a single bootstrap broker (the harness only
    talks to single-node clusters, so that broker is also the controller and coordinator)."""

    def __init__(self, bootstrap, timeout=10.0):
        host, port = bootstrap.split(",")[0].rsplit(":", 1)
        self.addr = (host, int(port))
        self.timeout = timeout
        self.correlation = 0

    def _call(self, api_key, version, body):
        self.correlation += 1
        header = struct.pack(">hhi", api_key, version, self.correlation) + _s("flightline-chaos")
        frame = header + body
        with socket.create_connection(self.addr, timeout=self.timeout) as sock:
            sock.sendall(struct.pack(">i", len(frame)) + frame)
            size = struct.unpack(">i", _recv(sock, 4))[0]
            data = _recv(sock, size)
        r = _Reader(data)
        if r.i32() != self.correlation:
            raise KafkaError("correlation id mismatch")
        return r

    def ping(self):
        """ApiVersions v0: the broker answers the protocol."""
        try:
            r = self._call(18, 0, b"")
            return r.i16() == 0
        except (OSError, KafkaError):
            return False

    def create_topics(self, names, partitions, timeout_ms=30000):
        """CreateTopics v3; an existing topic is fine."""
        def topic(name):
            return (_s(name) + struct.pack(">ih", partitions, 1) + _arr([], None) + _arr([], None))
        body = _arr(names, topic) + struct.pack(">ib", timeout_ms, 0)
        r = self._call(19, 3, body)
        r.i32()  # throttle
        for _ in range(r.i32()):
            name, code, message = r.string(), r.i16(), r.string()
            if code not in (0, TOPIC_ALREADY_EXISTS):
                raise KafkaError(f"creating topic {name}: error {code} {message or ''}")

    def delete_topics(self, names, timeout_ms=30000):
        """DeleteTopics v3; a missing topic is fine."""
        body = _arr(names, _s) + struct.pack(">i", timeout_ms)
        r = self._call(20, 3, body)
        r.i32()
        for _ in range(r.i32()):
            name, code = r.string(), r.i16()
            if code not in (0, UNKNOWN_TOPIC):
                raise KafkaError(f"deleting topic {name}: error {code}")

    def partitions(self, topic):
        """Metadata v4 of one topic: its partition ids (empty while unknown)."""
        body = _arr([topic], _s) + struct.pack(">b", 0)
        r = self._call(3, 4, body)
        r.i32()
        r.array(lambda: (r.i32(), r.string(), r.i32(), r.string()))  # brokers
        r.string()  # cluster id
        r.i32()  # controller
        result = []
        for _ in range(r.i32()):
            code, _name, _internal = r.i16(), r.string(), r.i8()
            parts = r.array(lambda: (r.i16(), r.i32(), r.i32(), r.array(r.i32), r.array(r.i32)))
            if code == 0:
                result = sorted(p[1] for p in parts)
        return result

    def end_offsets(self, topic, partitions):
        """ListOffsets v1 (latest): {partition: log-end offset}. Raises KafkaError while a
        partition has no leader yet (just created, broker restarting)."""
        def part(p):
            return struct.pack(">iq", p, -1)
        body = struct.pack(">i", -1) + _arr([topic], lambda t: _s(t) + _arr(partitions, part))
        r = self._call(2, 1, body)
        out = {}
        for _ in range(r.i32()):
            r.string()
            for _ in range(r.i32()):
                p, code, _ts, offset = r.i32(), r.i16(), r.i64(), r.i64()
                if code != 0:
                    raise KafkaError(f"ListOffsets {topic}/{p}: error {code}")
                out[p] = offset
        return out

    def committed(self, group, topic, partitions):
        """OffsetFetch v1: {partition: committed offset, -1 when none}."""
        body = _s(group) + _arr([topic], lambda t: _s(t) + _arr(partitions, lambda p: struct.pack(">i", p)))
        r = self._call(9, 1, body)
        out = {}
        for _ in range(r.i32()):
            r.string()
            for _ in range(r.i32()):
                p, offset, _meta, code = r.i32(), r.i64(), r.string(), r.i16()
                out[p] = offset if code == 0 else -1
        return out

    def delete_groups(self, groups):
        """DeleteGroups v1; missing or (still) non-empty groups are left alone."""
        r = self._call(42, 1, _arr(groups, _s))
        r.i32()
        for _ in range(r.i32()):
            r.string()
            r.i16()


def _recv(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise KafkaError("connection closed by the broker")
        buf += chunk
    return bytes(buf)


# ---------------------------------------------------------------------------------------------
# Redis


class RedisError(Exception):
    pass


class Redis:
    """A RESP2 client: one connection, reconnected on demand."""

    def __init__(self, url, timeout=3.0):
        rest = url.split("://", 1)[-1].split("/", 1)[0]
        host, _, port = rest.rpartition(":")
        self.addr = (host or "127.0.0.1", int(port or 6379))
        self.timeout = timeout
        self.sock = None
        self.buf = b""

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = b""

    def command(self, *args):
        try:
            if self.sock is None:
                self.sock = socket.create_connection(self.addr, timeout=self.timeout)
            out = b"*%d\r\n" % len(args)
            for a in args:
                raw = a if isinstance(a, bytes) else str(a).encode()
                out += b"$%d\r\n%s\r\n" % (len(raw), raw)
            self.sock.sendall(out)
            return self._reply()
        except (OSError, RedisError):
            self.close()
            raise

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RedisError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise RedisError("connection closed")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data.decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError(f"unexpected reply {line!r}")

    def ping(self):
        try:
            return self.command("PING") == "PONG"
        except (OSError, RedisError):
            return False
