#!/usr/bin/env python3
"""Interop of Flightline's Avro messages with fastavro, a non-Rust Avro implementation.

    interop.py check <dir>   decode the rust_*.bin messages listed in rust_expected.json
                             (written by `cargo run -p schemas --example interop -- write <dir>`)
                             and compare them with the values listed there
    interop.py write <dir>   write py_*.bin messages and py_expected.json, which
                             `... --example interop -- read <dir>` decodes and checks

A message is Avro single-object encoding: C3 01, the 8-byte CRC-64-AVRO fingerprint of the
writer schema's Parsing Canonical Form (fastavro computes it from the .avsc files of
schemas/avro/, independently of the Rust code), then the binary datum. fastavro has no
single-object helpers, so the header is handled here and the datum by schemaless_reader/writer.

Values travel in a plain JSON form: timestamps as integer microseconds, uuids as strings,
optional values as null, records as objects, flight events with "type" naming the union branch.
Exits 1 with a message on the first mismatch.
"""

import datetime
import io
import json
import math
import pathlib
import sys
import uuid

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

AVRO_DIR = pathlib.Path(__file__).resolve().parent.parent / "avro"
MARKER = b"\xc3\x01"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class Mismatch(Exception):
    pass


def load_schema(file_name):
    raw = json.loads((AVRO_DIR / file_name).read_text(encoding="utf-8"))
    header = MARKER + bytes.fromhex(fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO"))
    return parse_schema(raw), header


TELEMETRY, TELEMETRY_HEADER = load_schema("telemetry_record.avsc")
FLIGHT_EVENT, FLIGHT_EVENT_HEADER = load_schema("flight_event.avsc")


def to_micros(moment):
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return (moment - EPOCH) // datetime.timedelta(microseconds=1)


def plain(value):
    """fastavro's logical-type objects to the plain JSON form."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime):
        return to_micros(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def same(left, right):
    """Equality that also requires equal JSON types (1 is not 1.0, True is not 1)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[key], right[key]) for key in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right))
    if isinstance(left, float) and math.isnan(left):
        return math.isnan(right)
    return left == right


def read_message(data, schema, header, name, **options):
    if data[:2] != MARKER:
        raise Mismatch(f"{name}: does not start with the single-object marker c3 01: {data[:2].hex()}")
    if data[:10] != header:
        raise Mismatch(
            f"{name}: writer fingerprint {data[2:10].hex()} differs from the one fastavro computes "
            f"for the .avsc, {header[2:].hex()}"
        )
    stream = io.BytesIO(data[10:])
    value = schemaless_reader(stream, schema, None, **options)
    if stream.tell() != len(data) - 10:
        raise Mismatch(f"{name}: {len(data) - 10 - stream.tell()} bytes left after the datum")
    return value


def event_to_plain(value):
    branch, fields = value["event"]
    return {"type": branch.rsplit(".", 1)[-1], **plain(fields)}


def check(directory):
    expected = json.loads((directory / "rust_expected.json").read_text(encoding="utf-8"))
    checked = 0
    for entry in expected["telemetry"]:
        data = (directory / entry["file"]).read_bytes()
        decoded = plain(read_message(data, TELEMETRY, TELEMETRY_HEADER, entry["file"]))
        if not same(decoded, entry["value"]):
            raise Mismatch(f"{entry['file']}: fastavro decoded\n  {decoded}\nbut rust wrote\n  {entry['value']}")
        checked += 1
    for entry in expected["flight_events"]:
        data = (directory / entry["file"]).read_bytes()
        value = read_message(
            data, FLIGHT_EVENT, FLIGHT_EVENT_HEADER, entry["file"],
            return_record_name=True, return_record_name_override=True,
        )
        decoded = event_to_plain(value)
        if not same(decoded, entry["value"]):
            raise Mismatch(f"{entry['file']}: fastavro decoded\n  {decoded}\nbut rust wrote\n  {entry['value']}")
        checked += 1
    if checked == 0:
        raise Mismatch("rust_expected.json lists no messages")
    return f"decoded and checked {checked} messages written by rust"


def sample_telemetry():
    drone = uuid.UUID("5b0e7a52-1c4d-4f7e-8a3b-9c2d1e0f6a7b")
    full = {
        "drone_id": drone,
        "ts": datetime.datetime(2021, 9, 6, 2, 47, 59, 300_001, tzinfo=datetime.timezone.utc),
        "received_at": 1_630_896_479_312_345,
        "position": {"x": -1.25, "y": 3.5, "z": 120.0},
        "gps": {"lat": 47.5726927, "lon": -122.6266514, "alt_m": 5.4},
        "velocity": {"x": 0.0, "y": -0.0, "z": 1e-7},
        "attitude": {"roll": 1.9, "pitch": 3.3, "yaw": 79.1},
        "throttle": 0.1344,
        "voltage": 12.663,
        "current": 2.188,
        "mah_drawn": 0,
        "rssi": 100,
        "extra": {"source": "dji-airdata-csv", "sats": 17, "ratio": 0.5, "whole": 3.0, "ok": True, "no": False},
    }
    minimal = {
        "drone_id": str(drone),
        "ts": 1,
        "received_at": 2,
        "position": None,
        "gps": None,
        "velocity": None,
        "attitude": None,
        "throttle": 0.0,
        "voltage": None,
        "current": None,
        "mah_drawn": None,
        "rssi": None,
        "extra": {},
    }
    one_extra = dict(minimal, extra={"armed": True}, rssi=-200, mah_drawn=2**63 - 1, current=-50.0)
    return [full, minimal, one_extra]


def sample_events():
    drone = "5b0e7a52-1c4d-4f7e-8a3b-9c2d1e0f6a7b"
    closed = {
        "flight_id": uuid.UUID("0f8e2a5c-3b1d-5e6f-9a7b-1c2d3e4f5a6b"),
        "drone_id": drone,
        "start_ts": 1_630_896_479_300_000,
        "end_ts": 1_630_897_662_600_000,
        "packet_count": 59_166,
        "partition": 3,
        "last_offset": 9_876_543_210,
        "rule": {"throttle_threshold": 0.05, "idle_window_us": 10_000_000, "gap_us": 10_000_000, "min_duration_us": 1_000_000},
    }
    requested = {
        "flight_id": "0f8e2a5c-3b1d-5e6f-9a7b-1c2d3e4f5a6b",
        "drone_id": uuid.UUID(drone),
        "requested_at": datetime.datetime(2026, 5, 1, 12, 0, 0, 1, tzinfo=datetime.timezone.utc),
        "reason": None,
    }
    return [("flightline.FlightClosed", closed), ("flightline.RecomputeRequested", requested),
            ("flightline.RecomputeRequested", dict(requested, reason="pilot asked ✈"))]


def write(directory):
    expected = {"telemetry": [], "flight_events": []}
    for index, record in enumerate(sample_telemetry()):
        name = f"py_telemetry_{index}.bin"
        stream = io.BytesIO()
        stream.write(TELEMETRY_HEADER)
        schemaless_writer(stream, TELEMETRY, record)
        (directory / name).write_bytes(stream.getvalue())
        expected["telemetry"].append({"file": name, "value": plain(record)})
    for index, (branch, event) in enumerate(sample_events()):
        name = f"py_flight_event_{index}.bin"
        stream = io.BytesIO()
        stream.write(FLIGHT_EVENT_HEADER)
        # The tuple names the union branch explicitly.
        schemaless_writer(stream, FLIGHT_EVENT, {"event": (branch, event)})
        (directory / name).write_bytes(stream.getvalue())
        expected["flight_events"].append({"file": name, "value": {"type": branch.rsplit(".", 1)[-1], **plain(event)}})
    (directory / "py_expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False), encoding="utf-8")
    return f"wrote {len(expected['telemetry'])} telemetry records and {len(expected['flight_events'])} flight events"


def main(argv):
    if len(argv) != 3 or argv[1] not in ("check", "write"):
        print(__doc__, file=sys.stderr)
        return 2
    directory = pathlib.Path(argv[2])
    try:
        summary = check(directory) if argv[1] == "check" else write(directory)
    except Mismatch as mismatch:
        print(f"python: interop failed: {mismatch}", file=sys.stderr)
        return 1
    print(f"python: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
