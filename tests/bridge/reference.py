"""The independent reference of `flightline bridge` (tests/bridge.rs): decodes a .tlog with
pymavlink (PyPI) and computes, without any of the bridge's code, the packets CONTRACT.md §1 and
the bridge's sampling rule give:

- a vehicle is a system id whose HEARTBEAT names an autopilot (not MAV_AUTOPILOT_INVALID) and is
  not a GCS; its telemetry starts with that heartbeat and is read from that component only;
- grid ticks are multiples of round(1e6 / hz) µs of the log's receive time; tick T holds the
  latest value of each field received at or before T, while the vehicle was heard within 1 s,
  once its throttle is known; ts = T + (time_unix_usec - receive time) of the last SYSTEM_TIME
  with time_unix_usec set, else T; a ts not after the previous one is skipped;
- unknown sentinels (UINT16_MAX mV, -1 cA / mAh, UINT8_MAX rssi / sats) and out-of-range values
  leave a field as it was; GLOBAL_POSITION_INT at 0, 0 is no fix.

Usage: reference.py LOG HZ [SYSTEM_ID ...]   (no system id: the first vehicle heard)
Prints one JSON object: {"packets": [{"system_id", "ts_us", ...fields}], "states": {id: [...]}}
where "states" is each vehicle's field state (no ts) after every message it sent.
"""

import json
import math
import sys

from pymavlink import mavutil

STALE_US = 1_000_000
MAV_AUTOPILOT_INVALID = 8
MAV_TYPE_GCS = 6
ARMED = 128


def apply(state, msg):
    kind = msg.get_type()
    if kind == "VFR_HUD":
        state["throttle"] = min(msg.throttle / 100.0, 1.0)
    elif kind == "SYS_STATUS":
        if msg.voltage_battery != 0xFFFF and 0.0 <= msg.voltage_battery / 1000.0 <= 100.0:
            state["voltage"] = msg.voltage_battery / 1000.0
        if msg.current_battery != -1 and -50.0 <= msg.current_battery / 100.0 <= 1000.0:
            state["current"] = msg.current_battery / 100.0
    elif kind == "BATTERY_STATUS" and msg.id == 0:
        cells = [mv for mv in msg.voltages if mv != 0xFFFF]
        if cells and 0.0 <= sum(cells) / 1000.0 <= 100.0:
            state["voltage"] = sum(cells) / 1000.0
        if msg.current_battery != -1 and -50.0 <= msg.current_battery / 100.0 <= 1000.0:
            state["current"] = msg.current_battery / 100.0
        if msg.current_consumed >= 0:
            state["mah_drawn"] = msg.current_consumed
    elif kind == "ATTITUDE":
        state["attitude"] = [math.degrees(msg.roll), math.degrees(msg.pitch), math.degrees(msg.yaw)]
    elif kind == "GLOBAL_POSITION_INT":
        if msg.lat != 0 or msg.lon != 0:
            state["gps"] = {"lat": msg.lat / 1e7, "lon": msg.lon / 1e7, "alt_m": msg.alt / 1000.0}
    elif kind == "LOCAL_POSITION_NED":
        state["position"] = [msg.y, msg.x, -msg.z]
        state["velocity"] = [msg.vy, msg.vx, -msg.vz]
    elif kind == "RADIO_STATUS" and msg.rssi != 0xFF:
        state["rssi_radio"] = msg.rssi
    elif kind == "RC_CHANNELS" and msg.rssi != 0xFF:
        state["rssi_rc"] = msg.rssi
    elif kind == "GPS_RAW_INT" and msg.satellites_visible != 0xFF:
        state["sats"] = msg.satellites_visible
    elif kind == "HEARTBEAT":
        state["armed"] = bool(msg.base_mode & ARMED)
        state["mode"] = mavutil.mode_string_v10(msg).lower()


def fields(state):
    """The packet fields (no ts) of a state, as the API stores them."""
    out = {"throttle": state["throttle"]}
    for key in ("voltage", "current", "mah_drawn", "position", "gps", "velocity", "attitude"):
        if key in state:
            out[key] = state[key]
    rssi = state.get("rssi_radio", state.get("rssi_rc"))
    if rssi is not None:
        out["rssi"] = rssi
    extra = {k: state[k] for k in ("mode", "armed", "sats") if k in state}
    if extra:
        out["extra"] = extra
    return out


def main():
    path, hz = sys.argv[1], float(sys.argv[2])
    wanted = [int(a) for a in sys.argv[3:]]
    period = round(1e6 / hz)
    log = mavutil.mavlink_connection(path, dialect="common", robust_parsing=True)
    vehicles = {}
    packets = []
    states = {}
    next_tick = None

    def advance(now):
        nonlocal next_tick
        while next_tick < now:
            if not any(next_tick - v["heard"] <= STALE_US for v in vehicles.values()):
                next_tick = max(next_tick, -(-now // period) * period)
                return
            for system_id in sorted(vehicles):
                v = vehicles[system_id]
                if next_tick - v["heard"] > STALE_US or "throttle" not in v["state"]:
                    continue
                ts = next_tick + v["offset"]
                if v["last_ts"] is not None and ts <= v["last_ts"]:
                    continue
                v["last_ts"] = ts
                packets.append(dict(system_id=system_id, ts_us=ts, **fields(v["state"])))
            next_tick += period

    last_heard = None
    while True:
        msg = log.recv_match()
        if msg is None:
            break
        if msg.get_type() == "BAD_DATA" or msg.get_type().startswith("UNKNOWN"):
            continue
        recv = round(msg._timestamp * 1e6)
        if next_tick is not None:
            advance(recv)
        else:
            next_tick = -(-recv // period) * period
        last_heard = recv if last_heard is None else max(last_heard, recv)
        system_id, component_id = msg.get_srcSystem(), msg.get_srcComponent()
        if system_id not in vehicles:
            if msg.get_type() != "HEARTBEAT" or msg.autopilot == MAV_AUTOPILOT_INVALID or msg.type == MAV_TYPE_GCS:
                continue
            if (wanted and system_id not in wanted) or (not wanted and vehicles):
                continue
            vehicles[system_id] = {"component": component_id, "state": {}, "heard": recv, "offset": 0, "last_ts": None}
        v = vehicles[system_id]
        if component_id != v["component"]:
            continue
        v["heard"] = max(v["heard"], recv)
        if msg.get_type() == "SYSTEM_TIME" and msg.time_unix_usec != 0:
            v["offset"] = msg.time_unix_usec - recv
        apply(v["state"], msg)
        if "throttle" in v["state"]:
            states.setdefault(system_id, []).append(fields(v["state"]))
    if last_heard is not None:
        advance(last_heard + 1)
    json.dump({"packets": packets, "states": states}, sys.stdout)


if __name__ == "__main__":
    main()
